"""Replay of a candle CSV (`open_time_ms,open,high,low,close,volume`) as a market stream.

Each candle becomes ticks along its path — O->L->H->C when rising or flat, O->H->L->C when falling,
joined to the previous close (SPEC §4 rule 10) — followed by the closed candle. The move inside a
candle is continuous (the engine cuts it at the levels it crosses); the open, when it differs from
the previous close, is a jump (`Tick.jump`): one tick, filled at the open. `speed` is how many
times faster than real time the file plays (0: as fast as possible). Resuming after a `seq` skips
what was already delivered, so a worker that takes over continues where the last one stopped.
"""

from __future__ import annotations

import asyncio
import csv
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from domain import channel as ch
from domain.market import ClosedCandle, MarketEvent, Tick

POINTS_PER_CANDLE = 5  # at most 4 path points + the closed candle


def read_candles(path: Path, symbol: str) -> list[ClosedCandle]:
    """Parse a candle CSV; the interval is inferred from the spacing of the first two rows."""
    rows: list[tuple[int, Decimal, Decimal, Decimal, Decimal, Decimal]] = []
    with path.open(newline="") as f:
        for row in csv.reader(f):
            if not row or not row[0].strip().isdigit():
                continue  # header
            time_s, open_s, high_s, low_s, close_s, volume_s = row[:6]
            rows.append(
                (int(time_s), Decimal(open_s), Decimal(high_s), Decimal(low_s), Decimal(close_s), Decimal(volume_s))
            )
    if not rows:
        return []
    step_ms = rows[1][0] - rows[0][0] if len(rows) > 1 else 60_000
    interval = next((name for name, d in ch.TIMEFRAMES.items() if d == timedelta(milliseconds=step_ms)), "1m")
    step = timedelta(milliseconds=step_ms)
    candles = []
    for i, (t, o, h, low, c, v) in enumerate(rows):
        open_time = datetime.fromtimestamp(t / 1000, tz=UTC)
        candles.append(ClosedCandle(symbol, interval, open_time, open_time + step, o, h, low, c, v, seq=i))
    return candles


def candle_events(candles: Sequence[ClosedCandle], start: int = 0) -> Iterator[MarketEvent]:
    """The ticks along each candle's path, then the candle itself, with increasing `seq`."""
    prev_close = candles[start - 1].close if start > 0 else None
    for i in range(start, len(candles)):
        c = candles[i]
        path = ch.replay_path(prev_close, c.open, c.high, c.low, c.close)
        span = (c.close_time - c.open_time) / (len(path) + 1)
        for j, price in enumerate(path):
            # The open, when it differs from the previous close, is a jump (rule 10): one tick.
            jump = j == 0 and price == c.open
            yield Tick(c.symbol, price, c.open_time + span * j, i * POINTS_PER_CANDLE + j, jump)
        yield ClosedCandle(
            c.symbol, c.interval, c.open_time, c.close_time, c.open, c.high, c.low, c.close, c.volume,
            seq=i * POINTS_PER_CANDLE + POINTS_PER_CANDLE - 1,
        )  # fmt: skip
        prev_close = c.close


class ReplayMarket:
    name = "replay"
    fills_at_levels = True

    def __init__(self, files: dict[str, Path], speed: float = 0.0) -> None:
        self.files = files
        self.speed = speed
        self._candles: dict[str, list[ClosedCandle]] = {}

    def candles(self, symbol: str) -> list[ClosedCandle]:
        if symbol not in self._candles:
            path = self.files.get(symbol)
            self._candles[symbol] = read_candles(path, symbol) if path else []
        return self._candles[symbol]

    def candle_steps(self) -> dict[str, timedelta]:
        """Symbol -> spacing of its file's candles (`CandleSpacing`: rule 5 is judged on them)."""
        return {
            symbol: candles[0].close_time - candles[0].open_time
            for symbol in self.files
            if (candles := self.candles(symbol))
        }

    async def stream(self, symbol: str, after_seq: int | None = None) -> AsyncIterator[MarketEvent]:
        candles = self.candles(symbol)
        start = 0 if after_seq is None else (after_seq + 1) // POINTS_PER_CANDLE
        delay = None
        for event in candle_events(candles, start):
            if after_seq is not None and event.seq <= after_seq:
                continue
            if isinstance(event, ClosedCandle) and self.speed > 0:
                delay = (event.close_time - event.open_time).total_seconds() / self.speed
            yield event
            if delay:
                await asyncio.sleep(delay / POINTS_PER_CANDLE)
            else:
                await asyncio.sleep(0)

    async def closed_candles(
        self, symbol: str, interval: str, start: datetime, end: datetime
    ) -> Sequence[ClosedCandle]:
        return [c for c in self.candles(symbol) if c.interval == interval and start < c.close_time <= end]

    async def close(self) -> None:
        return None
