"""Alert latency (run by hand): `python bench/alert_latency_bench.py [--events 20] [--root PATH]`.

A `criptoren worker` (replayed market, paper trading) on a database and Redis prefix of its own, a
webhook receiver on 127.0.0.1 that verifies signatures, and the demo client's emergency stop paused
and resumed `--events` times, one every 1.5 s: each writes a `trading_paused` / `trading_resumed`
event, committed and published like any other. Prints the lag from each event's creation (in its
transaction, just before the commit) to its arrival at the receiver: p50, p90 and max.

The worker dispatches on the events' Redis channel (the wake-up, `workers.alerts`) and every 3 s
(the cron, its safety net); arq picks an enqueued job up within its 0.5 s poll. `--root` runs the
worker from another checkout (e.g. one without the wake-up) to compare.

Uses DATABASE_URL / REDIS_URL when set, else the local services on 127.0.0.1; a database and a
Redis key prefix of its own, dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import services as test_services  # noqa: E402


def start_worker(root: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "gql_api.cli", "worker"], cwd=root, env=env)


async def run(url: str, events: int, root: Path) -> None:
    from domain import commands as cmds
    from domain.adapters.alerts import HttpAlertTransport
    from domain.adapters.bootstrap import bootstrap
    from domain.adapters.config import Settings
    from domain.adapters.seed import seed_demo
    from domain.services import alerts, trading_pause
    from tests.alert_receivers import WebhookReceiver, webhook_receiver

    prefix = f"bench-alerts-{uuid.uuid4().hex[:8]}"
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    secret = "bench-secret-key-0123456789-0123456789-0123456789"
    worker = None
    try:
        settings = Settings(database_url=url, redis_url=redis_url, redis_prefix=prefix, criptoren_secret_key=secret)
        app = bootstrap(settings)
        await seed_demo(app.uow, app.exchange)
        arrived: dict[str, float] = {}
        receiver = WebhookReceiver()
        original = receiver.handle

        async def handle(request):  # type: ignore[no-untyped-def]
            response = await original(request)
            arrived.setdefault(receiver.requests[-1].event_id, time.time())
            return response

        receiver.handle = handle  # type: ignore[method-assign]
        async with webhook_receiver(receiver):
            created = await alerts.create_webhook_endpoint(
                cmds.CreateWebhookEndpoint(1, receiver.url, ("trading_paused", "trading_resumed")),
                app.uow(), app.secret_box, HttpAlertTransport(allow_private=True),
            )  # fmt: skip
            receiver.secret = created.signing_secret or ""
            env = {
                **os.environ, "DATABASE_URL": url, "REDIS_URL": redis_url, "REDIS_PREFIX": prefix,
                "CRIPTOREN_SECRET_KEY": secret, "WEBHOOK_ALLOW_PRIVATE": "true", "MARKET_SOURCE": "replay",
                "REPLAY_FILE": f"BTCUSDT={ROOT / 'tests' / 'data' / 'btc-channel-1h.csv'}", "REPLAY_SPEED": "1",
                "LOG_LEVEL": "WARNING",
            }  # fmt: skip
            worker = start_worker(root, env)
            await asyncio.sleep(8)  # the worker starts
            for i in range(events):
                if i % 2 == 0:
                    await trading_pause.pause_trading(cmds.PauseTrading(1), app.uow, app.exchange)
                else:
                    await trading_pause.resume_trading(cmds.ResumeTrading(1), app.uow)
                await asyncio.sleep(1.5)
            for _ in range(300):  # 30 s at most for the last ones
                if len(receiver.accepted) >= events:
                    break
                await asyncio.sleep(0.1)
        from domain.ports import Page

        async with app.uow() as uow:
            stored = await uow.events.list(Page(100), types=["trading_paused", "trading_resumed"])
        created_at: dict[str, datetime] = {f"evt_{e.id}": e.created_at for e in stored if e.created_at}
        lags = sorted(arrived[k] - created_at[k].timestamp() for k in arrived if k in created_at)
        assert all(r.signed for r in receiver.requests)
        print(f"worker from {root}: {len(lags)} of {events} events delivered")
        if lags:
            p90 = lags[min(len(lags) - 1, int(0.9 * len(lags)))]
            print(
                f"lag from the event's commit to its arrival: p50 {statistics.median(lags):.3f} s, "
                f"p90 {p90:.3f} s, max {lags[-1]:.3f} s"
            )
        await app.close()
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--root", type=Path, default=ROOT, help="run `criptoren worker` from this checkout")
    args = parser.parse_args()
    from domain.adapters.bootstrap import upgrade_to_head

    admin = test_services.server_url()
    url = test_services.create_database(admin)
    try:
        upgrade_to_head(url)
        asyncio.run(run(url, args.events, args.root.resolve()))
    finally:
        test_services.drop_database(admin, url)


if __name__ == "__main__":
    main()
