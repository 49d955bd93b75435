"""Local receivers of alerts on 127.0.0.1: a webhook receiver that verifies signatures the way the
README tells integrators to, and a fake of Telegram's Bot API."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


def verify(secret: str, headers: Any, body: bytes, tolerance: int = 300) -> bool:
    """The README's verification: HMAC-SHA256 of "<timestamp>.<body>", compared in constant time,
    and a timestamp within `tolerance` seconds (a replay is refused)."""
    timestamp = headers.get("X-Criptoren-Timestamp", "")
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    signature = headers.get("X-Criptoren-Signature", "")
    fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) <= tolerance
    return fresh and hmac.compare_digest(signature, f"v1={expected}")


@dataclass
class Received:
    event_id: str
    body: dict[str, Any]
    answered: int
    signed: bool


@dataclass
class WebhookReceiver:
    """Records every request; `answer(body) -> status` decides the response (200 by default)."""

    secret: str = ""
    answer: Callable[[dict[str, Any]], int] = lambda _body: 200
    requests: list[Received] = field(default_factory=list)
    url: str = ""

    @property
    def accepted(self) -> list[Received]:
        return [r for r in self.requests if r.signed and 200 <= r.answered < 300]

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body = json.loads(raw)
        signed = verify(self.secret, request.headers, raw)
        status = self.answer(body) if signed else 400
        self.requests.append(Received(request.headers.get("X-Criptoren-Event-Id", ""), body, status, signed))
        return web.Response(status=status, text="ok" if status < 300 else "no")


@dataclass
class FakeTelegram:
    """Telegram's `sendMessage`: records (token, chat id, text)."""

    messages: list[tuple[str, str, str]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        payload = await request.json()
        self.messages.append((token, str(payload["chat_id"]), payload["text"]))
        return web.json_response({"ok": True, "result": {"message_id": len(self.messages)}})


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def webhook_receiver(receiver: WebhookReceiver) -> AsyncIterator[WebhookReceiver]:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    async with serving(app) as base:
        receiver.url = f"{base}/hook"
        yield receiver


@asynccontextmanager
async def fake_telegram() -> AsyncIterator[FakeTelegram]:
    telegram = FakeTelegram()
    app = web.Application()
    app.router.add_post("/bot{token}/sendMessage", telegram.handle)
    async with serving(app) as base:
        telegram.url = base
        yield telegram
