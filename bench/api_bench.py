"""The API's main read (run by hand): `python bench/api_bench.py [--positions 60] [--requests 400]`.

SPEC §9: `positions(first: 50)` with strategy, symbol and trades, over HTTP on PostgreSQL, at least
60% of the rate of bare Strawberry resolving the same shape from memory in-process. In one run:

1. a database of its own: the seeded symbols, two strategies with capital, `--positions` positions
   bought (a third of them sold) through the services, so that each has one or two trades;
2. Criptoren served by uvicorn in a process of its own (`gql_api.app:create_app`), logged in as the
   client over HTTP; the page is asked for `--requests` times at concurrency 1, then at concurrency
   20; the server's CPU time is read from /proc/<pid>/stat (and its workers') before and after each
   run: pages per server CPU-second, and the latency p50/p99 seen by the client;
3. the peer, bare Strawberry (bench/bare_positions.py), filled with the very page Criptoren
   answered (same fields, same Decimal values, same number of items): in-process (`schema.execute`
   in a loop, in a fresh interpreter of its own, its CPU time) — the baseline of the ratio — and,
   for reference, served by uvicorn the same way as Criptoren;
4. Criptoren again with `--workers 2` (uvicorn's worker processes; CPU summed over them).

The figures go to docs/benchmarks.md by hand. Uses DATABASE_URL / REDIS_URL when set, else the
local services on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bare_positions import QUERY  # noqa: E402

FIRST = 50
LOGIN = """mutation($k: String!, $s: String!) { login(apiKey: $k, apiSecret: $s) { accessToken } }"""


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """The process and its descendants (uvicorn's workers)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").iterdir():
            children = (task / "children").read_text().split()
            todo.extend(int(c) for c in children)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"port {port} did not open")


@dataclass
class Run:
    requests: int
    concurrency: int
    cpu: float  # server CPU seconds
    wall: float
    latencies: list[float]

    @property
    def per_cpu_second(self) -> float:
        return self.requests / self.cpu if self.cpu else float("nan")

    @property
    def cpu_ms(self) -> float:
        return self.cpu / self.requests * 1000

    def p(self, q: float) -> float:
        lat = sorted(self.latencies)
        return lat[min(len(lat) - 1, max(0, int(len(lat) * q) - 1))] * 1000 if lat else float("nan")


# ---------------------------------------------------------------- the data


async def seed(url: str, redis_url: str, prefix: str, n: int) -> tuple[str, str]:
    """Strategies and `n` positions (a third sold) for client 1; returns its API key and secret."""
    from domain import commands as cmds
    from domain import services
    from domain.adapters.bootstrap import bootstrap, seed
    from domain.adapters.config import Settings
    from domain.channel import Channel
    from domain.services import auth

    app = bootstrap(Settings(database_url=url, redis_url=redis_url, redis_prefix=prefix, exchange="paper"))
    try:
        await seed.seed_demo(app.uow, app.exchange)
        strategies = []
        for symbol, base, top in (("ETHUSDT", "2400", "2800"), ("BTCUSDT", "90000", "120000")):
            s = await services.create_strategy(
                cmds.CreateStrategy(client_id=1, symbol=symbol, name=f"{symbol} bench", channel=Channel(
                    Decimal(base), Decimal(top), capital_percentage=Decimal("1"))),
                app.uow(), app.exchange,
            )  # fmt: skip
            assert s.id is not None
            await services.allocate_capital(cmds.AllocateCapital(s.id, Decimal("1000000")), app.uow(), app.exchange)
            strategies.append(s.id)
        app.price_book.set("ETHUSDT", Decimal("2450"))
        app.price_book.set("BTCUSDT", Decimal("100000"))
        for i in range(n):
            position = await services.buy(
                cmds.Buy(strategies[i % 2], quote_amount=Decimal("50")), app.uow(), app.exchange, app.prices
            )
            if i % 3 == 0:
                assert position.id is not None
                await services.sell(cmds.Sell(position.id, accept_loss=True), app.uow(), app.exchange, app.prices)
        credentials = await auth.issue_credentials(cmds.IssueCredentials(1), app.uow(), datetime.now(UTC))
        return credentials.api_key, credentials.api_secret
    finally:
        await app.close()


# ---------------------------------------------------------------- HTTP load


async def post(session: aiohttp.ClientSession, url: str, query: str, variables: dict[str, Any],
               token: str | None = None) -> dict[str, Any]:  # fmt: skip
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with session.post(url, json={"query": query, "variables": variables}, headers=headers) as response:
        body: dict[str, Any] = await response.json()
        if response.status != 200 or body.get("errors"):
            raise RuntimeError(f"{response.status}: {body}")
        return body


async def load(url: str, token: str | None, pids: list[int], requests: int, concurrency: int) -> Run:
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(min(50, requests)):  # warm-up, not counted
            await post(session, url, QUERY, {"first": FIRST}, token)
        queue = iter(range(requests))

        async def client() -> None:
            for _ in queue:
                t0 = time.perf_counter()
                await post(session, url, QUERY, {"first": FIRST}, token)
                latencies.append(time.perf_counter() - t0)

        cpu0, wall0 = cpu_seconds(pids), time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        wall, cpu = time.perf_counter() - wall0, cpu_seconds(pids) - cpu0
    return Run(requests, concurrency, cpu, wall, latencies)


def serve(target: list[str], port: int, env: dict[str, str], workers: int = 1) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "uvicorn", *target, "--host", "127.0.0.1", "--port", str(port),
               "--log-level", "warning", "--no-access-log"]  # fmt: skip
    if workers > 1:
        command += ["--workers", str(workers)]
    server = subprocess.Popen(command, cwd=ROOT, env=env)
    wait_port(port)
    return server


def stop(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    try:
        server.wait(20)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


async def measure_server(port: int, server: subprocess.Popen[bytes], token: str | None, requests: int,
                         concurrencies: tuple[int, ...]) -> list[Run]:  # fmt: skip
    url = f"http://127.0.0.1:{port}/graphql"
    await asyncio.sleep(1.0)  # uvicorn's workers up
    pids = process_tree(server.pid)
    return [await load(url, token, pids, requests, c) for c in concurrencies]


async def login(port: int, key: str, secret: str) -> str:
    async with aiohttp.ClientSession() as session:
        body = await post(session, f"http://127.0.0.1:{port}/graphql", LOGIN, {"k": key, "s": secret})
        return str(body["data"]["login"]["accessToken"])


async def page(port: int, token: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        body = await post(session, f"http://127.0.0.1:{port}/graphql", QUERY, {"first": FIRST}, token)
        return dict(body["data"]["positions"])


# ---------------------------------------------------------------- the peer, in-process


def _normal(value: Any) -> Any:
    """A page with its numbers as Decimals and its times as datetimes: the same page written by
    either side (Strawberry's Decimal scalar writes "1.50E+3" where ours writes "1500")."""
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    if isinstance(value, str):
        for parse in (Decimal, datetime.fromisoformat):
            try:
                return parse(value)  # type: ignore[operator]
            except (ArithmeticError, ValueError):
                pass
    return value


BARE_LOOP = """
import asyncio, json, sys, time
sys.path.insert(0, {root!r})
from bench import bare_positions
from bench.bare_positions import QUERY

bare_positions.load(json.load(open({data!r})))

async def run():
    for _ in range(50):
        result = await bare_positions.schema.execute(QUERY, variable_values={{"first": {first}}})
        assert not result.errors, result.errors
    latencies = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range({requests}):
        t0 = time.perf_counter()
        await bare_positions.schema.execute(QUERY, variable_values={{"first": {first}}})
        latencies.append(time.perf_counter() - t0)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    result = await bare_positions.schema.execute(QUERY, variable_values={{"first": {first}}})
    print(json.dumps({{"cpu": cpu, "wall": wall, "latencies": latencies, "page": json.loads(json.dumps(
        result.data["positions"], default=str))}}))

asyncio.run(run())
"""


def bare_in_process(data_file: str, data: dict[str, Any], requests: int) -> Run:
    """The peer in a fresh interpreter of its own (this one's heap, grown by the set-up, would make
    its garbage collections, and so the baseline, slower): `schema.execute` in a loop."""
    code = BARE_LOOP.format(root=str(ROOT), data=data_file, first=FIRST, requests=requests)
    out = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
    if _normal(out["page"]) != _normal(data):
        raise RuntimeError("the bare peer does not answer the same page")
    return Run(requests, 1, out["cpu"], out["wall"], out["latencies"])


def merged(runs: list[Run]) -> Run:
    """Several runs of one configuration as one: their requests, CPU time, wall time and latencies."""
    return Run(
        sum(r.requests for r in runs), runs[0].concurrency, sum(r.cpu for r in runs), sum(r.wall for r in runs),
        [x for r in runs for x in r.latencies],
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--positions", type=int, default=60)
    parser.add_argument("--requests", type=int, default=300, help="requests per run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of Criptoren and of the bare peer, alternating")
    parser.add_argument("--no-workers", action="store_true", help="skip the --workers 2 run")
    args = parser.parse_args()

    from domain.adapters.persistence.migrate import upgrade_to_head
    from tests import services as ts

    admin = ts.server_url()
    url = ts.create_database(admin)
    redis_url, prefix = ts.redis_url(), ts.redis_prefix()
    env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": redis_url, "REDIS_PREFIX": prefix, "EXCHANGE": "paper",
           "LOG_LEVEL": "WARNING", "RATE_LIMIT_PER_MINUTE": "100000000", "ACCESS_TOKEN_MINUTES": "600"}  # fmt: skip
    results: dict[str, list[Run]] = {}
    rounds: list[tuple[Run, Run]] = []  # (Criptoren at concurrency 1, bare in-process), run after run
    load_avg = os.getloadavg()
    data_file = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False).name
    try:
        upgrade_to_head(url)
        key, secret = asyncio.run(seed(url, redis_url, prefix, args.positions))
        target = ["gql_api.app:create_app", "--factory"]

        port = free_port()
        server = serve(target, port, env)
        try:
            token = asyncio.run(login(port, key, secret))
            data = asyncio.run(page(port, token))
            Path(data_file).write_text(json.dumps(data))
            for _ in range(args.rounds):
                bare = bare_in_process(data_file, data, args.requests)
                [ours] = asyncio.run(measure_server(port, server, token, args.requests, (1,)))
                rounds.append((ours, bare))
            results["Criptoren, HTTP, 1 process"] = [
                merged([r[0] for r in rounds]),
                *asyncio.run(measure_server(port, server, token, args.requests, (20,))),
            ]
            results["bare Strawberry, in-process"] = [merged([r[1] for r in rounds])]
        finally:
            stop(server)
        nodes = data["nodes"]
        print(f"page: {len(nodes)} positions, {sum(len(n['trades']) for n in nodes)} trades, "
              f"{len({n['strategy']['id'] for n in nodes})} strategies, "
              f"{len({n['symbol']['symbol'] for n in nodes})} symbols")  # fmt: skip

        port = free_port()
        server = serve(["bench.bare_positions:app"], port, {**env, "BARE_POSITIONS_DATA": data_file})
        try:
            results["bare Strawberry, HTTP, 1 process"] = asyncio.run(
                measure_server(port, server, None, args.requests, (1, 20))
            )
        finally:
            stop(server)

        if not args.no_workers:
            port = free_port()
            server = serve(target, port, env, workers=2)
            try:
                results["Criptoren, HTTP, --workers 2"] = asyncio.run(
                    measure_server(port, server, token, args.requests, (1, 20))
                )
            finally:
                stop(server)
    finally:
        os.unlink(data_file)
        ts.drop_database(admin, url)

    print(f"\npositions(first: {FIRST}) with strategy, symbol and trades; {args.requests} requests per run, "
          f"{args.rounds} alternating rounds of Criptoren (concurrency 1) and the bare peer (in-process); "
          f"load average before: {load_avg[0]:.1f}, after: {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"{'server':<34} {'conc.':>5} {'pages/CPU-s':>12} {'CPU ms/page':>12} {'pages/s':>8} "
          f"{'p50 ms':>8} {'p99 ms':>8}")  # fmt: skip
    for name, runs in results.items():
        for r in runs:
            print(f"{name:<34} {r.concurrency:>5} {r.per_cpu_second:>12.1f} {r.cpu_ms:>12.2f} "
                  f"{r.requests / r.wall:>8.1f} {r.p(0.5):>8.2f} {r.p(0.99):>8.2f}")  # fmt: skip
    ratios = [ours.per_cpu_second / bare.per_cpu_second for ours, bare in rounds]
    each = [f"{o.per_cpu_second:.1f} / {b.per_cpu_second:.1f} = {o.per_cpu_second / b.per_cpu_second:.2f}"
            for o, b in rounds]  # fmt: skip
    print("\nCriptoren over HTTP (server CPU) / bare Strawberry in-process, pages per CPU-second, round by round: "
          + ", ".join(each))  # fmt: skip
    base = results["bare Strawberry, in-process"][0].per_cpu_second
    print(
        f"ratio, all rounds together: {results['Criptoren, HTTP, 1 process'][0].per_cpu_second / base:.2f} "
        f"(median of the rounds {statistics.median(ratios):.2f}); at concurrency 20: "
        f"{results['Criptoren, HTTP, 1 process'][1].per_cpu_second / base:.2f}"
    )


if __name__ == "__main__":
    main()
