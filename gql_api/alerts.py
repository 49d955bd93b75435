"""Alerts in the API (SPEC §4b): the types of endpoints and deliveries, and their queries. The
mutations are in `gql_api.mutations.alerts`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from domain import model
from domain.services import alerts
from gql_api.context import Info
from gql_api.permissions import IsAuthenticated
from gql_api.types import DEFAULT_PAGE, After, Connection, First, connection, page, parse_id


@strawberry.type(
    description="Where your alerts go: a webhook URL (signed POSTs) or a Telegram chat. Secrets (the signing "
    "secret, the bot token) are never returned here."
)
class AlertEndpoint:
    id: strawberry.ID = strawberry.field(description="Endpoint id.")
    kind: str = strawberry.field(description='"webhook" or "telegram".')
    url: str | None = strawberry.field(description="The webhook's URL (null for Telegram).")
    telegram_chat_id: str | None = strawberry.field(description="The Telegram chat (null for webhooks).")
    event_types: list[str] = strawberry.field(description="The event types sent to it, e.g. position_opened.")
    is_active: bool = strawberry.field(
        description="False: nothing is sent (disabled by you, by a 410, or a day of failures)."
    )
    disabled_reason: str | None = strawberry.field(description="Why the server disabled it (null if active or by you).")
    failing_since: datetime | None = strawberry.field(
        description="Start of its current run of failed attempts (UTC); a day of them disables it."
    )
    created_at: datetime | None = strawberry.field(description="When it was created (UTC).")

    @classmethod
    def from_domain(cls, e: model.AlertEndpoint) -> AlertEndpoint:
        return cls(
            id=strawberry.ID(str(e.id)), kind=e.kind.value, url=e.url, telegram_chat_id=e.telegram_chat_id,
            event_types=list(e.event_types), is_active=e.is_active, disabled_reason=e.disabled_reason,
            failing_since=e.failing_since, created_at=e.created_at,
        )  # fmt: skip


@strawberry.type(description="One event for one endpoint: its attempts and outcome (the delivery log).")
class AlertDelivery:
    id: strawberry.ID = strawberry.field(description="Delivery id (for redeliverAlert).")
    endpoint_id: strawberry.ID = strawberry.field(description="The endpoint.")
    event_id: str = strawberry.field(description='The event\'s id as sent in the body and headers, "evt_<id>".')
    status: str = strawberry.field(
        description="pending (waiting for an attempt), delivered (a 2xx), failed (out of retries, or 410), "
        "abandoned (the endpoint was disabled first)."
    )
    attempts: int = strawberry.field(description="Attempts made.")
    last_status_code: int | None = strawberry.field(description="The receiver's last HTTP status (null: no answer).")
    last_error: str | None = strawberry.field(
        description="The last failure: status and the start of the body, or the network error."
    )
    next_attempt_at: datetime | None = strawberry.field(description="When the next attempt is due (UTC), if pending.")
    delivered_at: datetime | None = strawberry.field(description="When a 2xx arrived (UTC).")
    created_at: datetime | None = strawberry.field(description="When the event was dispatched to this endpoint (UTC).")

    @classmethod
    def from_domain(cls, d: model.AlertDelivery) -> AlertDelivery:
        return cls(
            id=strawberry.ID(str(d.id)), endpoint_id=strawberry.ID(str(d.endpoint_id)), event_id=f"evt_{d.event_id}",
            status=d.status.value, attempts=d.attempts, last_status_code=d.last_status_code, last_error=d.last_error,
            next_attempt_at=d.next_attempt_at, delivered_at=d.delivered_at, created_at=d.created_at,
        )  # fmt: skip


def client_of(info: Info) -> int:
    assert info.context.client_id is not None  # IsAuthenticated
    return info.context.client_id


EndpointId = Annotated[strawberry.ID, strawberry.argument(description="One of your alert endpoints.")]


@strawberry.type
class AlertQueries:
    @strawberry.field(permission_classes=[IsAuthenticated], description="Your alert endpoints (webhooks, Telegram).")
    async def alert_endpoints(self, info: Info) -> list[AlertEndpoint]:
        return [
            AlertEndpoint.from_domain(e) for e in await alerts.list_endpoints(client_of(info), info.context.app.uow())
        ]

    @strawberry.field(
        permission_classes=[IsAuthenticated],
        description="An endpoint's delivery log, newest first: status, attempts, last response and next retry.",
    )
    async def alert_deliveries(
        self, info: Info, endpoint_id: EndpointId, first: First = DEFAULT_PAGE, after: After = None
    ) -> Connection[AlertDelivery]:
        p = page(info, first, after)
        rows = await alerts.list_deliveries(
            client_of(info), parse_id(endpoint_id, "AlertEndpoint"), p, info.context.app.uow()
        )
        return connection(list(rows), first, AlertDelivery.from_domain)

    @strawberry.field(
        permission_classes=[IsAuthenticated],
        description="The event types an alert endpoint can ask for (the events' `type`).",
    )
    def alert_event_types(self) -> list[str]:
        return list(alerts.ALERT_EVENT_TYPES)

    @strawberry.field(
        permission_classes=[IsAuthenticated],
        description="The event types an endpoint gets when it names none: what a trader wants to hear at once.",
    )
    def alert_default_event_types(self) -> list[str]:
        return list(alerts.DEFAULT_EVENT_TYPES)
