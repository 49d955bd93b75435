"""drop clients.api_secret_encrypted: never written since exchange keys got their own columns
(`binance_api_secret_encrypted`, 0003); the column held nothing.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 12:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_column("clients", "api_secret_encrypted")


def downgrade() -> None:
    op.add_column("clients", sa.Column("api_secret_encrypted", sa.Text(), nullable=True))
