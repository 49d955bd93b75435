"""The composition root: builds the adapters from the settings and hands them to the API and the
workers (cosmicpython's bootstrap)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from domain.adapters.config import Settings
from domain.adapters.paper import PaperExchange
from domain.adapters.prices import FirstKnownPrice, LatestCandlePrices, MemoryPriceBook
from domain.adapters.unit_of_work import SqlAlchemyUnitOfWorkFactory, make_engine, make_session_factory
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


@dataclass
class App:
    """Everything a process needs to run use cases."""

    settings: Settings
    engine: AsyncEngine
    session_factory: async_sessionmaker[AsyncSession]
    uow: SqlAlchemyUnitOfWorkFactory
    exchange: Exchange
    prices: PriceSource
    price_book: MemoryPriceBook = field(default_factory=MemoryPriceBook)

    async def close(self) -> None:
        await self.engine.dispose()


def bootstrap(settings: Settings | None = None, *, exchange: Exchange | None = None) -> App:
    settings = settings or Settings()
    engine = make_engine(resolve_database_url(settings))
    session_factory = make_session_factory(engine)
    book = MemoryPriceBook()
    prices = FirstKnownPrice([book, LatestCandlePrices(session_factory)])
    return App(
        settings=settings,
        engine=engine,
        session_factory=session_factory,
        uow=SqlAlchemyUnitOfWorkFactory(session_factory),
        exchange=exchange or PaperExchange(prices, settings.fee_rate),
        prices=prices,
        price_book=book,
    )
