"""Shared fixtures: a fresh PostgreSQL database per test run (migrated to head), a clean schema
per test, and the application wired on it with the paper exchange."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal

import pytest
from sqlalchemy import text

from domain.adapters.bootstrap import App, bootstrap
from domain.adapters.config import Settings
from domain.adapters.exchanges.paper import PaperExchange
from domain.adapters.market.prices import FirstKnownPrice, LatestCandlePrices, MemoryPriceBook
from domain.adapters.persistence import orm
from domain.adapters.persistence.migrate import upgrade_to_head
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
    return Settings(
        database_url=database_url,
        redis_url=services.redis_url(),
        redis_prefix=services.redis_prefix(),
        fee_rate=Decimal("0.001"),
        criptoren_secret_key=f"test-{uuid.uuid4().hex}",
        # Generous: the suite's many requests as client 1 must not trip it (tests/e2e/test_limits.py lowers it).
        rate_limit_per_minute=100_000,
        # The tests' alert receivers listen on 127.0.0.1 (tests/alert_receivers.py).
        webhook_allow_private=True,
    )


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[App]:
    application = bootstrap(settings)
    yield application
    await services.delete_keys(application.redis, settings.redis_prefix)
    await application.close()


TABLES = ", ".join(t.name for t in reversed(orm.metadata.sorted_tables))


async def reset(app: App) -> None:
    """Empty every table (the symbols seeded again) and every Redis key of the test run."""
    async with app.engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
    from domain.adapters.seed import seed_symbols

    await seed_symbols(app.uow)
    await services.delete_keys(app.redis, app.settings.redis_prefix)


@pytest.fixture
async def db(app: App) -> AsyncIterator[App]:
    """The app on an empty database (the seeded symbols only), no Redis keys, and a fresh paper
    book as the only source of live prices (then the latest stored candle)."""
    await reset(app)
    book = MemoryPriceBook()
    app.price_book = book
    app.prices = FirstKnownPrice([book, LatestCandlePrices(app.session_factory)])
    app.exchange = PaperExchange(app.prices, app.settings.fee_rate)
    yield app
