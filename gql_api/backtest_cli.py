"""`criptoren backtest` and `criptoren sweep`: a channel over historical candles, run by the live
engine (SPEC §4, rule 10 replay path), with a summary, trades, a chart and, for sweeps, a ranked
table and a heat-map.

criptoren backtest --csv ETHUSDT-1m.csv --base 2150 --top 4000 --bankroll 10000 --out backtest-out
criptoren backtest --symbol BTCUSDT --interval 1m --strategy-id 1        (candles of historical_prices)
criptoren sweep --csv ETHUSDT-1m.csv --base 2000:2400:100 --top 2800:4000:200 --workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import fields
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from domain import commands as cmds
from domain.adapters.bootstrap import Database, backtest_report, backtest_runner, open_database
from domain.adapters.config import Settings
from domain.backtest import CandleSeries
from domain.channel import DEFAULT_TIMEFRAME, Channel, check_candle_interval
from domain.errors import DomainError, ValidationError
from domain.model import Symbol
from domain.ports import UnitOfWork
from domain.services import backtests

CHANNEL_OPTIONS = (
    ("--base", "base", "base price B"),
    ("--top", "top", "top price T"),
    ("--capital-percentage", "capital_percentage", "p: share of the bankroll per entry, in %% (default 20)"),
    ("--buy-threshold", "buy_threshold", "b: entry at B × (1 + b/100), in %% (default 2)"),
    ("--sell-threshold", "sell_threshold", "s: exit at T × (1 − s/100), in %% (default 2)"),
    ("--min-profit", "min_profit", "m: minimum profit of a sell, in %% (default 0.5)"),
)
# A sweep's parameters that are not given take the channel's defaults (domain.channel).
DEFAULTS = {f.name: str(f.default) for f in fields(Channel) if f.name in {n for _, n, _ in CHANNEL_OPTIONS}}


def _decimal(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value.is_finite():
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def _date(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _common(p: argparse.ArgumentParser) -> None:
    source = p.add_argument_group("candles")
    source.add_argument("--csv", type=Path, help="candle CSV: open_time_ms,open,high,low,close,volume")
    source.add_argument("--symbol", help="symbol (filters; with no --csv, whose stored candles to use)")
    source.add_argument("--interval", default="1m", help="interval of the stored candles (default 1m)")
    source.add_argument("--from", dest="start", type=_date, help="first open time (ISO date, UTC)")
    source.add_argument("--to", dest="end", type=_date, help="open times before this (ISO date, UTC)")
    p.add_argument("--bankroll", type=_decimal, help="principal allocated to the strategy (default 2000)")
    p.add_argument("--fee-rate", type=_decimal, help="exchange fee rate (default FEE_RATE, 0.001)")
    p.add_argument("--tick-size", type=_decimal, help="price tick of an unknown symbol (default 0.00000001)")
    p.add_argument("--step-size", type=_decimal, help="lot step of an unknown symbol (default 0.00000001)")
    p.add_argument("--out", type=Path, default=Path("backtest-out"), help="output folder (default backtest-out)")


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `backtest` and `sweep` sub-commands."""
    bt = sub.add_parser("backtest", help="backtest a channel over historical candles (summary, trades, chart)")
    _common(bt)
    bt.add_argument("--strategy-id", type=int, help="backtest a stored strategy's channel (and bankroll)")
    for flag, _, help_text in CHANNEL_OPTIONS:
        bt.add_argument(flag, type=_decimal, help=help_text)
    bt.add_argument("--timeframe", help="timeframe of the channel-break candles (default 4h)")
    bt.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    bt.add_argument("--tick-by-tick", action="store_true", help="replay every candle (no pre-scan skipping)")
    sw = sub.add_parser("sweep", help="backtest a grid of channel parameters in parallel; ranked table and heat-map")
    _common(sw)
    for flag, _, help_text in CHANNEL_OPTIONS:
        sw.add_argument(flag, help=f"{help_text}: a value, a list a,b,c or a range start:stop:step")
    sw.add_argument(
        "--timeframe",
        default=DEFAULT_TIMEFRAME,
        help=f"timeframe(s), e.g. 4h or 1h,4h,1d (default {DEFAULT_TIMEFRAME})",
    )
    sw.add_argument("--x", help="heat-map column parameter (default: the first swept one)")
    sw.add_argument("--y", help="heat-map row parameter (default: the second swept one)")
    sw.add_argument("--workers", type=int, help="processes (default: the number of CPUs)")


COMMANDS = ("backtest", "sweep")


def run(args: argparse.Namespace, settings: Settings) -> None:
    try:
        if args.command == "backtest":
            asyncio.run(_backtest(args, settings))
        else:
            _sweep(args, settings)
    except DomainError as e:
        sys.stderr.write(f"criptoren {args.command}: {e.message}\n")
        raise SystemExit(1) from None


# ---------------------------------------------------------------- sources


class _Database:
    """The database, connected to only when the candles or the strategy come from it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._db: Database | None = None

    async def __aenter__(self) -> _Database:
        return self

    async def __aexit__(self, *args: object) -> None:
        if self._db is not None:
            await self._db.close()

    def uow(self) -> UnitOfWork:
        if self._db is None:
            self._db = open_database(self.settings)
        return self._db.uow()


async def _candles(args: argparse.Namespace, db: _Database, symbol: Symbol | None) -> tuple[CandleSeries, Symbol]:
    if args.csv is not None:
        if not args.csv.is_file():
            raise ValidationError(f"No such file: {args.csv}", field="csv")
        series = backtest_runner.read_candle_csv(args.csv)
        if args.start is not None or args.end is not None:
            lo = 0 if args.start is None else int(args.start.timestamp() * 1000)
            hi = None if args.end is None else int(args.end.timestamp() * 1000)
            keep = (series.open_ms >= lo) & (True if hi is None else series.open_ms < hi)
            first = int(keep.argmax()) if keep.any() else len(series)
            series = series.slice(first, first + int(keep.sum()))
        if symbol is None:
            name = args.symbol or backtest_runner.symbol_from_file_name(args.csv)
            symbol = backtest_runner.symbol_for(name, args.tick_size, args.step_size)
    else:
        if symbol is None and not args.symbol:
            raise ValidationError("Give --csv FILE, or --symbol (or --strategy-id) to use stored candles.")
        if symbol is None:
            symbol = await backtests.stored_symbol(db.uow(), args.symbol)
        assert symbol.id is not None
        series = await backtests.stored_candles(db.uow(), symbol.id, args.interval, args.start, args.end)
    if not len(series):
        raise ValidationError("No candles to backtest in that range.")
    return series, symbol


# ---------------------------------------------------------------- backtest


async def _backtest(args: argparse.Namespace, settings: Settings) -> None:
    async with _Database(settings) as db:
        if args.strategy_id is None and (args.base is None or args.top is None):
            raise ValidationError("Give --base and --top (or --strategy-id).", field="base")
        setup = await backtests.prepare_backtest(
            cmds.PrepareBacktest(
                strategy_id=args.strategy_id, base_price=args.base, top_price=args.top,
                capital_percentage=args.capital_percentage, buy_threshold=args.buy_threshold,
                sell_threshold=args.sell_threshold, min_profit=args.min_profit, timeframe=args.timeframe,
                bankroll=args.bankroll,
            ),
            db.uow,
        )  # fmt: skip
        channel, bankroll = setup.channel, setup.bankroll
        series, symbol = await _candles(args, db, setup.symbol)
    fee_rate = args.fee_rate if args.fee_rate is not None else settings.fee_rate
    progress = backtest_runner.ProgressBar() if len(series) >= 200_000 else None
    started = time.perf_counter()
    result = await backtest_runner.backtest_async(
        series, channel, bankroll, symbol, fee_rate, skip_ahead=not args.tick_by_tick, progress=progress
    )
    seconds = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    backtest_report.write_trades_csv(result.trades, args.out / "trades.csv")
    backtest_report.write_result_json(result, args.out / "backtest.json")
    written = ["trades.csv", "backtest.json"]
    if not args.no_chart:
        backtest_report.plot_backtest(result, series, args.out / "chart.png")
        written.append("chart.png")
    sys.stdout.write(backtest_report.summary_table(result.summary, seconds))
    sys.stdout.write(f"Wrote {', '.join(str(args.out / w) for w in written)}\n")


# ---------------------------------------------------------------- sweep


def _axis_values(args: argparse.Namespace) -> dict[str, list[object]]:
    axes: dict[str, list[object]] = {}
    for _, name, _ in CHANNEL_OPTIONS:
        text = getattr(args, name)
        if text is None and name in DEFAULTS:
            text = DEFAULTS[name]
        if text is None:
            raise ValidationError(f"Give --{name.replace('_', '-')}.", field=name)
        try:
            axes[name] = list(backtest_runner.parse_values(text))
        except (InvalidOperation, ValueError):
            raise ValidationError(f"--{name.replace('_', '-')}: not a number, list or range: {text!r}") from None
    axes["timeframe"] = [t.strip() for t in args.timeframe.split(",") if t.strip()]
    return axes


async def _sweep_candles(args: argparse.Namespace, settings: Settings) -> tuple[CandleSeries, Symbol]:
    async with _Database(settings) as db:
        return await _candles(args, db, None)


def _sweep(args: argparse.Namespace, settings: Settings) -> None:
    axes = _axis_values(args)
    swept = [name for name, values in axes.items() if len(values) > 1]
    if not swept:
        raise ValidationError("Nothing to sweep: give at least one parameter several values (a,b or start:stop:step).")
    x_axis = args.x or swept[0]
    y_axis = args.y or (swept[1] if len(swept) > 1 else next(n for n in axes if n != x_axis))
    channels = backtest_runner.grid(Channel(Decimal(1), Decimal(2)), {k: v for k, v in axes.items()})
    series, symbol = asyncio.run(_sweep_candles(args, settings))
    # Rule 5: refused as a whole, before any run, when the candles cannot judge a swept timeframe.
    for timeframe in axes["timeframe"]:
        check_candle_interval(series.step, str(timeframe))
    args.out.mkdir(parents=True, exist_ok=True)
    source = args.csv
    with tempfile.TemporaryDirectory() as tmp:
        if source is None or args.start is not None or args.end is not None:
            source = Path(tmp) / "candles.csv"
            backtest_runner.write_candle_csv(series, source)
        bankroll = args.bankroll or Decimal(2000)
        fee_rate = args.fee_rate if args.fee_rate is not None else settings.fee_rate
        started = time.perf_counter()
        rows = backtest_runner.sweep(
            source, channels, bankroll, symbol, fee_rate, workers=args.workers,
            progress=backtest_runner.ProgressBar("sweep", unit="runs"),
        )  # fmt: skip
        seconds = time.perf_counter() - started
    backtest_report.write_sweep_csv(rows, args.out / "sweep.csv")
    backtest_report.plot_heatmap(rows, x_axis, y_axis, args.out / "heatmap.png")
    valid = [r for r in rows if r.net_profit is not None]
    sys.stdout.write(
        f"{len(rows)} runs ({len(rows) - len(valid)} rejected by rule 11) over {len(series):,} candles "
        f"in {seconds:.1f} s.\n"
    )
    for rank, r in enumerate(valid[:10], 1):
        params = ", ".join(f"{name}={getattr(r.channel, name)}" for name in swept)
        sys.stdout.write(f"{rank:3}. net profit {r.net_profit:>14.2f}  entries {r.entries:3}  {params}\n")
    sys.stdout.write(f"Wrote {args.out / 'sweep.csv'}, {args.out / 'heatmap.png'}\n")
