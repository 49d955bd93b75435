"""trading pause: the emergency stop of a client (`pauseTrading`, `criptoren pause`)

- clients.trading_paused_at: set while the client's trading is paused: the engine makes no new
  entries for it (an entry is skipped with the reason "trading_paused"), manual buys are refused.
- clients.trading_sells_held: the pause also holds automatic sells (exits, channel-break
  schedules); set by `pauseTrading(cancelScheduled: true)`, which cancels the scheduled sells too.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 13:40:37.015778
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("clients", sa.Column("trading_paused_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "clients", sa.Column("trading_sells_held", sa.Boolean(), server_default=sa.text("false"), nullable=False)
    )


def downgrade() -> None:
    op.drop_column("clients", "trading_sells_held")
    op.drop_column("clients", "trading_paused_at")
