"""Signed webhook POSTs and Telegram messages with aiohttp (SPEC §4b).

Webhooks: `X-Criptoren-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>` with the
timestamp in `X-Criptoren-Timestamp` (Unix seconds) — the Stripe/GitHub scheme, so a receiver can
verify the body and refuse replays (README "Alerts"). Safety: http(s) only; a host that resolves to
a loopback, private, link-local, reserved or multicast address is refused unless
`WEBHOOK_ALLOW_PRIVATE=true` — checked when the endpoint is saved and again before every attempt
(DNS may change); redirects are not followed; a response body is read at most `MAX_BODY` bytes; a
short timeout. Secrets are never logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import socket
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

import aiohttp

from domain.adapters.ops import metrics
from domain.errors import ValidationError
from domain.ports import SendOutcome

log = logging.getLogger("criptoren.alerts")

TIMEOUT = aiohttp.ClientTimeout(total=5, connect=3)
MAX_BODY = 4096
USER_AGENT = "Criptoren-Alerts/1"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header's value for a body sent at `timestamp`."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (
        ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_reserved or ip.is_multicast or ip.is_unspecified
    )


class HttpAlertTransport:
    """Implements `domain.ports.AlertTransport`."""

    def __init__(self, *, allow_private: bool = False, telegram_api_url: str = "https://api.telegram.org") -> None:
        self.allow_private = allow_private
        self.telegram_api_url = telegram_api_url.rstrip("/")

    async def check_url(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValidationError("url must be an http:// or https:// URL with a host.", field="url")
        if len(url) > 2000:
            raise ValidationError("url is longer than 2000 characters.", field="url")
        if parts.username or parts.password:
            raise ValidationError("url must not carry credentials.", field="url")
        if self.allow_private:
            return
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM
            )
        except OSError as e:
            raise ValidationError(f"url's host {parts.hostname!r} does not resolve ({e}).", field="url") from None
        addresses = {str(info[4][0]) for info in infos}
        refused = sorted(a for a in addresses if not _is_public(a))
        if refused:
            raise ValidationError(
                f"url's host resolves to a loopback, private, link-local or reserved address ({', '.join(refused)}): "
                "refused (WEBHOOK_ALLOW_PRIVATE=true allows it).",
                field="url",
            )

    async def post_webhook(self, url: str, secret: str, event_id: str, body: bytes) -> SendOutcome:
        try:
            await self.check_url(url)
        except ValidationError as e:
            return self._counted(SendOutcome(False, error=e.message))
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Criptoren-Event-Id": event_id,
            "X-Criptoren-Timestamp": timestamp,
            "X-Criptoren-Signature": sign(secret, timestamp, body),
        }
        return self._counted(await self._post(url, data=body, headers=headers))

    async def send_telegram(self, bot_token: str, chat_id: str, text: str) -> SendOutcome:
        url = f"{self.telegram_api_url}/bot{bot_token}/sendMessage"
        outcome = await self._post(url, json={"chat_id": chat_id, "text": text, "disable_web_page_preview": True})
        return self._counted(outcome, bot_token)

    @staticmethod
    def _counted(outcome: SendOutcome, secret: str | None = None) -> SendOutcome:
        if secret and outcome.error:  # an aiohttp error may quote the URL, which holds the bot token
            outcome = SendOutcome(outcome.ok, outcome.status_code, outcome.error.replace(secret, "***"))
        metrics.ALERT_ATTEMPTS.labels(outcome="ok" if outcome.ok else "gone" if outcome.gone else "error").inc()
        return outcome

    @staticmethod
    async def _post(
        url: str,
        *,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        json: Mapping[str, object] | None = None,
    ) -> SendOutcome:
        try:
            async with (
                aiohttp.ClientSession(timeout=TIMEOUT) as session,
                session.post(url, allow_redirects=False, data=data, headers=headers, json=json) as response,
            ):
                excerpt = (await response.content.read(MAX_BODY)).decode("utf-8", "replace")
                ok = 200 <= response.status < 300
                error = None if ok else f"HTTP {response.status}: {excerpt[:200]}".strip()
                return SendOutcome(ok, response.status, error)
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            return SendOutcome(False, error=f"{type(e).__name__}: {e}"[:300])
