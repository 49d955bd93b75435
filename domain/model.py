"""Domain entities: plain dataclasses with `Decimal` money and aware UTC datetimes.

They are mapped imperatively onto tables by `domain.adapters.persistence.orm`, so the domain stays free of
persistence code (the cosmicpython way). Entities compare by identity (`eq=False`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from domain import channel as ch


class PositionStatus(enum.StrEnum):
    OPEN = "open"
    SCHEDULED = "scheduled"
    CLOSED = "closed"


class Side(enum.StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderType(enum.StrEnum):
    MARKET = "market"
    LIMIT = "limit"


class TimeInForce(enum.StrEnum):
    GTC = "GTC"
    IOC = "IOC"


class OrderStatus(enum.StrEnum):
    NEW = "new"  # recorded, not yet acknowledged by the exchange
    OPEN = "open"  # resting on the exchange (limit orders)
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    EXPIRED = "expired"  # IOC remainder, nothing (more) filled
    REJECTED = "rejected"
    UNKNOWN = "unknown"  # sent, outcome not known: reconciliation settles it


class OrderPurpose(enum.StrEnum):
    ENTRY = "entry"  # rule 1, system buy
    EXIT = "exit"  # rule 4, system sell
    SCHEDULED_EXIT = "scheduled_exit"  # rule 6
    MANUAL_BUY = "manual_buy"  # rule 8
    MANUAL_SELL = "manual_sell"  # rule 8, never below min_sell
    LOSS_EXIT = "loss_exit"  # rule 8, acceptLoss


class AllocationKind(enum.StrEnum):
    DEPOSIT = "deposit"  # principal in
    WITHDRAWAL = "withdrawal"  # principal out
    LOSS = "loss"  # realised loss of an acceptLoss sell: reduces principal
    PROFIT = "profit"  # realised profit of a sell: segregated
    PROFIT_WITHDRAWAL = "profit_withdrawal"  # profit paid out

    @property
    def is_profit(self) -> bool:
        return self in (AllocationKind.PROFIT, AllocationKind.PROFIT_WITHDRAWAL)


@dataclass(eq=False)
class Client:
    name: str
    api_key: str | None = None  # public half of the client's API credentials (login)
    id: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    # scrypt hash of the client's API secret (login); the secret itself is shown once, never stored.
    api_secret_hash: str | None = None
    # The client's Binance API key (sent in clear in every request's header) and secret (encrypted
    # with CRIPTOREN_SECRET_KEY, never in plain text). Without them the client trades on paper.
    binance_api_key: str | None = None
    binance_api_secret_encrypted: str | None = field(default=None, repr=False)
    # Emergency stop (`domain.services.trading_pause`): set, no new entries; `trading_sells_held`, no
    # automatic exits either until trading resumes.
    trading_paused_at: datetime | None = None
    trading_sells_held: bool = False


@dataclass(frozen=True)
class PercentPriceBySide:
    """Binance's PERCENT_PRICE_BY_SIDE filter (filters.md): a BUY's price must lie within
    [avg * bid_down, avg * bid_up], a SELL's within [avg * ask_down, avg * ask_up], where avg is the
    average price of the last `avg_price_mins` minutes (the last price when 0)."""

    bid_up: Decimal
    bid_down: Decimal
    ask_up: Decimal
    ask_down: Decimal
    avg_price_mins: int = 5


@dataclass(frozen=True)
class SymbolFilters:
    """Binance-style exchange filters (filters.md): LOT_SIZE, PRICE_FILTER and MIN_NOTIONAL/NOTIONAL
    (`Symbol` stores these), and those the exchange adapters read from exchangeInfo for the checks
    before sending (`domain.filters`): LOT_SIZE's maximum, MARKET_LOT_SIZE, NOTIONAL's maximum and
    how it applies to MARKET orders, PERCENT_PRICE_BY_SIDE, MAX_NUM_ORDERS. A zero disables a bound,
    as in exchangeInfo."""

    step_size: Decimal
    min_qty: Decimal
    tick_size: Decimal
    min_notional: Decimal
    max_qty: Decimal = Decimal(0)
    market_min_qty: Decimal = Decimal(0)
    market_max_qty: Decimal = Decimal(0)
    market_step_size: Decimal = Decimal(0)
    max_notional: Decimal = Decimal(0)
    apply_min_to_market: bool = True
    apply_max_to_market: bool = False
    percent_price: PercentPriceBySide | None = None
    max_num_orders: int = 0


@dataclass(eq=False)
class Symbol:
    symbol: str
    base_asset: str
    quote_asset: str
    step_size: Decimal
    min_qty: Decimal
    tick_size: Decimal
    min_notional: Decimal
    is_active: bool = True  # trading: orders may be sent (Binance's status is TRADING)
    id: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    max_qty: Decimal | None = None
    status: str = "TRADING"
    quote_order_qty_allowed: bool = True  # MARKET buys by quote amount (quoteOrderQty)

    @property
    def filters(self) -> SymbolFilters:
        """The filters stored with the symbol (LOT_SIZE's maximum when known); the exchange adapters
        add those they read from exchangeInfo before sending."""
        return SymbolFilters(
            self.step_size, self.min_qty, self.tick_size, self.min_notional, max_qty=self.max_qty or Decimal(0)
        )


@dataclass(eq=False)
class Strategy:
    client_id: int
    symbol_id: int
    name: str
    base_price: Decimal
    top_price: Decimal
    capital_percentage: Decimal = ch.DEFAULT_CAPITAL_PERCENTAGE
    buy_threshold: Decimal = ch.DEFAULT_BUY_THRESHOLD
    sell_threshold: Decimal = ch.DEFAULT_SELL_THRESHOLD
    min_profit: Decimal = ch.DEFAULT_MIN_PROFIT
    timeframe: str = ch.DEFAULT_TIMEFRAME
    is_active: bool = True
    # Rule 1: one entry per bounce. Armed on creation, re-activation from inactive and a change of
    # base or buy threshold; disarmed by an entry (or a skipped one); re-armed when the price
    # touches the base.
    is_armed: bool = True
    # Rule 5: set when a timeframe candle closes below the base; no entries until re-armed by the user.
    channel_broken_at: datetime | None = None
    # Sequence of entry attempts: part of the deterministic client order id of each entry.
    entry_seq: int = 0
    id: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    # Retired by the user (`archive`): no trading, out of the lists, history kept, name free again.
    archived_at: datetime | None = None

    @classmethod
    def open(
        cls, client_id: int, symbol_id: int, name: str, channel: ch.Channel, *, is_active: bool = True
    ) -> Strategy:
        """A new strategy on `channel`: armed (rule 1)."""
        strategy = cls(client_id=client_id, symbol_id=symbol_id, name=name, base_price=channel.base,
                       top_price=channel.top, is_active=is_active, is_armed=True)  # fmt: skip
        strategy._set_channel(channel)
        return strategy

    @property
    def channel(self) -> ch.Channel:
        """The channel's parameters as one value (its columns are stored flat)."""
        return ch.Channel(
            self.base_price, self.top_price, self.capital_percentage, self.buy_threshold, self.sell_threshold,
            self.min_profit, self.timeframe,
        )  # fmt: skip

    @property
    def levels(self) -> ch.Levels:
        return self.channel.levels

    @property
    def is_channel_broken(self) -> bool:
        return self.channel_broken_at is not None

    @property
    def is_archived(self) -> bool:
        return self.archived_at is not None

    @property
    def can_enter(self) -> bool:
        """Rule 1: only an active, armed strategy whose channel holds may enter."""
        return self.is_active and self.is_armed and not self.is_channel_broken and not self.is_archived

    def _set_channel(self, channel: ch.Channel) -> None:
        self.base_price, self.top_price = channel.base, channel.top
        self.capital_percentage, self.buy_threshold = channel.capital_percentage, channel.buy_threshold
        self.sell_threshold, self.min_profit, self.timeframe = (
            channel.sell_threshold,
            channel.min_profit,
            channel.timeframe,
        )

    def change_channel(self, channel: ch.Channel) -> bool:
        """A user's change of the channel. Only a new entry level — its base or buy threshold changed
        — arms the strategy and ends a channel break (rules 1, 5); any other edit leaves the arming
        as it was, so that it cannot allow a second entry in the same bounce. Returns whether it
        armed."""
        moved = self.channel.entry_moved(channel)
        self._set_channel(channel)
        if moved:
            self.arm()
        return moved

    def arm(self) -> None:
        """Armed again, and a channel break ended (rules 1, 5)."""
        self.is_armed = True
        self.channel_broken_at = None

    def disarm(self) -> None:
        """Rule 1: an entry, or an entry skipped, disarms until the price touches the base."""
        self.is_armed = False

    def rearm_on(self, price: Decimal) -> bool:
        """Rule 1: an active, disarmed, unbroken strategy is re-armed when the price touches B.
        Returns whether it was."""
        if (
            self.is_active
            and not self.is_armed
            and not self.is_channel_broken
            and ch.rearm_triggered(price, self.levels)
        ):
            self.is_armed = True
            return True
        return False

    def break_channel(self, at: datetime) -> None:
        """Rule 5: a timeframe close below B: no entries until the user re-arms it."""
        self.channel_broken_at = at
        self.is_armed = False

    def activate(self) -> bool:
        """Re-activation from inactive arms the strategy and ends a channel break (rules 1, 5);
        activating an active strategy changes nothing. Returns whether it was re-activated."""
        if self.is_active:
            return False
        self.is_active = True
        self.arm()
        return True

    def deactivate(self) -> None:
        self.is_active = False

    def archive(self, at: datetime) -> None:
        """Retired: inactive for good (the engine no longer looks at it); its history stays."""
        self.is_active = False
        self.is_armed = False
        self.archived_at = at


@dataclass(eq=False)
class Position:
    strategy_id: int
    symbol_id: int
    client_id: int
    entry_price: Decimal  # average fill price of the buy
    quantity: Decimal  # Q: net quantity after the buy fee, rounded down to the lot step
    cost: Decimal  # C: quote spent, buy fees included
    fees: Decimal  # buy fee, valued in the quote asset
    min_profit: Decimal  # m used for min_sell (the strategy's, or the user's when scheduled by hand)
    min_sell_price: Decimal  # rule 3
    dust: Decimal = Decimal(0)  # net quantity below the lot step: recorded, never sold
    status: PositionStatus = PositionStatus.OPEN
    exit_price: Decimal | None = None
    scheduled_exit_price: Decimal | None = None
    channel_exit_date: datetime | None = None
    proceeds: Decimal | None = None  # quote received on the sell, after its fee
    realized_profit: Decimal | None = None
    sell_seq: int = 0  # sell attempts: part of the deterministic client order id
    closed_at: datetime | None = None
    id: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(eq=False)
class Order:
    client_order_id: str
    client_id: int
    symbol_id: int
    side: Side
    type: OrderType
    purpose: OrderPurpose
    strategy_id: int | None = None
    position_id: int | None = None
    time_in_force: TimeInForce | None = None
    status: OrderStatus = OrderStatus.NEW
    requested_quantity: Decimal | None = None
    requested_quote: Decimal | None = None
    price: Decimal | None = None  # limit price
    filled_quantity: Decimal = Decimal(0)
    filled_quote: Decimal = Decimal(0)
    average_price: Decimal | None = None
    fee: Decimal = Decimal(0)
    fee_asset: str | None = None
    exchange_order_id: str | None = None
    error: str | None = None
    id: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(eq=False)
class Trade:
    client_id: int
    symbol_id: int
    side: Side
    price: Decimal
    quantity: Decimal  # gross executed quantity
    quote_amount: Decimal  # gross quote of the fill
    fees: Decimal  # in fee_asset
    fee_asset: str
    executed_at: datetime
    strategy_id: int | None = None
    position_id: int | None = None
    order_id: int | None = None
    profit: Decimal | None = None  # sells: proceeds after fees minus cost
    notes: str | None = None
    id: int | None = None


@dataclass(eq=False)
class CapitalAllocation:
    client_id: int
    strategy_id: int
    amount: Decimal  # signed: deposits/profit positive, withdrawals/losses negative
    kind: AllocationKind
    is_profit: bool
    position_id: int | None = None
    note: str | None = None
    id: int | None = None
    created_at: datetime | None = None


@dataclass(eq=False)
class StrategyEvent:
    """Something that happened to a strategy, kept for the user (and published by the live loop)."""

    strategy_id: int
    client_id: int
    type: str
    message: str
    position_id: int | None = None
    data: dict[str, Any] = field(default_factory=dict)
    id: int | None = None
    created_at: datetime | None = None
    # The alerts' outbox (SPEC §4b): None until the dispatcher has made its deliveries.
    dispatched_at: datetime | None = None


@dataclass(eq=False)
class Candle:
    symbol_id: int
    interval: str
    open_time: datetime
    close_time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    id: int | None = None


@dataclass(frozen=True)
class Ledger:
    """A strategy's capital, derived from its allocations and positions (rules 2 and 7)."""

    principal: Decimal  # bankroll: sum of non-profit allocations
    committed: Decimal  # cost of open and scheduled positions
    profit: Decimal  # segregated realised profit, net of withdrawals

    @property
    def free(self) -> Decimal:
        return self.principal - self.committed

    @property
    def total(self) -> Decimal:
        return self.principal + self.profit


@dataclass(eq=False)
class RefreshToken:
    """A refresh token, stored as the SHA-256 of the token (the token itself is given out once).

    Tokens of one login form a *family*: each refresh rotates the token (the old one is marked
    `rotated_at`), and a rotated token presented again revokes the whole family."""

    client_id: int
    family_id: str
    token_hash: str
    expires_at: datetime
    created_at: datetime | None = None
    rotated_at: datetime | None = None
    revoked_at: datetime | None = None
    id: int | None = None


@dataclass(eq=False)
class AuditEntry:
    """One mutation as asked and answered: who, when, what (secrets redacted), and the outcome."""

    mutation: str
    arguments: dict[str, Any]
    client_id: int | None = None
    result: dict[str, Any] | None = None
    error_code: str | None = None  # None: it succeeded
    created_at: datetime | None = None
    id: int | None = None


class AlertEndpointKind(enum.StrEnum):
    WEBHOOK = "webhook"
    TELEGRAM = "telegram"


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"  # waiting for its first attempt or a retry
    DELIVERED = "delivered"  # a 2xx answer (Telegram: ok)
    FAILED = "failed"  # out of retries, or the receiver answered 410 Gone
    ABANDONED = "abandoned"  # its endpoint was disabled or deleted before it got through


@dataclass(eq=False)
class AlertEndpoint:
    """Where a client's alerts go (SPEC §4b): a webhook URL (with its signing secret) or a Telegram
    chat (with the bot's token). The secret and the token are stored encrypted."""

    client_id: int
    kind: AlertEndpointKind
    event_types: list[str]
    secret_encrypted: str  # webhook: the signing secret; Telegram: the bot token
    url: str | None = None
    telegram_chat_id: str | None = None
    is_active: bool = True
    disabled_reason: str | None = None
    failing_since: datetime | None = None  # first failure of the current run of failures
    id: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(eq=False)
class AlertDelivery:
    """One event for one endpoint, attempted until delivered or given up (the delivery log)."""

    endpoint_id: int
    event_id: int
    client_id: int
    status: DeliveryStatus = DeliveryStatus.PENDING
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str | None = None
    next_attempt_at: datetime | None = None
    delivered_at: datetime | None = None
    id: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
