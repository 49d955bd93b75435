"""The Binance spot adapter of the `Exchange` port (SPEC §2, issue 4), on python-binance's
`AsyncClient` (unpatched; pointed at another host by subclassing, SPEC §8).

Same contract as the paper exchange — `market_buy`, `market_sell`, `limit_sell`, `cancel_order`,
`get_order` return an `Execution` with the fills aggregated (gross quantities, the real commission
and its asset; a commission in a third asset such as BNB carries that asset's price in the quote
asset at the fill) — plus what a real exchange needs:

Exactly once. Every order carries the caller's deterministic `newClientOrderId`. When the outcome of
a create is unknown (a timeout, a lost connection, a 5xx or an "execution status unknown" code), the
adapter asks Binance for the order by that id before anything is sent again, and returns what really
happened. An order that is still absent once its request can no longer be accepted (its timestamp +
recvWindow has passed: Binance refuses older requests, rest-api.md "Timing security") was provably
never placed, and only then is it sent again (at most `max_send_attempts` sends in all). If Binance
cannot be asked, `OrderStateUnknown` (a `TemporaryExchangeError`) is raised and the order stays
unknown for the reconciliation job. A `-2010 Duplicate order sent.` means our own earlier send is
open under that id: that order is the outcome. A caller repeating an id this process already sent
gets the first order back (Binance itself accepts an id again once its order is closed); after a
crash, the reconciliation job asks `get_order` first (or set `query_before_send`).

Errors (errors.md) become the domain's: -1013 / -1111 -> `BinanceFilterFailure` (a `FilterFailure`
and a `PermanentExchangeError`; the cached filters are refreshed); -2010 insufficient balance ->
`BinanceInsufficientBalance`; -1022 / -2014 / -2015 -> `BinanceAuthError`; -2011 on cancel -> the
order is already gone, its final state is returned; -2013 on a query -> None; -1021 -> the clock
offset is resynchronised from `/api/v3/time` and the request sent once more; 5xx and the 10xx
server codes -> `TemporaryExchangeError` (for an order: the unknown-outcome path above).

Rate limits (rest-api.md "LIMITS"). All requests pass one `RequestGate` — Binance counts per IP, so
the adapters of a process should share it. A 429 or 418 closes it for everyone until `Retry-After`
has passed; the refused request (it was not executed) then goes out again, so nothing is lost —
unless the wait is longer than `max_rate_limit_wait` (an IP ban), when `BinanceRateLimited` is
raised. The gate also counts request weight against the REQUEST_WEIGHT limit of exchangeInfo,
corrected by each response's `X-MBX-USED-WEIGHT-1M`, and holds requests back until the next window
once `weight_headroom` of the limit is used.

Resting orders (SPEC §4 rule 6: a scheduled sell is a LIMIT GTC order on Binance). Their later fills
come from the user data stream — python-binance 1.0.37 subscribes on the WebSocket API with
`userDataStream.subscribe.signature` — and, while the stream is down, from polling the open orders
(`poll_interval`; every `safety_poll_interval` while it is up). `order_updates()` yields the
cumulative state of each watched order whenever it advances, once (duplicated stream messages and
the stream/poll overlap are filtered out).

Numbers: Binance's decimal strings go straight into `Decimal`; quantities are rounded down to the lot
step, limit prices up to the tick, quote amounts down to the quote precision (`domain.channel`).
Secrets: the API secret never appears in a log line, a repr or an error message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict, defaultdict
from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import aiohttp
from binance import AsyncClient, BinanceSocketManager
from binance.exceptions import BinanceAPIException, BinanceRequestException, BinanceWebsocketUnableToConnect
from binance.ws.constants import WSListenerState
from websockets.protocol import State

from domain import channel as ch
from domain.adapters.exchanges.secrets import redact
from domain.adapters.ops import metrics
from domain.errors import (
    ExchangeError,
    FilterFailure,
    InsufficientCapital,
    PermanentExchangeError,
    TemporaryExchangeError,
)
from domain.model import OrderStatus, Side, Symbol, SymbolFilters, TimeInForce
from domain.ports import Execution

if TYPE_CHECKING:
    from domain.adapters.config import Settings

log = logging.getLogger("criptoren.binance")

ZERO = Decimal(0)

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

# Request weights (rest-api.md), per python-binance method: the gate counts them before sending.
WEIGHTS: dict[str, int] = {
    "create_order": 1,
    "get_order": 4,
    "cancel_order": 1,
    "get_open_orders": 6,
    "get_account": 20,
    "get_my_trades": 20,
    "get_exchange_info": 20,
    "get_symbol_ticker": 2,
    "get_klines": 2,
    "get_server_time": 1,
    "ping": 1,
}
FILTER_CODES = frozenset({-1013, -1111})
AUTH_CODES = frozenset({-1002, -1022, -2014, -2015})
# errors.md: the request may or may not have been executed.
UNKNOWN_OUTCOME_CODES = frozenset({-1000, -1001, -1006, -1007, -1008})
TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError, BinanceRequestException)


# ---------------------------------------------------------------- errors


class BinanceFilterFailure(FilterFailure, PermanentExchangeError):
    """The order cannot meet the symbol's filters (-1013, -1111, or found before sending)."""

    code = "FILTER_FAILURE"


class BinanceInsufficientBalance(InsufficientCapital, PermanentExchangeError):
    """-2010: the exchange account's free balance does not cover the order."""

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
    """The order was maybe placed and Binance could not be asked: reconciliation must settle it."""

    code = "EXCHANGE_ORDER_UNKNOWN"


class _StreamDropped(Exception):
    pass


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
    load_fee_rate: bool = True  # read the account's taker commission at start
    recv_window_ms: int = 5000
    request_timeout: float = 10.0
    ws_timeout: float = 10.0
    filters_ttl: float = 3600.0
    weight_limit: int | None = None  # None: exchangeInfo's REQUEST_WEIGHT limit
    weight_window: float = 60.0
    weight_headroom: float = 0.8
    default_retry_after: float = 1.0  # a 429 without Retry-After (the order count limit)
    max_rate_limit_wait: float = 120.0
    unknown_grace: float = 1.0  # added to recvWindow before an absent order counts as never placed
    unknown_query_interval: float = 0.25
    unknown_give_up: float = 30.0  # how long to keep asking when the queries themselves fail
    max_send_attempts: int = 2
    # Ask Binance for every order id before sending it (one more request per order): for callers
    # that may repeat an id after a crash without reconciling first.
    query_before_send: bool = False
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
        return BinanceSocketManager
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
    max_qty: Decimal
    quote_asset_precision: int
    status: str

    @property
    def quote_step(self) -> Decimal:
        return Decimal(1).scaleb(-self.quote_asset_precision)


def parse_symbol_info(raw: Mapping[str, Any]) -> BinanceSymbolInfo:
    """LOT_SIZE, PRICE_FILTER and NOTIONAL (or the older MIN_NOTIONAL) of an exchangeInfo symbol."""
    filters = {f["filterType"]: f for f in raw.get("filters", [])}
    price = filters.get("PRICE_FILTER", {})
    lot = filters.get("LOT_SIZE", {})
    notional = filters.get("NOTIONAL") or filters.get("MIN_NOTIONAL") or {}

    def d(source: Mapping[str, Any], key: str) -> Decimal:
        return Decimal(str(source.get(key, "0")))

    return BinanceSymbolInfo(
        symbol=raw["symbol"],
        base_asset=raw["baseAsset"],
        quote_asset=raw["quoteAsset"],
        filters=SymbolFilters(
            step_size=d(lot, "stepSize").normalize(),
            min_qty=d(lot, "minQty").normalize(),
            tick_size=d(price, "tickSize").normalize(),
            min_notional=d(notional, "minNotional").normalize(),
        ),
        min_price=d(price, "minPrice"),
        max_price=d(price, "maxPrice"),
        max_qty=d(lot, "maxQty"),
        quote_asset_precision=int(raw.get("quoteAssetPrecision", raw.get("quotePrecision", 8))),
        status=str(raw.get("status", "TRADING")),
    )


def _plain(value: Decimal) -> str:
    """A Decimal as Binance reads it: no exponent, no trailing zeros."""
    return format(value.normalize(), "f")


def _utc(ms: int | str | None) -> datetime:
    if ms is None:
        return datetime.now(UTC)
    return datetime.fromtimestamp(int(ms) / 1000, UTC)


def _retry_after(error: BinanceAPIException, default: float) -> float:
    headers = getattr(error.response, "headers", None) or {}
    value = headers.get("Retry-After")
    try:
        return max(float(value), 0.0) if value is not None else default
    except ValueError:
        return default


def _describe(error: BaseException) -> str:
    if isinstance(error, BinanceAPIException):
        return f"HTTP {error.status_code}, code {error.code}: {error.message}"
    return type(error).__name__ + (f": {error}" if str(error) else "")


# ---------------------------------------------------------------- the request gate


class RequestGate:
    """The gate every REST request passes: closed for everyone by a 429/418 until its
    `Retry-After`, and holding requests back for the next weight window once the used weight nears
    the limit. Binance counts per IP, so the adapters of one process (one per client's keys) should
    share one gate: build it once and pass it to each `BinanceExchange`. Times are the event loop's
    clock; weight windows follow the server's clock."""

    def __init__(self, config: BinanceConfig) -> None:
        self.config = config
        self.limit: int | None = config.weight_limit
        self.window = config.weight_window
        self.offset_ms = 0  # server clock minus ours, kept up to date by the adapters
        self.paused_until = 0.0
        self.used = 0
        self._window_index = -1
        self.pauses = 0  # how often the gate was closed (rate limit or weight)

    def server_time(self) -> float:
        return time.time() + self.offset_ms / 1000

    @property
    def soft_limit(self) -> int | None:
        return None if self.limit is None else int(self.limit * self.config.weight_headroom)

    def pause_for(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        if until > self.paused_until:
            self.paused_until = until
            self.pauses += 1

    async def acquire(self, weight: int, max_wait: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            delay = self.paused_until - loop.time()
            if delay > max_wait:
                raise BinanceRateLimited(
                    f"Binance asked to stop sending for {delay:.0f} s (rate limit or IP ban).", retry_after=round(delay)
                )
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            now = self.server_time()
            index = int(now // self.window)
            if index != self._window_index:
                self._window_index, self.used = index, 0
            soft = self.soft_limit
            if soft is not None and self.used > 0 and self.used + weight > soft:
                # Slow down before the limit: wait for the next window (plus a margin for clock error).
                self.pause_for((index + 1) * self.window - now + self.window * 0.05)
                log.info("Binance request weight %s of %s used: waiting for the next window.", self.used, self.limit)
                continue
            self.used += weight
            return

    def observe(self, used: int) -> None:
        """The server's count (`X-MBX-USED-WEIGHT-1M`) is authoritative: other processes share it."""
        index = int(self.server_time() // self.window)
        if index > self._window_index:
            self._window_index, self.used = index, used
        elif index == self._window_index:
            self.used = max(self.used, used)


# ---------------------------------------------------------------- the adapter


@dataclass
class _Watched:
    symbol: str
    last: tuple[OrderStatus, Decimal] | None  # last state the caller knows (returned or emitted)


class BinanceExchange:
    """The `Exchange` port on Binance spot. `await start()` before use, `await close()` after (or use
    `async with`). One instance per API key."""

    name = "binance"
    rests_limit_orders = True  # scheduled sells rest on the exchange as LIMIT GTC orders (rule 6)

    def __init__(self, config: BinanceConfig, gate: RequestGate | None = None) -> None:
        self.config = config
        self._client: AsyncClient | None = None
        self._sockets: BinanceSocketManager | None = None
        self._gate = gate or RequestGate(config)
        self._fee_rate = config.fee_rate
        self._symbols: dict[str, BinanceSymbolInfo] = {}
        self._filters_loaded_at = float("-inf")
        self._filters_lock = asyncio.Lock()
        self._watched: dict[str, _Watched] = {}
        self._fills: OrderedDict[str, dict[int, dict[str, Any]]] = OrderedDict()  # coid -> tradeId -> fill
        self._early: OrderedDict[str, dict[str, Any]] = OrderedDict()  # reports of orders not yet watched
        self._sent: OrderedDict[str, None] = OrderedDict()  # client order ids this process has sent
        self._updates: asyncio.Queue[Execution] = asyncio.Queue()
        self._poll_lock = asyncio.Lock()
        self._stream_changed = asyncio.Event()
        self._stream_up = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._user_socket: Any = None
        self._closing = False
        # Counters, for logs and tests.
        self.rate_limit_hits = 0
        self.unknown_outcomes = 0
        self.updates_from_stream = 0
        self.updates_from_polling = 0

    @classmethod
    def from_settings(
        cls, settings: Settings, api_key: str, api_secret: str, *, gate: RequestGate | None = None, **overrides: Any
    ) -> BinanceExchange:
        """`EXCHANGE=binance`: the client's decrypted keys, `BINANCE_TESTNET`, `FEE_RATE`; `gate`
        shared by all the adapters of the process."""
        config = BinanceConfig(
            api_key=api_key,
            api_secret=api_secret,
            testnet=settings.binance_testnet,
            fee_rate=settings.fee_rate,
            **overrides,
        )
        return cls(config, gate)

    def __repr__(self) -> str:
        return f"BinanceExchange(key={self.config.key_hint}, testnet={self.config.testnet})"

    # ------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> BinanceExchange:
        await self.start()
        return self

    async def __aexit__(self, *args: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Connect (ping, server time offset), load the filters and the account's commission, and
        start the user data stream and the poller."""
        cfg = self.config
        trace = aiohttp.TraceConfig()
        trace.on_request_end.append(self._on_request_end)
        try:
            cls = client_class(
                cfg.api_url, cfg.ws_api_url, request_timeout=cfg.request_timeout, recv_window_ms=cfg.recv_window_ms
            )
            self._client = await cls.create(
                cfg.api_key,
                cfg.api_secret,
                testnet=cfg.testnet and cfg.api_url is None,
                session_params={"trace_configs": [trace]},
            )
        except BinanceAPIException as e:
            raise self._map_error(e) from e
        except TRANSPORT_ERRORS as e:
            raise BinanceUnavailable(f"Binance is not reachable: {_describe(e)}") from e
        client = self._client
        client.ws_api.TIMEOUT = cfg.ws_timeout
        self._gate.offset_ms = client.timestamp_offset
        self._sockets = socket_manager_class(cfg.stream_url)(client)
        try:
            await self.refresh_filters()
            if cfg.load_fee_rate:
                await self.refresh_fee_rate()
        except BaseException:
            await self.close()
            raise
        log.info(
            "Binance adapter started (key %s, %s).", cfg.key_hint, cfg.api_url or ("testnet" if cfg.testnet else "live")
        )
        if cfg.user_stream:
            self._spawn(self._run_user_stream())
            self._spawn(self._run_poller())

    async def close(self) -> None:
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        client = self._client
        if client is None:
            return
        if self._user_socket is not None:
            # Cancels python-binance's keepalive timer and unsubscribes (bounded: we are leaving).
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._user_socket.__aexit__(None, None, None), timeout=1.0)
        self._client = None
        ws_api = client.ws_api
        if ws_api.ws is not None:
            # Let python-binance's read loop see the exit now rather than at its next receive timeout.
            ws_api.ws_state = WSListenerState.EXITING
            with contextlib.suppress(Exception):
                await ws_api.ws.close()
        with contextlib.suppress(Exception):
            await client.close_connection()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _require_client(self) -> AsyncClient:
        if self._client is None:
            raise BinanceUnavailable("The Binance adapter is not started.")
        return self._client

    # ------------------------------------------------------------ requests

    async def _on_request_end(self, session: Any, context: Any, params: aiohttp.TraceRequestEndParams) -> None:
        used = params.response.headers.get("X-MBX-USED-WEIGHT-1M")
        if used is not None and used.isdigit():
            self._gate.observe(int(used))

    @property
    def used_weight(self) -> int:
        return self._gate.used

    async def _sync_time(self) -> None:
        client = self._require_client()
        before = time.time()
        answer = await client.get_server_time()
        after = time.time()
        client.timestamp_offset = int(answer["serverTime"] - (before + after) / 2 * 1000)
        self._gate.offset_ms = client.timestamp_offset
        log.warning("Binance clock offset resynchronised: %s ms.", client.timestamp_offset)

    async def _call(self, method: str, **params: Any) -> Any:
        """One REST call through the gate. A 429/418 closes the gate for `Retry-After` and the call
        is sent again (a refused request was not executed); -1021 resyncs the clock and sends again,
        once. Anything else propagates as python-binance raised it."""
        client = self._require_client()
        resynced = False
        while True:
            await self._gate.acquire(WEIGHTS.get(method, 1), self.config.max_rate_limit_wait)
            try:
                return await getattr(client, method)(**params)
            except BinanceAPIException as e:
                if e.status_code in (418, 429):
                    metrics.exchange_error(f"http_{e.status_code}")
                    retry_after = _retry_after(e, self.config.default_retry_after)
                    self.rate_limit_hits += 1
                    self._gate.pause_for(retry_after)
                    log.warning("Binance rate limit (HTTP %s): all requests wait %.1f s.", e.status_code, retry_after)
                    if retry_after > self.config.max_rate_limit_wait:
                        raise BinanceRateLimited(
                            f"Binance refused requests for {retry_after:.0f} s (HTTP {e.status_code}).",
                            retry_after=round(retry_after),
                            http_status=e.status_code,
                        ) from e
                    continue
                if e.code == -1021 and not resynced:
                    resynced = True
                    await self._sync_time()
                    continue
                raise

    async def _read(self, method: str, **params: Any) -> Any:
        """A call that changes nothing: every failure becomes a domain error."""
        try:
            return await self._call(method, **params)
        except BinanceAPIException as e:
            raise self._map_error(e) from e
        except TRANSPORT_ERRORS as e:
            raise BinanceUnavailable(f"Binance did not answer ({_describe(e)}).", request=method) from e

    def _map_error(self, error: BinanceAPIException, **details: Any) -> ExchangeError:
        code = int(error.code or 0)
        metrics.exchange_error(code or f"http_{error.status_code}")
        message = error.message or ""
        details = {"binance_code": code, "http_status": error.status_code, **details}
        text = f"Binance refused the request: {message} (code {code})."
        if code in FILTER_CODES:
            self._filters_loaded_at = float("-inf")  # they may have changed: reload before the next order
            return BinanceFilterFailure(text, **details)
        if code == -2010 and "insufficient balance" in message.lower():
            return BinanceInsufficientBalance(text, **details)
        if code in AUTH_CODES:
            return BinanceAuthError(text, **details)
        if error.status_code >= 500 or code in UNKNOWN_OUTCOME_CODES or code in (-1003, -1015, -1021):
            return BinanceUnavailable(text, **details)
        return BinanceRejected(text, **details)

    # ------------------------------------------------------------ filters, fees, balances, prices

    async def refresh_filters(self) -> None:
        """Reload exchangeInfo: the symbols' filters and the REQUEST_WEIGHT limit."""
        info = await self._read("get_exchange_info")
        self._symbols = {s["symbol"]: parse_symbol_info(s) for s in info.get("symbols", [])}
        self._filters_loaded_at = time.monotonic()
        if self.config.weight_limit is None:
            for limit in info.get("rateLimits", []):
                if limit.get("rateLimitType") == "REQUEST_WEIGHT" and limit.get("interval") == "MINUTE":
                    self._gate.limit = int(limit["limit"]) // int(limit.get("intervalNum", 1))

    async def _symbol_info(self, name: str) -> BinanceSymbolInfo:
        stale = time.monotonic() - self._filters_loaded_at > self.config.filters_ttl
        if stale or name not in self._symbols:
            async with self._filters_lock:
                if time.monotonic() - self._filters_loaded_at > self.config.filters_ttl or name not in self._symbols:
                    await self.refresh_filters()
        info = self._symbols.get(name)
        if info is None:
            raise BinanceRejected(f"Binance does not list the symbol {name}.", symbol=name)
        return info

    async def symbol_filters(self, symbol: Symbol | str) -> SymbolFilters:
        """The exchange's current filters of a symbol (cached for `filters_ttl`, refreshed after a
        filter rejection)."""
        return (await self._symbol_info(symbol if isinstance(symbol, str) else symbol.symbol)).filters

    async def refresh_fee_rate(self) -> Decimal:
        """The account's taker commission (`commissionRates.taker`, else `takerCommission` in bips)."""
        account = await self._read("get_account", omitZeroBalances="true")
        rates = account.get("commissionRates") or {}
        if "taker" in rates:
            self._fee_rate = Decimal(str(rates["taker"]))
        elif "takerCommission" in account:
            self._fee_rate = Decimal(int(account["takerCommission"])) / 10000
        return self._fee_rate

    async def for_client(self, client_id: int) -> BinanceExchange:
        """One key, one account: `ExchangeRouter` holds one adapter per client's key."""
        return self

    def fee_rate(self, symbol: Symbol) -> Decimal:
        return self._fee_rate

    async def balances(self) -> dict[str, Decimal]:
        """Free balance of every asset the account holds."""
        account = await self._read("get_account", omitZeroBalances="true")
        return {b["asset"]: Decimal(b["free"]) for b in account.get("balances", [])}

    async def balance(self, asset: str) -> Decimal:
        """Free balance of one asset (0 when the account holds none)."""
        return (await self.balances()).get(asset, ZERO)

    async def current_price(self, symbol: Symbol) -> tuple[Decimal, datetime] | None:
        """The last trade price (`/api/v3/ticker/price`); a `PriceSource`."""
        data = await self._read("get_symbol_ticker", symbol=symbol.symbol)
        return Decimal(data["price"]), datetime.now(UTC)

    async def _asset_price(self, asset: str, quote: str, at: datetime) -> Decimal:
        """Price of `asset` in `quote` at `at`: the ticker for a recent fill, else the close of the
        1-minute kline containing it (a fill recovered later keeps the price of its own time)."""
        recent = (datetime.now(UTC) - at).total_seconds() < 90
        for pair, inverse in ((f"{asset}{quote}", False), (f"{quote}{asset}", True)):
            try:
                if recent:
                    price = Decimal((await self._read("get_symbol_ticker", symbol=pair))["price"])
                else:
                    start = int(at.timestamp() * 1000) // 60_000 * 60_000
                    rows = await self._read("get_klines", symbol=pair, interval="1m", startTime=start, limit=1)
                    price = Decimal(rows[0][4])
            except BinanceRejected:
                continue
            return ch.ONE / price if inverse else price
        raise BinanceRejected(f"No {asset}/{quote} market to value a commission paid in {asset}.", asset=asset)

    # ------------------------------------------------------------ orders

    def _filter_failure(self, error: FilterFailure, client_order_id: str) -> BinanceFilterFailure:
        return BinanceFilterFailure(error.message, client_order_id=client_order_id, **error.details)

    def _lot(self, info: BinanceSymbolInfo, quantity: Decimal, what: str, coid: str) -> Decimal:
        """Rule 9: a quantity is rounded down to the lot step; below the minimum it is not sent."""
        qty = ch.round_down_to_step(quantity, info.filters.step_size)
        if qty < info.filters.min_qty or qty <= 0:
            raise BinanceFilterFailure(
                f"{what}: quantity {_plain(quantity)} is below the exchange's minimum "
                f"{_plain(info.filters.min_qty)} once rounded to the lot step (LOT_SIZE).",
                filter="LOT_SIZE",
                client_order_id=coid,
            )
        if info.max_qty > 0 and qty > info.max_qty:
            raise BinanceFilterFailure(
                f"{what}: quantity {_plain(qty)} is above the exchange's maximum {_plain(info.max_qty)} (LOT_SIZE).",
                filter="LOT_SIZE",
                client_order_id=coid,
            )
        return qty

    async def market_buy(
        self,
        symbol: Symbol,
        client_order_id: str,
        *,
        quote_amount: Decimal | None = None,
        quantity: Decimal | None = None,
    ) -> Execution:
        """MARKET BUY spending `quote_amount` (`quoteOrderQty`, rounded down to the quote precision)
        or buying `quantity` (rounded down to the lot step)."""
        info = await self._symbol_info(symbol.symbol)
        params: dict[str, Any] = {"symbol": info.symbol, "side": "BUY", "type": "MARKET"}
        what = f"Buy {client_order_id}"
        if quote_amount is not None:
            quote = ch.round_down_to_step(quote_amount, info.quote_step)
            if quote <= 0 or quote < info.filters.min_notional:
                raise BinanceFilterFailure(
                    f"{what}: order value {_plain(quote)} is below the exchange's minimum "
                    f"{_plain(info.filters.min_notional)} (MIN_NOTIONAL).",
                    filter="MIN_NOTIONAL",
                    client_order_id=client_order_id,
                )
            params["quoteOrderQty"] = _plain(quote)
        elif quantity is not None:
            params["quantity"] = _plain(self._lot(info, quantity, what, client_order_id))
        else:
            raise ValueError("market_buy needs quote_amount or quantity")
        return await self._place(info, client_order_id, params)

    async def market_sell(self, symbol: Symbol, client_order_id: str, quantity: Decimal) -> Execution:
        """MARKET SELL of `quantity` rounded down to the lot step (only `acceptLoss` sells, rule 8)."""
        info = await self._symbol_info(symbol.symbol)
        qty = self._lot(info, quantity, f"Sell {client_order_id}", client_order_id)
        params = {"symbol": info.symbol, "side": "SELL", "type": "MARKET", "quantity": _plain(qty)}
        return await self._place(info, client_order_id, params)

    async def limit_sell(
        self,
        symbol: Symbol,
        client_order_id: str,
        quantity: Decimal,
        price: Decimal,
        time_in_force: TimeInForce,
    ) -> Execution:
        """LIMIT SELL: IOC for system sells (rule 4), GTC resting for scheduled sells (rule 6). The
        price is rounded *up* to the tick (never below the floor, rule 9), the quantity down to the
        step. A resting order is watched: its later fills come through `order_updates()`."""
        info = await self._symbol_info(symbol.symbol)
        what = f"Sell {client_order_id}"
        qty = self._lot(info, quantity, what, client_order_id)
        limit = ch.round_up_to_step(price, info.filters.tick_size)
        try:
            ch.check_order_filters(qty, limit, info.filters, what)
        except FilterFailure as e:
            raise self._filter_failure(e, client_order_id) from e
        if limit < info.min_price or (info.max_price > 0 and limit > info.max_price):
            raise BinanceFilterFailure(
                f"{what}: price {_plain(limit)} is outside the exchange's range (PRICE_FILTER).",
                filter="PRICE_FILTER",
                client_order_id=client_order_id,
            )
        params = {
            "symbol": info.symbol,
            "side": "SELL",
            "type": "LIMIT",
            "timeInForce": time_in_force.value,
            "quantity": _plain(qty),
            "price": _plain(limit),
        }
        return await self._place(info, client_order_id, params)

    async def _place(self, info: BinanceSymbolInfo, coid: str, params: dict[str, Any]) -> Execution:
        """Send an order exactly once (see the module docstring)."""
        params = {**params, "newClientOrderId": coid, "newOrderRespType": "FULL"}
        if coid in self._sent or self.config.query_before_send:
            # Binance accepts a client order id again once its order is no longer open, so a
            # caller's retry must not be sent blindly: the first order is the outcome.
            existing = await self._query(info, coid)
            if existing is not None:
                log.info("Order %s was already placed: returning it instead of sending it again.", coid)
                return self._track(info, existing)
        self._sent[coid] = None
        while len(self._sent) > 10_000:
            self._sent.popitem(last=False)
        attempts = 0
        while True:
            attempts += 1
            cause: BaseException
            try:
                response = await self._call("create_order", **params)
            except BinanceAPIException as e:
                if e.code == -2010 and "duplicate" in (e.message or "").lower():
                    existing = await self._query(info, coid)
                    if existing is not None:
                        log.info("Order %s already exists on Binance: returning it.", coid)
                        return self._track(info, existing)
                    raise self._map_error(e, client_order_id=coid) from e
                if not (e.status_code >= 500 or e.code in UNKNOWN_OUTCOME_CODES):
                    raise self._map_error(e, client_order_id=coid) from e
                cause = e
            except TRANSPORT_ERRORS as e:
                cause = e
            else:
                self._remember_fills(coid, response.get("fills") or [])
                return self._track(info, await self._execution(info, response, response.get("fills")))
            self.unknown_outcomes += 1
            log.warning(
                "Order %s: outcome unknown (%s); asking Binance for it before sending anything again.",
                coid,
                _describe(cause),
            )
            found = await self._settle_unknown(info, coid, cause)
            if found is not None:
                return self._track(info, found)
            if attempts >= self.config.max_send_attempts:
                raise BinanceUnavailable(
                    f"Order {coid} was not placed (Binance did not take it within its recvWindow); "
                    "it is safe to send it again with the same client order id.",
                    client_order_id=coid,
                ) from cause
            log.warning("Order %s was never placed (absent after its recvWindow): sending it again.", coid)

    async def _settle_unknown(self, info: BinanceSymbolInfo, coid: str, cause: BaseException) -> Execution | None:
        """Ask for the order until it shows up, or until its request is too old to be accepted
        (timestamp + recvWindow: Binance refuses it after that), which proves it was never placed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.recv_window_ms / 1000 + self.config.unknown_grace
        give_up = deadline + self.config.unknown_give_up
        while True:
            try:
                found = await self._query(info, coid)
            except TemporaryExchangeError as e:
                if loop.time() >= give_up:
                    raise OrderStateUnknown(
                        f"Order {coid} may have been placed and Binance cannot be asked ({e.message}); "
                        "its state is unknown until reconciliation.",
                        client_order_id=coid,
                    ) from cause
                await asyncio.sleep(self.config.unknown_query_interval)
                continue
            if found is not None:
                return found
            if loop.time() >= deadline:
                return None
            await asyncio.sleep(min(self.config.unknown_query_interval, max(deadline - loop.time(), 0.0)))

    async def _query(self, info: BinanceSymbolInfo, coid: str) -> Execution | None:
        try:
            data = await self._call("get_order", symbol=info.symbol, origClientOrderId=coid)
        except BinanceAPIException as e:
            if e.code == -2013:  # Order does not exist.
                return None
            raise self._map_error(e, client_order_id=coid) from e
        except TRANSPORT_ERRORS as e:
            raise BinanceUnavailable(f"Binance did not answer a query of {coid} ({_describe(e)}).") from e
        return await self._execution(info, data, None)

    async def get_order(self, symbol: Symbol, client_order_id: str) -> Execution | None:
        """The order by its client order id (fills from `myTrades`), None when Binance has none."""
        return await self._query(await self._symbol_info(symbol.symbol), client_order_id)

    async def cancel_order(self, symbol: Symbol, client_order_id: str) -> Execution | None:
        """Cancel by client order id. An order already gone (-2011: filled, expired, cancelled) is
        not an error: its final state is returned; None when Binance never had it."""
        info = await self._symbol_info(symbol.symbol)
        try:
            data = await self._call("cancel_order", symbol=info.symbol, origClientOrderId=client_order_id)
        except BinanceAPIException as e:
            if e.code == -2011:
                execution = await self._query(info, client_order_id)
            elif e.status_code >= 500 or e.code in UNKNOWN_OUTCOME_CODES:
                execution = await self._cancel_outcome(info, client_order_id, e)
            else:
                raise self._map_error(e, client_order_id=client_order_id) from e
        except TRANSPORT_ERRORS as e:
            execution = await self._cancel_outcome(info, client_order_id, e)
        else:
            execution = await self._execution(info, data, None)
        if execution is not None and execution.status in TERMINAL:
            # The caller has the final state: the stream's report of it is not emitted again.
            self._watched.pop(client_order_id, None)
        return execution

    async def _cancel_outcome(self, info: BinanceSymbolInfo, coid: str, cause: BaseException) -> Execution | None:
        execution = await self._query(info, coid)
        if execution is not None and execution.status in RESTING:
            raise BinanceUnavailable(
                f"The cancel of {coid} got no answer ({_describe(cause)}) and the order is still open.",
                client_order_id=coid,
            ) from cause
        return execution

    # ------------------------------------------------------------ executions

    async def _execution(
        self, info: BinanceSymbolInfo, data: Mapping[str, Any], fills: Iterable[Mapping[str, Any]] | None
    ) -> Execution:
        """An order (create, query, cancel response or a report turned into that shape) with its
        fills aggregated. Without the fills (query, cancel), they come from `myTrades`."""
        executed = Decimal(str(data["executedQty"]))
        quote = Decimal(str(data["cummulativeQuoteQty"]))
        side = Side.BUY if data["side"] == "BUY" else Side.SELL
        fill_list = list(fills) if fills is not None else []
        if fills is None and executed > 0:
            trades = await self._read("get_my_trades", symbol=info.symbol, orderId=data["orderId"])
            fill_list = [
                {
                    "price": t["price"],
                    "qty": t["qty"],
                    "commission": t["commission"],
                    "commissionAsset": t["commissionAsset"],
                    "tradeId": t["id"],
                    "time": t["time"],
                }
                for t in trades
            ]
        times = [int(f["time"]) for f in fill_list if "time" in f]
        at_ms = max(times) if times else data.get("transactTime") or data.get("updateTime") or data.get("time")
        executed_at = _utc(at_ms)
        fee, fee_asset, fee_price = await self._fees(info, side, fill_list, executed, quote, executed_at)
        return Execution(
            client_order_id=str(data.get("origClientOrderId") or data["clientOrderId"]),
            exchange_order_id=str(data["orderId"]),
            status=STATUSES.get(str(data["status"]), OrderStatus.UNKNOWN),
            side=side,
            executed_quantity=executed,
            quote_quantity=quote,
            fee=fee,
            fee_asset=fee_asset,
            executed_at=executed_at,
            fee_asset_price_in_quote=fee_price,
        )

    async def _fees(
        self,
        info: BinanceSymbolInfo,
        side: Side,
        fills: list[Mapping[str, Any]],
        executed: Decimal,
        quote: Decimal,
        at: datetime,
    ) -> tuple[Decimal, str, Decimal | None]:
        """Total commission and its asset. Binance takes it in one asset per fill; when an order's
        fills used several (BNB ran out mid-order), the others are valued in the main one: the base
        asset if any fill paid in it (it reduces the quantity, rule 9), else the quote, else BNB."""
        by_asset: dict[str, Decimal] = defaultdict(Decimal)
        for f in fills:
            by_asset[str(f["commissionAsset"])] += Decimal(str(f["commission"]))
        by_asset = {a: v for a, v in by_asset.items() if v}
        default = info.base_asset if side is Side.BUY else info.quote_asset
        if not by_asset:
            return ZERO, default, None
        base, quote_asset = info.base_asset, info.quote_asset
        average = quote / executed if executed else ZERO
        prices: dict[str, Decimal] = {}

        async def in_quote(asset: str, amount: Decimal) -> Decimal:
            if asset == quote_asset:
                return amount
            if asset == base:
                return amount * average
            if asset not in prices:
                prices[asset] = await self._asset_price(asset, quote_asset, at)
            return amount * prices[asset]

        main = base if base in by_asset else quote_asset if quote_asset in by_asset else sorted(by_asset)[0]
        others = ZERO
        for asset, amount in by_asset.items():
            if asset != main:
                others += await in_quote(asset, amount)
        fee = by_asset[main]
        if others:
            if main == quote_asset:
                fee += others
            elif main == base:
                fee += others / average
            else:
                fee += others / (await in_quote(main, ch.ONE))
        fee_price = None
        if main not in (base, quote_asset):
            fee_price = await in_quote(main, ch.ONE)
        return fee, main, fee_price

    def _remember_fills(self, coid: str, fills: Iterable[Mapping[str, Any]]) -> None:
        known = self._fills.setdefault(coid, {})
        self._fills.move_to_end(coid)
        for f in fills:
            if "tradeId" in f:
                known[int(f["tradeId"])] = dict(f)
        while len(self._fills) > 2000:
            self._fills.popitem(last=False)

    def _track(self, info: BinanceSymbolInfo, execution: Execution) -> Execution:
        """A resting order is watched for later fills (stream, or polling)."""
        if execution.status in RESTING:
            self._watched[execution.client_order_id] = _Watched(
                info.symbol, (execution.status, execution.executed_quantity)
            )
            early = self._early.pop(execution.client_order_id, None)
            if early is not None:  # its report arrived before our response: handle it now
                self._spawn(self._safely(self._on_user_event(early)))
        return execution

    # ------------------------------------------------------------ order updates

    def watch(self, symbol: Symbol | str, client_order_id: str) -> None:
        """Follow an order placed earlier (e.g. before a restart); its current state is emitted by
        `order_updates()` at the next poll, then every change."""
        name = symbol if isinstance(symbol, str) else symbol.symbol
        self._watched[client_order_id] = _Watched(name, None)
        self._stream_changed.set()

    @property
    def watched_orders(self) -> list[str]:
        return list(self._watched)

    @property
    def stream_connected(self) -> bool:
        return self._stream_up.is_set()

    async def wait_for_user_stream(self, within: float) -> bool:
        """True once the user data stream is subscribed (False if not within `within` seconds)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stream_up.wait(), within)
        return self._stream_up.is_set()

    async def order_updates(self) -> AsyncIterator[Execution]:
        """Cumulative states of watched (resting) orders as they advance: a fill, a partial fill, a
        cancel or an expiry, each once. For one consumer (the live loop); updates wait in a queue
        until it reads them. An order's terminal state ends its watch."""
        while True:
            yield await self._updates.get()

    def _emit(self, execution: Execution, source: str) -> None:
        watched = self._watched.get(execution.client_order_id)
        if watched is None:
            return
        state = (execution.status, execution.executed_quantity)
        if watched.last is not None:
            status, executed = watched.last
            advanced = execution.executed_quantity > executed or (
                execution.executed_quantity == executed and execution.status != status and status not in TERMINAL
            )
            if not advanced:
                return
        watched.last = state
        if source == "stream":
            self.updates_from_stream += 1
        else:
            self.updates_from_polling += 1
        log.info(
            "Order %s %s: %s executed (%s).", execution.client_order_id, execution.status.value,
            _plain(execution.executed_quantity), source,
        )  # fmt: skip
        self._updates.put_nowait(execution)
        if execution.status in TERMINAL:
            self._watched.pop(execution.client_order_id, None)

    def _is_news(self, coid: str, status: OrderStatus, executed: Decimal) -> bool:
        watched = self._watched.get(coid)
        if watched is None:
            return False
        if watched.last is None:
            return True
        last_status, last_executed = watched.last
        return executed > last_executed or (executed == last_executed and status != last_status)

    async def _on_user_event(self, event: Mapping[str, Any]) -> None:
        """user-data-stream.md "Order Update": `executionReport` (c: client order id, or the
        cancel's own id with C the original; X: status; z: cumulative quantity; Z: cumulative quote;
        l, L, n, N, t: the last fill)."""
        if event.get("e") != "executionReport":
            return
        coid = str(event.get("C") or event["c"]) if event.get("x") == "CANCELED" else str(event["c"])
        if event.get("x") == "TRADE":
            self._remember_fills(
                coid,
                [
                    {
                        "price": event["L"],
                        "qty": event["l"],
                        "commission": event["n"],
                        "commissionAsset": event["N"],
                        "tradeId": event["t"],
                        "time": event["T"],
                    }
                ],
            )
        if coid not in self._watched:
            self._early[coid] = dict(event)
            while len(self._early) > 500:
                self._early.popitem(last=False)
            return
        status = STATUSES.get(str(event["X"]), OrderStatus.UNKNOWN)
        executed = Decimal(str(event["z"]))
        if not self._is_news(coid, status, executed):
            return  # a duplicate, or older than what the caller knows
        info = await self._symbol_info(str(event["s"]))
        fills = list(self._fills.get(coid, {}).values())
        complete = sum((Decimal(str(f["qty"])) for f in fills), ZERO) == executed
        data = {
            "clientOrderId": coid,
            "orderId": event["i"],
            "status": event["X"],
            "side": event["S"],
            "executedQty": event["z"],
            "cummulativeQuoteQty": event["Z"],
            "updateTime": event.get("T") or event.get("E"),
        }
        execution = await self._execution(info, data, fills if complete else None)
        self._emit(execution, "stream")

    async def _poll_watched(self) -> None:
        """Fallback: the open orders of each watched symbol; an order that changed or left the list
        is queried for its state."""
        async with self._poll_lock:
            by_symbol: dict[str, list[str]] = defaultdict(list)
            for coid, watched in list(self._watched.items()):
                by_symbol[watched.symbol].append(coid)
            for name, coids in by_symbol.items():
                info = await self._symbol_info(name)
                open_orders = {o["clientOrderId"]: o for o in await self._read("get_open_orders", symbol=name)}
                for coid in coids:
                    data = open_orders.get(coid)
                    if data is not None:
                        status = STATUSES.get(str(data["status"]), OrderStatus.UNKNOWN)
                        if not self._is_news(coid, status, Decimal(str(data["executedQty"]))):
                            continue
                        execution: Execution | None = await self._execution(info, data, None)
                    else:
                        execution = await self._query(info, coid)
                    if execution is None:
                        log.warning("Watched order %s is unknown to Binance: no longer watched.", coid)
                        self._watched.pop(coid, None)
                        continue
                    self._emit(execution, "polling")

    async def _run_poller(self) -> None:
        while not self._closing:
            interval = self.config.safety_poll_interval if self.stream_connected else self.config.poll_interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stream_changed.wait(), interval)
            self._stream_changed.clear()
            if not self._watched:
                continue
            try:
                await self._poll_watched()
            except ExchangeError as e:
                log.warning("Polling open orders failed: %s", e.message)

    def _set_stream(self, up: bool) -> None:
        if up == self._stream_up.is_set():
            return
        if self._closing:
            self._stream_up.clear()
            return
        if up:
            self._stream_up.set()
            log.info("Binance user data stream subscribed.")
        else:
            self._stream_up.clear()
            log.warning("Binance user data stream down: polling open orders every %s s.", self.config.poll_interval)
        self._stream_changed.set()

    def _ws_alive(self, subscribed_on: Any) -> bool:
        ws_api = self._require_client().ws_api
        return ws_api.ws is subscribed_on and subscribed_on is not None and subscribed_on.state is State.OPEN

    async def _wait_for_ws_api(self) -> None:
        """Let python-binance finish its own reconnect of the WebSocket API (two connects at once
        would race); when its read loop has given up, our subscribe reconnects."""
        ws_api = self._require_client().ws_api
        # python-binance offers no event for this: poll its state.
        while ws_api.ws_state == WSListenerState.RECONNECTING and getattr(ws_api, "_handle_read_loop", None):  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    async def _run_user_stream(self) -> None:
        """Subscribe (`userDataStream.subscribe.signature` on the WebSocket API), read reports, and
        re-subscribe after a drop; while down, the poller covers the watched orders."""
        assert self._sockets is not None
        socket = self._user_socket = self._sockets.user_socket()
        failures = 0
        try:
            while not self._closing:
                receive: asyncio.Future[Any] | None = None
                try:
                    await self._wait_for_ws_api()
                    await socket.connect()
                    subscribed_on = self._require_client().ws_api.ws
                    failures = 0
                    self._set_stream(True)
                    if self._watched:
                        await self._safely(self._poll_watched())  # what happened while it was down
                    receive = asyncio.ensure_future(socket.recv())
                    while True:
                        done, _ = await asyncio.wait({receive}, timeout=self.config.stream_health_interval)
                        if not done:
                            if not self._ws_alive(subscribed_on):
                                raise _StreamDropped("the connection is gone")
                            continue
                        event = receive.result()
                        receive = asyncio.ensure_future(socket.recv())
                        if event.get("e") == "error":
                            if self._ws_alive(subscribed_on):
                                continue  # reported by the connection before this subscription
                            raise _StreamDropped(str(event.get("m") or event.get("type")))
                        await self._safely(self._on_user_event(event))
                except asyncio.CancelledError:
                    raise
                except (_StreamDropped, BinanceWebsocketUnableToConnect, ExchangeError, OSError) as e:
                    self._stream_failed(e)
                except BinanceAPIException as e:
                    if e.code == -1021:
                        with contextlib.suppress(*TRANSPORT_ERRORS, BinanceAPIException):
                            await self._sync_time()
                    self._stream_failed(e)
                except Exception as e:  # python-binance raises plain exceptions from its socket layer
                    self._stream_failed(e)
                finally:
                    if receive is not None:
                        receive.cancel()
                if not self._closing:
                    # Back off while it keeps failing (refused keys, Binance unreachable): up to a minute.
                    failures += 1
                    await asyncio.sleep(min(self.config.resubscribe_interval * 2 ** (failures - 1), 60.0))
        finally:
            self._set_stream(False)

    async def _safely(self, work: Awaitable[None]) -> None:
        """Stream and poll work whose failure must not stop the stream: the poller retries it."""
        try:
            await work
        except ExchangeError as e:
            log.warning("Binance order update not processed (%s); polling will catch up.", e.message)

    def _stream_failed(self, error: BaseException) -> None:
        if self.stream_connected:
            log.warning("Binance user data stream lost: %s", _describe(error))
        else:
            log.debug("Binance user data stream not subscribed: %s", _describe(error))
        self._set_stream(False)
