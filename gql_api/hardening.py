"""Abuse limits around the GraphQL endpoint:

- `BodySizeLimit`: refuses a request body over `MAX_BODY_BYTES` with HTTP 413 before it is parsed;
- `RateLimit`: at most `RATE_LIMIT_PER_MINUTE` requests a minute per client (per IP without a valid
  token), counted in Redis so that every API instance shares the count; over it, HTTP 429 with
  `Retry-After`;
- `OperationGuards`: documents over `MAX_TOKENS` tokens, `MAX_DEPTH` levels or `MAX_ALIASES`
  aliases are refused; `__schema`/`__type` are refused when `CRIPTOREN_ENV=prod`; subscriptions are
  refused over HTTP (they run over WebSocket); empty selection sets (`{}`, which graphql-core 3.3
  parses) are refused before the other rules see them; text arguments over `MAX_TEXT_LENGTH`, or
  that PostgreSQL cannot store, are refused before anything runs. Each distinct document is
  parsed and checked once (gql_api/documents.py).

`RateLimiter` is shared with the WebSocket endpoint (gql_api/ws.py), which counts each operation
as a request.

Refusals are GraphQL-shaped: `{"errors": [{"message": …, "extensions": {"code": …}}]}`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

from graphql import (
    ASTValidationRule,
    ExecutionResult,
    GraphQLError,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    ValidationRule,
)
from graphql.validation import NoSchemaIntrospectionCustomRule
from redis.exceptions import RedisError
from strawberry.extensions import SchemaExtension
from strawberry.extensions.max_aliases import create_validator as alias_limit
from strawberry.extensions.query_depth_limiter import create_validator as depth_limit

from domain.adapters.bootstrap import App
from domain.errors import Unauthenticated
from gql_api.auth import access_tokens, bearer_token
from gql_api.documents import Checked, DocumentCache

log = logging.getLogger("criptoren.api")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

RATE_WINDOW_SECONDS = 60
# The longest text argument (names, notes, keys are far shorter): longer ones are refused before
# anything runs, so they reach neither a service nor the audit log.
MAX_TEXT_LENGTH = 10_000
UNSTORABLE_TEXT = "Text arguments cannot contain NUL characters or invalid Unicode."
# The document limits: nesting depth, aliases, tokens (a document over one is refused before it runs).
MAX_DEPTH = 10
MAX_ALIASES = 30
MAX_TOKENS = 2000
DEPTH_LIMIT = depth_limit(MAX_DEPTH, None, None)
ALIAS_LIMIT = alias_limit(MAX_ALIASES)
# Every distinct document of this process, parsed and checked once (gql_api/documents.py).
DOCUMENTS = DocumentCache(MAX_TOKENS)


async def send_error(
    send: Send, status: int, code: str, message: str, headers: dict[str, str] | None = None, **extensions: Any
) -> None:
    body = json.dumps({"errors": [{"message": message, "extensions": {"code": code, **extensions}}]}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


class BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    """Refuse request bodies over `max_bytes`: by their Content-Length, or while they stream in."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, send: Send) -> None:
        await send_error(
            send, 413, "REQUEST_TOO_LARGE", f"The request body is over the limit of {self.max_bytes} bytes."
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        # ASCII digits only: str.isdigit() also takes "²", which int() then refuses (a 500).
        if length is not None and (
            not (length.strip().isascii() and length.strip().isdigit()) or int(length) > self.max_bytes
        ):
            await self._refuse(send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await self._refuse(send)


class RateLimiter:
    """Fixed one-minute windows per client (or IP), counted in Redis: `INCR` of
    `<prefix>:ratelimit:<who>:<window>`, which expires after the window. HTTP requests and WebSocket
    operations count alike, in the same counters. If Redis cannot be reached, requests pass (the API
    stays up) and the failure is logged."""

    def __init__(self, criptoren: App) -> None:
        self.criptoren = criptoren
        self._warned_at = 0.0

    def who(self, client_id: int | None, address: str | None) -> str:
        """The counter of a request: its client's when it has a valid token, else its IP address's."""
        return f"client:{client_id}" if client_id is not None else f"ip:{address or 'unknown'}"

    async def retry_after(self, who: str, now: float | None = None) -> int | None:
        """Count one request of `who`; the seconds to wait when it is over the limit, else None."""
        settings = self.criptoren.settings
        now = time.time() if now is None else now
        window = int(now // RATE_WINDOW_SECONDS)
        key = f"{settings.redis_prefix}:ratelimit:{who}:{window}"
        try:
            async with self.criptoren.redis.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                pipe.expire(key, RATE_WINDOW_SECONDS * 2)
                count, _ = await pipe.execute()
        except (RedisError, OSError) as e:
            if now - self._warned_at > 60:
                self._warned_at = now
                log.warning("Rate limiting is off: Redis is unreachable (%s)", e)
            return None
        if int(count) <= settings.rate_limit_per_minute:
            return None
        return max(1, math.ceil((window + 1) * RATE_WINDOW_SECONDS - now))

    def message(self, wait: int) -> str:
        limit = self.criptoren.settings.rate_limit_per_minute
        return f"Too many requests: at most {limit} a minute. Retry in {wait} s."


class RateLimit:
    """The `RateLimiter` on HTTP requests to `paths`: over the limit, HTTP 429 with `Retry-After`."""

    def __init__(self, app: ASGIApp, criptoren: App, paths: tuple[str, ...] = ("/graphql",)) -> None:
        self.app = app
        self.criptoren = criptoren
        self.paths = paths
        self.limiter = RateLimiter(criptoren)

    def _who(self, scope: Scope) -> str:
        client_id = None
        token = bearer_token(_header(scope, b"authorization"))
        if token:
            try:
                client_id = access_tokens(self.criptoren.settings).verify(token)
            except Unauthenticated:
                pass
        client = scope.get("client")
        return self.limiter.who(client_id, client[0] if client else None)

    async def retry_after(self, who: str, now: float | None = None) -> int | None:
        return await self.limiter.retry_after(who, now)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.paths):
            await self.app(scope, receive, send)
            return
        wait = await self.retry_after(self._who(scope))
        if wait is None:
            await self.app(scope, receive, send)
            return
        await send_error(
            send, 429, "RATE_LIMITED", self.limiter.message(wait), headers={"Retry-After": str(wait)}, retryAfter=wait
        )


class SubscriptionsOverWebSocketOnly(ValidationRule):
    def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
        if node.operation == OperationType.SUBSCRIPTION:
            self.report_error(
                GraphQLError("Subscriptions run over WebSocket (graphql-transport-ws) at /graphql, not HTTP.", node)
            )


class NoEmptySelectionSets(ValidationRule):
    def enter_selection_set(self, node: SelectionSetNode, *_: Any) -> None:
        if not node.selections:
            self.report_error(GraphQLError("Syntax Error: a selection set cannot be empty.", node))


def _text_problem(text: str) -> str | None:
    """Why a text argument is refused: too long to be anything but abuse (it would also be written
    to the audit log), or text PostgreSQL cannot store (a NUL character, a lone surrogate)."""
    if len(text) > MAX_TEXT_LENGTH:
        return f"Text arguments are limited to {MAX_TEXT_LENGTH:,} characters."
    if "\x00" in text:
        return UNSTORABLE_TEXT
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return UNSTORABLE_TEXT
    return None


def _variables_problem(value: Any) -> str | None:
    if isinstance(value, str):
        return _text_problem(value)
    if isinstance(value, dict):
        for k, v in value.items():
            problem = _variables_problem(k) or _variables_problem(v)
            if problem:
                return problem
    if isinstance(value, list):
        for v in value:
            problem = _variables_problem(v)
            if problem:
                return problem
    return None


class OperationGuards(SchemaExtension):
    """The document's limits and the checks that depend on the request, before anything runs.

    Each distinct document is parsed and checked once (`DOCUMENTS`, gql_api/documents.py): the
    token limit at parsing, the depth and alias limits (and the schema's rules) at validation, the
    string literals' check; later requests with the same text reuse what the full check answered.
    """

    checked: Checked | None = None

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context
        rules: list[type[ASTValidationRule]] = [DEPTH_LIMIT, ALIAS_LIMIT]
        app = getattr(context.context, "app", None)
        if app is not None and app.settings.is_prod:
            rules.append(NoSchemaIntrospectionCustomRule)
        request = getattr(context.context, "request", None)
        if request is not None and request.scope.get("type") == "http":
            rules.append(SubscriptionsOverWebSocketOnly)
        context.validation_rules = (*context.validation_rules, *rules)
        # For Strawberry's own parse, when ours refused the text (it then answers the error).
        context.parse_options["max_tokens"] = MAX_TOKENS
        yield

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.graphql_document is None and context.query:
            try:
                self.checked = DOCUMENTS.check(context.query)
            except GraphQLError:
                pass  # over the token limit, or not GraphQL: Strawberry parses it and reports why
            else:
                context.graphql_document = self.checked.document
        yield
        if self.checked is None and context.graphql_document is not None:  # parsed by someone else
            self.checked = Checked.of(context.graphql_document)

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        if self.checked is not None:
            # graphql-core 3.3 parses `{}`; the depth limiter then crashes on it. Such a document is
            # invalid whatever else it holds: report only that.
            rules = (NoEmptySelectionSets,) if self.checked.has_empty_selection_set else context.validation_rules
            context.pre_execution_errors = self.checked.validate(context.schema._schema, rules)
        yield

    def on_execute(self) -> Iterator[None]:
        # A result set here replaces the execution: nothing runs.
        context = self.execution_context
        problem = _variables_problem(context.variables)
        if problem is None and self.checked is not None:
            problem = next((p for text in self.checked.strings if (p := _text_problem(text))), None)
        if problem:
            context.result = ExecutionResult(
                data=None, errors=[GraphQLError(problem, extensions={"code": "VALIDATION"})]
            )
        yield
