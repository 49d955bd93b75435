"""Choose the market data source from the settings (MARKET_SOURCE)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from domain.adapters.config import Settings
from domain.adapters.market.replay import ReplayMarket
from domain.adapters.market.synthetic import Anchor, SyntheticMarket
from domain.channel import interval_name
from domain.market import MarketSource

log = logging.getLogger("criptoren.market")


def replay_files(spec: Path | str) -> dict[str, Path]:
    """`REPLAY_FILE`: `path` (the symbol is the file name's prefix, e.g. BTCUSDT-1m.csv) or
    `SYMBOL=path,SYMBOL=path`."""
    files: dict[str, Path] = {}
    for part in str(spec).split(","):
        if "=" in part:
            symbol, name = part.split("=", 1)
            files[symbol.strip().upper()] = Path(name.strip())
        elif part.strip():
            path = Path(part.strip())
            files[path.name.split("-")[0].split(".")[0].upper()] = path
    return files


async def binance_reachable(settings: Settings, wait: float = 3.0) -> bool:
    try:
        from domain.adapters.market.binance_stream import BinanceMarket
    except ImportError:
        return False
    try:
        return await asyncio.wait_for(BinanceMarket.ping(testnet=False), wait)
    except (TimeoutError, OSError, Exception):  # any failure means: not reachable from here
        return False


async def make_market_source(settings: Settings, anchor: Anchor | None = None) -> MarketSource:
    """`anchor`: a symbol's reference price and tick, where the synthetic walk of a symbol other than
    the demo's starts."""
    choice = settings.market_source
    if choice == "replay":
        if not settings.replay_file:
            raise SystemExit("MARKET_SOURCE=replay needs REPLAY_FILE (a candle CSV).")
        market = ReplayMarket(replay_files(settings.replay_file), speed=settings.replay_speed)
        # Its candles judge only the timeframes that are a whole number of them (SPEC §4 rule 5): the
        # worker refuses to start while an active strategy's timeframe is finer (README, Replay).
        spacing = ", ".join(f"{s} {interval_name(step)}" for s, step in market.candle_steps().items())
        log.info("Market data: replay of %s (candles: %s) at %sx", settings.replay_file, spacing, settings.replay_speed)
        return market
    if choice == "synthetic":
        log.info("Market data: synthetic random walk (offline demo)")
        return SyntheticMarket(seed=settings.synthetic_seed, anchor=anchor)
    if choice == "binance" or await binance_reachable(settings):
        from domain.adapters.market.binance_stream import BinanceMarket

        log.info("Market data: Binance public streams")
        return BinanceMarket(api_url=settings.binance_api_url, stream_url=settings.binance_stream_url)
    log.info("Market data: Binance is not reachable, using the synthetic random walk (offline demo)")
    return SyntheticMarket(seed=settings.synthetic_seed, anchor=anchor)
