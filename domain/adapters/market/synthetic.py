"""A synthetic market for the offline demo: a seeded random walk in real time.

The walk swings through a band around the price it starts from: for the demo symbols across the demo
channels, for any other symbol ±5% around its last known price in steps of its tick. A newcomer sees
the demo strategy enter and exit within minutes. It emits a tick every `tick_seconds` and a closed
1-minute candle at each minute boundary. Integer arithmetic in price ticks: no floats.

As in a replay (SPEC §4 rule 10), the walk inside a minute is continuous — the engine cuts each
move at the levels it crosses and fills there — and the first tick of a minute, its candle's open,
is a jump (`Tick.jump`): one tick, filled at its price.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from domain.market import ClosedCandle, MarketEvent, Tick

# (low, high) bands in quote units: cross the demo channels (SPEC §7) from below the base to above
# the exit level.
BANDS = {"BTCUSDT": (99_800, 109_400), "ETHUSDT": (2_280, 2_860)}
CENT = Decimal("0.01")
MINUTE = timedelta(minutes=1)


# Another symbol swings ±SWING around its reference price (its last known price, or the one given
# when it was added by hand), in steps of its price tick.
SWING = Decimal("0.05")
# (reference price, price tick) of a symbol, when known.
Anchor = Callable[[str], Awaitable[tuple[Decimal, Decimal] | None]]


class SyntheticMarket:
    name = "synthetic"
    fills_at_levels = True

    def __init__(
        self,
        seed: int = 7,
        tick_seconds: float = 0.25,
        period_seconds: float = 120.0,
        anchor: Anchor | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.seed = seed
        self.tick_seconds = tick_seconds
        self.period_seconds = period_seconds
        self.anchor = anchor
        # symbol -> (low, high, unit): the band in units of `unit` (a price tick)
        self._bands: dict[str, tuple[int, int, Decimal]] = {}
        self.clock = clock

    def _band(self, symbol: str) -> tuple[int, int, Decimal]:
        if symbol in self._bands:
            return self._bands[symbol]
        low, high = BANDS.get(symbol, (95, 105))
        return low * 100, high * 100, CENT

    async def _anchor(self, symbol: str) -> None:
        """A symbol other than the demo's swings around its reference price, in its own ticks (a
        BTC-quoted pair trades far below one cent)."""
        if symbol in BANDS or symbol in self._bands or self.anchor is None:
            return
        known = await self.anchor(symbol)
        if known is None:
            return
        price, tick = known
        unit = tick if tick > 0 else CENT
        centre = int(price / unit)
        half = max(50, int(centre * SWING))
        self._bands[symbol] = (max(1, centre - half), centre + half, unit)

    def price_at(self, symbol: str, step: int) -> Decimal:
        """Deterministic price of step `step`: a slow wave across the band plus seeded noise."""
        low, high, unit = self._band(symbol)
        mid, amp = (low + high) // 2, (high - low) // 2
        steps_per_period = max(1, round(self.period_seconds / self.tick_seconds))
        # Start at the bottom of the wave: the first minute already rises through the demo's entry.
        wave = math.sin(2 * math.pi * (step / steps_per_period - 0.25))
        noise = random.Random(f"{self.seed}-{symbol}-{step}").randint(-amp // 40, amp // 40)  # noqa: S311
        units = max(1, mid + int(amp * wave) + noise)
        return Decimal(units) * unit

    async def stream(self, symbol: str, after_seq: int | None = None) -> AsyncIterator[MarketEvent]:
        await self._anchor(symbol)
        step = 0 if after_seq is None else after_seq + 1
        candle: list[Decimal] = []
        minute = None
        while True:
            now = self.clock()
            this_minute = now.replace(second=0, microsecond=0)
            price = self.price_at(symbol, step)
            opens = minute is not None and this_minute > minute and bool(candle)
            if opens:
                assert minute is not None
                yield ClosedCandle(
                    symbol, "1m", minute, minute + MINUTE, candle[0], max(candle), min(candle), candle[-1],
                    Decimal(len(candle)), seq=step,
                )  # fmt: skip
                candle = []
            minute = this_minute
            candle.append(price)
            # A new minute's first tick is its candle's open: a jump from the last close (rule 10).
            yield Tick(symbol, price, now, step, jump=opens)
            step += 1
            await asyncio.sleep(self.tick_seconds)

    async def closed_candles(
        self, symbol: str, interval: str, start: datetime, end: datetime
    ) -> Sequence[ClosedCandle]:
        return []

    async def close(self) -> None:
        return None
