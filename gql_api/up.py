"""`criptoren up`'s moving parts: the worker process kept alive, and the start-up summary.

- `WorkerProcess` runs `python -m workers` and starts it again, with backoff, whenever it exits
  while `up` is running (a crash, a kill, an exit on an error it could not ride out); each restart
  is logged. Stopping it sends SIGTERM (its decisions in flight finish, its leases are released)
  and waits; a second Ctrl+C kills it.
- `summary()` is the block that ends the start-up output: where the dashboard and GraphiQL are, the
  demo client's API key and secret (the first time) or how to get new ones, and where the data
  lives. It is printed once the API listens and the worker reports its market streams.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from sqlalchemy.engine import make_url

from domain.adapters.bootstrap import App, stream_health
from domain.adapters.config import Settings
from domain.services.auth import Credentials
from gql_api.health import watched_symbols

log = logging.getLogger("criptoren")

WORKER_COMMAND = [sys.executable, "-m", "workers"]
# A worker that ran this long before exiting had recovered: the next restart is quick again.
HEALTHY_AFTER = 60.0


class WorkerProcess:
    """The worker subprocess of `criptoren up`, restarted whenever it exits while `up` runs."""

    def __init__(self, command: list[str], *, initial_delay: float = 1.0, max_delay: float = 30.0) -> None:
        self.command = command
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self.process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="worker-supervisor", daemon=True)

    def start(self) -> None:
        self._spawn()
        self._thread.start()

    def _spawn(self) -> None:
        with self._lock:
            if not self._stopping.is_set():
                self.process = subprocess.Popen(self.command)  # noqa: S603 - our own interpreter, fixed arguments

    def _run(self) -> None:
        delay = self.initial_delay
        while not self._stopping.is_set():
            process = self.process
            if process is None:
                return
            started = time.monotonic()
            code = process.wait()
            # A Ctrl+C reaches the worker too (same process group): wait before deciding, so that
            # `up`'s own stop (which sets _stopping at once) is seen first.
            if self._stopping.wait(0.5):
                return
            if time.monotonic() - started >= HEALTHY_AFTER:
                delay = self.initial_delay
            log.warning("The worker exited (status %s); starting it again in %.0f s", code, delay)
            if self._stopping.wait(delay):
                return
            delay = min(self.max_delay, delay * 2)
            self._spawn()
            if self.process is not None:
                log.info("Worker started again (pid %s)", self.process.pid)

    def stopping(self) -> None:
        """`up` is stopping: the worker's exit from now on is expected (Ctrl+C reaches it as well)."""
        self._stopping.set()

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, then wait for the worker's graceful stop; kill it after `timeout` or a second Ctrl+C."""
        with self._lock:
            self._stopping.set()
            process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            process.kill()
            process.wait()


async def wait_for_worker(app: App, within: float) -> bool:
    """Until the worker reports a stream for every watched symbol (past "starting"), for `within` seconds at most."""
    deadline = time.monotonic() + within
    while True:
        try:
            symbols = await watched_symbols(app)
            reports = await stream_health.read(app.redis, app.bus, symbols)
            if all(r is not None and r.state != "starting" for r in reports.values()):
                return True
        except Exception as e:  # PostgreSQL or Redis not answering yet: the deadline decides
            log.debug("Waiting for the worker: %s", e)
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.2)


@dataclass
class Where:
    """Where `up` keeps its data: the embedded servers' directory, or the servers it was given."""

    data_dir: str
    database_url: str | None  # None: embedded
    redis_url: str | None  # None: embedded

    @classmethod
    def of(cls, settings: Settings) -> Where:
        """Read before the embedded servers are started (they fill the URLs in)."""
        return cls(str(settings.criptoren_data_dir), settings.database_url, settings.redis_url)


def _masked(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def summary(
    settings: Settings,
    where: Where,
    credentials: Credentials | None,
    client_name: str | None,
    *,
    worker_ready: bool = True,
) -> str:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host  # noqa: S104 - display only
    base = f"http://{host}:{settings.port}"
    rule = "─" * 72
    lines = [rule, "Criptoren is running.", f"  Dashboard   {base}/"]
    if settings.is_prod:
        lines.append("  GraphiQL    off (CRIPTOREN_ENV=prod)")
    else:
        lines.append(f"  GraphiQL    {base}/graphql")
    if credentials is not None:
        lines += [
            f"  Log in as   {client_name} (client {credentials.client_id}); the secret is shown only now:",
            f"    API key      {credentials.api_key}",
            f"    API secret   {credentials.api_secret}",
        ]
    elif client_name is not None:
        lines += [
            f"  Log in as   {client_name}, with the API key and secret shown at the first start;",
            f'              new ones: criptoren client rotate --name "{client_name}"',
        ]
    else:
        lines.append('  Log in      with a client\'s API key and secret (criptoren client create --name "…")')
    if where.database_url is None and where.redis_url is None:
        lines.append(f"  Data        {where.data_dir} (embedded PostgreSQL and Redis)")
    else:
        embedded = f"{where.data_dir} (embedded)"
        lines.append(f"  PostgreSQL  {_masked(where.database_url) if where.database_url else embedded}")
        lines.append(f"  Redis       {_masked(where.redis_url) if where.redis_url else embedded}")
    if not worker_ready:
        lines.append("  Worker      not reporting its market streams yet: see the log above")
    lines += ["Ctrl+C stops the API and the worker.", rule]
    return "\n".join(lines) + "\n"
