"""A renewed lease in Redis: exactly one worker consumes a symbol's stream at a time (SPEC §2).

The lease is a key `<prefix>:lease:<SYMBOL>` holding the owner's id, with a TTL of `ttl` seconds.
Its holder renews it (every `ttl / 5` in `workers.market`); if the holder dies, the key expires
and another worker takes the symbol over.

Safety when Redis cannot be reached. Redis starts the TTL when it *executes* a command, which is
after this process *sent* it; so, as seen from here, the key cannot expire for others before
`sent + ttl`, the deadline `valid_until` this class keeps (on the monotonic clock). A holder that
cannot renew must stop acting on the symbol before that deadline — `remaining()` tells how long it
still may — so that two workers never consume a symbol at the same time, whatever the outage.
Every command is bounded by `timeout`: a Redis that does not answer (a network partition rather
than a refused connection) counts as a failure in time to stop.

A restarted Redis may have lost the key (no persistence, or an append-only file that loses its
last second): the holder, whose last renewal ran on the old server, may then still consume for up
to `ttl` after the new server started. So `acquire` takes a free key only once the server has been
up for `ttl` (its `uptime_in_seconds`, checked in the same script, less one second: Redis counts
it between two whole-second clock readings, so it may run up to a second ahead): a free key is
then certainly not another worker's any more. A holder's own surviving key is renewed at once.

`acquire` is re-entrant: a worker that still holds the key (its consumer restarted, or a release
that failed during an outage) gets it back at once instead of waiting for it to expire.

Issue 12 (symbols spread across workers) builds on this: `acquire` takes a free symbol, `release`
hands one over at once (owner-checked), `holder` tells who has it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import cast

from redis.asyncio import Redis

_ACQUIRE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
local uptime = tonumber(string.match(redis.call('info', 'server'), 'uptime_in_seconds:(%d+)'))
if uptime ~= nil and (uptime - 1) * 1000 < tonumber(ARGV[2]) then
  return 0
end
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
return 0
"""
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class RedisLease:
    def __init__(self, redis: Redis, key: str, owner: str, ttl: float = 5.0, *, timeout: float | None = None) -> None:
        self.redis = redis
        self.key = key
        self.owner = owner
        self.ttl = ttl
        self.ttl_ms = int(ttl * 1000)
        # A command that takes longer than this is a failure (its outcome unknown: the deadline
        # stays where the last confirmed one put it).
        self.timeout = timeout if timeout is not None else max(0.2, ttl / 5)
        self.valid_until = 0.0  # monotonic; 0: not held

    async def _eval(self, script: str) -> tuple[float, bool]:
        """Run a script on the key; (when it was sent, its answer)."""
        sent = time.monotonic()
        # redis-py types its commands for the sync and asyncio clients at once (`Awaitable[str] | str`);
        # on `redis.asyncio` it is awaitable, and the scripts answer an integer. The TTL goes as the
        # string Redis would receive anyway (redis-py encodes an int as its decimal digits).
        reply = cast("Awaitable[int]", self.redis.eval(script, 1, self.key, self.owner, str(self.ttl_ms)))
        result = await asyncio.wait_for(reply, self.timeout)
        return sent, bool(result)

    async def acquire(self) -> bool:
        """Take the lease if it is free (or already ours). Raises on a Redis error or timeout."""
        sent, ok = await self._eval(_ACQUIRE)
        self.valid_until = sent + self.ttl if ok else 0.0
        return ok

    async def renew(self) -> bool:
        """Extend the lease; False if it is no longer ours (expired, taken). Raises on a Redis error
        or timeout — the lease is then ours for `remaining()` seconds at most."""
        sent, ok = await self._eval(_RENEW)
        self.valid_until = sent + self.ttl if ok else 0.0
        return ok

    async def release(self) -> None:
        """Give the lease up now (only if it is still ours)."""
        self.valid_until = 0.0
        await self._eval(_RELEASE)

    def remaining(self) -> float:
        """Seconds before the lease may expire for others (≤ 0: it may have)."""
        return self.valid_until - time.monotonic()

    async def holder(self) -> str | None:
        value = await self.redis.get(self.key)
        return value.decode() if isinstance(value, bytes) else value
