"""The typed request context: the application, per-request loaders and the current client."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import strawberry

from domain.adapters.bootstrap import App
from gql_api.dataloaders import Loaders, make_loaders


@dataclass
class Context:
    app: App
    loaders: Loaders
    # The client the request acts for, from its access token (HTTP `Authorization: Bearer`, or the
    # WebSocket `connection_init` payload). None: anonymous — only public fields answer (the
    # `IsAuthenticated` permission refuses the others). Services and views scope by it.
    client_id: int | None = None
    request: Any = None
    response: Any = None
    # Why a token that was sent was refused (the request then runs as anonymous).
    auth_error: str | None = None
    # The graphql-transport-ws `connection_init` payload (set by Strawberry on WebSocket connections).
    connection_params: dict[str, Any] | None = None
    # This process's fan-out of Redis pub/sub to subscriptions (gql_api/broadcast.py).
    broadcaster: Any = None


def make_context(
    app: App, request: Any = None, response: Any = None, client_id: int | None = None, broadcaster: Any = None
) -> Context:
    return Context(
        app=app, loaders=make_loaders(app.uow), client_id=client_id, request=request, response=response,
        broadcaster=broadcaster,
    )  # fmt: skip


Info = strawberry.Info[Context, None]
