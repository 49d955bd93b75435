"""Market stream heartbeats in Redis: each worker reports, once a second, the state of every symbol
stream it consumes; the API's `/readyz` and `/metrics` read them.

Key `<prefix>:stream:<SYMBOL>` (JSON, expiring after `ttl` seconds, so a dead worker's report
vanishes): `worker`, `source`, `state` (`starting` before the first tick, `streaming`, `finished`
when a replay ended), `last_tick_at` (wall clock, epoch seconds, of the last tick processed),
`ticks`, `reported_at`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from redis.asyncio import Redis

from domain.adapters.messaging.redis_bus import RedisEventBus


@dataclass(frozen=True)
class StreamReport:
    symbol: str
    worker: str
    source: str
    state: str
    last_tick_at: float | None
    ticks: int
    reported_at: float

    def problem(self, now: float, stale_after: float) -> str | None:
        """Why this stream is not fine, or None."""
        if self.state == "finished":
            return None
        if self.last_tick_at is None:
            return "no tick yet"
        age = now - self.last_tick_at
        if age > stale_after:
            return f"no tick for {age:.0f} s"
        return None


def stream_key(bus: RedisEventBus, symbol: str) -> str:
    return bus.channel(f"stream:{symbol}")


async def report(redis: Redis, bus: RedisEventBus, reports: Iterable[StreamReport], ttl: float) -> None:
    """Write the reports (one round trip)."""
    async with redis.pipeline(transaction=False) as pipe:
        for r in reports:
            pipe.set(stream_key(bus, r.symbol), json.dumps(asdict(r)), px=int(ttl * 1000))
        await pipe.execute()


async def read(redis: Redis, bus: RedisEventBus, symbols: Sequence[str]) -> dict[str, StreamReport | None]:
    """The latest report of each symbol (None when no worker reports it)."""
    if not symbols:
        return {}
    raw: list[Any] = await redis.mget([stream_key(bus, s) for s in symbols])
    return {s: StreamReport(**json.loads(v)) if v else None for s, v in zip(symbols, raw, strict=True)}


def now() -> float:
    return time.time()
