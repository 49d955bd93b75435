"""Backtest benchmark (run by hand): `python bench/backtest_bench.py [--candles N] [--runs R]`.

One year of 1-minute candles (525,600) through `criptoren`'s backtest — the live engine with the
pre-scan skipping candles that cannot trigger anything — next to its peer, backtesting.py, running
the same channel rules (entry crossing E up once per bounce, exit crossing X down, re-arm at B, a
4h close below B breaks the channel and parks the positions at their minimum sell price) on the
same candles in the same run. The ratio of candles per second is the figure (target: at least 5x,
and the year in under 2 s).

Candles: the real Binance ETHUSDT 1-minute candles of ../shared/data when present (130,708 of
them, played forward, then backward, and so on, so the year stays in their real price range and
keeps their exact prices), else a seeded synthetic walk.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import warnings
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from domain.adapters.backtest.runner import backtest, read_candle_csv, symbol_for
from domain.backtest import CandleSeries
from domain.channel import Channel

YEAR = 525_600
MINUTE_MS = 60_000
REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "ETHUSDT-1m.csv"
FEE = Decimal("0.001")
BANKROLL = Decimal(10_000)
# Channels over ETH's 2025 range (2,112 - 4,788): a wide one, a busy one, one that breaks.
CHANNELS = {
    "wide 2200-2700": Channel(Decimal(2200), Decimal(2700), Decimal(20), Decimal("0.5"), Decimal("0.5"),
                              Decimal("0.1"), "1d"),
    "busy 2500-2700": Channel(Decimal(2500), Decimal(2700), Decimal(20), Decimal("0.5"), Decimal("0.5"),
                              Decimal("0.1"), "1d"),
    "4h 2400-2800": Channel(Decimal(2400), Decimal(2800)),
}  # fmt: skip


def year_csv(path: Path, candles: int) -> str:
    """Write `candles` 1-minute candles to `path`; returns where they came from."""
    out = ["open_time_ms,open,high,low,close,volume"]
    if REAL.exists():
        rows = [line.split(",") for line in REAL.read_text().splitlines()[1:] if line]
        t0, n, forward = int(rows[0][0]), 0, True
        while n < candles:
            # Backward: each candle reversed (open <-> close), so the path joins the last close.
            seq = rows if forward else [[r[0], r[4], r[2], r[3], r[1], r[5]] for r in reversed(rows)]
            for r in seq[: candles - n]:
                out.append(",".join([str(t0 + n * MINUTE_MS), *r[1:]]))
                n += 1
            forward = not forward
        source = f"real Binance ETHUSDT 1m candles ({REAL.name}, {len(rows):,} rows, forward and backward)"
    else:
        rng = random.Random(7)
        price, t0 = 250_000, 1_747_699_200_000  # cents; 2025-05-20
        for i in range(candles):
            o = price
            c = max(100_000, o + rng.randint(-300, 300) + (250_000 - o) // 2000)
            h, low = max(o, c) + rng.randint(0, 200), min(o, c) - rng.randint(0, 200)
            out.append(f"{t0 + i * MINUTE_MS},{o / 100:.2f},{h / 100:.2f},{low / 100:.2f},{c / 100:.2f},1")
            price = c
        source = "a synthetic random walk (../shared/data not found)"
    path.write_text("\n".join(out) + "\n")
    return source


# ---------------------------------------------------------------- the peer: backtesting.py


def peer_run(series: CandleSeries, channel: Channel) -> tuple[float, int]:
    """The same channel rules as a backtesting.py strategy; returns (seconds, trades)."""
    import pandas as pd
    from backtesting import Strategy
    from backtesting.lib import FractionalBacktest

    lv = channel.levels
    base, entry, exit_ = float(lv.base), float(lv.entry), float(lv.exit)
    pct, fee, m = float(channel.capital_percentage) / 100, float(FEE), float(channel.min_profit) / 100
    delta_ms = {"4h": 4 * 3_600_000, "1d": 86_400_000}[channel.timeframe]
    closes_tf = ((series.open_ms + series.step_ms) % delta_ms == 0).tolist()

    # Prices read from plain lists (the fastest way to write it: FractionalBacktest rescales
    # `self.data`, and its accessors cost more than the rules).
    opens, highs, lows, closes = (series.prices[:, k].tolist() for k in range(4))

    class ChannelRules(Strategy):  # type: ignore[misc]
        def init(self) -> None:
            self.armed, self.broken, self.prev = True, False, None
            self.scheduled: float | None = None

        def next(self) -> None:
            i = len(self.data) - 1
            h, low, c = highs[i], lows[i], closes[i]
            prev = opens[i] if self.prev is None else self.prev
            lo, hi = min(low, prev), max(h, prev)
            if not self.armed and not self.broken and lo <= base:
                self.armed = True
            if self.position:
                if self.scheduled is not None and hi >= self.scheduled:
                    self.position.close()
                    self.scheduled = None
                elif self.scheduled is None and lo <= exit_ < hi:
                    self.position.close()
            if self.armed and not self.broken and lo < entry <= hi:
                self.buy(size=pct)
                self.armed = False
            if closes_tf[i] and c < base and not self.broken:
                self.broken, self.armed = True, False
                if self.position:
                    self.scheduled = entry * (1 + m) / (1 - fee) ** 2
            self.prev = c

    df = pd.DataFrame(
        series.prices, columns=["Open", "High", "Low", "Close"], index=pd.to_datetime(series.open_ms, unit="ms")
    )
    df["Volume"] = 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bt = FractionalBacktest(df, ChannelRules, cash=float(BANKROLL), commission=fee, trade_on_close=True)
        started = time.perf_counter()
        stats = bt.run()
        seconds = time.perf_counter() - started
    return seconds, int(stats["# Trades"])


def peer_floor(series: CandleSeries) -> float:
    """backtesting.py with a strategy that does nothing: the least any strategy of it costs."""
    import pandas as pd
    from backtesting import Backtest, Strategy

    class Nothing(Strategy):  # type: ignore[misc]
        def init(self) -> None:
            pass

        def next(self) -> None:
            pass

    df = pd.DataFrame(
        series.prices, columns=["Open", "High", "Low", "Close"], index=pd.to_datetime(series.open_ms, unit="ms")
    )
    df["Volume"] = 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bt = Backtest(df, Nothing, cash=float(BANKROLL))
        started = time.perf_counter()
        bt.run()
        return time.perf_counter() - started


# ---------------------------------------------------------------- ours


def ours(series: CandleSeries, channel: Channel, runs: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = backtest(series, channel, BANKROLL, symbol_for("ETHUSDT"), FEE)
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candles", type=int, default=YEAR, help="1-minute candles (default: a year)")
    parser.add_argument("--runs", type=int, default=3, help="runs of ours per channel (median)")
    parser.add_argument("--no-peer", action="store_true", help="skip backtesting.py")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ETHUSDT-1m.csv"
        source = year_csv(path, args.candles)
        started = time.perf_counter()
        series = read_candle_csv(path)
        load = time.perf_counter() - started
    n = len(series)
    print(f"Candles: {n:,} × 1m from {source}.")
    print(f"Loading the CSV (floats in bulk, exact Decimals on demand): {load:.3f} s\n")
    header = f"{'channel':<18} {'criptoren':>12} {'candles/s':>12} {'in/out':>7}  "
    header += f"{'backtesting.py':>14} {'candles/s':>10} {'trades':>6}  {'ratio':>6}  {'load+run':>8}"
    print(header)
    ratios, best_times = [], []
    for name, channel in CHANNELS.items():
        seconds, result = ours(series, channel, args.runs)
        best_times.append(seconds)
        s = result.summary  # type: ignore[attr-defined]
        row = f"{name:<18} {seconds:>10.3f} s {n / seconds:>12,.0f} {f'{s.entries}/{s.exits}':>7}  "
        if not args.no_peer:
            peer_seconds, peer_trades = peer_run(series, channel)
            ratio = peer_seconds / seconds
            ratios.append(ratio)
            row += f"{peer_seconds:>12.2f} s {n / peer_seconds:>10,.0f} {peer_trades:>6}  {ratio:>5.1f}x"
        else:
            row += f"{'—':>14} {'—':>10} {'—':>6}  {'—':>6}"
        row += f"  {load + seconds:>6.2f} s"
        print(row)
    if ratios:
        print(f"\nSpeed-up over backtesting.py: {min(ratios):.1f}x to {max(ratios):.1f}x (target: at least 5x).")
        floor = peer_floor(series)
        print(
            f"backtesting.py with an empty next(): {floor:.2f} s, {n / floor:,.0f} candles/s — still "
            f"{floor / max(best for best in best_times):.1f}x to {floor / min(best_times):.1f}x slower than ours."
        )
    # For scale: the tick-by-tick replay of every candle, which the pre-scan avoids.
    subset = series.slice(0, min(n, 20_000))
    started = time.perf_counter()
    backtest(subset, CHANNELS["wide 2200-2700"], BANKROLL, symbol_for("ETHUSDT"), FEE, skip_ahead=False)
    tick = time.perf_counter() - started
    print(f"Tick-by-tick replay of every candle (no skipping), {len(subset):,} candles: "
          f"{len(subset) / tick:,.0f} candles/s.")  # fmt: skip


if __name__ == "__main__":
    main()
