"""The in-memory store (backtests, unit tests) enforces the schema's own constraints: its hand-written
checks and unique keys are tied here to the SQLAlchemy tables they mirror, so a constraint added to
one side and not the other fails this test."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, UniqueConstraint

from domain.adapters.persistence import memory, memory_schema, orm

# memory table name -> the PostgreSQL table it mirrors
SQL_TABLE = {
    "clients": "clients", "symbols": "symbols", "strategies": "strategies", "positions": "positions",
    "orders": "orders", "trades": "trades", "allocations": "capital_allocations", "events": "strategy_events",
    "candles": "historical_prices", "refresh_tokens": "refresh_tokens", "audit": "audit_log",
}  # fmt: skip


def test_every_table_is_mirrored() -> None:
    assert set(SQL_TABLE) == set(memory.TABLES)
    assert set(SQL_TABLE.values()) == set(orm.metadata.tables)


def test_check_constraints_are_the_schemas() -> None:
    for name, sql_name in SQL_TABLE.items():
        table = orm.metadata.tables[sql_name]
        # (an Enum column's own check is the Python enum's type in memory)
        checks = [
            c for c in table.constraints if isinstance(c, CheckConstraint) and not getattr(c, "_type_bound", False)
        ]
        in_sql = {str(c.name).removeprefix(f"ck_{sql_name}_") for c in checks}
        assert set(memory_schema.CHECKS.get(name, {})) == in_sql, name


def test_unique_keys_are_the_schemas() -> None:
    for name, sql_name in SQL_TABLE.items():
        table = orm.metadata.tables[sql_name]
        in_sql = {tuple(c.name for c in u.columns) for u in table.constraints if isinstance(u, UniqueConstraint)}
        in_sql |= {(c.name,) for c in table.columns if c.unique}
        assert set(memory_schema.UNIQUE.get(name, ())) == in_sql, name
