"""A small graphql-transport-ws client (the protocol GraphQL subscriptions speak over WebSocket)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import websockets


class Subscriptions:
    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.received: dict[str, list[dict[str, Any]]] = {}
        self.errors: dict[str, Any] = {}
        self._reader: asyncio.Task[None] | None = None

    async def subscribe(self, query: str, **variables: Any) -> str:
        op_id = uuid.uuid4().hex[:8]
        self.received[op_id] = []
        message = {"id": op_id, "type": "subscribe", "payload": {"query": query, "variables": variables}}
        await self.ws.send(json.dumps(message))
        return op_id

    async def _read(self) -> None:
        async for raw in self.ws:
            message = json.loads(raw)
            if message["type"] == "next":
                self.received[message["id"]].append(message["payload"])
            elif message["type"] == "error":
                self.errors[message["id"]] = message["payload"]
            elif message["type"] == "ping":
                await self.ws.send(json.dumps({"type": "pong"}))

    async def wait_for(self, op_id: str, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
        async with asyncio.timeout(timeout):
            while len(self.received[op_id]) < count and op_id not in self.errors:
                await asyncio.sleep(0.05)
        return self.received[op_id]


@asynccontextmanager
async def connect(url: str, payload: dict[str, Any] | None = None) -> AsyncIterator[Subscriptions]:
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": payload or {}}))
        ack = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert ack["type"] == "connection_ack", ack
        subs = Subscriptions(ws)
        subs._reader = asyncio.create_task(subs._read())
        try:
            yield subs
        finally:
            subs._reader.cancel()
