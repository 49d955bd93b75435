"""graphql-transport-ws as served by gql_api/ws.py: the protocol's rules and close codes, and
identical subscriptions sharing one execution (each event resolved and serialized once)."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import pytest
import websockets

from domain.adapters.bootstrap import App
from domain.services import utcnow
from gql_api.auth import access_tokens
from tests.e2e import servers

PRICES = 'subscription { prices(symbols: ["BTCUSDT"]) { symbol price } }'


async def open_socket(host: str, init: dict[str, Any] | None = {}) -> Any:  # noqa: B006 - never mutated
    ws = await websockets.connect(f"ws://{host}/graphql", subprotocols=["graphql-transport-ws"])
    if init is not None:
        await ws.send(json.dumps({"type": "connection_init", "payload": init}))
        assert json.loads(await ws.recv()) == {"type": "connection_ack"}
    return ws


async def closed_with(ws: Any) -> int | None:
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), 5)
    return ws.close_code


def price(message: dict[str, Any]) -> str:
    return str(message["payload"]["data"]["prices"]["price"])


async def test_protocol_close_codes(db: App) -> None:
    async with servers.api_server(db) as host:
        ws = await open_socket(host, init=None)
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": PRICES}}))
        assert await closed_with(ws) == 4401  # subscribe before connection_init
        ws = await open_socket(host)
        await ws.send(json.dumps({"type": "connection_init"}))
        assert await closed_with(ws) == 4429  # a second connection_init
        ws = await open_socket(host)
        await ws.send("not json")
        assert await closed_with(ws) == 4400
        ws = await open_socket(host)
        for _ in range(2):
            await ws.send(json.dumps({"id": "same", "type": "subscribe", "payload": {"query": PRICES}}))
        assert await closed_with(ws) == 4409  # duplicate operation id
        async with websockets.connect(f"ws://{host}/graphql", subprotocols=["graphql-ws"]) as legacy:
            assert await closed_with(legacy) == 4406  # the legacy protocol is not spoken
        ws = await open_socket(host)
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await ws.recv()) == {"type": "pong"}
        await ws.close()


async def test_queries_run_once_and_complete(db: App) -> None:
    async with servers.api_server(db) as host:
        ws = await open_socket(host)
        await ws.send(json.dumps({"id": "q", "type": "subscribe", "payload": {"query": "{ symbols { symbol } }"}}))
        first, second = json.loads(await ws.recv()), json.loads(await ws.recv())
        assert first["type"] == "next" and {"symbol": "BTCUSDT"} in first["payload"]["data"]["symbols"]
        assert second == {"id": "q", "type": "complete"}
        await ws.send(json.dumps({"id": "bad", "type": "subscribe", "payload": {"query": "subscription { nope }"}}))
        error = json.loads(await ws.recv())
        assert error["type"] == "error" and error["payload"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
        await ws.close()


async def test_identical_subscriptions_share_one_execution(db: App) -> None:
    token, _ = access_tokens(db.settings).issue(1)
    async with servers.api_server(db) as host:
        sockets = [await open_socket(host, {"Authorization": f"Bearer {token}"}) for _ in range(5)]
        for i, ws in enumerate(sockets):
            await ws.send(json.dumps({"id": f"op{i}", "type": "subscribe", "payload": {"query": PRICES}}))
        other = await open_socket(host)
        await other.send(
            json.dumps(
                {"id": "x", "type": "subscribe", "payload": {"query": PRICES.replace("price }", "price symbol }")}}
            )
        )
        await asyncio.sleep(0.5)
        await db.bus.publish_tick("BTCUSDT", Decimal("101234.5"), utcnow())
        received = [json.loads(await asyncio.wait_for(ws.recv(), 5)) for ws in sockets]
        assert [m["id"] for m in received] == [f"op{i}" for i in range(5)]
        payloads = {json.dumps(m["payload"], sort_keys=True) for m in received}
        assert payloads == {
            json.dumps({"data": {"prices": {"symbol": "BTCUSDT", "price": "101234.5"}}}, sort_keys=True)
        }
        assert json.loads(await asyncio.wait_for(other.recv(), 5))["payload"]["data"]["prices"]["price"] == "101234.5"
        # A client's `complete` stops its operation only.
        await sockets[0].send(json.dumps({"id": "op0", "type": "complete"}))
        await asyncio.sleep(0.2)
        await db.bus.publish_tick("BTCUSDT", Decimal("101235"), utcnow())
        assert (
            json.loads(await asyncio.wait_for(sockets[1].recv(), 5))["payload"]["data"]["prices"]["price"] == "101235"
        )
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(sockets[0].recv(), 0.5)
        for ws in [*sockets, other]:
            await ws.close()
