"""Alerts end to end (issue 15): endpoints managed over GraphQL, a `criptoren worker` process on a
replayed market, and a receiver on 127.0.0.1 that verifies every signature: the fills arrive signed,
once each and in order per position; the delivery log shows them; a redelivery sends the same
event again; a test alert reports the receiver's answer."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from decimal import Decimal

import httpx

from domain.adapters.bootstrap import App
from domain.adapters.seed import seed_demo
from tests.alert_receivers import WebhookReceiver, webhook_receiver
from tests.e2e import servers
from tests.e2e.conftest import GraphQLClient
from tests.e2e.test_live_loop import REPLAY

FILLS = ["position_opened", "position_closed", "position_partially_sold"]
CREATE = """mutation($u: String!, $t: [String!]) {
  createWebhookEndpoint(url: $u, eventTypes: $t) { endpoint { id url eventTypes isActive } signingSecret } }"""
LOG = """query($e: ID!) { alertDeliveries(endpointId: $e, first: 50) {
  nodes { id eventId status attempts lastStatusCode lastError nextAttemptAt deliveredAt } } }"""


async def until(check: Callable[[], bool], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.2)


async def test_a_replayed_markets_fills_reach_a_webhook_signed_and_in_order(
    db: App, gql: GraphQLClient, http: httpx.AsyncClient
) -> None:
    await seed_demo(db.uow, db.exchange)
    async with webhook_receiver(WebhookReceiver()) as receiver:
        created = (await gql.data(CREATE, u=receiver.url, t=FILLS))["createWebhookEndpoint"]
        receiver.secret = created["signingSecret"]
        endpoint = created["endpoint"]
        assert endpoint["isActive"] and endpoint["eventTypes"] == sorted(FILLS)
        listed = (await gql.data("{ alertEndpoints { id url kind } }"))["alertEndpoints"]
        assert listed == [{"id": endpoint["id"], "url": receiver.url, "kind": "webhook"}]  # no secret in sight

        test = await gql.data(
            "mutation($e: ID!) { testAlertEndpoint(id: $e) { ok statusCode error } }", e=endpoint["id"]
        )
        assert test["testAlertEndpoint"] == {"ok": True, "statusCode": 200, "error": None}
        assert receiver.accepted[0].body["type"] == "test"

        worker = servers.start_worker(
            db, **REPLAY, REPLAY_SPEED="0", CRIPTOREN_SECRET_KEY=str(db.settings.criptoren_secret_key),
            WEBHOOK_ALLOW_PRIVATE="true",
        )  # fmt: skip
        try:
            # The replay buys and sells twice (tests/e2e/test_live_loop.py).
            await until(lambda: sum(r.body["type"] == "position_closed" for r in receiver.accepted) >= 2)
            log = (await gql.data(LOG, e=endpoint["id"]))["alertDeliveries"]["nodes"]
            assert log and all(d["status"] == "delivered" and d["attempts"] == 1 for d in log), log
            assert all(d["lastStatusCode"] == 200 and d["nextAttemptAt"] is None for d in log)

            again = log[-1]  # the oldest: the first buy
            redelivered = await gql.data(
                "mutation($d: ID!) { redeliverAlert(deliveryId: $d) { id status nextAttemptAt } }", d=again["id"]
            )
            assert redelivered["redeliverAlert"]["status"] == "pending"
            await until(lambda: Counter(r.event_id for r in receiver.accepted)[again["eventId"]] == 2)
        finally:
            servers.stop(worker)

    assert all(r.signed for r in receiver.requests)
    fills = [r.body for r in receiver.accepted if r.body["type"] != "test"]
    once = [b for b in fills if b["id"] != again["eventId"]]
    assert all(n == 1 for n in Counter(b["id"] for b in once).values())  # each event once (but the redelivered)
    for position in {b["position_id"] for b in fills}:
        mine = [b for b in once if b["position_id"] == position]
        assert [b["type"] for b in mine] == sorted(
            (b["type"] for b in mine), key=["position_opened", "position_closed"].index
        )
        ids = [int(b["id"].removeprefix("evt_")) for b in mine]
        assert ids == sorted(ids)
    scraped = (await http.get("/metrics")).text
    delivered = sum(1 for r in receiver.accepted if r.body["type"] != "test") - 1  # the redelivery: one row
    assert f'criptoren_alert_deliveries_by_status{{status="delivered"}} {float(delivered)}' in scraped
    assert 'criptoren_alert_deliveries_by_status{status="failed"} 0.0' in scraped
    assert fills[0]["message"].startswith("Bought") and Decimal(fills[0]["data"]["price"]) == Decimal("102498.78")


async def test_bad_endpoints_are_refused_with_a_code(db: App, gql: GraphQLClient) -> None:
    await seed_demo(db.uow, db.exchange)
    db.settings.webhook_allow_private = False
    try:
        error = await gql.error(CREATE, u="http://127.0.0.1:8080/hook", t=None)
    finally:
        db.settings.webhook_allow_private = True
    assert error["extensions"]["code"] == "VALIDATION" and "WEBHOOK_ALLOW_PRIVATE" in error["message"]
    error = await gql.error(CREATE, u="https://example.com/hook", t=["nope"])
    assert error["extensions"]["code"] == "VALIDATION" and "nope" in error["message"]
    assert (await gql.data("{ alertEndpoints { id } }"))["alertEndpoints"] == []


async def test_secrets_are_never_returned_again_nor_audited(db: App, gql: GraphQLClient) -> None:
    from sqlalchemy import text

    await seed_demo(db.uow, db.exchange)
    token = "123456:telegram-bot-secret"
    created = await gql.data(CREATE, u="http://127.0.0.1:9/hook", t=None)
    secret = created["createWebhookEndpoint"]["signingSecret"]
    endpoint = created["createWebhookEndpoint"]["endpoint"]["id"]
    await gql.data('mutation($t: String!) { createTelegramEndpoint(botToken: $t, chatId: "42") { id } }', t=token)
    rotated = await gql.data("mutation($e: ID!) { rotateWebhookSecret(id: $e) { signingSecret } }", e=endpoint)
    assert rotated["rotateWebhookSecret"]["signingSecret"] not in (secret, None)
    listed = await gql.execute(
        "{ alertEndpoints { id kind url telegramChatId eventTypes isActive disabledReason failingSince createdAt } }"
    )
    async with db.engine.connect() as conn:
        audit = [r[0] for r in await conn.execute(text("SELECT row_to_json(a)::text FROM audit_log a"))]
        stored = [r[0] for r in await conn.execute(text("SELECT row_to_json(e)::text FROM alert_endpoints e"))]
    assert any("createTelegramEndpoint" in a for a in audit) and any("rotateWebhookSecret" in a for a in audit)
    for text_ in (str(listed), *audit, *stored):
        for leaked in (secret, rotated["rotateWebhookSecret"]["signingSecret"], token):
            assert leaked not in text_
