"""The live loop's consumer on a replayed market (SPEC §4 rule 10): a path that crosses E, X, the
base, a scheduled exit and a channel break, checked against the rules — fills at the levels."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from domain import channel as ch
from domain.adapters.bootstrap import App
from domain.adapters.market.replay import ReplayMarket
from domain.adapters.seed import seed_demo
from domain.model import PositionStatus
from domain.ports import Page
from workers.market import SymbolConsumer

DATA = Path(__file__).resolve().parents[1] / "data"
E = Decimal("102498.78")
X = Decimal("108413.48")


async def run_replay(app: App) -> SymbolConsumer:
    async with app.uow() as uow:
        symbol = await uow.symbols.get_by_name("BTCUSDT")
    assert symbol is not None
    consumer = SymbolConsumer(app, ReplayMarket({"BTCUSDT": DATA / "btc-channel-1h.csv"}), symbol)
    await consumer.run()
    return consumer


async def test_replayed_channel_cycle(db: App) -> None:
    await seed_demo(db.uow, db.exchange)
    consumer = await run_replay(db)
    async with db.uow() as uow:
        trades = list(reversed(await uow.trades.list(Page(100))))
        positions = list(reversed(await uow.positions.list(Page(100))))
        strategy = await uow.strategies.get(1)
        ledger = await uow.allocations.ledger(1)
        events = [e.type for e in reversed(await uow.events.list_by_strategy(1, 100))]
    assert [(t.side.value, t.price, t.notes) for t in trades] == [
        ("buy", E, "entry"),
        ("sell", X, "exit"),
        ("buy", E, "entry"),
        ("sell", positions[1].scheduled_exit_price, "scheduled_exit"),
    ]
    first, second = positions
    assert first.status is PositionStatus.CLOSED and second.status is PositionStatus.CLOSED
    assert second.channel_exit_date is not None and second.channel_exit_date.hour == 8
    assert second.scheduled_exit_price == ch.round_up_to_step(second.min_sell_price, Decimal("0.01"))
    assert all(t.price >= p.min_sell_price for t in trades if t.side.value == "sell" for p in positions
               if p.id == t.position_id)  # fmt: skip
    assert strategy is not None and strategy.is_channel_broken
    assert "channel_broken" in events and events.count("position_opened") == 2
    assert ledger.principal == Decimal("2000") and ledger.committed == 0
    assert ledger.profit == sum(p.realized_profit for p in positions if p.realized_profit)
    # Each entry spent 20% of the bankroll within 0.1 pt.
    for p in positions:
        assert abs(p.cost / ledger.principal * 100 - 20) <= Decimal("0.1")
    assert consumer.stats.candles == 10 and consumer.stats.decisions >= 5
    async with db.uow() as uow:
        four_hours = [c for c in await uow.candles.history(1, "4h", 1000) if c.open_time.year == 2025]
    # 4h candles built from the 1h ones: (open, high, low, close) of 00:00-04:00 and 04:00-08:00.
    assert [(c.open, c.high, c.low, c.close) for c in four_hours] == [
        (Decimal(101000), Decimal(109000), Decimal(100400), Decimal(107500)),
        (Decimal(107500), Decimal(107600), Decimal(99000), Decimal(99200)),
    ]


async def test_delivering_the_stream_twice_trades_once(db: App) -> None:
    """A second consumer replaying the same stream from the start (a duplicated delivery) adds nothing."""
    await seed_demo(db.uow, db.exchange)
    await run_replay(db)
    async with db.uow() as uow:
        before = [(t.side, t.price) for t in await uow.trades.list(Page(100))]
    await db.redis.delete(db.bus.channel("cursor:replay:BTCUSDT"))
    await run_replay(db)
    async with db.uow() as uow:
        after = [(t.side, t.price) for t in await uow.trades.list(Page(100))]
    assert after == before
