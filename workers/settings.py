"""The arq worker: `criptoren worker` (or `arq workers.settings.WorkerSettings`).

On start-up it bootstraps the application, picks the market source, and runs the `MarketWorker`
(one lease-held consumer per watched symbol). Cron jobs reconcile orders and backfill candles.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

from arq import cron
from arq.connections import RedisSettings

from domain.adapters.bootstrap import bootstrap, resolve_redis_url
from domain.adapters.config import Settings
from domain.adapters.market_factory import make_market_source
from workers import cron as cron_jobs
from workers.market import MarketWorker

log = logging.getLogger("criptoren.worker")


async def startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx.get("settings") or Settings()
    app = bootstrap(settings)
    source = await make_market_source(settings)
    market = MarketWorker(app, source, lease_ttl=settings.lease_seconds)
    ctx.update(app=app, source=source, market=market)
    ctx["market_task"] = asyncio.create_task(market.run(), name="market-worker")
    log.info("Worker %s started (market: %s, exchange: %s)", market.owner, source.name, app.exchange.name)


async def shutdown(ctx: dict[str, Any]) -> None:
    market: MarketWorker | None = ctx.get("market")
    if market is not None:
        market.stop()
        task: asyncio.Task[None] = ctx["market_task"]
        try:
            await asyncio.wait_for(task, 10)
        except (TimeoutError, asyncio.CancelledError):
            task.cancel()
    if ctx.get("source") is not None:
        await ctx["source"].close()
    if ctx.get("app") is not None:
        await ctx["app"].close()


def redis_settings(settings: Settings) -> RedisSettings:
    return RedisSettings.from_dsn(resolve_redis_url(settings))


def worker_settings(settings: Settings | None = None) -> dict[str, Any]:
    """Keyword arguments for `arq.Worker` built from the settings."""
    settings = settings or Settings()
    return {
        "functions": [cron_jobs.reconcile_orders, cron_jobs.backfill_candles],
        "cron_jobs": [
            cron(cron_jobs.reconcile_orders, second={5, 35}, unique=True),
            cron(cron_jobs.backfill_candles, minute=set(range(0, 60, 5)), second=15, unique=True),
        ],
        "on_startup": startup,
        "on_shutdown": shutdown,
        "redis_settings": redis_settings(settings),
        "queue_name": f"{settings.redis_prefix}:queue",
        "ctx": {"settings": settings},
        "max_jobs": 20,
        "job_timeout": 60,
    }


class WorkerSettings:
    """For `arq workers.settings.WorkerSettings`; `criptoren worker` builds the same from Settings."""

    functions: ClassVar[list[Any]] = [cron_jobs.reconcile_orders, cron_jobs.backfill_candles]
    on_startup = startup
    on_shutdown = shutdown
