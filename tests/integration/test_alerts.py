"""Alerts (SPEC §4b, issue 15) on PostgreSQL, with receivers on 127.0.0.1 that verify signatures:
the outbox and its dispatch, signed deliveries in order per position, retries with backoff until a
2xx (each event accepted once, under one id), a dead process between commit and enqueue, 410
disabling an endpoint, private URLs refused without WEBHOOK_ALLOW_PRIVATE, Telegram messages."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
from arq import ArqRedis, create_pool
from arq.connections import RedisSettings

from domain import commands as cmds
from domain.adapters.alerts import HttpAlertTransport
from domain.adapters.bootstrap import App
from domain.adapters.seed import seed_demo
from domain.errors import NotFound, ValidationError
from domain.events import EventType
from domain.model import AlertDelivery, DeliveryStatus, StrategyEvent
from domain.ports import Page
from domain.services import alerts
from tests.alert_receivers import WebhookReceiver, fake_telegram, webhook_receiver
from tests.integration.test_trading_pause import move
from workers import alerts as alert_jobs

FILLS = ["position_opened", "position_closed", "position_partially_sold"]


class FakeClock:
    def __init__(self) -> None:
        self.at = datetime.now(UTC)

    def now(self) -> datetime:
        return self.at


TRANSPORT = HttpAlertTransport(allow_private=True)


async def webhook(db: App, receiver: WebhookReceiver, client_id: int = 1, types: tuple[str, ...] = ()) -> int:
    created = await alerts.create_webhook_endpoint(
        cmds.CreateWebhookEndpoint(client_id, receiver.url, types), db.uow(), db.secret_box, TRANSPORT
    )
    assert created.signing_secret and created.endpoint.id is not None
    receiver.secret = created.signing_secret
    return created.endpoint.id


async def deliver_all(db: App, clock: FakeClock, transport: HttpAlertTransport = TRANSPORT) -> None:
    """What the jobs do: dispatch, then attempt every due delivery — in a random order, as
    concurrent jobs might — until none is due; between rounds time moves past the backoff. Each round
    dispatches first, as the cron does (an attempt may record an event: an endpoint disabled)."""
    for _ in range(100):
        await alerts.dispatch_events(db.uow(), clock.now())
        due = list(await alerts.due_deliveries(db.uow(), clock.now()))
        random.shuffle(due)
        sent = 0
        for delivery in due:
            assert delivery.id is not None
            attempt = await alerts.attempt_delivery(delivery.id, db.uow(), transport, db.secret_box, clock)
            sent += attempt.outcome is not None
        if not sent:  # nothing due but deliveries waiting for their retry (or for an earlier one)
            async with db.uow() as uow:
                endpoints = await uow.alerts.endpoints(1)
                logged = [d for e in endpoints for d in await uow.alerts.deliveries(e.id, Page(100))]  # type: ignore[arg-type]
            if not any(d.status is DeliveryStatus.PENDING for d in logged):
                return
            clock.at += alerts.MAX_DELAY * 1.3
    raise AssertionError("deliveries never settled")


async def disabled_events(db: App) -> list[StrategyEvent]:
    async with db.uow() as uow:
        return list(await uow.events.list(Page(10), types=[EventType.ALERT_ENDPOINT_DISABLED.value]))


async def deliveries(db: App, endpoint_id: int) -> list[AlertDelivery]:
    async with db.uow() as uow:
        return list(reversed(await uow.alerts.deliveries(endpoint_id, Page(100))))


async def trade_a_cycle(db: App) -> None:
    """Buy at the entry, then sell at the exit (the demo channel, SPEC §7), twice."""
    await move(db, "101000", "103000", "109000", "108000")
    await move(db, "108000", "100000", "103000", "109000", "108000")


async def test_fills_arrive_signed_once_each_and_in_order_per_position(db: App) -> None:
    await seed_demo(db.uow, db.exchange)
    async with webhook_receiver(WebhookReceiver()) as receiver:
        endpoint_id = await webhook(db, receiver, types=tuple(FILLS))
        await trade_a_cycle(db)
        await deliver_all(db, FakeClock())

    assert receiver.requests and all(r.signed for r in receiver.requests)
    bodies = [r.body for r in receiver.accepted]
    assert [b["type"] for b in bodies].count("position_opened") == 2
    assert [b["type"] for b in bodies].count("position_closed") == 2
    assert Counter(r.event_id for r in receiver.accepted).most_common(1)[0][1] == 1  # each event once
    assert all(r.event_id == r.body["id"] for r in receiver.accepted)
    for position in {b["position_id"] for b in bodies}:
        ids = [int(b["id"].removeprefix("evt_")) for b in bodies if b["position_id"] == position]
        assert ids == sorted(ids), "a position's events arrive in order"
        assert [b["type"] for b in bodies if b["position_id"] == position] == ["position_opened", "position_closed"]
    body = bodies[0]
    assert set(body) == {
        "id", "type", "created_at", "client_id", "strategy_id", "strategy_name", "symbol", "position_id",
        "message", "data",
    }  # fmt: skip
    assert body["symbol"] == "BTCUSDT" and body["created_at"].endswith("Z") and body["message"].startswith("Bought")
    assert all(d.status is DeliveryStatus.DELIVERED and d.attempts == 1 for d in await deliveries(db, endpoint_id))
    # Only the types asked for were dispatched (the seed's strategy_created, capital_allocated were not).
    assert {b["type"] for b in bodies} <= set(FILLS)


async def test_a_receiver_failing_three_times_gets_each_event_once_as_a_success(db: App) -> None:
    await seed_demo(db.uow, db.exchange)
    failures: Counter[str] = Counter()

    def answer(body: dict) -> int:  # type: ignore[type-arg]
        failures[body["id"]] += 1
        return 503 if failures[body["id"]] <= 3 else 200

    clock = FakeClock()
    async with webhook_receiver(WebhookReceiver(answer=answer)) as receiver:
        endpoint_id = await webhook(db, receiver, types=tuple(FILLS))
        await move(db, "101000", "103000", "109000", "108000")
        await deliver_all(db, clock)

    accepted = Counter(r.event_id for r in receiver.accepted)
    assert len(accepted) == 2 and set(accepted.values()) == {1}
    assert all(n == 4 for n in Counter(r.event_id for r in receiver.requests).values())  # 3 failures, 1 success
    for delivery in await deliveries(db, endpoint_id):
        assert delivery.status is DeliveryStatus.DELIVERED and delivery.attempts == 4
        assert delivery.last_status_code == 200 and delivery.last_error is None
    async with db.uow() as uow:
        endpoint = await uow.alerts.endpoint(endpoint_id)
    assert endpoint is not None and endpoint.is_active and endpoint.failing_since is None


def test_the_backoff_spans_about_a_day() -> None:
    for jitter in (0.0, 0.5, 0.999):
        total = sum((alerts.backoff(n, jitter) for n in range(1, alerts.MAX_ATTEMPTS)), timedelta())
        assert timedelta(hours=15) < total < timedelta(hours=30), total
    assert alerts.backoff(1, 0.0) < alerts.backoff(2, 0.0) < alerts.backoff(3, 0.0)
    assert alerts.backoff(1, 0.0) != alerts.backoff(1, 0.9)  # jitter spreads retries


async def test_a_process_dying_between_commit_and_enqueue_loses_nothing(db: App) -> None:
    """The dispatch committed its deliveries, no job was enqueued (the process died): the sweeper
    enqueues them — once, whatever how often it runs — and the job delivers."""
    await seed_demo(db.uow, db.exchange)
    pool = await create_pool(
        RedisSettings.from_dsn(str(db.settings.redis_url)), default_queue_name=f"{db.settings.redis_prefix}:queue"
    )
    try:
        async with webhook_receiver(WebhookReceiver()) as receiver:
            await webhook(db, receiver, types=("position_opened",))
            await move(db, "101000", "103000")
            (delivery,) = await alerts.dispatch_events(db.uow(), datetime.now(UTC))  # committed; then "killed"
            assert await pool.zcard(f"{db.settings.redis_prefix}:queue") == 0

            ctx = {"app": db, "redis": pool}
            assert await alert_jobs.dispatch_alerts(ctx) == 1  # the sweeper finds it
            assert await alert_jobs.dispatch_alerts(ctx) == 1  # ... and again, but the job id is the same
            queued = await pool.queued_jobs(queue_name=f"{db.settings.redis_prefix}:queue")
            assert [j.job_id for j in queued] == [alert_jobs.job_id(pool.default_queue_name, delivery)]
            assert [(j.function, j.args) for j in queued] == [("deliver_alert", (delivery.id,))]

            assert await alert_jobs.deliver_alert(ctx, delivery.id) == "delivered"
            assert await alert_jobs.deliver_alert(ctx, delivery.id) == "delivered"  # a re-run sends nothing
        assert len(receiver.accepted) == 1 and len(receiver.requests) == 1
    finally:
        await pool.delete(f"{db.settings.redis_prefix}:queue")
        for key in await pool.keys(f"arq:*{db.settings.redis_prefix}:queue:alert:*"):
            await pool.delete(key)
        await pool.aclose()


async def test_a_committed_event_wakes_the_dispatcher_up(db: App) -> None:
    """No cron runs here: only the wake-up — the event published on Redis once committed — can have
    dispatched the event and enqueued its delivery's job."""
    from domain.services import trading_pause

    await seed_demo(db.uow, db.exchange)
    queue = f"{db.settings.redis_prefix}:queue"
    pool = await create_pool(RedisSettings.from_dsn(str(db.settings.redis_url)), default_queue_name=queue)
    stop = asyncio.Event()
    ctx = {"app": db, "redis": pool}
    listener = asyncio.create_task(alert_jobs.dispatch_on_events(ctx, stop))
    try:
        async with webhook_receiver(WebhookReceiver()) as receiver:
            await webhook(db, receiver)  # the default types: the emergency stop among them
            channel = db.bus.channel("events")
            await eventually(lambda: _subscribed(db, channel))
            await trading_pause.pause_trading(cmds.PauseTrading(1), db.uow, db.exchange)
            await eventually(lambda: _queued(pool, queue))
            (job,) = await pool.queued_jobs(queue_name=queue)
            assert job.function == "deliver_alert"
            assert await alert_jobs.deliver_alert(ctx, *job.args) == "delivered"
        assert [r.body["type"] for r in receiver.accepted] == ["trading_paused"]
    finally:
        stop.set()
        await listener
        await pool.delete(queue)
        for key in await pool.keys(f"arq:*{queue}:alert:*"):
            await pool.delete(key)
        await pool.aclose()


async def _subscribed(db: App, channel: str) -> bool:
    return bool((await db.redis.pubsub_numsub(channel))[0][1])


async def _queued(pool: ArqRedis, queue: str) -> bool:
    return bool(await pool.queued_jobs(queue_name=queue))


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_410_disables_the_endpoint(db: App) -> None:
    await seed_demo(db.uow, db.exchange)
    async with webhook_receiver(WebhookReceiver(answer=lambda _b: 410)) as receiver:
        endpoint_id = await webhook(db, receiver, types=tuple(FILLS))
        await move(db, "101000", "103000", "109000", "108000")
        await deliver_all(db, FakeClock())
    assert len(receiver.requests) == 1  # the first 410 ended it: the later event was not sent
    first, second = await deliveries(db, endpoint_id)
    assert (first.status, first.last_status_code, first.attempts) == (DeliveryStatus.FAILED, 410, 1)
    assert second.status is DeliveryStatus.ABANDONED and second.attempts == 0
    async with db.uow() as uow:
        endpoint = await uow.alerts.endpoint(endpoint_id)
    assert endpoint is not None and not endpoint.is_active and "410" in (endpoint.disabled_reason or "")
    (event,) = await disabled_events(db)
    assert event.data == {"endpoint_id": endpoint_id, "kind": "webhook", "reason": "The receiver answered 410 Gone.",
                          "event_id": first.event_id}  # fmt: skip
    assert event.strategy_id == 1 and event.client_id == 1
    assert "webhook #" in event.message and "127.0.0.1" in event.message and "/hook" not in event.message


async def test_an_endpoint_failing_for_a_day_is_disabled(db: App) -> None:
    await seed_demo(db.uow, db.exchange)
    clock = FakeClock()
    async with webhook_receiver(WebhookReceiver(answer=lambda _b: 500)) as receiver:
        endpoint_id = await webhook(db, receiver, types=("position_opened",))
        await move(db, "101000", "103000")
        await deliver_all(db, clock)
    (delivery,) = await deliveries(db, endpoint_id)
    assert delivery.status is DeliveryStatus.FAILED and 1 < delivery.attempts <= alerts.MAX_ATTEMPTS
    assert len(receiver.requests) == delivery.attempts
    async with db.uow() as uow:
        endpoint = await uow.alerts.endpoint(endpoint_id)
    assert endpoint is not None and not endpoint.is_active and "failed" in (endpoint.disabled_reason or "")
    (event,) = await disabled_events(db)  # once, though later attempts failed too
    assert event.data["reason"] == endpoint.disabled_reason and event.data["endpoint_id"] == endpoint_id


async def test_a_disabled_endpoint_is_an_event_that_the_other_endpoints_hear(db: App) -> None:
    """A webhook gone (410): the client's Telegram chat is told, once, with the reason; re-activated
    by its owner and disabled again, it is told again."""
    await seed_demo(db.uow, db.exchange)
    async with webhook_receiver(WebhookReceiver(answer=lambda _b: 410)) as receiver, fake_telegram() as telegram:
        transport = HttpAlertTransport(allow_private=True, telegram_api_url=telegram.url)
        gone = await webhook(db, receiver, types=("position_opened",))
        await alerts.create_telegram_endpoint(
            cmds.CreateTelegramEndpoint(1, "123456:ABC-secret-token", "-100777"), db.uow(), db.secret_box
        )  # the default types
        await move(db, "101000", "103000")
        await deliver_all(db, FakeClock(), transport)
        await alerts.update_alert_endpoint(cmds.UpdateAlertEndpoint(1, gone, is_active=True), db.uow(), transport)
        await move(db, "103000", "109000", "108000", "100000", "103000")  # sold, then bought again
        await deliver_all(db, FakeClock(), transport)
    texts = [text for _, _, text in telegram.messages]
    disabled = [t for t in texts if "disabled" in t]
    assert len(disabled) == 2 and len(await disabled_events(db)) == 2
    assert disabled[0].startswith(f"Alerts to webhook #{gone} to 127.0.0.1 are disabled: The receiver answered 410")
    assert disabled[0].endswith(" — Canal H4 BTC/USDT")
    assert len(receiver.requests) == 2  # one 410 each time


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook", "http://localhost/hook", "http://10.1.2.3/", "http://192.168.0.10/",
        "http://169.254.169.254/latest/meta-data", "http://[::1]/", "http://0.0.0.0/", "http://224.0.0.1/",
        "http://[::ffff:127.0.0.1]/",
    ],
)  # fmt: skip
async def test_a_private_url_is_refused_without_the_flag(db: App, url: str) -> None:
    strict = HttpAlertTransport(allow_private=False)
    with pytest.raises(ValidationError, match="refused"):
        await alerts.create_webhook_endpoint(cmds.CreateWebhookEndpoint(1, url), db.uow(), db.secret_box, strict)
    await TRANSPORT.check_url(url)  # allowed with WEBHOOK_ALLOW_PRIVATE=true


async def test_bad_urls_and_types_are_refused(db: App) -> None:
    for url in ("ftp://example.com/", "not a url", "http://user:pw@example.com/"):
        with pytest.raises(ValidationError):
            await alerts.create_webhook_endpoint(cmds.CreateWebhookEndpoint(1, url), db.uow(), db.secret_box, TRANSPORT)
    with pytest.raises(ValidationError, match="Unknown event types: nope"):
        await alerts.create_webhook_endpoint(
            cmds.CreateWebhookEndpoint(1, "http://127.0.0.1/", ("nope",)), db.uow(), db.secret_box, TRANSPORT
        )


async def test_a_private_url_is_refused_again_at_delivery(db: App) -> None:
    """Saved while allowed (or its DNS changed since): a strict server does not send to it."""
    await seed_demo(db.uow, db.exchange)
    async with webhook_receiver(WebhookReceiver()) as receiver:
        endpoint_id = await webhook(db, receiver, types=("position_opened",))
        await move(db, "101000", "103000")
        clock = FakeClock()
        await alerts.dispatch_events(db.uow(), clock.now())
        (delivery,) = await deliveries(db, endpoint_id)
        strict = HttpAlertTransport(allow_private=False)
        await alerts.attempt_delivery(delivery.id, db.uow(), strict, db.secret_box, clock)  # type: ignore[arg-type]
    assert receiver.requests == []
    (delivery,) = await deliveries(db, endpoint_id)
    assert delivery.status is DeliveryStatus.PENDING and "refused" in (delivery.last_error or "")


async def test_telegram_messages_reach_the_chat(db: App) -> None:
    await seed_demo(db.uow, db.exchange)
    async with fake_telegram() as telegram:
        transport = HttpAlertTransport(telegram_api_url=telegram.url)
        endpoint = await alerts.create_telegram_endpoint(
            cmds.CreateTelegramEndpoint(1, "123456:ABC-secret-token", "-100777", ("position_opened",)),
            db.uow(),
            db.secret_box,
        )
        assert endpoint.secret_encrypted != "123456:ABC-secret-token"
        await move(db, "101000", "103000")
        await deliver_all(db, FakeClock(), transport)
        outcome = await alerts.send_test_alert(1, endpoint.id, db.uow(), transport, db.secret_box, datetime.now(UTC))  # type: ignore[arg-type]
    assert outcome.ok
    (token, chat, text), test = telegram.messages
    assert (token, chat) == ("123456:ABC-secret-token", "-100777")
    assert text.startswith("Bought 0.") and text.endswith(" BTC at 103,000 — Canal H4 BTC/USDT"), text
    assert "test" in test[2]


async def test_a_client_cannot_see_or_change_anothers_endpoints(db: App) -> None:
    await seed_demo(db.uow, db.exchange)
    from domain import services

    other = await services.create_client(cmds.CreateClient("Bob"), db.uow())
    assert other.id is not None
    created = await alerts.create_webhook_endpoint(
        cmds.CreateWebhookEndpoint(1, "http://127.0.0.1:9/hook"), db.uow(), db.secret_box, TRANSPORT
    )
    endpoint_id = created.endpoint.id
    assert endpoint_id is not None
    assert await alerts.list_endpoints(other.id, db.uow()) == []
    for call in (
        alerts.list_deliveries(other.id, endpoint_id, Page(10), db.uow()),
        alerts.delete_alert_endpoint(other.id, endpoint_id, db.uow()),
        alerts.rotate_webhook_secret(other.id, endpoint_id, db.uow(), db.secret_box),
        alerts.update_alert_endpoint(
            cmds.UpdateAlertEndpoint(other.id, endpoint_id, is_active=False), db.uow(), TRANSPORT
        ),
        alerts.send_test_alert(other.id, endpoint_id, db.uow(), TRANSPORT, db.secret_box, datetime.now(UTC)),
    ):
        with pytest.raises(NotFound):
            await call
    assert [e.id for e in await alerts.list_endpoints(1, db.uow())] == [endpoint_id]


async def test_the_emergency_stop_and_the_resume_are_alerted(db: App) -> None:
    from domain.services import trading_pause

    await seed_demo(db.uow, db.exchange)
    async with webhook_receiver(WebhookReceiver()) as receiver:
        await webhook(db, receiver)  # the default types
        await trading_pause.pause_trading(cmds.PauseTrading(1), db.uow, db.exchange)
        await trading_pause.pause_trading(cmds.PauseTrading(1), db.uow, db.exchange)  # already paused: no event
        await trading_pause.resume_trading(cmds.ResumeTrading(1), db.uow)
        await deliver_all(db, FakeClock())
    assert [(r.body["type"], r.body["strategy_name"]) for r in receiver.accepted] == [
        ("trading_paused", "Canal H4 BTC/USDT"),
        ("trading_resumed", "Canal H4 BTC/USDT"),
    ]
