"""Operations endpoints of the API: `/readyz` (readiness, with details) and `/metrics` (Prometheus).

`/healthz` (in app.py) says the process is up; `/readyz` says whether it can do its job:

- `postgres`: a `SELECT 1` answers;
- `redis`: a `PING` answers;
- `market`: every symbol the workers must consume (an active strategy or live positions) has a
  worker reporting its stream (a Redis heartbeat, `domain.adapters.ops.stream_health`) with a tick
  within `STREAM_STALE_SECONDS` (a replay that played out counts as fine);
- and the process is not shutting down.

It answers 200 `{"status": "ready", "checks": {...}}`, or 503 `{"status": "not ready", ...}`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from domain import views
from domain.adapters.bootstrap import App, metrics, stream_health
from domain.model import DeliveryStatus, OrderStatus
from domain.services import alerts

CHECK_TIMEOUT = 3.0


async def _timed(check: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        details = await asyncio.wait_for(check, CHECK_TIMEOUT) or {}
    except Exception as e:  # a failed check is reported, not raised
        return {"ok": False, "error": f"{type(e).__name__}: {e}"[:300]}
    ok = details.pop("ok", True)
    return {"ok": ok, "latency_ms": round((time.perf_counter() - started) * 1000, 1), **details}


async def _postgres(app: App) -> dict[str, Any]:
    await app.ping_database()
    return {}


async def _redis(app: App) -> dict[str, Any]:
    await app.redis.ping()
    return {}


async def watched_symbols(app: App) -> list[str]:
    async with app.uow() as uow:
        return [s.symbol for s in await uow.symbols.watched()]


async def _market(app: App) -> dict[str, Any]:
    symbols = await watched_symbols(app)
    reports = await stream_health.read(app.redis, app.bus, symbols)
    now = stream_health.now()
    details: dict[str, Any] = {}
    ok = True
    for symbol in symbols:
        report = reports.get(symbol)
        if report is None:
            ok = False
            details[symbol] = {"ok": False, "error": "no worker reports this stream"}
            continue
        problem = report.problem(now, app.settings.stream_stale_seconds)
        ok = ok and problem is None
        details[symbol] = {
            "ok": problem is None,
            "state": report.state,
            "worker": report.worker,
            "source": report.source,
            "last_tick_age_s": None if report.last_tick_at is None else round(now - report.last_tick_at, 1),
            **({"error": problem} if problem else {}),
        }
    return {"ok": ok, "symbols": details}


async def readiness(app: App, *, shutting_down: bool = False) -> tuple[bool, dict[str, Any]]:
    postgres, redis = await asyncio.gather(_timed(_postgres(app)), _timed(_redis(app)))
    if postgres["ok"] and redis["ok"]:
        market = await _timed(_market(app))
    else:
        market = {"ok": False, "error": "needs PostgreSQL and Redis"}
    checks = {"postgres": postgres, "redis": redis, "market": market}
    ready = all(c["ok"] for c in checks.values()) and not shutting_down
    body: dict[str, Any] = {"status": "ready" if ready else "not ready", "checks": checks}
    if shutting_down:
        body["shutting_down"] = True
    return ready, body


async def readyz(request: Request) -> JSONResponse:
    app: App = request.app.state.criptoren
    ready, body = await readiness(app, shutting_down=request.app.state.shutting_down)
    return JSONResponse(body, status_code=200 if ready else 503)


async def _refresh_gauges(app: App) -> None:
    """The gauges read at scrape time from the database and Redis (each failure leaves the previous
    value: a scrape must not fail because one source is down)."""
    try:
        counts = await views.orders_by_status(app.uow())
        for status in OrderStatus:
            metrics.ORDERS.labels(status.value).set(counts.pop(status.value, 0))
        for other_status, n in counts.items():
            metrics.ORDERS.labels(other_status).set(n)
    except Exception:  # noqa: S110 - reported by /readyz
        pass
    try:
        log = await alerts.deliveries_by_status(app.uow())
        for delivery_status in DeliveryStatus:
            metrics.ALERT_LOG.labels(delivery_status.value).set(log.get(delivery_status.value, 0))
    except Exception:  # noqa: S110 - reported by /readyz
        pass
    try:
        metrics.JOB_QUEUE_DEPTH.set(await app.redis.zcard(f"{app.settings.redis_prefix}:queue"))
        symbols = await watched_symbols(app)
        reports = await stream_health.read(app.redis, app.bus, symbols)
        now = stream_health.now()
        for symbol, report in reports.items():
            up = report is not None and report.problem(now, app.settings.stream_stale_seconds) is None
            metrics.STREAM_UP.labels(symbol).set(1 if up else 0)
    except Exception:  # noqa: S110 - reported by /readyz
        pass


async def metrics_endpoint(request: Request) -> Response:
    app: App = request.app.state.criptoren
    await asyncio.wait_for(_refresh_gauges(app), CHECK_TIMEOUT * 2)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
