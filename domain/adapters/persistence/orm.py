"""Tables (SPEC §3) and their imperative mapping onto the domain's dataclasses.

Money and quantities are NUMERIC(38, 18): wider than the NUMERIC(28, 8) minimum so that fees and
proportions are stored exactly and every rounding stays an explicit step of the domain. The
precisions are the domain's (`domain.numbers.MONEY`, `PERCENT`): its checks refuse what a column
would round.
"""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Enum,
    FetchedValue,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import registry

from domain import model
from domain.numbers import MONEY, PERCENT

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)
mapper_registry = registry(metadata=metadata)


def money() -> Numeric[Decimal]:
    return Numeric(MONEY.digits, MONEY.places, asdecimal=True)


def percent() -> Numeric[Decimal]:
    return Numeric(PERCENT.digits, PERCENT.places, asdecimal=True)


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    # Stored as VARCHAR with a CHECK constraint (values, not names), easy to extend in migrations.
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=20,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


def _created() -> Column[datetime]:
    return Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now())


def _updated() -> Column[datetime]:
    # Kept current by the `set_updated_at` trigger; fetched back after each UPDATE.
    return Column(
        "updated_at",
        DateTime(timezone=True),
        nullable=False,
        server_default=func.now(),
        server_onupdate=FetchedValue(),
    )


clients = Table(
    "clients",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(100), nullable=False),
    # The client's API key (login); unique, looked up on every login.
    Column("api_key", String(100), unique=True),
    # The exchange secret, encrypted at rest (Fernet); never the plain secret.
    _created(),
    _updated(),
    # scrypt hash of the client's API secret (`domain.services.auth.hash_secret`); the secret is never stored.
    Column("api_secret_hash", String(200)),
    # The client's Binance API key, and its secret encrypted (Fernet, `domain.adapters.exchanges.secrets`).
    Column("binance_api_key", String(100)),
    Column("binance_api_secret_encrypted", Text),
    # Emergency stop (`domain.services.trading_pause`): no new entries since this time; with
    # `trading_sells_held`, no automatic exits either (its scheduled sells were cancelled).
    Column("trading_paused_at", DateTime(timezone=True)),
    Column("trading_sells_held", Boolean, nullable=False, server_default=text("false")),
)

# Refresh tokens (SHA-256 of the token), one family per login; see `domain.services.auth`.
refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("client_id", Integer, ForeignKey("clients.id", ondelete="CASCADE"), nullable=False),
    Column("family_id", String(32), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("rotated_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    _created(),
    Index("ix_refresh_tokens_family", "family_id"),
    Index("ix_refresh_tokens_client", "client_id"),
)

# Every mutation as asked and answered (`domain.audit`). Rows outlive their client (SET NULL).
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("client_id", Integer, ForeignKey("clients.id", ondelete="SET NULL")),
    Column("mutation", String(60), nullable=False),
    Column("arguments", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("result", JSONB),
    Column("error_code", String(40)),
    _created(),
    Index("ix_audit_log_client_id_desc", "client_id", text("id DESC")),
    Index("ix_audit_log_created_at", "created_at"),
)

symbols = Table(
    "symbols",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("symbol", String(20), nullable=False, unique=True),
    Column("base_asset", String(20), nullable=False),
    Column("quote_asset", String(20), nullable=False),
    Column("step_size", money(), nullable=False),
    Column("min_qty", money(), nullable=False),
    Column("tick_size", money(), nullable=False),
    Column("min_notional", money(), nullable=False),
    Column("max_qty", money(), nullable=True),  # LOT_SIZE maxQty (None: no limit known)
    # Binance's symbol status (TRADING, HALT, BREAK, …); is_active is `status == TRADING`.
    Column("status", String(20), nullable=False, server_default=text("'TRADING'")),
    Column("quote_order_qty_allowed", Boolean, nullable=False, server_default=text("true")),
    Column("is_active", Boolean, nullable=False, server_default=text("true")),
    _created(),
    _updated(),
    CheckConstraint("step_size > 0 AND tick_size > 0 AND min_qty >= 0 AND min_notional >= 0", name="filters_positive"),
)

strategies = Table(
    "strategies",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("client_id", Integer, ForeignKey("clients.id", ondelete="CASCADE"), nullable=False),
    Column("symbol_id", Integer, ForeignKey("symbols.id", ondelete="RESTRICT"), nullable=False),
    Column("name", String(100), nullable=False),
    Column("base_price", money(), nullable=False),
    Column("top_price", money(), nullable=False),
    Column("capital_percentage", percent(), nullable=False, server_default=text("20")),
    Column("buy_threshold", percent(), nullable=False, server_default=text("2")),
    Column("sell_threshold", percent(), nullable=False, server_default=text("2")),
    Column("min_profit", percent(), nullable=False, server_default=text("0.5")),
    Column("timeframe", String(4), nullable=False, server_default=text("'4h'")),
    Column("is_active", Boolean, nullable=False, server_default=text("true")),
    Column("is_armed", Boolean, nullable=False, server_default=text("true")),
    Column("channel_broken_at", DateTime(timezone=True)),
    Column("entry_seq", Integer, nullable=False, server_default=text("0")),
    _created(),
    _updated(),
    # Set when the user archives it (`archiveStrategy`): it stops trading and leaves the lists.
    Column("archived_at", DateTime(timezone=True)),
    # Names are unique among a client's strategies that are not archived: an archived one frees its
    # name (a partial unique index; the in-memory store mirrors its WHERE).
    Index(
        "uq_strategies_client_name",
        "client_id",
        "name",
        unique=True,
        postgresql_where=text("archived_at IS NULL"),
    ),
    CheckConstraint("base_price > 0", name="base_positive"),
    CheckConstraint("top_price > base_price", name="top_above_base"),
    CheckConstraint("capital_percentage > 0 AND capital_percentage <= 100", name="capital_percentage_range"),
    CheckConstraint("buy_threshold >= 0 AND buy_threshold < 100", name="buy_threshold_range"),
    CheckConstraint("sell_threshold >= 0 AND sell_threshold < 100", name="sell_threshold_range"),
    CheckConstraint("min_profit >= 0", name="min_profit_nonnegative"),
    Index("ix_strategies_symbol_active", "symbol_id", "is_active"),
)

positions = Table(
    "positions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("strategy_id", Integer, ForeignKey("strategies.id", ondelete="CASCADE"), nullable=False),
    Column("symbol_id", Integer, ForeignKey("symbols.id", ondelete="RESTRICT"), nullable=False),
    Column("client_id", Integer, ForeignKey("clients.id", ondelete="CASCADE"), nullable=False),
    Column("entry_price", money(), nullable=False),
    Column("quantity", money(), nullable=False),
    Column("cost", money(), nullable=False),
    Column("fees", money(), nullable=False, server_default=text("0")),
    Column("dust", money(), nullable=False, server_default=text("0")),
    Column("min_profit", percent(), nullable=False),
    Column("min_sell_price", money(), nullable=False),
    Column("status", _enum(model.PositionStatus, "position_status"), nullable=False),
    Column("exit_price", money()),
    Column("scheduled_exit_price", money()),
    Column("channel_exit_date", DateTime(timezone=True)),
    Column("proceeds", money()),
    Column("realized_profit", money()),
    Column("sell_seq", Integer, nullable=False, server_default=text("0")),
    Column("closed_at", DateTime(timezone=True)),
    _created(),
    _updated(),
    CheckConstraint("quantity >= 0 AND cost >= 0 AND dust >= 0", name="amounts_nonnegative"),
    CheckConstraint("status <> 'scheduled' OR scheduled_exit_price IS NOT NULL", name="scheduled_has_price"),
    CheckConstraint("status <> 'closed' OR closed_at IS NOT NULL", name="closed_has_date"),
    Index("ix_positions_strategy_status", "strategy_id", "status"),
    Index("ix_positions_status", "status"),
    Index("ix_positions_client_id_desc", "client_id", text("id DESC")),
)

orders = Table(
    "orders",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("client_order_id", String(36), nullable=False, unique=True),
    Column("client_id", Integer, ForeignKey("clients.id", ondelete="CASCADE"), nullable=False),
    Column("symbol_id", Integer, ForeignKey("symbols.id", ondelete="RESTRICT"), nullable=False),
    Column("strategy_id", Integer, ForeignKey("strategies.id", ondelete="SET NULL")),
    Column("position_id", Integer, ForeignKey("positions.id", ondelete="SET NULL")),
    Column("side", _enum(model.Side, "order_side"), nullable=False),
    Column("type", _enum(model.OrderType, "order_type"), nullable=False),
    Column("time_in_force", _enum(model.TimeInForce, "time_in_force")),
    Column("purpose", _enum(model.OrderPurpose, "order_purpose"), nullable=False),
    Column("status", _enum(model.OrderStatus, "order_status"), nullable=False),
    Column("requested_quantity", money()),
    Column("requested_quote", money()),
    Column("price", money()),
    Column("filled_quantity", money(), nullable=False, server_default=text("0")),
    Column("filled_quote", money(), nullable=False, server_default=text("0")),
    Column("average_price", money()),
    Column("fee", money(), nullable=False, server_default=text("0")),
    Column("fee_asset", String(20)),
    Column("exchange_order_id", String(64)),
    Column("error", Text),
    _created(),
    _updated(),
    CheckConstraint("requested_quantity IS NOT NULL OR requested_quote IS NOT NULL", name="has_amount"),
    CheckConstraint("client_order_id ~ '^[.A-Z:/a-z0-9_-]{1,36}$'", name="client_order_id_format"),
    Index("ix_orders_status", "status"),
    Index("ix_orders_position", "position_id"),
    Index("ix_orders_client_id_desc", "client_id", text("id DESC")),
)

trades = Table(
    "trades",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("client_id", Integer, ForeignKey("clients.id", ondelete="CASCADE"), nullable=False),
    Column("symbol_id", Integer, ForeignKey("symbols.id", ondelete="RESTRICT"), nullable=False),
    Column("strategy_id", Integer, ForeignKey("strategies.id", ondelete="SET NULL")),
    Column("position_id", Integer, ForeignKey("positions.id", ondelete="SET NULL")),
    Column("order_id", Integer, ForeignKey("orders.id", ondelete="SET NULL")),
    Column("side", _enum(model.Side, "trade_side"), nullable=False),
    Column("price", money(), nullable=False),
    Column("quantity", money(), nullable=False),
    Column("quote_amount", money(), nullable=False),
    Column("fees", money(), nullable=False, server_default=text("0")),
    Column("fee_asset", String(20), nullable=False),
    Column("profit", money()),
    Column("notes", Text),
    Column("executed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("price > 0 AND quantity > 0 AND quote_amount > 0 AND fees >= 0", name="amounts_positive"),
    Index("ix_trades_symbol_executed", "symbol_id", "executed_at"),
    Index("ix_trades_position", "position_id"),
    Index("ix_trades_client_id_desc", "client_id", text("id DESC")),
    # The export (`/export/trades.csv`): a client's trades in time order, keyset on (time, id).
    Index("ix_trades_client_executed", "client_id", "executed_at", "id"),
)

capital_allocations = Table(
    "capital_allocations",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("client_id", Integer, ForeignKey("clients.id", ondelete="CASCADE"), nullable=False),
    Column("strategy_id", Integer, ForeignKey("strategies.id", ondelete="CASCADE"), nullable=False),
    Column("position_id", Integer, ForeignKey("positions.id", ondelete="SET NULL")),
    Column("amount", money(), nullable=False),
    Column("kind", _enum(model.AllocationKind, "allocation_kind"), nullable=False),
    Column("is_profit", Boolean, nullable=False, server_default=text("false")),
    Column("note", Text),
    _created(),
    CheckConstraint("amount <> 0", name="amount_nonzero"),
    CheckConstraint("(kind IN ('profit', 'profit_withdrawal')) = is_profit", name="profit_flag_matches_kind"),
    CheckConstraint(
        "(kind IN ('deposit', 'profit') AND amount > 0)"
        " OR (kind IN ('withdrawal', 'loss', 'profit_withdrawal') AND amount < 0)",
        name="amount_sign_matches_kind",
    ),
    Index("ix_capital_allocations_client", "client_id"),
    Index("ix_capital_allocations_strategy", "strategy_id", "is_profit"),
)

STREAM_EVENTS_PREDICATE = "type IN ('market_stream_down', 'market_stream_up')"

strategy_events = Table(
    "strategy_events",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("strategy_id", Integer, ForeignKey("strategies.id", ondelete="CASCADE"), nullable=False),
    Column("client_id", Integer, ForeignKey("clients.id", ondelete="CASCADE"), nullable=False),
    Column("position_id", Integer, ForeignKey("positions.id", ondelete="SET NULL")),
    Column("type", String(40), nullable=False),
    Column("message", Text, nullable=False),
    Column("data", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    _created(),
    Index("ix_strategy_events_strategy_id_desc", "strategy_id", text("id DESC")),
    Index("ix_strategy_events_client_id_desc", "client_id", text("id DESC")),
    # The alerts' outbox: events not yet dispatched to their endpoints (a handful at any time).
    Column("dispatched_at", DateTime(timezone=True)),
    Index("ix_strategy_events_undispatched", "id", postgresql_where=text("dispatched_at IS NULL")),
    # Each strategy's latest market stream event (`domain.services.market_streams`), without reading
    # its whole history.
    Index("ix_strategy_events_stream", "strategy_id", text("id DESC"), postgresql_where=text(STREAM_EVENTS_PREDICATE)),
)

# Where a client's alerts go (SPEC §4b, `domain.services.alerts`).
alert_endpoints = Table(
    "alert_endpoints",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("client_id", Integer, ForeignKey("clients.id", ondelete="CASCADE"), nullable=False),
    Column("kind", _enum(model.AlertEndpointKind, "alert_endpoint_kind"), nullable=False),
    Column("url", Text),
    Column("telegram_chat_id", String(64)),
    # Webhook signing secret or Telegram bot token, encrypted (Fernet, like exchange secrets).
    Column("secret_encrypted", Text, nullable=False),
    Column("event_types", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("is_active", Boolean, nullable=False, server_default=text("true")),
    Column("disabled_reason", Text),
    Column("failing_since", DateTime(timezone=True)),
    _created(),
    _updated(),
    CheckConstraint("kind <> 'webhook' OR url IS NOT NULL", name="webhook_has_url"),
    CheckConstraint("kind <> 'telegram' OR telegram_chat_id IS NOT NULL", name="telegram_has_chat"),
    Index("ix_alert_endpoints_client", "client_id"),
)

# The delivery log: one row per (endpoint, event), attempted until delivered or given up.
alert_deliveries = Table(
    "alert_deliveries",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("endpoint_id", Integer, ForeignKey("alert_endpoints.id", ondelete="CASCADE"), nullable=False),
    Column("event_id", BigInteger, ForeignKey("strategy_events.id", ondelete="CASCADE"), nullable=False),
    Column("client_id", Integer, ForeignKey("clients.id", ondelete="CASCADE"), nullable=False),
    Column("status", _enum(model.DeliveryStatus, "delivery_status"), nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("last_status_code", Integer),
    Column("last_error", Text),
    Column("next_attempt_at", DateTime(timezone=True)),
    Column("delivered_at", DateTime(timezone=True)),
    _created(),
    _updated(),
    UniqueConstraint("endpoint_id", "event_id", name="uq_alert_deliveries_endpoint_event"),
    CheckConstraint("attempts >= 0", name="attempts_nonnegative"),
    Index("ix_alert_deliveries_endpoint_id_desc", "endpoint_id", text("id DESC")),
    Index("ix_alert_deliveries_due", "next_attempt_at", postgresql_where=text("status = 'pending'")),
)

historical_prices = Table(
    "historical_prices",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("symbol_id", Integer, ForeignKey("symbols.id", ondelete="CASCADE"), nullable=False),
    Column("interval", String(4), nullable=False),
    Column("open_time", DateTime(timezone=True), nullable=False),
    Column("close_time", DateTime(timezone=True), nullable=False),
    Column("open", money(), nullable=False),
    Column("high", money(), nullable=False),
    Column("low", money(), nullable=False),
    Column("close", money(), nullable=False),
    Column("volume", money(), nullable=False, server_default=text("0")),
    UniqueConstraint("symbol_id", "interval", "open_time", name="uq_historical_prices_symbol_interval_open"),
    CheckConstraint(
        "low > 0 AND high >= low AND high >= open AND high >= close AND low <= open AND low <= close AND volume >= 0",
        name="ohlc_consistent",
    ),
    Index("ix_historical_prices_symbol_close", "symbol_id", "close_time"),
)

# Tables whose rows change: an `updated_at` trigger keeps the column current (the plan's trigger).
TABLES_WITH_UPDATED_AT = (
    "clients",
    "symbols",
    "strategies",
    "positions",
    "orders",
    "alert_endpoints",
    "alert_deliveries",
)

_mapped = False


def start_mappers() -> None:
    """Map the domain dataclasses onto the tables (idempotent)."""
    global _mapped
    if _mapped:
        return
    _mapped = True
    mapper_registry.map_imperatively(model.Client, clients, eager_defaults=True)
    mapper_registry.map_imperatively(model.Symbol, symbols, eager_defaults=True)
    mapper_registry.map_imperatively(model.Strategy, strategies, eager_defaults=True)
    mapper_registry.map_imperatively(model.Position, positions, eager_defaults=True)
    mapper_registry.map_imperatively(model.Order, orders, eager_defaults=True)
    mapper_registry.map_imperatively(model.Trade, trades, eager_defaults=True)
    mapper_registry.map_imperatively(model.CapitalAllocation, capital_allocations, eager_defaults=True)
    mapper_registry.map_imperatively(model.StrategyEvent, strategy_events, eager_defaults=True)
    mapper_registry.map_imperatively(model.Candle, historical_prices, eager_defaults=True)
    mapper_registry.map_imperatively(model.RefreshToken, refresh_tokens, eager_defaults=True)
    mapper_registry.map_imperatively(model.AuditEntry, audit_log, eager_defaults=True)
    mapper_registry.map_imperatively(model.AlertEndpoint, alert_endpoints, eager_defaults=True)
    mapper_registry.map_imperatively(model.AlertDelivery, alert_deliveries, eager_defaults=True)
