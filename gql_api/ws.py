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

Limits (`Limits`, from the settings; the same as over HTTP where HTTP has one):
- a message over `MAX_BODY_BYTES` closes the socket (1009) before it is decoded; a document over
  the token limit is refused (`error`) before it is parsed in full;
- every `subscribe` counts as a request in the rate limit of HTTP (per client, per IP without a
  token; `error` with `RATE_LIMITED` over it); at most `WS_MAX_SUBSCRIPTIONS` operations open at
  once per connection (`LIMIT_EXCEEDED`); at most `WS_MAX_CONNECTIONS_PER_IP` and
  `WS_MAX_CONNECTIONS_PER_CLIENT` connections per API process (close 1013, try again later);
- every message to a client goes through the connection's own queue, written by its own task:
  nothing else ever waits for a client's socket. A client that lets `WS_QUEUE_DEPTH` messages pile
  up is closed (1013), logged and counted (`criptoren_ws_slow_consumers_total`); the subscriptions
  it shared with others go on for them undisturbed;
- the token's expiry, or the end of its session (logout), closes the socket with 4403.
Close reasons are plain sentences within the protocol's 123 bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from graphql import ExecutionResult, GraphQLError, OperationType
from starlette.websockets import WebSocket, WebSocketDisconnect

from domain.adapters.bootstrap import App, metrics
from domain.adapters.config import Settings
from domain.errors import Unauthenticated
from gql_api.auth import SESSION_ENDED, TokenClaims, session_revoked
from gql_api.context import Context
from gql_api.errors import classify
from gql_api.hardening import DOCUMENTS, RateLimiter

log = logging.getLogger("criptoren.ws")

PROTOCOL = "graphql-transport-ws"
INIT_TIMEOUT = 10.0
# How long a server-side close may wait for the client to take the close frame; past it the
# connection is abandoned (its subscriptions are gone already; the socket is left to uvicorn).
CLOSE_TIMEOUT = 5.0
MAX_CLOSE_REASON_BYTES = 123  # RFC 6455: a close frame's payload is at most 125 bytes, 2 of them the code
TRY_AGAIN_LATER = 1013
MESSAGE_TOO_BIG = 1009
TOKEN_EXPIRED_CLOSE_CODE = 4403  # as for a token refused at connection_init

# The context of a connection from its `connection_init` payload, and the token's claims (None:
# anonymous). Raises `Unauthenticated` for a token it refuses.
ContextFactory = Callable[[WebSocket, dict[str, Any]], Awaitable[tuple[Context, TokenClaims | None]]]


def close_reason(text: str) -> str:
    """A close reason: a plain sentence, cut (on a character boundary) to the protocol's 123 bytes."""
    raw = " ".join(text.split()).encode()
    if len(raw) <= MAX_CLOSE_REASON_BYTES:
        return raw.decode()
    return raw[: MAX_CLOSE_REASON_BYTES - 3].decode(errors="ignore") + "…"


def result_json(result: ExecutionResult) -> str:
    payload: dict[str, Any] = {"data": result.data}
    if result.errors:
        payload["errors"] = [classify(e).formatted for e in result.errors]
    return json.dumps(payload, separators=(",", ":"))


def _error(message: str, code: str, **extensions: Any) -> GraphQLError:
    return GraphQLError(message, extensions={"code": code, **extensions})


class Closed(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class _Abandoned(Exception):
    """The connection was given up on (a close the client never took): stop reading it."""


@dataclass(frozen=True)
class Limits:
    max_message_bytes: int = 100_000
    max_operations: int = 100
    queue_depth: int = 1000
    max_connections_per_client: int = 20
    max_connections_per_ip: int = 200

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            max_message_bytes=settings.max_body_bytes,
            max_operations=settings.ws_max_subscriptions,
            queue_depth=settings.ws_queue_depth,
            max_connections_per_client=settings.ws_max_connections_per_client,
            max_connections_per_ip=settings.ws_max_connections_per_ip,
        )


@dataclass(eq=False)
class Member:
    connection: Connection
    op_id: str
    group: Group | None = None


@dataclass(eq=False)
class Group:
    key: tuple[Any, ...]
    members: set[Member] = field(default_factory=set)
    task: asyncio.Task[None] | None = None


class SubscriptionHub:
    """Shares one execution among identical subscriptions (see the module docstring), and keeps
    the count of this process's connections per address and per client."""

    def __init__(self, schema: Any, app: App | None = None, limits: Limits | None = None) -> None:
        self.schema = schema
        self.app = app
        self.limits = limits or (Limits.from_settings(app.settings) if app is not None else Limits())
        self.rate_limiter = RateLimiter(app) if app is not None else None
        self.groups: dict[tuple[Any, ...], Group] = {}
        self.connections: set[Connection] = set()  # open ones, closed by `close_all` on shutdown
        self.per_address: Counter[str] = Counter()
        self.per_client: Counter[int] = Counter()
        self._tasks: set[asyncio.Task[Any]] = set()

    async def close_all(self, code: int = 1001, reason: str = "Server shutting down") -> None:
        """Close every connection (graceful shutdown: 1001 "going away"; clients reconnect elsewhere)."""
        await asyncio.gather(*(c.close(code, reason) for c in list(self.connections)), return_exceptions=True)

    @property
    def subscribers(self) -> int:
        return sum(len(g.members) for g in self.groups.values())

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        """Run `coroutine` in the background, kept referenced until it ends."""
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def retry_after(self, connection: Connection) -> int | None:
        """Count one operation in the HTTP rate limit; the seconds to wait when over it."""
        if self.rate_limiter is None:
            return None
        client_id = connection.context.client_id if connection.context is not None else None
        return await self.rate_limiter.retry_after(self.rate_limiter.who(client_id, connection.address))

    async def end_session(self, session_id: str) -> None:
        """Close the connections of an ended session (logout) with 4403."""
        ended = [c for c in self.connections if c.session_id == session_id]
        await asyncio.gather(*(c.close(TOKEN_EXPIRED_CLOSE_CODE, SESSION_ENDED) for c in ended))

    async def watch_revoked_sessions(self, broadcaster: Any, channel: str) -> None:
        """Supervised: close the connections of each session announced on `channel` (logouts of
        any API instance), reconnecting with backoff when Redis drops."""
        delay = 1.0
        while True:
            try:
                async for payload in broadcaster.subscribe([channel]):
                    delay = 1.0
                    if isinstance(payload, dict) and isinstance(payload.get("session"), str):
                        await self.end_session(payload["session"])
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("Watching ended sessions failed (%s); retrying in %.0f s", e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

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
                member.connection.send_error(member.op_id, errors)
                return
            if member.connection.operations.get(member.op_id) is not member:
                # Completed (or its connection closed) while the subscription was being set up.
                with contextlib.suppress(Exception):
                    await source.aclose()
                return
            group = Group(key)
            self.groups[key] = group
            group.task = asyncio.create_task(self._pump(group, source), name="subscription-group")
        member.group = group
        group.members.add(member)

    def leave(self, member: Member) -> None:
        group, member.group = member.group, None
        if group is None:
            return
        group.members.discard(member)
        if not group.members and self.groups.get(group.key) is group:
            del self.groups[group.key]
            if group.task is not None:
                group.task.cancel()

    async def _pump(self, group: Group, source: Any) -> None:
        # Never awaits a client: `send_next` only queues (see Connection).
        try:
            first = True
            async for result in source:
                if first and result.errors and result.data is None:
                    # Refused before any event (validation, permission, unknown id): `error`.
                    for member in list(group.members):
                        member.connection.send_error(member.op_id, list(result.errors))
                    group.members.clear()
                    return
                first = False
                body = result_json(result)
                for member in list(group.members):
                    member.connection.send_next(member.op_id, body)
            for member in list(group.members):
                member.connection.send_complete(member.op_id)
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
                member.group = None
                member.connection.operations.pop(member.op_id, None)


class Connection:
    """One WebSocket client speaking graphql-transport-ws.

    Everything sent to the client goes through `_outbox`, drained by `_writer` (the only task that
    awaits the socket): a slow client only ever holds up its own writer."""

    def __init__(self, websocket: WebSocket, hub: SubscriptionHub, make_context: ContextFactory) -> None:
        self.websocket = websocket
        self.hub = hub
        self.limits = hub.limits
        self.make_context = make_context
        self.context: Context | None = None
        self.session_id: str | None = None
        self.address = websocket.client.host if websocket.client else "unknown"
        self.operations: dict[str, Member | asyncio.Task[None]] = {}
        self._outbox: deque[str] = deque()
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._close_frame: tuple[int, str] | None = None
        self._gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._counted_client: int | None = None
        self._expiry: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------ sending

    def _push(self, text: str) -> None:
        if self._close_frame is not None:
            return  # closing: nothing more for this client
        if len(self._outbox) >= self.limits.queue_depth:
            self._too_slow()
            return
        self._outbox.append(text)
        self._wake.set()

    def _too_slow(self) -> None:
        log.warning(
            "Closing a WebSocket that does not read its messages: %d waiting (client %s, %s)",
            len(self._outbox), self.context.client_id if self.context else None, self.address,
        )  # fmt: skip
        metrics.WS_SLOW_CONSUMERS.inc()
        self._end_operations()  # stop feeding it at once; the groups go on for the others
        reason = f"Too slow: {self.limits.queue_depth} messages waiting. Read faster, or subscribe to less."
        self._begin_close(TRY_AGAIN_LATER, reason, drop_pending=True)
        self.hub.spawn(self.close(TRY_AGAIN_LATER, reason))

    async def _write(self) -> None:
        websocket = self.websocket
        try:
            while True:
                while self._outbox:
                    await websocket.send_text(self._outbox.popleft())
                if self._close_frame is not None:
                    code, reason = self._close_frame
                    await websocket.close(code=code, reason=reason)
                    return
                self._wake.clear()
                await self._wake.wait()
        except (WebSocketDisconnect, RuntimeError, OSError):
            return  # the client went away

    async def close(self, code: int, reason: str, *, drop_pending: bool = False) -> None:
        """Close from the server's side, after the messages already queued (unless `drop_pending`).
        A client that does not take the close frame within CLOSE_TIMEOUT is abandoned."""
        self._begin_close(code, reason, drop_pending=drop_pending)
        writer = self._writer
        if writer is None:  # not accepted yet
            return
        try:
            await asyncio.wait_for(asyncio.shield(writer), CLOSE_TIMEOUT)
        except TimeoutError:
            writer.cancel()
            if not self._gone.done():
                self._gone.set_result(None)

    def _begin_close(self, code: int, reason: str, *, drop_pending: bool) -> None:
        # From here on nothing more is queued; the writer sends the close frame after the rest.
        if self._close_frame is None:
            self._close_frame = (code, close_reason(reason))
            if drop_pending:
                self._outbox.clear()
            self._wake.set()

    def send_next(self, op_id: str, body: str) -> None:
        self._push(f'{{"id":{json.dumps(op_id)},"type":"next","payload":{body}}}')

    def send_complete(self, op_id: str) -> None:
        if self.operations.pop(op_id, None) is not None:
            self._push(json.dumps({"id": op_id, "type": "complete"}))

    def send_error(self, op_id: str, errors: list[GraphQLError]) -> None:
        self.operations.pop(op_id, None)
        payload = [classify(e).formatted for e in errors]
        self._push(json.dumps({"id": op_id, "type": "error", "payload": payload}))

    # ------------------------------------------------------------ the connection

    async def run(self) -> None:
        if PROTOCOL not in self.websocket.scope.get("subprotocols", []):
            await self.websocket.accept()
            await self.websocket.close(code=4406, reason="Subprotocol not acceptable")
            return
        await self.websocket.accept(subprotocol=PROTOCOL)
        if self.hub.per_address[self.address] >= self.limits.max_connections_per_ip:
            log.warning(
                "Refused a WebSocket from %s: %d open already", self.address, self.hub.per_address[self.address]
            )
            limit = self.limits.max_connections_per_ip
            await self.websocket.close(
                TRY_AGAIN_LATER, close_reason(f"Too many connections from this address (at most {limit}).")
            )
            return
        self.hub.connections.add(self)
        self.hub.per_address[self.address] += 1
        self._writer = asyncio.create_task(self._write(), name="websocket-writer")
        try:
            await self._init()
            while True:
                await self._handle(await self._receive())
        except Closed as closed:
            await self.close(closed.code, closed.reason)
        except (WebSocketDisconnect, _Abandoned):
            pass
        finally:
            self._release()

    def _release(self) -> None:
        self.hub.connections.discard(self)
        self.hub.per_address[self.address] -= 1
        if self.hub.per_address[self.address] <= 0:
            del self.hub.per_address[self.address]
        if self._counted_client is not None:
            self.hub.per_client[self._counted_client] -= 1
            if self.hub.per_client[self._counted_client] <= 0:
                del self.hub.per_client[self._counted_client]
        if self._expiry is not None:
            self._expiry.cancel()
        self._end_operations()
        if self._writer is not None and self._close_frame is None:
            self._writer.cancel()  # the client is gone: nothing left to write

    def _end_operations(self) -> None:
        for operation in list(self.operations.values()):
            if isinstance(operation, Member):
                self.hub.leave(operation)
            else:
                operation.cancel()
        self.operations.clear()

    async def _receive(self) -> dict[str, Any]:
        receive = asyncio.ensure_future(self.websocket.receive())
        await asyncio.wait((receive, self._gone), return_when=asyncio.FIRST_COMPLETED)
        if not receive.done():
            receive.cancel()
            raise _Abandoned
        event = receive.result()
        if event["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(event.get("code", 1000), event.get("reason"))
        raw = event.get("text")
        if raw is None:
            raise Closed(4400, "Invalid message: text frames only")
        limit = self.limits.max_message_bytes
        # Refused before it is decoded: a huge document must cost nothing more.
        if len(raw) > limit or (not raw.isascii() and len(raw.encode()) > limit):
            raise Closed(MESSAGE_TOO_BIG, f"Message over the limit of {limit} bytes.")
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
            self.context, claims = await self.make_context(self.websocket, payload)
        except Unauthenticated as e:
            raise Closed(TOKEN_EXPIRED_CLOSE_CODE, e.message) from None
        if claims is not None:
            client_id, limit = claims.client_id, self.limits.max_connections_per_client
            if self.hub.per_client[client_id] >= limit:
                log.warning("Refused a WebSocket of client %s: %d open already", client_id, limit)
                raise Closed(TRY_AGAIN_LATER, f"Too many connections for this client (at most {limit}).")
            self.hub.per_client[client_id] += 1
            self._counted_client = client_id
            self.session_id = claims.session_id
            delay = max(0.0, (claims.expires_at - datetime.now(UTC)).total_seconds())
            self._expiry = asyncio.get_running_loop().call_later(
                delay, lambda: self.hub.spawn(self.close(TOKEN_EXPIRED_CLOSE_CODE, "Access token expired"))
            )
        self._push(json.dumps({"type": "connection_ack"}))

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "ping":
            self._push(json.dumps({"type": "pong"}))
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
            raise Closed(4400, f"Unknown message type: {kind[:40]}")

    async def _subscribe(self, message: dict[str, Any]) -> None:
        op_id, payload = message.get("id"), message.get("payload")
        if not isinstance(op_id, str) or not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
            raise Closed(4400, "Invalid subscribe message")
        if op_id in self.operations:
            raise Closed(4409, f"Subscriber for {op_id[:40]} already exists")
        assert self.context is not None
        limit = self.limits.max_operations
        if len(self.operations) >= limit:
            text = f"At most {limit} subscriptions (and operations in flight) per connection: complete one first."
            self.send_error(op_id, [_error(text, "LIMIT_EXCEEDED")])
            return
        wait = await self.hub.retry_after(self)
        if wait is not None:
            limiter = self.hub.rate_limiter
            assert limiter is not None
            self.send_error(op_id, [_error(limiter.message(wait), "RATE_LIMITED", retryAfter=wait)])
            return
        if (
            self.session_id is not None
            and self.hub.app is not None
            and await session_revoked(self.hub.app, self.session_id)
        ):
            raise Closed(TOKEN_EXPIRED_CLOSE_CODE, SESSION_ENDED)
        kind = operation_type(payload)
        if isinstance(kind, GraphQLError):
            self.send_error(op_id, [kind])
        elif kind is OperationType.SUBSCRIPTION:
            member = Member(self, op_id)
            self.operations[op_id] = member
            # Its reads each in a transaction of their own, nothing cached: it may last for hours.
            await self.hub.join(member, payload, self.context.for_operation(isolated=True))
        else:
            self.operations[op_id] = asyncio.create_task(self._execute(op_id, payload))

    async def _execute(self, op_id: str, payload: dict[str, Any]) -> None:
        assert self.context is not None
        # A read snapshot and loaders of its own, as an HTTP request has, closed with it.
        context = self.context.for_operation()
        try:
            result = await self.hub.schema.execute(
                payload["query"],
                variable_values=payload.get("variables"),
                context_value=context,
                operation_name=payload.get("operationName"),
            )
        finally:
            await context.snapshot.close()
        self.send_next(op_id, result_json(result))
        self.send_complete(op_id)


def operation_type(payload: dict[str, Any]) -> OperationType | GraphQLError | None:
    """The kind of the operation a `subscribe` asks for, read with the schema's token limit: a
    document over it (or unreadable) is the error to answer, after at most MAX_TOKENS tokens."""
    try:
        document = DOCUMENTS.check(payload["query"]).document
    except GraphQLError as e:
        return e
    name = payload.get("operationName")
    for definition in document.definitions:
        operation = getattr(definition, "operation", None)
        defined = getattr(getattr(definition, "name", None), "value", None)
        if operation is not None and (name is None or defined == name):
            return operation  # type: ignore[no-any-return]
    return None
