"""The arq worker: `criptoren worker` (or `arq workers.settings.WorkerSettings`).

On start-up it bootstraps the application, picks the market source, and runs the `MarketWorker`
(one lease-held consumer per watched symbol), the consumer of order updates (fills of resting
orders on Binance, `workers.orders`) and the alerts' wake-up (`workers.alerts`), each supervised:
restarted with backoff if it dies on a dependency's error (`workers.supervision`). Cron jobs
reconcile orders, backfill candles and dispatch alerts (the wake-up's safety net). arq itself runs
as `ResilientWorker`, which rides out Redis outages (`workers.arq_worker`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

from arq import cron
from arq.connections import RedisSettings

from domain import views
from domain.adapters.bootstrap import bootstrap, make_market_source, resolve_redis_url
from domain.adapters.config import Settings
from domain.errors import ValidationError
from workers import alerts as alert_jobs
from workers import cron as cron_jobs
from workers.market import MarketWorker, check_candle_spacing
from workers.orders import OrderUpdatesWorker
from workers.supervision import supervise

log = logging.getLogger("criptoren.worker")


async def startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx.get("settings") or Settings()
    app = bootstrap(settings, user_streams=True)
    source = await make_market_source(settings, anchor=lambda name: views.reference_price(app.uow(), name))
    try:
        await check_candle_spacing(app, source)
    except ValidationError as e:
        log.error("%s", e.message)
        await source.close()
        await app.close()
        raise SystemExit(f"criptoren worker: {e.message}") from None
    market = MarketWorker(
        app,
        source,
        lease_ttl=settings.lease_seconds,
        shutdown_grace=settings.shutdown_grace_seconds,
        reload_seconds=settings.engine_reload_seconds,
        stream_alert_seconds=settings.stream_alert_seconds,
    )
    if settings.metrics_port:
        # The worker's own metrics (ticks, engine time, tick-to-order, …) for Prometheus to scrape.
        from prometheus_client import start_http_server

        ctx["metrics_server"], _ = start_http_server(settings.metrics_port)
        log.info("Worker metrics on http://0.0.0.0:%s/metrics", settings.metrics_port)
    orders = OrderUpdatesWorker(app)  # fills of resting orders (Binance), applied once
    ctx.update(app=app, source=source, market=market, orders=orders)
    ctx["stop"] = stop = asyncio.Event()
    ctx["market_task"] = asyncio.create_task(supervise("Market worker", market.run, stop=stop), name="market-worker")
    ctx["orders_task"] = asyncio.create_task(supervise("Order updates", orders.run, stop=stop), name="order-updates")
    # Alerts: dispatched as soon as their events are committed (the 3-second cron is the safety net).
    ctx["alerts_task"] = asyncio.create_task(
        supervise("Alert wake-up", lambda: alert_jobs.dispatch_on_events(ctx, stop), stop=stop, restart_on_return=True),
        name="alert-wake-up",
    )
    if settings.syncs_symbols:
        # In the background: an unreachable Binance must not delay the market consumers.
        ctx["symbols_task"] = asyncio.create_task(cron_jobs.sync_symbols(ctx), name="sync-symbols")
    log.info("Worker %s started (market: %s, exchange: %s)", market.owner, source.name, app.exchange.name)


async def shutdown(ctx: dict[str, Any]) -> None:
    if ctx.get("stop") is not None:
        ctx["stop"].set()  # no restart of what stops now
    for name in ("orders_task", "symbols_task", "alerts_task"):
        if ctx.get(name) is not None:
            ctx[name].cancel()
    market: MarketWorker | None = ctx.get("market")
    if market is not None:
        # SIGTERM: consumers finish the decision in hand (up to SHUTDOWN_GRACE_SECONDS) or abandon it.
        market.stop()
        task: asyncio.Task[None] = ctx["market_task"]
        try:
            await asyncio.wait_for(task, market.shutdown_grace + 10)
        except (TimeoutError, asyncio.CancelledError):
            task.cancel()
    if ctx.get("metrics_server") is not None:
        ctx["metrics_server"].shutdown()
    if ctx.get("source") is not None:
        await ctx["source"].close()
    if ctx.get("app") is not None:
        await ctx["app"].close()


def redis_settings(settings: Settings) -> RedisSettings:
    return RedisSettings.from_dsn(resolve_redis_url(settings))


def worker_settings(settings: Settings | None = None) -> dict[str, Any]:
    """Keyword arguments for `arq.Worker` built from the settings."""
    settings = settings or Settings()
    crons = [
        cron(cron_jobs.reconcile_orders, second={5, 35}, unique=True),
        cron(cron_jobs.backfill_candles, minute=set(range(0, 60, 5)), second=15, unique=True),
        cron(alert_jobs.dispatch_alerts, second=set(range(0, 60, 3)), unique=True, run_at_startup=True),
    ]
    if settings.syncs_symbols:
        crons.append(cron(cron_jobs.sync_symbols, hour=settings.backup_hour, minute=7, second=0, unique=True))
    if settings.backup_cron:
        crons.append(
            cron(cron_jobs.backup_database, hour=settings.backup_hour, minute=17, second=0, unique=True, timeout=3600)
        )
    return {
        "functions": [
            cron_jobs.reconcile_orders,
            cron_jobs.backfill_candles,
            cron_jobs.backup_database,
            cron_jobs.sync_symbols,
            alert_jobs.DELIVER_ALERT,
        ],
        "cron_jobs": crons,
        # SIGTERM: running jobs get this long to finish before they are cancelled (rolled back).
        "job_completion_wait": int(settings.shutdown_grace_seconds),
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
