"""Numbers a trader can trust (issue 11): the simulation fills as the exchange would.

- Rule 10: inside a candle the path is continuous and fills at the level crossed; the jump from a
  close to the next open is one tick, judged as a live one and filled at the open — in the backtest,
  the replay market and the synthetic market alike.
- Rule 6: a scheduled sell at or below the market is marketable: filled at once, at the market's
  price; only one resting above the market waits, and fills at its limit.
- Rule 5: candles coarser than the strategy's timeframe are refused, naming the coarsest that works.
- Rule 11: the smallest workable top works once lots are rounded; an allocation that makes entries
  too small for it succeeds, with a warning and an event.
- Rule 1: only a new entry level or a re-activation from inactive arms; rule 2's precision skips
  have their own reason.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain import channel as ch
from domain import commands as cmds
from domain import services
from domain.adapters.backtest.runner import backtest
from domain.adapters.exchanges.paper import PaperExchange
from domain.adapters.market.prices import MemoryPriceBook
from domain.adapters.market.replay import ReplayMarket, candle_events, read_candles
from domain.adapters.market.synthetic import SyntheticMarket
from domain.backtest import BacktestResult
from domain.channel import Channel
from domain.errors import InsufficientBalance, ValidationError
from domain.events import EventType, SkipReason
from domain.market import ClosedCandle, Tick
from domain.model import (
    OrderPurpose,
    OrderType,
    Position,
    PositionStatus,
    Side,
    Strategy,
    Symbol,
    SymbolFilters,
    TimeInForce,
)
from domain.services import backtests
from tests.unit.fakes import World
from tests.unit.test_backtest import BTC, CHANNEL, HOUR_MS, at, series_of
from tests.unit.test_services import B, E, F, X, allocate, events, make_strategy, orders, path, reload, tick, trades
from workers.market import check_candle_spacing

D = Decimal
CENT = D("0.01")


@pytest.fixture
def world() -> World:
    return World.make()


BTC_FILTERS = SymbolFilters(D("0.00001"), D("0.00001"), CENT, D(5))

# With CHANNEL (test_backtest): E = 102,000, X = 107,800; 400 USDT per entry buys 0.00392 BTC and
# keeps Q = 0.00391 for C = 399.84, so min_sell = 102,875.04896201 (scheduled at 102,875.05).
UNDER_E = (101000, 101500, 100500, 101200)  # inside the channel, under E
ENTRY_AT_E = (101200, 103000, 101100, 102900)  # opens at the last close: rises through E -> entry at E
PAST_X = (102900, 109000, 102800, 108900)  # up past X: nothing (exits fire on the way down)


def run(candles: list[tuple[int | str, ...]], channel: Channel = CHANNEL, **kw: Any) -> BacktestResult:
    return backtest(series_of(candles), channel, D(2000), BTC, F, **kw)


def fills(result: BacktestResult) -> list[tuple[Side, Decimal, str]]:
    return [(t.side, t.price, t.reason) for t in result.trades]


# ---------------------------------------------------------------- rule 10: jumps between candles


@pytest.mark.parametrize("skip_ahead", [True, False])
def test_a_gap_up_from_under_e_to_past_x_buys_nothing(skip_ahead: bool) -> None:
    """Rule 10 with rule 1's `cur < X`: the jump 101,200 -> 108,500 is one tick past X — no price
    in between traded, so nothing is bought at E (it used to be)."""
    gap_up = (108500, 109000, 108000, 108800)
    back_down = (108800, 108900, 101000, 101500)  # falls, never touching B: still armed
    rises = (101500, 102500, 101400, 102400)  # opens at the last close: through E -> entry at E
    result = run([UNDER_E, gap_up, back_down, rises], skip_ahead=skip_ahead)
    assert fills(result) == [(Side.BUY, D(102000), "entry")]
    assert result.trades[0].candle == 3
    assert result.summary.skipped_entries == 0


@pytest.mark.parametrize("skip_ahead", [True, False])
def test_a_gap_up_through_e_inside_the_channel_buys_at_the_open(skip_ahead: bool) -> None:
    """Rule 10: 101,200 -> 103,000 jumps over E inside the channel: an entry, at the open."""
    result = run([UNDER_E, (103000, 103500, 102900, 103200)], skip_ahead=skip_ahead)
    # 400 / 103,000 = 0.0038834… -> 0.00388 BTC for 399.64.
    rows = [(t.at, t.side, t.price, t.quantity, t.quote, t.reason) for t in result.trades]
    assert rows == [(at(1), Side.BUY, D(103000), D("0.00388"), D("399.64"), "entry")]


@pytest.mark.parametrize("skip_ahead", [True, False])
def test_a_gap_down_through_x_sells_at_the_open_not_at_x(skip_ahead: bool) -> None:
    """Rule 10: 108,900 -> 106,000 jumps down through X = 107,800: the exit fills at the open (it
    used to fill at X, a price that never traded, overstating the profit)."""
    result = run([UNDER_E, ENTRY_AT_E, PAST_X, (106000, 106500, 105500, 106200)], skip_ahead=skip_ahead)
    rows = [(t.side, t.price, t.quantity, t.quote, t.fee, t.profit, t.reason) for t in result.trades]
    # 0.00391 × 106,000 = 414.46, fee 0.41446, profit 414.04554 - 399.84 = 14.20554.
    assert rows == [
        (Side.BUY, D(102000), D("0.00392"), D("399.84"), D("0.39984"), None, "entry"),
        (Side.SELL, D(106000), D("0.00391"), D("414.46"), D("0.41446"), D("14.20554"), "exit"),
    ]
    assert result.trades[1].at == at(3)  # on the jump itself, at the candle's open


@pytest.mark.parametrize("skip_ahead", [True, False])
def test_a_gap_down_under_min_sell_schedules_and_a_gap_up_past_it_sells_at_its_limit(skip_ahead: bool) -> None:
    """Rule 10: a jump down through X to under min_sell schedules the position (rule 4), and a jump
    up past its price later fills it at its limit, never at the open (rule 6)."""
    candles = [UNDER_E, ENTRY_AT_E, PAST_X, (102500, 102600, 102400, 102500), (104000, 104100, 103900, 104050)]
    result = run(candles, skip_ahead=skip_ahead)
    assert fills(result) == [
        (Side.BUY, D(102000), "entry"),
        (Side.SELL, D("102875.05"), "scheduled_exit"),
    ]
    assert [(m.kind, m.price, m.candle) for m in result.marks] == [("scheduled", D(102500), 3)]


def test_inside_a_candle_fills_stay_at_the_levels_crossed() -> None:
    """Rule 10: without a gap (each open is the last close) entry and exit fill at E and X."""
    result = run([UNDER_E, ENTRY_AT_E, PAST_X, (108900, 109000, 107000, 107500)])
    assert fills(result) == [(Side.BUY, D(102000), "entry"), (Side.SELL, D(107800), "exit")]


def _csv(path: Path, rows: list[tuple[int, ...]], step_ms: int = HOUR_MS) -> Path:
    lines = ["open_time_ms,open,high,low,close,volume"]
    lines += [f"{1_748_736_000_000 + i * step_ms},{o},{h},{low},{c},1" for i, (o, h, low, c) in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_replay_market_marks_each_open_after_another_close_as_a_jump(tmp_path: Path) -> None:
    """Rule 10 in the replay market: the open, when it differs from the previous close, is a jump;
    the other points of a candle's path are continuous."""
    rows = [UNDER_E, (101200, 103000, 101100, 102900), (108500, 109000, 108000, 108800)]
    candles = read_candles(_csv(tmp_path / "BTCUSDT-1h.csv", rows), "BTCUSDT")
    ticks = [(e.price, e.jump) for e in candle_events(candles) if isinstance(e, Tick)]
    assert ticks == [
        (D(101000), True), (D(100500), False), (D(101500), False), (D(101200), False),  # first open
        (D(101100), False), (D(103000), False), (D(102900), False),  # opens at the last close
        (D(108500), True), (D(108000), False), (D(109000), False), (D(108800), False),  # a gap up
    ]  # fmt: skip


async def test_the_synthetic_market_marks_the_first_tick_of_each_minute_as_a_jump() -> None:
    """Rule 10 in the synthetic market: inside a minute the walk is continuous; its first tick, the
    candle's open, is a jump from the last close."""
    start = datetime(2025, 6, 1, tzinfo=UTC)
    calls = iter(range(10_000))
    market = SyntheticMarket(tick_seconds=0.001, clock=lambda: start + timedelta(seconds=20 * next(calls)))
    events: list[Tick | ClosedCandle] = []
    async for event in market.stream("BTCUSDT"):
        events.append(event)
        if len(events) >= 14:
            break
    kinds = ["candle" if isinstance(e, ClosedCandle) else ("jump" if e.jump else "tick") for e in events]
    # Three ticks a minute (every 20 s of the clock), a closed candle at each new minute.
    assert kinds == ["tick", "tick", "tick", "candle", "jump", "tick", "tick", "candle", "jump", "tick", "tick",
                     "candle", "jump", "tick"]  # fmt: skip


# ---------------------------------------------------------------- rule 6: marketable limit sells


async def _demo_position_at_e(world: World) -> Position:
    await make_strategy(world)  # the demo channel: E = 102,498.78, X = 108,413.48
    out = await tick(world, "102000", E)
    (position,) = out.opened
    assert position.entry_price == E
    return position


async def test_a_scheduled_sell_at_or_below_the_market_fills_at_once_at_the_market_price(world: World) -> None:
    """Rule 6, the issue's example: entry at 102,498.78, market 107,000, scheduleSell(minProfit 0.1)
    — Binance fills that LIMIT sell at once against the bids, near 107,000; paper did it at its limit
    102,968.01 on the next tick."""
    position = await _demo_position_at_e(world)
    assert position.id is not None
    await tick(world, E, "107000")  # under X: nothing happens
    done = await services.schedule_sell(cmds.ScheduleSell(position.id, D("0.1")), world.uow(), world.exchange)
    assert done.status is PositionStatus.CLOSED and done.scheduled_exit_price == D("102968.01")
    (sell,) = trades(world, Side.SELL)
    assert (sell.price, sell.notes) == (D(107000), "scheduled_exit")
    (order,) = orders(world, OrderPurpose.SCHEDULED_EXIT)
    assert (order.type, order.time_in_force, order.price) == (OrderType.LIMIT, TimeInForce.GTC, D("102968.01"))
    assert [e.type for e in events(world)][-2:] == [EventType.POSITION_SCHEDULED, EventType.POSITION_CLOSED]


async def test_a_scheduled_sell_above_the_market_waits_and_fills_at_its_limit(world: World) -> None:
    """Rule 6: resting above the market, it sells when the price reaches it — at its limit, even
    when a tick jumps past it."""
    position = await _demo_position_at_e(world)
    assert position.id is not None
    done = await services.schedule_sell(cmds.ScheduleSell(position.id, D(3)), world.uow(), world.exchange)
    assert done.status is PositionStatus.SCHEDULED and trades(world, Side.SELL) == []
    assert done.scheduled_exit_price is not None and done.scheduled_exit_price > E
    await tick(world, E, done.scheduled_exit_price + 700)
    (sell,) = trades(world, Side.SELL)
    assert sell.price == done.scheduled_exit_price


async def test_a_break_that_schedules_under_the_market_sells_at_once_at_the_close(world: World) -> None:
    """Rules 5 and 6: a position bought by hand under the base has a min_sell under the closing
    price; the break places its LIMIT sell there — marketable, so it fills at once at the market's
    price, as on Binance (it used to wait for a later tick and fill at its limit)."""
    strategy = await make_strategy(world)
    assert strategy.id is not None
    world.book.set("BTCUSDT", D(95000))
    bought = await services.buy(cmds.Buy(strategy.id, quote_amount=D(100)), world.uow(), world.exchange, world.book)
    assert bought.min_sell_price < D(100000) < B
    world.book.set("BTCUSDT", D(100000))
    await services.process_candle_close(
        cmds.ProcessCandleClose(1, "4h", D(100000), datetime(2025, 6, 1, 4, tzinfo=UTC)), world.uow(), world.exchange
    )
    sold = reload(world, Position, bought.id)
    assert sold.status is PositionStatus.CLOSED and sold.exit_price == D(100000)
    assert sold.scheduled_exit_price is not None and sold.scheduled_exit_price < D(100000)
    assert [t.notes for t in trades(world, Side.SELL)] == ["scheduled_exit"]


async def test_the_paper_exchange_fills_a_new_limit_sell_as_binance_does() -> None:
    """Rule 6: a new LIMIT sell at or below the market fills at the market's price (GTC and IOC);
    above it nothing fills; the resting sell the engine simulates fills at its limit."""
    book = MemoryPriceBook()
    paper = PaperExchange(book, F)
    symbol = Symbol("BTCUSDT", "BTC", "USDT", D("0.00001"), D("0.00001"), CENT, D(5), id=1)
    book.set("BTCUSDT", D(105000))
    gtc = await paper.limit_sell(symbol, "a", D("0.001"), D(100000), TimeInForce.GTC)
    ioc = await paper.limit_sell(symbol, "b", D("0.001"), D(105000), TimeInForce.IOC)
    above = await paper.limit_sell(symbol, "c", D("0.001"), D(106000), TimeInForce.GTC)
    resting = await paper.fill_resting_sell(symbol, "d", D("0.001"), D(100000))
    assert (gtc.average_price, ioc.average_price, above.executed_quantity) == (D(105000), D(105000), 0)
    assert resting.average_price == D(100000)


async def test_a_paper_account_with_balances_refuses_what_they_cannot_cover_as_binance_does() -> None:
    """SPEC §4b on paper, when the account holds balances: an order whose spent asset (quote for a
    buy, base for a sell) does not cover it is refused before it fills, with the Binance adapter's
    error and message; fills move the balances as Binance books them (the buy fee out of the base,
    the sell fee out of the quote). Without balances the paper account has no limit."""
    book = MemoryPriceBook()
    paper = PaperExchange(book, F, balances={"USDT": D(420)})
    symbol = Symbol("BTCUSDT", "BTC", "USDT", D("0.00001"), D("0.00001"), CENT, D(5), id=1)
    book.set("BTCUSDT", D(103000))
    bought = await paper.market_buy(symbol, "e1", quote_amount=D(400))
    assert (bought.executed_quantity, bought.quote_quantity, bought.fee) == (D("0.00388"), D("399.64"), D("0.00000388"))
    assert (paper.free_balance("USDT"), paper.free_balance("BTC")) == (D("20.36"), D("0.00387612"))
    with pytest.raises(InsufficientBalance) as refused:
        await paper.market_buy(symbol, "e2", quote_amount=D(400))
    assert refused.value.code == "INSUFFICIENT_BALANCE"
    assert refused.value.message == (
        "Buy e2: insufficient balance: it needs 400 USDT, the account's free balance is 20.36 USDT."
    )
    assert refused.value.details == {
        "asset": "USDT", "needed": "400", "free": "20.36", "client_order_id": "e2", "before_sending": True,
    }  # fmt: skip
    assert await paper.get_order(symbol, "e2") is None  # nothing was placed
    with pytest.raises(InsufficientBalance):
        await paper.limit_sell(symbol, "s0", D("0.00388"), D(103000), TimeInForce.IOC)  # 0.00387612 held
    book.set("BTCUSDT", D(107000))
    sold = await paper.limit_sell(symbol, "s1", D("0.00387"), D("103472.89"), TimeInForce.GTC)
    assert (sold.average_price, sold.fee) == (D(107000), D("0.41409"))
    assert (paper.free_balance("USDT"), paper.free_balance("BTC")) == (D("434.03591"), D("0.00000612"))
    assert await paper.get_order(symbol, "e1") == bought  # a repeated id is the first order, never judged again
    unlimited = PaperExchange(book, F)
    assert unlimited.free_balance("USDT") is None
    assert (await unlimited.market_buy(symbol, "e1", quote_amount=D(100000))).executed_quantity == D("0.93457")


async def test_an_entry_the_paper_account_cannot_cover_is_skipped_for_insufficient_balance() -> None:
    """SPEC §4b and rule 2 on a paper account with 420 USDT: the first entry (400) fills, the next one
    in another bounce finds 20.25 USDT and is skipped with INSUFFICIENT_BALANCE — the strategy
    disarmed, its order recorded as refused, nothing bought — as the Binance adapter skips it (both
    accounts, side by side: tests/e2e/test_live_loop_binance_fidelity.py)."""
    world = World.make()
    world.exchange = PaperExchange(world.book, F, balances={"USDT": D(420)})
    strategy = await make_strategy(world)
    await path(world, "102000", "102500", "100000", "102500")  # an entry, the base, E again
    (skip,) = events(world, EventType.ENTRY_SKIPPED)
    assert skip.data["reason"] == SkipReason.INSUFFICIENT_BALANCE.value
    assert skip.message == (
        "Entry skipped: Buy cr-e1-2: insufficient balance: it needs 400 USDT, the account's free balance is 20.25 USDT."
    )
    assert [t.side for t in trades(world)] == [Side.BUY]
    assert [o.status.value for o in orders(world, OrderPurpose.ENTRY)] == ["filled", "rejected"]
    assert not reload(world, Strategy, strategy.id).is_armed


# ---------------------------------------------------------------- rule 5: candles coarser than the timeframe


def test_a_backtest_on_candles_coarser_than_the_timeframe_is_refused() -> None:
    """Rule 5: 4h candles cannot show a 1h strategy's closes — its channel would never break."""
    rows = [UNDER_E, ENTRY_AT_E, PAST_X]
    with pytest.raises(ValidationError) as e:
        backtest(series_of(rows, 4 * HOUR_MS), CHANNEL.with_changes(timeframe="1h"), D(2000), BTC, F)
    assert e.value.code == "VALIDATION"
    assert e.value.details["coarsest_interval"] == "1h"
    assert "Candles of 4h" in e.value.message and "coarsest candle interval that works is 1h" in e.value.message
    # Finer candles that divide the timeframe work; 4h candles do not divide a 6h one either.
    run(rows, CHANNEL.with_changes(timeframe="4h"))
    with pytest.raises(ValidationError) as six:
        backtest(series_of(rows, 4 * HOUR_MS), CHANNEL.with_changes(timeframe="6h"), D(2000), BTC, F)
    assert six.value.details["coarsest_interval"] == "6h"


def test_the_backtest_use_case_checks_the_interval_before_reading_candles() -> None:
    with pytest.raises(ValidationError) as e:
        backtests.check_interval("1d", ["4h"])
    assert e.value.details["coarsest_interval"] == "4h"
    backtests.check_interval("15m", ["1h", "4h", "1d"])


async def test_a_replay_coarser_than_an_active_strategy_s_timeframe_refuses_to_start(
    world: World, tmp_path: Path
) -> None:
    """Rule 5 for the replay market: the worker refuses to start, naming the strategy and the
    coarsest candle interval that works; a paused strategy, or one the candles can judge, is fine."""
    replay = ReplayMarket({"BTCUSDT": _csv(tmp_path / "BTCUSDT-4h.csv", [UNDER_E, ENTRY_AT_E], 4 * HOUR_MS)})
    app = SimpleNamespace(uow=world.uow)
    await make_strategy(world, name="daily", timeframe="1d")
    await check_candle_spacing(app, replay)  # type: ignore[arg-type]
    hourly = await make_strategy(world, name="hourly", timeframe="1h")
    with pytest.raises(ValidationError) as e:
        await check_candle_spacing(app, replay)  # type: ignore[arg-type]
    assert f"strategy {hourly.id} ('hourly', BTCUSDT)" in e.value.message
    assert "coarsest candle interval that works is 1h" in e.value.message
    assert hourly.id is not None
    await services.set_strategy_active(cmds.SetStrategyActive(hourly.id, False), world.uow())
    await check_candle_spacing(app, replay)  # type: ignore[arg-type]


# ---------------------------------------------------------------- rule 11: a smallest top that works


def _works(base: Decimal, top: Decimal, quote: Decimal | None, filters: SymbolFilters) -> bool:
    """The channel passes rule 11's formula and the exit of a position bought at E (rules 2 and 9) —
    a LIMIT IOC at its min_sell rounded up to the tick (rule 4) — fills at X."""
    lv = ch.levels(base, top, D(2), D(2))
    bought = ch.entry_fill(lv.entry, quote, filters, F)
    formula = lv.entry * D("1.005") / (1 - F) ** 2
    floor = ch.limit_sell_price(ch.min_sell_price(bought.cost, bought.quantity, D("0.5"), F), filters)
    return lv.exit > lv.entry and lv.exit >= formula and floor <= lv.exit


def test_the_demo_base_s_smallest_top_works_once_lots_are_rounded() -> None:
    """Rule 11: for the demo base and principal (2,000, so 400 an entry) the formula's top
    105,324.09 makes every exit a scheduled sell — 0.0039 BTC bought at E keeps 0.00389, whose
    min_sell 103,379.46… is above X. The named top is the one that works."""
    formula_top = ch.smallest_workable_top(B, D(2), D(2), D("0.5"), F, CENT)
    top = ch.smallest_workable_top(B, D(2), D(2), D("0.5"), F, CENT, filters=BTC_FILTERS, entry_quote=D(400))
    assert (formula_top, top) == (D("105324.09"), D("105489.26"))
    assert not _works(B, formula_top, D(400), BTC_FILTERS)
    assert _works(B, top, D(400), BTC_FILTERS) and not _works(B, top - CENT, D(400), BTC_FILTERS)
    # Without a principal, the smallest entry the filters allow (0.00006 BTC, keeping 0.00005).
    assert ch.entry_fill(E, None, BTC_FILTERS, F) == ch.EntryFill(D("0.00006"), D("0.00005"), D("6.1499268"))


@settings(max_examples=150, deadline=None)
@given(
    base=st.integers(100, 20_000_000).map(lambda n: D(n) / 100),
    step=st.sampled_from([D("0.00001"), D("0.001"), D("0.1"), D("0.00000001")]),
    min_notional=st.sampled_from([D(0), D(5), D(10)]),
    quote=st.one_of(st.none(), st.integers(1, 100_000).map(D)),
)
def test_the_named_top_is_the_smallest_that_works(
    base: Decimal, step: Decimal, min_notional: Decimal, quote: Decimal | None
) -> None:
    filters = SymbolFilters(step, step, CENT, min_notional)
    top = ch.smallest_workable_top(base, D(2), D(2), D("0.5"), F, CENT, filters=filters, entry_quote=quote)
    assert top % CENT == 0
    assert _works(base, top, quote, filters)
    assert not _works(base, top - CENT, quote, filters)


@pytest.mark.parametrize(("top", "sells"), [(D("105324.09"), False), (D("105489.25"), False), (D("105489.26"), True)])
def test_at_the_named_top_the_exit_sells_where_the_formula_s_top_schedules(top: Decimal, sells: bool) -> None:
    """Rule 11, end to end in a backtest of the demo base with 2,000: the exit at X sells at the
    named top, and becomes a scheduled sell at the formula's top or a tick under the named one (its
    LIMIT IOC at min_sell rounded up to the tick, 103,379.47, finds no bid at X)."""
    channel = Channel(B, top, timeframe="1h")
    candles: list[tuple[int | str, ...]] = [
        (101000, 101500, 100600, 101200), (101200, 102600, 101100, 102550),
        (102550, 106000, 102500, 105900), (105900, 105950, 102700, 102800),
    ]  # fmt: skip
    result = backtest(series_of(candles), channel, D(2000), BTC, F)
    exits = [t.price for t in result.trades if t.side is Side.SELL]
    assert exits == ([channel.levels.exit] if sells else []) and result.trades[0].price == E
    assert result.summary.left_scheduled == (0 if sells else 1)


async def test_an_allocation_too_small_for_lot_rounding_stands_with_a_warning_and_an_event(world: World) -> None:
    """Rule 11: with a top between the formula's and the one that works for 400 entries, allocating
    2,000 succeeds but says so; a larger principal, whose entries round less, does not."""
    strategy = await make_strategy(world, capital=None, top_price=D(105400))
    assert strategy.id is not None
    done = await allocate(world, strategy, D(2000))
    assert done.allocation.amount == D(2000) and done.allocation.id is not None
    (warning,) = done.warnings
    assert "every exit would become a scheduled sell" in warning and "105489.26" in warning
    (event,) = events(world, EventType.ENTRIES_TOO_SMALL)
    assert event.message == warning and event.data["principal"] == "2000"
    async with world.uow() as uow:
        assert await uow.allocations.principal(strategy.id) == D(2000)
    more = await allocate(world, strategy, D(198000))  # 40,000 entries
    assert more.warnings == ()
    assert len(events(world, EventType.ENTRIES_TOO_SMALL)) == 1


async def test_an_allocation_whose_entries_the_filters_refuse_warns(world: World) -> None:
    strategy = await make_strategy(world, capital=None)
    done = await allocate(world, strategy, D(20))  # 20% of 20: 4 USDT, under the 5 USDT minimum
    (warning,) = done.warnings
    assert "every entry would be skipped" in warning
    assert (await allocate(world, strategy, D(2000))).warnings == ()


async def test_an_update_to_a_top_the_entries_cannot_use_is_recorded_as_an_event(world: World) -> None:
    """Rule 11: a top the formula accepts but lot rounding defeats for the principal's entries (2,000:
    400 each) is accepted, and said in an event — never a silent channel of scheduled exits."""
    strategy = await make_strategy(world)
    assert strategy.id is not None
    await services.update_strategy(cmds.UpdateStrategy(strategy.id, top_price=D(105400)), world.uow(), world.exchange)
    (event,) = events(world, EventType.ENTRIES_TOO_SMALL)
    assert "raise topPrice to at least 105489.26" in event.message
    await services.update_strategy(cmds.UpdateStrategy(strategy.id, top_price=D(110626)), world.uow(), world.exchange)
    assert len(events(world, EventType.ENTRIES_TOO_SMALL)) == 1


async def test_an_update_names_the_top_that_works_for_the_principal(world: World) -> None:
    strategy = await make_strategy(world)  # 2,000: 400 an entry
    assert strategy.id is not None
    before = world.store.snapshot()
    with pytest.raises(ValidationError) as e:
        await services.update_strategy(
            cmds.UpdateStrategy(strategy.id, top_price=D(105000)), world.uow(), world.exchange
        )
    assert e.value.details["smallest_workable_top"] == "105489.26"
    assert world.store.snapshot() == before


# ---------------------------------------------------------------- rule 1: arming only where it says


async def _disarmed(world: World) -> Strategy:
    strategy = await make_strategy(world)
    await tick(world, "102000", "102500")  # an entry disarms
    assert not reload(world, Strategy, strategy.id).is_armed
    return strategy


@pytest.mark.parametrize(
    "change",
    [
        {"name": "renamed"},
        {"top_price": D(111000)},
        {"capital_percentage": D(10)},
        {"sell_threshold": D(1)},
        {"min_profit": D(1)},
        {"timeframe": "1h"},
    ],
)
async def test_an_edit_other_than_the_entry_level_leaves_the_arming(world: World, change: dict[str, Any]) -> None:
    """Rule 1: a rename or any edit but base or buy threshold leaves a disarmed strategy disarmed —
    no second entry in the same bounce."""
    strategy = await _disarmed(world)
    assert strategy.id is not None
    updated = await services.update_strategy(cmds.UpdateStrategy(strategy.id, **change), world.uow(), world.exchange)
    assert not updated.is_armed and not reload(world, Strategy, strategy.id).is_armed
    await tick(world, "102500", "102400")
    assert (await tick(world, "102400", "102600")).opened == []


@pytest.mark.parametrize("change", [{"base_price": D(100400)}, {"buy_threshold": D("2.1")}])
async def test_a_new_entry_level_arms(world: World, change: dict[str, Any]) -> None:
    strategy = await _disarmed(world)
    assert strategy.id is not None
    updated = await services.update_strategy(cmds.UpdateStrategy(strategy.id, **change), world.uow(), world.exchange)
    assert updated.is_armed


async def test_a_rename_does_not_end_a_channel_break(world: World) -> None:
    strategy = await make_strategy(world)
    assert strategy.id is not None
    await services.process_candle_close(
        cmds.ProcessCandleClose(1, "4h", D(100000), datetime(2025, 6, 1, tzinfo=UTC)), world.uow(), world.exchange
    )
    updated = await services.update_strategy(cmds.UpdateStrategy(strategy.id, name="x"), world.uow(), world.exchange)
    assert updated.is_channel_broken and not updated.is_armed


async def test_activating_an_active_strategy_changes_nothing(world: World) -> None:
    """Rule 1: only a re-activation from inactive arms; setStrategyActive(true) on an active,
    disarmed (or channel-broken) strategy leaves it so, and records nothing."""
    strategy = await _disarmed(world)
    assert strategy.id is not None
    before = len(events(world))
    again = await services.set_strategy_active(cmds.SetStrategyActive(strategy.id, True), world.uow())
    assert again.is_active and not again.is_armed
    assert len(events(world)) == before
    await tick(world, "102500", "102400")
    assert (await tick(world, "102400", "102600")).opened == []


async def test_an_allocation_precision_skip_has_its_own_reason(world: World) -> None:
    """Rule 2: 20% of 100 at 102,500 buys 0.00019 BTC for 19.475 — 19.475% of the bankroll, more
    than 0.1 point off: skipped with reason allocation_precision (it used to read filter_failure)."""
    await make_strategy(world, capital=100)
    assert (await tick(world, "102000", "102500")).opened == []
    (skipped,) = events(world, EventType.ENTRY_SKIPPED)
    assert skipped.data["reason"] == SkipReason.ALLOCATION_PRECISION.value
    assert orders(world) == []


def test_x_and_the_demo_levels_are_unchanged() -> None:
    assert (ch.levels(B, D(110626), D(2), D(2)).exit, E) == (X, D("102498.78"))
