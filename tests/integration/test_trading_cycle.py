"""A full channel cycle on PostgreSQL through the services: entry, exit at profit, scheduled sell,
channel break, with the ledger checked at each step."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from domain import commands as cmds
from domain import services
from domain.adapters.bootstrap import App
from domain.adapters.seed import seed_demo
from domain.model import PositionStatus
from domain.ports import Page

T0 = datetime(2025, 6, 1, tzinfo=UTC)


async def _tick(app: App, symbol_id: int, prev: str, cur: str) -> services.TickOutcome:
    app.price_book.set("BTCUSDT", Decimal(cur))
    return await services.process_price_move(
        cmds.ProcessPriceMove(symbol_id, Decimal(prev), Decimal(cur), T0), app.uow(), app.exchange
    )


async def test_demo_channel_cycle(db: App) -> None:
    assert await seed_demo(db.uow, db.exchange) is True
    assert await seed_demo(db.uow, db.exchange) is False
    async with db.uow() as uow:
        symbol = await uow.symbols.get_by_name("BTCUSDT")
        assert symbol is not None and symbol.id is not None
        (strategy,) = await uow.strategies.list_active_by_symbol(symbol.id)
    sid = symbol.id
    # E = 102498.78: crossing it from below buys 20% of 2000 USDT.
    out = await _tick(db, sid, "102000", "102500")
    assert len(out.opened) == 1
    position = out.opened[0]
    assert position.cost == Decimal("399.75")  # 400 USDT buys 0.00390 BTC at 102500; fee taken in BTC
    assert position.quantity == Decimal("0.00389")  # 0.0039 - 0.0000039 fee -> rounded down to the step
    # Noise around E does not stack entries: the strategy is disarmed until the price touches B.
    out = await _tick(db, sid, "102400", "102600")
    assert out.opened == []
    # X = 108413.48: turning down through it sells at a profit.
    await _tick(db, sid, "102600", "109000")
    out = await _tick(db, sid, "109000", "108400")
    assert [p.id for p in out.closed] == [position.id]
    async with db.uow() as uow:
        ledger = await uow.allocations.ledger(strategy.id)  # type: ignore[arg-type]
        closed = await uow.positions.get(position.id)  # type: ignore[arg-type]
    assert closed is not None and closed.status is PositionStatus.CLOSED
    assert closed.realized_profit is not None and closed.realized_profit > 0
    assert ledger.principal == Decimal("2000")
    assert ledger.committed == 0
    assert ledger.profit == closed.realized_profit
    async with db.uow() as uow:
        trades = await uow.trades.list(Page(10), strategy_id=strategy.id)
    assert [t.side.value for t in trades] == ["sell", "buy"]
