"""The typed request context: the application, the request's read snapshot and loaders, and the
current client."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import strawberry
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from domain.adapters.bootstrap import App
from domain.ports import ReadSnapshot, UnitOfWork
from gql_api.dataloaders import Loaders, make_loaders


@dataclass
class Context:
    app: App
    loaders: Loaders
    # The reads of this request (its queries' and its loaders'), in one read-only transaction
    # (domain.ports.ReadSnapshot): opened at the first read, closed when the response is sent.
    snapshot: ReadSnapshot
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

    def read(self) -> UnitOfWork:
        """A unit of work reading in this request's snapshot (`async with` it; it never commits)."""
        return self.snapshot.unit()

    def for_operation(self, *, isolated: bool = False) -> Context:
        """This context with a snapshot and loaders of their own: one WebSocket operation's.
        `isolated` (subscriptions): each read a transaction of its own and nothing cached, so that
        nothing is held open, nor grows stale, while the subscription lasts."""
        snapshot = self.app.uow.snapshot()
        if isolated:
            snapshot.isolate()
        return dataclasses.replace(self, snapshot=snapshot, loaders=make_loaders(snapshot, cache=not isolated))


def make_context(
    app: App, request: Any = None, response: Any = None, client_id: int | None = None, broadcaster: Any = None
) -> Context:
    snapshot = app.uow.snapshot()
    return Context(
        app=app, loaders=make_loaders(snapshot), snapshot=snapshot, client_id=client_id, request=request,
        response=response, broadcaster=broadcaster,
    )  # fmt: skip


class ReadSnapshots(SchemaExtension):
    """Queries read in one snapshot; a mutation's payload is read after its commit, each read a
    transaction of its own (a snapshot taken before a second mutation of the same document would
    not see what it did)."""

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        snapshot = getattr(context.context, "snapshot", None)
        if snapshot is not None and context.operation_type is not OperationType.QUERY:
            snapshot.isolate()
        yield


Info = strawberry.Info[Context, None]
