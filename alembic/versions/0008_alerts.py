"""alerts: webhook and Telegram endpoints, the delivery log, and the events' outbox column

- strategy_events.dispatched_at: the alerts' outbox (NULL: not dispatched yet; a partial index
  finds them). Events older than this migration are marked dispatched: nobody asked for them.
- alert_endpoints: a client's webhook URLs and Telegram chats, with the encrypted signing secret
  or bot token and the event types each wants.
- alert_deliveries: one row per (endpoint, event), its attempts and outcome (the delivery log).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 13:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPDATED_AT_TABLES = ("alert_endpoints", "alert_deliveries")


def upgrade() -> None:
    op.add_column("strategy_events", sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE strategy_events SET dispatched_at = now()")
    op.create_index(
        "ix_strategy_events_undispatched",
        "strategy_events",
        ["id"],
        postgresql_where=sa.text("dispatched_at IS NULL"),
    )
    op.create_table(
        "alert_endpoints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "webhook", "telegram", name="alert_endpoint_kind", native_enum=False, create_constraint=True, length=20
            ),
            nullable=False,
        ),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("telegram_chat_id", sa.String(length=64), nullable=True),
        sa.Column("secret_encrypted", sa.Text(), nullable=False),
        sa.Column(
            "event_types",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("kind <> 'webhook' OR url IS NOT NULL", name=op.f("ck_alert_endpoints_webhook_has_url")),
        sa.CheckConstraint(
            "kind <> 'telegram' OR telegram_chat_id IS NOT NULL", name=op.f("ck_alert_endpoints_telegram_has_chat")
        ),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.id"], name=op.f("fk_alert_endpoints_client_id_clients"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_endpoints")),
    )
    op.create_index("ix_alert_endpoints_client", "alert_endpoints", ["client_id"])
    op.create_table(
        "alert_deliveries",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("endpoint_id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending", "delivered", "failed", "abandoned",
                name="delivery_status", native_enum=False, create_constraint=True, length=20,
            ),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_alert_deliveries_attempts_nonnegative")),
        sa.ForeignKeyConstraint(
            ["endpoint_id"], ["alert_endpoints.id"],
            name=op.f("fk_alert_deliveries_endpoint_id_alert_endpoints"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["event_id"], ["strategy_events.id"],
            name=op.f("fk_alert_deliveries_event_id_strategy_events"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.id"], name=op.f("fk_alert_deliveries_client_id_clients"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_deliveries")),
        sa.UniqueConstraint("endpoint_id", "event_id", name="uq_alert_deliveries_endpoint_event"),
    )  # fmt: skip
    op.create_index("ix_alert_deliveries_endpoint_id_desc", "alert_deliveries", ["endpoint_id", sa.text("id DESC")])
    op.create_index(
        "ix_alert_deliveries_due",
        "alert_deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    for table in UPDATED_AT_TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_set_updated_at BEFORE UPDATE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION set_updated_at()"
        )


def downgrade() -> None:
    for table in UPDATED_AT_TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_set_updated_at ON {table}")
    op.drop_index("ix_alert_deliveries_due", table_name="alert_deliveries")
    op.drop_index("ix_alert_deliveries_endpoint_id_desc", table_name="alert_deliveries")
    op.drop_table("alert_deliveries")
    op.drop_index("ix_alert_endpoints_client", table_name="alert_endpoints")
    op.drop_table("alert_endpoints")
    op.drop_index("ix_strategy_events_undispatched", table_name="strategy_events")
    op.drop_column("strategy_events", "dispatched_at")
