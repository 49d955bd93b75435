"""The ASGI application: Starlette with the GraphQL endpoint at /graphql (GraphiQL on GET)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Route
from strawberry.asgi import GraphQL

from domain.adapters.bootstrap import App, bootstrap
from domain.adapters.config import Settings
from gql_api.context import Context, make_context
from gql_api.schema import schema

log = logging.getLogger("criptoren.api")


class CriptorenGraphQL(GraphQL[Context, None]):
    def __init__(self, app: App) -> None:
        super().__init__(schema, graphql_ide=None if app.settings.is_prod else "graphiql")
        self.app = app

    async def get_context(self, request: Any, response: Any = None) -> Context:
        return make_context(self.app, request, response)


def create_app(settings: Settings | None = None, app: App | None = None) -> Starlette:
    """Build the ASGI app. `app` (already bootstrapped) is used as is, e.g. by the tests."""
    application = app or bootstrap(settings)
    graphql = CriptorenGraphQL(application)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def index(request: Request) -> RedirectResponse:
        return RedirectResponse("/graphql")

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        log.info("Criptoren API ready (exchange: %s)", application.exchange.name)
        yield
        if app is None:
            await application.close()

    starlette = Starlette(
        routes=[
            Route("/", index),
            Route("/healthz", healthz),
            Route("/graphql", graphql, methods=["GET", "POST"]),
        ],
        lifespan=lifespan,
    )
    starlette.state.criptoren = application
    return starlette
