"""GraphQL over WebSocket (graphql-transport-ws), with shared subscription executions.

Strawberry runs one GraphQL execution per subscriber per event. Here, identical subscriptions —
same document, variables and operation name, for the same client — share one execution: each event
is resolved and serialized once, and the same bytes go to every subscriber (only the message's
`id` differs, spliced in). With hundreds of dashboards watching the same prices, the server's work
per event stops growing with the number of subscribers, apart from the socket writes.

The protocol (https://github.com/enisdenjo/graphql-ws/blob/master/PROTOCOL.md):
client `connection_init` -> server `connection_ack` (or close 4403 when the token is refused,
4408 without init in time, 4429 on a second init); `subscribe` before the ack closes 4401; a
duplicate operation id closes 4409; an unreadable message closes 4400; `ping`/`pong`;
`subscribe` -> `next`* then `complete`, or `error`; client `complete` stops an operation.
Queries and mutations sent over the socket run once and complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from graphql import ExecutionResult, GraphQLError, OperationType, parse
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from gql_api.context import Context
from gql_api.errors import classify

log = logging.getLogger("criptoren.ws")

PROTOCOL = "graphql-transport-ws"
INIT_TIMEOUT = 10.0

ContextFactory = Callable[[WebSocket, dict[str, Any]], Awaitable[Context]]


def result_json(result: ExecutionResult) -> str:
    payload: dict[str, Any] = {"data": result.data}
    if result.errors:
        payload["errors"] = [classify(e).formatted for e in result.errors]
    return json.dumps(payload, separators=(",", ":"))


class Closed(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(eq=False)
class Member:
    connection: Connection
    op_id: str


@dataclass(eq=False)
class Group:
    key: tuple[Any, ...]
    members: set[Member] = field(default_factory=set)
    task: asyncio.Task[None] | None = None


class SubscriptionHub:
    """Shares one execution among identical subscriptions (see the module docstring)."""

    def __init__(self, schema: Any) -> None:
        self.schema = schema
        self.groups: dict[tuple[Any, ...], Group] = {}
        self.connections: set[Connection] = set()  # open ones, closed by `close_all` on shutdown

    async def close_all(self, code: int = 1001, reason: str = "Server shutting down") -> None:
        """Close every connection (graceful shutdown: 1001 "going away"; clients reconnect elsewhere)."""
        await asyncio.gather(*(c.close(code, reason) for c in list(self.connections)), return_exceptions=True)

    @property
    def subscribers(self) -> int:
        return sum(len(g.members) for g in self.groups.values())

    async def join(self, member: Member, payload: dict[str, Any], context: Context) -> None:
        key = (
            payload.get("query"),
            json.dumps(payload.get("variables") or {}, sort_keys=True),
            payload.get("operationName"),
            context.client_id,
        )
        group = self.groups.get(key)
        if group is None:
            source = await self.schema.subscribe(
                payload.get("query"),
                variable_values=payload.get("variables"),
                context_value=context,
                operation_name=payload.get("operationName"),
            )
            if isinstance(source, ExecutionResult) or not hasattr(source, "__anext__"):
                # Refused before execution (validation, permissions): an `error` for this one only.
                errors = getattr(source, "errors", None) or [GraphQLError("Subscription refused.")]
                await member.connection.send_error(member.op_id, errors)
                return
            group = Group(key)
            self.groups[key] = group
            group.members.add(member)
            group.task = asyncio.create_task(self._pump(group, source), name="subscription-group")
        else:
            group.members.add(member)

    def leave(self, member: Member) -> None:
        for key, group in list(self.groups.items()):
            if member in group.members:
                group.members.discard(member)
                if not group.members:
                    del self.groups[key]
                    if group.task is not None:
                        group.task.cancel()

    async def _pump(self, group: Group, source: Any) -> None:
        try:
            first = True
            async for result in source:
                if first and result.errors and result.data is None:
                    # Refused before any event (validation, permission, unknown id): `error`.
                    for member in list(group.members):
                        await member.connection.send_error(member.op_id, list(result.errors))
                    group.members.clear()
                    return
                first = False
                body = result_json(result)
                for member in list(group.members):
                    await member.connection.send_next(member.op_id, body)
            for member in list(group.members):
                await member.connection.send_complete(member.op_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("Subscription execution failed")
        finally:
            with contextlib.suppress(Exception):
                await source.aclose()
            if self.groups.get(group.key) is group:
                del self.groups[group.key]
            for member in list(group.members):
                member.connection.operations.pop(member.op_id, None)


class Connection:
    """One WebSocket client speaking graphql-transport-ws."""

    def __init__(self, websocket: WebSocket, hub: SubscriptionHub, make_context: ContextFactory) -> None:
        self.websocket = websocket
        self.hub = hub
        self.make_context = make_context
        self.context: Context | None = None
        self.operations: dict[str, Member | asyncio.Task[None]] = {}
        self._send_lock = asyncio.Lock()

    async def _send(self, text: str) -> None:
        if self.websocket.application_state is not WebSocketState.CONNECTED:
            return
        async with self._send_lock:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                await self.websocket.send_text(text)

    async def close(self, code: int, reason: str) -> None:
        """Close from the server's side; `run` then ends when the client answers (or the socket drops)."""
        if self.websocket.application_state is not WebSocketState.CONNECTED:
            return
        async with self._send_lock:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                await self.websocket.close(code=code, reason=reason)

    async def send_next(self, op_id: str, body: str) -> None:
        await self._send(f'{{"id":{json.dumps(op_id)},"type":"next","payload":{body}}}')

    async def send_complete(self, op_id: str) -> None:
        if self.operations.pop(op_id, None) is not None:
            await self._send(json.dumps({"id": op_id, "type": "complete"}))

    async def send_error(self, op_id: str, errors: list[GraphQLError]) -> None:
        self.operations.pop(op_id, None)
        payload = [classify(e).formatted for e in errors]
        await self._send(json.dumps({"id": op_id, "type": "error", "payload": payload}))

    async def run(self) -> None:
        if PROTOCOL not in self.websocket.scope.get("subprotocols", []):
            await self.websocket.accept()
            await self.websocket.close(code=4406, reason="Subprotocol not acceptable")
            return
        await self.websocket.accept(subprotocol=PROTOCOL)
        self.hub.connections.add(self)
        try:
            await self._init()
            while True:
                await self._handle(await self._receive())
        except Closed as closed:
            await self.websocket.close(code=closed.code, reason=closed.reason)
        except WebSocketDisconnect:
            pass
        finally:
            self.hub.connections.discard(self)
            for operation in list(self.operations.values()):
                if isinstance(operation, Member):
                    self.hub.leave(operation)
                else:
                    operation.cancel()
            self.operations.clear()

    async def _receive(self) -> dict[str, Any]:
        raw = await self.websocket.receive_text()
        try:
            message = json.loads(raw)
        except ValueError:
            raise Closed(4400, "Invalid message") from None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise Closed(4400, "Invalid message")
        return message

    async def _init(self) -> None:
        try:
            message = await asyncio.wait_for(self._receive(), INIT_TIMEOUT)
        except TimeoutError:
            raise Closed(4408, "Connection initialisation timeout") from None
        if message["type"] != "connection_init":
            raise Closed(4401, "Unauthorized")
        payload = message.get("payload") or {}
        if not isinstance(payload, dict):
            raise Closed(4400, "Invalid connection init payload")
        try:
            self.context = await self.make_context(self.websocket, payload)
        except PermissionError as e:
            raise Closed(4403, str(e) or "Forbidden") from None
        await self._send(json.dumps({"type": "connection_ack"}))

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "ping":
            await self._send(json.dumps({"type": "pong"}))
        elif kind == "pong":
            return
        elif kind == "connection_init":
            raise Closed(4429, "Too many initialisation requests")
        elif kind == "subscribe":
            await self._subscribe(message)
        elif kind == "complete":
            operation = self.operations.pop(str(message.get("id")), None)
            if isinstance(operation, Member):
                self.hub.leave(operation)
            elif operation is not None:
                operation.cancel()
        else:
            raise Closed(4400, f"Unknown message type: {kind}")

    async def _subscribe(self, message: dict[str, Any]) -> None:
        op_id, payload = message.get("id"), message.get("payload")
        if not isinstance(op_id, str) or not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
            raise Closed(4400, "Invalid subscribe message")
        if op_id in self.operations:
            raise Closed(4409, f"Subscriber for {op_id} already exists")
        assert self.context is not None
        if _operation_type(payload) is OperationType.SUBSCRIPTION:
            member = Member(self, op_id)
            self.operations[op_id] = member
            await self.hub.join(member, payload, self.context)
        else:
            task = asyncio.create_task(self._execute(op_id, payload))
            self.operations[op_id] = task

    async def _execute(self, op_id: str, payload: dict[str, Any]) -> None:
        assert self.context is not None
        result = await self.hub.schema.execute(
            payload["query"],
            variable_values=payload.get("variables"),
            context_value=self.context,
            operation_name=payload.get("operationName"),
        )
        await self.send_next(op_id, result_json(result))
        await self.send_complete(op_id)


def _operation_type(payload: dict[str, Any]) -> OperationType | None:
    try:
        document = parse(payload["query"])
    except GraphQLError:
        return OperationType.SUBSCRIPTION  # let the schema report the syntax error as `error`
    name = payload.get("operationName")
    for definition in document.definitions:
        operation = getattr(definition, "operation", None)
        if operation is not None and (name is None or getattr(definition.name, "value", None) == name):
            return operation  # type: ignore[no-any-return]
    return None
