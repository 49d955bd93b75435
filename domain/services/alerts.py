"""Alerts (SPEC §4b; issue 15): a client's events reach its webhook endpoints (signed) and Telegram
chats, at least once, through an outbox and background jobs.

- The outbox is the events table itself: an event is written in the transaction of what it
  describes, with `dispatched_at` NULL. `dispatch_events` turns the undispatched events into one
  `AlertDelivery` per matching active endpoint of the event's client and marks them dispatched, in
  one transaction; the caller (a job) then enqueues one delivery job per pending delivery. A
  process that dies between that commit and the enqueue loses nothing: `due_deliveries` (the
  sweeper) finds pending deliveries whose time has come, whether or not a job was ever enqueued.
- `attempt_delivery` sends one attempt outside any transaction (a slow receiver never holds a lock
  or the engine), then records the outcome: a 2xx ends it; a 410 disables the endpoint; another
  failure is retried with exponential backoff and jitter (`backoff`) for about a day, after which
  the delivery has failed; an endpoint failing for a day is disabled. A disable is an event too
  (`alert_endpoint_disabled`, with the reason, on the strategy whose alert failed): the client sees it
  among its events, and its other endpoints are told. Attempts are idempotent in the database: a
  delivery no longer pending, or not yet due, is left alone.
- A Telegram message is one short line (`human_line`): "Bought 0.0039 BTC at 102,498.78 — Canal H4
  BTC/USDT" for a fill, the event's message for the others.
- Deliveries of one position's events reach an endpoint in event order: a delivery waits while an
  earlier event of the same position is pending for the same endpoint (events of no position: of
  the same strategy).
- Each client sees and changes only its own endpoints and deliveries (another's are NOT_FOUND).
  Secrets (signing secrets, bot tokens) are stored encrypted (`SecretCipher`); a signing secret is
  returned once, at creation or rotation, never again.
"""

from __future__ import annotations

import json
import logging
import random
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from domain import commands as cmds
from domain.errors import InvalidState, NotFound, ValidationError
from domain.events import EventType
from domain.model import AlertDelivery, AlertEndpoint, AlertEndpointKind, DeliveryStatus, StrategyEvent, Symbol
from domain.ports import AlertTransport, Clock, Page, SecretCipher, SendOutcome, UnitOfWork

log = logging.getLogger("criptoren.alerts")

# Every stored event type can be subscribed to (ORDER_UPDATED is published live, never stored).
ALERT_EVENT_TYPES = tuple(t.value for t in EventType if t is not EventType.ORDER_UPDATED)
# What an endpoint gets when it names no types: what a trader wants to hear at once.
DEFAULT_EVENT_TYPES = (
    EventType.POSITION_OPENED.value,
    EventType.POSITION_CLOSED.value,
    EventType.POSITION_PARTIALLY_SOLD.value,
    EventType.POSITION_SCHEDULED.value,
    EventType.ENTRY_SKIPPED.value,
    EventType.CHANNEL_BROKEN.value,
    EventType.ORDER_UNKNOWN.value,
    EventType.ORDER_REFUSED.value,
    EventType.SYMBOL_HALTED.value,
    EventType.SYMBOL_TRADING.value,
    EventType.TRADING_PAUSED.value,
    EventType.TRADING_RESUMED.value,
    EventType.MARKET_STREAM_DOWN.value,
    EventType.MARKET_STREAM_UP.value,
    EventType.ALERT_ENDPOINT_DISABLED.value,
)
MAX_ENDPOINTS = 10  # per client
MAX_ATTEMPTS = 14  # backoff(1..13) spans about 20 hours; the 14th failure gives up
BASE_DELAY = timedelta(seconds=15)
MAX_DELAY = timedelta(hours=4)
DISABLE_AFTER = timedelta(days=1)  # an endpoint failing this long is disabled
ORDER_WAIT = timedelta(seconds=2)  # how long a delivery waits for an earlier one of its position


def backoff(attempts: int, jitter: float) -> timedelta:
    """Delay before the next attempt after `attempts` failed ones: 30 s doubling up to 4 h, spread
    by ±20 % (`jitter` in [0, 1)) so that retries of many deliveries do not arrive together."""
    delay = min(BASE_DELAY * (1 << min(attempts, 20)), MAX_DELAY)
    return delay * (0.8 + 0.4 * jitter)


def job_id(delivery: AlertDelivery) -> str:
    """The id of the job for the delivery's next attempt: derived from (event, endpoint, attempt), so
    enqueuing it twice (the dispatcher and the sweeper) runs it once."""
    return f"alert:{delivery.event_id}:{delivery.endpoint_id}:{delivery.attempts}"


@dataclass(frozen=True)
class CreatedEndpoint:
    """An endpoint just created (or its secret rotated), with its signing secret: shown this once."""

    endpoint: AlertEndpoint
    signing_secret: str | None


@dataclass(frozen=True)
class Attempt:
    """What `attempt_delivery` did: the delivery as recorded; `waiting` when it was not sent because
    an earlier event of its position is pending (try again after `ORDER_WAIT`)."""

    delivery: AlertDelivery | None
    waiting: bool = False
    outcome: SendOutcome | None = None


def _event_types(types: Sequence[str] | None) -> list[str]:
    if not types:
        return list(DEFAULT_EVENT_TYPES)
    unknown = sorted(set(types) - set(ALERT_EVENT_TYPES))
    if unknown:
        raise ValidationError(
            f"Unknown event types: {', '.join(unknown)}. Known: {', '.join(ALERT_EVENT_TYPES)}.", field="eventTypes"
        )
    return sorted(set(types))


def _require_cipher(cipher: SecretCipher | None) -> SecretCipher:
    if cipher is None:
        raise InvalidState(
            "The server has no CRIPTOREN_SECRET_KEY, so it cannot store alert secrets encrypted: set it first."
        )
    return cipher


async def _own_endpoint(
    uow: UnitOfWork, client_id: int, endpoint_id: int, *, for_update: bool = False
) -> AlertEndpoint:
    endpoint = await uow.alerts.endpoint(endpoint_id, for_update=for_update)
    if endpoint is None or endpoint.client_id != client_id:
        raise NotFound(f"Alert endpoint {endpoint_id} not found.", entity="AlertEndpoint", id=endpoint_id)
    return endpoint


async def _add_endpoint(uow: UnitOfWork, endpoint: AlertEndpoint) -> AlertEndpoint:
    async with uow:
        if len(await uow.alerts.endpoints(endpoint.client_id)) >= MAX_ENDPOINTS:
            raise InvalidState(f"A client has at most {MAX_ENDPOINTS} alert endpoints: delete one first.")
        uow.alerts.add(endpoint)
        await uow.commit()
    return endpoint


async def create_webhook_endpoint(
    cmd: cmds.CreateWebhookEndpoint, uow: UnitOfWork, cipher: SecretCipher | None, transport: AlertTransport
) -> CreatedEndpoint:
    """A webhook endpoint with a new signing secret (returned this once). The URL must be http(s)
    and must not resolve to a loopback, private, link-local or reserved address unless the server
    allows it (SPEC §4b)."""
    types = _event_types(cmd.event_types)
    url = cmd.url.strip()
    await transport.check_url(url)
    secret = "whsec_" + secrets.token_urlsafe(32)
    endpoint = AlertEndpoint(
        client_id=cmd.client_id,
        kind=AlertEndpointKind.WEBHOOK,
        event_types=types,
        secret_encrypted=_require_cipher(cipher).encrypt(secret),
        url=url,
    )
    return CreatedEndpoint(await _add_endpoint(uow, endpoint), secret)


async def create_telegram_endpoint(
    cmd: cmds.CreateTelegramEndpoint, uow: UnitOfWork, cipher: SecretCipher | None
) -> AlertEndpoint:
    """A Telegram chat as an endpoint: the bot token is stored encrypted and never returned."""
    types = _event_types(cmd.event_types)
    token, chat = cmd.bot_token.strip(), cmd.chat_id.strip()
    if not token or ":" not in token or len(token) > 200 or any(c.isspace() or c == "/" for c in token):
        raise ValidationError("botToken must be a Telegram bot token (<bot id>:<secret>).", field="botToken")
    if not chat or len(chat) > 64 or any(c.isspace() for c in chat):
        raise ValidationError("chatId must be a Telegram chat id or @channel name.", field="chatId")
    endpoint = AlertEndpoint(
        client_id=cmd.client_id,
        kind=AlertEndpointKind.TELEGRAM,
        event_types=types,
        secret_encrypted=_require_cipher(cipher).encrypt(token),
        telegram_chat_id=chat,
    )
    return await _add_endpoint(uow, endpoint)


async def update_alert_endpoint(
    cmd: cmds.UpdateAlertEndpoint, uow: UnitOfWork, transport: AlertTransport
) -> AlertEndpoint:
    """Change an endpoint's URL (webhooks), event types or activity. Re-activating clears the reason
    it was disabled and its run of failures."""
    types = None if cmd.event_types is None else _event_types(cmd.event_types)
    url = None if cmd.url is None else cmd.url.strip()
    if url is not None:
        await transport.check_url(url)
    async with uow:
        endpoint = await _own_endpoint(uow, cmd.client_id, cmd.endpoint_id, for_update=True)
        if url is not None:
            if endpoint.kind is not AlertEndpointKind.WEBHOOK:
                raise ValidationError("Only a webhook endpoint has a URL.", field="url")
            endpoint.url = url
        if types is not None:
            endpoint.event_types = types
        if cmd.is_active is not None:
            endpoint.is_active = cmd.is_active
            if cmd.is_active:
                endpoint.disabled_reason, endpoint.failing_since = None, None
        await uow.commit()
    return endpoint


async def delete_alert_endpoint(client_id: int, endpoint_id: int, uow: UnitOfWork) -> int:
    """Delete an endpoint and its delivery log."""
    async with uow:
        await _own_endpoint(uow, client_id, endpoint_id, for_update=True)
        await uow.alerts.delete_endpoint(endpoint_id)
        await uow.commit()
    return endpoint_id


async def rotate_webhook_secret(
    client_id: int, endpoint_id: int, uow: UnitOfWork, cipher: SecretCipher | None
) -> CreatedEndpoint:
    """A new signing secret for a webhook endpoint (returned this once); the old one stops at once."""
    secret = "whsec_" + secrets.token_urlsafe(32)
    encrypted = _require_cipher(cipher).encrypt(secret)
    async with uow:
        endpoint = await _own_endpoint(uow, client_id, endpoint_id, for_update=True)
        if endpoint.kind is not AlertEndpointKind.WEBHOOK:
            raise InvalidState("Only a webhook endpoint has a signing secret.")
        endpoint.secret_encrypted = encrypted
        await uow.commit()
    return CreatedEndpoint(endpoint, secret)


async def list_endpoints(client_id: int, uow: UnitOfWork) -> Sequence[AlertEndpoint]:
    async with uow:
        return await uow.alerts.endpoints(client_id)


async def list_deliveries(client_id: int, endpoint_id: int, page: Page, uow: UnitOfWork) -> Sequence[AlertDelivery]:
    """An endpoint's delivery log, newest first."""
    async with uow:
        await _own_endpoint(uow, client_id, endpoint_id)
        return await uow.alerts.deliveries(endpoint_id, page)


async def redeliver(client_id: int, delivery_id: int, uow: UnitOfWork, now: datetime) -> AlertDelivery:
    """Send a delivery again (whatever its status), now: it becomes pending with its next attempt due."""
    async with uow:
        delivery = await uow.alerts.delivery(delivery_id, for_update=True)
        if delivery is None or delivery.client_id != client_id:
            raise NotFound(f"Alert delivery {delivery_id} not found.", entity="AlertDelivery", id=delivery_id)
        endpoint = await _own_endpoint(uow, client_id, delivery.endpoint_id)
        if not endpoint.is_active:
            raise InvalidState("The endpoint is disabled: activate it first (updateAlertEndpoint).")
        delivery.status, delivery.next_attempt_at, delivery.delivered_at = DeliveryStatus.PENDING, now, None
        await uow.commit()
    return delivery


async def deliveries_by_status(uow: UnitOfWork) -> dict[str, int]:
    """The delivery log of every client, counted by status (the API's metrics)."""
    async with uow:
        return await uow.alerts.count_by_status()


# ---------------------------------------------------------------- the outbox and the attempts


async def dispatch_events(uow: UnitOfWork, now: datetime, limit: int = 500) -> list[AlertDelivery]:
    """Take the undispatched events (oldest first), make one pending delivery per active endpoint of
    the event's client that wants its type, and mark the events dispatched — one transaction. Returns
    the new deliveries (the caller enqueues their jobs after the commit)."""
    created: list[AlertDelivery] = []
    async with uow:
        events = await uow.alerts.undispatched_events(limit)
        if not events:
            return []
        endpoints = await uow.alerts.active_endpoints({e.client_id for e in events})
        for event in events:
            assert event.id is not None
            for endpoint in endpoints:
                if endpoint.client_id == event.client_id and event.type in endpoint.event_types:
                    assert endpoint.id is not None
                    delivery = AlertDelivery(endpoint.id, event.id, event.client_id, next_attempt_at=now)
                    uow.alerts.add(delivery)
                    created.append(delivery)
            event.dispatched_at = now
        await uow.commit()
    return created


async def due_deliveries(uow: UnitOfWork, now: datetime, limit: int = 500) -> Sequence[AlertDelivery]:
    """Pending deliveries whose next attempt is due (the sweeper: enqueued again, idempotently)."""
    async with uow:
        return await uow.alerts.due_deliveries(now, limit)


def _grouped(value: object) -> str | None:
    """A figure of an event's data (a decimal string) as a person reads it: 102,498.78; 0.0039."""
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return format(number.normalize(), ",f") if number.is_finite() else None


def _fill_line(event: StrategyEvent, symbol: Symbol) -> str | None:
    """A fill in a few words, from the event's figures: "Bought 0.0039 BTC at 102,498.78"."""
    price, quantity = _grouped(event.data.get("price")), _grouped(event.data.get("quantity"))
    if price is None or quantity is None:
        return None
    bought_or_sold = f"{quantity} {symbol.base_asset} at {price}"
    if event.type == EventType.POSITION_OPENED:
        return f"Bought {bought_or_sold}"
    if event.type == EventType.POSITION_PARTIALLY_SOLD:
        return f"Sold {bought_or_sold} (part of position {event.position_id})"
    if event.type == EventType.POSITION_CLOSED:
        profit = _grouped(event.data.get("profit"))
        if profit is None:
            return f"Sold {bought_or_sold}"
        result = f"loss {profit.removeprefix('-')}" if profit.startswith("-") else f"profit {profit}"
        return f"Sold {bought_or_sold}: {result} {symbol.quote_asset}"
    return None


def human_line(event: StrategyEvent, strategy_name: str, symbol: Symbol | None) -> str:
    """The short Telegram line: "Bought 0.0039 BTC at 102,498.78 — Canal H4 BTC/USDT" for a fill,
    the event's message for the others, then the strategy (and its pair, unless its name says it)."""
    pair = f"{symbol.base_asset}/{symbol.quote_asset}" if symbol else ""
    label = strategy_name if pair in strategy_name else f"{strategy_name} {pair}".strip()
    text = (_fill_line(event, symbol) if symbol else None) or event.message.rstrip(".")
    return f"{text} — {label}" if label else text


def webhook_body(event: StrategyEvent, strategy_name: str, symbol: str) -> bytes:
    """The webhook's JSON body (a stable schema; README "Alerts")."""
    assert event.id is not None and event.created_at is not None
    body: dict[str, Any] = {
        "id": f"evt_{event.id}",
        "type": event.type,
        "created_at": event.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "client_id": event.client_id,
        "strategy_id": event.strategy_id,
        "strategy_name": strategy_name,
        "symbol": symbol,
        "position_id": event.position_id,
        "message": event.message,
        "data": event.data,
    }
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


async def _send(
    transport: AlertTransport, endpoint: AlertEndpoint, secret: str, event_id: str, body: bytes, text: str
) -> SendOutcome:
    if endpoint.kind is AlertEndpointKind.TELEGRAM:
        assert endpoint.telegram_chat_id is not None
        return await transport.send_telegram(secret, endpoint.telegram_chat_id, text)
    assert endpoint.url is not None
    return await transport.post_webhook(endpoint.url, secret, event_id, body)


def _record(
    delivery: AlertDelivery, endpoint: AlertEndpoint, outcome: SendOutcome, now: datetime, jitter: float
) -> str | None:
    """Record an attempt's outcome; returns the reason when it disabled the endpoint."""
    delivery.attempts += 1
    delivery.last_status_code, delivery.last_error = outcome.status_code, outcome.error
    if outcome.ok:
        delivery.status, delivery.delivered_at, delivery.next_attempt_at = DeliveryStatus.DELIVERED, now, None
        endpoint.failing_since = None
        return None
    endpoint.failing_since = endpoint.failing_since or now
    disabled = None
    if outcome.gone:
        disabled = _disable(endpoint, "The receiver answered 410 Gone.")
    elif now - endpoint.failing_since >= DISABLE_AFTER:
        disabled = _disable(endpoint, f"Every delivery failed for {DISABLE_AFTER}.")
    if not endpoint.is_active or delivery.attempts >= MAX_ATTEMPTS:
        delivery.status, delivery.next_attempt_at = DeliveryStatus.FAILED, None
    else:
        delivery.next_attempt_at = now + backoff(delivery.attempts, jitter)
    return disabled


def _disable(endpoint: AlertEndpoint, reason: str) -> str | None:
    if not endpoint.is_active:
        return None
    endpoint.is_active, endpoint.disabled_reason = False, reason
    log.warning("Alert endpoint %s of client %s disabled: %s", endpoint.id, endpoint.client_id, reason)
    return reason


def describe_endpoint(endpoint: AlertEndpoint) -> str:
    """An endpoint in words, without what may be secret (a webhook URL's path or query can hold a
    token): "webhook #3 to example.com", "Telegram chat -100123 (#4)"."""
    if endpoint.kind is AlertEndpointKind.TELEGRAM:
        return f"Telegram chat {endpoint.telegram_chat_id} (#{endpoint.id})"
    return f"webhook #{endpoint.id} to {urlsplit(endpoint.url or '').hostname or '?'}"


def _disabled_event(endpoint: AlertEndpoint, event: StrategyEvent, reason: str, now: datetime) -> StrategyEvent:
    """The event of an endpoint the server disabled: on the strategy whose alert it was sending (an
    event belongs to a strategy), so it shows among the client's events and reaches its other
    endpoints."""
    return StrategyEvent(
        strategy_id=event.strategy_id,
        client_id=endpoint.client_id,
        type=EventType.ALERT_ENDPOINT_DISABLED.value,
        message=f"Alerts to {describe_endpoint(endpoint)} are disabled: {reason} "
        "Fix the receiver, then activate it again (updateAlertEndpoint).",
        data={"endpoint_id": endpoint.id, "kind": endpoint.kind.value, "reason": reason, "event_id": event.id},
        created_at=now,
    )


async def attempt_delivery(
    delivery_id: int,
    uow: UnitOfWork,
    transport: AlertTransport,
    cipher: SecretCipher | None,
    clock: Clock,
    jitter: Callable[[], float] = random.random,
) -> Attempt:
    """One attempt of a pending, due delivery, sent outside any transaction; its outcome recorded."""
    async with uow:
        delivery = await uow.alerts.delivery(delivery_id)
        now = clock.now()
        if delivery is None or delivery.status is not DeliveryStatus.PENDING:
            return Attempt(delivery)
        if delivery.next_attempt_at is not None and delivery.next_attempt_at > now:
            return Attempt(delivery)
        endpoint = await uow.alerts.endpoint(delivery.endpoint_id)
        event = await uow.alerts.event(delivery.event_id)
        assert endpoint is not None and event is not None  # deleted with them (CASCADE)
        if not endpoint.is_active:
            delivery.status, delivery.next_attempt_at = DeliveryStatus.ABANDONED, None
            delivery.last_error = f"Endpoint disabled: {endpoint.disabled_reason or 'by its owner'}"
            await uow.commit()
            return Attempt(delivery)
        if await uow.alerts.earlier_pending(delivery, event):
            return Attempt(delivery, waiting=True)
        strategy = await uow.strategies.get(event.strategy_id)
        symbol = None if strategy is None else await uow.symbols.get(strategy.symbol_id)
    name = strategy.name if strategy else ""
    body = webhook_body(event, name, symbol.symbol if symbol else "")
    if cipher is None:
        outcome = SendOutcome(
            False, error="The server has no CRIPTOREN_SECRET_KEY: the endpoint's secret is unreadable."
        )
    else:
        secret = cipher.decrypt(endpoint.secret_encrypted)
        outcome = await _send(transport, endpoint, secret, f"evt_{event.id}", body, human_line(event, name, symbol))
    async with uow:
        delivery = await uow.alerts.delivery(delivery_id, for_update=True)
        if delivery is None or delivery.status is not DeliveryStatus.PENDING:
            return Attempt(delivery, outcome=outcome)  # deleted, or delivered by a concurrent attempt
        endpoint = await uow.alerts.endpoint(delivery.endpoint_id, for_update=True)
        assert endpoint is not None
        now = clock.now()
        disabled = _record(delivery, endpoint, outcome, now, jitter())
        if disabled is not None:
            uow.events.add(_disabled_event(endpoint, event, disabled, now))
        await uow.commit()
    return Attempt(delivery, outcome=outcome)


async def send_test_alert(
    client_id: int,
    endpoint_id: int,
    uow: UnitOfWork,
    transport: AlertTransport,
    cipher: SecretCipher | None,
    now: datetime,
) -> SendOutcome:
    """Send a test alert to one of the client's endpoints now and say what the receiver answered
    (nothing is recorded: a test is not an event)."""
    async with uow:
        endpoint = await _own_endpoint(uow, client_id, endpoint_id)
    secret = _require_cipher(cipher).decrypt(endpoint.secret_encrypted)
    event_id = f"evt_test_{secrets.token_hex(8)}"
    body = {
        "id": event_id, "type": "test", "created_at": now.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "client_id": client_id, "strategy_id": None, "strategy_name": "", "symbol": "", "position_id": None,
        "message": "A test alert from Criptoren.", "data": {},
    }  # fmt: skip
    raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    return await _send(
        transport, endpoint, secret, event_id, raw, "A test alert from Criptoren: alerts reach this chat."
    )
