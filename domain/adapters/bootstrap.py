"""The composition root: builds the adapters from the settings and hands them to the API and the
workers (cosmicpython's bootstrap).

The entry points (`gql_api`, `workers`, the CLI) reach the adapters only through this module and
`config` (a test enforces it): what they use of them is built or re-exported here.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

# Re-exported for the entry points (see the module's docstring).
from domain.adapters import seed
from domain.adapters.alerts import HttpAlertTransport
from domain.adapters.backtest import report as backtest_report
from domain.adapters.backtest import runner as backtest_runner
from domain.adapters.backtest.pool import BacktestPool, StoredBacktest, run_stored_backtest
from domain.adapters.config import Settings
from domain.adapters.exchanges.binance_symbols import BinanceSymbolDirectory
from domain.adapters.exchanges.paper import PaperExchange
from domain.adapters.exchanges.router import ExchangeRouter
from domain.adapters.exchanges.secrets import SecretBox
from domain.adapters.keys import derive_key, secret_key
from domain.adapters.market.factory import make_market_source
from domain.adapters.market.prices import FirstKnownPrice, LatestCandlePrices, MemoryPriceBook
from domain.adapters.messaging.redis_bus import RedisEventBus
from domain.adapters.ops import backup as backups
from domain.adapters.ops import metrics, stream_health
from domain.adapters.ops.logs import configure_logging, debugging
from domain.adapters.persistence.migrate import upgrade_to_head
from domain.adapters.persistence.unit_of_work import SqlAlchemyUnitOfWorkFactory, make_engine, make_session_factory
from domain.model import Symbol
from domain.ports import Exchange, PriceSource, UnitOfWorkFactory

log = logging.getLogger("criptoren")


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
    # Backtests of stored candles, in processes of their own (started at the first one).
    backtests: BacktestPool = field(default_factory=lambda: BacktestPool(1, 0.0))

    @property
    def secret_box(self) -> SecretBox | None:
        """The cipher of stored secrets (exchange keys), None without `CRIPTOREN_SECRET_KEY`."""
        key = self.settings.criptoren_secret_key
        return SecretBox(key) if key else None

    @property
    def alert_transport(self) -> HttpAlertTransport:
        """Sends webhooks and Telegram messages (stateless: one HTTP session per attempt)."""
        return HttpAlertTransport(
            allow_private=self.settings.webhook_allow_private, telegram_api_url=self.settings.telegram_api_url
        )

    async def ping_database(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def close(self) -> None:
        self.backtests.close()
        if isinstance(self.exchange, ExchangeRouter):
            await self.exchange.close()
        await self.engine.dispose()
        await self.redis.aclose()


@dataclass
class Database:
    """PostgreSQL alone, for one-shot commands that need nothing else (backtests of stored candles)."""

    engine: AsyncEngine
    uow: SqlAlchemyUnitOfWorkFactory

    async def close(self) -> None:
        await self.engine.dispose()


def symbol_directory(settings: Settings) -> BinanceSymbolDirectory:
    """Where the symbols come from: the Binance orders go to (testnet with EXCHANGE=binance and
    BINANCE_TESTNET), else live Binance, whose public market the paper exchange follows."""
    return BinanceSymbolDirectory(
        testnet=settings.exchange == "binance" and settings.binance_testnet, api_url=settings.binance_api_url
    )


def open_database(settings: Settings) -> Database:
    engine = make_engine(resolve_database_url(settings))
    return Database(engine, SqlAlchemyUnitOfWorkFactory(make_session_factory(engine)))


def make_exchange(
    settings: Settings, uow: UnitOfWorkFactory, prices: PriceSource, *, user_streams: bool = False
) -> Exchange:
    """`EXCHANGE=paper`: every client on paper. `EXCHANGE=binance`: each client with exchange keys on
    its own Binance account (`BINANCE_TESTNET` picks testnet or live), the others on paper — one
    `ExchangeRouter`. `user_streams`: the accounts follow their resting orders (user data stream,
    polling as the fallback) — the workers do; the API only places and cancels orders."""
    paper = PaperExchange(prices, settings.fee_rate)
    if settings.exchange == "paper":
        return paper
    from domain.adapters.exchanges.binance import BinanceConfig, BinanceExchange, RequestGate

    cipher = SecretBox(settings.criptoren_secret_key) if settings.criptoren_secret_key else None
    if cipher is None:
        log.warning("EXCHANGE=binance without CRIPTOREN_SECRET_KEY: no client's exchange keys can be read.")
    # Binance limits request weight per IP: every account of the process shares one gate.
    gate = RequestGate(BinanceConfig(api_key="", api_secret="", testnet=settings.binance_testnet))

    def open_account(api_key: str, api_secret: str) -> BinanceExchange:
        return BinanceExchange.from_settings(settings, api_key, api_secret, gate=gate, user_stream=user_streams)

    log.info(
        "Exchange: Binance %s for clients with exchange keys, paper for the others.",
        "testnet" if settings.binance_testnet else "LIVE",
    )
    return ExchangeRouter(paper, uow, cipher, open_account)


def bootstrap(settings: Settings | None = None, *, exchange: Exchange | None = None, user_streams: bool = False) -> App:
    settings = settings or Settings()
    engine = make_engine(resolve_database_url(settings))
    session_factory = make_session_factory(engine)
    redis = Redis.from_url(resolve_redis_url(settings))
    bus = RedisEventBus(redis, settings.redis_prefix)
    book = MemoryPriceBook()
    prices = FirstKnownPrice([book, RedisPrices(bus), LatestCandlePrices(session_factory)])
    uow = SqlAlchemyUnitOfWorkFactory(session_factory, bus)
    return App(
        settings=settings,
        engine=engine,
        session_factory=session_factory,
        uow=uow,
        exchange=exchange or make_exchange(settings, uow, prices, user_streams=user_streams),
        prices=prices,
        redis=redis,
        bus=bus,
        price_book=book,
        backtests=BacktestPool(settings.backtest_concurrency, settings.backtest_wait_seconds),
    )


__all__ = [
    "App",
    "BacktestPool",
    "Database",
    "SecretBox",
    "Settings",
    "StoredBacktest",
    "backtest_report",
    "backtest_runner",
    "backups",
    "bootstrap",
    "configure_logging",
    "debugging",
    "derive_key",
    "make_market_source",
    "metrics",
    "open_database",
    "resolve_database_url",
    "resolve_redis_url",
    "run_stored_backtest",
    "secret_key",
    "seed",
    "stream_health",
    "upgrade_to_head",
]
