"""The Binance market source against the local Binance: python-binance's BinanceSocketManager on a
combined aggTrade + kline_1m stream. A stream cut mid-run reconnects with backoff, and the candles
closed while it was down are fetched over REST and replayed as ticks, so a crossing that happened
in the gap still reaches the engine; duplicated messages are dropped; a silent stream counts as
dropped."""

from __future__ import annotations

import asyncio
import contextlib
from decimal import Decimal

from domain.adapters.bootstrap import App
from domain.adapters.market.binance_stream import BinanceMarket
from domain.adapters.seed import seed_demo
from domain.market import ClosedCandle, MarketEvent, StreamStatus, Tick
from domain.ports import Page
from tests.binance_local import LocalBinance, wait_until
from workers.market import SymbolConsumer

pytest_plugins = ["tests.binance_local.fixtures"]

D = Decimal


def market(server: LocalBinance, **kw: float) -> BinanceMarket:
    return BinanceMarket(api_url=server.api_url, stream_url=server.stream_url, backoff_initial=0.05, **kw)


async def collect(source: BinanceMarket, events: list[MarketEvent]) -> None:
    async for event in source.stream("BTCUSDT"):
        events.append(event)


async def test_ticks_arrive_once_even_when_messages_are_duplicated(local_binance: LocalBinance) -> None:
    source = market(local_binance)
    events: list[MarketEvent] = []
    task = asyncio.create_task(collect(source, events))
    try:
        await wait_until(lambda: len(local_binance._market) > 0, 5)
        local_binance.duplicate_stream_messages = True
        for price in ("101000", "101500", "102000"):
            await local_binance.set_price("BTCUSDT", D(price))
        await wait_until(lambda: len([e for e in events if isinstance(e, Tick)]) >= 3, 5)
        await asyncio.sleep(0.3)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await source.close()
    assert [e.price for e in events if isinstance(e, Tick)] == [D(101000), D(101500), D(102000)]


async def test_a_dropped_stream_is_reconnected_and_the_gap_replayed(local_binance: LocalBinance) -> None:
    source = market(local_binance)
    events: list[MarketEvent] = []
    task = asyncio.create_task(collect(source, events))
    try:
        await wait_until(lambda: len(local_binance._market) > 0, 5)
        await local_binance.set_price("BTCUSDT", D("101000"))
        await local_binance.advance_time(60_000)  # a candle closes while connected
        await wait_until(lambda: any(isinstance(e, ClosedCandle) for e in events), 5)
        local_binance.refuse_websockets = True
        await local_binance.drop_websockets()
        # While the stream is down the price rises through E (102,498.78) and falls back.
        await local_binance.move_price("BTCUSDT", D("101200"), D("103000"), D("101800"))
        await local_binance.advance_time(60_000)
        local_binance.refuse_websockets = False
        await wait_until(lambda: len([e for e in events if isinstance(e, ClosedCandle)]) >= 2, 10)
        await local_binance.set_price("BTCUSDT", D("101700"))
        await wait_until(lambda: isinstance(events[-1], Tick) and events[-1].price == D("101700"), 10)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await source.close()
    assert source.reconnects >= 1
    ticks = [e.price for e in events if isinstance(e, Tick)]
    # The gap's candle was replayed as its path (open, high, low, close): 103000 was seen.
    assert D("103000") in ticks
    assert ticks[-1] == D("101700")


async def test_a_silent_stream_counts_as_dropped(local_binance: LocalBinance) -> None:
    source = market(local_binance, stall_seconds=0.5)
    events: list[MarketEvent] = []
    task = asyncio.create_task(collect(source, events))
    try:
        await wait_until(lambda: len(local_binance._market) > 0, 5)
        await wait_until(lambda: source.reconnects >= 1, 5)
        await wait_until(lambda: len(local_binance._market) > 0, 5)
        await local_binance.set_price("BTCUSDT", D("101000"))
        await wait_until(lambda: any(isinstance(e, Tick) for e in events), 5)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await source.close()


async def test_the_stream_state_is_lost_since_the_drop_across_attempts_and_up_at_the_next_message(
    local_binance: LocalBinance,
) -> None:
    """What the worker's stream alerts read (`StreamStatus`): reconnection attempts do not move the
    time of the loss; a connection is up once a message arrives."""
    source = market(local_binance)
    events: list[MarketEvent] = []
    assert isinstance(source, StreamStatus) and source.stream_state("BTCUSDT") is None
    task = asyncio.create_task(collect(source, events))
    try:
        await wait_until(lambda: len(local_binance._market) > 0, 5)
        assert source.stream_state("BTCUSDT") is None  # connected, but nothing received yet
        await local_binance.set_price("BTCUSDT", D("101000"))
        await wait_until(lambda: (state := source.stream_state("BTCUSDT")) is not None and state.up, 5)
        local_binance.refuse_websockets = True
        await local_binance.drop_websockets()
        await wait_until(lambda: source.reconnects >= 3, 10)  # refused again and again
        lost = source.stream_state("BTCUSDT")
        assert lost is not None and not lost.up and lost.reason
        first_attempts = source.reconnects
        await wait_until(lambda: source.reconnects > first_attempts, 10)
        assert source.stream_state("BTCUSDT") == lost  # the same loss, since the same time
        local_binance.refuse_websockets = False
        await wait_until(lambda: len(local_binance._market) > 0, 15)
        await local_binance.set_price("BTCUSDT", D("101100"))
        await wait_until(lambda: (state := source.stream_state("BTCUSDT")) is not None and state.up, 5)
        back = source.stream_state("BTCUSDT")
        assert back is not None and back.since > lost.since
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await source.close()


async def test_an_entry_crossed_while_the_stream_was_down_is_not_missed(db: App, local_binance: LocalBinance) -> None:
    await seed_demo(db.uow, db.exchange)
    async with db.uow() as uow:
        symbol = await uow.symbols.get_by_name("BTCUSDT")
    assert symbol is not None
    source = market(local_binance)
    consumer = SymbolConsumer(db, source, symbol)
    task = asyncio.create_task(consumer.run())
    try:
        await wait_until(lambda: len(local_binance._market) > 0, 10)
        await local_binance.set_price("BTCUSDT", D("100400"))  # at the base: armed
        await local_binance.advance_time(60_000)
        await wait_until(lambda: consumer.stats.candles >= 1, 10)
        local_binance.refuse_websockets = True
        await local_binance.drop_websockets()
        await local_binance.move_price("BTCUSDT", D("101000"), D("102600"), D("102000"))
        await local_binance.advance_time(60_000)
        local_binance.refuse_websockets = False

        async def trades() -> int:
            async with db.uow() as uow:
                return len(await uow.trades.list(Page(10)))

        for _ in range(100):
            if await trades():
                break
            await asyncio.sleep(0.1)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await source.close()
    async with db.uow() as uow:
        (trade,) = await uow.trades.list(Page(10))
    assert trade.side.value == "buy" and trade.notes == "entry"
