"""Market stream outages as events (SPEC §4b): when the worker's live stream of a symbol has been lost
for longer than a short grace, each strategy the stream serves (active, or holding positions) gets one
`market_stream_down` event; when the stream is back, each strategy that got one gets one
`market_stream_up`. They are events like the others: written with the client, they reach the
client's alert endpoints through the outbox (`domain.services.alerts`).

No duplicate, whoever records and however often: a strategy gets a 'down' only when its latest stream
event is not a 'down', and an 'up' only when it is one — read under the strategies' row locks, so a
retried round, a worker that restarts or two workers around a handover write each event once. The
worker decides when a stream is down or up (`workers.stream_alerts`); these only record it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from domain.events import EventType
from domain.model import Strategy
from domain.ports import UnitOfWork
from domain.services.common import record_event

DOWN, UP = EventType.MARKET_STREAM_DOWN.value, EventType.MARKET_STREAM_UP.value
MAX_REASON = 200


def _duration(seconds: float) -> str:
    """42 s, 3 min 5 s, 2 h 3 min."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


def _utc(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S UTC")


async def record_stream_down(symbol_id: int, since: datetime, reason: str, uow: UnitOfWork) -> list[int]:
    """The symbol's stream has been lost since `since` (aware UTC): a `market_stream_down` event on
    each strategy it serves whose latest stream event is not a 'down' already (one transaction).
    Returns the ids of the strategies that got one."""
    reason = reason[:MAX_REASON]
    async with uow:
        symbol = await uow.symbols.get(symbol_id)
        if symbol is None:
            return []
        served = await uow.strategies.list_active_by_symbol(symbol_id)  # locked, in id order
        last = await uow.alerts.last_stream_events([s.id for s in served if s.id is not None])
        written: list[int] = []
        for strategy in served:
            assert strategy.id is not None
            previous = last.get(strategy.id)
            if previous is not None and previous.type == DOWN:
                continue
            record_event(
                uow, strategy, EventType.MARKET_STREAM_DOWN,
                f"The {symbol.symbol} market stream is lost since {_utc(since)} ({reason}): no price reaches "
                "the strategy until it is back.",
                symbol=symbol.symbol, since=since.isoformat(), reason=reason,
            )  # fmt: skip
            written.append(strategy.id)
        if written:
            await uow.commit()
    return written


async def record_stream_up(symbol_id: int, now: datetime, uow: UnitOfWork) -> list[int]:
    """The symbol's stream is back: a `market_stream_up` event on each of its strategies whose latest
    stream event is a 'down' (one transaction); a no-op when none is (the usual case). Returns the ids
    of the strategies that got one."""
    async with uow:
        symbol = await uow.symbols.get(symbol_id)
        if symbol is None:
            return []
        ids = [s.id for s in await uow.strategies.list_by_symbol(symbol_id) if s.id is not None]
        down = sorted(i for i, e in (await uow.alerts.last_stream_events(ids)).items() if e.type == DOWN)
        if not down:
            return []
        locked: Sequence[Strategy | None] = [await uow.strategies.get(i, for_update=True) for i in down]
        last = await uow.alerts.last_stream_events(down)  # again, under the locks
        written: list[int] = []
        for strategy in locked:
            if strategy is None or strategy.id is None:
                continue
            previous = last.get(strategy.id)
            if previous is None or previous.type != DOWN:
                continue
            since = previous.data.get("since")
            lost = datetime.fromisoformat(since) if isinstance(since, str) else previous.created_at or now
            record_event(
                uow, strategy, EventType.MARKET_STREAM_UP,
                f"The {symbol.symbol} market stream is back after {_duration((now - lost).total_seconds())}; "
                "prices reach the strategy again.",
                symbol=symbol.symbol, down_since=lost.isoformat(), seconds=round((now - lost).total_seconds()),
            )  # fmt: skip
            written.append(strategy.id)
        if written:
            await uow.commit()
    return written
