"""Shared fixtures: a fresh PostgreSQL database per test run (migrated to head), a clean schema
per test, and the application wired on it with the paper exchange."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from decimal import Decimal

import pytest
from sqlalchemy import text

from domain.adapters import orm
from domain.adapters.bootstrap import App, bootstrap
from domain.adapters.config import Settings
from domain.adapters.migrate import upgrade_to_head
from domain.adapters.paper import PaperExchange
from domain.adapters.prices import FirstKnownPrice, LatestCandlePrices, MemoryPriceBook
from tests import services


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    admin = services.server_url()
    url = services.create_database(admin)
    try:
        upgrade_to_head(url)
        yield url
    finally:
        services.drop_database(admin, url)


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, redis_url=None, fee_rate=Decimal("0.001"))


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[App]:
    application = bootstrap(settings)
    yield application
    await application.close()


TABLES = ", ".join(t.name for t in reversed(orm.metadata.sorted_tables))


@pytest.fixture
async def db(app: App) -> AsyncIterator[App]:
    """The app on an empty database (the seeded symbols only) with a fresh paper book."""
    async with app.engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
    from domain.adapters.seed import seed_symbols

    await seed_symbols(app.uow)
    book = MemoryPriceBook()
    app.price_book = book
    app.prices = FirstKnownPrice([book, LatestCandlePrices(app.session_factory)])
    app.exchange = PaperExchange(app.prices, app.settings.fee_rate)
    yield app
