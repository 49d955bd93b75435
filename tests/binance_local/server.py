"""A small local Binance spot server for tests: REST, WebSocket API (user data stream) and market
streams on 127.0.0.1, in-process, speaking Binance's protocol closely enough that python-binance runs
against it unpatched (pointed here by subclassing, SPEC §8).

What it does: verifies HMAC-SHA256 signatures and the timing window as Binance does, matches MARKET
and LIMIT orders against a scripted price path (`set_price`) or a scripted order book (`set_book`),
applies the symbol filters and the commissions (base asset on buys, quote asset on sells, BNB when
enabled), keeps balances, trades, request weight and the unfilled order count, pushes
`executionReport`, `outboundAccountPosition`, `balanceUpdate` and `eventStreamTerminated` events to
user data stream subscribers and trade / kline events to market stream subscribers, and injects
faults on request (see "Faults" below). The shapes it answers with are in `records.py`.

Shapes and rules follow Binance's spot API documentation (github.com/binance/binance-spot-api-docs,
also at developers.binance.com/docs/binance-spot-api-docs):

- rest-api.md "General API Information", "HTTP Return Codes" (4XX: sender's fault; 429: rate limit;
  418: IP ban; 5XX: execution status UNKNOWN) and "Error Codes" (`{"code": -1121, "msg": "..."}`).
- rest-api.md "LIMITS" / "IP Limits": every response carries `X-MBX-USED-WEIGHT-1M`; 429 and 418
  carry `Retry-After` in seconds. "Unfilled Order Count" and faqs/order_count_decrement.md: new
  orders are counted per account and interval (`X-MBX-ORDER-COUNT-10S` on a successful order); an
  order over the limit is refused with 429, -1015 "Too many new orders; current limit is %s orders
  per %s." and `Retry-After`; an order's first fill takes it off the count.
- rest-api.md "SIGNED (TRADE and USER_DATA) Endpoint security": HMAC-SHA256 with the secret key over
  `totalParams`, the query string concatenated with the request body (no `&` between them);
  "Timing security": processed only if `timestamp < serverTime + 1000` and
  `serverTime - timestamp <= recvWindow` (recvWindow defaults to 5000 and may not exceed 60000).
- rest-api.md "General endpoints": `GET /api/v3/ping`, `/api/v3/time`, `/api/v3/exchangeInfo`
  (`rateLimits`, symbols with `filters`); "Market Data endpoints": "Kline/Candlestick data"
  (`GET /api/v3/klines`, rows `[openTime, open, high, low, close, volume, closeTime, ...]`),
  "Current average price" (`GET /api/v3/avgPrice`: `{mins, price, closeTime}`, the volume weighted
  average of the last `avgPriceMins` minutes' trades — the price the filters judge by, filters.md
  PERCENT_PRICE_BY_SIDE; the last price when there were none) and "Symbol price ticker"
  (`GET /api/v3/ticker/price`).
- rest-api.md "Account endpoints": "New order (TRADE)" (`POST /api/v3/order`; `newClientOrderId`
  unique among open orders, `^[\\.A-Z\\:/a-z0-9_-]{1,36}$`; `quoteOrderQty` for MARKET; ACK / RESULT /
  FULL responses, FULL with `fills[price, qty, commission, commissionAsset, tradeId]`), "Query order
  (USER_DATA)" (`GET /api/v3/order` by `orderId` or `origClientOrderId`), "Cancel order (TRADE)"
  (`DELETE /api/v3/order`), "Current open orders (USER_DATA)" (`GET /api/v3/openOrders`), "Account
  information (USER_DATA)" (`GET /api/v3/account`), "Account trade list (USER_DATA)"
  (`GET /api/v3/myTrades`), "Query Commission Rates (USER_DATA)" (`GET /api/v3/account/commission`).
- faqs/market_orders_faq.md: a MARKET order fills "to the extent of available liquidity, and the
  remaining quantity will expire" — status EXPIRED, each price level a fill of its own (several
  `fills`, one `executionReport` per trade, then one with `x` = `X` = EXPIRED); an IOC order
  likewise (enums.md "Time in force").
- faqs/commission_faq.md "How is the commission calculated?": the received amount (the quantity on
  a buy, the notional on a sell) times (maker or taker + buyer or seller) of the standard, tax and
  special commissions; with BNB, only the standard part is discounted.
- filters.md: PRICE_FILTER (min/max/tick), PERCENT_PRICE_BY_SIDE, LOT_SIZE (min/max/step),
  MIN_NOTIONAL and NOTIONAL (with `applyMinToMarket`/`applyMaxToMarket` against the average
  price), MARKET_LOT_SIZE, MAX_NUM_ORDERS; steps as `value % step == 0`. Each check cites its section.
- errors.md: -1003 TOO_MANY_REQUESTS, -1013 "Filter failure: …", -1021 INVALID_TIMESTAMP, -1022
  INVALID_SIGNATURE, -1100 ILLEGAL_CHARS, -1102 MANDATORY_PARAM_EMPTY_OR_MALFORMED, -1111
  BAD_PRECISION, -1121 BAD_SYMBOL, -2010 NEW_ORDER_REJECTED ("Duplicate order sent.", "Account has
  insufficient balance for requested action."), -2011 CANCEL_REJECTED ("Unknown order sent."), -2013
  NO_SUCH_ORDER, -2014 BAD_API_KEY_FMT, -2015 REJECTED_MBX_KEY.
- web-socket-api.md "Request format" / "Response format" (`{"id", "status", "result" | "error",
  "rateLimits"}`), "Request security" (SIGNED requests: parameters except `signature` sorted by name,
  `key=value` joined by `&`), "User Data Stream requests": `userDataStream.subscribe.signature` answers
  `{"subscriptionId": n}` — one active subscription per account and connection, a second one is
  refused with -2035 SUBSCRIPTION_ACTIVE (errors.md) —, `userDataStream.unsubscribe`,
  `session.subscriptions`; events arrive as `{"subscriptionId": n, "event": {...}}`.
- user-data-stream.md "Order Update" (`executionReport`: c, C, S, o, f, q, p, x, X, i, l, z, L, n, N,
  T, t, Z, Y, Q, …), "Account Update" (`outboundAccountPosition`), "Balance Update"
  (`balanceUpdate`: deposits, withdrawals) and "Event Stream Terminated" (`eventStreamTerminated`,
  sent when a subscription is stopped).
- web-socket-streams.md: raw streams at `/ws/<streamName>`, combined streams at
  `/stream?streams=<a>/<b>` wrapped as `{"stream": name, "data": payload}`; "Trade Streams",
  "Aggregate Trade Streams", "Kline/Candlestick Streams" (the current kline pushed every 2000 ms,
  "Update Speed"); SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS; "General WSS information": the
  server sends a ping frame every 20 seconds and disconnects a connection that has not answered
  with a pong within a minute.

Faults (each one-shot unless a count is given): `fail_next` (a 5xx before or after processing),
`delay_next` (the request is processed, the answer comes late; also for WebSocket API methods),
`lose_next` (processed, then the connection is cut without an answer), `accept_late_next` (an order
is accepted, the answer is a 5xx "execution status unknown", and the order reaches the matching
engine — appears, fills — only seconds later: rest-api.md "General API Information", -1007 "does not
always mean that the request failed in the Matching Engine"; CHANGELOG: the recvWindow checks do
"not cover potential delays inside the Matching Engine"), `rate_limit` (429 or 418 with
`Retry-After` for the next requests), `drop_websockets` (cut every WebSocket), `refuse_websockets`
(handshakes answered 503), `terminate_user_streams` (Binance ends the subscriptions),
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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import WSCloseCode, WSMsgType, web

from domain.model import Symbol
from tests.binance_local.records import (
    Q8,
    ZERO,
    ApiError,
    Order,
    RequestRecord,
    SymbolSpec,
    Trade,
    default_symbols,
    fmt,
    mandatory,
)

__all__ = ["ApiError", "LocalBinance", "Order", "RequestRecord", "SymbolSpec", "Trade"]

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
    ("GET", "/api/v3/avgPrice"): 2,
    ("POST", "/api/v3/order"): 1,
    ("POST", "/api/v3/order/test"): 1,
    ("GET", "/api/v3/order"): 4,
    ("DELETE", "/api/v3/order"): 1,
    ("GET", "/api/v3/openOrders"): 6,
    ("GET", "/api/v3/account"): 20,
    ("GET", "/api/v3/myTrades"): 20,
    ("GET", "/api/v3/account/commission"): 20,
}
INTERNAL_ERROR = (-1001, "Internal error; unable to process your request. Please try again.")
# errors.md -1007 TIMEOUT.
BACKEND_TIMEOUT = (
    -1007,
    "Timeout waiting for response from backend server. Send status unknown; execution status unknown.",
)


@dataclass
class _Fault:
    kind: str  # fail | delay | lose | late | rate_limit
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
    pings: int = 0
    pongs: int = 0
    last_pong: float = field(default_factory=time.monotonic)


@dataclass
class _WsApiConnection:
    ws: web.WebSocketResponse
    request: web.Request
    subscriptions: dict[int, str] = field(default_factory=dict)  # subscription id -> API key
    next_subscription: itertools.count[int] = field(default_factory=itertools.count)


@dataclass
class _Book:
    """A scripted order book (`set_book`): price levels [price, quantity], best first."""

    bids: list[list[Decimal]]
    asks: list[list[Decimal]]


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
        order_limit: int = 100,
        order_window_ms: int = 10_000,
        kline_push_seconds: float = 2.0,
        ping_seconds: float = 20.0,
        pong_timeout_seconds: float = 60.0,
    ) -> None:
        self.api_key = api_key
        self.api_secret = api_secret
        self.fee_rate = fee_rate
        # faqs/commission_faq.md: the account's rates by kind; each trade pays (maker or taker) +
        # (buyer or seller) of every kind. The standard maker and taker rates are `fee_rate`.
        self.commission_rates: dict[str, dict[str, Decimal]] = {
            "standardCommission": {"maker": fee_rate, "taker": fee_rate, "buyer": ZERO, "seller": ZERO},
            "taxCommission": {"maker": ZERO, "taker": ZERO, "buyer": ZERO, "seller": ZERO},
            "specialCommission": {"maker": ZERO, "taker": ZERO, "buyer": ZERO, "seller": ZERO},
        }
        self.pay_fees_in_bnb = False
        self.bnb_discount = Decimal("0.25")
        self.weight_limit = weight_limit
        self.weight_window_ms = weight_window_ms
        self.used_weight = 0
        self._weight_window = -1
        # rest-api.md "Unfilled Order Count": exchangeInfo's ORDERS limit per interval, per account.
        self.order_limit = order_limit
        self.order_window_ms = order_window_ms
        self.unfilled_orders = 0
        self._order_window = -1
        # web-socket-streams.md: the current kline every 2000 ms; a ping frame every 20 s, and a
        # connection without a pong for a minute is closed.
        self.kline_push_seconds = kline_push_seconds
        self.ping_seconds = ping_seconds
        self.pong_timeout_seconds = pong_timeout_seconds
        self.books: dict[str, _Book] = {}
        self._background: set[asyncio.Task[None]] = set()
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
        for task in list(self._background):
            task.cancel()
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
        """Change a free balance behind the user data stream's back (no event)."""
        self.balances.setdefault(asset, [ZERO, ZERO])[0] = free

    async def deposit(self, asset: str, amount: Decimal) -> None:
        """A deposit (a withdrawal when negative): user-data-stream.md "Balance Update" — a
        `balanceUpdate` with the delta, then the `outboundAccountPosition` of the asset."""
        self._move(asset, amount)
        now = self.server_time_ms()
        await self._push_user_event({"e": "balanceUpdate", "E": now, "a": asset, "d": fmt(amount), "T": now})
        await self._account_update([asset])

    async def withdraw(self, asset: str, amount: Decimal) -> None:
        await self.deposit(asset, -amount)

    def set_book(
        self,
        name: str,
        *,
        bids: Sequence[tuple[Decimal, Decimal]] = (),
        asks: Sequence[tuple[Decimal, Decimal]] = (),
    ) -> None:
        """Script the order book of a symbol: (price, quantity) levels. Taker orders (MARKET, IOC, a
        marketable LIMIT) take its levels best first, one fill per level, and what it cannot fill
        expires (faqs/market_orders_faq.md). Without a book, the last price has unlimited liquidity."""
        self.books[name] = _Book(
            bids=sorted(([p, q] for p, q in bids), key=lambda level: -level[0]),
            asks=sorted(([p, q] for p, q in asks), key=lambda level: level[0]),
        )

    def clear_book(self, name: str) -> None:
        self.books.pop(name, None)

    def set_commission(self, kind: str = "standardCommission", **rates: Decimal) -> None:
        """Change the account's commission rates of one kind (faqs/commission_faq.md)."""
        self.commission_rates[kind].update(rates)

    async def push_user_event(self, event: dict[str, Any]) -> None:
        """Send any event to the user data stream subscribers (e.g. one the client cannot process)."""
        await self._push_user_event(event)

    async def terminate_user_streams(self) -> None:
        """Binance ends every user data subscription: user-data-stream.md "Event Stream Terminated"."""
        for conn in list(self._ws_api.values()):
            for subscription_id in list(conn.subscriptions):
                await self._end_subscription(conn, subscription_id)

    def balance(self, asset: str) -> tuple[Decimal, Decimal]:
        free, locked = self.balances.get(asset, [ZERO, ZERO])
        return free, locked

    def requests_to(self, method: str, path: str) -> list[RequestRecord]:
        return [r for r in self.requests if r.method == method and r.path == path]

    def orders_with(self, client_order_id: str) -> list[Order]:
        return [o for o in self.orders if o.client_order_id == client_order_id]

    def market_pings(self) -> tuple[int, int]:
        """Ping frames sent and pongs received on the market stream connections."""
        return sum(s.pings for s in self._market), sum(s.pongs for s in self._market)

    @property
    def user_stream_subscriptions(self) -> int:
        return sum(len(c.subscriptions) for c in self._ws_api.values())

    def average_price(self, name: str) -> Decimal:
        """rest-api.md "Current average price" and filters.md PERCENT_PRICE_BY_SIDE / NOTIONAL: the
        volume weighted average price of the last `avgPriceMins` minutes' trades; the last price when
        there were none, or when `avgPriceMins` is 0."""
        minutes = self.symbols[name].avg_price_mins
        since = self.server_time_ms() - minutes * 60_000
        recent = [(p, q) for t, p, q in self.history[name] if t > since and q > 0] if minutes else []
        volume = sum((q for _, q in recent), ZERO)
        if not volume:
            return self.prices[name]
        return (sum((p * q for p, q in recent), ZERO) / volume).quantize(Q8, rounding=ROUND_DOWN)

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
        """Process the next matching requests, then answer `seconds` later (a WebSocket API request:
        method "WS", path its method name)."""
        self._faults.append(_Fault("delay", method, path, count, seconds=seconds, after_processing=True))

    def lose_next(self, method: str | None, path: str | None, *, count: int = 1) -> None:
        """Process the next matching requests, then cut the connection without an answer."""
        self._faults.append(_Fault("lose", method, path, count, after_processing=True))

    def accept_late_next(self, seconds: float, *, status: int = 503, count: int = 1) -> None:
        """The next new orders are accepted (checked as usual), answered with a 5xx "execution
        status unknown" (-1007), and reach the matching engine only `seconds` later: until then no
        query finds them; then they are placed and fill as any order would."""
        self._faults.append(_Fault("late", "POST", "/api/v3/order", count, status=status, seconds=seconds))

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
            late = self._take_fault(method, path, ("late",), after=False)
            if late is not None:
                # Accepted, then lost in the backend: the client hears "execution status unknown"
                # (rest-api.md "HTTP Return Codes": 5XX; errors.md -1007), the order comes later.
                self._validate_order(params)
                self._spawn(self._enter_late(dict(params), late.seconds))
                raise ApiError(late.status, *BACKEND_TIMEOUT)
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
            # rest-api.md "Unfilled Order Count": on every successful order response.
            interval = f"{self.order_window_ms // 1000}S"
            headers |= {
                f"X-MBX-ORDER-COUNT-{interval}": str(self.unfilled_orders),
                "X-MBX-ORDER-COUNT-1D": str(len(self.orders)),
            }
        return web.json_response(data, headers=headers)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _enter_late(self, params: dict[str, str], seconds: float) -> None:
        await asyncio.sleep(seconds)
        with contextlib.suppress(ApiError):  # refused by then (e.g. the balance is gone): never placed
            await self._new_order(params)

    def _routes(self) -> dict[tuple[str, str], tuple[Callable[[dict[str, str]], Awaitable[Any]], bool]]:
        return {
            ("GET", "/api/v3/ping"): (self._ping, False),
            ("GET", "/api/v3/time"): (self._time, False),
            ("GET", "/api/v3/exchangeInfo"): (self._exchange_info, False),
            ("GET", "/api/v3/klines"): (self._klines, False),
            ("GET", "/api/v3/aggTrades"): (self._agg_trades, False),
            ("GET", "/api/v3/ticker/price"): (self._ticker_price, False),
            ("GET", "/api/v3/avgPrice"): (self._avg_price, False),
            ("POST", "/api/v3/order"): (self._new_order, True),
            ("POST", "/api/v3/order/test"): (self._test_order, True),
            ("GET", "/api/v3/order"): (self._query_order, True),
            ("DELETE", "/api/v3/order"): (self._cancel_order, True),
            ("GET", "/api/v3/openOrders"): (self._open_orders, True),
            ("GET", "/api/v3/account"): (self._account, True),
            ("GET", "/api/v3/myTrades"): (self._my_trades, True),
            ("GET", "/api/v3/account/commission"): (self._account_commission, True),
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

    async def _avg_price(self, params: dict[str, str]) -> dict[str, Any]:
        """rest-api.md "Current average price"."""
        spec = self._spec(params)
        times = [t for t, _, q in self.history[spec.symbol] if q > 0]
        return {
            "mins": spec.avg_price_mins,
            "price": fmt(self.average_price(spec.symbol)),
            "closeTime": times[-1] if times else self.server_time_ms(),
        }

    @staticmethod
    def _on_step(value: Decimal, step: Decimal) -> bool:
        """filters.md PRICE_FILTER / LOT_SIZE / MARKET_LOT_SIZE: `value % step == 0` (0 disables it)."""
        return step <= 0 or value % step == 0

    @staticmethod
    def _refuse(name: str) -> ApiError:
        """errors.md "Filter failures": -1013 "Filter failure: <name>"."""
        return ApiError(400, -1013, f"Filter failure: {name}")

    def _check_limit(self, spec: SymbolSpec, side: str, qty: Decimal, price: Decimal) -> None:
        """The filters of a LIMIT order (filters.md)."""
        # PRICE_FILTER: minPrice <= price <= maxPrice, price % tickSize == 0.
        if price < spec.min_price or price > spec.max_price or not self._on_step(price, spec.tick_size):
            raise self._refuse("PRICE_FILTER")
        # PERCENT_PRICE_BY_SIDE: within the side's multipliers of the average price.
        if spec.percent_price is not None:
            bid_up, bid_down, ask_up, ask_down = spec.percent_price
            up, down = (bid_up, bid_down) if side == "BUY" else (ask_up, ask_down)
            average = self.average_price(spec.symbol)
            if not average * down <= price <= average * up:
                raise self._refuse("PERCENT_PRICE_BY_SIDE")
        self._check_lot(spec, qty)
        self._check_notional(spec, qty * price, market=False)

    def _check_lot(self, spec: SymbolSpec, qty: Decimal) -> None:
        """filters.md LOT_SIZE: minQty <= quantity <= maxQty, quantity % stepSize == 0."""
        if qty < spec.min_qty or qty > spec.max_qty or not self._on_step(qty, spec.step_size):
            raise self._refuse("LOT_SIZE")

    def _check_market_lot(self, spec: SymbolSpec, qty: Decimal) -> None:
        """filters.md MARKET_LOT_SIZE: the same rules for MARKET orders, each bound disabled at 0."""
        if (
            (spec.market_min_qty > 0 and qty < spec.market_min_qty)
            or (spec.market_max_qty > 0 and qty > spec.market_max_qty)
            or not self._on_step(qty, spec.market_step_size)
        ):
            raise self._refuse("MARKET_LOT_SIZE")

    def _check_notional(self, spec: SymbolSpec, notional: Decimal, *, market: bool) -> None:
        """filters.md NOTIONAL (minNotional <= price * quantity <= maxNotional; a MARKET order is
        judged at the average price, each bound only if applyMinToMarket / applyMaxToMarket) and the
        older MIN_NOTIONAL (its `applyToMarket`)."""
        name = "MIN_NOTIONAL" if spec.legacy_min_notional else "NOTIONAL"
        if (not market or spec.apply_min_to_market) and notional < spec.min_notional:
            raise self._refuse(name)
        if (
            not spec.legacy_min_notional
            and spec.max_notional > 0
            and (not market or spec.apply_max_to_market)
            and notional > spec.max_notional
        ):
            raise self._refuse(name)

    def _check_open_orders(self, spec: SymbolSpec) -> None:
        """filters.md MAX_NUM_ORDERS: at most maxNumOrders open orders on the symbol; "New order
        (TRADE)" adds 1 to it."""
        open_orders = sum(1 for o in self.orders if o.symbol == spec.symbol and o.is_open)
        if spec.max_num_orders and open_orders >= spec.max_num_orders:
            raise self._refuse("MAX_NUM_ORDERS")

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
            self._check_limit(spec, side, qty, price)
        else:
            if tif:
                raise ApiError(400, -1106, "Parameter 'timeInForce' sent when not required.")
            if price is not None:
                raise ApiError(400, -1106, "Parameter 'price' sent when not required.")
            if (qty is None) == (quote_qty is None):
                raise ApiError(
                    400, -1102, "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!"
                )
            average = self.average_price(spec.symbol)
            if quote_qty is not None:
                # "New order (TRADE)": a quoteOrderQty order "will not break LOT_SIZE filter rules"; the
                # quantity is what the quote buys (or must bring in) at the market.
                self._check_notional(spec, quote_qty, market=True)
                qty = (quote_qty / market / spec.step_size).to_integral_value(rounding=ROUND_DOWN) * spec.step_size
                if qty < spec.min_qty:
                    raise self._refuse("LOT_SIZE")
            else:
                assert qty is not None
                self._check_lot(spec, qty)
                self._check_notional(spec, qty * average, market=True)
            assert qty is not None
            self._check_market_lot(spec, qty)
        self._check_open_orders(spec)
        if any(o.client_order_id == coid and o.is_open for o in self.orders):
            raise ApiError(400, -2010, "Duplicate order sent.")
        # faqs/market_orders_faq.md: "If you do not have sufficient balance for the order to be
        # completely filled, the order will be rejected."
        cost = quote_qty if quote_qty is not None else qty * (price if price is not None else market)
        if side == "BUY" and self.balance(spec.quote_asset)[0] < cost:
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

    def _count_order(self) -> int:
        """rest-api.md "Unfilled Order Count": the new order's window; over the limit, 429 -1015 with
        `Retry-After` until the window ends (faqs/order_count_decrement.md)."""
        now = self.server_time_ms()
        window = now // self.order_window_ms
        if window != self._order_window:
            self._order_window, self.unfilled_orders = window, 0
        if self.unfilled_orders >= self.order_limit:
            retry_after = max(1, -(-((window + 1) * self.order_window_ms - now) // 1000))
            raise ApiError(
                429,
                -1015,
                f"Too many new orders; current limit is {self.order_limit} orders per "
                f"{self.order_window_ms // 1000} SECOND.",
                {"Retry-After": str(retry_after)},
            )
        self.unfilled_orders += 1
        return window

    async def _test_order(self, params: dict[str, str]) -> dict[str, Any]:
        self._validate_order(params)
        return {}

    async def _new_order(self, params: dict[str, str]) -> dict[str, Any]:
        spec, t = self._validate_order(params)
        window = self._count_order()
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
            window=window,
        )
        self.orders.append(order)
        await self._execution_report(order, "NEW")
        await self._match(spec, order)
        if order.is_open and (order.type == "MARKET" or order.time_in_force in ("IOC", "FOK")):
            # faqs/market_orders_faq.md: what the book could not fill expires (x = X = EXPIRED).
            order.status = "EXPIRED"
            order.update_time = self.server_time_ms()
            await self._execution_report(order, "EXPIRED")
        elif order.is_open:  # resting GTC: the funds of what remains are locked until it fills or is cancelled
            locked_asset, amount = (
                (spec.base_asset, order.remaining)
                if order.side == "SELL"
                else (spec.quote_asset, order.remaining * order.price)
            )
            self._move(locked_asset, -amount, amount)
            await self._account_update([locked_asset])
        response_type = params.get("newOrderRespType") or "FULL"
        return order.ack() if response_type == "ACK" else order.result() if response_type == "RESULT" else order.full()

    async def _match(self, spec: SymbolSpec, order: Order) -> None:
        """The taker part of a new order: against the scripted book's levels (one fill each, best
        first), or at the last price with unlimited liquidity when no book is set. A LIMIT order
        takes only the levels at or better than its price."""
        book = self.books.get(spec.symbol)
        if book is None:
            market = self.prices[spec.symbol]
            marketable = order.type == "MARKET" or (
                market >= order.price if order.side == "SELL" else market <= order.price
            )
            if marketable:
                await self._fill(order, order.orig_qty, market, maker=False)
            return
        levels = book.asks if order.side == "BUY" else book.bids
        quote_left = order.orig_quote_qty if order.type == "MARKET" and order.orig_quote_qty else None
        fills: list[tuple[Decimal, Decimal]] = []
        planned = ZERO
        exhausted = True  # the levels ran out before the order was complete
        for level in levels:
            price, available = level
            if order.type == "LIMIT" and (price > order.price if order.side == "BUY" else price < order.price):
                break
            qty = min(available, order.orig_qty - planned)
            if quote_left is not None:
                step = spec.step_size
                qty = min(available, (quote_left / price / step).to_integral_value(rounding=ROUND_DOWN) * step)
            if qty <= 0:
                exhausted = False
                break
            fills.append((price, qty))
            planned += qty
            if quote_left is not None:
                quote_left -= qty * price
            elif planned >= order.orig_qty:
                exhausted = False
                break
        if order.time_in_force == "FOK" and planned < order.orig_qty:
            return  # all or nothing
        if quote_left is not None:
            # A quote order's quantity is what the book gave for it; if the book ran out first, the
            # rest of it expires.
            order.orig_qty = max(order.orig_qty, planned + spec.step_size) if exhausted else planned
        for price, qty in fills:
            for level in levels:
                if level[0] == price:
                    level[1] -= qty
            await self._fill(order, qty, price, maker=False)
        levels[:] = [level for level in levels if level[1] > 0]

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
        """rest-api.md "Account information (USER_DATA)": the standard commission rates, in bips and
        as `commissionRates`, and the balances."""
        omit_zero = params.get("omitZeroBalances") == "true"
        standard = self.commission_rates["standardCommission"]
        return {
            **{f"{k}Commission": int(v * 10000) for k, v in standard.items()},
            "commissionRates": {k: fmt(v) for k, v in standard.items()},
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

    async def _account_commission(self, params: dict[str, str]) -> dict[str, Any]:
        """rest-api.md "Query Commission Rates (USER_DATA)"."""
        spec = self._spec(params)
        return {
            "symbol": spec.symbol,
            **{kind: {k: fmt(v) for k, v in rates.items()} for kind, rates in self.commission_rates.items()},
            "discount": {
                "enabledForAccount": self.pay_fees_in_bnb,
                "enabledForSymbol": True,
                "discountAsset": "BNB",
                "discount": fmt(self.bnb_discount),
            },
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

    def _rate(self, kind: str, side: str, maker: bool) -> Decimal:
        rates = self.commission_rates[kind]
        return rates["maker" if maker else "taker"] + rates["buyer" if side == "BUY" else "seller"]

    def _commission(
        self, spec: SymbolSpec, side: str, qty: Decimal, quote: Decimal, *, maker: bool = False
    ) -> tuple[Decimal, str]:
        """faqs/commission_faq.md "How is the commission calculated?": the received amount (the
        quantity on a buy, the notional on a sell) times (maker or taker + buyer or seller) of the
        standard, tax and special commissions, taken from what is received. With "pay fees in BNB" it
        is taken in BNB when the BNB balance covers it, the standard part discounted."""
        standard = self._rate("standardCommission", side, maker)
        others = self._rate("taxCommission", side, maker) + self._rate("specialCommission", side, maker)
        if self.pay_fees_in_bnb and spec.base_asset != "BNB":
            bnb_price = self.prices.get(f"BNB{spec.quote_asset}")
            if bnb_price:
                rate = standard * (1 - self.bnb_discount) + others
                bnb = (quote * rate / bnb_price).quantize(Q8, rounding=ROUND_HALF_UP)
                if self.balance("BNB")[0] >= bnb:
                    return bnb, "BNB"
        if side == "BUY":
            return (qty * (standard + others)).quantize(Q8, rounding=ROUND_HALF_UP), spec.base_asset
        return (quote * (standard + others)).quantize(Q8, rounding=ROUND_HALF_UP), spec.quote_asset

    async def _fill(self, order: Order, qty: Decimal, price: Decimal, *, maker: bool) -> None:
        spec = self.symbols[order.symbol]
        quote = (qty * price).quantize(Q8, rounding=ROUND_DOWN)
        commission, commission_asset = self._commission(spec, order.side, qty, quote, maker=maker)
        if order.executed_qty == 0 and order.window == self._order_window:
            # faqs/order_count_decrement.md: an order's first fill takes it off the unfilled count.
            self.unfilled_orders = max(self.unfilled_orders - 1, 0)
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
                # web-socket-api.md "User Data Stream subscription": "You can have only one active
                # subscription for a given account on a given connection" (errors.md -2035).
                if str(params["apiKey"]) in conn.subscriptions.values():
                    raise ApiError(400, -2035, "User Data Stream subscription already active.")
                subscription_id = next(conn.next_subscription)
                conn.subscriptions[subscription_id] = str(params["apiKey"])
                result = {"subscriptionId": subscription_id}
            elif method == "userDataStream.unsubscribe":
                wanted = int(params["subscriptionId"]) if "subscriptionId" in params else None
                ended = [i for i in conn.subscriptions if wanted is None or i == wanted]
                for subscription_id in ended:
                    await self._end_subscription(conn, subscription_id)
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
        delayed = self._take_fault("WS", method, ("delay",), after=True)
        if delayed is not None:
            await asyncio.sleep(delayed.seconds)  # processed; the answer comes late
        with contextlib.suppress(ConnectionError, RuntimeError):
            await conn.ws.send_str(json.dumps(response))

    async def _end_subscription(self, conn: _WsApiConnection, subscription_id: int) -> None:
        """user-data-stream.md "Event Stream Terminated": sent when a subscription is stopped."""
        event = {"e": "eventStreamTerminated", "E": self.server_time_ms()}
        with contextlib.suppress(ConnectionError, RuntimeError):
            await conn.ws.send_str(json.dumps({"subscriptionId": subscription_id, "event": event}))
        conn.subscriptions.pop(subscription_id, None)

    # ------------------------------------------------------------------ market streams

    async def _market_handler(self, request: web.Request) -> web.StreamResponse:
        if self.refuse_websockets:
            return web.Response(status=503, text="WebSocket refused by the test.")
        if request.path == "/stream":
            names, combined = request.query.get("streams", ""), True
        else:
            names, combined = request.match_info["streams"], False
        # Pings and pongs handled here (not by aiohttp) so that the server's pings can be counted.
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        sub = _MarketSubscriber(ws, {n for n in names.split("/") if n}, combined)
        self._market.append(sub)
        self._market_requests[ws] = request
        pusher = asyncio.ensure_future(self._keep_pushing(sub))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await self._market_control(sub, msg.data)
                elif msg.type == WSMsgType.PING:
                    await ws.pong(msg.data)
                elif msg.type == WSMsgType.PONG:
                    sub.pongs += 1
                    sub.last_pong = time.monotonic()
        finally:
            pusher.cancel()
            with contextlib.suppress(ValueError):
                self._market.remove(sub)
            self._market_requests.pop(ws, None)
        return ws

    async def _keep_pushing(self, sub: _MarketSubscriber) -> None:
        """web-socket-streams.md: the current kline of each kline stream every 2000 ms ("Update
        Speed"), trades or not, and a closed one (`x: true`) once its period is over; a ping frame
        every 20 seconds ("General WSS information"), and the connection closed when no pong came
        back within a minute."""
        loop = asyncio.get_running_loop()
        next_ping = loop.time() + self.ping_seconds
        next_push = loop.time() + self.kline_push_seconds
        with contextlib.suppress(ConnectionError, RuntimeError):
            while not sub.ws.closed:
                await asyncio.sleep(max(min(next_ping, next_push) - loop.time(), 0.0))
                if loop.time() >= next_push:
                    next_push += self.kline_push_seconds
                    for stream in sorted(sub.streams):
                        await self._push_kline(sub, stream)
                if loop.time() >= next_ping:
                    next_ping += self.ping_seconds
                    if time.monotonic() - sub.last_pong > self.pong_timeout_seconds:
                        await sub.ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"Pong timeout")
                        return
                    await sub.ws.ping(f"{self.server_time_ms()}".encode())
                    sub.pings += 1

    async def _push_kline(self, sub: _MarketSubscriber, stream: str) -> None:
        parsed = self._kline_stream(stream)
        if parsed is None:
            return
        name, interval = parsed
        await self._maybe_close_kline(sub, stream)
        step = INTERVALS_MS[interval]
        current = self.server_time_ms() // step * step
        sub.last_kline_open[stream] = current
        await self._send_market(sub, stream, self._kline_event(name, interval, current, final=False))

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
