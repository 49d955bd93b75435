"""uvicorn with Criptoren's graceful shutdown: on SIGTERM (or Ctrl-C) the API first answers 503 on
/readyz and closes every WebSocket with code 1001 ("going away": graphql-ws clients reconnect, to
another instance behind a load balancer), then lets uvicorn finish the HTTP requests in flight.

(Left to itself, uvicorn closes WebSockets with 1012 "service restart" only after it stopped
listening, without telling the application first.)"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Coroutine
from types import FrameType
from typing import Any

import uvicorn
from starlette.applications import Starlette

from gql_api.ws import SubscriptionHub

log = logging.getLogger("criptoren.api")

CLOSE_TIMEOUT = 5.0


class CriptorenServer(uvicorn.Server):
    """`on_started`: run once the server listens (`criptoren up` prints its summary then).
    `on_exit_signal`: called as soon as SIGINT or SIGTERM arrives (`up` stops restarting its worker)."""

    def __init__(
        self,
        config: uvicorn.Config,
        app: Starlette,
        on_started: Callable[[], Coroutine[Any, Any, None]] | None = None,
        on_exit_signal: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(config)
        self.starlette = app
        self.on_started = on_started
        self.on_exit_signal = on_exit_signal
        self._announce: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.on_started is not None:
            self._announce = asyncio.create_task(self.on_started())

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.on_exit_signal is not None:
            self.on_exit_signal()
        super().handle_exit(sig, frame)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.starlette.state.shutting_down = True
        hub: SubscriptionHub | None = getattr(self.starlette.state, "ws_hub", None)
        if hub is not None and hub.connections:
            log.info("Closing %d WebSocket connections (1001 going away)", len(hub.connections))
            try:
                await asyncio.wait_for(hub.close_all(1001, "Server shutting down"), CLOSE_TIMEOUT)
            except TimeoutError:
                log.warning("Some WebSocket connections did not close within %.0f s", CLOSE_TIMEOUT)
        if self._announce is not None:
            self._announce.cancel()
        await super().shutdown(sockets)


def serve(
    app: Starlette,
    host: str,
    port: int,
    log_level: str,
    *,
    on_started: Callable[[], Coroutine[Any, Any, None]] | None = None,
    on_exit_signal: Callable[[], None] | None = None,
) -> None:
    # log_config=None: uvicorn's loggers go through the process's handler (LOG_FORMAT, redaction).
    # ws_max_size: uvicorn itself refuses (1009) a WebSocket message over MAX_BODY_BYTES before
    # assembling it in memory (gql_api/ws.py checks again, whatever the server).
    settings = app.state.criptoren.settings
    config = uvicorn.Config(
        app, host=host, port=port, log_level=log_level, log_config=None, timeout_graceful_shutdown=15,
        ws_max_size=settings.max_body_bytes,
    )  # fmt: skip
    CriptorenServer(config, app, on_started, on_exit_signal).run()
