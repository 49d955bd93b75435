"""A lost market stream becomes an event, and so an alert (SPEC §4b): `MarketWorker` asks at each of
its rounds (every second) how the live stream of each symbol it consumes is doing (`StreamStatus`, a
capability of the Binance source; a replay or a synthetic market has none) and records

- one `market_stream_down` when a stream has been lost for longer than `grace` — the source's
  reconnection attempts meanwhile are not events, and a blip shorter than the grace is none;
- one `market_stream_up` when it is back (messages arrive again), and also the first time a stream
  is seen up after this worker took the symbol, so that a 'down' recorded by a worker that died, or
  handed the symbol over, is closed by the next.

The use cases (`domain.services.market_streams`) write an event only where the strategy's latest
stream event differs, under row locks: calling them again is harmless.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime

from domain.adapters.bootstrap import App
from domain.market import MarketSource, StreamStatus
from domain.services import market_streams

log = logging.getLogger("criptoren.market")


class StreamAlerts:
    def __init__(self, app: App, source: MarketSource, grace: float) -> None:
        self.app = app
        self.source = source if isinstance(source, StreamStatus) else None
        self.grace = grace
        # Symbol -> what this worker last recorded (or found recorded): True down, False up.
        self.noted: dict[str, bool] = {}

    async def check(self, symbols: Mapping[str, int]) -> None:
        """`symbols`: name -> id of the symbols whose consumers run here."""
        if self.source is None:
            return
        for name in [n for n in self.noted if n not in symbols]:
            del self.noted[name]  # no longer consumed here: its next holder takes it on
        for name, symbol_id in symbols.items():
            state = self.source.stream_state(name)
            if state is None:  # not connected yet
                continue
            noted = self.noted.get(name)
            now = datetime.now(UTC)
            if state.up:
                if noted is not False:
                    if await market_streams.record_stream_up(symbol_id, now, self.app.uow()):
                        log.info("The %s market stream is back: recorded (market_stream_up)", name)
                    self.noted[name] = False
            elif noted is not True and (now - state.since).total_seconds() >= self.grace:
                reason = state.reason or "lost"
                if await market_streams.record_stream_down(symbol_id, state.since, reason, self.app.uow()):
                    log.warning("The %s market stream is lost (%s): recorded (market_stream_down)", name, reason)
                self.noted[name] = True
