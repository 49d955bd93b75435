"""archived strategies, and the indexes of the orders, events and trade-export lists

- strategies.archived_at: set by `archiveStrategy`; an archived strategy no longer trades and leaves
  the lists, its history stays.
- uq_strategies_client_name becomes a partial unique index (WHERE archived_at IS NULL): a name is
  unique among a client's strategies that are not archived, so archiving frees it.
- ix_orders_client_id_desc, ix_strategy_events_client_id_desc: the `orders` and `events` lists of a
  client, newest first (keyset on id).
- ix_trades_client_executed: the trade export of a client in time order (keyset on time, id).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("strategies", sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True))
    op.drop_constraint("uq_strategies_client_name", "strategies", type_="unique")
    op.create_index(
        "uq_strategies_client_name",
        "strategies",
        ["client_id", "name"],
        unique=True,
        postgresql_where=sa.text("archived_at IS NULL"),
    )
    op.create_index("ix_orders_client_id_desc", "orders", ["client_id", sa.text("id DESC")])
    op.create_index("ix_strategy_events_client_id_desc", "strategy_events", ["client_id", sa.text("id DESC")])
    op.create_index("ix_trades_client_executed", "trades", ["client_id", "executed_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_trades_client_executed", table_name="trades")
    op.drop_index("ix_strategy_events_client_id_desc", table_name="strategy_events")
    op.drop_index("ix_orders_client_id_desc", table_name="orders")
    op.drop_index("uq_strategies_client_name", table_name="strategies")
    # Archived strategies may share names with live ones: the old constraint would not hold.
    op.execute(
        "UPDATE strategies SET name = left(name, 80) || ' (archived ' || id || ')' WHERE archived_at IS NOT NULL"
    )
    op.create_unique_constraint("uq_strategies_client_name", "strategies", ["client_id", "name"])
    op.drop_column("strategies", "archived_at")
