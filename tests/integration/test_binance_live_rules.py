"""Binance as it really is (issue 19) and the balance check before live orders (issue 11, item 6):
the services on PostgreSQL, the demo client's own account through `ExchangeRouter`, python-binance
(unpatched) against the local Binance.

- An order whose answer is lost while Binance takes it late is sent once and booked once.
- A resting sell that PERCENT_PRICE_BY_SIDE refuses after a fall in price waits, says why in the
  position's events, and is placed by reconciliation once the average price allows it.
- MAX_NUM_ORDERS is found before sending; the sell waits for an open order to close.
- The commission of a sell, every kind of it, goes into min_sell.
- SPEC §4b: an entry the account's free balance cannot cover is skipped (INSUFFICIENT_BALANCE)
  before anything is sent — the balance too small, dropped between two entries (the user data
  stream's `balanceUpdate`), or stale in the cache and read again over REST.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from domain import channel as ch
from domain import commands as cmds
from domain import services
from domain.adapters.bootstrap import App
from domain.adapters.exchanges.binance import BinanceExchange
from domain.adapters.exchanges.router import ExchangeRouter
from domain.adapters.exchanges.secrets import SecretBox
from domain.adapters.ops import metrics
from domain.adapters.seed import seed_demo
from domain.errors import OrderOutcomeUnknown
from domain.model import Order, OrderStatus, Position, PositionStatus, Side, StrategyEvent, Trade
from domain.ports import Page
from domain.services import exchange_keys
from tests.binance_local import LocalBinance, local_config, wait_until
from workers.orders import OrderUpdatesWorker

pytest_plugins = ["tests.binance_local.fixtures"]  # local_binance

BTC = "BTCUSDT"
E = Decimal("102498.78")  # the demo channel's entry level; its base is 100,489
ENTRY = Decimal(102500)
ORDER = ("POST", "/api/v3/order")


@pytest.fixture
async def binance(db: App, local_binance: LocalBinance) -> AsyncIterator[LocalBinance]:
    """The demo client (2,000 USDT at 20%: entries of 400) trading on the local Binance."""
    await seed_demo(db.uow, db.exchange)
    box = SecretBox(str(db.settings.criptoren_secret_key))
    await exchange_keys.set_exchange_keys(
        cmds.SetExchangeKeys(1, local_binance.api_key, local_binance.api_secret), db.uow(), box
    )
    router = ExchangeRouter(
        db.exchange, db.uow, box, lambda k, s: BinanceExchange(local_config(local_binance, api_key=k, api_secret=s))
    )
    db.exchange = router
    try:
        yield local_binance
    finally:
        await router.close()


async def market(db: App, binance: LocalBinance, price: Decimal) -> None:
    """A trade at `price` on the local Binance, seen by the app too."""
    db.price_book.set(BTC, price)
    await binance.set_price(BTC, price)


async def move(db: App, prev: Decimal, cur: Decimal) -> services.TickOutcome:
    return await services.process_price_move(
        cmds.ProcessPriceMove(1, prev, cur, datetime.now(UTC)), db.uow(), db.exchange
    )


async def account(db: App) -> BinanceExchange:
    exchange = await db.exchange.for_client(1)
    assert isinstance(exchange, BinanceExchange)
    return exchange


async def state(db: App) -> tuple[list[Order], list[Trade], list[Position], list[StrategyEvent]]:
    async with db.uow() as uow:
        orders = list(await uow.orders.list_by_status(tuple(OrderStatus)))
        trades = list(reversed(await uow.trades.list(Page(100))))
        positions = list(reversed(await uow.positions.list(Page(100))))
        events = list(await uow.events.list_by_strategy(1, 100))  # newest first
    return orders, trades, positions, events


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("not reached in time")
        await asyncio.sleep(0.05)


# ---------------------------------------------------------------- an unknown outcome (issue 19, item 1)


async def test_an_entry_whose_answer_is_lost_and_that_fills_late_is_sent_once_and_booked_once(
    db: App, binance: LocalBinance
) -> None:
    """Binance takes the entry, the answer is lost (-1007), and the matching engine fills it 2.5 s
    later — after recvWindow + grace (1.2 s here). Nothing is sent again; the entry is recorded
    UNKNOWN; the late fill, reported by the user data stream, opens the position once; the
    reconciliation that follows changes nothing."""
    await market(db, binance, E)
    worker = OrderUpdatesWorker(db)
    consumer = asyncio.create_task(worker.run())
    try:
        binance.accept_late_next(2.5)
        outcome = await move(db, Decimal(102000), E)
        assert outcome.opened == []
        (order,), trades, positions, events = await state(db)
        assert order.status is OrderStatus.UNKNOWN and (trades, positions) == ([], [])
        assert events[0].type == "entry_skipped" and events[0].data["reason"] == "order_unknown"

        async def opened() -> bool:
            return bool((await state(db))[2])

        await eventually(opened)
        assert await services.reconcile_orders(db.uow(), db.exchange) == 0
    finally:
        consumer.cancel()
    (order,), (trade,), (position,), _ = await state(db)
    assert [r.code for r in binance.requests_to(*ORDER)] == [-1007]  # sent once
    assert len(binance.orders_with(order.client_order_id)) == 1
    assert (order.status, order.position_id, order.filled_quantity) == (
        OrderStatus.FILLED,
        position.id,
        Decimal("0.0039"),
    )
    assert (trade.side, trade.quantity, trade.order_id) == (Side.BUY, Decimal("0.0039"), order.id)
    assert binance.balance("USDT")[0] == Decimal(10000) - trade.quote_amount  # spent once
    async with db.uow() as uow:
        ledger = await uow.allocations.ledger(1)
    assert ledger.committed == position.cost and position.status is PositionStatus.OPEN


async def test_a_manual_buy_that_fills_late_is_booked_once_by_reconciliation(db: App, binance: LocalBinance) -> None:
    """Without a consumer of order updates: reconciliation asks for the order and opens its position
    once it appears — and finding it absent before then changes nothing."""
    await market(db, binance, ENTRY)
    binance.accept_late_next(2.0)
    with pytest.raises(OrderOutcomeUnknown):
        await services.buy(cmds.Buy(1, quote_amount=Decimal(400)), db.uow(), db.exchange, db.prices)
    assert await services.reconcile_orders(db.uow(), db.exchange) == 0  # absent: still unknown
    await wait_until(lambda: bool(binance.orders), timeout=5)
    assert await services.reconcile_orders(db.uow(), db.exchange) == 1
    assert await services.reconcile_orders(db.uow(), db.exchange) == 0
    (order,), (trade,), (position,), _ = await state(db)
    assert order.status is OrderStatus.FILLED and position.cost == Decimal("399.75") and trade.order_id == order.id
    assert len(binance.requests_to(*ORDER)) == 1 and len(binance.orders) == 1


# ---------------------------------------------------------------- filters that may pass later (items 2, 4)


async def test_a_resting_sell_refused_by_percent_price_by_side_waits_and_is_placed_when_allowed(
    db: App, binance: LocalBinance
) -> None:
    """filters.md PERCENT_PRICE_BY_SIDE: a SELL's price must be <= average price * askMultiplierUp.
    After a fall in price and a channel break, min_sell is far above the average price: the sell is
    not sent (Binance would answer -1013), the position's events say why, and reconciliation places
    it once the average price has come back within reach."""
    binance.set_filters(BTC, percent_price=(Decimal(5), Decimal("0.2"), Decimal("1.05"), Decimal("0.2")))
    binance.set_filters(BTC, avg_price_mins=0)  # the average price is the last price
    await market(db, binance, ENTRY)
    position = await services.buy(cmds.Buy(1, quote_amount=Decimal(400)), db.uow(), db.exchange, db.prices)
    await market(db, binance, Decimal(95000))  # 95,000 * 1.05 = 99,750 < min_sell 103,380.70
    await services.process_candle_close(
        cmds.ProcessCandleClose(1, "4h", Decimal(95000), datetime.now(UTC)), db.uow(), db.exchange
    )
    orders, _, (parked,), events = await state(db)
    assert parked.status is PositionStatus.SCHEDULED and parked.scheduled_exit_price == Decimal("103380.70")
    assert [o.side for o in orders] == [Side.BUY]  # no sell order: nothing was sent
    assert [r.params["side"] for r in binance.requests_to(*ORDER)] == ["BUY"]
    waiting = events[0]
    assert (waiting.type, waiting.position_id, waiting.data["filter"]) == (
        "sell_waiting",
        position.id,
        "PERCENT_PRICE_BY_SIDE",
    )
    assert "PERCENT_PRICE_BY_SIDE" in waiting.message and "99750" in waiting.message

    # Still too far: reconciliation tries again, sends nothing, and says nothing new.
    await market(db, binance, Decimal(97000))
    assert await services.reconcile_orders(db.uow(), db.exchange) == 0
    assert [e.type for e in (await state(db))[3]].count("sell_waiting") == 1
    # Within reach (99,000 * 1.05 = 103,950): placed, resting at its scheduled price.
    await market(db, binance, Decimal(99000))
    assert await services.reconcile_orders(db.uow(), db.exchange) == 1
    orders, _, _, _ = await state(db)
    sell = orders[-1]
    assert (sell.side, sell.status, sell.price) == (Side.SELL, OrderStatus.OPEN, Decimal("103380.70"))
    assert [o.status for o in binance.orders_with(sell.client_order_id)] == ["NEW"]


async def test_max_num_orders_is_found_before_sending_and_the_sell_waits_for_a_free_slot(
    db: App, binance: LocalBinance
) -> None:
    """filters.md MAX_NUM_ORDERS: with the symbol's open orders at the maximum, a resting sell is not
    sent; it is placed by reconciliation once an open order has closed."""
    binance.set_filters(BTC, max_num_orders=1)
    await market(db, binance, ENTRY)
    first = await services.buy(cmds.Buy(1, quote_amount=Decimal(400)), db.uow(), db.exchange, db.prices)
    second = await services.buy(cmds.Buy(1, quote_amount=Decimal(400)), db.uow(), db.exchange, db.prices)
    assert first.id is not None and second.id is not None
    await services.schedule_sell(cmds.ScheduleSell(first.id), db.uow(), db.exchange)
    waiting = await services.schedule_sell(cmds.ScheduleSell(second.id), db.uow(), db.exchange)
    assert waiting.status is PositionStatus.SCHEDULED
    orders, _, _, events = await state(db)
    assert [(o.side, o.position_id) for o in orders if o.side is Side.SELL] == [(Side.SELL, first.id)]
    assert (events[0].type, events[0].data["filter"]) == ("sell_waiting", "MAX_NUM_ORDERS")
    assert all(r.code is None for r in binance.requests_to(*ORDER))  # never refused: never sent
    assert await services.reconcile_orders(db.uow(), db.exchange) == 0
    await services.cancel_scheduled_sell(cmds.CancelScheduledSell(first.id), db.uow(), db.exchange)
    assert await services.reconcile_orders(db.uow(), db.exchange) == 1  # the slot is free
    orders, _, _, _ = await state(db)
    assert [(o.position_id, o.status) for o in orders if o.side is Side.SELL] == [
        (first.id, OrderStatus.CANCELED),
        (second.id, OrderStatus.OPEN),
    ]


# ---------------------------------------------------------------- commission (item 6)


async def test_min_sell_uses_the_full_commission_of_a_sell(db: App, binance: LocalBinance) -> None:
    """faqs/commission_faq.md: a taker sell pays taker + seller of the standard, tax and special
    commissions; rule 3's `f` is all of it (the account's `commissionRates.taker` alone is 0.001)."""
    binance.set_commission(seller=Decimal("0.0005"))
    binance.set_commission("specialCommission", taker=Decimal("0.0002"), seller=Decimal("0.0001"))
    binance.set_commission("taxCommission", taker=Decimal("0.00005"), seller=Decimal("0.00005"))
    await market(db, binance, ENTRY)
    position = await services.buy(cmds.Buy(1, quote_amount=Decimal(400)), db.uow(), db.exchange, db.prices)
    f = Decimal("0.0019")
    assert (await account(db)).fee_rate(binance.domain_symbol(BTC)) == f
    assert position.min_sell_price == ch.min_sell_price(position.cost, position.quantity, position.min_profit, f)
    # The sell pays that rate: selling at min_sell nets the minimum profit.
    assert position.id is not None
    await market(db, binance, Decimal(104000))
    sold = await services.sell(cmds.Sell(position.id), db.uow(), db.exchange, db.prices)
    _, (_, sell), _, _ = await state(db)
    assert sell.fees == (sell.quote_amount * f).quantize(Decimal("0.00000001"))
    assert sold.realized_profit is not None and sold.realized_profit > 0


# ---------------------------------------------------------------- balances (SPEC §4b, issue 11 item 6)


def skipped_for_balance() -> float:
    return metrics.ORDERS_NOT_SENT.labels("INSUFFICIENT_BALANCE")._value.get()


async def test_an_entry_the_balance_cannot_cover_is_skipped_before_sending(db: App, binance: LocalBinance) -> None:
    binance.set_balance("USDT", Decimal(100))  # the entry spends 400
    before = skipped_for_balance()
    await market(db, binance, E)
    outcome = await move(db, Decimal(102000), E)
    assert outcome.opened == []
    orders, _, positions, events = await state(db)
    assert positions == [] and binance.requests_to(*ORDER) == []  # never sent, so never refused with -2010
    skipped = events[0]
    assert (skipped.type, skipped.data["reason"]) == ("entry_skipped", "insufficient_balance")
    assert "needs 400 USDT" in skipped.message and "free balance is 100 USDT" in skipped.message
    assert [(o.status, o.error is not None) for o in orders] == [(OrderStatus.REJECTED, True)]
    assert skipped_for_balance() == before + 1


async def test_a_balance_that_drops_between_two_entries_skips_the_second(db: App, binance: LocalBinance) -> None:
    """The withdrawal reaches the cache through the user data stream (`balanceUpdate`,
    `outboundAccountPosition`): the second entry is skipped without asking Binance for the balance."""
    await market(db, binance, E)
    assert len((await move(db, Decimal(102000), E)).opened) == 1
    exchange = await account(db)
    await exchange.free_balance("USDT")  # read again after the fill
    await binance.withdraw("USDT", Decimal(9300))
    await wait_until(lambda: exchange.balance_cache.free.get("USDT", Decimal(0)) < 400)
    reads = len(binance.requests_to("GET", "/api/v3/account"))
    await market(db, binance, Decimal(100000))
    await move(db, E, Decimal(100000))  # the base is touched: armed again
    await market(db, binance, E)
    assert (await move(db, Decimal(102000), E)).opened == []
    _, trades, positions, events = await state(db)
    assert len(positions) == len(trades) == 1 and len(binance.requests_to(*ORDER)) == 1
    assert (events[0].type, events[0].data["reason"]) == ("entry_skipped", "insufficient_balance")
    assert len(binance.requests_to("GET", "/api/v3/account")) == reads  # the stream told the cache


async def test_a_stale_balance_cache_is_corrected_over_rest(db: App, binance: LocalBinance) -> None:
    """The cache says 10,000 USDT; the balance fell behind the stream's back while the stream was
    down (events may have been missed): the cache is read again over REST before the entry."""
    exchange = await account(db)
    assert await exchange.wait_for_user_stream(5)
    assert await exchange.free_balance("USDT") == Decimal(10000)
    binance.refuse_websockets = True
    await binance.drop_websockets()
    await wait_until(lambda: not exchange.stream_connected)
    binance.set_balance("USDT", Decimal(50))  # no event reaches the cache
    assert exchange.balance_cache.free["USDT"] == Decimal(10000)
    reads = len(binance.requests_to("GET", "/api/v3/account"))
    await market(db, binance, E)
    assert (await move(db, Decimal(102000), E)).opened == []
    assert len(binance.requests_to("GET", "/api/v3/account")) == reads + 1
    _, _, positions, events = await state(db)
    assert positions == [] and (events[0].data["reason"]) == "insufficient_balance"
    assert binance.requests_to(*ORDER) == []
