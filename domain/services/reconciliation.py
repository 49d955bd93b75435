"""Reconciliation and order updates: what the exchange reports of orders, applied exactly once."""

from __future__ import annotations

from datetime import datetime, timedelta

from domain.errors import (
    ExchangeError,
)
from domain.model import (
    Order,
    OrderStatus,
    PositionStatus,
    Side,
    Symbol,
)
from domain.ports import Exchange, Execution, Page, UnitOfWork
from domain.services.common import (
    get_position,
    get_symbol,
    lock_order,
    utcnow,
)
from domain.services.execution import (
    ABSENT,
    ABSENT_AFTER,
    UNSETTLED,
    apply_execution,
    rest_sell,
)


async def apply_order_update(execution: Execution, uow: UnitOfWork, exchange: Exchange) -> bool | None:
    """A resting order's new state, as the exchange reported it (user data stream or polling, rule
    6): its new fills are applied once, under the order's lock. Returns whether anything changed,
    None when no order has that client order id (not ours, or its transaction has not committed yet)."""
    async with uow:
        locked = await lock_order(uow, execution.client_order_id)
        if locked is None:
            return None
        order, position, strategy = locked
        symbol = await get_symbol(uow, order.symbol_id)
        account = await exchange.for_client(order.client_id)
        changed = await apply_execution(uow, account, strategy, symbol, order, position, execution)
        if changed:
            await uow.commit()
    return changed


async def _settle_absent(uow: UnitOfWork, exchange: Exchange, client_order_id: str) -> bool:
    """An order the exchange has never listed since its outcome became unknown, for longer than
    `absent_after`, is rejected as never placed; a sell of a position still scheduled gets its
    resting sell again (a new order: the account holds the quantity once, so it cannot sell twice)."""
    async with uow:
        locked = await lock_order(uow, client_order_id)
        if locked is None:
            return False
        order, position, strategy = locked
        if order.status not in (OrderStatus.NEW, OrderStatus.UNKNOWN):
            return False
        order.status, order.error = OrderStatus.REJECTED, ABSENT
        if order.side is Side.SELL and position is not None and strategy is not None:
            account = await exchange.for_client(order.client_id)
            if account.rests_limit_orders and position.status is PositionStatus.SCHEDULED:
                await rest_sell(uow, account, strategy, await get_symbol(uow, order.symbol_id), position, engine=True)
        await uow.commit()
    return True


async def reconcile_orders(
    uow: UnitOfWork,
    exchange: Exchange,
    *,
    absent_after: timedelta = ABSENT_AFTER,
    now: datetime | None = None,
) -> int:
    """Settle every order not in a final state with what the exchange says of it (by client order
    id), one transaction each: fills of resting sells sell their positions (rule 7 bookkeeping
    included), a buy found filled opens its position. An order the exchange does not list stays as
    it is — a timeout, a 5xx or -1007 leaves its execution status unknown, and the matching engine
    may still take it (Binance's rest-api.md "HTTP Return Codes", errors.md -1007) — until
    `absent_after` has passed since it was recorded: only then is it rejected as never placed. Then,
    where orders rest, every scheduled position gets a resting sell if it has none (rule 6).
    Idempotent: only new fills are applied. Returns how many orders changed."""
    now = now or utcnow()
    async with uow:
        pending = [
            (o.client_order_id, o.client_id, o.symbol_id, o.created_at)
            for o in await uow.orders.list_by_status(UNSETTLED)
        ]
        symbols = {s.id: s for s in await uow.symbols.list()}
    settled = 0
    for coid, client_id, symbol_id, created_at in pending:
        try:
            account = await exchange.for_client(client_id)
            execution = await account.get_order(symbols[symbol_id], coid)  # asked before any lock is taken
            if execution is None:
                if created_at is None or now - created_at >= absent_after:
                    settled += await _settle_absent(uow, exchange, coid)
            else:
                settled += bool(await apply_order_update(execution, uow, exchange))
        except ExchangeError:
            continue  # the exchange could not be asked: the next pass tries again
    return settled + await rest_scheduled_positions(uow, exchange)


async def rest_scheduled_positions(uow: UnitOfWork, exchange: Exchange) -> int:
    """Rule 6 where orders rest: every scheduled position has a live sell order on the exchange. One
    is placed for each that lacks it — its placement was never received, the exchange cancelled or
    expired it, an unknown sell was settled without selling it all, its account could not be
    reached when it was scheduled, or the exchange's filters did not allow it yet
    (PERCENT_PRICE_BY_SIDE as the average price moves, MAX_NUM_ORDERS: tried again on each pass).
    A position whose last sell the exchange refused is left to the user (reschedule or cancel it):
    retrying would be refused again. Returns how many were placed."""
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
            position, strategy = await get_position(uow, position_id, None)
            orders = await uow.orders.list_by_position(position_id, tuple(OrderStatus))
            sells = [o for o in orders if o.side is Side.SELL]
            if position.status is not PositionStatus.SCHEDULED or any(o.status in UNSETTLED for o in sells):
                continue
            if sells and sells[-1].status is OrderStatus.REJECTED and sells[-1].error != ABSENT:
                continue
            symbol = await get_symbol(uow, position.symbol_id)
            placed += await rest_sell(uow, account, strategy, symbol, position, engine=True) is not None
            await uow.commit()
    return placed


async def resting_orders(uow: UnitOfWork) -> list[tuple[Order, Symbol]]:
    """Orders resting on the exchange (open or partially filled), with their symbols: what the
    consumer of order updates watches after a restart. Read only."""
    async with uow:
        orders = await uow.orders.list_by_status((OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED))
        symbols = {s.id: s for s in await uow.symbols.list()}
    return [(o, symbols[o.symbol_id]) for o in orders]
