"""Placing orders and booking their fills (rules 3, 4, 6, 7, 9): the machinery every use case that
trades shares. Client order ids are deterministic; an unknown outcome is kept UNKNOWN, never resent."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from domain import channel as ch
from domain.errors import (
    FilterFailure,
    OrderNotAllowedNow,
    PermanentExchangeError,
    TemporaryExchangeError,
)
from domain.events import EventType
from domain.logctx import log_fields
from domain.model import (
    AllocationKind,
    CapitalAllocation,
    Order,
    OrderPurpose,
    OrderStatus,
    OrderType,
    Position,
    PositionStatus,
    Side,
    Strategy,
    Symbol,
    TimeInForce,
    Trade,
)
from domain.ports import Exchange, Execution, SimulatedRestingSells, UnitOfWork
from domain.services.common import (
    client_order_id,
    fmt,
    is_closed,
    record_event,
    utcnow,
)


def record_execution(order: Order, execution: Execution) -> None:
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
# How long an order whose outcome is unknown must stay unlisted before it is taken as never placed.
# Binance's API answers -1007 after 10 s without the matching engine's answer, and its recvWindow
# check "does not cover potential delays inside the Matching Engine" (CHANGELOG, 2025): so absence
# soon after a send proves nothing. Minutes later it is settled; nothing is ever resent for it.
ABSENT_AFTER = timedelta(minutes=5)


async def next_order_id(
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


async def send_order(
    uow: UnitOfWork,
    order: Order,
    found: Execution | None,
    unreachable: str | None,
    send: Callable[[], Awaitable[Execution]],
) -> Execution | None:
    """Send `order` — unless the exchange already has it (`found`) — and record what the exchange
    says of it. None when the outcome is unknown (the exchange could not be asked, or did not answer
    after the request left): the order stays recorded as UNKNOWN instead of being rolled back, since
    it may exist, and it is never sent again on its absence alone — reconciliation settles it. A
    refusal marks it REJECTED and is raised; an order the exchange's filters do not allow yet
    (`OrderNotAllowedNow`: nothing was placed) is raised without a row.

    The row joins the transaction once the request is answered (no round trip before sending)."""
    order.created_at = utcnow()
    execution = found
    if execution is None and unreachable is None:
        try:
            with log_fields(strategy_id=order.strategy_id, position_id=order.position_id,
                            client_order_id=order.client_order_id):  # fmt: skip
                execution = await send()
        except OrderNotAllowedNow:
            raise
        except TemporaryExchangeError as e:
            unreachable = e.message
        except PermanentExchangeError as e:
            order.status, order.error = OrderStatus.REJECTED, e.message
            uow.orders.add(order)
            raise
    uow.orders.add(order)
    if execution is None:
        order.status, order.error = OrderStatus.UNKNOWN, unreachable
        return None
    record_execution(order, execution)
    return execution


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
            f"Lot rounding would make this entry spend {fmt(spent)} "
            f"({fmt(spent / bankroll * 100)}% of the bankroll instead of {fmt(strategy.capital_percentage)}%).",
            filter="ALLOCATION_PRECISION",
        )
    return BuyPlan(quote_amount=quote, quantity=None, estimated_cost=spent)


async def place_buy(
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

    coid, found, unreachable = await next_order_id(exchange, symbol, next_id)
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

    async def send() -> Execution:
        return await exchange.market_buy(symbol, coid, quote_amount=plan.quote_amount, quantity=plan.quantity)

    execution = await send_order(uow, order, found, unreachable, send)
    if execution is None:
        return None
    if execution.executed_quantity == 0 or execution.average_price is None:
        raise PermanentExchangeError(f"The buy order {order.client_order_id} was not filled.")
    return await open_position(uow, exchange, strategy, symbol, order, execution, purpose)


async def open_position(
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
    record_event(
        uow,
        strategy,
        EventType.POSITION_OPENED,
        f"Bought {fmt(bought.quantity)} {symbol.base_asset} at {fmt(execution.average_price)} "
        f"for {fmt(bought.cost)} {symbol.quote_asset}.",
        position,
        price=execution.average_price,
        quantity=bought.quantity,
        cost=bought.cost,
        min_sell_price=position.min_sell_price,
    )
    return position


async def schedule_position(
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
    orders rest (Binance), its LIMIT GTC sell is placed now (`rest`). On paper it is placed only when
    marketable — at or below the market, where Binance would fill it at once, at the market's price;
    otherwise the engine sells it, at its limit, on the tick that reaches the price."""
    position.status = PositionStatus.SCHEDULED
    position.scheduled_exit_price = ch.limit_sell_price(price, symbol.filters)
    if channel_exit_date is not None:
        position.channel_exit_date = channel_exit_date
    record_event(
        uow,
        strategy,
        EventType.POSITION_SCHEDULED,
        f"Position {position.id} scheduled to sell at {fmt(position.scheduled_exit_price)} ({reason}).",
        position,
        scheduled_exit_price=position.scheduled_exit_price,
        reason=reason,
    )
    if rest and (exchange.rests_limit_orders or await _marketable_on_paper(exchange, symbol, position)):
        await rest_sell(uow, exchange, strategy, symbol, position, engine=engine)


async def _marketable_on_paper(exchange: Exchange, symbol: Symbol, position: Position) -> bool:
    """Rule 6 where orders do not rest: the scheduled sell's price is at or below the market."""
    if not isinstance(exchange, SimulatedRestingSells) or position.scheduled_exit_price is None:
        return False
    market = await exchange.market_price(symbol)
    return market is not None and market >= position.scheduled_exit_price


async def rest_sell(
    uow: UnitOfWork,
    exchange: Exchange,
    strategy: Strategy,
    symbol: Symbol,
    position: Position,
    *,
    engine: bool,
) -> Execution | None:
    """Rule 6 where orders rest (Binance), or a marketable one on paper: a LIMIT GTC sell of the
    position at its scheduled exit price, recorded as an OPEN order; its fills come later
    (`apply_order_update`, reconciliation). If the market is already there it fills at once, at the
    market's price, and the sell is applied. An outcome the exchange could not confirm leaves the
    order UNKNOWN for reconciliation. A sell the exchange's filters do not allow yet
    (PERCENT_PRICE_BY_SIDE after a fall in price, MAX_NUM_ORDERS) is not placed: the position waits,
    its events say why, and reconciliation places it once allowed (`rest_scheduled_positions`). A
    refusal (balance, filters) is raised to a user; in the engine it is recorded with an event and
    the position stays scheduled (the user reschedules or cancels it)."""
    assert position.scheduled_exit_price is not None
    try:
        execution = await place_sell(
            uow, exchange, strategy, symbol, position, OrderPurpose.SCHEDULED_EXIT, position.scheduled_exit_price
        )
    except OrderNotAllowedNow as e:
        await sell_waiting_event(uow, strategy, position, e)
        return None
    except (FilterFailure, PermanentExchangeError) as e:
        if not engine:
            raise
        record_event(
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
        unknown_order_event(uow, strategy, position, "resting sell")
    return execution


async def sell_waiting_event(
    uow: UnitOfWork, strategy: Strategy, position: Position, error: OrderNotAllowedNow
) -> None:
    """Say once why a position's resting sell waits: not again while the same filter holds it back
    (reconciliation retries every half minute)."""
    assert strategy.id is not None
    reason = str(error.details.get("filter", ""))
    for event in await uow.events.list_by_strategy(strategy.id, 50):
        if event.position_id == position.id:
            if event.type == EventType.SELL_WAITING.value and event.data.get("filter") == reason:
                return
            break
    record_event(
        uow,
        strategy,
        EventType.SELL_WAITING,
        f"The resting sell of position {position.id} waits: {error.message}",
        position,
        **{k: v for k, v in error.details.items() if k != "client_order_id"},
    )


def unknown_order_event(uow: UnitOfWork, strategy: Strategy, position: Position | None, what: str) -> None:
    record_event(
        uow,
        strategy,
        EventType.ORDER_UNKNOWN,
        f"The exchange did not confirm the {what}{f' of position {position.id}' if position else ''}; "
        "it is recorded, never sent again, and settled by the order lookups and reports of reconciliation.",
        position,
    )


async def park_position(
    uow: UnitOfWork, exchange: Exchange, strategy: Strategy, symbol: Symbol, position: Position
) -> None:
    """A sell whose outcome is unknown: the position is parked as scheduled at its min_sell, with no
    new order, so that nothing sells it again before reconciliation has settled that sell (then a
    resting sell is placed for what remains, where orders rest)."""
    if position.status is PositionStatus.OPEN:
        await schedule_position(
            uow, exchange, strategy, symbol, position, position.min_sell_price, "sell not confirmed", rest=False
        )
    unknown_order_event(uow, strategy, position, "sell")


async def place_sell(
    uow: UnitOfWork,
    exchange: Exchange,
    strategy: Strategy,
    symbol: Symbol,
    position: Position,
    purpose: OrderPurpose,
    price: Decimal,
    *,
    reached: bool = False,
) -> Execution | None:
    """Sell a position's quantity. System and manual sells are LIMIT orders that cannot fill below
    min_sell (rules 3, 4, 6); only LOSS_EXIT is a MARKET order. Records the fill, the returned
    cost and the segregated profit (rule 7). Returns the execution (possibly unfilled, or resting),
    None when its outcome is unknown (the order is recorded UNKNOWN).

    `reached`: on an exchange where orders do not rest (paper), the scheduled sell the market has
    just reached — filled at its limit, as the resting order would have been (rule 6). Otherwise a
    limit sell is a new order: at or below the market it fills at once at the market's price."""
    assert position.id is not None and symbol.id is not None
    quantity = position.quantity
    ch.check_order_filters(quantity, price, symbol.filters, f"Selling position {position.id}")
    position_id = position.id

    def next_id() -> str:
        position.sell_seq += 1
        return client_order_id(purpose, position_id, position.sell_seq)

    coid, found, unreachable = await next_order_id(exchange, symbol, next_id)
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

    async def send() -> Execution:
        if limit is None:
            return await exchange.market_sell(symbol, coid, quantity)
        assert tif is not None
        if reached and isinstance(exchange, SimulatedRestingSells):
            return await exchange.fill_resting_sell(symbol, coid, quantity, limit)
        return await exchange.limit_sell(symbol, coid, quantity, limit, tif)

    execution = await send_order(uow, order, found, unreachable, send)
    if execution is not None and execution.executed_quantity > 0:
        await uow.flush()  # the trade refers to the order's id
        apply_sell(uow, strategy, symbol, position, order, execution, purpose)
    return execution


def apply_sell(
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
        record_event(
            uow,
            strategy,
            EventType.POSITION_CLOSED,
            f"Sold {fmt(sold)} {symbol.base_asset} at {fmt(execution.average_price)}: "
            f"{'profit' if result.profit >= 0 else 'loss'} {fmt(result.profit)} {symbol.quote_asset}.",
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
        record_event(
            uow,
            strategy,
            EventType.POSITION_PARTIALLY_SOLD,
            f"Sold {fmt(sold)} of position {position.id}; {fmt(position.quantity)} remain.",
            position,
            price=execution.average_price,
            quantity=sold,
            profit=result.profit,
        )


async def apply_execution(
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
        if order.side is Side.SELL and position is not None and not is_closed(position):
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
            apply_sell(uow, strategy, symbol, position, order, delta, order.purpose)
        elif order.side is Side.BUY and order.position_id is None and order.filled_quantity == 0:
            record_execution(order, execution)
            await open_position(uow, exchange, strategy, symbol, order, execution, order.purpose)
    record_execution(order, execution)
    return True
