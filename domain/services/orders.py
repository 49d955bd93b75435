"""Manual orders (rule 8) and scheduled sells (rule 6), as the user asks for them."""

from __future__ import annotations

from decimal import Decimal

from domain import channel as ch
from domain import commands as cmds
from domain.errors import (
    InsufficientCapital,
    InvalidState,
    OrderOutcomeUnknown,
    ValidationError,
    WouldSellAtLoss,
)
from domain.events import EventType
from domain.model import (
    OrderPurpose,
    OrderStatus,
    Position,
    PositionStatus,
    Side,
    Strategy,
    Symbol,
)
from domain.ports import Exchange, PriceSource, UnitOfWork
from domain.services.common import (
    check_amount,
    check_not_archived,
    fmt,
    get_position,
    get_strategy,
    get_symbol,
    is_closed,
    market_price,
    record_event,
    require_trading,
)
from domain.services.execution import (
    ABSENT,
    UNSETTLED,
    BuyPlan,
    apply_execution,
    park_position,
    place_buy,
    place_sell,
    rest_sell,
    schedule_position,
    unknown_order_event,
)


async def buy(cmd: cmds.Buy, uow: UnitOfWork, exchange: Exchange, prices: PriceSource) -> Position:
    """Rule 8: a manual MARKET buy by quote amount or quantity, checked against the strategy's free
    principal and the exchange filters."""
    if (cmd.quote_amount is None) == (cmd.quantity is None):
        raise ValidationError("Give exactly one of quoteAmount or quantity.", field="quoteAmount")
    if cmd.quote_amount is not None:
        check_amount("quoteAmount", cmd.quote_amount)
    if cmd.quantity is not None:
        check_amount("quantity", cmd.quantity)
    async with uow:
        strategy = await get_strategy(uow, cmd.strategy_id, cmd.client_id, lock=True)
        check_not_archived(strategy)
        if await uow.clients.paused([strategy.client_id]):
            raise InvalidState(
                "Trading is paused for this client (resumeTrading ends the pause).", reason="trading_paused"
            )
        symbol = await get_symbol(uow, strategy.symbol_id)
        require_trading(symbol)
        exchange = await exchange.for_client(strategy.client_id)
        price = await market_price(prices, symbol)
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
                f"This buy needs about {fmt(plan.estimated_cost)} {symbol.quote_asset} but the "
                f"strategy's free principal is {fmt(ledger.free)}.",
                needed=plan.estimated_cost,
                available=ledger.free,
            )
        position = await place_buy(uow, exchange, strategy, symbol, OrderPurpose.MANUAL_BUY, plan)
        if position is None:
            unknown_order_event(uow, strategy, None, "buy")
            await uow.commit()  # the UNKNOWN order is kept for reconciliation
            raise OrderOutcomeUnknown(
                "The exchange did not confirm the buy. It is recorded and never sent again; the position "
                "appears as soon as the exchange reports it filled.",
            )
        await uow.commit()
    return position


async def sell(cmd: cmds.Sell, uow: UnitOfWork, exchange: Exchange, prices: PriceSource) -> Position:
    """Rule 8: sell a position now — refused below min_sell unless `accept_loss` (a MARKET sell
    whose loss reduces principal) — or, with `is_scheduled`, schedule it at min_sell (rule 6)."""
    if cmd.is_scheduled:
        return await schedule_sell(cmds.ScheduleSell(cmd.position_id, None, cmd.client_id), uow, exchange)
    async with uow:
        position, strategy = await get_position(uow, cmd.position_id, cmd.client_id)
        if position.status is PositionStatus.CLOSED:
            raise InvalidState(f"Position {position.id} is already closed.", status=position.status.value)
        symbol = await get_symbol(uow, position.symbol_id)
        require_trading(symbol)
        exchange = await exchange.for_client(position.client_id)
        price = await market_price(prices, symbol)
        if price < position.min_sell_price and not cmd.accept_loss:
            raise WouldSellAtLoss(
                f"The price {fmt(price)} is below this position's minimum sell price "
                f"{fmt(position.min_sell_price)}. Schedule the sell, or pass acceptLoss: true to "
                f"sell at market anyway.",
                price=price,
                min_sell_price=position.min_sell_price,
            )
        resting = position.status is PositionStatus.SCHEDULED and exchange.rests_limit_orders
        if resting:
            # Its resting sell holds the quantity on the exchange: cancel it first (rule 6). A fill it
            # got meanwhile is applied; if that sold the position, the user's sell is done.
            await cancel_resting_sells(uow, exchange, strategy, symbol, position)
            if is_closed(position):
                await uow.commit()
                return position
        purpose = OrderPurpose.LOSS_EXIT if cmd.accept_loss else OrderPurpose.MANUAL_SELL
        execution = await place_sell(uow, exchange, strategy, symbol, position, purpose, price)
        if execution is None:
            await park_position(uow, exchange, strategy, symbol, position)
            await uow.commit()  # the UNKNOWN order is kept for reconciliation
            raise OrderOutcomeUnknown(
                f"The exchange did not confirm the sell of position {position.id}. It is recorded and the position "
                "is parked as scheduled until reconciliation has settled it.",
            )
        if resting and not is_closed(position):
            await rest_sell(uow, exchange, strategy, symbol, position, engine=True)  # what remains rests again
            if execution.executed_quantity == 0:
                await uow.commit()  # the cancelled resting sell was replaced: keep that
        if execution.executed_quantity == 0:
            raise WouldSellAtLoss(
                f"No bid at or above the minimum sell price {fmt(position.min_sell_price)}; nothing was sold.",
                min_sell_price=position.min_sell_price,
            )
        await uow.commit()
    return position


async def schedule_sell(cmd: cmds.ScheduleSell, uow: UnitOfWork, exchange: Exchange) -> Position:
    """Rule 6: schedule an open position to sell at its min_sell for `min_profit` (default: the
    position's), rounded up to the tick. The user's `min_profit` becomes the position's: its
    minimum sell price follows it, so no system sell of it goes below that price (rule 3). Where
    orders rest (Binance) a LIMIT GTC sell is placed at that price; rescheduling a scheduled
    position cancels its resting sell first and places a new one. A price at or below the market
    is marketable: Binance fills that order at once at the market's price, and so does paper
    (`schedule_position`; never below the limit); above the market it waits for the price."""
    if cmd.min_profit is not None:
        ch.validate_percentage("minProfit", cmd.min_profit)
    async with uow:
        position, strategy = await get_position(uow, cmd.position_id, cmd.client_id)
        if position.status is PositionStatus.CLOSED:
            raise InvalidState(f"Position {position.id} is closed.", status=position.status.value)
        symbol = await get_symbol(uow, position.symbol_id)
        require_trading(symbol)
        exchange = await exchange.for_client(position.client_id)
        m = position.min_profit if cmd.min_profit is None else cmd.min_profit
        target = ch.min_sell_price(position.cost, position.quantity, m, exchange.fee_rate(symbol))
        ch.check_order_filters(position.quantity, target, symbol.filters, f"Selling position {position.id}")
        if position.status is PositionStatus.SCHEDULED and exchange.rests_limit_orders:
            await cancel_resting_sells(uow, exchange, strategy, symbol, position)
            if is_closed(position):
                await uow.commit()  # the fill is recorded
                raise _sold_meanwhile(position)
        position.min_profit, position.min_sell_price = m, target
        await schedule_position(
            uow, exchange, strategy, symbol, position, target, f"scheduled by the user for {fmt(m)}% profit",
            engine=False,
        )  # fmt: skip
        await uow.commit()
    return position


def _sold_meanwhile(position: Position) -> InvalidState:
    return InvalidState(
        f"Position {position.id} was already sold at {fmt(position.exit_price or Decimal(0))} by its resting "
        "sell: there is nothing left to cancel.",
        status=position.status.value,
    )


async def cancel_resting_sells(
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
        await apply_execution(uow, exchange, strategy, symbol, order, position, execution)


async def cancel_scheduled_sell(cmd: cmds.CancelScheduledSell, uow: UnitOfWork, exchange: Exchange) -> Position:
    """Rule 6: cancel a schedule; the position is open again. Where orders rest (Binance) its LIMIT
    sell is cancelled on the exchange: what it filled meanwhile is applied (the rest reopens), and a
    sell that had already filled is recorded and the cancel refused (INVALID_STATE)."""
    async with uow:
        position, strategy = await get_position(uow, cmd.position_id, cmd.client_id)
        if position.status is not PositionStatus.SCHEDULED:
            raise InvalidState(
                f"Position {position.id} has no scheduled sell (it is {position.status.value}).",
                status=position.status.value,
            )
        exchange = await exchange.for_client(position.client_id)
        if exchange.rests_limit_orders:
            symbol = await get_symbol(uow, position.symbol_id)
            await cancel_resting_sells(uow, exchange, strategy, symbol, position)
            if is_closed(position):
                await uow.commit()  # the fill is recorded
                raise _sold_meanwhile(position)
        position.status = PositionStatus.OPEN
        position.scheduled_exit_price = None
        position.channel_exit_date = None
        record_event(
            uow,
            strategy,
            EventType.SCHEDULE_CANCELLED,
            f"Scheduled sell of position {position.id} cancelled.",
            position,
        )
        await uow.commit()
    return position
