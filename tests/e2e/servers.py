"""Real servers for end-to-end tests: the API under uvicorn on a free loopback port, and workers as
separate `criptoren worker` processes."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import uvicorn

from domain.adapters.bootstrap import App
from gql_api.app import create_app

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def api_server(app: App, port: int | None = None) -> AsyncIterator[str]:
    """Serve the app on 127.0.0.1 (on `port`, else a free one); yields its host (127.0.0.1:<port>)."""
    port = port or free_port()
    config = uvicorn.Config(create_app(app=app), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def start_worker(app: App, **env: str) -> subprocess.Popen[bytes]:
    """`criptoren worker` on the test's database and Redis prefix."""
    settings = app.settings
    environment = {
        **os.environ,
        "DATABASE_URL": str(settings.database_url),
        "REDIS_URL": str(settings.redis_url),
        "REDIS_PREFIX": settings.redis_prefix,
        "LOG_LEVEL": "WARNING",
        **env,
    }
    return subprocess.Popen([sys.executable, "-m", "gql_api.cli", "worker"], cwd=ROOT, env=environment)


def stop(process: subprocess.Popen[bytes], kill: bool = False) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
