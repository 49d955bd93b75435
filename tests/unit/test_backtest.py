"""Backtests (domain/backtest.py) on the in-memory unit of work and the paper exchange: a scenario
computed by hand to the cent, and the pre-scan's skipping checked against the tick-by-tick replay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.adapters.backtest.runner import backtest, symbol_for
from domain.adapters.persistence.memory import MemoryStore, MemoryUnitOfWork, seeded_store
from domain.backtest import BacktestResult, CandleSeries
from domain.channel import Channel
from domain.errors import ValidationError
from domain.model import Position, PositionStatus, Side

D = Decimal
HOUR_MS = 3_600_000
START_MS = 1_748_736_000_000  # 2025-06-01 00:00 UTC, a multiple of 4h (and of a day)
BTC = symbol_for("BTCUSDT")  # lot step 0.00001, tick 0.01, min notional 5


def series_of(rows: list[tuple[int | str, ...]], step_ms: int = HOUR_MS, start_ms: int = START_MS) -> CandleSeries:
    """Candles (open, high, low, close) opening every `step_ms` from `start_ms`."""
    prices = [tuple(D(str(v)) for v in row) for row in rows]
    return CandleSeries.from_prices(
        [start_ms + i * step_ms for i in range(len(rows))],
        prices,  # type: ignore[arg-type]
        step_ms,
    )


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2025, 6, 1, tzinfo=UTC) + timedelta(hours=hour, minutes=minute)


# B 100,000, T 110,000, b = s = 2%: E = 102,000, X = 107,800. p 20% of 2,000: 400 per entry.
CHANNEL = Channel(D(100000), D(110000), D(20), D(2), D(2), D("0.5"), "4h")
CANDLES = [
    (101000, 101500, 100500, 101200),  # 00h: inside, under E
    (101200, 103000, 101100, 102900),  # 01h: rises through E -> entry 1 at E
    (102900, 109000, 102800, 108900),  # 02h: up past X: nothing (exits fire on the way down)
    (108900, 109000, 107000, 107500),  # 03h: falls through X -> exit at X (above min_sell)
    (107500, 107600, 99000, 99500),  # 04h: touches B -> re-armed
    (99500, 103500, 99400, 103000),  # 05h: rises through E -> entry 2 at E
    (103000, 103200, 98000, 98500),  # 06h: touches B again (re-armed; position 2 still open)
    (98500, 99000, 97000, 97500),  # 07h: the 04h-08h candle closes at 97,500 < B -> channel broken
    (97500, 104000, 97400, 103900),  # 08h: rises to the scheduled price -> scheduled sell
    (103900, 104100, 103800, 104000),  # 09h: broken: E is crossed no more
]


def run(candles: list[tuple[int | str, ...]], channel: Channel = CHANNEL, **kw: object) -> BacktestResult:
    return backtest(series_of(candles), channel, D(2000), BTC, D("0.001"), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("skip_ahead", [True, False])
def test_a_scenario_computed_by_hand(skip_ahead: bool) -> None:
    result = run(CANDLES, skip_ahead=skip_ahead)
    # Each entry: 400 / 102,000 = 0.0039215… -> 0.00392 BTC (lot step), spending 399.84 (C).
    # Fee 0.1% in BTC: 0.00000392 -> net 0.00391608 -> Q = 0.00391 (dust 0.00000608); fee worth 0.39984.
    # min_sell = 399.84 × 1.005 / (0.00391 × 0.999) = 102,875.04896201 (8 decimals, up); its tick: 102,875.05.
    # Exit 1 at X: 0.00391 × 107,800 = 421.498, fee 0.421498, profit 421.076502 - 399.84 = 21.236502.
    # Scheduled sell at 102,875.05: 0.00391 × 102,875.05 = 402.2414455, fee 0.4022414455 reported to
    # 8 decimals as Binance does (half up): 0.40224145, profit 401.83920405 - 399.84 = 1.99920405.
    # Each fill happens at the tick of the path that crossed its level: the open equals the previous
    # close, so the path is L, H, C at :00, :15, :30 (rule 10), and the crossing move ends at :15.
    rows = [(t.at, t.side, t.price, t.quantity, t.quote, t.fee, t.profit, t.reason) for t in result.trades]
    assert rows == [
        (at(1, 15), Side.BUY, D(102000), D("0.00392"), D("399.84"), D("0.39984"), None, "entry"),
        (at(3, 15), Side.SELL, D(107800), D("0.00391"), D("421.498"), D("0.421498"), D("21.236502"), "exit"),
        (at(5, 15), Side.BUY, D(102000), D("0.00392"), D("399.84"), D("0.39984"), None, "entry"),
        (at(8, 15), Side.SELL, D("102875.05"), D("0.00391"), D("402.2414455"), D("0.40224145"),
         D("1.99920405"), "scheduled_exit"),
    ]  # fmt: skip
    s = result.summary
    assert (s.entries, s.exits, s.wins, s.losses, s.skipped_entries) == (2, 2, 2, 0, 0)
    assert s.net_profit == s.segregated_profit == D("23.23570605")
    assert s.fees == D("1.62341945")  # 2 × 0.39984 + 0.421498 + 0.40224145
    assert s.channel_broken_at == at(8)
    assert (s.left_open, s.left_scheduled, s.unrealised) == (0, 0, 0)
    assert s.final_equity == D("2023.23570605")
    # Equity at the closes: the peak is 02h (1,600.16 + 0.00391 × 108,900 × 0.999 = 2,025.533201), the
    # trough 07h (1,621.396502 + 0.00391 × 97,500 × 0.999 = 2,002.240277).
    assert s.max_drawdown == D("23.292924")
    assert s.max_drawdown_pct == D("1.15")
    # Held during 01h-03h and 05h-08h: 7 of 10 candles.
    assert (s.exposure_pct, s.exposure_time) == (D("70.00"), timedelta(hours=7))
    scheduled = [(m.at, m.price, m.kind) for m in result.marks]
    assert scheduled == [(at(8), D(97500), "channel_broken"), (at(8), D(97500), "scheduled")]
    assert [round(v, 6) for v in result.equity[[0, 2, 3, 7, 9]]] == [
        2000.0, 2025.533201, 2021.236502, 2002.240277, 2023.235706
    ]  # fmt: skip
    if skip_ahead:
        assert s.replayed_candles < len(CANDLES)


def test_positions_left_at_the_end_are_valued_at_the_last_close() -> None:
    result = run(CANDLES[:7])  # ends at 06h: position 2 still open
    s = result.summary
    (left,) = result.left
    assert left.status is PositionStatus.OPEN and s.left_open == 1 and s.left_scheduled == 0
    # 0.00391 × 98,500 × 0.999 - 399.84 = -15.090135
    assert left.unrealised == s.unrealised == D("-15.090135")
    assert s.net_profit == D("21.236502") and s.final_equity == D("2006.146367")
    assert s.channel_broken_at is None


def test_an_unworkable_channel_is_refused_as_at_creation() -> None:
    with pytest.raises(ValidationError) as e:
        run(CANDLES, Channel(D(100000), D(104000)))
    assert e.value.details["smallest_workable_top"]


def test_a_strategy_of_the_candles_interval_breaks_on_each_candle_close() -> None:
    result = run(CANDLES, Channel(D(100000), D(110000), timeframe="1h"))
    # The 04h candle closes at 99,500 < B: broken at 05h, before the second entry.
    assert result.summary.channel_broken_at == at(5)
    assert [t.reason for t in result.trades] == ["entry", "exit"]


async def test_a_transaction_copies_only_the_rows_it_touches() -> None:
    """The store grows with every fill; a tick's transaction must not copy or scan all of it."""
    store: MemoryStore = seeded_store()
    for i in range(2000):
        store.add_committed(
            Position(1, 1, 1, D(1), D(1), D(1), D(0), D(0), D(2), status=PositionStatus.CLOSED, closed_at=at(i % 9))
        )
    live = store.add_committed(Position(7, 1, 1, D(1), D(1), D(1), D(0), D(0), D(2)))
    uow = MemoryUnitOfWork(store)
    async with uow:
        found = await uow.positions.list_live_by_strategy(7)
        assert [p.id for p in found] == [live.id]
        assert len(uow._loaded["positions"]) == 1


# ---------------------------------------------------------------- skipping == tick by tick


@st.composite
def markets(draw: st.DrawFn) -> tuple[list[tuple[int, ...]], Channel, int]:
    """A random walk in cents around a random channel (so that every rule gets its chances)."""
    base = draw(st.integers(1_000, 5_000)) * 100
    width = draw(st.sampled_from([8, 12, 20, 35]))
    top = base * (100 + width) // 100
    channel = Channel(
        D(base) / 100, D(top) / 100, D(draw(st.sampled_from([10, 20, 25, 50]))),
        D(draw(st.sampled_from(["0.5", "1", "2", "3"]))), D(draw(st.sampled_from(["0.5", "1", "2"]))),
        D(draw(st.sampled_from(["0", "0.5", "1"]))), draw(st.sampled_from(["1h", "2h", "4h", "1d"])),
    )  # fmt: skip
    step_ms = draw(st.sampled_from([HOUR_MS, 15 * 60_000]))
    n = draw(st.integers(20, 240))
    volatility = draw(st.integers(2, 60)) * (top - base) // 100
    price = draw(st.integers(base * 9 // 10, top * 11 // 10))
    seed = draw(st.integers(0, 2**32 - 1))
    import random

    rng = random.Random(seed)
    rows: list[tuple[int, ...]] = []
    for _ in range(n):
        # Drift back into the channel's neighbourhood, with gaps between a close and the next open.
        pull = (base + top) // 2 - price
        o = max(100, price + (rng.randint(-volatility, volatility) // 4 if rng.random() < 0.2 else 0))
        c = max(100, o + rng.randint(-volatility, volatility) + pull // 10)
        h = max(o, c) + rng.randint(0, volatility)
        low = max(50, min(o, c) - rng.randint(0, volatility))
        rows.append((o, h, low, c))
        price = c
    return [tuple(v * 0.01 for v in row) for row in rows], channel, step_ms  # type: ignore[misc]


def comparable(r: BacktestResult) -> tuple[object, ...]:
    s = r.summary.as_dict()
    s.pop("replayed_candles")
    return (s, r.trades, r.marks, r.left, r.equity.tolist())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(markets())
def test_skipping_candles_gives_the_tick_by_tick_results(market: tuple[list[tuple[int, ...]], Channel, int]) -> None:
    rows, channel, step_ms = market
    rows = [tuple(f"{v:.2f}" for v in row) for row in rows]
    series = series_of(rows, step_ms)  # type: ignore[arg-type]
    try:
        channel.validate(D("0.001"), D("0.01"))
    except ValidationError:
        return
    symbol = symbol_for("BTCUSDT")
    fast = backtest(series, channel, D(10000), symbol, D("0.001"), skip_ahead=True)
    slow = backtest(series, channel, D(10000), symbol, D("0.001"), skip_ahead=False)
    assert comparable(fast) == comparable(slow)
    assert fast.summary.replayed_candles <= slow.summary.replayed_candles == len(series)
