"""Subscription fan-out benchmark (run by hand): `python bench/fanout_bench.py [subscribers] [seconds]`.

500 WebSocket subscribers (graphql-transport-ws) on one API process, 10 ticks/s for 20 s:
p50/p99 delivery latency of a tick (publish -> received by a client) and the server's CPU per
delivered message, for Criptoren (ticks published on Redis, as the workers do) and for the peer,
bare Strawberry serving the same subscription from memory (bench/bare_strawberry_app.py).
Server and clients run in separate processes; CPU is read from /proc for the server only.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import websockets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUERY_OURS = 'subscription { prices(symbols: ["BTCUSDT"]) { symbol price at } }'
QUERY_BARE = 'subscription { prices(symbols: ["BTCUSDT"]) { symbol price at } }'


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def subscriber(url: str, query: str, latencies: list[float], ready: asyncio.Event, counter: list[int]) -> None:
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"], max_queue=None) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        await ws.recv()
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}}))
        counter[0] += 1
        if counter[0] >= counter[1]:
            ready.set()
        async for raw in ws:
            now = time.time()
            message = json.loads(raw)
            if message.get("type") != "next":
                continue
            at = message["payload"]["data"]["prices"]["at"]
            sent = at if isinstance(at, float) else datetime.fromisoformat(at).timestamp()
            latencies.append(now - sent)


async def measure(url: str, query: str, pid: int, n: int, seconds: float, publish=None) -> dict[str, float]:  # type: ignore[no-untyped-def]
    latencies: list[float] = []
    ready = asyncio.Event()
    counter = [0, n]
    tasks = [asyncio.create_task(subscriber(url, query, latencies, ready, counter)) for _ in range(n)]
    await asyncio.wait_for(ready.wait(), 120)
    await asyncio.sleep(1)
    publisher = asyncio.create_task(publish()) if publish else None
    await asyncio.sleep(2)  # warm up
    latencies.clear()
    cpu0 = cpu_seconds(pid)
    await asyncio.sleep(seconds)
    cpu = cpu_seconds(pid) - cpu0
    delivered = len(latencies)
    for t in tasks:
        t.cancel()
    if publisher:
        publisher.cancel()
    lat = sorted(latencies)
    return {
        "delivered": delivered,
        "p50_ms": statistics.median(lat) * 1000 if lat else float("nan"),
        "p99_ms": lat[int(len(lat) * 0.99) - 1] * 1000 if lat else float("nan"),
        "cpu_us_per_msg": cpu / delivered * 1e6 if delivered else float("nan"),
        "rate": delivered / seconds,
    }


def wait_port(port: int, timeout: float = 60) -> None:
    import socket

    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"port {port} did not open")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 20
    from domain.adapters.persistence.migrate import upgrade_to_head
    from tests import services as ts
    from tests.e2e.servers import free_port

    results = {}
    # The peer: bare Strawberry.
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.bare_strawberry_app:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
    )
    try:
        wait_port(port)
        results["bare Strawberry (in-memory)"] = asyncio.run(
            measure(f"ws://127.0.0.1:{port}/graphql", QUERY_BARE, server.pid, n, seconds)
        )
    finally:
        server.terminate()
        server.wait()

    # Criptoren: ticks published on Redis, as the market workers do.
    admin = ts.server_url()
    url = ts.create_database(admin)
    redis_url, prefix = ts.redis_url(), ts.redis_prefix()
    port = free_port()
    try:
        upgrade_to_head(url)
        # Every subscriber comes from 127.0.0.1: the per-address limits are raised to let them in.
        env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": redis_url, "REDIS_PREFIX": prefix,
               "LOG_LEVEL": "WARNING", "PORT": str(port), "WS_MAX_CONNECTIONS_PER_IP": str(2 * n),
               "RATE_LIMIT_PER_MINUTE": str(100 * n)}  # fmt: skip
        subprocess.run([sys.executable, "-m", "gql_api.cli", "seed-demo"], cwd=ROOT, env=env, check=True)
        server = subprocess.Popen([sys.executable, "-m", "gql_api.cli", "serve"], cwd=ROOT, env=env)
        wait_port(port)

        async def publish() -> None:
            from decimal import Decimal

            from redis.asyncio import Redis

            from domain.adapters.messaging.redis_bus import RedisEventBus
            from domain.services import utcnow

            bus = RedisEventBus(Redis.from_url(redis_url), prefix)
            price = 100000
            while True:
                price += 1
                await bus.publish_tick("BTCUSDT", Decimal(price), utcnow())
                await asyncio.sleep(0.1)

        results["Criptoren (Redis pub/sub)"] = asyncio.run(
            measure(f"ws://127.0.0.1:{port}/graphql", QUERY_OURS, server.pid, n, seconds, publish)
        )
    finally:
        server.terminate()
        server.wait()
        ts.drop_database(admin, url)

    print(f"\n(c) subscription fan-out: {n} subscribers x 10 ticks/s, {seconds:.0f} s, one server process")
    print(f"{'server':<30} {'msgs/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'CPU µs/msg':>11}")
    for name, r in results.items():
        print(f"{name:<30} {r['rate']:>8.0f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['cpu_us_per_msg']:>11.1f}")


if __name__ == "__main__":
    main()
