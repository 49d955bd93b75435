"""Alert endpoints: create (webhook, Telegram), change, delete, rotate a webhook's signing secret,
send a test, redeliver (`domain.services.alerts`, SPEC §4b). A signing secret is returned once;
the bot token never (and the audit log redacts both)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import strawberry

from domain import commands as cmds
from domain.services import alerts
from gql_api.alerts import AlertDelivery, AlertEndpoint, EndpointId, client_of
from gql_api.audit import Audited
from gql_api.context import Info
from gql_api.permissions import IsAuthenticated
from gql_api.types import parse_id

AlertEventTypes = Annotated[
    list[str] | None,
    strawberry.argument(
        description="Event types to send (see alertEventTypes); default: fills, schedules, skipped entries, channel "
        "breaks, failed or unknown orders, halted and trading symbols, the emergency stop and resume, market stream "
        "down and up, and an alert endpoint disabled by the server."
    ),
]


@strawberry.type(description="A webhook endpoint with its signing secret: shown this once, store it now.")
class WebhookEndpointWithSecret:
    endpoint: AlertEndpoint = strawberry.field(description="The endpoint.")
    signing_secret: str = strawberry.field(
        description="HMAC-SHA256 key of the X-Criptoren-Signature header (README, Alerts). Never shown again."
    )

    @property
    def id(self) -> strawberry.ID:  # the audit log keeps the endpoint's id, never the secret
        return self.endpoint.id


@strawberry.type(description="What a receiver answered to a test alert.")
class AlertTestResult:
    ok: bool = strawberry.field(description="True when it answered 2xx (Telegram: the message was sent).")
    status_code: int | None = strawberry.field(description="Its HTTP status (null: no answer).")
    error: str | None = strawberry.field(
        description="The failure: status and the start of the body, or the network error."
    )


def _with_secret(created: alerts.CreatedEndpoint) -> WebhookEndpointWithSecret:
    assert created.signing_secret is not None
    return WebhookEndpointWithSecret(
        endpoint=AlertEndpoint.from_domain(created.endpoint), signing_secret=created.signing_secret
    )


@strawberry.type
class AlertMutations:
    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        extensions=[Audited()],
        description="Send your alerts to a webhook: signed JSON POSTs (README, Alerts). The URL must be http(s) and "
        "not resolve to a private, loopback or link-local address (VALIDATION) unless the server allows it. Returns "
        "the signing secret, this once. At most 10 endpoints.",
    )
    async def create_webhook_endpoint(
        self,
        info: Info,
        url: Annotated[
            str, strawberry.argument(description="Where to POST, e.g. https://example.com/hooks/criptoren.")
        ],
        event_types: AlertEventTypes = None,
    ) -> WebhookEndpointWithSecret:
        app = info.context.app
        cmd = cmds.CreateWebhookEndpoint(client_of(info), url, tuple(event_types or ()))
        return _with_secret(await alerts.create_webhook_endpoint(cmd, app.uow(), app.secret_box, app.alert_transport))

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        extensions=[Audited()],
        description='Send your alerts to a Telegram chat through your bot: short messages such as "Bought 0.0039 '
        'BTC at 102,498.78 — Canal H4 BTC/USDT". The bot token is stored encrypted and never returned.',
    )
    async def create_telegram_endpoint(
        self,
        info: Info,
        bot_token: Annotated[str, strawberry.argument(description="The bot's token from @BotFather (<id>:<secret>).")],
        chat_id: Annotated[str, strawberry.argument(description="The chat id (or @channel) the bot writes to.")],
        event_types: AlertEventTypes = None,
    ) -> AlertEndpoint:
        app = info.context.app
        cmd = cmds.CreateTelegramEndpoint(client_of(info), bot_token, chat_id, tuple(event_types or ()))
        return AlertEndpoint.from_domain(await alerts.create_telegram_endpoint(cmd, app.uow(), app.secret_box))

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        extensions=[Audited()],
        description="Change an endpoint: its URL (webhooks), event types, or whether it is active (activating one "
        "the server disabled clears the reason). Omitted arguments stay as they are.",
    )
    async def update_alert_endpoint(
        self,
        info: Info,
        id: EndpointId,
        url: Annotated[str | None, strawberry.argument(description="A new URL (webhooks only).")] = None,
        event_types: AlertEventTypes = None,
        is_active: Annotated[bool | None, strawberry.argument(description="Send to it (true) or not (false).")] = None,
    ) -> AlertEndpoint:
        app = info.context.app
        cmd = cmds.UpdateAlertEndpoint(
            client_of(info),
            parse_id(id, "AlertEndpoint"),
            url,
            None if event_types is None else tuple(event_types),
            is_active,
        )
        return AlertEndpoint.from_domain(await alerts.update_alert_endpoint(cmd, app.uow(), app.alert_transport))

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        extensions=[Audited()],
        description="Delete an endpoint and its delivery log. Returns its id.",
    )
    async def delete_alert_endpoint(self, info: Info, id: EndpointId) -> strawberry.ID:
        deleted = await alerts.delete_alert_endpoint(
            client_of(info), parse_id(id, "AlertEndpoint"), info.context.app.uow()
        )
        return strawberry.ID(str(deleted))

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        extensions=[Audited()],
        description="A new signing secret for a webhook endpoint, returned this once; the old one stops at once.",
    )
    async def rotate_webhook_secret(self, info: Info, id: EndpointId) -> WebhookEndpointWithSecret:
        app = info.context.app
        return _with_secret(
            await alerts.rotate_webhook_secret(
                client_of(info), parse_id(id, "AlertEndpoint"), app.uow(), app.secret_box
            )
        )

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        extensions=[Audited()],
        description='Send a test alert (type "test") to an endpoint now and report what it answered. Nothing is '
        "logged as a delivery.",
    )
    async def test_alert_endpoint(self, info: Info, id: EndpointId) -> AlertTestResult:
        app = info.context.app
        outcome = await alerts.send_test_alert(
            client_of(info), parse_id(id, "AlertEndpoint"), app.uow(), app.alert_transport, app.secret_box,
            datetime.now(UTC),
        )  # fmt: skip
        return AlertTestResult(ok=outcome.ok, status_code=outcome.status_code, error=outcome.error)

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        extensions=[Audited()],
        description="Deliver an alert again, now (whatever its status; the receiver gets the same event id). The "
        "endpoint must be active.",
    )
    async def redeliver_alert(
        self,
        info: Info,
        delivery_id: Annotated[
            strawberry.ID, strawberry.argument(description="A delivery of the log (alertDeliveries).")
        ],
    ) -> AlertDelivery:
        delivery = await alerts.redeliver(
            client_of(info), parse_id(delivery_id, "AlertDelivery"), info.context.app.uow(), datetime.now(UTC)
        )
        return AlertDelivery.from_domain(delivery)
