"""The SymbolDirectory port on Binance: every spot symbol of exchangeInfo (public, no keys), through
python-binance's `AsyncClient.get_exchange_info` (SPEC §4b).

Which Binance: the one orders go to — testnet with `EXCHANGE=binance` and `BINANCE_TESTNET=true`,
else the live exchange, whose public streams the paper exchange trades against.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from domain.adapters.exchanges.binance_api import client_class, parse_symbol_info
from domain.errors import TemporaryExchangeError
from domain.model import Symbol


def symbol_of(raw: Mapping[str, Any]) -> Symbol:
    """A `Symbol` (no id) from one exchangeInfo symbol: status, assets, PRICE_FILTER tick, LOT_SIZE
    step/min/max, NOTIONAL (or MIN_NOTIONAL) minimum, and whether MARKET orders by quote amount are
    allowed (`quoteOrderQtyMarketAllowed`)."""
    info = parse_symbol_info(raw)
    f = info.filters
    return Symbol(
        info.symbol, info.base_asset, info.quote_asset, f.step_size, f.min_qty, f.tick_size, f.min_notional,
        is_active=info.status == "TRADING", max_qty=f.max_qty if f.max_qty > 0 else None,
        status=info.status, quote_order_qty_allowed=bool(raw.get("quoteOrderQtyMarketAllowed", True)),
    )  # fmt: skip


def spot_symbols(exchange_info: Mapping[str, Any]) -> list[Symbol]:
    """The spot symbols of an exchangeInfo answer (a symbol without SPOT permission is skipped;
    one with a zero tick or step — not tradable as described — too)."""
    out = []
    for raw in exchange_info.get("symbols", []):
        permissions = set(raw.get("permissions", [])) | {p for s in raw.get("permissionSets", []) for p in s}
        if permissions and "SPOT" not in permissions and not raw.get("isSpotTradingAllowed", False):
            continue
        symbol = symbol_of(raw)
        if symbol.tick_size <= 0 or symbol.step_size <= 0 or symbol.min_qty < 0 or symbol.min_notional < Decimal(0):
            continue
        out.append(symbol)
    return out


class BinanceSymbolDirectory:
    """exchangeInfo's spot symbols. `api_url` points at another host (the tests' local Binance)."""

    def __init__(self, *, testnet: bool = False, api_url: str | None = None, timeout: float = 10.0) -> None:
        self.testnet = testnet
        self.api_url = api_url
        self.timeout = timeout

    async def exchange_symbols(self) -> Sequence[Symbol]:
        client = client_class(self.api_url, None, request_timeout=self.timeout)(testnet=self.testnet)
        try:
            info = await client.get_exchange_info()
        except Exception as e:  # any failure: Binance cannot be read now (offline, blocked, 5xx)
            raise TemporaryExchangeError(f"Binance's exchangeInfo could not be read: {type(e).__name__}: {e}") from e
        finally:
            await client.close_connection()
        return spot_symbols(info)
