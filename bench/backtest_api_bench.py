"""Backtests through the API (run by hand): `python bench/backtest_api_bench.py [candles]`.

A fresh database holds `candles` (600,000) 1-minute BTCUSDT candles; `criptoren serve` runs in its
own process. Measured, for one `backtest` query over all of them: its time, and the slowest answer
of /healthz polled every 20 ms meanwhile (the event loop's stall); then four backtests of four
clients at once: the time until all answered, how many were BUSY, and the peak memory (RSS) of the
server process and its children (the backtest pool), sampled every 50 ms from /proc.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUERY = """query($i: BacktestInput!) { backtest(input: $i) { summary { candles entries exits netProfit } } }"""
INPUT = {"symbol": "BTCUSDT", "interval": "1m", "basePrice": "98000", "topPrice": "112000", "maxTrades": 10}
SECRET = "bench-secret-key-0123456789-0123456789-0123456789"


def rss_tree_mb(pid: int) -> float:
    """RSS of `pid` and its descendants, in MB."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, pp in parents.items() if pp == parent and p not in tree]
        tree.update(children)
        frontier += children
    total = 0
    for p in tree:
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        total += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return total / 1024


def wait_port(port: int, timeout: float = 60) -> None:
    import socket

    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"port {port} did not open")


async def seed_candles(url: str, count: int) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        symbol_id = await conn.fetchval("SELECT id FROM symbols WHERE symbol = 'BTCUSDT'")
        # A slow swing across the channel with some noise: a few dozen round trips over the range.
        await conn.execute(
            """
            INSERT INTO historical_prices (symbol_id, interval, open_time, close_time, open, high, low, close, volume)
            SELECT $1, '1m', t, t + interval '59.999 seconds', p, p + 40, p - 40, p + 10, 1
            FROM (SELECT timestamptz '2024-01-01' + i * interval '1 minute' AS t,
                         round((105000 + 6500 * sin(i / 3000.0) + 300 * sin(i / 37.0))::numeric, 2) AS p
                  FROM generate_series(0, $2 - 1) AS i) c
            ON CONFLICT DO NOTHING
            """,
            symbol_id,
            count,
        )
    finally:
        await conn.close()


async def measure(port: int, pid: int) -> dict[str, float]:
    from domain.adapters.config import Settings
    from gql_api.auth import access_tokens

    tokens = access_tokens(Settings(criptoren_secret_key=SECRET))
    base = f"http://127.0.0.1:{port}"
    results: dict[str, float] = {}
    async with httpx.AsyncClient(base_url=base, timeout=600) as http:

        async def backtest(client: int) -> dict:
            headers = {"Authorization": f"Bearer {tokens.issue(client)[0]}"}
            response = await http.post("/graphql", json={"query": QUERY, "variables": {"i": INPUT}}, headers=headers)
            return response.json()

        # Warm up (the pool's processes start at the first backtest).
        warm = await backtest(1)
        assert "errors" not in warm, warm
        results["candles"] = warm["data"]["backtest"]["summary"]["candles"]

        # One backtest, /healthz polled meanwhile.
        done = asyncio.Event()
        stalls: list[float] = []

        async def poll() -> None:
            async with httpx.AsyncClient(base_url=base, timeout=60) as probe:
                while not done.is_set():
                    start = time.perf_counter()
                    await probe.get("/healthz")
                    stalls.append(time.perf_counter() - start)
                    await asyncio.sleep(0.02)

        poller = asyncio.create_task(poll())
        start = time.perf_counter()
        body = await backtest(1)
        results["one_s"] = time.perf_counter() - start
        done.set()
        await poller
        assert "errors" not in body, body
        results["healthz_max_ms"] = max(stalls) * 1000
        results["healthz_p50_ms"] = sorted(stalls)[len(stalls) // 2] * 1000

        # Four clients at once; peak memory of the server's process tree.
        peak = [rss_tree_mb(pid)]
        results["rss_idle_mb"] = peak[0]
        sampling = asyncio.Event()

        async def sample() -> None:
            while not sampling.is_set():
                peak.append(rss_tree_mb(pid))
                await asyncio.sleep(0.05)

        sampler = asyncio.create_task(sample())
        start = time.perf_counter()
        bodies = await asyncio.gather(*(backtest(client) for client in (1, 2, 3, 4)))
        results["four_s"] = time.perf_counter() - start
        sampling.set()
        await sampler
        codes = [b["errors"][0]["extensions"]["code"] if b.get("errors") else "ok" for b in bodies]
        results["four_ok"] = codes.count("ok")
        results["four_busy"] = codes.count("BUSY")
        results["rss_peak_mb"] = max(peak)
    return results


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 600_000
    from domain.adapters.persistence.migrate import upgrade_to_head
    from tests import services as ts
    from tests.e2e.servers import free_port

    admin = ts.server_url()
    url = ts.create_database(admin)
    port = free_port()
    server = None
    try:
        upgrade_to_head(url)
        env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": ts.redis_url(), "REDIS_PREFIX": ts.redis_prefix(),
               "LOG_LEVEL": "WARNING", "PORT": str(port), "CRIPTOREN_SECRET_KEY": SECRET,
               "RATE_LIMIT_PER_MINUTE": "100000", "BACKTEST_WAIT_SECONDS": "120"}  # fmt: skip
        subprocess.run([sys.executable, "-m", "gql_api.cli", "seed-demo"], cwd=ROOT, env=env, check=True,
                       capture_output=True)  # fmt: skip
        asyncio.run(seed_candles(url, count))
        server = subprocess.Popen([sys.executable, "-m", "gql_api.cli", "serve"], cwd=ROOT, env=env)
        wait_port(port)
        r = asyncio.run(measure(port, server.pid))
    finally:
        if server is not None:
            server.terminate()
            server.wait()
        ts.drop_database(admin, url)
    print(f"\nbacktest query over {int(r['candles']):,} stored 1m candles, `criptoren serve` in its own process")
    print(f"one backtest                 {r['one_s']:.2f} s")
    print(f"/healthz meanwhile           p50 {r['healthz_p50_ms']:.1f} ms, max {r['healthz_max_ms']:.0f} ms")
    print(f"four clients at once         {r['four_s']:.2f} s until all answered: {int(r['four_ok'])} ran, "
          f"{int(r['four_busy'])} BUSY")  # fmt: skip
    print(f"server memory (RSS, + pool)  {r['rss_idle_mb']:.0f} MB before, peak {r['rss_peak_mb']:.0f} MB")


if __name__ == "__main__":
    main()
