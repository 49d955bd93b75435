"""Login throttle: failed logins per API key and per IP address, with growing waits.

Each login attempt is counted up front, per key (its hash) and per IP, in one atomic Redis script,
so a burst of parallel guesses is counted as it arrives rather than after its ~70 ms scrypt. Past
`LOGIN_FAILURES_PER_KEY` (5) attempts of a key or `LOGIN_FAILURES_PER_IP` (20) from an address, each
further attempt makes the next one wait: 1 s, then 2, 4, 8 … up to `LOGIN_MAX_DELAY_SECONDS` (300).
A login attempted during a wait is refused at once (`RATE_LIMITED`, `retryAfter` seconds), without
checking the secret, and does not lengthen the wait. A success clears its key's count and takes
its own attempt off the address's count. Counts are forgotten an hour after the last attempt.

A wrong key and a wrong secret are throttled alike (the refusal says nothing of which it was). If
Redis cannot be reached, logins are not throttled (logged), as the rate limit does.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable
from typing import cast

from redis.exceptions import RedisError

from domain.adapters.bootstrap import App

log = logging.getLogger("criptoren.api")

FORGET_SECONDS = 3600
clock = time.time  # the throttle's clock (tests move it by hand)
# KEYS: the key's and the address's counters. ARGV: now, free attempts of each, longest wait, TTL.
# Returns the seconds still to wait (the attempt is then not counted), or 0 (counted, go ahead).
ATTEMPT = """
local now = tonumber(ARGV[1])
local wait = 0
for i, key in ipairs(KEYS) do
  local locked = tonumber(redis.call('HGET', key, 'until') or '0')
  if locked > now and locked - now > wait then wait = locked - now end
end
if wait > 0 then return tostring(wait) end
for i, key in ipairs(KEYS) do
  local n = redis.call('HINCRBY', key, 'n', 1)
  local free = tonumber(ARGV[1 + i])
  if n > free then
    local delay = math.min(tonumber(ARGV[4]), 2 ^ (n - free - 1))
    redis.call('HSET', key, 'until', tostring(now + delay))
  end
  redis.call('EXPIRE', key, tonumber(ARGV[5]))
end
return '0'
"""


class LoginThrottle:
    def __init__(self, app: App) -> None:
        self.app = app

    def _keys(self, api_key: str, address: str | None) -> tuple[str, str]:
        prefix = self.app.settings.redis_prefix
        digest = hashlib.sha256(api_key[:200].encode("utf-8", "replace")).hexdigest()[:32]
        return f"{prefix}:login-attempts:key:{digest}", f"{prefix}:login-attempts:ip:{address or 'unknown'}"

    async def attempt(self, api_key: str, address: str | None, now: float | None = None) -> int | None:
        """Count a login attempt; the whole seconds to wait first when it is throttled, else None."""
        settings = self.app.settings
        now = clock() if now is None else now
        try:
            # redis-py types its commands for the sync and asyncio clients at once (`Awaitable[str] | str`);
            # on `redis.asyncio` it is awaitable, and answers the script's string as bytes. The numbers go
            # as the strings Redis would receive anyway (redis-py encodes an int or float as its repr).
            reply = self.app.redis.eval(
                ATTEMPT, 2, *self._keys(api_key, address), repr(now), str(settings.login_failures_per_key),
                str(settings.login_failures_per_ip), str(settings.login_max_delay_seconds), str(FORGET_SECONDS),
            )  # fmt: skip
            wait = await cast("Awaitable[bytes]", reply)
        except (RedisError, OSError) as e:
            log.warning("Logins are not throttled: Redis is unreachable (%s)", e)
            return None
        seconds = float(wait)
        return max(1, int(seconds + 0.999)) if seconds > 0 else None

    async def succeeded(self, api_key: str, address: str | None) -> None:
        key, ip = self._keys(api_key, address)
        try:
            async with self.app.redis.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                pipe.hincrby(ip, "n", -1)
                await pipe.execute()
        except (RedisError, OSError) as e:
            log.warning("Could not clear a login's attempts: Redis is unreachable (%s)", e)
