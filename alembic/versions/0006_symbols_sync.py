"""symbols synced from Binance's exchangeInfo: status, LOT_SIZE maxQty, quoteOrderQty support

- symbols.status: Binance's status (TRADING, HALT, BREAK, …); symbols.is_active stays `status =
  TRADING` (what the engine and the workers read).
- symbols.max_qty: LOT_SIZE maxQty (NULL: not known, e.g. a symbol added by hand).
- symbols.quote_order_qty_allowed: whether MARKET orders by quote amount are allowed.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 12:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("symbols", sa.Column("max_qty", sa.Numeric(38, 18), nullable=True))
    op.add_column("symbols", sa.Column("status", sa.String(20), server_default=sa.text("'TRADING'"), nullable=False))
    op.add_column(
        "symbols", sa.Column("quote_order_qty_allowed", sa.Boolean(), server_default=sa.text("true"), nullable=False)
    )


def downgrade() -> None:
    op.drop_column("symbols", "quote_order_qty_allowed")
    op.drop_column("symbols", "status")
    op.drop_column("symbols", "max_qty")
