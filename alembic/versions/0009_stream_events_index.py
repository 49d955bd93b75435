"""a partial index of the market stream events

- ix_strategy_events_stream: each strategy's latest `market_stream_down` / `market_stream_up` event
  (`domain.services.market_streams` writes a 'down' only where the last one is not already 'down',
  an 'up' only where it is), found without reading the strategy's whole history.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_strategy_events_stream",
        "strategy_events",
        ["strategy_id", sa.text("id DESC")],
        postgresql_where=sa.text("type IN ('market_stream_down', 'market_stream_up')"),
    )


def downgrade() -> None:
    op.drop_index("ix_strategy_events_stream", table_name="strategy_events")
