"""Backtests: a channel run over historical candles by the live engine itself.

There is no second implementation of SPEC §4 here. Each candle is replayed as the live loop replays
a candle file — its path O->L->H->C when rising or flat, O->H->L->C when falling, continuous and
filled at the levels it crosses, joined to the previous close by a jump to the open that is one
tick filled at the open (rule 10) — through `domain.symbol_engine.SymbolEngine`, the class the live
consumer drives: the index picks the strategies a move concerns, the services decide and trade through a
unit of work and an exchange (here an in-memory one and the paper exchange, given by the caller),
and the timeframe candles close at multiples of the timeframe since the epoch (rule 5).

Speed: cost follows the events, not the candles. Between two decisions the engine's state is fixed,
so the levels that can fire are known — E of an armed strategy, X while positions are open, B while
disarmed, the scheduled exit prices, and B at the closes of each strategy's timeframe. A vectorised
pre-scan over float copies of the prices finds the next candle whose range [low, high] (joined to
the previous close, so that the jump to its open is covered too) reaches one of them, widened by a
relative margin far above float rounding, so it can only flag too many candles, never too few.
The candles in between cannot trigger anything: the tick-by-tick replay would look each of their
moves up in the index and find nothing. They are skipped; only flagged candles are replayed,
exactly, in `Decimal`. `skip_ahead=False` replays every candle (a test checks both give identical
results).
"""

from __future__ import annotations

import bisect
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt

from domain import channel as ch
from domain import commands as cmds
from domain import services
from domain.channel import Channel
from domain.engine import StrategySnapshot, SymbolIndex
from domain.errors import ValidationError
from domain.events import EventType
from domain.model import Position, PositionStatus, Side, Symbol, Trade
from domain.numbers import plain
from domain.ports import Exchange, Page, UnitOfWorkFactory
from domain.symbol_engine import SymbolEngine

ZERO = Decimal(0)
HUNDRED = Decimal(100)
# Relative widening of the pre-scan's float ranges: float rounding is ~1e-16, so 1e-9 can only make
# the pre-scan flag a candle too many, never one too few.
SCAN_MARGIN = 1e-9
ONE_BY_ONE = 8
FIRST_CHUNK = 256
LARGEST_CHUNK = 1 << 16
ALL_PRICES = (Decimal("-Infinity"), Decimal("Infinity"))
BACKTEST_CLIENT = "backtest"
BACKTEST_STRATEGY = "backtest"

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
Prices = tuple[Decimal, Decimal, Decimal, Decimal]


# ---------------------------------------------------------------- inputs


def interval_of(step_ms: int) -> str:
    """The interval name of a candle spacing (1m when it is not a known timeframe)."""
    return next((name for name, d in ch.TIMEFRAMES.items() if d == timedelta(milliseconds=step_ms)), "1m")


class CandleSeries:
    """Candles to backtest: float copies of the prices for the pre-scan, and their exact `Decimal`
    prices on demand (`exact(i)` -> open, high, low, close) for the candles actually replayed."""

    def __init__(
        self,
        open_ms: IntArray,
        prices: FloatArray,
        exact: Callable[[int], Prices],
        step_ms: int | None = None,
    ) -> None:
        if len(open_ms) != len(prices):
            raise ValueError("open times and prices differ in length")
        self.open_ms = open_ms
        self.prices = prices  # (n, 4): open, high, low, close
        self._exact = exact
        # The spacing of the first two rows, as the replay market infers it.
        self.step_ms = step_ms or (int(open_ms[1] - open_ms[0]) if len(open_ms) > 1 else 60_000)
        self.interval = interval_of(self.step_ms)
        self.step = timedelta(milliseconds=self.step_ms)

    def __len__(self) -> int:
        return len(self.open_ms)

    def exact(self, i: int) -> Prices:
        return self._exact(i)

    def open_time(self, i: int) -> datetime:
        return ch.EPOCH + timedelta(milliseconds=int(self.open_ms[i]))

    @classmethod
    def from_csv(cls, data: bytes, source: str = "the candles", step_ms: int | None = None) -> CandleSeries:
        """Candles from CSV text `open_time_ms,open,high,low,close[,volume]` (a header line is
        allowed): floats parsed in bulk for the pre-scan, and each replayed candle's exact prices
        parsed from its line when asked. The leanest form for a large range: about 110 bytes a
        candle (the text and a few arrays), against ~600 as Python objects. Without `step_ms`, the
        interval is the spacing of the first two rows, as the replay market infers it."""
        raw = np.frombuffer(data, dtype=np.uint8)
        newlines = np.flatnonzero(raw == ord("\n"))
        starts = np.concatenate(([0], newlines + 1))
        ends = np.concatenate((newlines, [len(data)]))
        ends = ends - ((ends > starts) & (raw[np.maximum(ends - 1, 0)] == ord("\r")) if len(data) else 0)
        rows = np.flatnonzero(ends > starts)  # physical lines that hold something
        if len(rows) and not chr(data[starts[rows[0]]]).isdigit():
            header, rows = int(rows[0]) + 1, rows[1:]
        else:
            header = 0
        if not len(rows):
            raise ValidationError(f"{source} holds no candles.", field="csv")
        try:
            table = np.loadtxt(
                io.BytesIO(data), delimiter=",", skiprows=header, usecols=(0, 1, 2, 3, 4), dtype=np.float64, ndmin=2
            )
        except ValueError as e:
            message = f"{source} is not a candle CSV (open_time_ms,open,high,low,close): {e}"
            raise ValidationError(message, field="csv") from e
        if len(table) != len(rows):
            raise ValidationError(f"{source}: blank lines with spaces are not allowed.", field="csv")
        open_ms = table[:, 0].astype(np.int64)
        if len(open_ms) > 1 and bool(np.any(np.diff(open_ms) <= 0)):
            raise ValidationError(f"{source}: open times must increase.", field="csv")
        line_starts, line_ends = starts[rows], ends[rows]
        prices = np.ascontiguousarray(table[:, 1:5])
        del table, raw, newlines, starts, ends

        def exact(i: int) -> Prices:
            line = data[line_starts[i] : line_ends[i]].decode()
            _, o, h, low, c = line.split(",", 5)[:5]
            return Decimal(o), Decimal(h), Decimal(low), Decimal(c)

        return cls(open_ms, prices, exact, step_ms)

    @classmethod
    def from_prices(cls, open_ms: Sequence[int], prices: Sequence[Prices], step_ms: int | None = None) -> CandleSeries:
        """From exact prices (stored candles, tests)."""
        rows = list(prices)
        floats = np.array([[float(p) for p in row] for row in rows], dtype=np.float64).reshape(len(rows), 4)
        return cls(np.asarray(open_ms, dtype=np.int64), floats, rows.__getitem__, step_ms)

    def slice(self, start: int, stop: int) -> CandleSeries:
        return CandleSeries(
            self.open_ms[start:stop], self.prices[start:stop], lambda i: self._exact(start + i), self.step_ms
        )


# ---------------------------------------------------------------- the pre-scan


@dataclass(frozen=True)
class _Levels:
    """The levels the engine's current state can fire (floats, for the pre-scan)."""

    entries: list[float]
    exits: list[float]
    rearm_max: float | None
    scheduled_min: float | None
    breaks: dict[str, float]  # timeframe -> highest base that a close below breaks

    @classmethod
    def of(cls, index: SymbolIndex) -> _Levels:
        rearms = index.rearms.levels_in(*ALL_PRICES)
        scheduled = index.scheduled.levels_in(*ALL_PRICES)
        return cls(
            entries=[float(v) for v in index.entries.levels_in(*ALL_PRICES)],
            exits=[float(v) for v in index.exits.levels_in(*ALL_PRICES)],
            rearm_max=float(rearms[-1]) if rearms else None,
            scheduled_min=float(scheduled[0]) if scheduled else None,
            breaks={tf: float(levels.levels_in(*ALL_PRICES)[-1]) for tf, levels in index.breaks.items() if len(levels)},
        )

    @property
    def empty(self) -> bool:
        return (
            not self.entries
            and not self.exits
            and self.rearm_max is None
            and self.scheduled_min is None
            and not self.breaks
        )


class _Scanner:
    """Finds the next candle that may trigger a rule, given the engine's state (see the module doc).

    Events often come in bursts (an entry, then the re-arm a few candles later): the next few
    candles are looked at one by one first, then the rest in growing vectorised chunks."""

    def __init__(self, series: CandleSeries) -> None:
        p = series.prices
        prev_close = np.concatenate(([np.nan], p[:-1, 3]))
        # Each candle's path spans its own range and the jump from the previous close.
        lo = np.fmin(p.min(axis=1), prev_close)
        hi = np.fmax(p.max(axis=1), prev_close)
        self.lo = lo - np.abs(lo) * SCAN_MARGIN
        self.hi = hi + np.abs(hi) * SCAN_MARGIN
        self.close_lo = p[:, 3] - np.abs(p[:, 3]) * SCAN_MARGIN
        self.close_ms = series.open_ms + series.step_ms
        self.interval = series.interval
        self.base_delta = ch.timeframe_delta(series.interval)
        self.n = len(series)
        self._closes: dict[str, BoolArray | None] = {}
        self._state: tuple[StrategySnapshot, ...] = ()
        self._levels: _Levels | None = None

    def _closing(self, timeframe: str) -> BoolArray | None:
        """Candles that close a `timeframe` candle (None: all of them; empty: none, too fine)."""
        if timeframe not in self._closes:
            delta = ch.timeframe_delta(timeframe)
            if timeframe == self.interval:
                self._closes[timeframe] = None
            elif delta <= self.base_delta:
                self._closes[timeframe] = np.zeros(self.n, dtype=np.bool_)
            else:
                self._closes[timeframe] = self.close_ms % int(delta.total_seconds() * 1000) == 0
        return self._closes[timeframe]

    def _hit(self, k: int, levels: _Levels) -> bool:
        """Candle `k` may trigger something (one candle, in plain Python)."""
        lo, hi = float(self.lo[k]), float(self.hi[k])
        if levels.rearm_max is not None and lo <= levels.rearm_max:
            return True
        if levels.scheduled_min is not None and hi >= levels.scheduled_min:
            return True
        for found in (levels.entries, levels.exits):
            if found and bisect.bisect_left(found, lo) != bisect.bisect_right(found, hi):
                return True
        for timeframe, base in levels.breaks.items():
            closing = self._closing(timeframe)
            if self.close_lo[k] < base and (closing is None or closing[k]):
                return True
        return False

    def _mask(self, start: int, end: int, levels: _Levels) -> BoolArray:
        lo, hi = self.lo[start:end], self.hi[start:end]
        mask = np.zeros(end - start, dtype=np.bool_)
        for found in (levels.entries, levels.exits):
            if len(found) == 1:
                mask |= (lo <= found[0]) & (found[0] <= hi)
            elif found:
                at = np.asarray(found)
                mask |= np.searchsorted(at, lo, "left") != np.searchsorted(at, hi, "right")
        if levels.rearm_max is not None:
            mask |= lo <= levels.rearm_max
        if levels.scheduled_min is not None:
            mask |= hi >= levels.scheduled_min
        for timeframe, base in levels.breaks.items():
            closing = self._closing(timeframe)
            below = self.close_lo[start:end] < base
            mask |= below if closing is None else below & closing[start:end]
        return mask

    def _levels_of(self, index: SymbolIndex) -> _Levels:
        # The index changes only through decisions; reuse the levels while its snapshots are the same.
        state = tuple(index.snapshots.values())
        if (
            self._levels is None
            or len(state) != len(self._state)
            or any(a is not b for a, b in zip(state, self._state, strict=True))
        ):
            self._state, self._levels = state, _Levels.of(index)
        return self._levels

    def next_candidate(self, start: int, index: SymbolIndex) -> int:
        """The first candle at or after `start` that the engine's state may act on (`n`: none)."""
        levels = self._levels_of(index)
        if levels.empty:
            return self.n
        for k in range(start, min(self.n, start + ONE_BY_ONE)):
            if self._hit(k, levels):
                return k
        start = min(self.n, start + ONE_BY_ONE)
        size = FIRST_CHUNK
        while start < self.n:
            end = min(self.n, start + size)
            hits = np.flatnonzero(self._mask(start, end, levels))
            if len(hits):
                return start + int(hits[0])
            start, size = end, min(size * 4, LARGEST_CHUNK)
        return self.n


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class BacktestTrade:
    """One fill of the backtest."""

    at: datetime
    side: Side
    price: Decimal
    quantity: Decimal  # gross, base asset
    quote: Decimal  # gross, quote asset
    fee: Decimal  # valued in the quote asset
    profit: Decimal | None  # sells: proceeds after fees minus the position's cost
    reason: str  # entry, exit, scheduled_exit
    position_id: int
    candle: int  # index of the candle it happened in


@dataclass(frozen=True)
class Mark:
    """A schedule (rule 4 below min_sell, or rule 5) or a channel break, for the chart."""

    at: datetime
    price: Decimal
    kind: str  # "scheduled" or "channel_broken"
    candle: int
    position_id: int | None = None


@dataclass(frozen=True)
class LeftPosition:
    """A position still held at the end, valued at the last close."""

    position_id: int
    status: PositionStatus
    opened_at: datetime | None
    entry_price: Decimal
    quantity: Decimal
    cost: Decimal
    min_sell_price: Decimal
    scheduled_exit_price: Decimal | None
    unrealised: Decimal  # quantity * last close * (1 - fee rate) - cost


@dataclass(frozen=True)
class Summary:
    symbol: str
    interval: str
    candles: int
    start: datetime
    end: datetime
    channel: Channel
    levels: ch.Levels
    bankroll: Decimal
    fee_rate: Decimal
    entries: int
    exits: int
    wins: int
    losses: int
    skipped_entries: int
    net_profit: Decimal  # realised: the sum of the sells' profits
    segregated_profit: Decimal  # the strategy's profit ledger (rule 7)
    fees: Decimal  # quote asset
    max_drawdown: Decimal  # quote asset, on the equity at candle closes
    max_drawdown_pct: Decimal
    exposure_pct: Decimal  # share of the candles with a position held
    exposure_time: timedelta
    channel_broken_at: datetime | None
    left_open: int
    left_scheduled: int
    unrealised: Decimal  # of the positions left, at the last close, after the sell fee
    last_close: Decimal
    final_equity: Decimal  # bankroll + net profit + unrealised
    replayed_candles: int  # candles replayed tick by tick (the rest were skipped by the pre-scan)
    decisions: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready values: Decimals as strings, times in ISO 8601."""

        def json_ready(value: object) -> object:
            if isinstance(value, Decimal):
                return plain(value)
            if isinstance(value, datetime):
                return value.isoformat()
            if isinstance(value, timedelta):
                return value.total_seconds()
            return value

        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, Channel | ch.Levels):
                out[name] = {k: json_ready(getattr(value, k)) for k in value.__dataclass_fields__}
            else:
                out[name] = json_ready(value)
        return out


@dataclass
class BacktestResult:
    summary: Summary
    trades: list[BacktestTrade]
    marks: list[Mark]
    left: list[LeftPosition]
    # Equity at each candle's close (floats, for charts); the exact figures are in the summary.
    equity: FloatArray = field(repr=False)


# ---------------------------------------------------------------- the run


async def create_backtest_strategy(
    uow: UnitOfWorkFactory, exchange: Exchange, symbol: str, channel: Channel, bankroll: Decimal
) -> int:
    """A client and a strategy with the channel and its bankroll, through the services — so the
    channel is validated as at creation (rule 11)."""
    client = await services.create_client(cmds.CreateClient(BACKTEST_CLIENT), uow())
    assert client.id is not None
    strategy = await services.create_strategy(
        cmds.CreateStrategy(
            client.id, symbol, BACKTEST_STRATEGY, channel,
        ),
        uow(),
        exchange,
    )  # fmt: skip
    assert strategy.id is not None
    await services.allocate_capital(
        cmds.AllocateCapital(strategy.id, bankroll, note="backtest bankroll"), uow(), exchange
    )
    return strategy.id


class Backtest:
    """Replays a candle series through the live engine for one strategy (see the module doc).

    `uow` and `exchange` are the persistence and exchange the services run on (an in-memory unit of
    work and the paper exchange); `set_price(price, at)` feeds the exchange's price book."""

    def __init__(
        self,
        series: CandleSeries,
        uow: UnitOfWorkFactory,
        exchange: Exchange,
        symbol: Symbol,
        set_price: Callable[[Decimal, datetime], None],
        *,
        skip_ahead: bool = True,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.series = series
        self.uow = uow
        self.exchange = exchange
        self.symbol = symbol
        self.set_price = set_price
        self.skip_ahead = skip_ahead
        self.progress = progress
        self.engine = SymbolEngine(uow, exchange, symbol, self._set_price, fills_at_levels=True)
        self.engine.on_decision = self._decided
        self.candle = 0
        self.replayed = 0
        self.decisions = 0
        self.marks: list[Mark] = []
        self._at: datetime = ch.EPOCH
        self._price = ZERO
        base_ms = series.step_ms
        coarser = [int(d.total_seconds() * 1000) for d in ch.TIMEFRAMES.values() if d.total_seconds() * 1000 > base_ms]
        self._coarser_gcd_ms = math.gcd(*coarser) if coarser else 1 << 62

    def _decided(self, outcome: services.TickOutcome) -> None:
        self.decisions += 1
        for position in outcome.scheduled:
            self.marks.append(Mark(self._at, self._price, "scheduled", self.candle, position.id))

    def _set_price(self, price: Decimal, at: datetime) -> None:
        self._price, self._at = price, at
        self.set_price(price, at)

    async def run(self) -> None:
        """Replay the candles (skipping, with `skip_ahead`, those that cannot trigger anything)."""
        await self.engine.reload()
        series, engine = self.series, self.engine
        n = len(series)
        scanner = _Scanner(series) if self.skip_ahead else None
        prev: Decimal | None = None
        i = 0
        reported = 0
        while i < n:
            if scanner is not None:
                j = scanner.next_candidate(i, engine.index)
                if j > i:
                    prev = series.exact(j - 1)[3]
                    i = j
                    if i >= n:
                        break
            if self.progress is not None and i - reported >= 4096:
                self.progress(i, n)
                reported = i
            prev = await self._replay(i, prev)
            i += 1
        if self.progress is not None:
            self.progress(n, n)

    async def _replay(self, i: int, prev: Decimal | None) -> Decimal:
        """One candle, as the live loop replays it: the ticks along its path, then its closes.
        Returns its close."""
        self.candle = i
        self.replayed += 1
        o, h, low, c = self.series.exact(i)
        open_time = self.series.open_time(i)
        close_time = open_time + self.series.step
        path = ch.replay_path(prev, o, h, low, c)
        span = self.series.step / (len(path) + 1)
        for k, price in enumerate(path):
            if prev is not None:
                # The open, when it is a point of the path, is a jump from the last close (rule 10).
                await self.engine.price_moved(prev, price, open_time + span * k, jump=k == 0 and price == o)
            prev = price
        interval = self.series.interval
        # Decided before any close is judged, as the live consumer does. No coarser candle closes
        # off the multiples of the coarser timeframes' common divisor: no need to ask.
        closing = [interval]
        if not int(self.series.open_ms[i] + self.series.step_ms) % self._coarser_gcd_ms:
            closing += self.engine.closing_timeframes(interval, close_time)
        for timeframe in closing:
            broken = await self.engine.candle_closed(timeframe, c, close_time)
            if broken:
                await self._mark_break(broken, c, close_time)
        return c

    async def _mark_break(self, strategy_ids: list[int], close: Decimal, close_time: datetime) -> None:
        self.marks.append(Mark(close_time, close, "channel_broken", self.candle))
        async with self.uow() as uow:
            live = await uow.positions.list_live_by_strategies(strategy_ids)
        for p in live:
            if p.status is PositionStatus.SCHEDULED and p.channel_exit_date == close_time:
                self.marks.append(Mark(close_time, close, "scheduled", self.candle, p.id))

    # ------------------------------------------------------------ results

    async def result(self, strategy_id: int, channel: Channel, bankroll: Decimal) -> BacktestResult:
        """The summary, the trades, the marks and the equity curve of a finished run."""
        series = self.series
        n = len(series)
        fee_rate = self.exchange.fee_rate(self.symbol)
        async with self.uow() as uow:
            trades: list[Trade] = list(reversed(await uow.trades.list(Page(1 << 62), strategy_id=strategy_id)))
            positions = {
                p.id: p for p in await uow.positions.list(Page(1 << 62), strategy_id=strategy_id) if p.id is not None
            }
            ledger = await uow.allocations.ledger(strategy_id)
            strategy = await uow.strategies.get(strategy_id)
            skipped = [e for e in await uow.events.list_by_strategy(strategy_id, 1 << 62)
                       if e.type == EventType.ENTRY_SKIPPED.value]  # fmt: skip
        assert strategy is not None
        close_times = series.open_ms + series.step_ms
        fills = [self._fill(t, close_times) for t in trades]
        last_close = series.exact(n - 1)[3] if n else ZERO
        left = [
            _left(p, last_close, fee_rate) for p in sorted(positions.values(), key=lambda p: p.id or 0)
            if p.status is not PositionStatus.CLOSED
        ]  # fmt: skip
        curve = _Equity(series, bankroll, fee_rate, fills, positions)
        peak, trough = curve.max_drawdown_at()
        drawdown = curve.exact(peak) - curve.exact(trough) if trough >= 0 else ZERO
        peak_equity = curve.exact(peak)
        sells = [f for f in fills if f.side is Side.SELL]
        net_profit = sum((f.profit or ZERO for f in sells), ZERO)
        unrealised = sum((p.unrealised for p in left), ZERO)
        held = curve.held_candles()
        summary = Summary(
            symbol=self.symbol.symbol,
            interval=series.interval,
            candles=n,
            start=series.open_time(0) if n else ch.EPOCH,
            end=series.open_time(n - 1) + series.step if n else ch.EPOCH,
            channel=channel,
            levels=channel.levels,
            bankroll=bankroll,
            fee_rate=fee_rate,
            entries=sum(1 for f in fills if f.side is Side.BUY),
            exits=len(sells),
            wins=sum(1 for f in sells if (f.profit or ZERO) > 0),
            losses=sum(1 for f in sells if (f.profit or ZERO) < 0),
            skipped_entries=len(skipped),
            net_profit=net_profit,
            segregated_profit=ledger.profit,
            fees=sum((f.fee for f in fills), ZERO),
            max_drawdown=drawdown,
            max_drawdown_pct=(drawdown / peak_equity * HUNDRED).quantize(Decimal("0.01")) if peak_equity else ZERO,
            exposure_pct=(Decimal(held) / Decimal(n) * HUNDRED).quantize(Decimal("0.01")) if n else ZERO,
            exposure_time=series.step * held,
            channel_broken_at=strategy.channel_broken_at,
            left_open=sum(1 for p in left if p.status is PositionStatus.OPEN),
            left_scheduled=sum(1 for p in left if p.status is PositionStatus.SCHEDULED),
            unrealised=unrealised,
            last_close=last_close,
            final_equity=bankroll + net_profit + unrealised,
            replayed_candles=self.replayed,
            decisions=self.decisions,
        )
        return BacktestResult(summary, fills, list(self.marks), left, curve.floats)

    def _fill(self, t: Trade, close_times: IntArray) -> BacktestTrade:
        assert t.position_id is not None
        at_ms = int((t.executed_at - ch.EPOCH) / timedelta(milliseconds=1))
        candle = int(np.searchsorted(close_times, at_ms, "right"))
        fee = t.fees if t.fee_asset == self.symbol.quote_asset else t.fees * t.price
        return BacktestTrade(
            t.executed_at, t.side, t.price, t.quantity, t.quote_amount, fee, t.profit, t.notes or "", t.position_id,
            min(candle, len(close_times) - 1),
        )  # fmt: skip


def _left(p: Position, last_close: Decimal, fee_rate: Decimal) -> LeftPosition:
    assert p.id is not None
    return LeftPosition(
        p.id, p.status, p.created_at, p.entry_price, p.quantity, p.cost, p.min_sell_price, p.scheduled_exit_price,
        p.quantity * last_close * (1 - fee_rate) - p.cost,
    )  # fmt: skip


class _Equity:
    """Equity at each candle's close: bankroll + realised profit + what the held positions would
    fetch at that close after the sell fee, minus their cost. Piecewise `K + Q * close * (1 - f)`,
    with K and Q changing only at fills: floats for the curve, `Decimal` for the figures."""

    def __init__(
        self,
        series: CandleSeries,
        bankroll: Decimal,
        fee_rate: Decimal,
        fills: list[BacktestTrade],
        positions: dict[int, Position],
    ) -> None:
        self.series = series
        self.fee_rate = fee_rate
        n = len(series)
        # Exact steps of K and Q, in fill order, at their candles.
        self.at: list[int] = []
        self.k: list[Decimal] = []
        self.q: list[Decimal] = []
        k, q = bankroll, ZERO
        dk = np.zeros(n + 1)
        dq = np.zeros(n + 1)
        live = np.zeros(n + 1, dtype=np.int64)
        opened: dict[int, int] = {}
        for f in fills:
            if f.side is Side.BUY:
                # The paper exchange fills a sell whole or not at all, so a position keeps its cost C
                # and quantity Q until it is sold (its dust is never sold, and not counted).
                p = positions[f.position_id]
                step_k, step_q = -p.cost, p.quantity
                opened[f.position_id] = f.candle
            else:
                step_k, step_q = f.quote - f.fee, -f.quantity
                start = opened.pop(f.position_id, 0)
                live[start] += 1
                live[f.candle + 1] -= 1
            k, q = k + step_k, q + step_q
            self.at.append(f.candle)
            self.k.append(k)
            self.q.append(q)
            dk[f.candle] += float(step_k)
            dq[f.candle] += float(step_q)
        for start in opened.values():
            live[start] += 1
            live[n] -= 1
        self.bankroll = bankroll
        self.live = np.cumsum(live[:n])
        closes = series.prices[:, 3]
        equity = float(bankroll) + np.cumsum(dk[:n]) + np.cumsum(dq[:n]) * closes * (1 - float(fee_rate))
        self.floats: FloatArray = equity

    def held_candles(self) -> int:
        return int(np.count_nonzero(self.live))

    def max_drawdown_at(self) -> tuple[int, int]:
        """(peak, trough) candle indices of the largest fall of equity (-1: the starting bankroll)."""
        curve = np.concatenate(([float(self.bankroll)], self.floats))
        peaks = np.maximum.accumulate(curve)
        falls = peaks - curve
        trough = int(np.argmax(falls))
        if falls[trough] <= 0:
            return -1, -1
        peak = int(np.argmax(curve[: trough + 1]))
        return peak - 1, trough - 1

    def exact(self, candle: int) -> Decimal:
        """Equity at a candle's close, in Decimal (-1: the starting bankroll)."""
        if candle < 0:
            return self.bankroll
        j = bisect.bisect_right(self.at, candle)
        if j == 0:
            return self.bankroll
        close = self.series.exact(candle)[3]
        return self.k[j - 1] + self.q[j - 1] * close * (1 - self.fee_rate)


async def run_backtest(
    series: CandleSeries,
    channel: Channel,
    bankroll: Decimal,
    *,
    uow: UnitOfWorkFactory,
    exchange: Exchange,
    symbol: str,
    set_price: Callable[[Decimal, datetime], None],
    skip_ahead: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> BacktestResult:
    """Backtest a channel over candles with a bankroll: a fresh strategy on `uow` and `exchange`
    (an in-memory unit of work and the paper exchange), replayed by the live engine. Candles coarser
    than the channel's timeframe are refused (rule 5: `ValidationError` naming the coarsest candle
    interval that works)."""
    if not len(series):
        raise ValueError("no candles to backtest")
    ch.check_candle_interval(series.step, channel.timeframe)
    strategy_id = await create_backtest_strategy(uow, exchange, symbol, channel, bankroll)
    async with uow() as u:
        found = await u.symbols.get_by_name(symbol)
    assert found is not None
    backtest = Backtest(series, uow, exchange, found, set_price, skip_ahead=skip_ahead, progress=progress)
    await backtest.run()
    return await backtest.result(strategy_id, channel, bankroll)
