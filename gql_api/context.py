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
    # The client the request acts for. None: no authentication configured yet, every client's
    # data is reachable (single-user mode). Services and views scope by it when it is set.
    client_id: int | None = None
    request: Any = None
    response: Any = None


def make_context(app: App, request: Any = None, response: Any = None, client_id: int | None = None) -> Context:
    return Context(app=app, loaders=make_loaders(app.uow), client_id=client_id, request=request, response=response)


Info = strawberry.Info[Context, None]
