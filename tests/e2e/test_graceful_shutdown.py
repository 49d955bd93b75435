"""Graceful shutdown (issue 7).

Worker: a stop lets the decision in hand finish (it commits), or — past the grace period — abandons
it: cancelled, rolled back, and replayed from the checkpoint at the next start, where its order is
found on the exchange by its deterministic id instead of being sent again. Either way the final
trades are those of an uninterrupted run, each order placed once. A real `criptoren worker` is sent
SIGTERM mid-run, restarted, and ends the same; its own /metrics port answers meanwhile.

API: SIGTERM on `criptoren serve` closes open WebSockets with 1001 (going away).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import websockets

from domain.adapters.bootstrap import App
from domain.adapters.exchanges.paper import PaperExchange
from domain.adapters.market.replay import ReplayMarket
from domain.adapters.seed import seed_demo
from domain.ports import Page
from tests.e2e import servers
from workers.market import MarketWorker

DATA = Path(__file__).resolve().parents[1] / "data"
E, X = Decimal("102498.78"), Decimal("108413.48")


class GatedExchange:
    """The paper exchange, except that the first buy — once the exchange has filled it — waits for
    `release`: a decision caught between its order and its commit."""

    def __init__(self, inner: PaperExchange) -> None:
        self.inner = inner
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.gated = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def for_client(self, client_id: int) -> GatedExchange:
        return self

    async def market_buy(self, *args: Any, **kwargs: Any) -> Any:
        execution = await self.inner.market_buy(*args, **kwargs)
        if self.gated:
            self.gated = False
            self.entered.set()
            await self.release.wait()
        return execution


async def trades(db: App) -> list[tuple[str, Decimal, str | None]]:
    async with db.uow() as uow:
        return [(t.side.value, t.price, t.notes) for t in reversed(await uow.trades.list(Page(100)))]


async def replay_to_the_end(db: App) -> None:
    worker = MarketWorker(db, ReplayMarket({"BTCUSDT": DATA / "btc-channel-1h.csv"}), poll_seconds=0.05)
    task = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(30):
            while "BTCUSDT" not in worker.finished:
                await asyncio.sleep(0.05)
    finally:
        worker.stop()
        await task


def expected(scheduled_price: Decimal) -> list[tuple[str, Decimal, str | None]]:
    return [("buy", E, "entry"), ("sell", X, "exit"), ("buy", E, "entry"), ("sell", scheduled_price, "scheduled_exit")]


async def stop_mid_decision(db: App, grace: float, release_after: float | None) -> GatedExchange:
    paper = db.exchange
    assert isinstance(paper, PaperExchange)
    gated = GatedExchange(paper)
    db.exchange = gated  # type: ignore[assignment]
    worker = MarketWorker(
        db, ReplayMarket({"BTCUSDT": DATA / "btc-channel-1h.csv"}), poll_seconds=0.05, shutdown_grace=grace
    )
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(gated.entered.wait(), 30)
        worker.stop()  # what the worker's shutdown does on SIGTERM
        if release_after is not None:
            await asyncio.sleep(release_after)
            gated.release.set()
        await asyncio.wait_for(task, grace + 5)
    finally:
        db.exchange = paper
    return gated


async def test_a_stop_lets_the_decision_in_flight_finish(db: App) -> None:
    await seed_demo(db.uow, db.exchange)
    await stop_mid_decision(db, grace=5.0, release_after=0.3)
    assert await trades(db) == [("buy", E, "entry")]  # committed, and nothing after it
    await replay_to_the_end(db)  # the next start resumes after it
    final = await trades(db)
    assert final == expected(final[-1][1])
    assert len(db.exchange._orders) == 4  # type: ignore[attr-defined]


async def test_an_abandoned_decision_is_rolled_back_and_adopted_at_the_next_start(db: App) -> None:
    await seed_demo(db.uow, db.exchange)
    await stop_mid_decision(db, grace=0.3, release_after=None)
    assert await trades(db) == []  # rolled back: the buy filled on the exchange, not recorded here
    assert len(db.exchange._orders) == 1  # type: ignore[attr-defined]
    await replay_to_the_end(db)
    final = await trades(db)
    assert final == expected(final[-1][1])
    # The first buy was found on the exchange by its client order id and adopted, not sent again.
    assert len(db.exchange._orders) == 4  # type: ignore[attr-defined]


async def wait_for_trades(db: App, count: int, timeout: float = 30.0) -> list[tuple[str, Decimal, str | None]]:
    async with asyncio.timeout(timeout):
        while len(found := await trades(db)) < count:
            await asyncio.sleep(0.1)
    return found


async def test_sigterm_on_a_worker_mid_run_then_restart_ends_like_an_uninterrupted_run(db: App) -> None:
    await seed_demo(db.uow, db.exchange)
    replay = {"MARKET_SOURCE": "replay", "REPLAY_FILE": f"BTCUSDT={DATA / 'btc-channel-1h.csv'}"}
    port = servers.free_port()
    # One 1h candle a second: SIGTERM lands while the market is still moving.
    worker = servers.start_worker(db, **replay, REPLAY_SPEED="3600", METRICS_PORT=str(port))
    try:
        await wait_for_trades(db, 1)
        async with httpx.AsyncClient() as http:
            scraped = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
        assert 'criptoren_ticks_total{symbol="BTCUSDT"}' in scraped
        assert "criptoren_tick_to_order_seconds_count" in scraped
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(worker.wait, 20) == 0
    finally:
        servers.stop(worker)
    stopped_after = len(await trades(db))
    assert stopped_after < 4  # stopped mid-run
    assert await db.redis.get(db.bus.channel("lease:BTCUSDT")) is None  # released for the next worker
    assert await db.redis.get(db.bus.channel("stream:BTCUSDT")) is None  # /readyz: no worker on it now
    restarted = servers.start_worker(db, **replay, REPLAY_SPEED="0")
    try:
        await wait_for_trades(db, 4)
        await asyncio.sleep(1.0)  # anything doubled would show up now
    finally:
        servers.stop(restarted)
    final = await trades(db)
    assert final == expected(final[-1][1])


async def test_sigterm_on_the_api_closes_websockets_with_1001(db: App) -> None:
    port = servers.free_port()
    settings = db.settings
    env = {
        **os.environ,
        "DATABASE_URL": str(settings.database_url),
        "REDIS_URL": str(settings.redis_url),
        "REDIS_PREFIX": settings.redis_prefix,
        "CRIPTOREN_SECRET_KEY": str(settings.criptoren_secret_key),
        "PORT": str(port),
        "LOG_LEVEL": "WARNING",
    }
    api = subprocess.Popen([sys.executable, "-m", "gql_api.cli", "serve"], cwd=servers.ROOT, env=env)
    try:
        async with httpx.AsyncClient() as http, asyncio.timeout(30):
            while True:
                try:
                    if (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
        url = f"ws://127.0.0.1:{port}/graphql"
        async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            query = 'subscription { prices(symbols: ["BTCUSDT"]) { price } }'
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}}))
            await asyncio.sleep(0.3)
            api.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(10):
                    async for _ in ws:
                        pass
            except websockets.ConnectionClosed:
                pass
            assert ws.close_code == 1001 and ws.close_reason == "Server shutting down"
        # uvicorn shuts down cleanly, then re-raises the signal it caught (its default exit status).
        assert await asyncio.to_thread(api.wait, 20) in (0, -signal.SIGTERM)
    finally:
        servers.stop(api)
