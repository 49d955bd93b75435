"""A lost market stream as events, and so alerts (SPEC §4b "stream down/up"; issue 15), on PostgreSQL:
one `market_stream_down` per strategy the stream serves once the loss outlasts the grace, one
`market_stream_up` when it is back — never one per reconnection attempt, never twice, whoever
records it (a retried round, a restarted worker, two workers at once) — delivered signed, in order,
to a receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from domain import channel as ch
from domain import commands as cmds
from domain import services
from domain.adapters.bootstrap import App
from domain.adapters.seed import seed_demo
from domain.events import EventType
from domain.market import StreamState
from domain.ports import Page
from domain.services import market_streams
from tests.alert_receivers import WebhookReceiver, webhook_receiver
from tests.integration.test_alerts import FakeClock, deliver_all, webhook
from workers.stream_alerts import StreamAlerts

DOWN, UP = EventType.MARKET_STREAM_DOWN.value, EventType.MARKET_STREAM_UP.value


async def stream_events(db: App) -> list[tuple[int, str]]:
    """(strategy id, type) of every stream event, in the order written."""
    async with db.uow() as uow:
        events = await uow.events.list(Page(100), types=[DOWN, UP])
    return [(e.strategy_id, e.type) for e in reversed(events)]


async def btc_id(db: App) -> int:
    async with db.uow() as uow:
        symbol = await uow.symbols.get_by_name("BTCUSDT")
    assert symbol is not None and symbol.id is not None
    return symbol.id


async def second_strategy(db: App, *, active: bool) -> int:
    strategy = await services.create_strategy(
        cmds.CreateStrategy(1, "BTCUSDT", f"Other {active}", ch.Channel(Decimal(90000), Decimal(99000)), active),
        db.uow(),
        db.exchange,
    )
    assert strategy.id is not None
    return strategy.id


class FakeSource:
    """A live source whose stream state the test sets (`StreamStatus`)."""

    name, fills_at_levels = "fake", False

    def __init__(self) -> None:
        self.states: dict[str, StreamState] = {}

    def stream_state(self, symbol: str) -> StreamState | None:
        return self.states.get(symbol)


async def test_a_loss_is_one_down_then_one_up_per_strategy_the_stream_serves(db: App) -> None:
    await seed_demo(db.uow, db.exchange)
    paused = await second_strategy(db, active=False)  # no position: the stream serves it nothing
    symbol_id = await btc_id(db)
    since = datetime.now(UTC) - timedelta(seconds=75)
    assert await market_streams.record_stream_down(symbol_id, since, "connection reset", db.uow()) == [1]
    assert await market_streams.record_stream_down(symbol_id, since, "connection reset", db.uow()) == []
    assert await market_streams.record_stream_up(symbol_id, datetime.now(UTC), db.uow()) == [1]
    assert await market_streams.record_stream_up(symbol_id, datetime.now(UTC), db.uow()) == []
    assert await stream_events(db) == [(1, DOWN), (1, UP)]
    assert paused not in {s for s, _ in await stream_events(db)}
    async with db.uow() as uow:
        up, down = await uow.events.list(Page(2), types=[DOWN, UP])
    assert "BTCUSDT market stream is lost" in down.message and "connection reset" in down.message
    assert down.data == {"symbol": "BTCUSDT", "since": since.isoformat(), "reason": "connection reset"}
    assert "is back after 1 min 1" in up.message and up.data["down_since"] == since.isoformat()


async def test_concurrent_recorders_write_each_event_once(db: App) -> None:
    """Two workers around a handover, or a retried round: the strategies' row locks serialise them."""
    await seed_demo(db.uow, db.exchange)
    await second_strategy(db, active=True)
    symbol_id, since = await btc_id(db), datetime.now(UTC)
    await asyncio.gather(*(market_streams.record_stream_down(symbol_id, since, "x", db.uow()) for _ in range(4)))
    await asyncio.gather(*(market_streams.record_stream_up(symbol_id, since, db.uow()) for _ in range(4)))
    events = await stream_events(db)
    assert sorted(events) == [(1, DOWN), (1, UP), (2, DOWN), (2, UP)]


async def test_the_worker_records_a_loss_only_beyond_the_grace_and_the_return_once(db: App) -> None:
    await seed_demo(db.uow, db.exchange)
    symbol_id, source = await btc_id(db), FakeSource()
    watch = StreamAlerts(db, source, grace=20.0)  # type: ignore[arg-type]
    held = {"BTCUSDT": symbol_id}
    await watch.check(held)  # not connected yet: nothing to say
    now = datetime.now(UTC)
    source.states["BTCUSDT"] = StreamState(True, now)
    await watch.check(held)  # up, and nothing was down
    source.states["BTCUSDT"] = StreamState(False, now - timedelta(seconds=5), "dropped")
    await watch.check(held)  # a blip, shorter than the grace (reconnection attempts keep `since`)
    assert await stream_events(db) == []
    source.states["BTCUSDT"] = StreamState(False, now - timedelta(seconds=21), "dropped")
    await watch.check(held)
    await watch.check(held)
    assert await stream_events(db) == [(1, DOWN)]
    source.states["BTCUSDT"] = StreamState(True, datetime.now(UTC))
    await watch.check(held)
    await watch.check(held)
    assert await stream_events(db) == [(1, DOWN), (1, UP)]


async def test_a_down_left_by_a_dead_worker_is_closed_by_the_next(db: App) -> None:
    await seed_demo(db.uow, db.exchange)
    symbol_id, source = await btc_id(db), FakeSource()
    dead = StreamAlerts(db, source, grace=1.0)  # type: ignore[arg-type]
    source.states["BTCUSDT"] = StreamState(False, datetime.now(UTC) - timedelta(seconds=2), "dropped")
    await dead.check({"BTCUSDT": symbol_id})
    successor = StreamAlerts(db, source, grace=1.0)  # type: ignore[arg-type]
    await successor.check({"BTCUSDT": symbol_id})  # still down: the 'down' is there already
    source.states["BTCUSDT"] = StreamState(True, datetime.now(UTC))
    await successor.check({"BTCUSDT": symbol_id})
    assert await stream_events(db) == [(1, DOWN), (1, UP)]


async def test_down_and_up_reach_a_webhook_signed_and_in_order_by_default(db: App) -> None:
    await seed_demo(db.uow, db.exchange)
    symbol_id = await btc_id(db)
    async with webhook_receiver(WebhookReceiver()) as receiver:
        await webhook(db, receiver)  # the default event types include the stream's
        await market_streams.record_stream_down(symbol_id, datetime.now(UTC), "no message for 30 s", db.uow())
        await market_streams.record_stream_up(symbol_id, datetime.now(UTC), db.uow())
        await deliver_all(db, FakeClock())
    assert all(r.signed for r in receiver.requests)
    bodies = [r.body for r in receiver.accepted]
    assert [(b["type"], b["strategy_name"], b["symbol"]) for b in bodies] == [
        (DOWN, "Canal H4 BTC/USDT", "BTCUSDT"),
        (UP, "Canal H4 BTC/USDT", "BTCUSDT"),
    ]
    assert bodies[0]["data"]["reason"] == "no message for 30 s"
