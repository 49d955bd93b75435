"""`criptoren up` as a newcomer runs it (issue 14, items 2 and 6; issue 17, item 8).

A real `criptoren up` process on an empty database of the test's own (the test's PostgreSQL and
Redis, a temporary data directory, the synthetic market):

- its start-up output ends with the summary block — dashboard and GraphiQL URLs, the demo client's
  API key and secret, where the data lives — after the worker's start-up lines, with none of
  Alembic's, uvicorn's or arq's chatter (`--verbose` shows it; a second start tells how to get new
  credentials instead of showing them);
- the printed credentials log in;
- a worker killed with SIGKILL is started again, and /readyz recovers;
- Ctrl+C (SIGINT to the process group, as a terminal sends it) stops the API and the worker with
  one line and no traceback.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import httpx
import psutil

from tests import services
from tests.e2e import servers

LOGIN = "mutation($k: String!, $s: String!) { login(apiKey: $k, apiSecret: $s) { accessToken } }"
RULE = "─" * 72
STOPPED = "Criptoren stopped (the API and the worker)."


class Up:
    """`criptoren up` in a session of its own (so that SIGINT can go to its whole process group,
    worker included, as a terminal's Ctrl+C does), its output (stdout and stderr) read line by line."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.port = port
        self.lines: list[str] = []

    @classmethod
    async def start(cls, database_url: str, data_dir: Path, *args: str) -> Up:
        port = servers.free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LOG_", "CRIPTOREN_", "REPLAY_"))}
        env.update(
            DATABASE_URL=database_url,
            REDIS_URL=services.redis_url(),
            REDIS_PREFIX=services.redis_prefix(),
            CRIPTOREN_DATA_DIR=str(data_dir),
            MARKET_SOURCE="synthetic",
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gql_api.console", "up", "--port", str(port), *args,
            cwd=servers.ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        return cls(process, port)

    async def read_until(self, predicate: object, timeout: float) -> str:
        """Read lines until one satisfies `predicate` (a substring, or a function of the line)."""
        deadline = time.monotonic() + timeout
        assert self.process.stdout is not None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("waited in vain; output so far:\n" + "\n".join(self.lines[-60:]))
            raw = await asyncio.wait_for(self.process.stdout.readline(), remaining)
            if not raw:
                raise AssertionError("the output ended; it was:\n" + "\n".join(self.lines[-60:]))
            line = raw.decode().rstrip("\n")
            self.lines.append(line)
            if predicate(line) if callable(predicate) else str(predicate) in line:
                return line

    async def summary(self) -> list[str]:
        """The summary block (the lines between its two rules)."""
        await self.read_until("Criptoren is running.", timeout=180)
        start = len(self.lines) - 1
        await self.read_until(lambda line: line == RULE, timeout=10)
        return self.lines[start:-1]

    def worker_pids(self) -> list[int]:
        children = psutil.Process(self.process.pid).children()
        return [c.pid for c in children if "workers" in c.cmdline()]

    async def ctrl_c(self) -> tuple[int, list[str]]:
        """SIGINT to the process group; (exit status, the lines printed after it)."""
        before = len(self.lines)
        os.killpg(self.process.pid, signal.SIGINT)
        assert self.process.stdout is not None
        rest = await asyncio.wait_for(self.process.stdout.read(), 60)
        self.lines += rest.decode().splitlines()
        return await asyncio.wait_for(self.process.wait(), 30), self.lines[before:]

    async def kill(self) -> None:
        if self.process.returncode is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            await self.process.wait()


def value(block: list[str], label: str) -> str:
    line = next(line for line in block if line.strip().startswith(label))
    return line.split()[-1]


async def wait_ready(http: httpx.AsyncClient, timeout: float, not_by: str | None = None) -> str:
    """Until /readyz answers 200 with BTCUSDT reported by a worker other than `not_by`; that worker's id."""
    deadline = time.monotonic() + timeout
    while True:
        response = await http.get("/readyz")
        worker = response.json()["checks"]["market"].get("symbols", {}).get("BTCUSDT", {}).get("worker")
        if response.status_code == 200 and worker is not None and worker != not_by:
            return str(worker)
        assert time.monotonic() < deadline, response.text
        await asyncio.sleep(0.3)


async def test_up_ends_with_a_summary_restarts_its_worker_and_stops_on_ctrl_c(
    empty_database: tuple[str, str], tmp_path: Path
) -> None:
    _, database_url = empty_database
    up = await Up.start(database_url, tmp_path / "data")
    try:
        block = await up.summary()
        before = "\n".join(up.lines[: -len(block) - 2])
        for chatter in ("alembic", "Running upgrade", "Uvicorn running", "Started server process", "arq.worker"):
            assert chatter not in before, f"{chatter!r} in the start-up output:\n{before}"
        assert "Consuming BTCUSDT from synthetic" in before  # the worker had started: the block comes last
        base = f"http://127.0.0.1:{up.port}"
        assert value(block, "Dashboard") == f"{base}/"
        assert value(block, "GraphiQL") == f"{base}/graphql"
        assert any("TradeBot XYZ" in line for line in block)
        api_key, api_secret = value(block, "API key"), value(block, "API secret")
        assert api_key.startswith("ck_") and api_secret.startswith("cs_")
        assert value(block, "Redis") == services.redis_url()
        assert value(block, "PostgreSQL").endswith(database_url.rsplit("/", 1)[-1])

        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            login = await http.post("/graphql", json={"query": LOGIN, "variables": {"k": api_key, "s": api_secret}})
            assert login.json()["data"]["login"]["accessToken"]

            # A worker that dies is started again.
            reporting = await wait_ready(http, timeout=60)
            [worker] = up.worker_pids()
            os.kill(worker, signal.SIGKILL)
            await up.read_until("The worker exited (status -9); starting it again", timeout=30)
            await up.read_until("Worker started again", timeout=30)
            await up.read_until("Consuming BTCUSDT from synthetic", timeout=60)
            [restarted] = up.worker_pids()
            assert restarted != worker
            await wait_ready(http, timeout=60, not_by=reporting)

        status, after = await up.ctrl_c()
        assert status == 128 + signal.SIGINT
        assert after == [STOPPED], after
        assert not any("Traceback" in line or "KeyboardInterrupt" in line for line in up.lines), up.lines
        assert not psutil.pid_exists(restarted) or psutil.Process(restarted).status() == psutil.STATUS_ZOMBIE
    finally:
        await up.kill()

    # Started again: nothing new to show but how to get new credentials; --verbose shows the chatter.
    again = await Up.start(database_url, tmp_path / "data", "--verbose")
    try:
        block = await again.summary()
        text = "\n".join(again.lines)
        assert "alembic" in text and "Uvicorn running" in text
        assert "API secret" not in "\n".join(block)
        assert any('criptoren client rotate --name "TradeBot XYZ"' in line for line in block)
        status, after = await again.ctrl_c()
        assert status == 128 + signal.SIGINT and after[-1] == STOPPED
        assert not any("Traceback" in line for line in again.lines)
    finally:
        await again.kill()
