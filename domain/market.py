"""Market data: the events a market source delivers and the interface every source implements
(Binance public streams, replay of a candle file, synthetic random walk)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol


@dataclass(frozen=True)
class Tick:
    """A price update. `seq` increases along a source's stream; a resumed stream skips `seq <= after`."""

    symbol: str
    price: Decimal
    at: datetime
    seq: int


@dataclass(frozen=True)
class ClosedCandle:
    symbol: str
    interval: str
    open_time: datetime
    close_time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    seq: int = 0


MarketEvent = Tick | ClosedCandle


class MarketSource(Protocol):
    """A stream of ticks and closed candles per symbol."""

    name: str
    # True when fills of level-triggered orders happen at the crossed level (replay, synthetic:
    # SPEC §4 rule 10); False for live ticks, where the fill is the market's price.
    fills_at_levels: bool

    def stream(self, symbol: str, after_seq: int | None = None) -> AsyncIterator[MarketEvent]:
        """Events of one symbol, in order, resuming after `after_seq` where the source can."""
        ...

    async def closed_candles(
        self, symbol: str, interval: str, start: datetime, end: datetime
    ) -> Sequence[ClosedCandle]:
        """Candles closed between `start` and `end` (backfill after a gap); may be empty."""
        ...

    async def close(self) -> None: ...
