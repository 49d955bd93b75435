"""arq's worker, riding out Redis outages.

arq (0.28) ends its worker on the first Redis error of its polling loop, and gives up connecting at
start-up after a few attempts: a 20 s outage killed the worker for good (issue 17). This subclass
keeps the loop alive instead — a failed poll waits with backoff and polls again; redis-py reconnects
by itself once Redis answers — waits for Redis at start-up, and shuts down cleanly even when Redis
is gone. What cannot run meanwhile (cron jobs due during the outage) runs at its next time; the
jobs are idempotent in the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

from arq.connections import create_pool
from arq.worker import Worker
from redis.exceptions import RedisError

from workers.supervision import Backoff, describe

log = logging.getLogger("criptoren.worker")

# Redis unreachable or too slow (redis-py wraps socket errors in ConnectionError / TimeoutError).
REDIS_DOWN = (RedisError, OSError, TimeoutError)


class ResilientWorker(Worker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:  # arq's `Worker` arguments, forwarded as they are
        super().__init__(*args, **kwargs)
        self.redis_backoff = Backoff(initial=0.5, maximum=5.0)
        self.redis_failing = False

    async def main(self) -> None:
        backoff = Backoff(initial=0.5, maximum=5.0)
        while self._pool is None:
            try:
                self._pool = await create_pool(
                    self.redis_settings,
                    job_deserializer=self.job_deserializer,
                    job_serializer=self.job_serializer,
                    default_queue_name=self.queue_name,
                    expires_extra_ms=self.expires_extra_ms,
                )
            except REDIS_DOWN as e:
                delay = backoff.next_delay()
                log.warning("Redis is unreachable (%s); connecting again in %.1f s", describe(e), delay)
                await asyncio.sleep(delay)
        await super().main()

    async def _poll_iteration(self) -> None:
        try:
            await super()._poll_iteration()
        except REDIS_DOWN as e:
            delay = self.redis_backoff.next_delay()
            if not self.redis_failing:
                self.redis_failing = True
                log.warning("Redis is unreachable (%s): jobs wait; polling again with backoff", describe(e))
            await asyncio.sleep(delay)
            return
        if self.redis_failing:
            self.redis_failing = False
            self.redis_backoff.reset()
            log.info("Redis answers again: jobs run")

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        try:
            await super().start_jobs(job_ids)
        except REDIS_DOWN:
            # arq takes a job slot before the Redis calls that check the job, and does not give it
            # back when they fail: give it back, or the worker runs out of slots outage after outage.
            self.job_counter -= 1
            self.sem.release()
            raise

    async def close(self) -> None:
        # arq's close(), except that Redis may be gone: the shutdown (consumers stopped, leases
        # released where possible) must still happen.
        if not self._handle_signals:
            self.handle_sig(signal.SIGUSR1)
        if not self._pool:
            return
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        with contextlib.suppress(*REDIS_DOWN):
            await asyncio.wait_for(self.pool.delete(self.health_check_key), 2)
        if self.on_shutdown:
            await self.on_shutdown(self.ctx)
        with contextlib.suppress(*REDIS_DOWN):
            await self.pool.close(close_connection_pool=True)
        self._pool = None
