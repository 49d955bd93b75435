"""The fan-out baseline: bare Strawberry (no Redis, no database) serving the same `prices`
subscription shape from an in-process broadcast of 10 ticks/s. Run by bench/fanout_bench.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from decimal import Decimal

import strawberry
from strawberry.asgi import GraphQL

_queues: set[asyncio.Queue[tuple[str, float]]] = set()
_started = False


async def _ticker(rate: float = 10.0) -> None:
    price = 100000
    while True:
        await asyncio.sleep(1 / rate)
        price += 1
        for q in list(_queues):
            q.put_nowait((str(price), time.time()))


@strawberry.type
class PriceTick:
    symbol: str
    price: Decimal
    at: float


@strawberry.type
class Query:
    hello: str = "bare"


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def prices(self, symbols: list[str]) -> AsyncGenerator[PriceTick, None]:
        global _started
        if not _started:
            _started = True
            asyncio.get_running_loop().create_task(_ticker())
        q: asyncio.Queue[tuple[str, float]] = asyncio.Queue()
        _queues.add(q)
        try:
            while True:
                price, at = await q.get()
                yield PriceTick(symbol=symbols[0], price=Decimal(price), at=at)
        finally:
            _queues.discard(q)


app = GraphQL(strawberry.Schema(query=Query, subscription=Subscription))
