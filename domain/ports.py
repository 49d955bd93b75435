"""Interfaces the domain needs from the outside world (adapters in `domain.adapters`, fakes in tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol, Self, runtime_checkable

from domain.model import (
    AlertDelivery,
    AlertEndpoint,
    AuditEntry,
    Candle,
    CapitalAllocation,
    Client,
    Ledger,
    Order,
    OrderStatus,
    Position,
    PositionStatus,
    RefreshToken,
    Side,
    Strategy,
    StrategyEvent,
    Symbol,
    TimeInForce,
    Trade,
)
from domain.rows import PositionRow, StrategyRow, SymbolRow, TradeRow


class Clock(Protocol):
    def now(self) -> datetime: ...


@dataclass(frozen=True)
class Page:
    """Keyset page request: rows with id < `before_id` (newest first), at most `limit` of them."""

    limit: int
    before_id: int | None = None


class ClientRepository(Protocol):
    async def get(self, client_id: int) -> Client | None: ...
    async def get_by_name(self, name: str) -> Client | None: ...
    async def get_by_api_key(self, api_key: str) -> Client | None: ...
    async def exists(self) -> bool:
        """True when the database holds at least one client."""
        ...

    async def list_ids(self) -> Sequence[int]:
        """Every client's id, in order."""
        ...

    async def paused(self, client_ids: Collection[int]) -> dict[int, bool]:
        """The clients among these whose trading is paused: id -> whether their automatic sells are
        held too."""
        ...

    def add(self, client: Client) -> None: ...


class SymbolRepository(Protocol):
    async def get(self, symbol_id: int) -> Symbol | None: ...
    async def get_by_name(self, symbol: str) -> Symbol | None: ...
    async def list(self) -> Sequence[Symbol]: ...
    async def watched(self) -> Sequence[Symbol]:
        """Symbols the market workers consume: those with an active strategy or live positions."""
        ...

    def add(self, symbol: Symbol) -> None: ...


class SymbolDirectory(Protocol):
    """Where the exchange lists its spot symbols and their filters (Binance: exchangeInfo)."""

    async def exchange_symbols(self) -> Sequence[Symbol]:
        """Every spot symbol the exchange lists, as `Symbol`s without ids (status, assets, filters)."""
        ...


@dataclass
class TickRow:
    """What a price move needs of one strategy, read under its row lock (`lock_for_tick`)."""

    strategy: Strategy
    principal: Decimal  # its bankroll: the sum of its non-profit allocations (rule 2)
    live: list[Position]  # its open and scheduled positions, oldest first
    paused: bool = False  # the client's emergency stop: no new entries
    sells_held: bool = False  # ... and no automatic sells either

    @classmethod
    def of(cls, strategy: Strategy, principal: Decimal, live: list[Position], pause: bool | None) -> TickRow:
        """`pause` as the clients table holds it: None (not paused), else whether sells are held."""
        return cls(strategy, principal, live, paused=pause is not None, sells_held=bool(pause))


class StrategyRepository(Protocol):
    async def get(self, strategy_id: int, *, for_update: bool = False) -> Strategy | None: ...
    async def list_by_client(
        self, client_id: int, page: Page, *, include_archived: bool = False
    ) -> Sequence[Strategy]: ...
    async def list_active_by_symbol(
        self, symbol_id: int, strategy_ids: Collection[int] | None = None
    ) -> Sequence[Strategy]:
        """Strategies the engine looks at (active, or holding positions), locked for update."""
        ...

    async def lock_for_tick(self, symbol_id: int, strategy_ids: Collection[int] | None = None) -> Sequence[TickRow]:
        """The engine's strategies of a symbol (as `list_active_by_symbol`), each with its principal,
        its open and scheduled positions and its client's trading pause, strategy rows locked — all
        read after the locks are held (a concurrent withdrawal or buy is seen)."""
        ...

    async def list_by_symbol(self, symbol_id: int, strategy_ids: Collection[int] | None = None) -> Sequence[Strategy]:
        """Strategies of a symbol that are not archived (no lock), optionally only some."""
        ...

    async def find(self, client_id: int, name: str) -> Strategy | None:
        """The client's strategy of that name that is not archived (archiving frees a name)."""
        ...

    def add(self, strategy: Strategy) -> None: ...


class PositionRepository(Protocol):
    async def get(self, position_id: int, *, for_update: bool = False) -> Position | None: ...
    async def list_live_by_strategy(self, strategy_id: int) -> Sequence[Position]:
        """Open and scheduled positions of a strategy, oldest first."""
        ...

    async def list_live_by_strategies(
        self, strategy_ids: Collection[int], *, for_update: bool = False
    ) -> Sequence[Position]:
        """Open and scheduled positions of several strategies, oldest first."""
        ...

    async def list(
        self,
        page: Page,
        *,
        client_id: int | None = None,
        status: PositionStatus | None = None,
        strategy_id: int | None = None,
        since: datetime | None = None,
    ) -> Sequence[Position]: ...
    def add(self, position: Position) -> None: ...


class OrderRepository(Protocol):
    async def get_by_client_order_id(self, client_order_id: str, *, for_update: bool = False) -> Order | None:
        """The order by its client order id; with `for_update`, locked and read afresh."""
        ...

    async def list_by_status(self, statuses: Sequence[OrderStatus]) -> Sequence[Order]: ...
    async def count_by_status(self) -> dict[str, int]:
        """How many orders are in each status (one statement; for the metrics)."""
        ...

    async def list_by_position(
        self, position_id: int, statuses: Sequence[OrderStatus], *, for_update: bool = False
    ) -> Sequence[Order]:
        """A position's orders in those statuses, oldest first."""
        ...

    async def list(
        self,
        page: Page,
        *,
        client_id: int | None = None,
        strategy_id: int | None = None,
        position_id: int | None = None,
        statuses: Sequence[OrderStatus] | None = None,
    ) -> Sequence[Order]:
        """Orders, newest first (keyset page)."""
        ...

    def add(self, order: Order) -> None: ...


@dataclass(frozen=True)
class ExportedTrade:
    """One fill as the trade export writes it: the trade with its symbol, strategy and order."""

    id: int
    executed_at: datetime
    symbol: str
    side: Side
    price: Decimal
    quantity: Decimal
    quote_amount: Decimal
    fee: Decimal
    fee_asset: str
    realized_profit: Decimal | None
    strategy_id: int | None
    strategy: str | None
    position_id: int | None
    client_order_id: str | None


class TradeRepository(Protocol):
    async def list(
        self,
        page: Page,
        *,
        client_id: int | None = None,
        symbol_id: int | None = None,
        strategy_id: int | None = None,
        position_id: int | None = None,
    ) -> Sequence[Trade]: ...
    async def export_page(
        self,
        client_id: int,
        after: tuple[datetime, int] | None,
        limit: int,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        strategy_id: int | None = None,
    ) -> Sequence[ExportedTrade]:
        """A client's fills in time order (executed at, then id), those after `after` (a previous
        page's last (executed at, id)), at most `limit`: one keyset page of the export."""
        ...

    def add(self, trade: Trade) -> None: ...


class AllocationRepository(Protocol):
    async def ledger(self, strategy_id: int) -> Ledger:
        """Principal, committed cost of live positions and segregated profit of one strategy."""
        ...

    async def client_ledgers(self, client_id: int) -> dict[str, Ledger]:
        """A client's capital per quote asset (its strategies' symbols'): amounts in different assets
        are never added together."""
        ...

    async def principal(self, strategy_id: int) -> Decimal:
        """The strategy's bankroll: the sum of its non-profit allocations (rule 2)."""
        ...

    def add(self, allocation: CapitalAllocation) -> None: ...


class EventRepository(Protocol):
    def add(self, event: StrategyEvent) -> None: ...
    async def list_by_strategy(self, strategy_id: int, limit: int) -> Sequence[StrategyEvent]: ...
    async def list(
        self, page: Page, *, client_id: int | None = None, types: Sequence[str] | None = None
    ) -> Sequence[StrategyEvent]:
        """Events, newest first (keyset page), optionally of some types only."""
        ...


class CandleRepository(Protocol):
    async def upsert(self, candles: Sequence[Candle]) -> int: ...
    async def history(self, symbol_id: int, interval: str, limit: int) -> Sequence[Candle]:
        """The latest `limit` candles, oldest first."""
        ...

    async def latest_close(self, symbol_id: int) -> tuple[Decimal, datetime] | None: ...

    async def price_csv(
        self,
        symbol_id: int,
        interval: str,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int | None = None,
    ) -> bytes:
        """The candles with open time in [start, end) as CSV lines `open_time_ms,open,high,low,close`
        (prices exact, as stored), oldest first; with `limit`, the latest `limit` of them. The
        leanest form for a backtest over a large range (`CandleSeries.from_csv`)."""
        ...

    async def aggregate(
        self, symbol_id: int, source_interval: str, interval: str, open_time: datetime, close_time: datetime
    ) -> Candle | None:
        """The `interval` candle [open_time, close_time) built from stored finer candles, if any."""
        ...

    async def last_close_time(self, symbol_id: int, interval: str) -> datetime | None: ...


class ReportRepository(Protocol):
    """Aggregates for the reports (one statement each)."""

    async def strategy_profit(self, strategy_id: int) -> dict[str, Any]: ...
    async def positions_summary(self, client_id: int | None, since: datetime) -> dict[str, Any]: ...
    async def trades_summary(self, symbol_id: int, client_id: int | None) -> dict[str, Any]: ...


class RefreshTokenRepository(Protocol):
    async def get_by_hash(self, token_hash: str, *, for_update: bool = False) -> RefreshToken | None: ...
    async def revoke_family(self, family_id: str, at: datetime) -> int:
        """Revoke every token of a family not revoked yet; returns how many."""
        ...

    async def revoke_client(self, client_id: int, at: datetime) -> int: ...
    def add(self, token: RefreshToken) -> None: ...


class AuditRepository(Protocol):
    def add(self, entry: AuditEntry) -> None: ...
    async def list_by_client(self, client_id: int, limit: int) -> Sequence[AuditEntry]:
        """The client's newest entries first."""
        ...


class AlertRepository(Protocol):
    """Alert endpoints, the delivery log and the events' outbox (SPEC §4b)."""

    def add(self, obj: AlertEndpoint | AlertDelivery) -> None: ...
    async def endpoint(self, endpoint_id: int, *, for_update: bool = False) -> AlertEndpoint | None: ...
    async def endpoints(self, client_id: int) -> Sequence[AlertEndpoint]: ...
    async def active_endpoints(self, client_ids: Collection[int]) -> Sequence[AlertEndpoint]: ...
    async def delete_endpoint(self, endpoint_id: int) -> None: ...
    async def delivery(self, delivery_id: int, *, for_update: bool = False) -> AlertDelivery | None: ...
    async def deliveries(self, endpoint_id: int, page: Page) -> Sequence[AlertDelivery]:
        """An endpoint's deliveries, newest first."""
        ...

    async def event(self, event_id: int) -> StrategyEvent | None: ...
    async def undispatched_events(self, limit: int) -> Sequence[StrategyEvent]:
        """Events not dispatched yet, oldest first, locked (skipping those another dispatcher holds)."""
        ...

    async def due_deliveries(self, now: datetime, limit: int) -> Sequence[AlertDelivery]: ...
    async def count_by_status(self) -> dict[str, int]:
        """How many deliveries are in each status (the API's metrics)."""
        ...

    async def earlier_pending(self, delivery: AlertDelivery, event: StrategyEvent) -> bool:
        """Whether an earlier event of the same position (or strategy, without one) is pending for
        the delivery's endpoint."""
        ...

    async def last_stream_events(self, strategy_ids: Collection[int]) -> dict[int, StrategyEvent]:
        """Each strategy's latest market stream event (down or up), if it has one."""
        ...


@dataclass(frozen=True)
class SendOutcome:
    """What a receiver answered to one attempt: `ok` for a 2xx (Telegram: ok), `gone` for a 410."""

    ok: bool
    status_code: int | None = None
    error: str | None = None

    @property
    def gone(self) -> bool:
        return self.status_code == 410


class AlertTransport(Protocol):
    """Sends alerts (adapter: `domain.adapters.alerts`): a signed webhook POST, or a Telegram message."""

    async def check_url(self, url: str) -> None:
        """Raise `ValidationError` for a URL that is not http(s) or resolves to a private address
        (unless the server allows them)."""
        ...

    async def post_webhook(self, url: str, secret: str, event_id: str, body: bytes) -> SendOutcome: ...
    async def send_telegram(self, bot_token: str, chat_id: str, text: str) -> SendOutcome: ...


class BatchReader(Protocol):
    """The API's reads: batched for its DataLoaders (one statement per batch, whatever its size)
    and its list queries' pages. Strategies, symbols, positions and trades come as plain rows
    (`domain.rows`): read and written out, never changed."""

    async def strategies(self, ids: Sequence[int]) -> Sequence[StrategyRow]: ...
    async def symbols(self, ids: Sequence[int]) -> Sequence[SymbolRow]: ...
    async def positions(self, ids: Sequence[int]) -> Sequence[PositionRow]: ...
    async def trades_by_position(self, position_ids: Sequence[int]) -> Sequence[TradeRow]:
        """The positions' trades, oldest first."""
        ...

    async def positions_by_strategy(
        self, strategy_ids: Sequence[int], status: PositionStatus | None, per_strategy: int
    ) -> Sequence[PositionRow]:
        """The newest `per_strategy` positions of each strategy (of `status`), newest first."""
        ...

    async def strategies_page(
        self, client_id: int, page: Page, *, include_archived: bool = False
    ) -> Sequence[StrategyRow]:
        """A client's strategies, newest first (keyset page); archived ones only when asked."""
        ...

    async def positions_page(
        self,
        page: Page,
        *,
        client_id: int | None = None,
        status: PositionStatus | None = None,
        strategy_id: int | None = None,
        since: datetime | None = None,
    ) -> Sequence[PositionRow]:
        """Positions, newest first (keyset page); with `since`, those live now or opened or closed
        since then."""
        ...

    async def trades_page(
        self,
        page: Page,
        *,
        client_id: int | None = None,
        symbol_id: int | None = None,
        strategy_id: int | None = None,
        position_id: int | None = None,
    ) -> Sequence[TradeRow]:
        """Trades, newest first (keyset page)."""
        ...

    async def ledgers(self, strategy_ids: Sequence[int]) -> dict[int, Ledger]: ...
    async def events_by_strategy(
        self,
        strategy_ids: Sequence[int],
        per_strategy: int,
        *,
        before_id: int | None = None,
        types: Sequence[str] | None = None,
    ) -> Sequence[StrategyEvent]:
        """The newest `per_strategy` events of each strategy (below `before_id`, of `types`)."""
        ...

    async def orders(self, ids: Sequence[int]) -> Sequence[Order]: ...
    async def orders_by_position(self, position_ids: Sequence[int]) -> Sequence[Order]:
        """The positions' orders, oldest first."""
        ...


class UnitOfWork(Protocol):
    """One database transaction. Rolls back on exit unless `commit()` was called (STYLE §2).

    The repositories are read-only members (properties): callers use them, never replace them, and
    an adapter may hold its own repository classes (a settable protocol member would have to be
    declared with exactly the protocol's type)."""

    @property
    def clients(self) -> ClientRepository: ...
    @property
    def symbols(self) -> SymbolRepository: ...
    @property
    def strategies(self) -> StrategyRepository: ...
    @property
    def positions(self) -> PositionRepository: ...
    @property
    def orders(self) -> OrderRepository: ...
    @property
    def trades(self) -> TradeRepository: ...
    @property
    def allocations(self) -> AllocationRepository: ...
    @property
    def events(self) -> EventRepository: ...
    @property
    def candles(self) -> CandleRepository: ...
    @property
    def reports(self) -> ReportRepository: ...
    @property
    def batch(self) -> BatchReader: ...
    @property
    def refresh_tokens(self) -> RefreshTokenRepository: ...
    @property
    def audit(self) -> AuditRepository: ...
    @property
    def alerts(self) -> AlertRepository: ...

    async def __aenter__(self) -> Self: ...
    async def __aexit__(self, *args: object) -> None: ...
    async def commit(self) -> None: ...
    async def rollback(self) -> None: ...
    async def flush(self) -> None:
        """Send pending changes so that new rows get their ids (and unique constraints fire)."""
        ...


class UnitOfWorkFactory(Protocol):
    def __call__(self) -> UnitOfWork: ...


class ReadSnapshot(Protocol):
    """The reads of one API request, in one read-only transaction (REPEATABLE READ): every read
    sees the database as of the first one, so the nested fields of a response agree with each other
    (a write committed between two of its reads is not half-visible). Opened at the first read,
    ended by `close()` — when the response is sent, errors included. Reads may run concurrently
    (the resolvers of a response do); they take turns on the snapshot's one connection."""

    def unit(self) -> UnitOfWork:
        """A unit of work reading in the snapshot: `async with` it as any unit of work (leaving it
        ends nothing); it never commits (`commit()` raises). Once `isolate()`d, a unit of work of its
        own instead, as `UnitOfWorkFactory` gives."""
        ...

    def isolate(self) -> None:
        """Every later read in a transaction of its own: for mutations (their payloads are read after
        their commits, each seeing its own) and subscriptions (nothing held open while they last)."""
        ...

    async def close(self) -> None:
        """End the snapshot's transaction, if one was opened (a later read opens another)."""
        ...


class ReadSnapshotFactory(Protocol):
    def snapshot(self) -> ReadSnapshot: ...


# ---------------------------------------------------------------- exchange


@dataclass(frozen=True)
class Execution:
    """The exchange's view of one order after a request (fills aggregated)."""

    client_order_id: str
    exchange_order_id: str
    status: OrderStatus
    side: Side
    executed_quantity: Decimal  # gross, base asset
    quote_quantity: Decimal  # gross, quote asset
    fee: Decimal
    fee_asset: str
    executed_at: datetime
    # Price of the fee asset in the quote asset at the fill, when the fee is in a third asset (BNB).
    fee_asset_price_in_quote: Decimal | None = None

    @property
    def average_price(self) -> Decimal | None:
        if self.executed_quantity == 0:
            return None
        return self.quote_quantity / self.executed_quantity


class Exchange(Protocol):
    """The exchange port (SPEC §2). Adapters: paper, Binance, and `ExchangeRouter` (each client on
    its own account: Binance with the client's keys, else paper).

    Adapters raise `TemporaryExchangeError` (retry later, outcome maybe unknown) or
    `PermanentExchangeError` (refused). Before sending, an adapter refuses what the exchange would
    (`domain.filters`): `FilterFailure` (never passes as it is), `OrderNotAllowedNow` (may pass later:
    PERCENT_PRICE_BY_SIDE, MAX_NUM_ORDERS), `InsufficientBalance` (a real account's free balance,
    SPEC §4b) — nothing is sent then.
    """

    name: str
    # True when a scheduled sell rests on the exchange as a LIMIT GTC order that fills by itself
    # (Binance); False when the engine sends it on the tick that reaches its price (paper). SPEC §4.6.
    rests_limit_orders: bool

    async def for_client(self, client_id: int) -> Exchange:
        """The account that trades for this client: the adapter itself for a one-account adapter
        (paper, one Binance key); the client's own account for a router."""
        ...

    def fee_rate(self, symbol: Symbol) -> Decimal: ...

    async def market_buy(
        self,
        symbol: Symbol,
        client_order_id: str,
        *,
        quote_amount: Decimal | None = None,
        quantity: Decimal | None = None,
    ) -> Execution: ...

    async def market_sell(self, symbol: Symbol, client_order_id: str, quantity: Decimal) -> Execution: ...

    async def limit_sell(
        self,
        symbol: Symbol,
        client_order_id: str,
        quantity: Decimal,
        price: Decimal,
        time_in_force: TimeInForce,
    ) -> Execution: ...

    async def cancel_order(self, symbol: Symbol, client_order_id: str) -> Execution | None: ...

    async def get_order(self, symbol: Symbol, client_order_id: str) -> Execution | None: ...


@runtime_checkable
class SimulatedRestingSells(Protocol):
    """Capability of an exchange on which orders do not rest (paper), to fill a scheduled sell as
    its resting LIMIT order would fill on Binance (SPEC §4 rules 6 and 10):

    - placed at or below the market, that order is marketable: it fills at once, at the market's
      price (`limit_sell`, sent when the position is scheduled and `market_price` reaches it);
    - resting above the market, it fills at its limit once the price reaches it — the engine sends
      it on that tick (`fill_resting_sell`), even when the tick jumped past the limit.
    """

    async def market_price(self, symbol: Symbol) -> Decimal | None:
        """The price a new order would trade at now (None: not known yet)."""
        ...

    async def fill_resting_sell(
        self, symbol: Symbol, client_order_id: str, quantity: Decimal, price: Decimal
    ) -> Execution: ...


@runtime_checkable
class OrderUpdateStream(Protocol):
    """Optional capability of an exchange on which orders rest (Binance, or a router over Binance
    accounts): their later fills, partial fills, cancels and expiries, as cumulative `Execution`s
    (the user data stream, polling as the fallback). Consumers apply them idempotently
    (`services.apply_order_update`)."""

    def order_updates(self) -> AsyncIterator[Execution]: ...


@runtime_checkable
class OrderUpdates(OrderUpdateStream, Protocol):
    """An account's order updates, which can also follow orders placed earlier."""

    def watch(self, symbol: Symbol | str, client_order_id: str) -> None:
        """Follow an order placed earlier (before a restart, or by another process)."""
        ...


class SecretCipher(Protocol):
    """Encrypts client exchange secrets at rest (adapter: `SecretBox`)."""

    def encrypt(self, plain: str) -> str: ...
    def decrypt(self, token: str) -> str: ...


class PriceSource(Protocol):
    """The last known price of a symbol (live stream, paper book or the latest stored candle)."""

    async def current_price(self, symbol: Symbol) -> tuple[Decimal, datetime] | None: ...
