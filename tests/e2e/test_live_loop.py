"""End to end: the API under uvicorn and `criptoren worker` processes, on real PostgreSQL and Redis,
with a replayed market whose path crosses E, X, the base, a scheduled exit and a channel break.
Orders, positions, capital and what a subscription client receives are checked against SPEC §4."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path

from domain.adapters.bootstrap import App
from domain.adapters.seed import seed_demo
from domain.model import PositionStatus
from domain.ports import Page
from gql_api.auth import access_tokens
from tests.e2e import servers, ws_client

DATA = Path(__file__).resolve().parents[1] / "data"
REPLAY = {"MARKET_SOURCE": "replay", "REPLAY_FILE": f"BTCUSDT={DATA / 'btc-channel-1h.csv'}"}
E, X = Decimal("102498.78"), Decimal("108413.48")

EVENTS = 'subscription { positionEvents(strategyId: "1") { type message strategyId } }'
FILLS = 'subscription { fills(strategyId: "1") { side price quantity notes symbol { symbol } } }'
PRICES = 'subscription { prices(symbols: ["BTCUSDT"]) { symbol price at } }'


async def wait_for_trades(app: App, count: int, timeout: float = 60.0) -> list:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with app.uow() as uow:
            trades = list(reversed(await uow.trades.list(Page(100))))
        if len(trades) >= count:
            return trades
        await asyncio.sleep(0.2)
    raise AssertionError(f"only {len(trades)} trades after {timeout} s")


async def test_api_worker_and_subscriptions_on_a_replayed_market(db: App) -> None:
    await seed_demo(db.uow, db.exchange)
    token, _ = access_tokens(db.settings).issue(1)  # the demo client: fills and events are per client
    auth = {"Authorization": f"Bearer {token}"}
    async with servers.api_server(db) as host, ws_client.connect(f"ws://{host}/graphql", auth) as subs:
        events = await subs.subscribe(EVENTS)
        fills = await subs.subscribe(FILLS)
        prices = await subs.subscribe(PRICES)
        await asyncio.sleep(0.3)  # subscriptions registered before the market starts
        worker = servers.start_worker(db, **REPLAY, REPLAY_SPEED="0")
        try:
            trades = await wait_for_trades(db, 4)
            received_fills = await subs.wait_for(fills, 4)
            received_events = await subs.wait_for(events, 7)
            received_prices = await subs.wait_for(prices, 10)
        finally:
            servers.stop(worker)
    assert [(t.side.value, t.price) for t in trades][:3] == [("buy", E), ("sell", X), ("buy", E)]
    assert [f["data"]["fills"]["side"] for f in received_fills] == ["BUY", "SELL", "BUY", "SELL"]
    assert received_fills[0]["data"]["fills"]["price"] == "102498.78"
    assert received_fills[0]["data"]["fills"]["symbol"] == {"symbol": "BTCUSDT"}
    types = [e["data"]["positionEvents"]["type"] for e in received_events]
    for expected in ("position_opened", "position_closed", "strategy_rearmed", "channel_broken", "position_scheduled"):
        assert expected in types, types
    assert {p["data"]["prices"]["symbol"] for p in received_prices} == {"BTCUSDT"}
    async with db.uow() as uow:
        positions = await uow.positions.list(Page(10))
        ledger = await uow.allocations.ledger(1)
        strategy = await uow.strategies.get(1)
    assert all(p.status is PositionStatus.CLOSED for p in positions) and len(positions) == 2
    assert strategy is not None and strategy.is_channel_broken
    assert ledger.principal == Decimal(2000) and ledger.committed == 0 and ledger.profit > 0


async def test_a_killed_worker_is_replaced_and_nothing_is_missed_or_doubled(db: App) -> None:
    # The reference: the same market, uninterrupted, in one worker.
    await seed_demo(db.uow, db.exchange)
    worker = servers.start_worker(db, **REPLAY, REPLAY_SPEED="0")
    try:
        reference = [(t.side, t.price, t.quantity, t.notes) for t in await wait_for_trades(db, 4)]
    finally:
        servers.stop(worker)
    from tests.conftest import reset

    await reset(db)
    await seed_demo(db.uow, db.exchange)
    # Two workers; the market plays a 1h candle per second. Kill whoever holds the lease mid-run.
    env = {**REPLAY, "REPLAY_SPEED": "3600", "LEASE_SECONDS": "2"}
    first, second = servers.start_worker(db, **env), servers.start_worker(db, **env)
    try:
        lease = db.bus.channel("lease:BTCUSDT")
        holder = None
        async with asyncio.timeout(30):
            while holder is None:
                holder = await db.redis.get(lease)
                await asyncio.sleep(0.1)
        await asyncio.sleep(3.5)  # a few candles in
        victim = first if str(first.pid) in holder.decode() else second
        servers.stop(victim, kill=True)
        trades = [(t.side, t.price, t.quantity, t.notes) for t in await wait_for_trades(db, 4, timeout=60)]
        await asyncio.sleep(2)  # anything doubled would show up now
        async with db.uow() as uow:
            final = [(t.side, t.price, t.quantity, t.notes) for t in reversed(await uow.trades.list(Page(100)))]
            new_holder = await db.redis.get(lease)
    finally:
        servers.stop(first)
        servers.stop(second)
    assert trades == reference and final == reference
    assert new_holder is None or new_holder != holder
