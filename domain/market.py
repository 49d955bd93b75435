"""Market data: the events a market source delivers and the interface every source implements
(Binance public streams, replay of a candle file, synthetic random walk)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Tick:
    """A price update. `seq` increases along a source's stream; a resumed stream skips `seq <= after`.

    `jump`: the price jumped here from the previous one — a candle's open after the previous close
    (SPEC §4 rule 10). Where fills happen at the crossed levels (replay, synthetic), the path between
    two ticks of a candle is continuous and cut at each level; a jump is one tick, judged as a live
    one and filled at its own price."""

    symbol: str
    price: Decimal
    at: datetime
    seq: int
    jump: bool = False


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
    # SPEC §4 rule 10) — except on a tick marked `jump`; False for live ticks, where every move is
    # one tick and the fill is the market's price.
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


@runtime_checkable
class CandleSpacing(Protocol):
    """Optional capability of a source whose candles are of a fixed spacing per symbol (a replay of
    candle files): the timeframes it can judge are those that are a whole number of its candles
    (SPEC §4 rule 5)."""

    def candle_steps(self) -> dict[str, timedelta]:
        """Symbol -> spacing of the closed candles the source delivers for it."""
        ...


@dataclass(frozen=True)
class StreamState:
    """Whether a source's live stream of a symbol is up, since when (aware UTC), and why it is not."""

    up: bool
    since: datetime
    reason: str | None = None


@runtime_checkable
class StreamStatus(Protocol):
    """Optional capability of a live source (Binance) whose stream can be lost and reconnected: the
    worker turns a loss that outlasts a short grace, and the return, into events (SPEC §4b)."""

    def stream_state(self, symbol: str) -> StreamState | None:
        """The state of the symbol's stream; None while it is not streamed, or not yet connected."""
        ...
