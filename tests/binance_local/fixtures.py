"""Pytest fixtures for tests that run python-binance against the local Binance. A test module
loads them with `pytest_plugins = ["tests.binance_local.fixtures"]`."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from domain.adapters.exchanges.binance import BinanceExchange
from tests.binance_local import LocalBinance, local_config


@pytest.fixture
async def local_binance() -> AsyncIterator[LocalBinance]:
    """A fresh local Binance on 127.0.0.1 (random port)."""
    server = LocalBinance()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def binance_exchange(local_binance: LocalBinance) -> AsyncIterator[BinanceExchange]:
    """The adapter, started against the local Binance (user data stream subscribed)."""
    adapter = BinanceExchange(local_config(local_binance))
    await adapter.start()
    try:
        assert await adapter.wait_for_user_stream(5), "the user data stream did not subscribe"
        yield adapter
    finally:
        await adapter.close()
