"""The backtest and the live loop are one engine: the same candles replayed by `SymbolConsumer` on
PostgreSQL (ReplayMarket, as in test_live_engine.py) and by the backtest on the in-memory store give
the same trades, positions and profit — jumps between candles included (SPEC §4 rule 10)."""

from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path

from domain import commands as cmds
from domain import services
from domain.adapters.backtest.runner import backtest_async, read_candle_csv
from domain.adapters.bootstrap import App
from domain.adapters.market.replay import ReplayMarket
from domain.backtest import BacktestResult
from domain.channel import Channel
from domain.model import PositionStatus, Side
from domain.ports import Page
from workers.market import SymbolConsumer

START_MS = 1_748_736_000_000  # 2025-06-01 00:00 UTC
CHANNEL = Channel(Decimal(100000), Decimal(110000), Decimal(25), Decimal(2), Decimal(2), Decimal("0.5"), "4h")
BANKROLL = Decimal(2000)


# Where the price heads, 20 hours at a time (cents): bounces between the base and the top (entries,
# exits, re-arms), a fall below the base (a channel break parks the positions), a recovery (their
# scheduled sells).
TARGETS = (10_050_000, 10_900_000, 10_050_000, 10_900_000, 10_100_000, 9_700_000, 10_450_000, 10_450_000)


def write_market(path: Path, seed: int = 0) -> None:
    rng = random.Random(seed)
    price = 10_150_000
    lines = ["open_time_ms,open,high,low,close,volume"]
    for i in range(20 * len(TARGETS)):
        target = TARGETS[i // 20]
        o = price + (rng.randint(-20_000, 20_000) if rng.random() < 0.3 else 0)
        c = o + rng.randint(-80_000, 80_000) + (target - o) // 5
        h = max(o, c) + rng.randint(0, 60_000)
        low = min(o, c) - rng.randint(0, 60_000)
        row = [f"{v / 100:.2f}" for v in (o, h, low, c)]
        lines.append(f"{START_MS + i * 3_600_000},{','.join(row)},1")
        price = c
    path.write_text("\n".join(lines) + "\n")


async def replay_both(db: App, csv: Path, name: str = "live") -> tuple[list[tuple[object, ...]], BacktestResult]:
    """The candles of `csv` replayed by the live loop on PostgreSQL and by the backtest; checks that
    both make the same trades and books, and returns the trades and the backtest's result."""
    # The live side: a client, the strategy and its bankroll on PostgreSQL; the consumer replays the file.
    client = await services.create_client(cmds.CreateClient(name), db.uow())
    assert client.id is not None
    strategy = await services.create_strategy(
        cmds.CreateStrategy(
            client.id, "BTCUSDT", name, CHANNEL,
        ),
        db.uow(), db.exchange,
    )  # fmt: skip
    assert strategy.id is not None
    await services.allocate_capital(cmds.AllocateCapital(strategy.id, BANKROLL), db.uow(), db.exchange)
    async with db.uow() as uow:
        symbol = await uow.symbols.get_by_name("BTCUSDT")
    assert symbol is not None
    consumer = SymbolConsumer(db, ReplayMarket({"BTCUSDT": csv}), symbol)
    await consumer.run()
    async with db.uow() as uow:
        live_trades = list(reversed(await uow.trades.list(Page(1000), strategy_id=strategy.id)))
        live_positions = list(reversed(await uow.positions.list(Page(1000), strategy_id=strategy.id)))
        ledger = await uow.allocations.ledger(strategy.id)
        live_strategy = await uow.strategies.get(strategy.id)
    assert live_strategy is not None

    result = await backtest_async(read_candle_csv(csv), CHANNEL, BANKROLL, symbol, db.settings.fee_rate)

    def norm(v: Decimal | None) -> Decimal | None:
        return None if v is None else v.normalize()

    def in_quote(fee: Decimal, asset: str, price: Decimal) -> Decimal | None:
        return norm(fee if asset == symbol.quote_asset else fee * price)

    live = [
        (t.side, norm(t.price), norm(t.quantity), norm(t.quote_amount), in_quote(t.fees, t.fee_asset, t.price),
         norm(t.profit), t.notes)
        for t in live_trades
    ]  # fmt: skip
    back = [(t.side, norm(t.price), norm(t.quantity), norm(t.quote), norm(t.fee), norm(t.profit), t.reason)
            for t in result.trades]  # fmt: skip
    assert back == live
    s = result.summary
    assert s.segregated_profit == ledger.profit and s.net_profit == ledger.profit
    assert s.channel_broken_at == live_strategy.channel_broken_at
    assert s.left_open == sum(p.status is PositionStatus.OPEN for p in live_positions)
    assert s.left_scheduled == sum(p.status is PositionStatus.SCHEDULED for p in live_positions)
    assert [norm(p.scheduled_exit_price) for p in result.left] == [
        norm(p.scheduled_exit_price) for p in live_positions if p.status is not PositionStatus.CLOSED
    ]
    assert s.candles == consumer.stats.candles
    return live, result


async def test_backtest_and_replayed_live_loop_make_the_same_trades(db: App, tmp_path: Path) -> None:
    csv = tmp_path / "BTCUSDT-1h.csv"
    write_market(csv)
    live, _ = await replay_both(db, csv)
    # Seed 0 exercises the rules: entries (two at once), exits, a channel break, a scheduled sell.
    assert [t[-1] for t in live] == ["entry", "entry", "exit", "exit", "entry", "exit", "entry",
                                     "scheduled_exit"]  # fmt: skip


async def test_jumps_between_candles_fill_alike_live_and_in_the_backtest(db: App, tmp_path: Path) -> None:
    """SPEC §4 rule 10 on both sides: the jump from a close to the next open is one tick filled at
    the open (E = 102,000, X = 107,800): a gap up past X buys nothing, a gap up through E inside the
    channel buys at the open, a gap down through X sells at the open."""
    rows = [
        (101000, 101500, 100500, 101200),  # under E
        (108500, 109000, 108000, 108800),  # gap up past X: nothing
        (108800, 108900, 99500, 100500),  # back under the base (still armed)
        (103000, 103500, 102900, 103200),  # gap up through E: entry at 103,000
        (103200, 109000, 103100, 108900),  # up past X
        (106000, 106500, 105500, 106200),  # gap down through X: exit at 106,000
    ]
    csv = tmp_path / "BTCUSDT-1h.csv"
    lines = ["open_time_ms,open,high,low,close,volume"]
    lines += [f"{START_MS + i * 3_600_000},{o},{h},{low},{c},1" for i, (o, h, low, c) in enumerate(rows)]
    csv.write_text("\n".join(lines) + "\n")
    live, _ = await replay_both(db, csv, "jumps")
    assert [(t[0], t[1], t[-1]) for t in live] == [
        (Side.BUY, Decimal(103000), "entry"), (Side.SELL, Decimal(106000), "exit")
    ]  # fmt: skip
