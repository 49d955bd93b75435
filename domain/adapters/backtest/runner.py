"""Runs backtests (`domain.backtest`) on the in-memory unit of work and the paper exchange: candles
from a CSV file or from `historical_prices`, one run or a parameter sweep over processes."""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from domain import channel as ch
from domain.adapters.exchanges.paper import SEED_SYMBOLS, PaperExchange, SeedSymbol
from domain.adapters.market.prices import MemoryPriceBook
from domain.adapters.persistence.memory import MemoryStore, MemoryUnitOfWorkFactory
from domain.backtest import BacktestResult, CandleSeries, run_backtest
from domain.channel import Channel
from domain.errors import NoPrice, ValidationError
from domain.model import Symbol

QUOTE_ASSETS = ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "DAI", "EUR", "TRY", "BRL", "BTC", "ETH", "BNB")
FINE = Decimal("0.00000001")


class BacktestExchange(PaperExchange):
    """The paper exchange on the replay's clock: a fill happens at the time of the price it fills
    at (the paper exchange proper stamps fills with the wall clock)."""

    async def _price(self, symbol: Symbol) -> tuple[Decimal, datetime]:
        quote = await self.prices.current_price(symbol)
        if quote is None:
            raise NoPrice(f"No market price is known for {symbol.symbol} yet.", symbol=symbol.symbol)
        return quote


# ---------------------------------------------------------------- candles


def read_candle_csv(path: Path) -> CandleSeries:
    """Candles from a CSV file `open_time_ms,open,high,low,close[,volume]` (`CandleSeries.from_csv`;
    the interval is the spacing of the first two rows, as the replay market infers it)."""
    return CandleSeries.from_csv(path.read_bytes(), str(path))


def write_candle_csv(series: CandleSeries, path: Path) -> None:
    """The candles as a CSV `open_time_ms,open,high,low,close,volume` (volume 0), prices exact."""
    with path.open("w") as f:
        f.write("open_time_ms,open,high,low,close,volume\n")
        for i in range(len(series)):
            o, h, low, c = series.exact(i)
            f.write(f"{int(series.open_ms[i])},{o},{h},{low},{c},0\n")


# ---------------------------------------------------------------- symbols


def symbol_for(name: str, tick_size: Decimal | None = None, step_size: Decimal | None = None) -> Symbol:
    """The symbol to backtest: the seeded filters of a known symbol (BTCUSDT, ETHUSDT), else fine
    ones (1e-8) with a quote asset guessed from the name's ending; `tick_size`/`step_size` override."""
    name = name.upper()
    known: SeedSymbol | None = next((row.copy() for row in SEED_SYMBOLS if row["symbol"] == name), None)
    if known is None:
        quote = next((q for q in QUOTE_ASSETS if name.endswith(q) and len(name) > len(q)), "USDT")
        known = {
            "symbol": name,
            "base_asset": name[: -len(quote)] if name.endswith(quote) else name,
            "quote_asset": quote,
            "step_size": FINE,
            "min_qty": FINE,
            "tick_size": FINE,
            "min_notional": Decimal(0),
        }
    symbol = Symbol(**known)
    if tick_size is not None:
        symbol.tick_size = tick_size
    if step_size is not None:
        symbol.step_size = symbol.min_qty = step_size
    return symbol


def symbol_from_file_name(path: Path) -> str:
    """`ETHUSDT-1m.csv` -> ETHUSDT."""
    return path.stem.split("-")[0].split("_")[0].upper() or "BTCUSDT"


# ---------------------------------------------------------------- one run


async def backtest_async(
    series: CandleSeries,
    channel: Channel,
    bankroll: Decimal,
    symbol: Symbol,
    fee_rate: Decimal = ch.DEFAULT_FEE_RATE,
    *,
    skip_ahead: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> BacktestResult:
    """Backtest a channel on a fresh in-memory store holding only `symbol`."""
    store = MemoryStore()
    store.add_committed(replace(symbol, id=None, created_at=None, updated_at=None))
    book = MemoryPriceBook()
    name = symbol.symbol

    def set_price(price: Decimal, at: datetime) -> None:
        book.set(name, price, at)

    # The memory unit of work has the repositories the engine uses, not the API's read side (reports,
    # batch, alerts, trade export, event listing): it implements `UnitOfWork` only in part.
    return await run_backtest(
        series, channel, bankroll,
        uow=MemoryUnitOfWorkFactory(store),  # type: ignore[arg-type]
        exchange=BacktestExchange(book, fee_rate), symbol=name,
        set_price=set_price, skip_ahead=skip_ahead, progress=progress,
    )  # fmt: skip


def backtest(
    series: CandleSeries,
    channel: Channel,
    bankroll: Decimal,
    symbol: Symbol,
    fee_rate: Decimal = ch.DEFAULT_FEE_RATE,
    *,
    skip_ahead: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> BacktestResult:
    """`backtest_async` in its own event loop (CLI, sweeps, threads)."""
    return asyncio.run(
        backtest_async(series, channel, bankroll, symbol, fee_rate, skip_ahead=skip_ahead, progress=progress)
    )


class ProgressBar:
    """A progress bar on stderr for long runs: redrawn in place on a terminal (at most every
    0.2 s), one line per tenth of the way otherwise (logs)."""

    def __init__(
        self, label: str = "backtest", stream: TextIO | None = None, width: int = 30, unit: str = "candles"
    ) -> None:
        self.label = label
        self.unit = unit
        self.stream = stream or sys.stderr
        self.width = width
        self.started = time.perf_counter()
        self.interactive = self.stream.isatty()
        self._drawn = 0.0
        self._tenth = -1

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        share = done / total if total else 1.0
        if self.interactive:
            if done < total and now - self._drawn < 0.2:
                return
        elif int(share * 10) == self._tenth:
            return
        self._drawn, self._tenth = now, int(share * 10)
        filled = int(share * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        line = f"{self.label} [{bar}] {share:6.1%} {done:,}/{total:,} {self.unit} {now - self.started:5.1f} s"
        if self.interactive:
            self.stream.write(f"\r{line}" + ("\n" if done >= total else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


# ---------------------------------------------------------------- sweeps


def parse_values(text: str) -> list[Decimal]:
    """`2000,2100,2200` or a range `2000:2400:100` (start:stop:step, stop included)."""
    if ":" in text:
        parts = [Decimal(p) for p in text.split(":")]
        if len(parts) != 3 or parts[2] <= 0:
            raise ValidationError(f"A range is start:stop:step with a positive step, not {text!r}.")
        start, stop, step = parts
        count = int((stop - start) / step) + 1
        return [start + step * i for i in range(max(count, 0))]
    return [Decimal(p) for p in text.split(",") if p.strip()]


@dataclass(frozen=True)
class SweepRow:
    """One point of a sweep: its parameters and its figures (None when the channel is invalid)."""

    channel: Channel
    net_profit: Decimal | None
    entries: int = 0
    exits: int = 0
    wins: int = 0
    max_drawdown: Decimal = Decimal(0)
    exposure_pct: Decimal = Decimal(0)
    left_positions: int = 0
    unrealised: Decimal = Decimal(0)
    final_equity: Decimal = Decimal(0)
    error: str | None = None


SWEPT = ("base", "top", "capital_percentage", "buy_threshold", "sell_threshold", "min_profit", "timeframe")

_series: CandleSeries | None = None


def _load_series(source: Path) -> None:
    global _series  # one parse per worker process
    _series = read_candle_csv(source)


def _sweep_point(args: tuple[Channel, Decimal, Symbol, Decimal]) -> SweepRow:
    channel, bankroll, symbol, fee_rate = args
    assert _series is not None
    try:
        result = backtest(_series, channel, bankroll, symbol, fee_rate)
    except ValidationError as e:
        return SweepRow(channel, None, error=e.message)
    s = result.summary
    return SweepRow(
        channel, s.net_profit, s.entries, s.exits, s.wins, s.max_drawdown, s.exposure_pct,
        s.left_open + s.left_scheduled, s.unrealised, s.final_equity,
    )  # fmt: skip


def grid(base: Channel, axes: dict[str, Sequence[object]]) -> list[Channel]:
    """Every combination of the swept parameters, the others as in `base`."""
    names = list(axes)
    channels = []
    for combo in itertools.product(*axes.values()):
        # Fields named at run time (the sweep's axes), of several types; each run validates its channel.
        changes: dict[str, Any] = dict(zip(names, combo, strict=True))
        channels.append(replace(base, **changes))
    return channels


def sweep(
    source: Path,
    channels: Iterable[Channel],
    bankroll: Decimal,
    symbol: Symbol,
    fee_rate: Decimal = ch.DEFAULT_FEE_RATE,
    *,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[SweepRow]:
    """Backtest every channel over a candle CSV in parallel processes; ranked by net profit."""
    points = [(c, bankroll, symbol, fee_rate) for c in channels]
    workers = max(1, min(workers or os.cpu_count() or 1, len(points)))
    rows: list[SweepRow] = []
    with ProcessPoolExecutor(workers, initializer=_load_series, initargs=(source,)) as pool:
        for row in pool.map(_sweep_point, points, chunksize=max(1, len(points) // (workers * 8))):
            rows.append(row)
            if progress is not None:
                progress(len(rows), len(points))
    return rank(rows)


def rank(rows: Iterable[SweepRow]) -> list[SweepRow]:
    """Best net profit first; invalid channels last."""
    return sorted(rows, key=lambda r: (r.net_profit is None, -(r.net_profit or 0), -r.final_equity))
