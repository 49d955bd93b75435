"""Scale benchmark (run by hand): `python bench/scale_bench.py [--symbols 50] [--strategies 200]
[--rate 2000] [--seconds 30]`.

SPEC §9 "many symbols": N symbols × M channel strategies each, consumed by two `criptoren worker`
processes fed by the replay market at a combined `--rate` ticks/s; then a third worker joins.
It prints:
- ticks processed per second per worker (its `criptoren_ticks` counter on its METRICS_PORT), next
  to the rate the replay offers (a worker that cannot keep up falls behind: the replay waits for it);
- engine CPU per tick: the process's CPU time (/proc/<pid>/stat, everything the worker does: the
  engine, its decisions' transactions, storing candles, publishing ticks, checkpoints) over the
  ticks it processed, and the engine's own time per tick (`criptoren_engine_seconds`);
- tick-to-order p50/p99 from the workers' `criptoren_tick_to_order_seconds` histograms (bucket
  bounds: 1, 2.5, 5, 10, 25 ms, …) and how many decisions were taken;
- how the third worker's joining rebalances: seconds from its start, and from its first heartbeat,
  until every worker holds at most its fair share (ceil(N / 3)).

The replayed candles are a random walk around 100 with their open at the previous close: 3 ticks
and one closed candle per candle period. A live market closes a candle once a minute; a replay at
this rate closes one every 3 ticks, and each is stored (a transaction, with the 1h/4h/1d candles it
completes), so the CPU per tick here is pessimistic.

Uses DATABASE_URL / REDIS_URL when set, else the local services on 127.0.0.1; a database and a
Redis key prefix of its own, dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import services as test_services  # noqa: E402

TICKS_PER_CANDLE = 3  # low, high, close (the open is the previous close)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def write_candles(path: Path, candles: int, rng: random.Random) -> None:
    start = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp() * 1000)
    cents = 100_00
    rows = []
    for i in range(candles):
        o = cents
        c = min(112_00, max(88_00, o + rng.randint(-60, 60)))
        h = max(o, c) + rng.randint(1, 30)
        low = min(o, c) - rng.randint(1, 30)
        rows.append(f"{start + i * 60_000},{o / 100:.2f},{h / 100:.2f},{low / 100:.2f},{c / 100:.2f},1")
        cents = c
    path.write_text("open_time_ms,open,high,low,close,volume\n" + "\n".join(rows) + "\n")


async def populate(url: str, redis_url: str, prefix: str, names: list[str], per_symbol: int) -> None:
    from domain import commands as cmds
    from domain import services
    from domain.adapters.bootstrap import bootstrap
    from domain.adapters.config import Settings
    from domain.channel import Channel
    from domain.services import symbols

    app = bootstrap(Settings(database_url=url, redis_url=redis_url, redis_prefix=prefix))
    rng = random.Random(12)
    client = await services.create_client(cmds.CreateClient("scale bench"), app.uow())
    assert client.id is not None
    gate = asyncio.Semaphore(8)

    async def one(name: str, i: int) -> None:
        base = Decimal(rng.randint(90_00, 104_00)) / 100
        channel = Channel(base, (base * Decimal("1.12")).quantize(Decimal("0.01")), timeframe="1d")
        async with gate:
            s = await services.create_strategy(cmds.CreateStrategy(client.id, name, f"{name} {i}", channel),
                                               app.uow(), app.exchange)  # fmt: skip
            assert s.id is not None
            await services.allocate_capital(cmds.AllocateCapital(s.id, Decimal(1000)), app.uow(), app.exchange)

    started = time.monotonic()
    for name in names:
        await symbols.add_symbol(cmds.AddSymbol(name, name.removesuffix("USDT"), "USDT", Decimal("0.01"),
                                                Decimal("0.001"), Decimal(5)), app.uow())  # fmt: skip
        await asyncio.gather(*(one(name, i) for i in range(per_symbol)))
    print(f"created {len(names)} symbols × {per_symbol} strategies in {time.monotonic() - started:.0f} s", flush=True)
    await app.close()


def start_worker(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "gql_api.cli", "worker"], cwd=ROOT, env={**env, "METRICS_PORT": str(port)}
    )


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def scrape(port: int) -> dict[str, float]:
    """Sums over symbols of the counters and histogram series this bench reads."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out: Counter[str] = Counter()
    for line in text.splitlines():
        m = re.match(r"^(criptoren_\w+?)(?:\{(.*)\})? ([0-9.e+-]+)$", line)
        if not m:
            continue
        name, labels, value = m.group(1), m.group(2) or "", float(m.group(3))
        le = re.search(r'le="([^"]+)"', labels)
        out[f"{name}@{le.group(1)}" if le else name] += value
    return dict(out)


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items()}


def quantile(d: dict[str, float], q: float) -> str:
    buckets = sorted(
        (float(k.split("@")[1]), v) for k, v in d.items() if k.startswith("criptoren_tick_to_order_seconds_bucket@")
    )
    total = d.get("criptoren_tick_to_order_seconds_count", 0.0)
    if not total:
        return "–"
    for bound, count in buckets:
        if count >= q * total:
            return "> 1 s" if math.isinf(bound) else f"≤ {bound * 1000:g} ms"
    return "?"


async def holders(redis_url: str, prefix: str, names: list[str]) -> Counter[str]:
    from redis.asyncio import Redis

    redis = Redis.from_url(redis_url)
    try:
        values = await redis.mget([f"{prefix}:lease:{n}" for n in names])
    finally:
        await redis.aclose()
    return Counter(v.decode() if v else "" for v in values)


async def live_workers(redis_url: str, prefix: str) -> int:
    from redis.asyncio import Redis

    redis = Redis.from_url(redis_url)
    try:
        return len([k async for k in redis.scan_iter(match=f"{prefix}:workers:*")])
    finally:
        await redis.aclose()


async def wait_spread(redis_url: str, prefix: str, names: list[str], workers: int, within: float) -> float:
    """Seconds until every symbol is held, by `workers` workers, none above its fair share."""
    share = math.ceil(len(names) / workers)
    started = time.monotonic()
    while time.monotonic() - started < within:
        held = await holders(redis_url, prefix, names)
        if "" not in held and len(held) == workers and max(held.values()) <= share:
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    # Overloaded workers fence themselves (their lease renewals time out) and symbols go free: say so
    # and measure anyway.
    counts = sorted((n for h, n in held.items() if h), reverse=True)
    print(f"  NOT spread over {workers} workers within {within:g} s: held {counts} ({held.get('', 0)} free)")
    return time.monotonic() - started


Workers = list[tuple[int, subprocess.Popen[bytes]]]  # (metrics port, process)
Snapshot = dict[int, tuple[float, dict[str, float]]]  # port -> (CPU seconds, metrics)


def report(label: str, workers: Workers, before: Snapshot, seconds: float, offered: float) -> None:
    print(f"\n{label}: {seconds:.0f} s, the replay offering {offered:,.0f} ticks/s in all")
    total_ticks = 0.0
    merged: Counter[str] = Counter()
    for port, proc in workers:
        cpu0, m0 = before[port]
        d = delta(scrape(port), m0)
        cpu = cpu_seconds(proc.pid) - cpu0
        ticks = d.get("criptoren_ticks_total", 0.0)
        total_ticks += ticks
        merged.update(d)
        engine = d.get("criptoren_engine_seconds_sum", 0.0)
        print(
            f"  worker pid {proc.pid}: {ticks / seconds:,.0f} ticks/s, CPU {cpu / seconds * 100:.0f}% of a core, "
            f"{cpu / max(ticks, 1) * 1e6:,.0f} µs CPU/tick (engine {engine / max(ticks, 1) * 1e6:,.0f} µs/tick wall), "
            f"{d.get('criptoren_decisions_total', 0):,.0f} decisions"
        )
    print(f"  all workers: {total_ticks / seconds:,.0f} ticks/s processed of {offered:,.0f} offered")
    print(
        f"  tick-to-order: p50 {quantile(merged, 0.5)}, p99 {quantile(merged, 0.99)} "
        f"over {merged.get('criptoren_tick_to_order_seconds_count', 0):,.0f} decisions"
    )


def snapshot(workers: Workers) -> Snapshot:
    return {port: (cpu_seconds(proc.pid), scrape(port)) for port, proc in workers}


async def wait_metrics(port: int, within: float = 120) -> None:
    started = time.monotonic()
    while time.monotonic() - started < within:
        try:
            scrape(port)
            return
        except OSError:
            await asyncio.sleep(0.5)
    raise SystemExit(f"worker metrics on {port} never answered")


async def run(args: argparse.Namespace, url: str, redis_url: str, prefix: str, tmp: Path) -> None:
    from tests.e2e.servers import free_port

    names = [f"S{i:03d}USDT" for i in range(args.symbols)]
    await populate(url, redis_url, prefix, names, args.strategies)
    per_symbol = args.rate / args.symbols
    speed = 60 * per_symbol / TICKS_PER_CANDLE
    duration = 2 * args.seconds + 120  # warm-up, two windows, the join
    rng = random.Random(5)
    files = []
    for name in names:
        path = tmp / f"{name}.csv"
        write_candles(path, int(duration * per_symbol / TICKS_PER_CANDLE) + 100, rng)
        files.append(f"{name}={path}")
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": prefix,
        "LOG_LEVEL": "WARNING",
        "MARKET_SOURCE": "replay",
        "REPLAY_FILE": ",".join(files),
        "REPLAY_SPEED": f"{speed:g}",
        "LEASE_SECONDS": str(args.lease),
    }
    print(f"replay speed {speed:g}× ({per_symbol:g} ticks/s per symbol), lease {args.lease:g} s", flush=True)
    workers: list[tuple[int, subprocess.Popen[bytes]]] = []
    try:
        for _ in range(2):
            port = free_port()
            workers.append((port, start_worker(env, port)))
        for port, _ in workers:
            await wait_metrics(port)
        print(f"two workers: {await wait_spread(redis_url, prefix, names, 2, within=120):.1f} s to an even spread")
        await asyncio.sleep(5)  # the consumers' first reloads
        before = snapshot(workers)
        await asyncio.sleep(args.seconds)
        report("Two workers", workers, before, args.seconds, args.rate)

        port = free_port()
        joined_at = time.monotonic()
        third = start_worker(env, port)
        while True:
            if await live_workers(redis_url, prefix) >= 3:
                break
            await asyncio.sleep(0.05)
        heartbeat_at = time.monotonic()
        await wait_spread(redis_url, prefix, names, 3, within=120)
        done = time.monotonic()
        print(
            f"\nThird worker: first heartbeat {heartbeat_at - joined_at:.1f} s after its start (Python start-up, "
            f"bootstrap); all three at most at their share (ceil({args.symbols}/3) = {math.ceil(args.symbols / 3)}) "
            f"{done - heartbeat_at:.1f} s after that ({done - joined_at:.1f} s from its start; lease {args.lease:g} s)"
        )
        workers.append((port, third))
        await wait_metrics(port)
        await asyncio.sleep(3)
        before = snapshot(workers)
        await asyncio.sleep(args.seconds)
        report("Three workers", workers, before, args.seconds, args.rate)
    finally:
        for _, proc in workers:
            proc.terminate()
        for _, proc in workers:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--strategies", type=int, default=200, help="per symbol")
    parser.add_argument("--rate", type=float, default=2000.0, help="combined ticks/s offered by the replay")
    parser.add_argument("--seconds", type=float, default=30.0, help="each measurement window")
    parser.add_argument("--lease", type=float, default=5.0, help="LEASE_SECONDS")
    args = parser.parse_args()
    from domain.adapters.persistence.migrate import upgrade_to_head

    print(f"load average before: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)", flush=True)
    admin = test_services.server_url()
    url = test_services.create_database(admin)
    redis_url, prefix = test_services.redis_url(), test_services.redis_prefix()
    try:
        upgrade_to_head(url)
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(run(args, url, redis_url, prefix, Path(tmp)))
    finally:
        test_services.drop_database(admin, url)

        async def clean() -> None:
            from redis.asyncio import Redis

            redis = Redis.from_url(redis_url)
            await test_services.delete_keys(redis, prefix)
            await redis.aclose()

        asyncio.run(clean())
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
