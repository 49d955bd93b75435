"""The ASGI application: Starlette with the GraphQL endpoint at /graphql (GraphiQL on GET), the trade
export at /export/trades.csv (gql_api/export.py) and the dashboard at / (gql_api/web.py)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from domain.adapters.bootstrap import App, bootstrap, metrics
from domain.adapters.config import Settings
from domain.errors import Unauthenticated
from gql_api import web
from gql_api.auth import (
    REVOKED_CHANNEL,
    TokenClaims,
    access_tokens,
    authenticate,
    authenticate_connection,
    bearer_token,
)
from gql_api.broadcast import Broadcaster
from gql_api.context import Context, make_context
from gql_api.export import trades_csv
from gql_api.hardening import BodySizeLimit, RateLimit
from gql_api.health import metrics_endpoint, readyz
from gql_api.schema import schema
from gql_api.ws import Connection, SubscriptionHub

log = logging.getLogger("criptoren.api")


class CriptorenGraphQL(GraphQL[Context, None]):
    def __init__(self, app: App) -> None:
        super().__init__(
            schema,
            graphql_ide=None if app.settings.is_prod else "graphiql",
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
        )
        self.app = app
        self.broadcaster = Broadcaster(app.redis, app.bus.channel("*"))

    async def get_context(self, request: Any, response: Any = None) -> Context:
        context = make_context(self.app, request, response, broadcaster=self.broadcaster)
        # HTTP: `Authorization: Bearer <token>`. WebSocket: the token comes in connection_init.
        token = bearer_token(request.headers.get("authorization")) if request.scope["type"] == "http" else None
        if token is not None:
            try:
                context.client_id = await authenticate(self.app, token)
            except Unauthenticated as e:
                context.auth_error = e.message  # private fields then answer UNAUTHENTICATED
        return context

    async def execute_operation(self, *args: Any, **kwargs: Any) -> Any:
        # The request's reads end with it: its snapshot is closed once the result is complete,
        # whatever the result (errors included).
        try:
            return await super().execute_operation(*args, **kwargs)
        finally:
            context = kwargs.get("context")
            if isinstance(context, Context):
                await context.snapshot.close()

    def decode_json(self, data: str | bytes) -> object:
        # Strawberry answers 400 to a JSONDecodeError only: not UTF-8, or not an object or a list
        # (a batch), is a body it cannot read either.
        try:
            value = json.loads(data)
        except UnicodeDecodeError as e:
            raise json.JSONDecodeError("the body is not UTF-8 JSON", "", 0) from e
        if not isinstance(value, dict | list):
            raise json.JSONDecodeError("the body is not a JSON object", "", 0)
        return value

    async def ws_context(self, websocket: WebSocket, payload: dict[str, Any]) -> tuple[Context, TokenClaims | None]:
        """The context of a WebSocket connection (gql_api/ws.py), authenticated by its
        `connection_init` payload; a refused token raises `Unauthenticated` (close 4403)."""
        context = make_context(self.app, websocket, None, broadcaster=self.broadcaster)
        context.connection_params = payload
        claims = await authenticate_connection(self.app, payload)
        if claims is not None:
            context.client_id = claims.client_id
        return context, claims

    async def render_graphql_ide(self, request: Request) -> Response:
        # GraphiQL on assets served by this server (gql_api/web.py); when they are not installed, a
        # page that says so, or (?cdn=1) Strawberry's page on a CDN.
        return web.graphiql_page(cdn="cdn" in request.query_params) or await super().render_graphql_ide(request)


# Young collections every this many new container objects (Python's default: 700). A page of
# positions creates tens of thousands; collecting every 700 costs more than it frees.
GC_YOUNG_THRESHOLD = 10_000


def settle_garbage_collector() -> None:
    """Once a server process is up: what it built at start-up (modules, the schema, the mappers)
    lives as long as the process, so it is moved out of the collector's way (`gc.freeze`) — each
    full collection walked all of it again — and young collections run less often. Measured on the
    positions page (bench/api_bench.py): about 15% less CPU, a p99 four to six times lower."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def create_app(settings: Settings | None = None, app: App | None = None) -> Starlette:
    """Build the ASGI app. `app` (already bootstrapped) is used as is, e.g. by the tests."""
    application = app or bootstrap(settings)
    access_tokens(application.settings)  # fail fast: CRIPTOREN_ENV=prod needs CRIPTOREN_SECRET_KEY
    graphql = CriptorenGraphQL(application)
    hub = SubscriptionHub(schema, application)

    async def websocket_endpoint(websocket: WebSocket) -> None:
        await Connection(websocket, hub, graphql.ws_context).run()

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        log.info("Criptoren API ready (exchange: %s)", application.exchange.name)
        # Logouts (of any instance) close their session's open WebSockets here.
        revocations = asyncio.create_task(
            hub.watch_revoked_sessions(graphql.broadcaster, application.bus.channel(REVOKED_CHANNEL))
        )
        if app is None:  # a server process of its own (not a test's app)
            settle_garbage_collector()
        yield
        revocations.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await revocations
        await graphql.broadcaster.stop()
        if app is None:
            await application.close()

    settings = application.settings
    starlette = Starlette(
        middleware=[
            Middleware(BodySizeLimit, max_bytes=settings.max_body_bytes),
            Middleware(RateLimit, criptoren=application, paths=("/graphql", "/export")),
        ],
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),  # PostgreSQL, Redis and the market streams (gql_api/health.py)
            Route("/metrics", metrics_endpoint),  # Prometheus
            Route("/graphql", graphql, methods=["GET", "POST"]),
            # graphql-transport-ws with shared executions of identical subscriptions (gql_api/ws.py).
            WebSocketRoute("/graphql", websocket_endpoint),
            # The client's fills as CSV, streamed (gql_api/export.py).
            Route("/export/trades.csv", trades_csv),
            # The dashboard at / and GraphiQL's assets (gql_api/web.py).
            *web.routes(schema, graphiql=not settings.is_prod),
        ],
        lifespan=lifespan,
    )
    starlette.state.criptoren = application
    # Graceful shutdown (gql_api/server.py): /readyz answers 503, WebSockets close with 1001.
    starlette.state.shutting_down = False
    starlette.state.ws_hub = hub
    metrics.WS_SUBSCRIBERS.set_function(lambda: hub.subscribers)
    metrics.WS_CONNECTIONS.set_function(lambda: len(hub.connections))
    return starlette
