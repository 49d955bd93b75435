"""Backtest and sweep outputs: a summary table, trades as CSV/JSON, a PNG chart (price, channel,
fills, equity) and a heat-map of a sweep's net profit. matplotlib draws off-screen (Agg)."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from domain.backtest import BacktestResult, BacktestTrade, CandleSeries, LeftPosition, Mark, Summary
from domain.model import Side
from domain.numbers import plain

if TYPE_CHECKING:
    from domain.adapters.backtest.runner import SweepRow

CHART_BUCKETS = 1600  # price and equity are drawn as per-bucket ranges beyond this many candles


def _fmt(value: Decimal, places: int = 2) -> str:
    return f"{value.quantize(Decimal(1).scaleb(-places)):,}"


def _plain(value: Decimal | None) -> str | None:
    return None if value is None else plain(value)


def summary_table(s: Summary, seconds: float | None = None) -> str:
    """The summary as an aligned text table."""
    lv = s.levels
    c = s.channel
    span = f"{s.start:%Y-%m-%d %H:%M} → {s.end:%Y-%m-%d %H:%M} UTC"
    rows = [
        ("symbol / candles", f"{s.symbol}, {s.candles:,} × {s.interval} ({span})"),
        ("channel B / E / X / T", f"{_fmt(lv.base)} / {_fmt(lv.entry)} / {_fmt(lv.exit)} / {_fmt(lv.top)}"),
        ("parameters", f"p {c.capital_percentage}%, b {c.buy_threshold}%, s {c.sell_threshold}%, "
                       f"m {c.min_profit}%, timeframe {c.timeframe}, fee {(s.fee_rate * 100).normalize():f}%"),
        ("bankroll", _fmt(s.bankroll)),
        ("entries / exits", f"{s.entries} / {s.exits}  (wins {s.wins}, losses {s.losses}, "
                            f"skipped entries {s.skipped_entries})"),
        ("net profit (realised)", _fmt(s.net_profit, 8)),
        ("segregated profit", _fmt(s.segregated_profit, 8)),
        ("fees", _fmt(s.fees, 8)),
        ("max drawdown", f"{_fmt(s.max_drawdown)} ({s.max_drawdown_pct}%)"),
        ("exposure", f"{s.exposure_pct}% of the time ({s.exposure_time})"),
        ("channel broken at", f"{s.channel_broken_at:%Y-%m-%d %H:%M} UTC" if s.channel_broken_at else "—"),
        ("positions left", f"{s.left_open} open, {s.left_scheduled} scheduled; unrealised "
                           f"{_fmt(s.unrealised)} at the last close {s.last_close}"),
        ("final equity", _fmt(s.final_equity)),
        ("replayed / skipped candles", f"{s.replayed_candles:,} / {s.candles - s.replayed_candles:,} "
                                       f"({s.decisions} decisions)"),
    ]  # fmt: skip
    if seconds is not None:
        rows.append(("run time", f"{seconds:.3f} s ({s.candles / seconds:,.0f} candles/s)" if seconds else "—"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows) + "\n"


TRADE_COLUMNS = ("time", "side", "price", "quantity", "quote", "fee", "profit", "reason", "position_id")


def trade_row(t: BacktestTrade) -> dict[str, Any]:
    return {
        "time": t.at.isoformat(),
        "side": t.side.value,
        "price": _plain(t.price),
        "quantity": _plain(t.quantity),
        "quote": _plain(t.quote),
        "fee": _plain(t.fee),
        "profit": _plain(t.profit),
        "reason": t.reason,
        "position_id": t.position_id,
    }


def left_row(p: LeftPosition) -> dict[str, Any]:
    return {
        "position_id": p.position_id,
        "status": p.status.value,
        "opened_at": p.opened_at.isoformat() if p.opened_at else None,
        "entry_price": _plain(p.entry_price),
        "quantity": _plain(p.quantity),
        "cost": _plain(p.cost),
        "min_sell_price": _plain(p.min_sell_price),
        "scheduled_exit_price": _plain(p.scheduled_exit_price),
        "unrealised": _plain(p.unrealised),
    }


def write_trades_csv(trades: Sequence[BacktestTrade], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, TRADE_COLUMNS)
        writer.writeheader()
        writer.writerows(trade_row(t) for t in trades)


def write_result_json(result: BacktestResult, path: Path) -> None:
    """Summary, trades, positions left and marks, Decimals as strings."""
    data = {
        "summary": result.summary.as_dict(),
        "trades": [trade_row(t) for t in result.trades],
        "positions_left": [left_row(p) for p in result.left],
        "marks": [
            {"time": m.at.isoformat(), "price": _plain(m.price), "kind": m.kind, "position_id": m.position_id}
            for m in result.marks
        ],
    }
    path.write_text(json.dumps(data, indent=2) + "\n")


# ---------------------------------------------------------------- charts


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _buckets(n: int) -> np.ndarray:
    """Start index of each drawn bucket of candles."""
    size = max(1, -(-n // CHART_BUCKETS))
    return np.arange(0, n, size)


def plot_backtest(result: BacktestResult, series: CandleSeries, path: Path, title: str | None = None) -> None:
    """Price (per-bucket range and close), the channel lines B, E, X, T, buy/sell/schedule markers
    and the channel break on top; the equity curve below."""
    plt = _pyplot()
    s = result.summary
    n = len(series)
    times = (series.open_ms + series.step_ms).astype("datetime64[ms]")
    starts = _buckets(n)
    prices = series.prices
    low = np.minimum.reduceat(prices[:, 2], starts)
    high = np.maximum.reduceat(prices[:, 1], starts)
    ends = np.append(starts[1:], n) - 1
    close = prices[ends, 3]
    eq_low = np.minimum.reduceat(result.equity, starts)
    eq_high = np.maximum.reduceat(result.equity, starts)
    x = times[ends]

    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(13, 7.5), sharex=True, gridspec_kw={"height_ratios": [3, 1.2]}, constrained_layout=True
    )
    top.fill_between(x, low, high, color="#9db4d0", alpha=0.45, linewidth=0, label="range", step="mid")
    top.plot(x, close, color="#24476b", linewidth=0.7, label="close")
    lv = s.levels
    # Labels in the right margin, the upper line's above it and the lower's below, as they are close.
    for value, name, color, style, va in (
        (lv.top, "T", "#7a1f1f", ":", "bottom"),
        (lv.exit, "X", "#c0392b", "--", "top"),
        (lv.entry, "E", "#1e8449", "--", "bottom"),
        (lv.base, "B", "#145a32", ":", "top"),
    ):
        top.axhline(float(value), color=color, linestyle=style, linewidth=1)
        top.annotate(f" {name} {value.normalize():f}", (1.0, float(value)), xycoords=("axes fraction", "data"),
                     color=color, fontsize=8, va=va)  # fmt: skip

    def at(candles: list[int]) -> np.ndarray:
        return times[np.asarray(candles, dtype=np.int64)] if candles else np.array([], dtype="datetime64[ms]")

    buys = [t for t in result.trades if t.side is Side.BUY]
    sells = [t for t in result.trades if t.side is Side.SELL]
    scheduled = [m for m in result.marks if m.kind == "scheduled"]
    breaks: list[Mark] = [m for m in result.marks if m.kind == "channel_broken"]
    top.scatter(at([t.candle for t in buys]), [float(t.price) for t in buys], marker="^", s=70, color="#1e8449",
                edgecolor="white", zorder=5, label=f"buy ({len(buys)})")  # fmt: skip
    top.scatter(at([t.candle for t in sells]), [float(t.price) for t in sells], marker="v", s=70, color="#c0392b",
                edgecolor="white", zorder=5, label=f"sell ({len(sells)})")  # fmt: skip
    top.scatter(at([m.candle for m in scheduled]), [float(m.price) for m in scheduled], marker="o", s=55,
                facecolor="none", edgecolor="#d68910", linewidth=1.6, zorder=5,
                label=f"scheduled ({len(scheduled)})")  # fmt: skip
    for m in breaks:
        top.axvline(times[m.candle], color="#884ea0", linewidth=1, linestyle="-.", label="channel broken")
    top.set_ylabel(f"price ({s.symbol})")
    top.legend(loc="upper left", fontsize=8, ncols=3)
    top.grid(alpha=0.25)
    top.set_title(
        title
        or f"{s.symbol} {s.interval} backtest: net profit {s.net_profit.quantize(Decimal('0.01'))}, "
        f"{s.entries} entries, {s.exits} exits, max drawdown {s.max_drawdown.quantize(Decimal('0.01'))}"
    )

    bottom.fill_between(x, eq_low, eq_high, color="#a9cce3", alpha=0.6, linewidth=0, step="mid")
    bottom.plot(x, result.equity[ends], color="#1b4f72", linewidth=0.9, label="equity")
    bottom.axhline(float(s.bankroll), color="grey", linewidth=0.8, linestyle=":", label="bankroll")
    bottom.set_ylabel("equity")
    bottom.legend(loc="upper left", fontsize=8)
    bottom.grid(alpha=0.25)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------- sweeps

SWEEP_FIGURES = ("net_profit", "entries", "exits", "wins", "max_drawdown", "exposure_pct", "left_positions",
                 "unrealised", "final_equity")  # fmt: skip
CHANNEL_FIELDS = ("base", "top", "capital_percentage", "buy_threshold", "sell_threshold", "min_profit", "timeframe")


def write_sweep_csv(rows: Sequence[SweepRow], path: Path) -> None:
    """The ranked table: rank, the channel's parameters, the figures (invalid channels last)."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["rank", *CHANNEL_FIELDS, *SWEEP_FIGURES, "error"])
        for rank, row in enumerate(rows, 1):
            params = [getattr(row.channel, name) for name in CHANNEL_FIELDS]
            figures = [getattr(row, name) for name in SWEEP_FIGURES]
            writer.writerow(
                [rank if row.error is None else "", *params,
                 *(("" if v is None else (_plain(v) if isinstance(v, Decimal) else v)) for v in figures),
                 row.error or ""]
            )  # fmt: skip


def plot_heatmap(rows: Sequence[SweepRow], x_axis: str, y_axis: str, path: Path) -> None:
    """Net profit over two swept parameters (the best over any other swept ones); blank: invalid."""
    plt = _pyplot()
    xs = sorted({getattr(r.channel, x_axis) for r in rows})
    ys = sorted({getattr(r.channel, y_axis) for r in rows})
    grid = np.full((len(ys), len(xs)), np.nan)
    for r in rows:
        if r.net_profit is None:
            continue
        i, j = ys.index(getattr(r.channel, y_axis)), xs.index(getattr(r.channel, x_axis))
        value = float(r.net_profit)
        grid[i, j] = value if np.isnan(grid[i, j]) else max(grid[i, j], value)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(xs) + 3), max(4.5, 0.45 * len(ys) + 2)),
                           constrained_layout=True)  # fmt: skip
    image = ax.imshow(grid, origin="lower", aspect="auto", cmap="RdYlGn")
    ax.set_xticks(range(len(xs)), [str(v) for v in xs], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(ys)), [str(v) for v in ys], fontsize=8)
    ax.set_xlabel(x_axis)
    ax.set_ylabel(y_axis)
    if len(xs) * len(ys) <= 400:
        for i in range(len(ys)):
            for j in range(len(xs)):
                if not np.isnan(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.0f}", ha="center", va="center", fontsize=7)
    fig.colorbar(image, ax=ax, label="net profit (quote)")
    ax.set_title(f"Net profit by {x_axis} × {y_axis} (blank: channel rejected by rule 11)")
    fig.savefig(path, dpi=110)
    plt.close(fig)
