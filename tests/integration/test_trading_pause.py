"""The emergency stop (issue 7): a paused client makes no new entries — the engine skips them with
the reason "trading_paused" and manual buys are refused — while exits and scheduled sells go on,
unless the pause cancelled the scheduled sells: then automatic exits and channel-break schedules
wait for the resume too. `criptoren pause` / `resume` do the same from the command line."""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from domain import commands as cmds
from domain import services
from domain.adapters.bootstrap import App
from domain.adapters.seed import seed_demo
from domain.errors import InvalidState
from domain.model import PositionStatus
from domain.ports import Page
from domain.services import trading_pause
from tests.e2e.servers import ROOT

AT = datetime(2026, 1, 1, tzinfo=UTC)


async def move(db: App, *prices: str) -> None:
    """Feed a price path to the engine's services, as the worker does (paper fills at the price)."""
    async with db.uow() as uow:
        symbol = await uow.symbols.get_by_name("BTCUSDT")
    assert symbol is not None and symbol.id is not None
    path = [Decimal(p) for p in prices]
    for prev, cur in itertools.pairwise(path):
        db.price_book.set("BTCUSDT", cur)
        await services.process_price_move(cmds.ProcessPriceMove(symbol.id, prev, cur, AT), db.uow(), db.exchange)


async def positions(db: App) -> list:  # type: ignore[type-arg]
    async with db.uow() as uow:
        return list(reversed(await uow.positions.list(Page(100))))


async def skip_reasons(db: App) -> list[str]:
    async with db.uow() as uow:
        events = await uow.events.list_by_strategy(1, 100)
    return [str(e.data.get("reason")) for e in reversed(events) if e.type == "entry_skipped"]


async def test_a_paused_client_makes_no_entries_but_still_exits(db: App) -> None:
    await seed_demo(db.uow, db.exchange)
    await move(db, "101000", "103000")  # entry through E = 102,498.78
    assert [p.status for p in await positions(db)] == [PositionStatus.OPEN]

    status = await trading_pause.pause_trading(cmds.PauseTrading(1), db.uow, db.exchange)
    assert status.paused and not status.sells_held
    await move(db, "103000", "100000", "103000")  # touches the base (re-armed), then rises through E
    assert len(await positions(db)) == 1
    assert await skip_reasons(db) == ["trading_paused"]
    with pytest.raises(InvalidState, match="paused"):
        await services.buy(cmds.Buy(1, quote_amount=Decimal("100"), client_id=1), db.uow(), db.exchange, db.prices)

    await move(db, "103000", "109000", "108000")  # turns down through X = 108,413.48: the exit sells
    assert [p.status for p in await positions(db)] == [PositionStatus.CLOSED]

    status = await trading_pause.resume_trading(cmds.ResumeTrading(1), db.uow)
    assert not status.paused
    await move(db, "108000", "100000", "103000")  # the next bounce enters again
    assert [p.status for p in await positions(db)] == [PositionStatus.CLOSED, PositionStatus.OPEN]


async def test_cancel_scheduled_cancels_the_schedules_and_holds_exits_until_resumed(db: App) -> None:
    await seed_demo(db.uow, db.exchange)
    await move(db, "101000", "103000")
    (position,) = await positions(db)
    await services.schedule_sell(cmds.ScheduleSell(position.id), db.uow(), db.exchange)

    status = await trading_pause.pause_trading(cmds.PauseTrading(1, cancel_scheduled=True), db.uow, db.exchange)
    assert status.sells_held and status.cancelled_schedules == (position.id,)
    assert [p.status for p in await positions(db)] == [PositionStatus.OPEN]
    await move(db, "103000", "109000", "108000")  # an exit crossing: held
    await services.process_candle_close(
        cmds.ProcessCandleClose(1, "4h", Decimal("99000"), AT), db.uow(), db.exchange
    )  # a channel break: not judged while held
    (held,) = await positions(db)
    async with db.uow() as uow:
        strategy = await uow.strategies.get(1)
    assert held.status is PositionStatus.OPEN and strategy is not None and not strategy.is_channel_broken

    await trading_pause.resume_trading(cmds.ResumeTrading(1), db.uow)
    await move(db, "108000", "109000", "108000")
    assert [p.status for p in await positions(db)] == [PositionStatus.CLOSED]


async def test_the_pause_command_pauses_every_client_and_resume_one(db: App) -> None:
    await seed_demo(db.uow, db.exchange)
    await services.create_client(cmds.CreateClient("Bob"), db.uow())
    env = {
        **os.environ,
        "DATABASE_URL": str(db.settings.database_url),
        "REDIS_URL": str(db.settings.redis_url),
        "REDIS_PREFIX": db.settings.redis_prefix,
    }

    async def criptoren(*args: str) -> None:
        process = await asyncio.create_subprocess_exec(sys.executable, "-m", "gql_api.cli", *args, cwd=ROOT, env=env)
        assert await process.wait() == 0

    await criptoren("pause", "--all", "--cancel-scheduled")
    assert [(s.paused, s.sells_held) for s in [await trading_pause.trading_status(i, db.uow()) for i in (1, 2)]] == [
        (True, True),
        (True, True),
    ]
    await criptoren("resume", "--client", "TradeBot XYZ")
    assert [(await trading_pause.trading_status(i, db.uow())).paused for i in (1, 2)] == [False, True]
    async with db.uow() as uow:
        entries = await uow.audit.list_by_client(2, 10)
    assert [e.mutation for e in entries] == ["cli:pause"]
