"""The composition root: builds the adapters from the settings and hands them to the API and the
workers (cosmicpython's bootstrap)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from domain.adapters.config import Settings
from domain.adapters.paper import PaperExchange
from domain.adapters.prices import FirstKnownPrice, LatestCandlePrices, MemoryPriceBook
from domain.adapters.redis_bus import RedisEventBus
from domain.adapters.unit_of_work import SqlAlchemyUnitOfWorkFactory, make_engine, make_session_factory
from domain.model import Symbol
from domain.ports import Exchange, PriceSource


def resolve_database_url(settings: Settings) -> str:
    """`DATABASE_URL`, else an embedded PostgreSQL (started here, exported for child processes)."""
    if settings.database_url:
        return settings.database_url
    from domain.adapters.embedded import embedded_postgres_url

    url = embedded_postgres_url(settings.criptoren_data_dir)
    os.environ["DATABASE_URL"] = url
    settings.database_url = url
    return url


def resolve_redis_url(settings: Settings) -> str:
    """`REDIS_URL`, else an embedded Redis (started here, exported for child processes)."""
    if settings.redis_url:
        return settings.redis_url
    from domain.adapters.embedded import embedded_redis_url

    url = embedded_redis_url(settings.criptoren_data_dir)
    os.environ["REDIS_URL"] = url
    settings.redis_url = url
    return url


class RedisPrices:
    """The last tick the market workers published."""

    def __init__(self, bus: RedisEventBus) -> None:
        self.bus = bus

    async def current_price(self, symbol: Symbol) -> tuple[Decimal, datetime] | None:
        return await self.bus.last_price(symbol.symbol)


@dataclass
class App:
    """Everything a process needs to run use cases."""

    settings: Settings
    engine: AsyncEngine
    session_factory: async_sessionmaker[AsyncSession]
    uow: SqlAlchemyUnitOfWorkFactory
    exchange: Exchange
    prices: PriceSource
    redis: Redis
    bus: RedisEventBus
    price_book: MemoryPriceBook = field(default_factory=MemoryPriceBook)

    async def close(self) -> None:
        await self.engine.dispose()
        await self.redis.aclose()


def bootstrap(settings: Settings | None = None, *, exchange: Exchange | None = None) -> App:
    settings = settings or Settings()
    engine = make_engine(resolve_database_url(settings))
    session_factory = make_session_factory(engine)
    redis = Redis.from_url(resolve_redis_url(settings))
    bus = RedisEventBus(redis, settings.redis_prefix)
    book = MemoryPriceBook()
    prices = FirstKnownPrice([book, RedisPrices(bus), LatestCandlePrices(session_factory)])
    return App(
        settings=settings,
        engine=engine,
        session_factory=session_factory,
        uow=SqlAlchemyUnitOfWorkFactory(session_factory, bus),
        exchange=exchange or PaperExchange(prices, settings.fee_rate),
        prices=prices,
        redis=redis,
        bus=bus,
        price_book=book,
    )
