"""Operations (issue 7): /healthz, /readyz with details (PostgreSQL, Redis, the workers' market
stream heartbeats), Prometheus /metrics, the pauseTrading/resumeTrading mutations (audited), and
structured logs with secrets masked."""

from __future__ import annotations

import io
import json
import logging
from decimal import Decimal

import httpx

from domain import commands as cmds
from domain import services
from domain.adapters.bootstrap import App
from domain.adapters.config import Settings
from domain.adapters.ops import stream_health
from domain.adapters.ops.logs import configure_logging
from domain.adapters.seed import seed_demo
from domain.logctx import log_fields
from tests.e2e.conftest import GraphQLClient


def report(symbol: str, last_tick_age: float | None, state: str = "streaming") -> stream_health.StreamReport:
    now = stream_health.now()
    last = None if last_tick_age is None else now - last_tick_age
    return stream_health.StreamReport(symbol, "worker-1", "replay", state, last, 10, now)


async def test_healthz_and_readyz_with_the_market_streams(db: App, http: httpx.AsyncClient) -> None:
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    ready = await http.get("/readyz")
    assert ready.status_code == 200  # no active strategy: no stream to wait for
    market = ready.json()["checks"]["market"]
    assert market["ok"] and market["symbols"] == {}

    await seed_demo(db.uow, db.exchange)  # an active strategy on BTCUSDT: its stream must be up
    missing = await http.get("/readyz")
    assert missing.status_code == 503
    body = missing.json()
    assert body["status"] == "not ready" and body["checks"]["postgres"]["ok"] and body["checks"]["redis"]["ok"]
    assert body["checks"]["market"]["symbols"]["BTCUSDT"] == {"ok": False, "error": "no worker reports this stream"}

    await stream_health.report(db.redis, db.bus, [report("BTCUSDT", 1.0)], ttl=10)
    ok = await http.get("/readyz")
    assert ok.status_code == 200, ok.json()
    assert ok.json()["checks"]["market"]["symbols"]["BTCUSDT"]["worker"] == "worker-1"

    await stream_health.report(db.redis, db.bus, [report("BTCUSDT", 600.0)], ttl=10)
    stale = await http.get("/readyz")
    assert stale.status_code == 503 and stale.json()["checks"]["market"]["symbols"]["BTCUSDT"]["error"] == (
        "no tick for 600 s"
    )
    await stream_health.report(db.redis, db.bus, [report("BTCUSDT", None, state="finished")], ttl=10)
    assert (await http.get("/readyz")).status_code == 200  # a replay that played out


async def test_metrics(db: App, http: httpx.AsyncClient) -> None:
    await seed_demo(db.uow, db.exchange)
    db.price_book.set("BTCUSDT", Decimal("103000"))
    await services.buy(cmds.Buy(1, quote_amount=Decimal("100")), db.uow(), db.exchange, db.prices)
    await db.redis.zadd(f"{db.settings.redis_prefix}:queue", {"job-1": 1, "job-2": 2})
    await stream_health.report(db.redis, db.bus, [report("BTCUSDT", 1.0)], ttl=10)
    response = await http.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    for line in (
        'criptoren_orders{status="filled"} 1.0',
        'criptoren_orders{status="rejected"} 0.0',
        "criptoren_job_queue_depth 2.0",
        'criptoren_stream_up{symbol="BTCUSDT"} 1.0',
        "criptoren_ws_subscribers 0.0",
    ):
        assert line in text.splitlines(), line
    for family in ("criptoren_ticks_total", "criptoren_engine_seconds", "criptoren_tick_to_order_seconds",
                   "criptoren_exchange_errors_total", "criptoren_stream_reconnects_total",
                   "criptoren_orders_not_sent_total"):  # fmt: skip
        assert f"# TYPE {family.removesuffix('_total')}" in text, family


async def test_pause_and_resume_trading_mutations(db: App, gql: GraphQLClient) -> None:
    await seed_demo(db.uow, db.exchange)
    db.price_book.set("BTCUSDT", Decimal("103000"))
    position = await services.buy(cmds.Buy(1, quote_amount=Decimal("100")), db.uow(), db.exchange, db.prices)
    await services.schedule_sell(cmds.ScheduleSell(position.id or 0), db.uow(), db.exchange)
    paused = await gql.data(
        "mutation { pauseTrading(cancelScheduled: true) { clientId paused pausedAt sellsHeld cancelledSchedules } }"
    )
    assert paused["pauseTrading"] | {"pausedAt": None} == {
        "clientId": "1", "paused": True, "pausedAt": None, "sellsHeld": True, "cancelledSchedules": [str(position.id)],
    }  # fmt: skip
    me = await gql.data("{ me { tradingPausedAt tradingSellsHeld } }")
    assert me["me"]["tradingPausedAt"] == paused["pauseTrading"]["pausedAt"] and me["me"]["tradingSellsHeld"]
    refused = await gql.error('mutation { buy(strategyId: "1", quoteAmount: "100") { id } }')
    assert refused["extensions"]["code"] == "INVALID_STATE" and "paused" in refused["message"]
    resumed = await gql.data("mutation { resumeTrading { paused sellsHeld } }")
    assert resumed["resumeTrading"] == {"paused": False, "sellsHeld": False}
    async with db.uow() as uow:
        audit = [(e.mutation, e.arguments, e.error_code) for e in reversed(await uow.audit.list_by_client(1, 10))]
    assert ("pauseTrading", {"cancelScheduled": True, "clientId": None}, None) in audit
    assert ("resumeTrading", {"clientId": None}, None) in audit


def test_json_logs_carry_the_ids_and_mask_secrets() -> None:
    settings = Settings(
        log_format="json",
        criptoren_secret_key="the-very-secret-key-123",
        database_url="postgresql+asyncpg://criptoren:db-password-456@db:5432/criptoren",
    )
    out = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging(settings, stream=out)
        log = logging.getLogger("criptoren.test")
        with log_fields(strategy_id=1, position_id=7, client_order_id="cr-x7-1"):
            log.warning("Selling with key %s", "the-very-secret-key-123")
        log.info("Connecting to %s", settings.database_url, extra={"symbol": "BTCUSDT"})
        log.info("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl")
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[0]["message"] == "Selling with key ********"
    assert (lines[0]["strategy_id"], lines[0]["position_id"], lines[0]["client_order_id"]) == (1, 7, "cr-x7-1")
    assert lines[0]["level"] == "WARNING" and lines[0]["logger"] == "criptoren.test" and "ts" in lines[0]
    assert "db-password-456" not in lines[1]["message"] and lines[1]["symbol"] == "BTCUSDT"
    assert "strategy_id" not in lines[1]
    assert lines[2]["message"] == "Authorization: Bearer ********"
