"""The in-memory store (backtests, unit tests) enforces the schema's own constraints: its hand-written
checks and unique keys are tied here to the SQLAlchemy tables they mirror, so a constraint added to
one side and not the other fails this test."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import CheckConstraint, Index, UniqueConstraint

from domain.adapters.persistence import memory, memory_schema, orm
from domain.channel import Channel
from domain.model import Strategy

# memory table name -> the PostgreSQL table it mirrors
SQL_TABLE = {
    "clients": "clients", "symbols": "symbols", "strategies": "strategies", "positions": "positions",
    "orders": "orders", "trades": "trades", "allocations": "capital_allocations", "events": "strategy_events",
    "candles": "historical_prices", "refresh_tokens": "refresh_tokens", "audit": "audit_log",
    "alert_endpoints": "alert_endpoints", "alert_deliveries": "alert_deliveries",
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
        in_sql |= {tuple(c.name for c in i.columns) for i in table.indexes if isinstance(i, Index) and i.unique}
        assert set(memory.UNIQUE.get(name, ())) == in_sql, name


def test_partial_unique_indexes_are_the_schemas() -> None:
    """A unique index with a WHERE (e.g. names unique among strategies not archived) is mirrored
    with the same condition."""
    in_sql = {}
    for name, sql_name in SQL_TABLE.items():
        for index in orm.metadata.tables[sql_name].indexes:
            where = index.dialect_options["postgresql"]["where"]
            if index.unique and where is not None:
                in_sql[(name, tuple(c.name for c in index.columns))] = str(where)
    assert {key: text for key, (text, _) in memory_schema.PARTIAL_UNIQUE.items()} == in_sql


async def test_an_archived_strategy_frees_its_name_in_memory_too() -> None:
    store = memory.seeded_store()
    uow = memory.MemoryUnitOfWork(store)

    def strategy() -> Strategy:
        return Strategy.open(1, 1, "Same name", Channel(Decimal(100), Decimal(120)))

    async with uow:
        uow.strategies.add(first := strategy())
        await uow.commit()
        uow.strategies.add(strategy())
        with pytest.raises(memory.MemoryIntegrityError):
            await uow.flush()
    async with uow:
        archived = await uow.strategies.get(first.id)  # type: ignore[arg-type]
        archived.archive(datetime.now(UTC))
        uow.strategies.add(second := strategy())
        await uow.commit()
    async with uow:
        assert (await uow.strategies.find(1, "Same name")).id == second.id  # type: ignore[union-attr]
