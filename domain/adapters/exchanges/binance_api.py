"""What Binance says and how to reach it: the adapter's configuration, python-binance pointed at
another host, exchangeInfo's symbol filters (filters.md), the order statuses (enums.md) and the
errors Binance answers with, as the domain's (errors.md; rest-api.md "HTTP Return Codes")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, cast

import aiohttp
from binance import AsyncClient, BinanceSocketManager
from binance.exceptions import BinanceAPIException, BinanceRequestException

from domain import channel as ch
from domain.adapters.exchanges.secrets import redact
from domain.errors import (
    FilterFailure,
    InsufficientBalance,
    InsufficientCapital,
    PermanentExchangeError,
    TemporaryExchangeError,
)
from domain.model import OrderStatus, PercentPriceBySide, SymbolFilters

# enums.md "Order status".
STATUSES: dict[str, OrderStatus] = {
    "NEW": OrderStatus.OPEN,
    "PENDING_NEW": OrderStatus.NEW,
    "PARTIALLY_FILLED": OrderStatus.PARTIALLY_FILLED,
    "FILLED": OrderStatus.FILLED,
    "CANCELED": OrderStatus.CANCELED,
    "PENDING_CANCEL": OrderStatus.OPEN,
    "REJECTED": OrderStatus.REJECTED,
    "EXPIRED": OrderStatus.EXPIRED,
    "EXPIRED_IN_MATCH": OrderStatus.EXPIRED,
}
TERMINAL = frozenset({OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.EXPIRED, OrderStatus.REJECTED})
RESTING = frozenset({OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED})

FILTER_CODES = frozenset({-1013, -1111})
AUTH_CODES = frozenset({-1002, -1022, -2014, -2015})
# errors.md: the request may or may not have been executed ("execution status unknown").
UNKNOWN_OUTCOME_CODES = frozenset({-1000, -1001, -1006, -1007, -1008})
# errors.md -1015 TOO_MANY_ORDERS: the account's unfilled order count (faqs/order_count_decrement.md).
TOO_MANY_ORDERS = -1015
# errors.md -2035 SUBSCRIPTION_ACTIVE: one user data subscription per account and connection
# (web-socket-api.md "User Data Stream subscription").
SUBSCRIPTION_ACTIVE = -2035
# "Filter failure: <name>" messages (errors.md "Filter failures") of filters that may pass later.
RETRYABLE_FILTERS = ("PERCENT_PRICE_BY_SIDE", "PERCENT_PRICE", "MAX_NUM_ORDERS")
TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError, BinanceRequestException)


class BinanceFilterFailure(FilterFailure, PermanentExchangeError):
    """The order cannot meet the symbol's filters (-1013, -1111, or found before sending)."""

    code = "FILTER_FAILURE"


class BinanceInsufficientBalance(InsufficientBalance, InsufficientCapital):
    """The account's free balance does not cover the order: -2010, or the cached balance before
    sending (SPEC §4b)."""

    code = "INSUFFICIENT_BALANCE"


class BinanceAuthError(PermanentExchangeError):
    """The API key or signature was refused (-1022, -2014, -2015): check the client's keys."""

    code = "EXCHANGE_AUTH"


class BinanceRejected(PermanentExchangeError):
    """Any other refusal; `details["binance_code"]` says which."""


class BinanceUnavailable(TemporaryExchangeError):
    """No answer, a 5xx or a server-side error: try again later."""


class BinanceRateLimited(TemporaryExchangeError):
    """A 429/418 whose `Retry-After` is longer than the adapter waits; `details["retry_after"]`."""

    code = "EXCHANGE_RATE_LIMITED"


class OrderStateUnknown(TemporaryExchangeError):
    """The order was maybe placed: Binance gave no outcome and does not list it (yet), or could not
    be asked. It is never sent again on that absence: reconciliation settles it."""

    code = "EXCHANGE_ORDER_UNKNOWN"


def describe(error: BaseException) -> str:
    if isinstance(error, BinanceAPIException):
        return f"HTTP {error.status_code}, code {error.code}: {error.message}"
    return type(error).__name__ + (f": {error}" if str(error) else "")


def retry_after(error: BinanceAPIException, default: float) -> float:
    """rest-api.md "IP Limits": 429 and 418 carry `Retry-After` in seconds."""
    headers = getattr(error.response, "headers", None) or {}
    value = headers.get("Retry-After")
    try:
        return max(float(value), 0.0) if value is not None else default
    except ValueError:
        return default


# ---------------------------------------------------------------- configuration


@dataclass(frozen=True)
class BinanceConfig:
    """How to reach Binance and how patient to be. Times in seconds (not money: floats are fine)."""

    api_key: str = field(repr=False)
    api_secret: str = field(repr=False)
    testnet: bool = True
    # Another host (the local Binance of the tests): REST base ending in `/api`, the WebSocket API
    # URL and the market stream base. With `api_url` set, `testnet` is ignored.
    api_url: str | None = None
    ws_api_url: str | None = None
    stream_url: str | None = None
    fee_rate: Decimal = ch.DEFAULT_FEE_RATE
    load_fee_rate: bool = True  # read the account's commission (at start, and per symbol on first use)
    recv_window_ms: int = 5000
    request_timeout: float = 10.0
    ws_timeout: float = 10.0
    filters_ttl: float = 3600.0
    weight_limit: int | None = None  # None: exchangeInfo's REQUEST_WEIGHT limit
    weight_window: float = 60.0
    weight_headroom: float = 0.8
    default_retry_after: float = 1.0  # a 429 without Retry-After
    max_rate_limit_wait: float = 120.0
    unknown_grace: float = 1.0  # asked for this long after recvWindow before an order counts as unknown
    unknown_query_interval: float = 0.25
    unknown_give_up: float = 30.0  # how long to keep asking when the queries themselves fail
    unknown_watch: float = 600.0  # how long an order of unknown outcome is followed for a late report
    # Ask Binance for every order id before sending it (one more request per order): for callers
    # that may repeat an id after a crash without reconciling first.
    query_before_send: bool = False
    avg_price_ttl: float = 1.0  # `GET /api/v3/avgPrice` (a 5-minute average) is reused this long
    balance_max_age: float = 60.0  # the balance cache is read again over REST at least this often
    user_stream: bool = True
    poll_interval: float = 2.0
    safety_poll_interval: float = 30.0
    resubscribe_interval: float = 1.0
    stream_health_interval: float = 1.0

    @property
    def key_hint(self) -> str:
        return redact(self.api_key, show=4)


def client_class(
    api_url: str | None = None,
    ws_api_url: str | None = None,
    *,
    request_timeout: float | None = None,
    recv_window_ms: int | None = None,
) -> type[AsyncClient]:
    """python-binance's `AsyncClient`, pointed at another host by subclassing (SPEC §8): `API_URL`
    is the REST base (`…/api`, the client appends `/v3/<path>`), `WS_API_URL` the WebSocket API used
    by the spot user data stream; optionally with its request timeout and recvWindow."""
    attrs: dict[str, Any] = {}
    if api_url:
        attrs["API_URL"] = api_url.rstrip("/")
    if ws_api_url:
        attrs["WS_API_URL"] = ws_api_url
    if request_timeout is not None:
        attrs["REQUEST_TIMEOUT"] = request_timeout
    if recv_window_ms is not None:
        attrs["REQUEST_RECVWINDOW"] = recv_window_ms
    return type("ConfiguredAsyncClient", (AsyncClient,), attrs) if attrs else AsyncClient


def socket_manager_class(stream_url: str | None = None) -> type[BinanceSocketManager]:
    """`BinanceSocketManager` with `STREAM_URL` (market streams: `ws/<stream>`, `stream?streams=`)."""
    if not stream_url:
        return cast("type[BinanceSocketManager]", BinanceSocketManager)  # python-binance is untyped: Any
    base = stream_url if stream_url.endswith("/") else stream_url + "/"
    return type("RedirectedSocketManager", (BinanceSocketManager,), {"STREAM_URL": base})


@dataclass(frozen=True)
class BinanceSymbolInfo:
    """What the adapter needs of one exchangeInfo symbol."""

    symbol: str
    base_asset: str
    quote_asset: str
    filters: SymbolFilters
    min_price: Decimal
    max_price: Decimal
    quote_asset_precision: int
    status: str

    @property
    def quote_step(self) -> Decimal:
        return Decimal(1).scaleb(-self.quote_asset_precision)


def parse_symbol_info(raw: Mapping[str, Any]) -> BinanceSymbolInfo:
    """The filters of an exchangeInfo symbol (filters.md): PRICE_FILTER, LOT_SIZE, NOTIONAL (or the
    older MIN_NOTIONAL), MARKET_LOT_SIZE, PERCENT_PRICE_BY_SIDE, MAX_NUM_ORDERS."""
    filters = {f["filterType"]: f for f in raw.get("filters", [])}
    price = filters.get("PRICE_FILTER", {})
    lot = filters.get("LOT_SIZE", {})
    market_lot = filters.get("MARKET_LOT_SIZE", {})
    notional = filters.get("NOTIONAL") or filters.get("MIN_NOTIONAL") or {}
    by_side = filters.get("PERCENT_PRICE_BY_SIDE")

    def d(source: Mapping[str, Any], key: str) -> Decimal:
        return Decimal(str(source.get(key, "0"))).normalize()

    return BinanceSymbolInfo(
        symbol=raw["symbol"],
        base_asset=raw["baseAsset"],
        quote_asset=raw["quoteAsset"],
        filters=SymbolFilters(
            step_size=d(lot, "stepSize"),
            min_qty=d(lot, "minQty"),
            tick_size=d(price, "tickSize"),
            min_notional=d(notional, "minNotional"),
            max_qty=d(lot, "maxQty"),
            market_min_qty=d(market_lot, "minQty"),
            market_max_qty=d(market_lot, "maxQty"),
            market_step_size=d(market_lot, "stepSize"),
            max_notional=d(notional, "maxNotional"),
            # MIN_NOTIONAL says `applyToMarket`, NOTIONAL `applyMinToMarket` / `applyMaxToMarket`.
            apply_min_to_market=bool(notional.get("applyMinToMarket", notional.get("applyToMarket", True))),
            apply_max_to_market=bool(notional.get("applyMaxToMarket", False)),
            percent_price=None
            if by_side is None
            else PercentPriceBySide(
                bid_up=d(by_side, "bidMultiplierUp"),
                bid_down=d(by_side, "bidMultiplierDown"),
                ask_up=d(by_side, "askMultiplierUp"),
                ask_down=d(by_side, "askMultiplierDown"),
                avg_price_mins=int(by_side.get("avgPriceMins", 5)),
            ),
            max_num_orders=int(filters.get("MAX_NUM_ORDERS", {}).get("maxNumOrders", 0)),
        ),
        min_price=d(price, "minPrice"),
        max_price=d(price, "maxPrice"),
        quote_asset_precision=int(raw.get("quoteAssetPrecision", raw.get("quotePrecision", 8))),
        status=str(raw.get("status", "TRADING")),
    )
