"""A local Binance for tests (see `server.py`) and the adapter configuration that points at it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from domain.adapters.exchanges.binance import BinanceConfig, BinanceExchange
from domain.ports import Execution
from tests.binance_local.records import ApiError, Order, RequestRecord, SymbolSpec, Trade
from tests.binance_local.server import LocalBinance

__all__ = [
    "ApiError",
    "LocalBinance",
    "Order",
    "RequestRecord",
    "SymbolSpec",
    "Trade",
    "local_config",
    "next_update",
    "wait_until",
]


def local_config(server: LocalBinance, **overrides: Any) -> BinanceConfig:
    """The adapter on the local server, with short timeouts and backoffs so that tests stay fast."""
    settings: dict[str, Any] = {
        "api_key": server.api_key,
        "api_secret": server.api_secret,
        "testnet": False,
        "api_url": server.api_url,
        "ws_api_url": server.ws_api_url,
        "stream_url": server.stream_url,
        "recv_window_ms": 1000,
        "request_timeout": 2.0,
        "ws_timeout": 2.0,
        "unknown_grace": 0.2,
        "unknown_query_interval": 0.1,
        "unknown_give_up": 1.0,
        "avg_price_ttl": 0.0,
        "max_rate_limit_wait": 5.0,
        "poll_interval": 0.2,
        "safety_poll_interval": 30.0,
        "resubscribe_interval": 0.2,
        "stream_health_interval": 0.2,
    }
    settings.update(overrides)
    return BinanceConfig(**settings)


async def next_update(exchange: BinanceExchange, timeout: float = 3.0) -> Execution:
    """The next order update the adapter yields."""
    updates = exchange.order_updates()
    try:
        return await asyncio.wait_for(anext(updates), timeout)
    finally:
        await updates.aclose()


async def wait_until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)
