"""Use cases. Each service owns its transaction: `async with uow: ...; await uow.commit()`.

Services apply the rules of `domain.channel` (SPEC §4) to entities loaded through the unit of
work and send orders through the `Exchange` port — on the account of the client concerned
(`exchange.for_client`): paper, or the client's own Binance account. A raised error leaves the
database unchanged, except where the exchange already acted and that must not be forgotten: an
order whose outcome it could not confirm is kept as UNKNOWN (`OrderOutcomeUnknown`), and a fill
found while cancelling a resting sell is recorded before the cancel is refused (`InvalidState`).

Where orders rest on the exchange (Binance, rule 6), a scheduled position has a LIMIT GTC sell
there; its later fills are applied by `apply_order_update` (user data stream) and
`reconcile_orders` (polling the exchange), both idempotent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from domain import channel as ch
from domain import commands as cmds
from domain.engine import StrategySnapshot
from domain.errors import (
    ExchangeError,
    FilterFailure,
    InsufficientCapital,
    InvalidState,
    NoPrice,
    NotFound,
    OrderOutcomeUnknown,
    PermanentExchangeError,
    TemporaryExchangeError,
    ValidationError,
    WouldSellAtLoss,
)
from domain.events import EventType, SkipReason
from domain.logctx import log_fields
from domain.model import (
    AllocationKind,
    CapitalAllocation,
    Client,
    Ledger,
    Order,
    OrderPurpose,
    OrderStatus,
    OrderType,
    Position,
    PositionStatus,
    Side,
    Strategy,
    StrategyEvent,
    Symbol,
    TimeInForce,
    Trade,
)
from domain.ports import Exchange, Execution, Page, PriceSource, UnitOfWork

MAX_AMOUNT = Decimal("1e15")


def utcnow() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------- helpers


def _check_amount(name: str, value: Decimal) -> None:
    if not value.is_finite() or value <= 0 or value > MAX_AMOUNT:
        raise ValidationError(f"{name} must be a positive number.", field=name)


async def _strategy(uow: UnitOfWork, strategy_id: int, client_id: int | None, *, lock: bool = False) -> Strategy:
    strategy = await uow.strategies.get(strategy_id, for_update=lock)
    if strategy is None or (client_id is not None and strategy.client_id != client_id):
        raise NotFound(f"Strategy {strategy_id} not found.", entity="Strategy", id=strategy_id)
    return strategy


async def _position(uow: UnitOfWork, position_id: int, client_id: int | None) -> tuple[Position, Strategy]:
    position = await uow.positions.get(position_id)
    if position is None or (client_id is not None and position.client_id != client_id):
        raise NotFound(f"Position {position_id} not found.", entity="Position", id=position_id)
    # Lock order: strategy, then position (every money-moving service takes the strategy lock).
    strategy = await _strategy(uow, position.strategy_id, None, lock=True)
    locked = await uow.positions.get(position_id, for_update=True)
    assert locked is not None
    return locked, strategy


async def _symbol(uow: UnitOfWork, symbol_id: int) -> Symbol:
    symbol = await uow.symbols.get(symbol_id)
    if symbol is None:
        raise NotFound(f"Symbol {symbol_id} not found.", entity="Symbol", id=symbol_id)
    return symbol


async def _price(prices: PriceSource, symbol: Symbol) -> Decimal:
    quote = await prices.current_price(symbol)
    if quote is None:
        raise NoPrice(f"No market price is known for {symbol.symbol} yet.", symbol=symbol.symbol)
    return quote[0]


def _event(
    uow: UnitOfWork,
    strategy: Strategy,
    type_: EventType,
    message: str,
    position: Position | None = None,
    **data: object,
) -> StrategyEvent:
    assert strategy.id is not None
    event = StrategyEvent(
        strategy_id=strategy.id,
        client_id=strategy.client_id,
        type=type_.value,
        message=message,
        position_id=position.id if position else None,
        data={k: (str(v) if isinstance(v, Decimal) else v) for k, v in data.items()},
        created_at=utcnow(),
    )
    uow.events.add(event)
    return event


def _fmt(value: Decimal) -> str:
    return f"{value.normalize():f}"


def client_order_id(purpose: OrderPurpose, owner_id: int, seq: int) -> str:
    """Deterministic client order id: `cr-<purpose letter><strategy or position id>-<seq>`.

    At most 36 characters of `[.A-Z:/a-z0-9_-]` (Binance's `newClientOrderId`): a retried job
    rebuilds the same id, so the exchange and the `orders` table can refuse a second order.
    """
    letter = {
        OrderPurpose.ENTRY: "e",
        OrderPurpose.MANUAL_BUY: "b",
        OrderPurpose.EXIT: "x",
        OrderPurpose.SCHEDULED_EXIT: "s",
        OrderPurpose.MANUAL_SELL: "m",
        OrderPurpose.LOSS_EXIT: "l",
    }[purpose]
    return f"cr-{letter}{owner_id}-{seq}"


# ---------------------------------------------------------------- clients, strategies, capital


async def create_client(cmd: cmds.CreateClient, uow: UnitOfWork) -> Client:
    name = _check_name(cmd.name)
    async with uow:
        client = Client(name=name, created_at=utcnow())
        uow.clients.add(client)
        await uow.flush()
        await uow.commit()
    return client


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 100:
        raise ValidationError("name must have 1 to 100 characters.", field="name")
    return name


async def create_strategy(cmd: cmds.CreateStrategy, uow: UnitOfWork, exchange: Exchange) -> Strategy:
    """Create a channel strategy, validated by rule 11. It starts armed (rule 1)."""
    name = _check_name(cmd.name)
    async with uow:
        if await uow.clients.get(cmd.client_id) is None:
            raise NotFound(f"Client {cmd.client_id} not found.", entity="Client", id=cmd.client_id)
        symbol = await uow.symbols.get_by_name(cmd.symbol.upper())
        if symbol is None:
            raise NotFound(f"Symbol {cmd.symbol} is not known.", entity="Symbol", id=cmd.symbol)
        exchange = await exchange.for_client(cmd.client_id)
        ch.validate_channel(
            cmd.base_price,
            cmd.top_price,
            cmd.capital_percentage,
            cmd.buy_threshold,
            cmd.sell_threshold,
            cmd.min_profit,
            exchange.fee_rate(symbol),
            cmd.timeframe,
            symbol.tick_size,
        )
        if await uow.strategies.find(cmd.client_id, name) is not None:
            raise ValidationError(f"A strategy named {name!r} already exists.", field="name")
        assert symbol.id is not None
        strategy = Strategy(
            client_id=cmd.client_id,
            symbol_id=symbol.id,
            name=name,
            base_price=cmd.base_price,
            top_price=cmd.top_price,
            capital_percentage=cmd.capital_percentage,
            buy_threshold=cmd.buy_threshold,
            sell_threshold=cmd.sell_threshold,
            min_profit=cmd.min_profit,
            timeframe=cmd.timeframe,
            is_active=cmd.is_active,
            is_armed=True,
        )
        uow.strategies.add(strategy)
        await uow.flush()
        _event(uow, strategy, EventType.STRATEGY_CREATED, f"Strategy {name!r} created.")
        await uow.commit()
    return strategy


async def update_strategy(cmd: cmds.UpdateStrategy, uow: UnitOfWork, exchange: Exchange) -> Strategy:
    """Change a strategy's parameters (validated by rule 11). Updating re-arms it and clears a
    channel break (rule 5)."""
    async with uow:
        strategy = await _strategy(uow, cmd.strategy_id, cmd.client_id, lock=True)
        symbol = await _symbol(uow, strategy.symbol_id)
        exchange = await exchange.for_client(strategy.client_id)

        def pick(new: Decimal | None, old: Decimal) -> Decimal:
            return old if new is None else new

        base = pick(cmd.base_price, strategy.base_price)
        top = pick(cmd.top_price, strategy.top_price)
        pct = pick(cmd.capital_percentage, strategy.capital_percentage)
        buy_t = pick(cmd.buy_threshold, strategy.buy_threshold)
        sell_t = pick(cmd.sell_threshold, strategy.sell_threshold)
        min_p = pick(cmd.min_profit, strategy.min_profit)
        timeframe = cmd.timeframe or strategy.timeframe
        ch.validate_channel(
            base, top, pct, buy_t, sell_t, min_p, exchange.fee_rate(symbol), timeframe, symbol.tick_size
        )
        if cmd.name is not None:
            name = _check_name(cmd.name)
            other = await uow.strategies.find(strategy.client_id, name)
            if other is not None and other.id != strategy.id:
                raise ValidationError(f"A strategy named {name!r} already exists.", field="name")
            strategy.name = name
        strategy.base_price, strategy.top_price = base, top
        strategy.capital_percentage, strategy.buy_threshold = pct, buy_t
        strategy.sell_threshold, strategy.min_profit, strategy.timeframe = sell_t, min_p, timeframe
        strategy.is_armed = True
        strategy.channel_broken_at = None
        _event(uow, strategy, EventType.STRATEGY_UPDATED, "Strategy updated and re-armed.")
        await uow.commit()
    return strategy


async def set_strategy_active(cmd: cmds.SetStrategyActive, uow: UnitOfWork) -> Strategy:
    """Activate or pause a strategy. Activation arms it and clears a channel break (rules 1, 5).

    A paused strategy makes no entries; its scheduled sells and exits keep protecting profit."""
    async with uow:
        strategy = await _strategy(uow, cmd.strategy_id, cmd.client_id, lock=True)
        if cmd.is_active:
            strategy.is_active = True
            strategy.is_armed = True
            strategy.channel_broken_at = None
            _event(uow, strategy, EventType.STRATEGY_ACTIVATED, "Strategy activated and armed.")
        elif strategy.is_active:
            strategy.is_active = False
            _event(uow, strategy, EventType.STRATEGY_DEACTIVATED, "Strategy paused: no new entries.")
        await uow.commit()
    return strategy


async def allocate_capital(cmd: cmds.AllocateCapital, uow: UnitOfWork) -> CapitalAllocation:
    """Add principal to a strategy's bankroll (rule 2)."""
    _check_amount("amount", cmd.amount)
    async with uow:
        strategy = await _strategy(uow, cmd.strategy_id, cmd.client_id, lock=True)
        assert strategy.id is not None
        allocation = CapitalAllocation(
            client_id=strategy.client_id,
            strategy_id=strategy.id,
            amount=cmd.amount,
            kind=AllocationKind.DEPOSIT,
            is_profit=False,
            note=cmd.note,
            created_at=utcnow(),
        )
        uow.allocations.add(allocation)
        await uow.flush()
        _event(uow, strategy, EventType.CAPITAL_ALLOCATED, f"{_fmt(cmd.amount)} allocated.", amount=cmd.amount)
        await uow.commit()
    return allocation


async def withdraw_profit(cmd: cmds.WithdrawProfit, uow: UnitOfWork) -> CapitalAllocation:
    """Pay out segregated profit (rule 7); never more than the strategy's profit balance."""
    _check_amount("amount", cmd.amount)
    async with uow:
        strategy = await _strategy(uow, cmd.strategy_id, cmd.client_id, lock=True)
        assert strategy.id is not None
        ledger = await uow.allocations.ledger(strategy.id)
        if cmd.amount > ledger.profit:
            raise InsufficientCapital(
                f"Cannot withdraw {_fmt(cmd.amount)}: the strategy's profit balance is {_fmt(ledger.profit)}.",
                available=str(ledger.profit),
            )
        allocation = CapitalAllocation(
            client_id=strategy.client_id,
            strategy_id=strategy.id,
            amount=-cmd.amount,
            kind=AllocationKind.PROFIT_WITHDRAWAL,
            is_profit=True,
            created_at=utcnow(),
        )
        uow.allocations.add(allocation)
        await uow.flush()
        _event(uow, strategy, EventType.PROFIT_WITHDRAWN, f"{_fmt(cmd.amount)} of profit withdrawn.", amount=cmd.amount)
        await uow.commit()
    return allocation


# ---------------------------------------------------------------- orders


def _record_execution(order: Order, execution: Execution) -> None:
    order.status = execution.status
    order.exchange_order_id = execution.exchange_order_id
    order.filled_quantity = execution.executed_quantity
    order.filled_quote = execution.quote_quantity
    order.average_price = execution.average_price
    order.fee = execution.fee
    order.fee_asset = execution.fee_asset


FINAL_UNFILLED = (OrderStatus.EXPIRED, OrderStatus.CANCELED, OrderStatus.REJECTED)
FINAL = (OrderStatus.FILLED, *FINAL_UNFILLED)
# Orders the exchange may still fill (or may have filled without our knowing): reconciliation asks.
UNSETTLED = (OrderStatus.NEW, OrderStatus.UNKNOWN, OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)
ABSENT = "The exchange has no order with this client order id."


async def _order_id(
    exchange: Exchange, symbol: Symbol, next_id: Callable[[], str]
) -> tuple[str, Execution | None, str | None]:
    """The client order id of the next order, the exchange's order under that id if any, and —
    when the exchange could not be asked — why.

    Ids come from a sequence kept on the locked strategy or position row, so two transactions
    cannot build the same one, and the id is unique in `orders` (no double order). The exchange is
    asked first: an order sent by an earlier attempt whose transaction never committed (a crash
    between send and record) is taken as it is, never sent twice — unless it ended without any
    fill, in which case that attempt left nothing and the next id is used. When the exchange cannot
    be asked, nothing is sent; the order is recorded UNKNOWN (an earlier attempt may have placed it)
    and reconciliation settles it.
    """
    while True:
        coid = next_id()
        try:
            existing = await exchange.get_order(symbol, coid)
        except TemporaryExchangeError as e:
            return coid, None, e.message
        if existing is None or existing.executed_quantity > 0 or existing.status not in FINAL_UNFILLED:
            return coid, existing, None


async def _send(
    order: Order,
    found: Execution | None,
    unreachable: str | None,
    send: Callable[[], Awaitable[Execution]],
) -> Execution | None:
    """Send `order` — unless the exchange already has it (`found`) — and record what the exchange
    says of it. None when the outcome is unknown (the exchange could not be asked, or did not answer
    after the request left): the order stays recorded as UNKNOWN instead of being rolled back, since
    it may exist, and reconciliation settles it. A refusal marks it REJECTED and is raised."""
    execution = found
    if execution is None and unreachable is None:
        try:
            with log_fields(strategy_id=order.strategy_id, position_id=order.position_id,
                            client_order_id=order.client_order_id):  # fmt: skip
                execution = await send()
        except TemporaryExchangeError as e:
            unreachable = e.message
        except PermanentExchangeError as e:
            order.status, order.error = OrderStatus.REJECTED, e.message
            raise
    if execution is None:
        order.status, order.error = OrderStatus.UNKNOWN, unreachable
        return None
    _record_execution(order, execution)
    return execution


def _record_order(uow: UnitOfWork, order: Order) -> None:
    """The order row is written with the rest of the transaction (no round trip before sending)."""
    order.created_at = utcnow()
    uow.orders.add(order)


@dataclass(frozen=True)
class BuyPlan:
    quote_amount: Decimal | None
    quantity: Decimal | None
    estimated_cost: Decimal


def plan_entry(bankroll: Decimal, strategy: Strategy, symbol: Symbol, price: Decimal, fee_rate: Decimal) -> BuyPlan:
    """Rule 2 and 11: an entry spends p% of the bankroll, within ±0.1 pt after lot rounding,
    and must meet the filters both now and when its net quantity is sold."""
    quote = ch.entry_quote_amount(bankroll, strategy.capital_percentage)
    gross = ch.buy_quantity_for_quote(quote, price, symbol.filters)
    ch.check_order_filters(gross, price, symbol.filters, "Entry")
    net = ch.round_down_to_step(gross * (1 - fee_rate), symbol.step_size)
    ch.check_order_filters(net, price, symbol.filters, "Selling the entry's net quantity")
    spent = gross * price
    deviation = ch.allocation_deviation_pt(spent, bankroll, strategy.capital_percentage)
    if deviation > ch.ALLOCATION_TOLERANCE_PT:
        raise FilterFailure(
            f"Lot rounding would make this entry spend {_fmt(spent)} "
            f"({_fmt(spent / bankroll * 100)}% of the bankroll instead of {_fmt(strategy.capital_percentage)}%).",
            filter="ALLOCATION_PRECISION",
        )
    return BuyPlan(quote_amount=quote, quantity=None, estimated_cost=spent)


async def _buy(
    uow: UnitOfWork,
    exchange: Exchange,
    strategy: Strategy,
    symbol: Symbol,
    purpose: OrderPurpose,
    plan: BuyPlan,
) -> Position | None:
    """Send a MARKET buy and turn its fill into a position (rule 9). None when the exchange could
    not confirm the order: it is recorded UNKNOWN, and reconciliation opens the position if it filled."""
    assert strategy.id is not None and symbol.id is not None
    strategy_id = strategy.id

    def next_id() -> str:
        strategy.entry_seq += 1
        return client_order_id(purpose, strategy_id, strategy.entry_seq)

    coid, found, unreachable = await _order_id(exchange, symbol, next_id)
    order = Order(
        client_order_id=coid,
        client_id=strategy.client_id,
        symbol_id=symbol.id,
        strategy_id=strategy.id,
        side=Side.BUY,
        type=OrderType.MARKET,
        purpose=purpose,
        requested_quote=plan.quote_amount,
        requested_quantity=plan.quantity,
    )
    _record_order(uow, order)

    async def send() -> Execution:
        return await exchange.market_buy(symbol, coid, quote_amount=plan.quote_amount, quantity=plan.quantity)

    execution = await _send(order, found, unreachable, send)
    if execution is None:
        return None
    if execution.executed_quantity == 0 or execution.average_price is None:
        raise PermanentExchangeError(f"The buy order {order.client_order_id} was not filled.")
    return await _open_position(uow, exchange, strategy, symbol, order, execution, purpose)


async def _open_position(
    uow: UnitOfWork,
    exchange: Exchange,
    strategy: Strategy,
    symbol: Symbol,
    order: Order,
    execution: Execution,
    purpose: OrderPurpose,
) -> Position:
    """The position a filled buy opens (rule 9): net quantity, cost with fees, min_sell (rule 3)."""
    assert strategy.id is not None and symbol.id is not None and execution.average_price is not None
    fee_rate = exchange.fee_rate(symbol)
    bought = ch.position_from_buy(
        execution.executed_quantity,
        execution.quote_quantity,
        execution.fee,
        execution.fee_asset,
        symbol.base_asset,
        symbol.quote_asset,
        execution.average_price,
        symbol.filters,
        execution.fee_asset_price_in_quote,
    )
    position = Position(
        strategy_id=strategy.id,
        symbol_id=symbol.id,
        client_id=strategy.client_id,
        entry_price=execution.average_price,
        quantity=bought.quantity,
        cost=bought.cost,
        fees=bought.fee_in_quote,
        dust=bought.dust,
        min_profit=strategy.min_profit,
        min_sell_price=ch.min_sell_price(bought.cost, bought.quantity, strategy.min_profit, fee_rate),
        created_at=execution.executed_at,
    )
    uow.positions.add(position)
    await uow.flush()
    order.position_id = position.id
    uow.trades.add(
        Trade(
            client_id=strategy.client_id,
            symbol_id=symbol.id,
            strategy_id=strategy.id,
            position_id=position.id,
            order_id=order.id,
            side=Side.BUY,
            price=execution.average_price,
            quantity=execution.executed_quantity,
            quote_amount=execution.quote_quantity,
            fees=execution.fee,
            fee_asset=execution.fee_asset,
            executed_at=execution.executed_at,
            notes=purpose.value,
        )
    )
    _event(
        uow,
        strategy,
        EventType.POSITION_OPENED,
        f"Bought {_fmt(bought.quantity)} {symbol.base_asset} at {_fmt(execution.average_price)} "
        f"for {_fmt(bought.cost)} {symbol.quote_asset}.",
        position,
        price=execution.average_price,
        quantity=bought.quantity,
        cost=bought.cost,
        min_sell_price=position.min_sell_price,
    )
    return position


async def _schedule(
    uow: UnitOfWork,
    exchange: Exchange,
    strategy: Strategy,
    symbol: Symbol,
    position: Position,
    price: Decimal,
    reason: str,
    channel_exit_date: datetime | None = None,
    *,
    rest: bool = True,
    engine: bool = True,
) -> None:
    """Rule 6: the position is scheduled to sell at `price` rounded up to the tick (rule 9). Where
    orders rest (Binance), its LIMIT GTC sell is placed now (`rest`); on paper the engine sells it on
    the tick that reaches the price."""
    position.status = PositionStatus.SCHEDULED
    position.scheduled_exit_price = ch.limit_sell_price(price, symbol.filters)
    if channel_exit_date is not None:
        position.channel_exit_date = channel_exit_date
    _event(
        uow,
        strategy,
        EventType.POSITION_SCHEDULED,
        f"Position {position.id} scheduled to sell at {_fmt(position.scheduled_exit_price)} ({reason}).",
        position,
        scheduled_exit_price=position.scheduled_exit_price,
        reason=reason,
    )
    if rest and exchange.rests_limit_orders:
        await _rest(uow, exchange, strategy, symbol, position, engine=engine)


async def _rest(
    uow: UnitOfWork,
    exchange: Exchange,
    strategy: Strategy,
    symbol: Symbol,
    position: Position,
    *,
    engine: bool,
) -> Execution | None:
    """Rule 6 where orders rest (Binance): a LIMIT GTC sell of the position at its scheduled exit
    price, recorded as an OPEN order; its fills come later (`apply_order_update`, reconciliation).
    If the market is already there it fills at once and the sell is applied. An outcome the exchange
    could not confirm leaves the order UNKNOWN for reconciliation. A refusal (balance, filters) is
    raised to a user; in the engine it is recorded with an event and the position stays scheduled
    (the user reschedules or cancels it)."""
    assert position.scheduled_exit_price is not None
    try:
        execution = await _sell(
            uow, exchange, strategy, symbol, position, OrderPurpose.SCHEDULED_EXIT, position.scheduled_exit_price
        )
    except (FilterFailure, PermanentExchangeError) as e:
        if not engine:
            raise
        _event(
            uow,
            strategy,
            EventType.ORDER_REFUSED,
            f"The exchange refused the resting sell of position {position.id}: {e.message} "
            "Reschedule or cancel the position.",
            position,
            error=e.message,
        )
        return None
    if execution is None:
        _unknown_event(uow, strategy, position, "resting sell")
    return execution


def _unknown_event(uow: UnitOfWork, strategy: Strategy, position: Position | None, what: str) -> None:
    _event(
        uow,
        strategy,
        EventType.ORDER_UNKNOWN,
        f"The exchange did not confirm the {what}{f' of position {position.id}' if position else ''}; "
        "it is recorded and reconciliation settles it within a minute.",
        position,
    )


async def _park(uow: UnitOfWork, exchange: Exchange, strategy: Strategy, symbol: Symbol, position: Position) -> None:
    """A sell whose outcome is unknown: the position is parked as scheduled at its min_sell, with no
    new order, so that nothing sells it again before reconciliation has settled that sell (then a
    resting sell is placed for what remains, where orders rest)."""
    if position.status is PositionStatus.OPEN:
        await _schedule(
            uow, exchange, strategy, symbol, position, position.min_sell_price, "sell not confirmed", rest=False
        )
    _unknown_event(uow, strategy, position, "sell")


async def _sell(
    uow: UnitOfWork,
    exchange: Exchange,
    strategy: Strategy,
    symbol: Symbol,
    position: Position,
    purpose: OrderPurpose,
    price: Decimal,
) -> Execution | None:
    """Sell a position's quantity. System and manual sells are LIMIT orders that cannot fill below
    min_sell (rules 3, 4, 6); only LOSS_EXIT is a MARKET order. Records the fill, the returned
    cost and the segregated profit (rule 7). Returns the execution (possibly unfilled, or resting),
    None when its outcome is unknown (the order is recorded UNKNOWN)."""
    assert position.id is not None and symbol.id is not None
    quantity = position.quantity
    ch.check_order_filters(quantity, price, symbol.filters, f"Selling position {position.id}")
    position_id = position.id

    def next_id() -> str:
        position.sell_seq += 1
        return client_order_id(purpose, position_id, position.sell_seq)

    coid, found, unreachable = await _order_id(exchange, symbol, next_id)
    limit: Decimal | None = None
    tif: TimeInForce | None = None
    if purpose is OrderPurpose.SCHEDULED_EXIT:
        assert position.scheduled_exit_price is not None
        limit, tif = position.scheduled_exit_price, TimeInForce.GTC
    elif purpose is not OrderPurpose.LOSS_EXIT:
        limit, tif = ch.limit_sell_price(position.min_sell_price, symbol.filters), TimeInForce.IOC
    order = Order(
        client_order_id=coid,
        client_id=position.client_id,
        symbol_id=symbol.id,
        strategy_id=position.strategy_id,
        position_id=position.id,
        side=Side.SELL,
        type=OrderType.MARKET if limit is None else OrderType.LIMIT,
        time_in_force=tif,
        purpose=purpose,
        requested_quantity=quantity,
        price=limit,
    )
    _record_order(uow, order)

    async def send() -> Execution:
        if limit is None:
            return await exchange.market_sell(symbol, coid, quantity)
        assert tif is not None
        return await exchange.limit_sell(symbol, coid, quantity, limit, tif)

    execution = await _send(order, found, unreachable, send)
    if execution is not None and execution.executed_quantity > 0:
        await uow.flush()  # the trade refers to the order's id
        _apply_sell(uow, strategy, symbol, position, order, execution, purpose)
    return execution


def _apply_sell(
    uow: UnitOfWork,
    strategy: Strategy,
    symbol: Symbol,
    position: Position,
    order: Order,
    execution: Execution,
    purpose: OrderPurpose,
) -> None:
    assert execution.average_price is not None and position.id is not None
    sold = execution.executed_quantity
    full = sold >= position.quantity
    # A partial fill closes its share of the cost; the remainder keeps the same min_sell.
    cost = position.cost if full else ch.round_down_to_step(position.cost * sold / position.quantity, Decimal("1e-18"))
    fee = (
        execution.fee
        if execution.fee_asset == symbol.quote_asset
        else (execution.fee * (execution.fee_asset_price_in_quote or execution.average_price))
    )
    result = ch.sell_result(execution.quote_quantity, fee, cost)
    uow.trades.add(
        Trade(
            client_id=position.client_id,
            symbol_id=position.symbol_id,
            strategy_id=position.strategy_id,
            position_id=position.id,
            order_id=order.id,
            side=Side.SELL,
            price=execution.average_price,
            quantity=sold,
            quote_amount=execution.quote_quantity,
            fees=execution.fee,
            fee_asset=execution.fee_asset,
            executed_at=execution.executed_at,
            profit=result.profit,
            notes=purpose.value,
        )
    )
    if result.profit != 0:
        kind = AllocationKind.PROFIT if result.profit > 0 else AllocationKind.LOSS
        uow.allocations.add(
            CapitalAllocation(
                client_id=position.client_id,
                strategy_id=position.strategy_id,
                position_id=position.id,
                amount=result.profit,
                kind=kind,
                is_profit=kind is AllocationKind.PROFIT,
                note=f"{purpose.value} of position {position.id}",
                created_at=execution.executed_at,
            )
        )
    position.proceeds = (position.proceeds or Decimal(0)) + result.proceeds
    position.realized_profit = (position.realized_profit or Decimal(0)) + result.profit
    if full:
        position.status = PositionStatus.CLOSED
        position.exit_price = execution.average_price
        position.closed_at = execution.executed_at
        _event(
            uow,
            strategy,
            EventType.POSITION_CLOSED,
            f"Sold {_fmt(sold)} {symbol.base_asset} at {_fmt(execution.average_price)}: "
            f"{'profit' if result.profit >= 0 else 'loss'} {_fmt(result.profit)} {symbol.quote_asset}.",
            position,
            price=execution.average_price,
            quantity=sold,
            profit=result.profit,
            reason=purpose.value,
        )
    else:
        position.quantity -= sold
        position.cost -= cost
        position.exit_price = execution.average_price
        _event(
            uow,
            strategy,
            EventType.POSITION_PARTIALLY_SOLD,
            f"Sold {_fmt(sold)} of position {position.id}; {_fmt(position.quantity)} remain.",
            position,
            price=execution.average_price,
            quantity=sold,
            profit=result.profit,
        )


async def buy(cmd: cmds.Buy, uow: UnitOfWork, exchange: Exchange, prices: PriceSource) -> Position:
    """Rule 8: a manual MARKET buy by quote amount or quantity, checked against the strategy's free
    principal and the exchange filters."""
    if (cmd.quote_amount is None) == (cmd.quantity is None):
        raise ValidationError("Give exactly one of quoteAmount or quantity.", field="quoteAmount")
    if cmd.quote_amount is not None:
        _check_amount("quoteAmount", cmd.quote_amount)
    if cmd.quantity is not None:
        _check_amount("quantity", cmd.quantity)
    async with uow:
        strategy = await _strategy(uow, cmd.strategy_id, cmd.client_id, lock=True)
        if await uow.clients.paused([strategy.client_id]):
            raise InvalidState(
                "Trading is paused for this client (resumeTrading ends the pause).", reason="trading_paused"
            )
        symbol = await _symbol(uow, strategy.symbol_id)
        exchange = await exchange.for_client(strategy.client_id)
        price = await _price(prices, symbol)
        if cmd.quote_amount is not None:
            quantity = ch.buy_quantity_for_quote(cmd.quote_amount, price, symbol.filters)
            plan = BuyPlan(cmd.quote_amount, None, cmd.quote_amount)
        else:
            assert cmd.quantity is not None
            quantity = cmd.quantity
            plan = BuyPlan(None, cmd.quantity, cmd.quantity * price)
        ch.check_order_filters(quantity, price, symbol.filters, "Buy")
        # Rule 9: the buy fee comes out of the base asset; what remains must be sellable (rule 11).
        net = ch.round_down_to_step(quantity * (1 - exchange.fee_rate(symbol)), symbol.step_size)
        ch.check_order_filters(net, price, symbol.filters, "Selling this buy's net quantity")
        assert strategy.id is not None
        ledger = await uow.allocations.ledger(strategy.id)
        if plan.estimated_cost > ledger.free:
            raise InsufficientCapital(
                f"This buy needs about {_fmt(plan.estimated_cost)} {symbol.quote_asset} but the "
                f"strategy's free principal is {_fmt(ledger.free)}.",
                needed=str(plan.estimated_cost),
                available=str(ledger.free),
            )
        position = await _buy(uow, exchange, strategy, symbol, OrderPurpose.MANUAL_BUY, plan)
        if position is None:
            _unknown_event(uow, strategy, None, "buy")
            await uow.commit()  # the UNKNOWN order is kept for reconciliation
            raise OrderOutcomeUnknown(
                "The exchange did not confirm the buy. It is recorded, and reconciliation settles it within a "
                "minute: the position appears if it filled.",
            )
        await uow.commit()
    return position


async def sell(cmd: cmds.Sell, uow: UnitOfWork, exchange: Exchange, prices: PriceSource) -> Position:
    """Rule 8: sell a position now — refused below min_sell unless `accept_loss` (a MARKET sell
    whose loss reduces principal) — or, with `is_scheduled`, schedule it at min_sell (rule 6)."""
    if cmd.is_scheduled:
        return await schedule_sell(cmds.ScheduleSell(cmd.position_id, None, cmd.client_id), uow, exchange)
    async with uow:
        position, strategy = await _position(uow, cmd.position_id, cmd.client_id)
        if position.status is PositionStatus.CLOSED:
            raise InvalidState(f"Position {position.id} is already closed.", status=position.status.value)
        symbol = await _symbol(uow, position.symbol_id)
        exchange = await exchange.for_client(position.client_id)
        price = await _price(prices, symbol)
        if price < position.min_sell_price and not cmd.accept_loss:
            raise WouldSellAtLoss(
                f"The price {_fmt(price)} is below this position's minimum sell price "
                f"{_fmt(position.min_sell_price)}. Schedule the sell, or pass acceptLoss: true to "
                f"sell at market anyway.",
                price=str(price),
                min_sell_price=str(position.min_sell_price),
            )
        resting = position.status is PositionStatus.SCHEDULED and exchange.rests_limit_orders
        if resting:
            # Its resting sell holds the quantity on the exchange: cancel it first (rule 6). A fill it
            # got meanwhile is applied; if that sold the position, the user's sell is done.
            await _cancel_resting(uow, exchange, strategy, symbol, position)
            if _is_closed(position):
                await uow.commit()
                return position
        purpose = OrderPurpose.LOSS_EXIT if cmd.accept_loss else OrderPurpose.MANUAL_SELL
        execution = await _sell(uow, exchange, strategy, symbol, position, purpose, price)
        if execution is None:
            await _park(uow, exchange, strategy, symbol, position)
            await uow.commit()  # the UNKNOWN order is kept for reconciliation
            raise OrderOutcomeUnknown(
                f"The exchange did not confirm the sell of position {position.id}. It is recorded and the position "
                "is parked as scheduled until reconciliation has settled it (within a minute).",
            )
        if resting and not _is_closed(position):
            await _rest(uow, exchange, strategy, symbol, position, engine=True)  # what remains rests again
            if execution.executed_quantity == 0:
                await uow.commit()  # the cancelled resting sell was replaced: keep that
        if execution.executed_quantity == 0:
            raise WouldSellAtLoss(
                f"No bid at or above the minimum sell price {_fmt(position.min_sell_price)}; nothing was sold.",
                min_sell_price=str(position.min_sell_price),
            )
        await uow.commit()
    return position


async def schedule_sell(cmd: cmds.ScheduleSell, uow: UnitOfWork, exchange: Exchange) -> Position:
    """Rule 6: schedule an open position to sell at its min_sell for `min_profit` (default: the
    position's), rounded up to the tick. The user's `min_profit` becomes the position's: its
    minimum sell price follows it, so no system sell of it goes below that price (rule 3). Where
    orders rest (Binance) a LIMIT GTC sell is placed at that price; rescheduling a scheduled
    position cancels its resting sell first and places a new one."""
    if cmd.min_profit is not None:
        ch.validate_percentage("minProfit", cmd.min_profit)
    async with uow:
        position, strategy = await _position(uow, cmd.position_id, cmd.client_id)
        if position.status is PositionStatus.CLOSED:
            raise InvalidState(f"Position {position.id} is closed.", status=position.status.value)
        symbol = await _symbol(uow, position.symbol_id)
        exchange = await exchange.for_client(position.client_id)
        m = position.min_profit if cmd.min_profit is None else cmd.min_profit
        target = ch.min_sell_price(position.cost, position.quantity, m, exchange.fee_rate(symbol))
        ch.check_order_filters(position.quantity, target, symbol.filters, f"Selling position {position.id}")
        if position.status is PositionStatus.SCHEDULED and exchange.rests_limit_orders:
            await _cancel_resting(uow, exchange, strategy, symbol, position)
            if _is_closed(position):
                await uow.commit()  # the fill is recorded
                raise _sold_meanwhile(position)
        position.min_profit, position.min_sell_price = m, target
        await _schedule(
            uow, exchange, strategy, symbol, position, target, f"scheduled by the user for {_fmt(m)}% profit",
            engine=False,
        )  # fmt: skip
        await uow.commit()
    return position


def _sold_meanwhile(position: Position) -> InvalidState:
    return InvalidState(
        f"Position {position.id} was already sold at {_fmt(position.exit_price or Decimal(0))} by its resting "
        "sell: there is nothing left to cancel.",
        status=position.status.value,
    )


async def _cancel_resting(
    uow: UnitOfWork, exchange: Exchange, strategy: Strategy, symbol: Symbol, position: Position
) -> None:
    """Cancel the position's live sell orders on the exchange (rule 6) and apply what they filled
    meanwhile: a partial fill sells that share of the position, a full one closes it."""
    assert position.id is not None
    for order in await uow.orders.list_by_position(position.id, UNSETTLED, for_update=True):
        if order.side is not Side.SELL:
            continue
        execution = await exchange.cancel_order(symbol, order.client_order_id)
        if execution is None:
            order.status, order.error = OrderStatus.REJECTED, ABSENT
            continue
        await _apply_execution(uow, exchange, strategy, symbol, order, position, execution)


async def cancel_scheduled_sell(cmd: cmds.CancelScheduledSell, uow: UnitOfWork, exchange: Exchange) -> Position:
    """Rule 6: cancel a schedule; the position is open again. Where orders rest (Binance) its LIMIT
    sell is cancelled on the exchange: what it filled meanwhile is applied (the rest reopens), and a
    sell that had already filled is recorded and the cancel refused (INVALID_STATE)."""
    async with uow:
        position, strategy = await _position(uow, cmd.position_id, cmd.client_id)
        if position.status is not PositionStatus.SCHEDULED:
            raise InvalidState(
                f"Position {position.id} has no scheduled sell (it is {position.status.value}).",
                status=position.status.value,
            )
        exchange = await exchange.for_client(position.client_id)
        if exchange.rests_limit_orders:
            symbol = await _symbol(uow, position.symbol_id)
            await _cancel_resting(uow, exchange, strategy, symbol, position)
            if _is_closed(position):
                await uow.commit()  # the fill is recorded
                raise _sold_meanwhile(position)
        position.status = PositionStatus.OPEN
        position.scheduled_exit_price = None
        position.channel_exit_date = None
        _event(
            uow,
            strategy,
            EventType.SCHEDULE_CANCELLED,
            f"Scheduled sell of position {position.id} cancelled.",
            position,
        )
        await uow.commit()
    return position


# ---------------------------------------------------------------- engine-driven rules


async def _try_entry(
    uow: UnitOfWork,
    exchange: Exchange,
    strategy: Strategy,
    symbol: Symbol,
    price: Decimal,
    live: Sequence[Position],
    principal: Decimal,
    *,
    paused: bool = False,
) -> Position | None:
    """Rules 1 and 2: one entry per bounce, sized at p% of the bankroll, if free principal covers
    it. A skipped entry disarms the strategy too, and is recorded with its reason. `live` are the
    strategy's open and scheduled positions, `principal` its bankroll (read under its lock).
    `paused`: the client's trading is paused (emergency stop): the entry is skipped."""
    assert strategy.id is not None
    strategy.is_armed = False
    ledger = Ledger(principal=principal, committed=sum((p.cost for p in live), Decimal(0)), profit=Decimal(0))

    def skip(reason: SkipReason, message: str) -> None:
        _event(uow, strategy, EventType.ENTRY_SKIPPED, message, reason=reason.value, price=price)

    if paused:
        skip(SkipReason.TRADING_PAUSED, "Entry skipped: trading is paused for the client.")
        return None
    if ledger.principal <= 0:
        skip(SkipReason.NO_CAPITAL, "Entry skipped: no capital is allocated to the strategy.")
        return None
    if len(live) >= ch.max_open_positions(strategy.capital_percentage):
        skip(SkipReason.MAX_POSITIONS, f"Entry skipped: {len(live)} positions are already open.")
        return None
    try:
        plan = plan_entry(ledger.principal, strategy, symbol, price, exchange.fee_rate(symbol))
    except FilterFailure as e:
        skip(SkipReason.FILTER_FAILURE, f"Entry skipped: {e.message}")
        return None
    if plan.estimated_cost > ledger.free:
        skip(
            SkipReason.INSUFFICIENT_CAPITAL,
            f"Entry skipped: it needs {_fmt(plan.estimated_cost)} but the free principal is {_fmt(ledger.free)}.",
        )
        return None
    try:
        opened = await _buy(uow, exchange, strategy, symbol, OrderPurpose.ENTRY, plan)
    except PermanentExchangeError as e:
        skip(SkipReason.EXCHANGE_REJECTED, f"Entry skipped: the exchange refused it ({e.message}).")
        return None
    if opened is None:
        skip(
            SkipReason.ORDER_UNKNOWN,
            "Entry not confirmed by the exchange: the order is recorded and reconciliation opens the position "
            "if it filled.",
        )
    return opened


def _is_closed(position: Position) -> bool:
    return position.status is PositionStatus.CLOSED


@dataclass
class TickOutcome:
    opened: list[Position] = field(default_factory=list)
    closed: list[Position] = field(default_factory=list)
    scheduled: list[Position] = field(default_factory=list)
    # The engine's view of every strategy looked at, after the move (to refresh its index).
    snapshots: list[StrategySnapshot] = field(default_factory=list)


def snapshot(strategy: Strategy, live: Sequence[Position]) -> StrategySnapshot:
    """The engine index's view of a strategy and its live positions."""
    assert strategy.id is not None
    return StrategySnapshot.of(
        strategy.id, strategy.base_price, strategy.top_price, strategy.buy_threshold, strategy.sell_threshold,
        strategy.timeframe, strategy.is_active, strategy.is_armed, strategy.is_channel_broken,
        has_open_positions=any(p.status is PositionStatus.OPEN for p in live),
        scheduled=[
            (p.id, p.scheduled_exit_price)
            for p in live
            if p.status is PositionStatus.SCHEDULED and p.id is not None and p.scheduled_exit_price is not None
        ],
    )  # fmt: skip


async def engine_snapshots(
    uow: UnitOfWork, symbol_id: int, strategy_ids: Collection[int] | None = None
) -> list[StrategySnapshot]:
    """Snapshots of a symbol's strategies (all, or some) for the engine's index. Read only."""
    async with uow:
        strategies = await uow.strategies.list_by_symbol(symbol_id, strategy_ids)
        live = await uow.positions.list_live_by_strategies([s.id for s in strategies if s.id is not None])
    by_strategy: dict[int, list[Position]] = {}
    for p in live:
        by_strategy.setdefault(p.strategy_id, []).append(p)
    return [snapshot(s, by_strategy.get(s.id or 0, [])) for s in strategies]


async def process_price_move(
    cmd: cmds.ProcessPriceMove, uow: UnitOfWork, exchange: Exchange, symbol: Symbol | None = None
) -> TickOutcome:
    """Apply rules 1 (re-arm, entry), 4 (exit) and 6 (scheduled sells, paper) to `prev -> cur` for
    the symbol's strategies (or those of `cmd.strategy_ids`), in one transaction. Paused strategies
    only sell. `symbol` may be passed by a caller that has it (the engine), saving a query."""
    outcome = TickOutcome()
    async with uow:
        if symbol is None:
            symbol = await _symbol(uow, cmd.symbol_id)
        rows = await uow.strategies.lock_for_tick(cmd.symbol_id, cmd.strategy_ids)
        for strategy, principal, live, pause in rows:
            try:
                account = await exchange.for_client(strategy.client_id)
            except ExchangeError:
                # The client's account cannot trade now (keys refused, exchange unreachable): its
                # strategies wait for the next move (the exchange adapter logs why).
                continue
            with log_fields(strategy_id=strategy.id):
                await _apply_tick(
                    uow, account, strategy, symbol, cmd.prev, cmd.cur, outcome, live, principal,
                    paused=pause is not None, sells_held=bool(pause),
                )  # fmt: skip
        await uow.commit()
    return outcome


async def _apply_tick(
    uow: UnitOfWork,
    exchange: Exchange,
    strategy: Strategy,
    symbol: Symbol,
    prev: Decimal,
    cur: Decimal,
    outcome: TickOutcome,
    live: list[Position],
    principal: Decimal,
    *,
    paused: bool = False,
    sells_held: bool = False,
) -> None:
    assert strategy.id is not None
    lv = ch.levels(strategy.base_price, strategy.top_price, strategy.buy_threshold, strategy.sell_threshold)
    if strategy.is_active and not strategy.is_armed and not strategy.is_channel_broken and ch.rearm_triggered(cur, lv):
        strategy.is_armed = True
        _event(
            uow, strategy, EventType.STRATEGY_REARMED, f"Price {_fmt(cur)} touched the base: armed again.", price=cur
        )
    # Rule 6 (paper): a scheduled position sells on the tick that reaches its price.
    if not exchange.rests_limit_orders:
        for position in live:
            if (
                position.status is PositionStatus.SCHEDULED
                and position.scheduled_exit_price is not None
                and ch.scheduled_sell_triggered(cur, position.scheduled_exit_price)
            ):
                await _sell(uow, exchange, strategy, symbol, position, OrderPurpose.SCHEDULED_EXIT, cur)
                if _is_closed(position):
                    outcome.closed.append(position)
    # Rule 4: exit on the way down through X (unless the client's emergency stop holds its sells).
    if ch.exit_triggered(prev, cur, lv) and not sells_held:
        for position in live:
            if position.status is not PositionStatus.OPEN:
                continue
            if cur >= position.min_sell_price:
                try:
                    execution = await _sell(uow, exchange, strategy, symbol, position, OrderPurpose.EXIT, cur)
                except (FilterFailure, PermanentExchangeError) as e:
                    # Refused (e.g. the account no longer holds the quantity): recorded, and the
                    # position stays open for the user to see; the engine goes on with the others.
                    _event(
                        uow, strategy, EventType.ORDER_REFUSED,
                        f"The exchange refused the exit of position {position.id}: {e.message}", position,
                        error=e.message,
                    )  # fmt: skip
                    continue
                if _is_closed(position):
                    outcome.closed.append(position)
                    continue
                if execution is None:
                    await _park(uow, exchange, strategy, symbol, position)
                    outcome.scheduled.append(position)
                    continue
                # An unfilled IOC remainder becomes scheduled (rule 4).
            await _schedule(
                uow,
                exchange,
                strategy,
                symbol,
                position,
                position.min_sell_price,
                "exit level crossed below the minimum sell price",
            )
            outcome.scheduled.append(position)
    # Rule 1: entry on the way up through E, once per bounce.
    if (
        strategy.is_active
        and strategy.is_armed
        and not strategy.is_channel_broken
        and ch.entry_triggered(prev, cur, lv)
    ):
        opened = await _try_entry(
            uow, exchange, strategy, symbol, cur, [p for p in live if not _is_closed(p)], principal, paused=paused
        )
        if opened is not None:
            outcome.opened.append(opened)
            live.append(opened)
    outcome.snapshots.append(snapshot(strategy, [p for p in live if not _is_closed(p)]))


async def process_candle_close(cmd: cmds.ProcessCandleClose, uow: UnitOfWork, exchange: Exchange) -> list[Strategy]:
    """Rule 5: a closed candle of a strategy's timeframe below B breaks its channel: no entries, and
    each open position is scheduled at its min_sell with `channel_exit_date` = the close time."""
    broken: list[Strategy] = []
    async with uow:
        symbol = await _symbol(uow, cmd.symbol_id)
        for strategy in await uow.strategies.list_active_by_symbol(cmd.symbol_id, cmd.strategy_ids):
            # A paused strategy holding positions breaks too: its open positions are parked all the same.
            if strategy.timeframe != cmd.interval or strategy.is_channel_broken:
                continue
            lv = ch.levels(strategy.base_price, strategy.top_price, strategy.buy_threshold, strategy.sell_threshold)
            if not ch.channel_broken(cmd.close, lv):
                continue
            if (await uow.clients.paused([strategy.client_id])).get(strategy.client_id):
                continue  # an emergency stop holds the client's sells: judged on a close after it resumes
            assert strategy.id is not None
            try:
                account, rest = await exchange.for_client(strategy.client_id), True
            except ExchangeError:
                # Parked all the same; reconciliation places the resting sells once the account answers.
                account, rest = exchange, False
            strategy.channel_broken_at = cmd.close_time
            strategy.is_armed = False
            _event(
                uow,
                strategy,
                EventType.CHANNEL_BROKEN,
                f"A {strategy.timeframe} candle closed at {_fmt(cmd.close)}, below the base {_fmt(lv.base)}: "
                "channel broken, no new entries.",
                close=cmd.close,
                close_time=cmd.close_time.isoformat(),
            )
            for position in await uow.positions.list_live_by_strategy(strategy.id):
                if position.status is PositionStatus.OPEN:
                    await _schedule(
                        uow,
                        account,
                        strategy,
                        symbol,
                        position,
                        position.min_sell_price,
                        "channel broken",
                        channel_exit_date=cmd.close_time,
                        rest=rest,
                    )
            broken.append(strategy)
        await uow.commit()
    return broken


# ---------------------------------------------------------------- reconciliation and order updates


async def _lock_order(uow: UnitOfWork, client_order_id: str) -> tuple[Order, Position | None, Strategy | None] | None:
    """An order with its position and strategy, locked in the services' order (strategy, position,
    then the order) and read afresh. None when no order has that client order id."""
    order = await uow.orders.get_by_client_order_id(client_order_id)
    if order is None:
        return None
    position: Position | None = None
    strategy: Strategy | None = None
    if order.position_id is not None:
        position, strategy = await _position(uow, order.position_id, None)
    elif order.strategy_id is not None:
        strategy = await _strategy(uow, order.strategy_id, None, lock=True)
    locked = await uow.orders.get_by_client_order_id(client_order_id, for_update=True)
    assert locked is not None
    return locked, position, strategy


async def _apply_execution(
    uow: UnitOfWork,
    exchange: Exchange,
    strategy: Strategy | None,
    symbol: Symbol,
    order: Order,
    position: Position | None,
    execution: Execution,
) -> bool:
    """Record what the exchange reports of an order (its cumulative state) beyond what is recorded:
    the new part of a sell's fills sells that share of the position (rules 7, 9), a buy found filled
    opens its position. Idempotent: a state already recorded, or an older one, changes nothing — the
    same fill reported by the stream, by polling and by reconciliation is applied once."""
    new_quantity = execution.executed_quantity - order.filled_quantity
    if new_quantity < 0 or (new_quantity == 0 and (execution.status is order.status or order.status in FINAL)):
        return False
    if new_quantity > 0 and strategy is not None:
        if order.side is Side.SELL and position is not None and not _is_closed(position):
            delta = Execution(
                client_order_id=execution.client_order_id,
                exchange_order_id=execution.exchange_order_id,
                status=execution.status,
                side=execution.side,
                executed_quantity=new_quantity,
                quote_quantity=execution.quote_quantity - order.filled_quote,
                fee=execution.fee - order.fee,
                fee_asset=execution.fee_asset,
                executed_at=execution.executed_at,
                fee_asset_price_in_quote=execution.fee_asset_price_in_quote,
            )
            _apply_sell(uow, strategy, symbol, position, order, delta, order.purpose)
        elif order.side is Side.BUY and order.position_id is None and order.filled_quantity == 0:
            _record_execution(order, execution)
            await _open_position(uow, exchange, strategy, symbol, order, execution, order.purpose)
    _record_execution(order, execution)
    return True


async def apply_order_update(execution: Execution, uow: UnitOfWork, exchange: Exchange) -> bool | None:
    """A resting order's new state, as the exchange reported it (user data stream or polling, rule
    6): its new fills are applied once, under the order's lock. Returns whether anything changed,
    None when no order has that client order id (not ours, or its transaction has not committed yet)."""
    async with uow:
        locked = await _lock_order(uow, execution.client_order_id)
        if locked is None:
            return None
        order, position, strategy = locked
        symbol = await _symbol(uow, order.symbol_id)
        account = await exchange.for_client(order.client_id)
        changed = await _apply_execution(uow, account, strategy, symbol, order, position, execution)
        if changed:
            await uow.commit()
    return changed


async def _settle_absent(uow: UnitOfWork, exchange: Exchange, client_order_id: str) -> bool:
    """An order the exchange never received (unknown outcome, absent once its request could no longer
    be accepted) is rejected; a sell of a position still scheduled gets its resting sell again."""
    async with uow:
        locked = await _lock_order(uow, client_order_id)
        if locked is None:
            return False
        order, position, strategy = locked
        if order.status not in (OrderStatus.NEW, OrderStatus.UNKNOWN):
            return False
        order.status, order.error = OrderStatus.REJECTED, ABSENT
        if order.side is Side.SELL and position is not None and strategy is not None:
            account = await exchange.for_client(order.client_id)
            if account.rests_limit_orders and position.status is PositionStatus.SCHEDULED:
                await _rest(uow, account, strategy, await _symbol(uow, order.symbol_id), position, engine=True)
        await uow.commit()
    return True


async def reconcile_orders(uow: UnitOfWork, exchange: Exchange) -> int:
    """Settle every order not in a final state with what the exchange says of it (by client order
    id), one transaction each: fills of resting sells sell their positions (rule 7 bookkeeping
    included), a buy found filled opens its position, an order the exchange never received is
    rejected. Then, where orders rest, every scheduled position gets a resting sell if it has none
    (rule 6). Idempotent: only new fills are applied. Returns how many orders changed."""
    async with uow:
        pending = [(o.client_order_id, o.client_id, o.symbol_id) for o in await uow.orders.list_by_status(UNSETTLED)]
        symbols = {s.id: s for s in await uow.symbols.list()}
    settled = 0
    for coid, client_id, symbol_id in pending:
        try:
            account = await exchange.for_client(client_id)
            execution = await account.get_order(symbols[symbol_id], coid)  # asked before any lock is taken
            if execution is None:
                settled += await _settle_absent(uow, exchange, coid)
            else:
                settled += bool(await apply_order_update(execution, uow, exchange))
        except ExchangeError:
            continue  # the exchange could not be asked: the next pass tries again
    return settled + await rest_scheduled_positions(uow, exchange)


async def rest_scheduled_positions(uow: UnitOfWork, exchange: Exchange) -> int:
    """Rule 6 where orders rest: every scheduled position has a live sell order on the exchange. One
    is placed for each that lacks it — its placement was never received, the exchange cancelled or
    expired it, an unknown sell was settled without selling it all, or its account could not be
    reached when it was scheduled. A position whose last sell the exchange refused is left to the
    user (reschedule or cancel it): retrying would be refused again. Returns how many were placed."""
    scheduled: list[tuple[int, int]] = []
    async with uow:
        page = Page(500)
        while rows := await uow.positions.list(page, status=PositionStatus.SCHEDULED):
            scheduled += [(p.id, p.client_id) for p in rows if p.id is not None]
            page = Page(500, before_id=scheduled[-1][0])
    placed = 0
    for position_id, client_id in scheduled:
        try:
            account = await exchange.for_client(client_id)
        except ExchangeError:
            continue
        if not account.rests_limit_orders:
            continue
        async with uow:
            position, strategy = await _position(uow, position_id, None)
            orders = await uow.orders.list_by_position(position_id, tuple(OrderStatus))
            sells = [o for o in orders if o.side is Side.SELL]
            if position.status is not PositionStatus.SCHEDULED or any(o.status in UNSETTLED for o in sells):
                continue
            if sells and sells[-1].status is OrderStatus.REJECTED and sells[-1].error != ABSENT:
                continue
            symbol = await _symbol(uow, position.symbol_id)
            placed += await _rest(uow, account, strategy, symbol, position, engine=True) is not None
            await uow.commit()
    return placed


async def resting_orders(uow: UnitOfWork) -> list[tuple[Order, Symbol]]:
    """Orders resting on the exchange (open or partially filled), with their symbols: what the
    consumer of order updates watches after a restart. Read only."""
    async with uow:
        orders = await uow.orders.list_by_status((OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED))
        symbols = {s.id: s for s in await uow.symbols.list()}
    return [(o, symbols[o.symbol_id]) for o in orders]
