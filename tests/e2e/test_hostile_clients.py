"""Hostile clients over WebSocket (issue 17, items 1–4; issue 14, item 5), against uvicorn on a
real socket: a huge message, limits bypassed over the socket, a client that never reads, the
audit log as a disk filler, close reasons.

Each test reproduces what was found: before the fix, a 15 MB document froze the server; 700
operations on one socket were all answered; a socket that did not read stalled every other
subscriber of the same subscription; 8 MB arguments went whole into the audit log; close reasons
were a Python dict's repr.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
from decimal import Decimal
from typing import Any

import httpx
import pytest
import websockets
from graphql import GraphQLError
from sqlalchemy import text

from domain.adapters.bootstrap import App, metrics
from domain.services import utcnow
from gql_api.auth import INVALID_TOKEN, access_tokens
from gql_api.schema import MAX_TOKENS
from gql_api.ws import MAX_CLOSE_REASON_BYTES, close_reason, operation_type
from tests.e2e import servers
from tests.e2e.test_websocket_protocol import PRICES, closed_with, open_socket

QUERY = "{ symbols { symbol } }"


def with_settings(app: App, **changes: Any) -> App:
    return dataclasses.replace(app, settings=app.settings.model_copy(update=changes))


def subscribe(op_id: str, query: str = PRICES, variables: dict[str, Any] | None = None) -> str:
    return json.dumps({"id": op_id, "type": "subscribe", "payload": {"query": query, "variables": variables or {}}})


async def answer(ws: Any, op_id: str) -> dict[str, Any]:
    """The first message about `op_id` (`next` or `error`), skipping others."""
    async with asyncio.timeout(10):
        while True:
            message = json.loads(await ws.recv())
            if message.get("id") == op_id and message["type"] in ("next", "error"):
                return message  # type: ignore[no-any-return]


async def ticked(db: App, ws: Any, op_id: str) -> dict[str, Any]:
    """Publish ticks until subscription `op_id` receives one (it may still be starting)."""
    async with asyncio.timeout(10):
        while True:
            await db.bus.publish_tick("BTCUSDT", Decimal("100"), utcnow())
            try:
                return await asyncio.wait_for(answer(ws, op_id), 0.2)
            except TimeoutError:
                continue


def codes(message: dict[str, Any]) -> list[str]:
    errors = message["payload"] if message["type"] == "error" else message["payload"].get("errors", [])
    return [e["extensions"]["code"] for e in errors]


# ---------------------------------------------------------------- 1. one large message


async def test_a_huge_message_is_refused_before_it_is_parsed(db: App) -> None:
    # The finding: `subscribe` with `price` repeated 2.6 million times (15 MB) froze the server 51 s.
    document = 'subscription { prices(symbols: ["BTCUSDT"]) { ' + "price " * 2_600_000 + "} }"
    async with servers.api_server(db) as host:
        ws = await open_socket(host)
        await ws.send(subscribe("big", document))
        assert await closed_with(ws) == 1009  # message too big, at once
        assert ws.close_reason == f"Message over the limit of {db.settings.max_body_bytes} bytes."
        # The server answers meanwhile: it never parsed the document.
        other = await open_socket(host)
        await other.send(subscribe("q", QUERY))
        assert (await answer(other, "q"))["type"] == "next"
        # Under the byte limit but over the token limit: an `error`, from the token-limited parse.
        wide = 'subscription { prices(symbols: ["BTCUSDT"]) { ' + "price " * 15_000 + "} }"
        await other.send(subscribe("wide", wide))
        refused = await answer(other, "wide")
        assert codes(refused) == ["GRAPHQL_VALIDATION_FAILED"] and "token" in refused["payload"][0]["message"]
        await other.close()


def test_the_operation_kind_is_read_with_the_token_limit() -> None:
    over = {"query": "{ symbols { " + "symbol " * (MAX_TOKENS + 10) + "} }"}
    error = operation_type(over)
    assert isinstance(error, GraphQLError) and f"more than {MAX_TOKENS} tokens" in error.message
    assert operation_type({"query": PRICES}) is not None


# ---------------------------------------------------------------- 2. limits bypassed over WebSocket


async def _operations_until_refused(ws: Any, limit: int) -> list[dict[str, Any]]:
    """Queries on the socket until one is refused (at most two windows' worth)."""
    answers = []
    for i in range(2 * limit + 1):
        await ws.send(subscribe(f"q{i}", QUERY))
        answers.append(await answer(ws, f"q{i}"))
        if answers[-1]["type"] == "error":
            break
    return answers


async def test_websocket_operations_count_in_the_http_rate_limit(db: App) -> None:
    # The finding: 700 operations on one socket were all answered where HTTP said 429 after 100.
    limit = 5
    limited = with_settings(db, rate_limit_per_minute=limit)
    token, _ = access_tokens(db.settings).issue(1)
    async with servers.api_server(limited) as host:
        ws = await open_socket(host, {"Authorization": f"Bearer {token}"})
        answers = await _operations_until_refused(ws, limit)
        refused = answers[-1]
        assert len(answers) > limit and codes(refused) == ["RATE_LIMITED"]
        assert 1 <= refused["payload"][0]["extensions"]["retryAfter"] <= 60
        # The socket stays open: pings are not counted.
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await ws.recv()) == {"type": "pong"}
        await ws.close()

        # The finding: with the IP's count spent over HTTP, logins over WebSocket still ran.
        async with httpx.AsyncClient(base_url=f"http://{host}") as http:
            for _ in range(2 * limit + 1):
                response = await http.post("/graphql", json={"query": QUERY})
                if response.status_code == 429:
                    break
            assert response.status_code == 429
        anonymous = await open_socket(host)
        login = 'mutation { login(apiKey: "ck_x", apiSecret: "cs_y") { accessToken } }'
        await anonymous.send(subscribe("login", login))
        assert codes(await answer(anonymous, "login")) == ["RATE_LIMITED"]
        await anonymous.close()
    keys = [k.decode() async for k in db.redis.scan_iter(match=f"{db.settings.redis_prefix}:ratelimit:*")]
    assert any(":client:1:" in k for k in keys) and any(":ip:127.0.0.1:" in k for k in keys)


async def test_subscriptions_per_connection_are_capped(db: App) -> None:
    # The finding: 2,000 subscriptions on one socket were accepted.
    async with servers.api_server(with_settings(db, ws_max_subscriptions=3)) as host:
        ws = await open_socket(host)
        for i in range(3):
            await ws.send(subscribe(f"s{i}"))
        await ws.send(subscribe("s3"))
        refused = await answer(ws, "s3")
        assert codes(refused) == ["LIMIT_EXCEEDED"] and "At most 3" in refused["payload"][0]["message"]
        # Completing one makes room.
        await ws.send(json.dumps({"id": "s0", "type": "complete"}))
        await ws.send(subscribe("s4"))
        assert (await ticked(db, ws, "s4"))["type"] == "next"
        await ws.close()


async def test_connections_per_address_and_per_client_are_capped(db: App) -> None:
    tokens = access_tokens(db.settings)
    one, two = (f"Bearer {tokens.issue(client)[0]}" for client in (1, 2))
    capped = with_settings(db, ws_max_connections_per_ip=3, ws_max_connections_per_client=1)
    async with servers.api_server(capped) as host:
        first = await open_socket(host, {"Authorization": one})
        # The same client again: refused at connection_init (try again later); another client is not.
        again = await open_socket(host, init=None)
        await again.send(json.dumps({"type": "connection_init", "payload": {"Authorization": one}}))
        assert await closed_with(again) == 1013
        assert again.close_reason == "Too many connections for this client (at most 1)."
        second = await open_socket(host, {"Authorization": two})
        anonymous = await open_socket(host)
        # Three open from this address: a fourth is closed as soon as it opens.
        fourth = await open_socket(host, init=None)
        assert await closed_with(fourth) == 1013
        assert fourth.close_reason == "Too many connections from this address (at most 3)."
        # A closed one frees its place.
        await first.close()
        await first.wait_closed()
        async with asyncio.timeout(10):
            while True:
                try:
                    replacement = await open_socket(host, {"Authorization": one})
                    break
                except (websockets.ConnectionClosed, AssertionError):
                    await asyncio.sleep(0.05)  # the server has not seen the close yet
        for ws in (second, anonymous, replacement):
            await ws.close()


# ---------------------------------------------------------------- 3. a client that never reads


async def _non_reading_socket(host: str) -> Any:
    """A WebSocket whose client never reads: a tiny receive buffer, and websockets' own buffer
    stops reading the socket after one message."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    address, port = host.split(":")
    sock.connect((address, int(port)))
    ws = await websockets.connect(
        f"ws://{host}/graphql", sock=sock, subprotocols=["graphql-transport-ws"], max_queue=1, compression=None
    )
    await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
    assert json.loads(await ws.recv()) == {"type": "connection_ack"}
    return ws


async def test_a_client_that_never_reads_does_not_stall_the_others(db: App, caplog: pytest.LogCaptureFixture) -> None:
    # The finding: one socket with a tiny receive buffer and 500 identical `prices` subscriptions,
    # never reading, held every other subscriber of that document for 75 s (the shared execution
    # awaited each send). Now it only fills its own queue, and is closed when that is full.
    subscriptions, most = 500, 5000
    slow_before = metrics.WS_SLOW_CONSUMERS._value.get()
    async with servers.api_server(with_settings(db, ws_max_subscriptions=subscriptions)) as host:
        slow = await _non_reading_socket(host)
        for i in range(subscriptions):
            await slow.send(subscribe(f"slow{i}"))
        fast = await open_socket(host)
        await fast.send(subscribe("fast"))
        await ticked(db, fast, "fast")  # the shared execution runs
        # Ticks until the kernel's buffers and then the queue (WS_QUEUE_DEPTH) of the non-reading
        # socket are full and it is closed (a few hundred; `most` is far more than the buffers
        # hold), and a few more after.
        after_close = 20
        for n in range(most):
            price = Decimal(100_000 + n)
            await db.bus.publish_tick("BTCUSDT", price, utcnow())
            # Each tick reaches the reading client, whatever the other one does.
            message = await asyncio.wait_for(answer(fast, "fast"), 10)
            assert Decimal(message["payload"]["data"]["prices"]["price"]) == price
            if metrics.WS_SLOW_CONSUMERS._value.get() > slow_before:
                after_close -= 1
                if not after_close:
                    break
        assert metrics.WS_SLOW_CONSUMERS._value.get() == slow_before + 1
        assert "does not read its messages" in caplog.text
        await fast.close()
        slow.transport.abort()


# ---------------------------------------------------------------- close reasons (issue 14, item 5)


async def test_close_reasons_are_plain_sentences(db: App) -> None:
    async with servers.api_server(db) as host:
        ws = await open_socket(host, init=None)
        await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": "Bearer garbage"}}))
        assert await closed_with(ws) == 4403
        assert ws.close_reason == INVALID_TOKEN  # not {'code': 'UNAUTHENTICATED', …}
    long = close_reason("A reason of many words, " * 20 + "é")
    assert len(long.encode()) <= MAX_CLOSE_REASON_BYTES and long.endswith("…")
    assert close_reason("Unicode — cut safely " * 10).encode().decode()  # never a broken character


# ---------------------------------------------------------------- 4. the audit log as a disk filler

LOGIN = "mutation($k: String!, $s: String!) { login(apiKey: $k, apiSecret: $s) { accessToken } }"


async def test_the_audit_log_cannot_fill_the_disk(db: App) -> None:
    # The finding: three anonymous logins with an 8 MB apiKey added 24 MiB to audit_log (the key
    # unredacted, the arguments untruncated).
    async with servers.api_server(db) as host:
        for _ in range(3):  # over WebSocket: refused before it is decoded, nothing runs
            ws = await open_socket(host)
            await ws.send(subscribe("login", LOGIN, {"k": "k" * 8_000_000, "s": "cs_x"}))
            assert await closed_with(ws) == 1009
        async with httpx.AsyncClient(base_url=f"http://{host}") as http:
            # Under the body limit but over the text limit: refused before anything runs.
            huge = {"query": LOGIN, "variables": {"k": "k" * 90_000, "s": "cs_x"}}
            body = (await http.post("/graphql", json=huge)).json()
            assert body["errors"][0]["extensions"]["code"] == "VALIDATION"
            assert "limited to 10,000 characters" in body["errors"][0]["message"]
            # Under both: recorded, the key reduced to a hint (or redacted when it is no key at all).
            for key in ("ck_" + "k" * 9_000, "ck_abcdefgh1234"):
                body = (await http.post("/graphql", json={"query": LOGIN, "variables": {"k": key, "s": "cs_x"}})).json()
                assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    async with db.engine.connect() as conn:
        query = text("SELECT arguments, pg_column_size(arguments) FROM audit_log ORDER BY id")
        rows = (await conn.execute(query)).all()
    assert [r[0] for r in rows] == [
        {"apiKey": "[redacted]", "apiSecret": "[redacted]"},
        {"apiKey": "…1234", "apiSecret": "[redacted]"},
    ]
    assert all(size < 200 for _, size in rows)
