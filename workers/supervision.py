"""Supervision of the worker's background tasks.

Every long-running task of the worker — the market supervisor, each symbol's consumer, the listener
of strategy changes, the consumer of order updates, arq's own loop — depends on Redis, PostgreSQL or
Binance, any of which can go away for a while. A task that dies on such an error is not left dead:
it is started again after a delay that grows with each failure in a row (exponential backoff with
jitter, so that workers do not reconnect in lockstep), and each task resynchronises in full when it
starts (the consumer reloads its strategies and resumes from its checkpoint, the listener triggers a
full reload, the order updates re-read the resting orders).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger("criptoren.worker")


@dataclass
class Backoff:
    """Delays before retrying: `initial`, then ×`factor` per failure in a row, at most `maximum`,
    each ±`jitter` (a fraction). `reset()` after a success."""

    initial: float = 0.5
    maximum: float = 10.0
    factor: float = 2.0
    jitter: float = 0.2
    failures: int = 0

    def next_delay(self) -> float:
        delay = min(self.maximum, self.initial * self.factor**self.failures)
        self.failures += 1
        return delay * (1 + random.uniform(-self.jitter, self.jitter))  # noqa: S311 - not cryptographic

    def reset(self) -> None:
        self.failures = 0


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:300]


async def wait_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep `seconds` unless `stop` is set first; True if stopped."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), max(0.0, seconds))
    return stop.is_set()


async def supervise(
    name: str,
    run: Callable[[], Awaitable[None]],
    *,
    stop: asyncio.Event,
    backoff: Backoff | None = None,
    restart_on_return: bool = False,
    healthy_after: float = 30.0,
) -> None:
    """Run `run()` until `stop` is set, starting it again after it fails (and after it returns, with
    `restart_on_return`), after a backoff delay. A run that lasted `healthy_after` seconds counts as a
    recovery: the next failure starts the backoff over. The first failure of a series is logged with
    its traceback, the next ones in one line."""
    backoff = backoff or Backoff()
    while not stop.is_set():
        started = time.monotonic()
        try:
            await run()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            if time.monotonic() - started >= healthy_after:
                backoff.reset()
            delay = backoff.next_delay()
            if backoff.failures == 1:
                log.warning("%s failed; restarting it in %.1f s", name, delay, exc_info=True)
            else:
                log.warning("%s failed again (%s); restarting it in %.1f s", name, describe(e), delay)
        else:
            if not restart_on_return or stop.is_set():
                return
            if time.monotonic() - started >= healthy_after:
                backoff.reset()
            delay = backoff.next_delay()
            log.warning("%s ended; restarting it in %.1f s", name, delay)
        if await wait_or_stop(stop, delay):
            return
