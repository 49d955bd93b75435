"""GraphQL types. Each wraps a domain object (`from_domain`) and resolves nested objects through the
request's DataLoaders. Every type and field carries a description: it is the API's documentation."""

from __future__ import annotations

import asyncio
import base64
import enum
import re
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Generic, TypeVar, cast

import strawberry

from domain import model, views
from domain.channel import Channel
from domain.errors import NotFound, ValidationError
from domain.model import Ledger
from domain.ports import Page
from domain.rows import PositionRow, StrategyRow, SymbolRow, TradeRow
from gql_api.context import Info

T = TypeVar("T")


# Ids and cursors are ours: positive integers under the 32-bit limit of the id columns, written
# in ASCII digits without sign or leading zero (Python's int() also reads "١٢٣", "１２３", "1_000").
CANONICAL_ID = re.compile(r"[1-9][0-9]{0,9}")
MAX_ID = 2**31 - 1


def _canonical_id(text: str) -> int | None:
    return int(text) if CANONICAL_ID.fullmatch(text) and int(text) <= MAX_ID else None


def parse_id(value: strawberry.ID | str | int, entity: str) -> int:
    """Our ids are integers as we write them: anything else cannot exist, so it is NOT_FOUND."""
    text = str(value)
    parsed = _canonical_id(text)
    if parsed is None:
        raise NotFound(f"{entity} {text[:40]} not found.", entity=entity, id=text[:40])
    return parsed


def encode_cursor(row_id: int) -> str:
    return base64.urlsafe_b64encode(f"cursor:{row_id}".encode()).decode()


def decode_cursor(cursor: str | None) -> int | None:
    """The row id of a cursor this API returned; any other string is VALIDATION."""
    if cursor is None:
        return None
    try:
        kind, _, value = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
    except (ValueError, UnicodeError):
        kind, value = "", ""
    row_id = _canonical_id(value) if kind == "cursor" else None
    if row_id is None or encode_cursor(row_id) != cursor:
        raise ValidationError("after is not a cursor returned by this API.", field="after")
    return row_id


def d(description: str) -> Decimal:
    """A Decimal field with a description (helper for readability)."""
    return cast(Decimal, strawberry.field(description=description))


# ---------------------------------------------------------------- enums


@strawberry.enum(description="Lifecycle of a position (SPEC §4).")
class PositionStatus(enum.Enum):
    OPEN = strawberry.enum_value("open", description="Held; sold by the exit rule when profitable.")
    SCHEDULED = strawberry.enum_value(
        "scheduled", description="Waiting to sell at its scheduled exit price (at least its minimum sell price)."
    )
    CLOSED = strawberry.enum_value("closed", description="Sold.")


@strawberry.enum(description="Side of a trade.")
class Side(enum.Enum):
    BUY = strawberry.enum_value("buy", description="Bought the base asset.")
    SELL = strawberry.enum_value("sell", description="Sold the base asset.")


@strawberry.enum(description="What a strategy will do on the next price move.")
class StrategyState(enum.Enum):
    ARMED = strawberry.enum_value("armed", description="Active; buys when the price rises through the entry level.")
    WAITING_FOR_BASE = strawberry.enum_value(
        "waiting_for_base",
        description="Active; already entered on this bounce, re-armed when the price touches the base.",
    )
    CHANNEL_BROKEN = strawberry.enum_value(
        "channel_broken",
        description="A candle closed below the base: no entries until the channel is updated or re-activated.",
    )
    PAUSED = strawberry.enum_value("paused", description="Inactive: no entries; exits and scheduled sells still work.")
    ARCHIVED = strawberry.enum_value(
        "archived", description="Retired (archiveStrategy): it no longer trades; its history is kept."
    )


@strawberry.enum(description="Where an exchange order stands.")
class OrderStatus(enum.Enum):
    NEW = strawberry.enum_value("new", description="Recorded; not yet acknowledged by the exchange.")
    OPEN = strawberry.enum_value(
        "open", description="Resting on the exchange, waiting for its price (a scheduled sell's limit order)."
    )
    PARTIALLY_FILLED = strawberry.enum_value(
        "partially_filled", description="Partly filled; the rest is still resting on the exchange."
    )
    FILLED = strawberry.enum_value("filled", description="Entirely filled.")
    CANCELED = strawberry.enum_value("canceled", description="Cancelled (what it filled before stays filled).")
    EXPIRED = strawberry.enum_value(
        "expired", description="Ended without (more) fills: the unfilled rest of an immediate-or-cancel order."
    )
    REJECTED = strawberry.enum_value(
        "rejected", description="Refused by the exchange (its reason in `reason`), or never received by it."
    )
    UNKNOWN = strawberry.enum_value(
        "unknown",
        description="Sent, but the exchange could not confirm it: awaiting reconciliation (within a minute).",
    )


@strawberry.enum(description="How an order executes.")
class OrderType(enum.Enum):
    MARKET = strawberry.enum_value("market", description="At the market price (entries, acceptLoss sells).")
    LIMIT = strawberry.enum_value("limit", description="Never below its limit price (exits, scheduled sells).")


@strawberry.enum(description="How long a limit order lives.")
class TimeInForce(enum.Enum):
    GTC = strawberry.enum_value("GTC", description="Good till cancelled: rests until filled (scheduled sells).")
    IOC = strawberry.enum_value("IOC", description="Immediate or cancel: what cannot fill at once expires (exits).")


@strawberry.enum(description="Why Criptoren sent an order (SPEC §4).")
class OrderPurpose(enum.Enum):
    ENTRY = strawberry.enum_value("entry", description="Rule 1: a system buy on the rise through the entry level.")
    EXIT = strawberry.enum_value("exit", description="Rule 4: a system sell on the fall through the exit level.")
    SCHEDULED_EXIT = strawberry.enum_value("scheduled_exit", description="Rule 6: a scheduled sell.")
    MANUAL_BUY = strawberry.enum_value("manual_buy", description="Rule 8: a buy asked for by the user.")
    MANUAL_SELL = strawberry.enum_value(
        "manual_sell", description="Rule 8: a sell asked for by the user, never below the minimum sell price."
    )
    LOSS_EXIT = strawberry.enum_value("loss_exit", description="Rule 8: a sell with acceptLoss, at market.")


# ---------------------------------------------------------------- pagination

DEFAULT_PAGE = 20

First = Annotated[int, strawberry.argument(description="Page size (at most 100).")]
After = Annotated[str | None, strawberry.argument(description="Cursor after which the page starts (from pageInfo).")]
EventTypes = Annotated[
    list[str] | None,
    strawberry.argument(
        description='Only events of these types, e.g. ["position_opened", "entry_skipped"] (default: all).'
    ),
]


def page(info: Info, first: int, after: str | None) -> Page:
    limit = info.context.app.settings.max_page_size
    if not 1 <= first <= limit:
        raise ValidationError(f"first must be between 1 and {limit}.", field="first", max=limit)
    # One extra row tells whether a next page exists.
    return Page(limit=first + 1, before_id=decode_cursor(after))


@strawberry.type(description="Where a page ends, and whether there is more.")
class PageInfo:
    has_next_page: bool = strawberry.field(description="True when another page follows this one.")
    end_cursor: str | None = strawberry.field(description="Pass as `after` to get the next page.")


@strawberry.type(description="An item of a page, with its cursor.")
class Edge(Generic[T]):
    cursor: str = strawberry.field(description="Opaque cursor of this item.")
    node: T = strawberry.field(description="The item.")


@strawberry.type(description="A page of items, newest first (Relay-style connection).")
class Connection(Generic[T]):
    edges: list[Edge[T]] = strawberry.field(description="The items of this page with their cursors.")
    page_info: PageInfo = strawberry.field(description="Pagination state.")

    @strawberry.field(description="The items of this page, without cursors.")
    def nodes(self) -> list[T]:
        return [e.node for e in self.edges]


def connection(rows: list, limit: int, wrap) -> Connection:  # type: ignore[no-untyped-def, type-arg]
    """Build a page from `limit + 1` fetched rows (the extra row only says there is more)."""
    page = rows[:limit]
    edges = [Edge(cursor=encode_cursor(r.id), node=wrap(r)) for r in page]
    return Connection(
        edges=edges,
        page_info=PageInfo(has_next_page=len(rows) > limit, end_cursor=edges[-1].cursor if edges else None),
    )


# ---------------------------------------------------------------- objects


@strawberry.type(description="A tradable market and its exchange filters (Binance LOT_SIZE, PRICE_FILTER, NOTIONAL).")
class Symbol:
    id: strawberry.ID = strawberry.field(description="Symbol id.")
    symbol: str = strawberry.field(description="Exchange symbol, e.g. BTCUSDT.")
    base_asset: str = strawberry.field(description="Asset bought and sold, e.g. BTC.")
    quote_asset: str = strawberry.field(description="Asset prices and capital are in, e.g. USDT.")
    step_size: Decimal = d("Quantities are multiples of this lot step (LOT_SIZE).")
    min_qty: Decimal = d("Smallest order quantity (LOT_SIZE).")
    tick_size: Decimal = d("Prices are multiples of this tick (PRICE_FILTER).")
    min_notional: Decimal = d("Smallest order value in the quote asset (MIN_NOTIONAL).")

    @classmethod
    def from_domain(cls, s: model.Symbol | SymbolRow) -> Symbol:
        return cls(
            id=strawberry.ID(str(s.id)), symbol=s.symbol, base_asset=s.base_asset, quote_asset=s.quote_asset,
            step_size=s.step_size, min_qty=s.min_qty, tick_size=s.tick_size, min_notional=s.min_notional,
        )  # fmt: skip


@strawberry.type(description="A strategy's capital (rules 2 and 7 of the strategy): principal and segregated profit.")
class CapitalBalance:
    asset: str | None = strawberry.field(
        description="The quote asset every amount here is in (USDT, BTC, …); null for a client with no capital yet."
    )
    principal: Decimal = d("Bankroll: the sum of non-profit allocations (deposits minus withdrawals and losses).")
    committed: Decimal = d("Cost of the open and scheduled positions.")
    free: Decimal = d("Principal not committed to positions: what new entries can spend.")
    profit: Decimal = d("Realised profit, kept apart from the principal, net of withdrawals.")
    total: Decimal = d("Principal plus profit.")

    @classmethod
    def from_domain(cls, ledger: Ledger, asset: str | None) -> CapitalBalance:
        return cls(
            asset=asset, principal=ledger.principal, committed=ledger.committed, free=ledger.free,
            profit=ledger.profit, total=ledger.total,
        )  # fmt: skip


@strawberry.type(description="The price levels of a channel.")
class Levels:
    base: Decimal = d("B: the channel's floor (basePrice). A candle closing below it breaks the channel.")
    entry: Decimal = d("E = B × (1 + buyThreshold/100): rising through it buys.")
    exit: Decimal = d("X = T × (1 − sellThreshold/100): falling through it sells positions at a profit.")
    top: Decimal = d("T: the channel's ceiling (topPrice).")


@strawberry.type(
    description="Something that happened to a strategy: entries, skips and their reasons, schedules, sells."
)
class StrategyEvent:
    id: strawberry.ID = strawberry.field(description="Event id.")
    strategy_id: strawberry.ID = strawberry.field(description="The strategy it happened to.")
    type: str = strawberry.field(description="Event type, e.g. position_opened, entry_skipped, channel_broken.")
    message: str = strawberry.field(description="What happened, in words.")
    position_id: strawberry.ID | None = strawberry.field(description="The position concerned, if any.")
    data: strawberry.scalars.JSON = strawberry.field(description="Details (prices, reasons) as JSON.")
    created_at: datetime = strawberry.field(description="When it happened (UTC).")
    raw_order: strawberry.Private[model.Order | None] = None

    @classmethod
    def from_domain(cls, e: model.StrategyEvent, order: model.Order | None = None) -> StrategyEvent:
        return cls(
            id=strawberry.ID(str(e.id)), strategy_id=strawberry.ID(str(e.strategy_id)), type=e.type,
            message=e.message,
            position_id=strawberry.ID(str(e.position_id)) if e.position_id else None,
            data=e.data, created_at=e.created_at,  # type: ignore[arg-type]
            raw_order=order,
        )  # fmt: skip

    @strawberry.field(
        description="The order, as it stands after the change, for `order_updated` events (subscription "
        "`positionEvents(includeOrders: true)`); null for the others."
    )
    def order(self) -> Order | None:
        return Order.from_domain(self.raw_order) if self.raw_order is not None else None


@strawberry.type(description="A channel-trading strategy on one symbol (SPEC §4).")
class Strategy:
    id: strawberry.ID = strawberry.field(description="Strategy id.")
    client_id: strawberry.ID = strawberry.field(description="Owner client id.")
    name: str = strawberry.field(description="Name, unique per client.")
    base_price: Decimal = d("B: the channel's floor.")
    top_price: Decimal = d("T: the channel's ceiling.")
    capital_percentage: Decimal = d("p: share of the bankroll each entry spends, in percent.")
    buy_threshold: Decimal = d("b: entry level above the base, in percent.")
    sell_threshold: Decimal = d("s: exit level under the top, in percent.")
    min_profit: Decimal = d("m: minimum profit of every system sell, in percent, after fees.")
    timeframe: str = strawberry.field(description="Candle timeframe judged for channel breaks, e.g. 4h.")
    is_active: bool = strawberry.field(description="False when paused: no entries.")
    is_armed: bool = strawberry.field(description="True when the next rise through the entry level buys.")
    channel_broken_at: datetime | None = strawberry.field(
        description="Close time of the candle that broke the channel."
    )
    created_at: datetime | None = strawberry.field(description="Creation time (UTC).")
    updated_at: datetime | None = strawberry.field(description="Last change (UTC).")
    archived_at: datetime | None = strawberry.field(
        description="When it was archived (archiveStrategy): it no longer trades. Null while it is not."
    )
    symbol_id: strawberry.Private[int]
    strategy_id: strawberry.Private[int]
    channel: strawberry.Private[Channel]

    @classmethod
    def from_domain(cls, s: model.Strategy | StrategyRow) -> Strategy:
        assert s.id is not None
        return cls(
            id=strawberry.ID(str(s.id)), client_id=strawberry.ID(str(s.client_id)), name=s.name,
            base_price=s.base_price, top_price=s.top_price, capital_percentage=s.capital_percentage,
            buy_threshold=s.buy_threshold, sell_threshold=s.sell_threshold, min_profit=s.min_profit,
            timeframe=s.timeframe, is_active=s.is_active, is_armed=s.is_armed,
            channel_broken_at=s.channel_broken_at, created_at=s.created_at, updated_at=s.updated_at,
            archived_at=s.archived_at, symbol_id=s.symbol_id, strategy_id=s.id, channel=s.channel,
        )  # fmt: skip

    @strawberry.field(description="What the strategy will do on the next price move.")
    def state(self) -> StrategyState:
        if self.archived_at is not None:
            return StrategyState.ARCHIVED
        if not self.is_active:
            return StrategyState.PAUSED
        if self.channel_broken_at is not None:
            return StrategyState.CHANNEL_BROKEN
        return StrategyState.ARMED if self.is_armed else StrategyState.WAITING_FOR_BASE

    @strawberry.field(description="The channel's levels B, E, X, T.")
    def levels(self) -> Levels:
        lv = self.channel.levels
        return Levels(base=lv.base, entry=lv.entry, exit=lv.exit, top=lv.top)

    @strawberry.field(description="The traded symbol.")
    async def symbol(self, info: Info) -> Symbol:
        return Symbol.from_domain(await info.context.loaders.symbol.load(self.symbol_id))

    @strawberry.field(
        description="The strategy's capital, in its symbol's quote asset: principal, committed, free, profit."
    )
    async def balance(self, info: Info) -> CapitalBalance:
        ledger, symbol = await asyncio.gather(
            info.context.loaders.ledger.load(self.strategy_id), info.context.loaders.symbol.load(self.symbol_id)
        )
        return CapitalBalance.from_domain(ledger, symbol.quote_asset)

    @strawberry.field(description="The strategy's newest positions (at most 100), optionally of one status.")
    async def positions(
        self,
        info: Info,
        status: Annotated[PositionStatus | None, strawberry.argument(description="Only this status.")] = None,
    ) -> list[Position]:
        domain_status = model.PositionStatus(cast(str, status.value)) if status else None
        rows = await info.context.loaders.positions_of(domain_status).load(self.strategy_id)
        return [Position.from_domain(p) for p in rows]

    @strawberry.field(description="The strategy's events, newest first: entries, skips and their reasons, "
                      "schedules, sells, capital movements, …")  # fmt: skip
    async def events(
        self, info: Info, types: EventTypes = None, first: First = DEFAULT_PAGE, after: After = None
    ) -> Connection[StrategyEvent]:
        p = page(info, first, after)
        wanted = views.check_event_types(types)
        rows = await info.context.loaders.events_of(p.limit, p.before_id, wanted).load(self.strategy_id)
        return connection(list(rows), first, StrategyEvent.from_domain)


@strawberry.type(description="An executed buy or sell.")
class Trade:
    id: strawberry.ID = strawberry.field(description="Trade id.")
    side: Side = strawberry.field(description="Buy or sell.")
    price: Decimal = d("Average fill price.")
    quantity: Decimal = d("Gross quantity filled (base asset).")
    quote_amount: Decimal = d("Gross value filled (quote asset).")
    fees: Decimal = d("Fee charged, in `feeAsset`.")
    fee_asset: str = strawberry.field(description="Asset the fee was charged in.")
    profit: Decimal | None = d("Sells: proceeds after fees minus the position's cost.")
    notes: str | None = strawberry.field(description="Why it happened (entry, exit, scheduled_exit, manual_buy, …).")
    executed_at: datetime = strawberry.field(description="Execution time (UTC).")
    position_id: strawberry.ID | None = strawberry.field(description="Position the trade belongs to.")
    strategy_id: strawberry.ID | None = strawberry.field(description="Strategy the trade belongs to.")
    symbol_id: strawberry.Private[int]
    raw_position_id: strawberry.Private[int | None]
    raw_order_id: strawberry.Private[int | None] = None

    @classmethod
    def from_domain(cls, t: model.Trade | TradeRow) -> Trade:
        return cls(
            id=strawberry.ID(str(t.id)), side=Side(t.side.value), price=t.price, quantity=t.quantity,
            quote_amount=t.quote_amount, fees=t.fees, fee_asset=t.fee_asset, profit=t.profit, notes=t.notes,
            executed_at=t.executed_at,
            position_id=strawberry.ID(str(t.position_id)) if t.position_id else None,
            strategy_id=strawberry.ID(str(t.strategy_id)) if t.strategy_id else None,
            symbol_id=t.symbol_id, raw_position_id=t.position_id, raw_order_id=t.order_id,
        )  # fmt: skip

    @strawberry.field(description="The traded symbol.")
    async def symbol(self, info: Info) -> Symbol:
        return Symbol.from_domain(await info.context.loaders.symbol.load(self.symbol_id))

    @strawberry.field(description="The position this trade opened or closed.")
    async def position(self, info: Info) -> Position | None:
        if self.raw_position_id is None:
            return None
        found = await info.context.loaders.position.load(self.raw_position_id)
        return Position.from_domain(found) if found else None

    @strawberry.field(description="The exchange order this trade filled.")
    async def order(self, info: Info) -> Order | None:
        if self.raw_order_id is None:
            return None
        found = await info.context.loaders.order.load(self.raw_order_id)
        return Order.from_domain(found) if found else None


@strawberry.type(description="Base asset held by a strategy, from one buy until its sell.")
class Position:
    id: strawberry.ID = strawberry.field(description="Position id.")
    status: PositionStatus = strawberry.field(description="Open, scheduled or closed.")
    entry_price: Decimal = d("Average buy price.")
    quantity: Decimal = d("Q: net quantity held (after the buy fee, rounded down to the lot step).")
    cost: Decimal = d("C: quote spent on the buy, fees included.")
    fees: Decimal = d("Buy fee, valued in the quote asset.")
    dust: Decimal = d("Quantity below the lot step left by the buy fee: recorded, never sold.")
    min_profit: Decimal = d("m used for this position's minimum sell price, in percent.")
    min_sell_price: Decimal = d("C × (1 + m/100) / (Q × (1 − fee)): the system never sells below it.")
    scheduled_exit_price: Decimal | None = d("Price a scheduled position sells at (≥ its minimum sell price).")
    exit_price: Decimal | None = d("Average sell price, once sold.")
    channel_exit_date: datetime | None = strawberry.field(
        description="Close time of the candle that broke the channel and scheduled this position."
    )
    proceeds: Decimal | None = d("Quote received on the sell, after its fee.")
    realized_profit: Decimal | None = d("Proceeds minus cost, once sold (negative only for an acceptLoss sell).")
    created_at: datetime | None = strawberry.field(description="When it was bought (UTC).")
    closed_at: datetime | None = strawberry.field(description="When it was sold (UTC).")
    strategy_id: strawberry.ID = strawberry.field(description="Strategy id.")
    raw_strategy_id: strawberry.Private[int]
    symbol_id: strawberry.Private[int]
    position_id: strawberry.Private[int]

    @classmethod
    def from_domain(cls, p: model.Position | PositionRow) -> Position:
        assert p.id is not None
        return cls(
            id=strawberry.ID(str(p.id)), status=PositionStatus(p.status.value), entry_price=p.entry_price,
            quantity=p.quantity, cost=p.cost, fees=p.fees, dust=p.dust, min_profit=p.min_profit,
            min_sell_price=p.min_sell_price, scheduled_exit_price=p.scheduled_exit_price,
            exit_price=p.exit_price, channel_exit_date=p.channel_exit_date, proceeds=p.proceeds,
            realized_profit=p.realized_profit, created_at=p.created_at, closed_at=p.closed_at,
            strategy_id=strawberry.ID(str(p.strategy_id)), raw_strategy_id=p.strategy_id,
            symbol_id=p.symbol_id, position_id=p.id,
        )  # fmt: skip

    @strawberry.field(description="The strategy that holds the position.")
    async def strategy(self, info: Info) -> Strategy:
        return Strategy.from_domain(await info.context.loaders.strategy.load(self.raw_strategy_id))

    @strawberry.field(description="The traded symbol.")
    async def symbol(self, info: Info) -> Symbol:
        return Symbol.from_domain(await info.context.loaders.symbol.load(self.symbol_id))

    @strawberry.field(description="The buy and sell trades of the position, oldest first.")
    async def trades(self, info: Info) -> list[Trade]:
        return [Trade.from_domain(t) for t in await info.context.loaders.trades_by_position.load(self.position_id)]

    @strawberry.field(
        description="The exchange orders of the position, oldest first: its buy, and every sell attempt (filled, "
        "resting, expired, rejected or unknown)."
    )
    async def orders(self, info: Info) -> list[Order]:
        return [Order.from_domain(o) for o in await info.context.loaders.orders_by_position.load(self.position_id)]


@strawberry.type(description="An order Criptoren sent to the exchange (or recorded before sending it), as it stands.")
class Order:
    id: strawberry.ID = strawberry.field(description="Order id.")
    client_order_id: str = strawberry.field(
        description="Criptoren's deterministic id of the order on the exchange (newClientOrderId)."
    )
    side: Side = strawberry.field(description="Buy or sell.")
    type: OrderType = strawberry.field(description="Market or limit.")
    time_in_force: TimeInForce | None = strawberry.field(description="GTC or IOC for limit orders.")
    purpose: OrderPurpose = strawberry.field(description="Why it was sent: entry, exit, scheduled sell, manual …")
    status: OrderStatus = strawberry.field(description="Where it stands on the exchange.")
    reason: str | None = strawberry.field(
        description="Why it was rejected (the exchange's message), or why its outcome is unknown."
    )
    requested_quantity: Decimal | None = d("Quantity asked for (base asset), when given by quantity.")
    requested_quote: Decimal | None = d("Quote amount asked for, when a buy is given by value.")
    price: Decimal | None = d("Limit price (limit orders).")
    filled_quantity: Decimal = d("Quantity filled so far (base asset, gross).")
    filled_quote: Decimal = d("Value filled so far (quote asset, gross).")
    average_price: Decimal | None = d("Average fill price, once something filled.")
    fee: Decimal = d("Fees charged so far, in `feeAsset`.")
    fee_asset: str | None = strawberry.field(description="Asset the fee was charged in.")
    exchange_order_id: str | None = strawberry.field(description="The exchange's id of the order, once known.")
    created_at: datetime | None = strawberry.field(description="When it was recorded (UTC).")
    updated_at: datetime | None = strawberry.field(description="Its last change (UTC).")
    strategy_id: strawberry.ID | None = strawberry.field(description="Strategy it was sent for.")
    position_id: strawberry.ID | None = strawberry.field(description="Position it opened or sells.")
    symbol_id: strawberry.Private[int]
    raw_strategy_id: strawberry.Private[int | None]
    raw_position_id: strawberry.Private[int | None]

    @classmethod
    def from_domain(cls, o: model.Order) -> Order:
        return cls(
            id=strawberry.ID(str(o.id)), client_order_id=o.client_order_id, side=Side(o.side.value),
            type=OrderType(o.type.value),
            time_in_force=TimeInForce(o.time_in_force.value) if o.time_in_force else None,
            purpose=OrderPurpose(o.purpose.value), status=OrderStatus(o.status.value), reason=o.error,
            requested_quantity=o.requested_quantity, requested_quote=o.requested_quote, price=o.price,
            filled_quantity=o.filled_quantity, filled_quote=o.filled_quote, average_price=o.average_price,
            fee=o.fee, fee_asset=o.fee_asset, exchange_order_id=o.exchange_order_id, created_at=o.created_at,
            updated_at=o.updated_at,
            strategy_id=strawberry.ID(str(o.strategy_id)) if o.strategy_id else None,
            position_id=strawberry.ID(str(o.position_id)) if o.position_id else None,
            symbol_id=o.symbol_id, raw_strategy_id=o.strategy_id, raw_position_id=o.position_id,
        )  # fmt: skip

    @strawberry.field(description="The traded symbol.")
    async def symbol(self, info: Info) -> Symbol:
        return Symbol.from_domain(await info.context.loaders.symbol.load(self.symbol_id))

    @strawberry.field(description="The strategy it was sent for.")
    async def strategy(self, info: Info) -> Strategy | None:
        if self.raw_strategy_id is None:
            return None
        found = await info.context.loaders.strategy.load(self.raw_strategy_id)
        return Strategy.from_domain(found) if found else None

    @strawberry.field(description="The position it opened or sells.")
    async def position(self, info: Info) -> Position | None:
        if self.raw_position_id is None:
            return None
        found = await info.context.loaders.position.load(self.raw_position_id)
        return Position.from_domain(found) if found else None


@strawberry.type(description="A capital movement of a strategy's ledger.")
class CapitalAllocation:
    id: strawberry.ID = strawberry.field(description="Allocation id.")
    strategy_id: strawberry.ID = strawberry.field(description="Strategy id.")
    amount: Decimal = d("Signed amount in the quote asset.")
    kind: str = strawberry.field(description="deposit, withdrawal, loss, profit or profit_withdrawal.")
    is_profit: bool = strawberry.field(description="True for segregated profit (never part of the bankroll).")
    note: str | None = strawberry.field(description="Free text.")
    created_at: datetime | None = strawberry.field(description="When it was recorded (UTC).")
    warnings: list[str] = strawberry.field(
        description="What the movement means for the strategy's entries, when they would not work: too small "
        "for the exchange's filters, or so small that lot rounding would push their minimum sell price above "
        "the exit level, making every exit a scheduled sell (SPEC §4 rule 11; also recorded as an "
        "entries_too_small event). Empty when all is well."
    )

    @classmethod
    def from_domain(cls, a: model.CapitalAllocation, warnings: Sequence[str] = ()) -> CapitalAllocation:
        return cls(
            id=strawberry.ID(str(a.id)), strategy_id=strawberry.ID(str(a.strategy_id)), amount=a.amount,
            kind=a.kind.value, is_profit=a.is_profit, note=a.note, created_at=a.created_at,
            warnings=list(warnings),
        )  # fmt: skip


@strawberry.type(description="One candle of price history.")
class Candle:
    open_time: datetime = strawberry.field(description="Open time (UTC).")
    close_time: datetime = strawberry.field(description="Close time (UTC).")
    open: Decimal = d("Open price.")
    high: Decimal = d("High price.")
    low: Decimal = d("Low price.")
    close: Decimal = d("Close price.")
    volume: Decimal = d("Volume in the base asset.")

    @classmethod
    def from_domain(cls, c: model.Candle) -> Candle:
        return cls(
            open_time=c.open_time, close_time=c.close_time, open=c.open, high=c.high, low=c.low,
            close=c.close, volume=c.volume,
        )  # fmt: skip


@strawberry.type(description="The last known price of a symbol.")
class PriceQuote:
    symbol: str = strawberry.field(description="Symbol, e.g. BTCUSDT.")
    price: Decimal | None = d("Last known price; null when none is known yet.")
    at: datetime | None = strawberry.field(description="When that price was seen (UTC).")


@strawberry.type(description="Accumulated profit of a strategy.")
class ProfitReport:
    strategy: Strategy = strawberry.field(description="The strategy.")
    balance: CapitalBalance = strawberry.field(description="Its capital now.")
    realized_profit: Decimal = d("Sum of the results of its closed positions (losses included).")
    withdrawn_profit: Decimal = d("Profit paid out.")
    closed_positions: int = strawberry.field(description="Positions sold.")
    winning_positions: int = strawberry.field(description="Positions sold at a profit.")
    losing_positions: int = strawberry.field(description="Positions sold at a loss (acceptLoss only).")
    live_positions: int = strawberry.field(description="Open and scheduled positions.")
    fees_paid: Decimal = d("Fees of all its trades, valued in the quote asset.")

    @classmethod
    def from_domain(cls, r: views.ProfitReport) -> ProfitReport:
        return cls(
            strategy=Strategy.from_domain(r.strategy), balance=CapitalBalance.from_domain(r.ledger, r.quote_asset),
            realized_profit=r.realized_profit, withdrawn_profit=r.withdrawn_profit,
            closed_positions=r.closed_positions, winning_positions=r.winning_positions,
            losing_positions=r.losing_positions, live_positions=r.live_positions, fees_paid=r.fees_paid,
        )  # fmt: skip


@strawberry.type(description="Positions over the last days: counts, results and the positions themselves.")
class PositionsReport:
    days: int = strawberry.field(description="Length of the period, in days.")
    since: datetime = strawberry.field(description="Start of the period (UTC).")
    open: int = strawberry.field(description="Positions open now.")
    scheduled: int = strawberry.field(description="Positions scheduled now.")
    closed: int = strawberry.field(description="Positions closed within the period.")
    opened: int = strawberry.field(description="Positions opened within the period.")
    realized_profit: Decimal = d("Results of the positions closed within the period.")
    committed: Decimal = d("Cost of the open and scheduled positions.")
    positions: list[Position] = strawberry.field(
        description="Positions open now or opened or closed within the period (newest first, at most 1000)."
    )

    @classmethod
    def from_domain(cls, r: views.PositionsReport) -> PositionsReport:
        return cls(
            days=r.days, since=r.since, open=r.open, scheduled=r.scheduled, closed=r.closed, opened=r.opened,
            realized_profit=r.realized_profit, committed=r.committed,
            positions=[Position.from_domain(p) for p in r.positions],
        )  # fmt: skip


@strawberry.type(description="Summary of the trades of one symbol.")
class TradesReport:
    symbol: Symbol = strawberry.field(description="The symbol.")
    trades: int = strawberry.field(description="Number of trades.")
    buys: int = strawberry.field(description="Number of buys.")
    sells: int = strawberry.field(description="Number of sells.")
    bought_quantity: Decimal = d("Base asset bought (gross).")
    sold_quantity: Decimal = d("Base asset sold.")
    quote_spent: Decimal = d("Quote asset spent on buys (gross).")
    quote_received: Decimal = d("Quote asset received on sells (gross, before fees).")
    realized_profit: Decimal = d("Sum of the sells' results.")
    first_trade_at: datetime | None = strawberry.field(description="First trade (UTC).")
    last_trade_at: datetime | None = strawberry.field(description="Last trade (UTC).")

    @classmethod
    def from_domain(cls, r: views.TradesReport) -> TradesReport:
        return cls(
            symbol=Symbol.from_domain(r.symbol), trades=r.trades, buys=r.buys, sells=r.sells,
            bought_quantity=r.bought_quantity, sold_quantity=r.sold_quantity, quote_spent=r.quote_spent,
            quote_received=r.quote_received, realized_profit=r.realized_profit,
            first_trade_at=r.first_trade_at, last_trade_at=r.last_trade_at,
        )  # fmt: skip


@strawberry.type(description="A client: the owner of strategies, positions and capital.")
class Client:
    id: strawberry.ID = strawberry.field(description="Client id.")
    name: str = strawberry.field(description="Name.")
    api_key: str | None = strawberry.field(description="The public half of the client's API credentials.")
    created_at: datetime | None = strawberry.field(description="Creation time (UTC).")
    trading_paused_at: datetime | None = strawberry.field(
        default=None, description="Set while trading is paused (pauseTrading): when the pause began (UTC)."
    )
    trading_sells_held: bool = strawberry.field(
        default=False, description="True when the pause also holds automatic exits (pauseTrading with cancelScheduled)."
    )

    @classmethod
    def from_domain(cls, c: model.Client) -> Client:
        return cls(
            id=strawberry.ID(str(c.id)), name=c.name, api_key=c.api_key, created_at=c.created_at,
            trading_paused_at=c.trading_paused_at, trading_sells_held=c.trading_sells_held,
        )  # fmt: skip
