"""A small local Binance spot server for tests: REST, WebSocket API (user data stream) and market
streams on 127.0.0.1, in-process, speaking Binance's protocol closely enough that python-binance runs
against it unpatched (pointed here by subclassing, SPEC §8).

What it does: verifies HMAC-SHA256 signatures and the timing window as Binance does, matches MARKET
and LIMIT orders against a scripted price path (`set_price`), applies the symbol filters and the
commissions (base asset on buys, quote asset on sells, BNB when enabled), keeps balances, trades and
request weight, pushes `executionReport` events to user data stream subscribers and trade / kline
events to market stream subscribers, and injects faults on request (see "Faults" below).

Shapes and rules follow Binance's spot API documentation (github.com/binance/binance-spot-api-docs,
also at developers.binance.com/docs/binance-spot-api-docs):

- rest-api.md "General API Information", "HTTP Return Codes" (4XX: sender's fault; 429: rate limit;
  418: IP ban; 5XX: execution status UNKNOWN) and "Error Codes" (`{"code": -1121, "msg": "..."}`).
- rest-api.md "LIMITS" / "IP Limits": every response carries `X-MBX-USED-WEIGHT-1M`; 429 and 418
  carry `Retry-After` in seconds. "Order Rate Limits": `X-MBX-ORDER-COUNT-10S` / `-1D` on orders.
- rest-api.md "SIGNED (TRADE and USER_DATA) Endpoint security": HMAC-SHA256 with the secret key over
  `totalParams`, the query string concatenated with the request body (no `&` between them);
  "Timing security": processed only if `timestamp < serverTime + 1000` and
  `serverTime - timestamp <= recvWindow` (recvWindow defaults to 5000 and may not exceed 60000).
- rest-api.md "General endpoints": `GET /api/v3/ping`, `/api/v3/time`, `/api/v3/exchangeInfo`
  (`rateLimits`, symbols with `filters`); "Market Data endpoints": "Kline/Candlestick data"
  (`GET /api/v3/klines`, rows `[openTime, open, high, low, close, volume, closeTime, ...]`) and
  "Symbol price ticker" (`GET /api/v3/ticker/price`).
- rest-api.md "Account endpoints": "New order (TRADE)" (`POST /api/v3/order`; `newClientOrderId`
  unique among open orders, `^[\\.A-Z\\:/a-z0-9_-]{1,36}$`; `quoteOrderQty` for MARKET; ACK / RESULT /
  FULL responses, FULL with `fills[price, qty, commission, commissionAsset, tradeId]`), "Query order
  (USER_DATA)" (`GET /api/v3/order` by `orderId` or `origClientOrderId`), "Cancel order (TRADE)"
  (`DELETE /api/v3/order`), "Current open orders (USER_DATA)" (`GET /api/v3/openOrders`), "Account
  information (USER_DATA)" (`GET /api/v3/account`), "Account trade list (USER_DATA)"
  (`GET /api/v3/myTrades`).
- filters.md: PRICE_FILTER (min/max/tick), LOT_SIZE (min/max/step), MIN_NOTIONAL and NOTIONAL.
- errors.md: -1003 TOO_MANY_REQUESTS, -1013 "Filter failure: …", -1021 INVALID_TIMESTAMP, -1022
  INVALID_SIGNATURE, -1100 ILLEGAL_CHARS, -1102 MANDATORY_PARAM_EMPTY_OR_MALFORMED, -1111
  BAD_PRECISION, -1121 BAD_SYMBOL, -2010 NEW_ORDER_REJECTED ("Duplicate order sent.", "Account has
  insufficient balance for requested action."), -2011 CANCEL_REJECTED ("Unknown order sent."), -2013
  NO_SUCH_ORDER, -2014 BAD_API_KEY_FMT, -2015 REJECTED_MBX_KEY.
- web-socket-api.md "Request format" / "Response format" (`{"id", "status", "result" | "error",
  "rateLimits"}`), "Request security" (SIGNED requests: parameters except `signature` sorted by name,
  `key=value` joined by `&`), "User Data Stream requests": `userDataStream.subscribe.signature` answers
  `{"subscriptionId": n}`, `userDataStream.unsubscribe`, `session.subscriptions`; events arrive as
  `{"subscriptionId": n, "event": {...}}`.
- user-data-stream.md "Order Update" (`executionReport`: c, C, S, o, f, q, p, x, X, i, l, z, L, n, N,
  T, t, Z, Y, Q, …) and "Account Update" (`outboundAccountPosition`).
- web-socket-streams.md: raw streams at `/ws/<streamName>`, combined streams at
  `/stream?streams=<a>/<b>` wrapped as `{"stream": name, "data": payload}`; "Trade Streams",
  "Aggregate Trade Streams", "Kline/Candlestick Streams"; SUBSCRIBE / UNSUBSCRIBE /
  LIST_SUBSCRIPTIONS.

Faults (each one-shot unless a count is given): `fail_next` (a 5xx before or after processing),
`delay_next` (the request is processed, the answer comes late), `lose_next` (processed, then the
connection is cut without an answer), `rate_limit` (429 or 418 with `Retry-After` for the next
requests), `drop_websockets` (cut every WebSocket), `refuse_websockets` (handshakes answered 503),
`duplicate_stream_messages` (every event sent twice), `clock_offset_ms` (the server's clock moves).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hashlib
import hmac
import itertools
import json
import re
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import WSCloseCode, WSMsgType, web

from domain.model import Symbol

Q8 = Decimal("0.00000001")
ZERO = Decimal(0)
CLIENT_ORDER_ID = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
INTERVALS_MS = {
    "1s": 1_000,
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
    "3d": 259_200_000,
    "1w": 604_800_000,
}
# Request weights from rest-api.md (single symbol where it matters).
WEIGHTS: dict[tuple[str, str], int] = {
    ("GET", "/api/v3/ping"): 1,
    ("GET", "/api/v3/time"): 1,
    ("GET", "/api/v3/exchangeInfo"): 20,
    ("GET", "/api/v3/klines"): 2,
    ("GET", "/api/v3/aggTrades"): 4,
    ("GET", "/api/v3/ticker/price"): 2,
    ("POST", "/api/v3/order"): 1,
    ("POST", "/api/v3/order/test"): 1,
    ("GET", "/api/v3/order"): 4,
    ("DELETE", "/api/v3/order"): 1,
    ("GET", "/api/v3/openOrders"): 6,
    ("GET", "/api/v3/account"): 20,
    ("GET", "/api/v3/myTrades"): 20,
}
INTERNAL_ERROR = (-1001, "Internal error; unable to process your request. Please try again.")
OPEN_STATUSES = ("NEW", "PARTIALLY_FILLED")


def fmt(value: Decimal) -> str:
    """Binance's decimal strings: 8 decimals."""
    return f"{value.quantize(Q8, rounding=ROUND_DOWN):f}"


class ApiError(Exception):
    def __init__(self, status: int, code: int, msg: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg
        self.headers = headers or {}


def mandatory(name: str) -> ApiError:
    return ApiError(400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


@dataclass
class SymbolSpec:
    symbol: str
    base_asset: str
    quote_asset: str
    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal
    min_notional: Decimal
    min_price: Decimal = Decimal("0.01")
    max_price: Decimal = Decimal(1000000)
    max_qty: Decimal = Decimal(9000)
    base_asset_precision: int = 8
    quote_precision: int = 8
    quote_asset_precision: int = 8
    # Older symbols list MIN_NOTIONAL instead of NOTIONAL (filters.md); the adapter reads both.
    legacy_min_notional: bool = False
    # rest-api.md "Exchange information" / enums.md "Symbol status": TRADING, END_OF_DAY, HALT, BREAK.
    status: str = "TRADING"

    def exchange_info(self) -> dict[str, Any]:
        filters: list[dict[str, Any]] = [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": fmt(self.min_price),
                "maxPrice": fmt(self.max_price),
                "tickSize": fmt(self.tick_size),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": fmt(self.min_qty),
                "maxQty": fmt(self.max_qty),
                "stepSize": fmt(self.step_size),
            },
        ]
        if self.legacy_min_notional:
            filters.append(
                {
                    "filterType": "MIN_NOTIONAL",
                    "minNotional": fmt(self.min_notional),
                    "applyToMarket": True,
                    "avgPriceMins": 5,
                }
            )
        else:
            filters.append(
                {
                    "filterType": "NOTIONAL",
                    "minNotional": fmt(self.min_notional),
                    "applyMinToMarket": True,
                    "maxNotional": "9000000.00000000",
                    "applyMaxToMarket": False,
                    "avgPriceMins": 5,
                }
            )
        filters.append({"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200})
        return {
            "symbol": self.symbol,
            "status": self.status,
            "baseAsset": self.base_asset,
            "baseAssetPrecision": self.base_asset_precision,
            "quoteAsset": self.quote_asset,
            "quotePrecision": self.quote_precision,
            "quoteAssetPrecision": self.quote_asset_precision,
            "baseCommissionPrecision": 8,
            "quoteCommissionPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
            "icebergAllowed": True,
            "ocoAllowed": True,
            "otoAllowed": True,
            "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": True,
            "cancelReplaceAllowed": True,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": filters,
            "permissions": [],
            "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
        }

    def domain_symbol(self) -> Symbol:
        return Symbol(
            symbol=self.symbol,
            base_asset=self.base_asset,
            quote_asset=self.quote_asset,
            step_size=self.step_size,
            min_qty=self.min_qty,
            tick_size=self.tick_size,
            min_notional=self.min_notional,
        )


def default_symbols() -> list[SymbolSpec]:
    """Filters as Binance spot lists them for these pairs (exchangeInfo, 2025)."""
    return [
        SymbolSpec("BTCUSDT", "BTC", "USDT", Decimal("0.01"), Decimal("0.00001"), Decimal("0.00001"), Decimal(5)),
        SymbolSpec("ETHUSDT", "ETH", "USDT", Decimal("0.01"), Decimal("0.0001"), Decimal("0.0001"), Decimal(5)),
        SymbolSpec("BNBUSDT", "BNB", "USDT", Decimal("0.01"), Decimal("0.001"), Decimal("0.001"), Decimal(5)),
    ]


@dataclass
class Trade:
    id: int
    order_id: int
    symbol: str
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    commission: Decimal
    commission_asset: str
    time: int
    is_buyer: bool
    is_maker: bool

    def fill(self) -> dict[str, Any]:
        return {
            "price": fmt(self.price),
            "qty": fmt(self.qty),
            "commission": fmt(self.commission),
            "commissionAsset": self.commission_asset,
            "tradeId": self.id,
        }

    def my_trade(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "id": self.id,
            "orderId": self.order_id,
            "orderListId": -1,
            "price": fmt(self.price),
            "qty": fmt(self.qty),
            "quoteQty": fmt(self.quote_qty),
            "commission": fmt(self.commission),
            "commissionAsset": self.commission_asset,
            "time": self.time,
            "isBuyer": self.is_buyer,
            "isMaker": self.is_maker,
            "isBestMatch": True,
        }


@dataclass
class Order:
    order_id: int
    symbol: str
    client_order_id: str
    side: str
    type: str
    time_in_force: str
    price: Decimal
    orig_qty: Decimal
    orig_quote_qty: Decimal
    time: int
    status: str = "NEW"
    executed_qty: Decimal = ZERO
    cum_quote: Decimal = ZERO
    update_time: int = 0
    fills: list[Trade] = field(default_factory=list)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def remaining(self) -> Decimal:
        return self.orig_qty - self.executed_qty

    def common(self) -> dict[str, Any]:
        return {
            "price": fmt(self.price),
            "origQty": fmt(self.orig_qty),
            "executedQty": fmt(self.executed_qty),
            "origQuoteOrderQty": fmt(self.orig_quote_qty),
            "cummulativeQuoteQty": fmt(self.cum_quote),
            "status": self.status,
            "timeInForce": self.time_in_force,
            "type": self.type,
            "side": self.side,
        }

    def query(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": self.client_order_id,
            **self.common(),
            "stopPrice": fmt(ZERO),
            "icebergQty": fmt(ZERO),
            "time": self.time,
            "updateTime": self.update_time or self.time,
            "isWorking": True,
            "workingTime": self.time,
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }

    def ack(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": self.client_order_id,
            "transactTime": self.update_time or self.time,
        }

    def result(self) -> dict[str, Any]:
        return {
            **self.ack(),
            **self.common(),
            "workingTime": self.time,
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }

    def full(self) -> dict[str, Any]:
        return {**self.result(), "fills": [t.fill() for t in self.fills]}


@dataclass
class RequestRecord:
    at: float  # time.monotonic() on arrival
    method: str  # HTTP method, or "WS" for a WebSocket API request
    path: str  # URL path, or the WebSocket API method
    params: dict[str, str]
    status: int = 200
    code: int | None = None


@dataclass
class _Fault:
    kind: str  # fail | delay | lose | rate_limit
    method: str | None
    path: str | None
    remaining: int
    status: int = 503
    seconds: float = 0.0
    after_processing: bool = False

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (self.path is None or self.path == path)


@dataclass
class _MarketSubscriber:
    ws: web.WebSocketResponse
    streams: set[str]
    combined: bool
    last_kline_open: dict[str, int] = field(default_factory=dict)


@dataclass
class _WsApiConnection:
    ws: web.WebSocketResponse
    request: web.Request
    subscriptions: set[int] = field(default_factory=set)
    next_subscription: itertools.count[int] = field(default_factory=itertools.count)


class LocalBinance:
    """The server. `await start()`, then point python-binance at `api_url`, `ws_api_url`, `stream_url`."""

    def __init__(
        self,
        *,
        api_key: str = "local-api-key-0123456789abcdef",
        api_secret: str = "local-api-secret-0123456789abcdef",
        fee_rate: Decimal = Decimal("0.001"),
        weight_limit: int = 6000,
        weight_window_ms: int = 60_000,
    ) -> None:
        self.api_key = api_key
        self.api_secret = api_secret
        self.fee_rate = fee_rate
        self.pay_fees_in_bnb = False
        self.bnb_discount = Decimal("0.25")
        self.weight_limit = weight_limit
        self.weight_window_ms = weight_window_ms
        self.used_weight = 0
        self._weight_window = -1
        self.clock_offset_ms = 0
        self.refuse_websockets = False
        self.duplicate_stream_messages = False
        self.symbols: dict[str, SymbolSpec] = {s.symbol: s for s in default_symbols()}
        self.prices: dict[str, Decimal] = {
            "BTCUSDT": Decimal(100000),
            "ETHUSDT": Decimal(3000),
            "BNBUSDT": Decimal(600),
        }
        self.history: dict[str, list[tuple[int, Decimal, Decimal]]] = defaultdict(list)
        self.balances: dict[str, list[Decimal]] = {"USDT": [Decimal(10000), ZERO], "BTC": [ZERO, ZERO]}
        self.orders: list[Order] = []
        self.trades: list[Trade] = []
        self.requests: list[RequestRecord] = []
        self.delivered_user_events: list[dict[str, Any]] = []
        self._faults: list[_Fault] = []
        self._order_ids = itertools.count(1)
        self._trade_ids = itertools.count(1)
        self._market_trade_ids = itertools.count(1)
        # Aggregate trades per symbol, for `GET /api/v3/aggTrades` (market-data.md "Compressed/Aggregate
        # trades list": `fromId`, `limit` up to 1000; rows {a, p, q, f, l, T, m, M}).
        self.agg_trades: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._ws_api: dict[web.WebSocketResponse, _WsApiConnection] = {}
        self._market: list[_MarketSubscriber] = []
        self._market_requests: dict[web.WebSocketResponse, web.Request] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0
        now = self.server_time_ms()
        for name, price in self.prices.items():
            self.history[name].append((now, price, ZERO))

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/ws-api/v3", self._ws_api_handler)
        app.router.add_get("/ws/{streams:.+}", self._market_handler)
        app.router.add_get("/stream", self._market_handler)
        app.router.add_route("*", "/api/v3/{tail:.*}", self._rest_handler)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        for ws in [*self._ws_api, *(s.ws for s in self._market)]:
            with contextlib.suppress(Exception):
                await ws.close(code=WSCloseCode.GOING_AWAY)
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        """For `AsyncClient.API_URL` (python-binance appends `/v3/<path>`)."""
        return f"{self.base_url}/api"

    @property
    def ws_api_url(self) -> str:
        """For `AsyncClient.WS_API_URL`."""
        return f"ws://127.0.0.1:{self.port}/ws-api/v3"

    @property
    def stream_url(self) -> str:
        """For `BinanceSocketManager.STREAM_URL` (python-binance appends `ws/<stream>` or `stream?streams=`)."""
        return f"ws://127.0.0.1:{self.port}/"

    def server_time_ms(self) -> int:
        return int(time.time() * 1000) + self.clock_offset_ms

    # ------------------------------------------------------------------ test controls

    def domain_symbol(self, name: str) -> Symbol:
        return self.symbols[name].domain_symbol()

    def set_filters(self, name: str, **changes: Any) -> None:
        """Change a symbol's exchangeInfo (e.g. `step_size=Decimal("0.001")`) behind the client's back."""
        self.symbols[name] = replace(self.symbols[name], **changes)

    def set_balance(self, asset: str, free: Decimal) -> None:
        self.balances.setdefault(asset, [ZERO, ZERO])[0] = free

    def balance(self, asset: str) -> tuple[Decimal, Decimal]:
        free, locked = self.balances.get(asset, [ZERO, ZERO])
        return free, locked

    def requests_to(self, method: str, path: str) -> list[RequestRecord]:
        return [r for r in self.requests if r.method == method and r.path == path]

    def orders_with(self, client_order_id: str) -> list[Order]:
        return [o for o in self.orders if o.client_order_id == client_order_id]

    @property
    def user_stream_subscriptions(self) -> int:
        return sum(len(c.subscriptions) for c in self._ws_api.values())

    async def set_price(self, name: str, price: Decimal, quantity: Decimal | None = None) -> None:
        """A trade at `price` on the market: streams publish it and resting orders it reaches fill at
        their limit price, up to `quantity` in total (unlimited when None)."""
        self.prices[name] = price
        now = self.server_time_ms()
        bisect.insort(self.history[name], (now, price, quantity or Decimal(1)))
        await self._publish_trade(name, price, quantity or Decimal(1), now)
        liquidity = quantity
        for order in [o for o in self.orders if o.symbol == name and o.is_open]:
            reached = price >= order.price if order.side == "SELL" else price <= order.price
            if not reached:
                continue
            qty = order.remaining if liquidity is None else min(order.remaining, liquidity)
            if qty <= 0:
                break
            await self._fill(order, qty, order.price, maker=True)
            if liquidity is not None:
                liquidity -= qty

    async def move_price(self, name: str, *path: Decimal) -> None:
        for price in path:
            await self.set_price(name, price)

    async def advance_time(self, ms: int) -> None:
        """Move the server's clock forward (klines close; client timestamps fall behind)."""
        self.clock_offset_ms += ms
        for sub in list(self._market):
            for stream in list(sub.streams):
                await self._maybe_close_kline(sub, stream)

    def fail_next(
        self, method: str | None, path: str | None, *, status: int = 503, after_processing: bool = False, count: int = 1
    ) -> None:
        """Answer the next matching requests with a 5xx, before or after processing them."""
        self._faults.append(_Fault("fail", method, path, count, status=status, after_processing=after_processing))

    def delay_next(self, method: str | None, path: str | None, seconds: float, *, count: int = 1) -> None:
        """Process the next matching requests, then answer `seconds` later."""
        self._faults.append(_Fault("delay", method, path, count, seconds=seconds, after_processing=True))

    def lose_next(self, method: str | None, path: str | None, *, count: int = 1) -> None:
        """Process the next matching requests, then cut the connection without an answer."""
        self._faults.append(_Fault("lose", method, path, count, after_processing=True))

    def rate_limit(self, *, count: int = 1, retry_after: int = 1, status: int = 429) -> None:
        """Refuse the next `count` requests (any path) with 429 (or 418) and `Retry-After`."""
        self._faults.append(_Fault("rate_limit", None, None, count, status=status, seconds=retry_after))

    def clear_faults(self) -> None:
        """Drop the faults not triggered yet."""
        self._faults.clear()

    async def drop_websockets(self, *, user: bool = True, market: bool = True) -> None:
        """Cut WebSocket connections abruptly (no closing handshake); their subscriptions are gone."""
        if user:
            for conn in list(self._ws_api.values()):
                conn.subscriptions.clear()
                if conn.request.transport is not None:
                    conn.request.transport.abort()
            self._ws_api.clear()
        if market:
            for sub in list(self._market):
                request = self._market_requests.get(sub.ws)
                if request is not None and request.transport is not None:
                    request.transport.abort()
            self._market.clear()

    # ------------------------------------------------------------------ REST plumbing

    def _take_fault(self, method: str, path: str, kinds: tuple[str, ...], after: bool) -> _Fault | None:
        for fault in self._faults:
            if fault.kind in kinds and fault.after_processing == after and fault.matches(method, path):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _charge_weight(self, weight: int) -> None:
        now = self.server_time_ms()
        window = now // self.weight_window_ms
        if window != self._weight_window:
            self._weight_window, self.used_weight = window, 0
        if self.used_weight + weight > self.weight_limit:
            retry_after = max(1, -(-((window + 1) * self.weight_window_ms - now) // 1000))
            raise ApiError(
                429,
                -1003,
                f"Too much request weight used; current limit is {self.weight_limit} request weight per 1 "
                "MINUTE. Please use WebSocket Streams for live updates to avoid polling the API.",
                {"Retry-After": str(retry_after)},
            )
        self.used_weight += weight

    def _weight_headers(self) -> dict[str, str]:
        return {"X-MBX-USED-WEIGHT-1M": str(self.used_weight)}

    async def _rest_handler(self, request: web.Request) -> web.StreamResponse:
        method, path = request.method, request.path
        raw_query = request.rel_url.raw_query_string
        raw_body = await request.text() if request.can_read_body else ""
        params = dict(parse_qsl(raw_body, keep_blank_values=True))
        params.update(parse_qsl(raw_query, keep_blank_values=True))  # the query string wins
        record = RequestRecord(time.monotonic(), method, path, {k: v for k, v in params.items() if k != "signature"})
        self.requests.append(record)
        route = self._routes().get((method, path))
        try:
            limited = self._take_fault(method, path, ("rate_limit",), after=False)
            if limited is not None:
                banned = limited.status == 418
                until = self.server_time_ms() + int(limited.seconds * 1000)
                msg = (
                    f"Way too much request weight used; IP banned until {until}. "
                    "Please use WebSocket Streams for live updates to avoid bans."
                    if banned
                    else "Too many requests; current limit is 6000 request weight per 1 MINUTE."
                )
                raise ApiError(limited.status, -1003, msg, {"Retry-After": str(int(limited.seconds))})
            if route is None:
                raise ApiError(404, -1000, f"Unknown endpoint {method} {path}.")
            handler, signed = route
            self._charge_weight(WEIGHTS.get((method, path), 1))
            failed = self._take_fault(method, path, ("fail",), after=False)
            if failed is not None:
                raise ApiError(failed.status, *INTERNAL_ERROR)
            if signed:
                self._authenticate(request, params, raw_query, raw_body)
            data = await handler(params)
            after = self._take_fault(method, path, ("fail", "delay", "lose"), after=True)
            if after is not None and after.kind == "fail":
                raise ApiError(after.status, *INTERNAL_ERROR)
            if after is not None and after.kind == "delay":
                await asyncio.sleep(after.seconds)
            if after is not None and after.kind == "lose":
                record.status = 0
                if request.transport is not None:
                    request.transport.abort()
                return web.Response(status=500)
        except ApiError as e:
            record.status, record.code = e.status, e.code
            return web.json_response(
                {"code": e.code, "msg": e.msg}, status=e.status, headers={**self._weight_headers(), **e.headers}
            )
        headers = self._weight_headers()
        if (method, path) == ("POST", "/api/v3/order"):
            headers |= {"X-MBX-ORDER-COUNT-10S": "1", "X-MBX-ORDER-COUNT-1D": str(len(self.orders))}
        return web.json_response(data, headers=headers)

    def _routes(self) -> dict[tuple[str, str], tuple[Callable[[dict[str, str]], Awaitable[Any]], bool]]:
        return {
            ("GET", "/api/v3/ping"): (self._ping, False),
            ("GET", "/api/v3/time"): (self._time, False),
            ("GET", "/api/v3/exchangeInfo"): (self._exchange_info, False),
            ("GET", "/api/v3/klines"): (self._klines, False),
            ("GET", "/api/v3/aggTrades"): (self._agg_trades, False),
            ("GET", "/api/v3/ticker/price"): (self._ticker_price, False),
            ("POST", "/api/v3/order"): (self._new_order, True),
            ("POST", "/api/v3/order/test"): (self._test_order, True),
            ("GET", "/api/v3/order"): (self._query_order, True),
            ("DELETE", "/api/v3/order"): (self._cancel_order, True),
            ("GET", "/api/v3/openOrders"): (self._open_orders, True),
            ("GET", "/api/v3/account"): (self._account, True),
            ("GET", "/api/v3/myTrades"): (self._my_trades, True),
        }

    def _check_timestamp(self, params: dict[str, str]) -> None:
        """rest-api.md "Timing security"."""
        try:
            timestamp = int(params["timestamp"])
        except (KeyError, ValueError):
            raise mandatory("timestamp") from None
        try:
            recv_window = int(params.get("recvWindow", "5000"))
        except ValueError:
            raise mandatory("recvWindow") from None
        if recv_window > 60_000:
            raise ApiError(400, -1131, "recvWindow must be less than 60000")
        now = self.server_time_ms()
        if timestamp >= now + 1000:
            raise ApiError(400, -1021, "Timestamp for this request was 1000ms ahead of the server's time.")
        if now - timestamp > recv_window:
            raise ApiError(400, -1021, "Timestamp for this request is outside of the recvWindow.")

    def _authenticate(self, request: web.Request, params: dict[str, str], raw_query: str, raw_body: str) -> None:
        """rest-api.md "SIGNED (TRADE and USER_DATA) Endpoint security": HMAC-SHA256 of totalParams."""
        key = request.headers.get("X-MBX-APIKEY")
        if not key:
            raise ApiError(401, -2014, "API-key format invalid.")
        if key != self.api_key:
            raise ApiError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        signature = params.get("signature")
        if not signature:
            raise mandatory("signature")

        def unsigned(raw: str) -> str:
            return "&".join(p for p in raw.split("&") if p and not p.startswith("signature="))

        total_params = unsigned(raw_query) + unsigned(raw_body)
        expected = hmac.new(self.api_secret.encode(), total_params.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise ApiError(400, -1022, "Signature for this request is not valid.")
        self._check_timestamp(params)

    # ------------------------------------------------------------------ REST endpoints

    async def _ping(self, params: dict[str, str]) -> dict[str, Any]:
        return {}

    async def _time(self, params: dict[str, str]) -> dict[str, Any]:
        return {"serverTime": self.server_time_ms()}

    async def _exchange_info(self, params: dict[str, str]) -> dict[str, Any]:
        wanted: set[str] | None = None
        if "symbol" in params:
            wanted = {params["symbol"]}
        elif "symbols" in params:
            wanted = set(json.loads(params["symbols"]))
        if wanted is not None and not wanted <= set(self.symbols):
            raise ApiError(400, -1121, "Invalid symbol.")
        return {
            "timezone": "UTC",
            "serverTime": self.server_time_ms(),
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": self.weight_limit},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
                {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
                {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
            ],
            "exchangeFilters": [],
            "symbols": [s.exchange_info() for s in self.symbols.values() if wanted is None or s.symbol in wanted],
        }

    def _spec(self, params: dict[str, str]) -> SymbolSpec:
        name = params.get("symbol")
        if not name:
            raise mandatory("symbol")
        spec = self.symbols.get(name)
        if spec is None:
            raise ApiError(400, -1121, "Invalid symbol.")
        return spec

    def _kline_row(self, name: str, interval_ms: int, open_time: int) -> list[Any]:
        close_time = open_time + interval_ms - 1
        points = [(t, p, q) for t, p, q in self.history[name] if open_time <= t <= close_time]
        before = [p for t, p, _ in self.history[name] if t < open_time]
        if points:
            prices = [p for _, p, _ in points]
            o, h, low, c = prices[0], max(prices), min(prices), prices[-1]
            volume = sum((q for _, _, q in points), ZERO)
            quote_volume = sum((p * q for _, p, q in points), ZERO)
        else:
            last = before[-1] if before else self.prices[name]
            o = h = low = c = last
            volume = quote_volume = ZERO
        return [
            open_time,
            fmt(o),
            fmt(h),
            fmt(low),
            fmt(c),
            fmt(volume),
            close_time,
            fmt(quote_volume),
            len(points),
            fmt(ZERO),
            fmt(ZERO),
            "0",
        ]

    async def _klines(self, params: dict[str, str]) -> list[list[Any]]:
        spec = self._spec(params)
        interval = params.get("interval")
        if not interval:
            raise mandatory("interval")
        if interval not in INTERVALS_MS:
            raise ApiError(400, -1120, "Invalid interval.")
        step = INTERVALS_MS[interval]
        limit = min(int(params.get("limit", "500")), 1000)
        first = self.history[spec.symbol][0][0] // step * step
        now_open = self.server_time_ms() // step * step
        start = max(first, int(params["startTime"]) // step * step) if "startTime" in params else None
        end = min(now_open, int(params["endTime"]) // step * step) if "endTime" in params else now_open
        if start is None:
            start = max(first, end - (limit - 1) * step)
        opens = list(range(start, end + 1, step))[:limit]
        return [self._kline_row(spec.symbol, step, t) for t in opens]

    async def _agg_trades(self, params: dict[str, str]) -> list[dict[str, Any]]:
        spec = self._spec(params)
        limit = min(int(params.get("limit", "500")), 1000)
        rows = self.agg_trades[spec.symbol]
        if "fromId" in params:
            first = int(params["fromId"])
            rows = [r for r in rows if r["a"] >= first]
        else:
            rows = rows[-limit:]
        return [{k: v for k, v in r.items() if k not in ("e", "E", "s")} for r in rows[:limit]]

    async def _ticker_price(self, params: dict[str, str]) -> Any:
        if "symbol" in params:
            spec = self._spec(params)
            return {"symbol": spec.symbol, "price": fmt(self.prices[spec.symbol])}
        return [{"symbol": name, "price": fmt(price)} for name, price in self.prices.items()]

    def _decimal(self, params: dict[str, str], name: str, precision: int) -> Decimal | None:
        raw = params.get(name)
        if raw is None or raw == "":
            return None
        try:
            value = Decimal(raw)
        except InvalidOperation:
            raise mandatory(name) from None
        if not value.is_finite() or value <= 0:
            raise mandatory(name)
        exponent = value.normalize().as_tuple().exponent
        assert isinstance(exponent, int)
        if -exponent > precision:
            raise ApiError(400, -1111, f"Parameter '{name}' has too much precision.")
        return value

    @staticmethod
    def _on_step(value: Decimal, minimum: Decimal, step: Decimal) -> bool:
        return step <= 0 or (value - minimum) % step == 0

    def _check_filters(self, spec: SymbolSpec, qty: Decimal, price: Decimal | None, notional_price: Decimal) -> None:
        """filters.md: PRICE_FILTER, LOT_SIZE, NOTIONAL / MIN_NOTIONAL."""
        if price is not None and (
            price < spec.min_price or price > spec.max_price or not self._on_step(price, spec.min_price, spec.tick_size)
        ):
            raise ApiError(400, -1013, "Filter failure: PRICE_FILTER")
        if qty < spec.min_qty or qty > spec.max_qty or not self._on_step(qty, spec.min_qty, spec.step_size):
            raise ApiError(400, -1013, "Filter failure: LOT_SIZE")
        if qty * notional_price < spec.min_notional:
            raise ApiError(400, -1013, f"Filter failure: {'MIN_NOTIONAL' if spec.legacy_min_notional else 'NOTIONAL'}")

    def _validate_order(self, params: dict[str, str]) -> tuple[SymbolSpec, dict[str, Any]]:
        """Everything "New order (TRADE)" checks before the matching engine; returns the order's terms."""
        spec = self._spec(params)
        side = params.get("side")
        if not side:
            raise mandatory("side")
        if side not in ("BUY", "SELL"):
            raise ApiError(400, -1117, "Invalid side.")
        type_ = params.get("type")
        if not type_:
            raise mandatory("type")
        if type_ not in ("MARKET", "LIMIT"):
            raise ApiError(400, -1116, "Invalid orderType.")
        coid = params.get("newClientOrderId") or f"local-{uuid.uuid4().hex[:22]}"
        if not CLIENT_ORDER_ID.match(coid):
            raise ApiError(
                400,
                -1100,
                "Illegal characters found in parameter 'newClientOrderId'; legal range is "
                "'^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.",
            )
        qty = self._decimal(params, "quantity", spec.base_asset_precision)
        quote_qty = self._decimal(params, "quoteOrderQty", spec.quote_asset_precision)
        price = self._decimal(params, "price", spec.quote_precision)
        market = self.prices[spec.symbol]
        tif = params.get("timeInForce")
        if type_ == "LIMIT":
            if not tif:
                raise mandatory("timeInForce")
            if tif not in ("GTC", "IOC", "FOK"):
                raise ApiError(400, -1115, "Invalid timeInForce.")
            if price is None:
                raise mandatory("price")
            if qty is None:
                raise mandatory("quantity")
            if quote_qty is not None:
                raise ApiError(400, -1106, "Parameter 'quoteOrderQty' sent when not required.")
            self._check_filters(spec, qty, price, price)
        else:
            if tif:
                raise ApiError(400, -1106, "Parameter 'timeInForce' sent when not required.")
            if price is not None:
                raise ApiError(400, -1106, "Parameter 'price' sent when not required.")
            if (qty is None) == (quote_qty is None):
                raise ApiError(
                    400, -1102, "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!"
                )
            if quote_qty is not None:
                if quote_qty < spec.min_notional:
                    raise ApiError(
                        400, -1013, f"Filter failure: {'MIN_NOTIONAL' if spec.legacy_min_notional else 'NOTIONAL'}"
                    )
                qty = (quote_qty / market / spec.step_size).to_integral_value(rounding=ROUND_DOWN) * spec.step_size
            assert qty is not None
            self._check_filters(spec, qty, None, market)
        if any(o.client_order_id == coid and o.is_open for o in self.orders):
            raise ApiError(400, -2010, "Duplicate order sent.")
        cost_price = price if price is not None else market
        if side == "BUY" and self.balance(spec.quote_asset)[0] < qty * cost_price:
            raise ApiError(400, -2010, "Account has insufficient balance for requested action.")
        if side == "SELL" and self.balance(spec.base_asset)[0] < qty:
            raise ApiError(400, -2010, "Account has insufficient balance for requested action.")
        terms = {
            "side": side,
            "type": type_,
            "tif": tif or "GTC",
            "coid": coid,
            "qty": qty,
            "quote_qty": quote_qty or ZERO,
            "price": price or ZERO,
        }
        return spec, terms

    async def _test_order(self, params: dict[str, str]) -> dict[str, Any]:
        self._validate_order(params)
        return {}

    async def _new_order(self, params: dict[str, str]) -> dict[str, Any]:
        spec, t = self._validate_order(params)
        now = self.server_time_ms()
        order = Order(
            order_id=next(self._order_ids),
            symbol=spec.symbol,
            client_order_id=t["coid"],
            side=t["side"],
            type=t["type"],
            time_in_force=t["tif"],
            price=t["price"],
            orig_qty=t["qty"],
            orig_quote_qty=t["quote_qty"],
            time=now,
            update_time=now,
        )
        self.orders.append(order)
        await self._execution_report(order, "NEW")
        market = self.prices[spec.symbol]
        if order.type == "MARKET":
            await self._fill(order, order.orig_qty, market, maker=False)
        else:
            marketable = market >= order.price if order.side == "SELL" else market <= order.price
            if marketable:
                await self._fill(order, order.orig_qty, market, maker=False)
            elif order.time_in_force in ("IOC", "FOK"):
                order.status = "EXPIRED"
                order.update_time = self.server_time_ms()
                await self._execution_report(order, "EXPIRED")
            else:  # resting GTC: the funds are locked until it fills or is cancelled
                locked_asset, amount = (
                    (spec.base_asset, order.orig_qty)
                    if order.side == "SELL"
                    else (spec.quote_asset, order.orig_qty * order.price)
                )
                self._move(locked_asset, -amount, amount)
                await self._account_update([locked_asset])
        response_type = params.get("newOrderRespType") or "FULL"
        return order.ack() if response_type == "ACK" else order.result() if response_type == "RESULT" else order.full()

    def _find(self, params: dict[str, str]) -> Order | None:
        spec = self._spec(params)
        if "orderId" in params:
            return next(
                (o for o in self.orders if o.symbol == spec.symbol and str(o.order_id) == params["orderId"]), None
            )
        if "origClientOrderId" in params:
            matches = [
                o for o in self.orders if o.symbol == spec.symbol and o.client_order_id == params["origClientOrderId"]
            ]
            return matches[-1] if matches else None
        raise ApiError(400, -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")

    async def _query_order(self, params: dict[str, str]) -> dict[str, Any]:
        order = self._find(params)
        if order is None:
            raise ApiError(400, -2013, "Order does not exist.")
        return order.query()

    async def _cancel_order(self, params: dict[str, str]) -> dict[str, Any]:
        order = self._find(params)
        if order is None or not order.is_open:
            raise ApiError(400, -2011, "Unknown order sent.")
        spec = self.symbols[order.symbol]
        order.status = "CANCELED"
        order.update_time = self.server_time_ms()
        asset, amount = (
            (spec.base_asset, order.remaining)
            if order.side == "SELL"
            else (spec.quote_asset, order.remaining * order.price)
        )
        self._move(asset, amount, -amount)
        cancel_id = params.get("newClientOrderId") or f"cancel-{uuid.uuid4().hex[:16]}"
        await self._execution_report(order, "CANCELED", cancel_client_order_id=cancel_id)
        await self._account_update([asset])
        return {
            "symbol": order.symbol,
            "origClientOrderId": order.client_order_id,
            "orderId": order.order_id,
            "orderListId": -1,
            "clientOrderId": cancel_id,
            "transactTime": order.update_time,
            **order.common(),
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }

    async def _open_orders(self, params: dict[str, str]) -> list[dict[str, Any]]:
        name = params.get("symbol")
        if name is not None:
            self._spec(params)
        return [o.query() for o in self.orders if o.is_open and (name is None or o.symbol == name)]

    async def _account(self, params: dict[str, str]) -> dict[str, Any]:
        omit_zero = params.get("omitZeroBalances") == "true"
        bips = int(self.fee_rate * 10000)
        return {
            "makerCommission": bips,
            "takerCommission": bips,
            "buyerCommission": 0,
            "sellerCommission": 0,
            "commissionRates": {
                "maker": fmt(self.fee_rate),
                "taker": fmt(self.fee_rate),
                "buyer": fmt(ZERO),
                "seller": fmt(ZERO),
            },
            "canTrade": True,
            "canWithdraw": True,
            "canDeposit": True,
            "brokered": False,
            "requireSelfTradePrevention": False,
            "preventSor": False,
            "updateTime": self.server_time_ms(),
            "accountType": "SPOT",
            "balances": [
                {"asset": asset, "free": fmt(free), "locked": fmt(locked)}
                for asset, (free, locked) in self.balances.items()
                if not omit_zero or free or locked
            ],
            "permissions": ["SPOT"],
            "uid": 1,
        }

    async def _my_trades(self, params: dict[str, str]) -> list[dict[str, Any]]:
        spec = self._spec(params)
        trades = [t for t in self.trades if t.symbol == spec.symbol]
        if "orderId" in params:
            trades = [t for t in trades if str(t.order_id) == params["orderId"]]
        limit = min(int(params.get("limit", "500")), 1000)
        return [t.my_trade() for t in trades][-limit:]

    # ------------------------------------------------------------------ matching engine

    def _move(self, asset: str, free_delta: Decimal, locked_delta: Decimal = ZERO) -> None:
        entry = self.balances.setdefault(asset, [ZERO, ZERO])
        entry[0] += free_delta
        entry[1] += locked_delta

    def _commission(self, spec: SymbolSpec, side: str, qty: Decimal, quote: Decimal) -> tuple[Decimal, str]:
        """Binance's default: the fee is taken from what you receive (base asset on a buy, quote on a
        sell); with "pay fees in BNB" it is taken in BNB at a discount, when the BNB balance covers it."""
        if self.pay_fees_in_bnb and spec.base_asset != "BNB":
            bnb_price = self.prices.get(f"BNB{spec.quote_asset}")
            if bnb_price:
                bnb = (quote * self.fee_rate * (1 - self.bnb_discount) / bnb_price).quantize(Q8, rounding=ROUND_HALF_UP)
                if self.balance("BNB")[0] >= bnb:
                    return bnb, "BNB"
        if side == "BUY":
            return (qty * self.fee_rate).quantize(Q8, rounding=ROUND_HALF_UP), spec.base_asset
        return (quote * self.fee_rate).quantize(Q8, rounding=ROUND_HALF_UP), spec.quote_asset

    async def _fill(self, order: Order, qty: Decimal, price: Decimal, *, maker: bool) -> None:
        spec = self.symbols[order.symbol]
        quote = (qty * price).quantize(Q8, rounding=ROUND_DOWN)
        commission, commission_asset = self._commission(spec, order.side, qty, quote)
        was_resting = order.type == "LIMIT" and maker
        if order.side == "BUY":
            if was_resting:
                self._move(spec.quote_asset, order.price * qty - quote, -(order.price * qty))
            else:
                self._move(spec.quote_asset, -quote)
            self._move(spec.base_asset, qty - (commission if commission_asset == spec.base_asset else ZERO))
        else:
            if was_resting:
                self._move(spec.base_asset, ZERO, -qty)
            else:
                self._move(spec.base_asset, -qty)
            self._move(spec.quote_asset, quote - (commission if commission_asset == spec.quote_asset else ZERO))
        if commission_asset not in (spec.base_asset, spec.quote_asset):
            self._move(commission_asset, -commission)
        now = self.server_time_ms()
        trade = Trade(
            id=next(self._trade_ids),
            order_id=order.order_id,
            symbol=order.symbol,
            price=price,
            qty=qty,
            quote_qty=quote,
            commission=commission,
            commission_asset=commission_asset,
            time=now,
            is_buyer=order.side == "BUY",
            is_maker=maker,
        )
        self.trades.append(trade)
        order.fills.append(trade)
        order.executed_qty += qty
        order.cum_quote += quote
        order.status = "FILLED" if order.executed_qty >= order.orig_qty else "PARTIALLY_FILLED"
        order.update_time = now
        await self._execution_report(order, "TRADE", trade=trade)
        await self._account_update(sorted({spec.base_asset, spec.quote_asset, commission_asset}))

    # ------------------------------------------------------------------ user data stream (WebSocket API)

    async def _execution_report(
        self, order: Order, execution_type: str, *, trade: Trade | None = None, cancel_client_order_id: str = ""
    ) -> None:
        """user-data-stream.md "Order Update": one executionReport per state change."""
        now = self.server_time_ms()
        event = {
            "e": "executionReport",
            "E": now,
            "s": order.symbol,
            "c": cancel_client_order_id or order.client_order_id,
            "S": order.side,
            "o": order.type,
            "f": order.time_in_force,
            "q": fmt(order.orig_qty),
            "p": fmt(order.price),
            "P": fmt(ZERO),
            "F": fmt(ZERO),
            "g": -1,
            "C": order.client_order_id if cancel_client_order_id else "",
            "x": execution_type,
            "X": order.status,
            "r": "NONE",
            "i": order.order_id,
            "l": fmt(trade.qty if trade else ZERO),
            "z": fmt(order.executed_qty),
            "L": fmt(trade.price if trade else ZERO),
            "n": fmt(trade.commission if trade else ZERO),
            "N": trade.commission_asset if trade else None,
            "T": trade.time if trade else now,
            "t": trade.id if trade else -1,
            "I": now,
            "w": order.status == "NEW",
            "m": trade.is_maker if trade else False,
            "M": False,
            "O": order.time,
            "Z": fmt(order.cum_quote),
            "Y": fmt(trade.quote_qty if trade else ZERO),
            "Q": fmt(order.orig_quote_qty),
            "W": order.time,
            "V": "EXPIRE_MAKER",
        }
        await self._push_user_event(event)

    async def _account_update(self, assets: list[str]) -> None:
        now = self.server_time_ms()
        event = {
            "e": "outboundAccountPosition",
            "E": now,
            "u": now,
            "B": [{"a": a, "f": fmt(self.balance(a)[0]), "l": fmt(self.balance(a)[1])} for a in assets],
        }
        await self._push_user_event(event)

    async def _push_user_event(self, event: dict[str, Any]) -> None:
        for conn in list(self._ws_api.values()):
            for subscription_id in sorted(conn.subscriptions):
                text = json.dumps({"subscriptionId": subscription_id, "event": event})
                for _ in range(2 if self.duplicate_stream_messages else 1):
                    try:
                        await conn.ws.send_str(text)
                    except (ConnectionError, RuntimeError):
                        break
                else:
                    self.delivered_user_events.append(event)

    def _rate_limits(self) -> list[dict[str, Any]]:
        return [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": self.weight_limit,
                "count": self.used_weight,
            }
        ]

    def _ws_authenticate(self, params: dict[str, Any]) -> None:
        """web-socket-api.md "SIGNED request security": sorted `key=value` pairs joined by `&`."""
        if params.get("apiKey") != self.api_key:
            raise ApiError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        signature = params.get("signature")
        if not signature:
            raise mandatory("signature")
        payload = "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "signature")
        expected = hmac.new(self.api_secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, str(signature).lower()):
            raise ApiError(400, -1022, "Signature for this request is not valid.")
        self._check_timestamp({k: str(v) for k, v in params.items()})

    async def _ws_api_handler(self, request: web.Request) -> web.StreamResponse:
        if self.refuse_websockets:
            return web.Response(status=503, text="WebSocket refused by the test.")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = _WsApiConnection(ws, request)
        self._ws_api[ws] = conn
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await self._ws_api_request(conn, msg.data)
        finally:
            self._ws_api.pop(ws, None)
        return ws

    async def _ws_api_request(self, conn: _WsApiConnection, text: str) -> None:
        try:
            request = json.loads(text)
        except ValueError:
            request = {}
        request_id = request.get("id")
        method = str(request.get("method"))
        params = request.get("params") or {}
        record = RequestRecord(
            time.monotonic(), "WS", method, {k: str(v) for k, v in params.items() if k != "signature"}
        )
        self.requests.append(record)
        try:
            result: Any
            if method == "userDataStream.subscribe.signature":
                self._ws_authenticate(params)
                subscription_id = next(conn.next_subscription)
                conn.subscriptions.add(subscription_id)
                result = {"subscriptionId": subscription_id}
            elif method == "userDataStream.unsubscribe":
                if "subscriptionId" in params:
                    conn.subscriptions.discard(int(params["subscriptionId"]))
                else:
                    conn.subscriptions.clear()
                result = {}
            elif method == "session.subscriptions":
                result = [{"subscriptionId": s} for s in sorted(conn.subscriptions)]
            elif method == "ping":
                result = {}
            elif method == "time":
                result = {"serverTime": self.server_time_ms()}
            else:
                raise ApiError(400, -1020, "This operation is not supported.")
            response: dict[str, Any] = {"id": request_id, "status": 200, "result": result}
        except ApiError as e:
            record.status, record.code = e.status, e.code
            response = {"id": request_id, "status": e.status, "error": {"code": e.code, "msg": e.msg}}
        response["rateLimits"] = self._rate_limits()
        await conn.ws.send_str(json.dumps(response))

    # ------------------------------------------------------------------ market streams

    async def _market_handler(self, request: web.Request) -> web.StreamResponse:
        if self.refuse_websockets:
            return web.Response(status=503, text="WebSocket refused by the test.")
        if request.path == "/stream":
            names, combined = request.query.get("streams", ""), True
        else:
            names, combined = request.match_info["streams"], False
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        sub = _MarketSubscriber(ws, {n for n in names.split("/") if n}, combined)
        self._market.append(sub)
        self._market_requests[ws] = request
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await self._market_control(sub, msg.data)
        finally:
            with contextlib.suppress(ValueError):
                self._market.remove(sub)
            self._market_requests.pop(ws, None)
        return ws

    async def _market_control(self, sub: _MarketSubscriber, text: str) -> None:
        """web-socket-streams.md "Live Subscribing/Unsubscribing to streams"."""
        try:
            request = json.loads(text)
        except ValueError:
            return
        method, params = request.get("method"), request.get("params") or []
        result: Any = None
        if method == "SUBSCRIBE":
            sub.streams.update(params)
        elif method == "UNSUBSCRIBE":
            sub.streams.difference_update(params)
        elif method == "LIST_SUBSCRIPTIONS":
            result = sorted(sub.streams)
        await sub.ws.send_str(json.dumps({"result": result, "id": request.get("id")}))

    async def _send_market(self, sub: _MarketSubscriber, stream: str, payload: dict[str, Any]) -> None:
        message = {"stream": stream, "data": payload} if sub.combined else payload
        for _ in range(2 if self.duplicate_stream_messages else 1):
            with contextlib.suppress(ConnectionError, RuntimeError):
                await sub.ws.send_str(json.dumps(message))

    def _kline_event(self, name: str, interval: str, open_time: int, final: bool) -> dict[str, Any]:
        row = self._kline_row(name, INTERVALS_MS[interval], open_time)
        now = self.server_time_ms()
        return {
            "e": "kline",
            "E": now,
            "s": name,
            "k": {
                "t": row[0],
                "T": row[6],
                "s": name,
                "i": interval,
                "f": 0,
                "L": row[8],
                "o": row[1],
                "c": row[4],
                "h": row[2],
                "l": row[3],
                "v": row[5],
                "n": row[8],
                "x": final,
                "q": row[7],
                "V": fmt(ZERO),
                "Q": fmt(ZERO),
                "B": "0",
            },
        }

    def _kline_stream(self, stream: str) -> tuple[str, str] | None:
        pair, _, kind = stream.partition("@")
        if not kind.startswith("kline_"):
            return None
        interval = kind.removeprefix("kline_")
        name = pair.upper()
        if name not in self.symbols or interval not in INTERVALS_MS:
            return None
        return name, interval

    async def _maybe_close_kline(self, sub: _MarketSubscriber, stream: str) -> None:
        """A kline whose period has ended is sent once more with `x: true`."""
        parsed = self._kline_stream(stream)
        if parsed is None:
            return
        name, interval = parsed
        step = INTERVALS_MS[interval]
        current = self.server_time_ms() // step * step
        last = sub.last_kline_open.get(stream)
        if last is not None and last < current:
            await self._send_market(sub, stream, self._kline_event(name, interval, last, final=True))
            sub.last_kline_open[stream] = current

    async def _publish_trade(self, name: str, price: Decimal, qty: Decimal, at: int) -> None:
        pair = name.lower()
        trade_id = next(self._market_trade_ids)
        trade = {
            "e": "trade",
            "E": at,
            "s": name,
            "t": trade_id,
            "p": fmt(price),
            "q": fmt(qty),
            "T": at,
            "m": False,
            "M": True,
        }
        agg = {
            "e": "aggTrade",
            "E": at,
            "s": name,
            "a": trade_id,
            "p": fmt(price),
            "q": fmt(qty),
            "f": trade_id,
            "l": trade_id,
            "T": at,
            "m": False,
            "M": True,
        }
        self.agg_trades[name].append(agg)
        for sub in list(self._market):
            for stream in sorted(sub.streams):
                if stream == f"{pair}@trade":
                    await self._send_market(sub, stream, trade)
                elif stream == f"{pair}@aggTrade":
                    await self._send_market(sub, stream, agg)
                elif stream.startswith(f"{pair}@kline_"):
                    parsed = self._kline_stream(stream)
                    if parsed is None:
                        continue
                    await self._maybe_close_kline(sub, stream)
                    step = INTERVALS_MS[parsed[1]]
                    current = at // step * step
                    sub.last_kline_open[stream] = current
                    await self._send_market(sub, stream, self._kline_event(name, parsed[1], current, final=False))
