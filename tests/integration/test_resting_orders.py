"""Scheduled sells resting on Binance (SPEC §4 rule 6, issue 4): the services on PostgreSQL, the
client's account through `ExchangeRouter`, python-binance against the local Binance.

A schedule places a LIMIT GTC sell at the scheduled price; a cancel cancels it (a fill it got
meanwhile is applied); its fill, reported by the user data stream, is applied once — also when the
same report arrives twice, and when reconciliation saw it first; an outcome Binance could not
confirm is recorded as UNKNOWN and settled by reconciliation.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from domain import commands as cmds
from domain import services
from domain.adapters.bootstrap import App
from domain.adapters.exchanges.binance import BinanceExchange
from domain.adapters.exchanges.router import ExchangeRouter
from domain.adapters.exchanges.secrets import SecretBox
from domain.adapters.seed import seed_demo
from domain.errors import InvalidState, OrderOutcomeUnknown
from domain.model import Order, OrderPurpose, OrderStatus, Position, PositionStatus, Side, TimeInForce, Trade
from domain.ports import Page
from domain.services import exchange_keys
from tests.binance_local import LocalBinance, local_config
from workers.orders import OrderUpdatesWorker
from workers.supervision import Backoff, supervise

pytest_plugins = ["tests.binance_local.fixtures"]  # local_binance

BTC = "BTCUSDT"
ENTRY = Decimal(102500)
# The demo strategy's position bought for 400 USDT at 102,500: Q = 0.00389 BTC, cost 399.75;
# min_sell 103,380.694319…, resting at 103,380.70 (rounded up to the tick, rule 9).
LIMIT = Decimal("103380.70")


@pytest.fixture
async def binance(db: App, local_binance: LocalBinance) -> AsyncIterator[LocalBinance]:
    """The demo client trading on the local Binance with its own keys (the others would be on paper)."""
    await seed_demo(db.uow, db.exchange)
    box = SecretBox(str(db.settings.criptoren_secret_key))
    cmd = cmds.SetExchangeKeys(1, local_binance.api_key, local_binance.api_secret)
    await exchange_keys.set_exchange_keys(cmd, db.uow(), box)

    def open_account(api_key: str, api_secret: str) -> BinanceExchange:
        return BinanceExchange(local_config(local_binance, api_key=api_key, api_secret=api_secret))

    router = ExchangeRouter(db.exchange, db.uow, box, open_account)
    db.exchange = router
    try:
        yield local_binance
    finally:
        await router.close()


async def market(db: App, binance: LocalBinance, price: Decimal, quantity: Decimal | None = None) -> None:
    """A trade at `price` on the local Binance (resting orders it reaches fill), seen by the app too."""
    db.price_book.set(BTC, price)
    await binance.set_price(BTC, price, quantity)


async def bought(db: App, binance: LocalBinance) -> Position:
    await market(db, binance, ENTRY)
    position = await services.buy(cmds.Buy(1, quote_amount=Decimal(400)), db.uow(), db.exchange, db.prices)
    assert (position.quantity, position.cost) == (Decimal("0.00389"), Decimal("399.75"))
    return position


async def scheduled(db: App, binance: LocalBinance) -> Position:
    position = await bought(db, binance)
    assert position.id is not None
    return await services.schedule_sell(cmds.ScheduleSell(position.id), db.uow(), db.exchange)


async def rows(db: App) -> tuple[list[Order], list[Trade], Position]:
    async with db.uow() as uow:
        orders = [o for o in await uow.orders.list_by_status(tuple(OrderStatus)) if o.side is Side.SELL]
        trades = [t for t in reversed(await uow.trades.list(Page(100))) if t.side is Side.SELL]
        (position,) = await uow.positions.list(Page(10))
    return orders, trades, position


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("not reached in time")
        await asyncio.sleep(0.05)


async def account(db: App) -> BinanceExchange:
    exchange = await db.exchange.for_client(1)
    assert isinstance(exchange, BinanceExchange)
    return exchange


async def test_a_schedule_rests_a_limit_gtc_sell_and_a_cancel_cancels_it(db: App, binance: LocalBinance) -> None:
    position = await scheduled(db, binance)
    assert position.status is PositionStatus.SCHEDULED and position.scheduled_exit_price == LIMIT
    (order,), trades, _ = await rows(db)
    assert (order.purpose, order.type, order.time_in_force) == (OrderPurpose.SCHEDULED_EXIT, "limit", TimeInForce.GTC)
    assert (order.status, order.price, order.requested_quantity) == (OrderStatus.OPEN, LIMIT, Decimal("0.00389"))
    (resting,) = binance.orders_with(order.client_order_id)
    assert (resting.type, resting.time_in_force, resting.price, resting.status) == ("LIMIT", "GTC", LIMIT, "NEW")
    assert binance.balance("BTC")[1] == Decimal("0.00389")  # locked by the resting order
    assert trades == []

    await market(db, binance, Decimal(103000))  # below the limit: nothing
    assert position.id is not None
    reopened = await services.cancel_scheduled_sell(cmds.CancelScheduledSell(position.id), db.uow(), db.exchange)
    assert reopened.status is PositionStatus.OPEN and reopened.scheduled_exit_price is None
    (order,), trades, _ = await rows(db)
    assert order.status is OrderStatus.CANCELED and resting.status == "CANCELED" and trades == []
    assert binance.balance("BTC") == (Decimal("0.0038961"), 0)

    # Scheduled again: a new order (the next id), the cancelled one stays cancelled.
    again = await services.schedule_sell(cmds.ScheduleSell(position.id), db.uow(), db.exchange)
    assert again.status is PositionStatus.SCHEDULED
    orders, _, _ = await rows(db)
    assert [o.status for o in orders] == [OrderStatus.CANCELED, OrderStatus.OPEN]
    assert orders[1].client_order_id == f"cr-s{position.id}-2"


async def test_a_fill_from_the_user_data_stream_is_applied_once(db: App, binance: LocalBinance) -> None:
    binance.duplicate_stream_messages = True  # every report arrives twice
    await scheduled(db, binance)
    worker = OrderUpdatesWorker(db)
    task = asyncio.create_task(worker.run())
    try:
        await market(db, binance, Decimal(104000))  # reaches the limit: a maker fill at the limit price

        async def closed() -> bool:
            return (await rows(db))[2].status is PositionStatus.CLOSED

        await eventually(closed)
        (order,), (trade,), sold = await rows(db)
        assert (order.status, order.filled_quantity) == (OrderStatus.FILLED, Decimal("0.00389"))
        assert (trade.price, trade.quantity, trade.quote_amount) == (LIMIT, Decimal("0.00389"), Decimal("402.150923"))
        assert (trade.fees, trade.fee_asset) == (Decimal("0.40215092"), "USDT")
        proceeds = Decimal("402.150923") - Decimal("0.40215092")
        assert sold.exit_price == LIMIT and sold.realized_profit == proceeds - Decimal("399.75")
        assert (await account(db)).updates_from_stream == 1  # the duplicate was not even emitted

        # The same report delivered again (another worker, a replay): nothing more.
        update = await (await account(db)).get_order(binance.domain_symbol(BTC), order.client_order_id)
        assert update is not None
        assert await services.apply_order_update(update, db.uow(), db.exchange) is False
        assert await worker.apply(update) is False
        assert await services.reconcile_orders(db.uow(), db.exchange) == 0
        _, trades, _ = await rows(db)
        assert len(trades) == 1 and worker.applied == 1
    finally:
        task.cancel()
    async with db.uow() as uow:
        ledger = await uow.allocations.ledger(1)
    assert ledger.committed == 0 and ledger.profit == sold.realized_profit and ledger.principal == 2000


class OneLostCommit:
    """Units of work of which, once armed, the next commit fails as a lost database connection would."""

    def __init__(self, factory: Any) -> None:
        self.factory = factory
        self.armed = False

    def __call__(self) -> Any:
        uow = self.factory()
        commit = uow.commit

        async def flaky_commit() -> None:
            if self.armed:
                self.armed = False
                raise ConnectionResetError("the database connection was lost")
            await commit()

        uow.commit = flaky_commit
        return uow


async def test_the_consumer_of_order_updates_dies_on_a_database_error_and_is_restarted(
    db: App, binance: LocalBinance
) -> None:
    """As the worker runs it (workers/settings.py): supervised. The report whose update could not
    commit is lost with the consumer, but the restarted one applies the next report in full."""
    await scheduled(db, binance)
    real = db.uow
    flaky = OneLostCommit(real)
    db.uow = flaky  # type: ignore[assignment]
    stop = asyncio.Event()
    worker = OrderUpdatesWorker(db)
    task = asyncio.create_task(supervise("Order updates", worker.run, stop=stop, backoff=Backoff(initial=0.05)))
    try:
        flaky.armed = True
        await market(db, binance, Decimal(104000), quantity=Decimal("0.0015"))  # a partial fill: its update fails

        async def failed() -> bool:
            return not flaky.armed

        await eventually(failed)
        await market(db, binance, Decimal(104000))  # the rest fills: its report carries the whole fill

        async def closed() -> bool:
            return (await rows(db))[2].status is PositionStatus.CLOSED

        await eventually(closed)
    finally:
        stop.set()
        task.cancel()
        db.uow = real
    (order,), trades, _ = await rows(db)
    assert (order.status, order.filled_quantity) == (OrderStatus.FILLED, Decimal("0.00389"))
    assert sum(t.quantity for t in trades) == Decimal("0.00389")


async def test_reconciliation_applies_a_fill_first_and_the_late_report_changes_nothing(
    db: App, binance: LocalBinance
) -> None:
    await scheduled(db, binance)
    await market(db, binance, Decimal(104000))  # filled while nobody consumes the reports
    assert await services.reconcile_orders(db.uow(), db.exchange) == 1
    (order,), (trade,), position = await rows(db)
    assert order.status is OrderStatus.FILLED and position.status is PositionStatus.CLOSED and trade.price == LIMIT
    updates = db.exchange.order_updates()  # type: ignore[attr-defined]
    late = await asyncio.wait_for(anext(updates), 3)
    assert late.status is OrderStatus.FILLED
    assert await OrderUpdatesWorker(db).apply(late) is False
    assert await services.reconcile_orders(db.uow(), db.exchange) == 0
    assert len((await rows(db))[1]) == 1


async def test_a_partial_fill_then_a_cancel_sells_that_share_and_reopens_the_rest(
    db: App, binance: LocalBinance
) -> None:
    position = await scheduled(db, binance)
    await market(db, binance, Decimal(104000), quantity=Decimal("0.0015"))  # only 0.0015 BTC of bids
    assert await services.reconcile_orders(db.uow(), db.exchange) == 1
    (order,), (trade,), partly = await rows(db)
    assert order.status is OrderStatus.PARTIALLY_FILLED and trade.quantity == Decimal("0.0015")
    assert partly.status is PositionStatus.SCHEDULED and partly.quantity == Decimal("0.00239")
    assert position.id is not None
    reopened = await services.cancel_scheduled_sell(cmds.CancelScheduledSell(position.id), db.uow(), db.exchange)
    assert reopened.status is PositionStatus.OPEN and reopened.quantity == Decimal("0.00239")
    (order,), trades, _ = await rows(db)
    assert (order.status, order.filled_quantity) == (OrderStatus.CANCELED, Decimal("0.0015")) and len(trades) == 1
    # The cost left with the position is its share: 399.75 * 0.00239 / 0.00389.
    assert abs(reopened.cost - Decimal("399.75") * Decimal("0.00239") / Decimal("0.00389")) < Decimal("1e-15")


async def test_a_cancel_that_finds_the_sell_filled_records_it_and_is_refused(db: App, binance: LocalBinance) -> None:
    position = await scheduled(db, binance)
    await market(db, binance, Decimal(104000))  # filled; the report is not consumed
    assert position.id is not None
    with pytest.raises(InvalidState) as refused:
        await services.cancel_scheduled_sell(cmds.CancelScheduledSell(position.id), db.uow(), db.exchange)
    assert refused.value.code == "INVALID_STATE" and "already sold" in refused.value.message
    (order,), (trade,), sold = await rows(db)
    assert order.status is OrderStatus.FILLED and sold.status is PositionStatus.CLOSED and trade.price == LIMIT


async def test_rescheduling_replaces_the_resting_sell(db: App, binance: LocalBinance) -> None:
    position = await scheduled(db, binance)
    assert position.id is not None
    higher = await services.schedule_sell(cmds.ScheduleSell(position.id, Decimal(1)), db.uow(), db.exchange)
    assert higher.scheduled_exit_price is not None and higher.scheduled_exit_price > LIMIT
    orders, _, _ = await rows(db)
    assert [o.status for o in orders] == [OrderStatus.CANCELED, OrderStatus.OPEN]
    assert orders[1].price == higher.scheduled_exit_price
    assert [o.status for o in binance.orders if o.side == "SELL"] == ["CANCELED", "NEW"]


async def test_an_unconfirmed_placement_is_recorded_unknown_and_reconciled(db: App, binance: LocalBinance) -> None:
    position = await bought(db, binance)
    assert position.id is not None
    parked = await unconfirmed(
        binance, services.schedule_sell(cmds.ScheduleSell(position.id), db.uow(), db.exchange), 1
    )
    assert isinstance(parked, Position) and parked.status is PositionStatus.SCHEDULED
    (order,), _, _ = await rows(db)
    assert order.status is OrderStatus.UNKNOWN and order.error
    async with db.uow() as uow:
        events = [e.type for e in await uow.events.list_by_strategy(1, 10)]
    assert "order_unknown" in events
    # Reconciliation finds it resting: recorded OPEN, nothing sent twice.
    assert await services.reconcile_orders(db.uow(), db.exchange) == 1
    (order,), _, _ = await rows(db)
    assert order.status is OrderStatus.OPEN and len(binance.orders_with(order.client_order_id)) == 1


async def test_an_order_binance_never_got_is_rejected_and_the_resting_sell_placed_again(
    db: App, binance: LocalBinance
) -> None:
    position = await bought(db, binance)
    assert position.id is not None
    binance.fail_next("GET", "/api/v3/order", count=1000)  # the query before sending fails: nothing is sent
    parked = await services.schedule_sell(cmds.ScheduleSell(position.id), db.uow(), db.exchange)
    binance.clear_faults()
    assert parked.status is PositionStatus.SCHEDULED
    (order,), _, _ = await rows(db)
    assert order.status is OrderStatus.UNKNOWN and binance.orders_with(order.client_order_id) == []
    # Absent now proves nothing (the matching engine may still take it): it stays unknown…
    assert await services.reconcile_orders(db.uow(), db.exchange) == 0
    assert (await rows(db))[0][0].status is OrderStatus.UNKNOWN
    # …until it has been absent for `ABSENT_AFTER`: rejected, and a new resting sell placed at once.
    later = datetime.now(UTC) + services.ABSENT_AFTER
    assert await services.reconcile_orders(db.uow(), db.exchange, now=later) == 1
    first, second = (await rows(db))[0]
    assert first.status is OrderStatus.REJECTED and first.error == services.ABSENT
    assert second.status is OrderStatus.OPEN and second.price == LIMIT
    assert [o.status for o in binance.orders_with(second.client_order_id)] == ["NEW"]


async def unconfirmed(binance: LocalBinance, call: Awaitable[object], orders_before: int) -> object:
    """Run `call` while Binance takes its order but answers too late, and every query of the order
    fails until the adapter gives up: its outcome is unknown."""
    binance.delay_next("POST", "/api/v3/order", 3.0)
    task = asyncio.ensure_future(call)
    deadline = time.monotonic() + 30  # generous: a loaded machine can take seconds to deliver it
    while len(binance.requests_to("POST", "/api/v3/order")) <= orders_before:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    binance.fail_next("GET", "/api/v3/order", count=1000)
    try:
        return await task
    finally:
        binance.clear_faults()


async def test_a_manual_buy_binance_could_not_confirm_opens_its_position_on_reconciliation(
    db: App, binance: LocalBinance
) -> None:
    await market(db, binance, ENTRY)
    with pytest.raises(OrderOutcomeUnknown) as unknown:
        await unconfirmed(
            binance, services.buy(cmds.Buy(1, quote_amount=Decimal(400)), db.uow(), db.exchange, db.prices), 0
        )
    assert unknown.value.code == "EXCHANGE_ORDER_UNKNOWN"
    async with db.uow() as uow:
        (order,) = await uow.orders.list_by_status(tuple(OrderStatus))
        positions = await uow.positions.list(Page(10))
    assert order.status is OrderStatus.UNKNOWN and positions == []
    assert await services.reconcile_orders(db.uow(), db.exchange) == 1
    async with db.uow() as uow:
        (order,) = await uow.orders.list_by_status(tuple(OrderStatus))
        (position,) = await uow.positions.list(Page(10))
    assert order.status is OrderStatus.FILLED and order.position_id == position.id
    assert (position.quantity, position.cost, position.entry_price) == (Decimal("0.00389"), Decimal("399.75"), ENTRY)
    assert len(binance.orders) == 1  # sent once


async def test_after_a_restart_resting_orders_are_watched_and_their_fills_applied(
    db: App, binance: LocalBinance
) -> None:
    await scheduled(db, binance)
    # A restart: the accounts (and what they watched) are gone; a new worker starts.
    await db.exchange.close()  # type: ignore[attr-defined]
    router = ExchangeRouter(
        db.exchange.paper,  # type: ignore[attr-defined]
        db.uow,
        SecretBox(str(db.settings.criptoren_secret_key)),
        lambda k, s: BinanceExchange(local_config(binance, api_key=k, api_secret=s)),
    )
    db.exchange = router
    worker = OrderUpdatesWorker(db)
    task = asyncio.create_task(worker.run())
    try:

        async def watching() -> bool:
            return bool(router.binance_accounts) and bool((await account(db)).watched_orders)

        await eventually(watching)
        await market(db, binance, Decimal(104000))

        async def closed() -> bool:
            return (await rows(db))[2].status is PositionStatus.CLOSED

        await eventually(closed)
        assert len((await rows(db))[1]) == 1 and worker.applied == 1
    finally:
        task.cancel()
        await router.close()
