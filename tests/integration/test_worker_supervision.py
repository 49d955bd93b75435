"""The worker's market consumers under outages (issue 17, items 8 and 9), in process, on the
bouncing replay (tests/markets.py: the demo channel buys and sells every 20 candles).

- A change whose event never reaches the worker is loaded by the periodic full reload
  (`ENGINE_RELOAD_SECONDS`).
- Leases stay safe when Redis goes away: the holder stops consuming before its lease can expire
  for another worker, and once Redis is back a worker takes the symbol over from the checkpoint —
  never two consumers of a symbol at once, nothing traded twice.
- `RedisLease` keeps, on this process's clock, how long the lease is certainly still its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import text

from domain import commands as cmds
from domain.adapters.bootstrap import App, bootstrap
from domain.adapters.market.replay import ReplayMarket
from domain.adapters.persistence.unit_of_work import SqlAlchemyUnitOfWorkFactory
from domain.adapters.seed import seed_demo
from domain.channel import Channel
from domain.market import ClosedCandle, MarketEvent
from domain.services import capital, strategies
from tests.markets import bouncing_market
from tests.redis_server import RedisServer
from workers.lease import RedisLease
from workers.market import MarketWorker


class RecordingSource:
    """A replay that records, per stream, when each event was handed to the consumer."""

    def __init__(self, replay: ReplayMarket) -> None:
        self.replay = replay
        self.name = replay.name
        self.fills_at_levels = replay.fills_at_levels
        self.streams: list[tuple[int | None, list[float]]] = []  # (after_seq, times)

    async def stream(self, symbol: str, after_seq: int | None = None) -> AsyncIterator[MarketEvent]:
        times: list[float] = []
        self.streams.append((after_seq, times))
        async for event in self.replay.stream(symbol, after_seq):
            times.append(time.monotonic())
            yield event

    async def closed_candles(
        self, symbol: str, interval: str, start: datetime, end: datetime
    ) -> Sequence[ClosedCandle]:
        return await self.replay.closed_candles(symbol, interval, start, end)

    async def close(self) -> None:
        return None


async def sides_by_strategy(app: App) -> dict[int, list[str]]:
    async with app.engine.connect() as conn:
        rows = await conn.execute(text("SELECT strategy_id, side FROM trades ORDER BY id"))
        found: dict[int, list[str]] = {}
        for strategy_id, side in rows:
            found.setdefault(strategy_id, []).append(side)
        return found


def alternate(sides: list[str]) -> bool:
    return sides == (["buy", "sell"] * len(sides))[: len(sides)]


async def wait_for(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def test_a_change_whose_event_was_lost_is_loaded_by_the_periodic_full_reload(db: App, tmp_path: Path) -> None:
    await seed_demo(db.uow, db.exchange)
    market = ReplayMarket({"BTCUSDT": bouncing_market(tmp_path / "BTCUSDT-1m.csv")}, speed=600)
    worker = MarketWorker(db, market, poll_seconds=0.1, reload_seconds=1.0)
    task = asyncio.create_task(worker.run())
    try:
        await wait_for(lambda: _has_buy(db, 1), 30, "the demo strategy never bought")
        # Created without publishing its event (a unit of work with no publisher): only a full
        # reload can bring it to the consumer.
        silent = SqlAlchemyUnitOfWorkFactory(db.session_factory)
        channel = Channel(Decimal(100000), Decimal(110000), timeframe="1d")
        created = await strategies.create_strategy(
            cmds.CreateStrategy(1, "BTCUSDT", "silent", channel), silent(), db.exchange
        )
        assert created.id is not None
        await capital.allocate_capital(
            cmds.AllocateCapital(created.id, Decimal(1000), client_id=1), silent(), db.exchange
        )
        await wait_for(lambda: _has_buy(db, created.id), 30, "the strategy created silently never traded")
    finally:
        worker.stop()
        await task
    assert all(alternate(sides) for sides in (await sides_by_strategy(db)).values())


async def _has_buy(app: App, strategy_id: int | None) -> bool:
    return "buy" in (await sides_by_strategy(app)).get(strategy_id or 0, [])


async def acquire_once_up(lease: RedisLease, timeout: float = 10) -> None:
    """Take a free lease on a Redis that may have just started: a server up for less than the TTL
    gives no free lease (it may have lost a holder's key, see workers.lease)."""

    async def acquired() -> bool:
        return await lease.acquire()

    await wait_for(acquired, timeout, f"{lease.owner} never got the lease")


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_a_lease_is_never_held_by_two_consumers_across_a_redis_outage(
    db: App, own_redis: RedisServer, tmp_path: Path
) -> None:
    await seed_demo(db.uow, db.exchange)
    app = bootstrap(db.settings.model_copy(update={"redis_url": own_redis.url}))
    ttl = 2.0
    replay = ReplayMarket({"BTCUSDT": bouncing_market(tmp_path / "BTCUSDT-1m.csv")}, speed=600)
    first, second = RecordingSource(replay), RecordingSource(replay)
    holder = MarketWorker(app, first, owner="first", lease_ttl=ttl, poll_seconds=0.1)
    other = MarketWorker(app, second, owner="second", lease_ttl=ttl, poll_seconds=0.1)
    tasks = [asyncio.create_task(holder.run())]
    try:
        await wait_for(lambda: _has_buy(app, 1), 30, "the demo strategy never bought")
        tasks.append(asyncio.create_task(other.run()))
        held = holder.held["BTCUSDT"]
        lease, consumer_task = held.lease, held.consumer_task
        assert consumer_task is not None
        consumer_ended: list[float] = []
        consumer_task.add_done_callback(lambda _: consumer_ended.append(time.monotonic()))
        await asyncio.sleep(0.5)
        assert not second.streams  # the symbol is taken

        own_redis.kill()
        killed_at = time.monotonic()
        traded_before = len((await sides_by_strategy(app))[1])

        # The holder goes on while its lease is certainly its own, then stops before it could expire.
        # Its consumer task is what consumes: it must have ended. (The supervisor drops the symbol
        # from `held` only at its next round, which backs off while Redis is down — up to 10 s later:
        # bookkeeping, not consumption, so not waited for here.)
        async def stopped() -> bool:
            return bool(consumer_ended)

        await wait_for(stopped, ttl + 1, "the holder still consumes after its lease could have expired")
        assert consumer_ended[0] < lease.valid_until, "its consumer ran after its lease could have expired"
        last_consumed = first.streams[-1][1][-1]
        assert last_consumed < lease.valid_until, "consumed after its lease could have expired"
        assert other.held == {}
        await asyncio.sleep(max(0.0, killed_at + 2 * ttl - time.monotonic()))  # the rest of the outage
        own_redis.start()

        async def taken_over() -> bool:
            return any(times for _, times in first.streams[1:]) or any(times for _, times in second.streams)

        await wait_for(taken_over, 30, "nobody took the symbol over after the outage")
        resumed = [after for after, times in first.streams[1:] + second.streams if times]
        assert resumed[0] is not None  # from the checkpoint, not from the beginning
        assert min(t for _, times in first.streams[1:] + second.streams for t in times) > last_consumed

        async def bought_again() -> bool:
            return "buy" in (await sides_by_strategy(app))[1][traded_before:]

        await wait_for(bought_again, 30, "no trade after the outage")
    finally:
        holder.stop()
        other.stop()
        await asyncio.gather(*tasks)
        await app.redis.aclose()
        await app.engine.dispose()
    assert all(alternate(sides) for sides in (await sides_by_strategy(db)).values())


async def test_the_lease_knows_how_long_it_is_certainly_held(own_redis: RedisServer) -> None:
    redis = Redis.from_url(own_redis.url)
    try:
        mine = RedisLease(redis, "lease:X", "me", ttl=2.0)
        theirs = RedisLease(redis, "lease:X", "them", ttl=2.0)
        await acquire_once_up(mine)  # the server has just started
        assert 1.5 < mine.remaining() <= 2.0
        assert await mine.acquire()  # re-entrant: still mine
        assert not await theirs.acquire() and theirs.remaining() <= 0
        assert await mine.renew()

        own_redis.kill()
        before = mine.remaining()
        with pytest.raises((RedisError, OSError, TimeoutError)):
            await mine.renew()
        assert 0 < mine.remaining() <= before  # unchanged deadline: the last confirmed renewal's
        own_redis.start()

        await redis.delete("lease:X")  # expired, say
        assert not await mine.renew()
        assert mine.remaining() <= 0
        await acquire_once_up(theirs)  # the server has just restarted
        await mine.release()  # not its own any more: nothing happens
        assert await theirs.holder() == "them"
    finally:
        await redis.aclose()


async def test_a_redis_restarted_without_its_keys_gives_a_lease_to_nobody_while_it_may_still_be_held(
    own_redis: RedisServer,
) -> None:
    """A Redis that restarts without the lease key (no persistence, or its last writes lost) must not
    hand the symbol to another worker while the holder may still consume it: the holder's last
    renewal ran on the old server, so it stops before `ttl` after the new one started (SPEC §2: one
    consumer per symbol at a time)."""
    redis = Redis.from_url(own_redis.url)
    try:
        mine = RedisLease(redis, "lease:X", "me", ttl=2.0)
        theirs = RedisLease(redis, "lease:X", "them", ttl=2.0)
        await acquire_once_up(mine)
        own_redis.kill()
        own_redis.forget()
        own_redis.start()
        with contextlib.suppress(RedisError):
            await redis.ping()  # drops the connection the kill closed
        assert await redis.get("lease:X") is None  # the key is gone with the restart
        assert mine.remaining() > 0  # yet its holder may still consume, as far as it knows
        assert not await theirs.acquire()
        assert theirs.remaining() <= 0

        await acquire_once_up(theirs)
        assert mine.remaining() <= 0, "taken while its former holder may still consume"
        assert not await mine.renew()
        assert await theirs.holder() == "them"
    finally:
        await redis.aclose()
