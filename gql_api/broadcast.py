"""Fan-out of Redis pub/sub messages to the subscriptions of this API process.

One Redis connection per process, pattern-subscribed once to every channel of the deployment's
prefix (so that no subscribe/unsubscribe ever races the reader). Messages of channels nobody here
listens to are dropped unread; the others are decoded once and handed to every subscriber's
bounded queue; a subscriber too slow to keep up loses its oldest messages (ticks are superseded by
newer ones) rather than holding the others back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis

log = logging.getLogger("criptoren.broadcast")

QUEUE_SIZE = 256


class Broadcaster:
    def __init__(self, redis: Redis, pattern: str) -> None:
        self.redis = redis
        self.pattern = pattern
        self._queues: dict[str, set[asyncio.Queue[Any]]] = {}
        self._pubsub: Any = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        if self._task is not None:
            return
        self._pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        await self._pubsub.psubscribe(self.pattern)
        self._task = asyncio.create_task(self._read(), name="broadcaster")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._pubsub is not None:
            await self._pubsub.aclose()
            self._pubsub = None

    @property
    def subscribers(self) -> int:
        return sum(len(q) for q in self._queues.values())

    async def _read(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("Redis pub/sub read failed; retrying")
                await asyncio.sleep(1)
                continue
            if message is None:
                continue
            channel = message["channel"].decode() if isinstance(message["channel"], bytes) else message["channel"]
            queues = self._queues.get(channel)
            if not queues:
                continue
            payload = json.loads(message["data"])
            for queue in queues:
                if queue.full():
                    queue.get_nowait()  # drop the oldest: the subscriber is behind
                queue.put_nowait(payload)

    async def subscribe(self, channels: list[str]) -> AsyncIterator[Any]:
        """Messages of `channels` (decoded JSON), until the caller stops iterating."""
        async with self._lock:
            await self.start()
        queue: asyncio.Queue[Any] = asyncio.Queue(QUEUE_SIZE)
        for channel in channels:
            self._queues.setdefault(channel, set()).add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            for channel in channels:
                queues = self._queues.get(channel)
                if queues is not None:
                    queues.discard(queue)
                    if not queues:
                        del self._queues[channel]
