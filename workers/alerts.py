"""Alert jobs (SPEC §4b): the dispatcher/sweeper (a cron every few seconds) and one job per delivery
attempt. Tasks receive ids; the use cases (`domain.services.alerts`) are idempotent in the database,
and job ids are derived from (event, endpoint, attempt), so an attempt enqueued twice runs once.

The wake-up (`dispatch_on_events`): every stored event is published on Redis once committed (the
`<prefix>:events` channel, `domain.adapters.messaging.redis_bus`); the worker listens and dispatches
at once, so a delivery starts within about a second of its event rather than at the next cron round.
The cron stays the safety net: a message lost (Redis down, the listener restarting) delays a
delivery to the next round, never loses it, and a dispatch run twice is harmless (SKIP LOCKED, job ids).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from arq import Retry
from arq.worker import func

from domain.adapters.bootstrap import metrics
from domain.model import AlertDelivery, DeliveryStatus
from domain.services import alerts

log = logging.getLogger("criptoren.alerts")


class _UtcClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


async def _enqueue(ctx: dict[str, Any], delivery: AlertDelivery) -> None:
    defer = (
        delivery.next_attempt_at if delivery.next_attempt_at and delivery.next_attempt_at > datetime.now(UTC) else None
    )
    redis = ctx["redis"]
    await redis.enqueue_job(
        "deliver_alert", delivery.id, _job_id=job_id(redis.default_queue_name, delivery), _defer_until=defer
    )


def job_id(queue: str, delivery: AlertDelivery) -> str:
    # arq's job keys are global to the Redis: the queue's name (REDIS_PREFIX) keeps deployments apart.
    return f"{queue}:{alerts.job_id(delivery)}"


async def dispatch_alerts(ctx: dict[str, Any]) -> int:
    """The outbox's events into deliveries (committed), then a job for every due pending delivery:
    the new ones, and any a dead process committed without enqueuing (the sweeper)."""
    app = ctx["app"]
    now = datetime.now(UTC)
    created = await alerts.dispatch_events(app.uow(), now)
    due = await alerts.due_deliveries(app.uow(), now)
    for delivery in due:
        await _enqueue(ctx, delivery)
    if created:
        log.info("Dispatched %d alert deliveries", len(created))
    return len(due)


# A burst of events (a decision records several) is dispatched once: what arrives this soon after the
# first is taken with it.
WAKE_BATCH_SECONDS = 0.05
WAKE_BATCH_MAX = 1000


async def dispatch_on_events(ctx: dict[str, Any], stop: asyncio.Event) -> None:
    """Dispatch as soon as events are committed (the wake-up; see the module's docstring). Runs until
    `stop`; a Redis or database error ends it (the caller supervises it: restarted with backoff)."""
    app = ctx["app"]
    pubsub = app.redis.pubsub()
    try:
        await pubsub.subscribe(app.bus.channel("events"))
        while not stop.is_set():
            if await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0) is None:
                continue
            await asyncio.sleep(WAKE_BATCH_SECONDS)
            for _ in range(WAKE_BATCH_MAX):
                if await pubsub.get_message(ignore_subscribe_messages=True, timeout=0) is None:
                    break
            await dispatch_alerts(ctx)
    finally:
        with contextlib.suppress(Exception):  # the connection may be gone already
            await pubsub.aclose()


async def deliver_alert(ctx: dict[str, Any], delivery_id: int) -> str:
    """One attempt of one delivery; a failed attempt enqueues the next one at its backoff time."""
    app = ctx["app"]
    attempt = await alerts.attempt_delivery(delivery_id, app.uow(), app.alert_transport, app.secret_box, _UtcClock())
    delivery = attempt.delivery
    if attempt.waiting:
        # An earlier event of the same position is still pending for this endpoint: keep the order.
        raise Retry(defer=alerts.ORDER_WAIT)
    if delivery is None:
        return "gone"
    if attempt.outcome is not None and delivery.status is not DeliveryStatus.PENDING:
        metrics.ALERT_DELIVERIES.labels(outcome=delivery.status.value).inc()
    elif delivery.status is DeliveryStatus.ABANDONED:
        metrics.ALERT_DELIVERIES.labels(outcome="abandoned").inc()
    if delivery.status is DeliveryStatus.PENDING and attempt.outcome is not None:
        await _enqueue(ctx, delivery)
    return delivery.status.value


# Results are not kept: the sweeper may enqueue the same attempt again once its job has finished,
# and the job then finds the delivery no longer pending (or not due) and does nothing.
DELIVER_ALERT = func(deliver_alert, keep_result=0, max_tries=1000, timeout=timedelta(seconds=30))
