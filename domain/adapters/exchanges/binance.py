"""The Binance spot adapter of the `Exchange` port (SPEC §2, issue 4), on python-binance's
`AsyncClient` (unpatched; pointed at another host by subclassing, SPEC §8). Its request gates are in
`binance_gate`, its user data stream in `binance_stream`, its errors in `binance_api`.

Same contract as the paper exchange — `market_buy`, `market_sell`, `limit_sell`, `cancel_order`,
`get_order` return an `Execution` with the fills aggregated (gross quantities, the real commission
and its asset; a commission in a third asset such as BNB carries that asset's price in the quote
asset at the fill) — plus what a real exchange needs:

Checked before sending (SPEC §4 rule 11, §4b; Binance's filters.md, with `domain.filters`): LOT_SIZE
and PRICE_FILTER (steps as `value % step == 0`), NOTIONAL (its minimum and maximum; for a MARKET
order against the average price, as `applyMinToMarket` / `applyMaxToMarket` say), MARKET_LOT_SIZE
(MARKET sells and buys; a quote buy over its maxQty is refused, not split), PERCENT_PRICE_BY_SIDE
(limit prices against `GET /api/v3/avgPrice`), MAX_NUM_ORDERS (open orders on the symbol) and the
account's free balance of the asset the order spends (`free_balance`, a cache fed by the user data
stream). What can never pass raises `BinanceFilterFailure`; what may pass later
(PERCENT_PRICE_BY_SIDE, MAX_NUM_ORDERS) raises `OrderNotAllowedNow`; a balance too small raises
`BinanceInsufficientBalance` — nothing is sent in any of these cases.

At most once. Every order carries the caller's deterministic `newClientOrderId` and is sent once.
When the outcome of a create is unknown (a timeout, a lost connection, a 5xx or an "execution status
unknown" code: rest-api.md "HTTP Return Codes", errors.md -1006/-1007), the adapter asks Binance for
the order by that id for recvWindow + `unknown_grace` and returns it if it shows up. If it does not,
it is *not* sent again: the request may still be inside the matching engine — the recvWindow checks
do "not cover potential delays inside the Matching Engine itself" (CHANGELOG) — and a MARKET order
that fills late frees its client order id, so a resend would trade twice. `OrderStateUnknown` is
raised instead, the order is watched for `unknown_watch` seconds (a late report reaches
`order_updates()`), and reconciliation settles it. A `-2010 Duplicate order sent.` means our own
earlier send is open under that id: that order is the outcome. A caller repeating an id this process
already sent gets the first order back (Binance itself accepts an id again once its order is
closed); after a crash, the reconciliation job asks `get_order` first (or set `query_before_send`).

Errors (errors.md) become the domain's: -1013 / -1111 -> `BinanceFilterFailure` (the cached filters
are refreshed), or `OrderNotAllowedNow` for the filters that may pass later; -2010 insufficient
balance -> `BinanceInsufficientBalance`; -1022 / -2014 / -2015 -> `BinanceAuthError`; -2011 on cancel
-> the order is already gone, its final state is returned; -2013 on a query -> None; -1021 -> the
clock offset is resynchronised from `/api/v3/time` and the request sent once more; 5xx and the 10xx
server codes -> `TemporaryExchangeError` (for an order: the unknown-outcome path above).

Rate limits (rest-api.md "LIMITS"). All requests pass one `RequestGate` — Binance counts per IP, so
the adapters of a process should share it. A 429 or 418 closes it for everyone until `Retry-After`
has passed; the refused request (it was not executed) then goes out again, so nothing is lost —
unless the wait is longer than `max_rate_limit_wait` (an IP ban), when `BinanceRateLimited` is
raised. The gate also counts request weight against the REQUEST_WEIGHT limit of exchangeInfo,
corrected by each response's `X-MBX-USED-WEIGHT-1M`. A 429 -1015 ("Too many new orders", the
account's unfilled order count) holds back this account's new orders only (`OrderGate`).

Commission (faqs/commission_faq.md). `fee_rate(symbol)` is what a taker sell pays, rule 3's `f`:
the standard, tax and special commissions of `GET /api/v3/account/commission`, each taker + seller
(the account's `commissionRates` taker + seller until a symbol's are loaded).

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
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import aiohttp
from binance import AsyncClient, BinanceSocketManager
from binance.exceptions import BinanceAPIException
from binance.ws.constants import WSListenerState

from domain import channel as ch
from domain import filters as flt
from domain.adapters.exchanges.binance_api import (
    AUTH_CODES,
    FILTER_CODES,
    RESTING,
    RETRYABLE_FILTERS,
    STATUSES,
    TERMINAL,
    TOO_MANY_ORDERS,
    TRANSPORT_ERRORS,
    UNKNOWN_OUTCOME_CODES,
    BinanceAuthError,
    BinanceConfig,
    BinanceFilterFailure,
    BinanceInsufficientBalance,
    BinanceRateLimited,
    BinanceRejected,
    BinanceSymbolInfo,
    BinanceUnavailable,
    OrderStateUnknown,
    client_class,
    describe,
    parse_symbol_info,
    retry_after,
    socket_manager_class,
)
from domain.adapters.exchanges.binance_gate import WEIGHTS, OrderGate, RequestGate
from domain.adapters.exchanges.binance_stream import UserStream
from domain.adapters.ops import metrics
from domain.errors import ExchangeError, FilterFailure, OrderNotAllowedNow, TemporaryExchangeError
from domain.model import OrderStatus, Side, Symbol, SymbolFilters, TimeInForce
from domain.ports import Execution

if TYPE_CHECKING:
    from domain.adapters.config import Settings

__all__ = [
    "BinanceAuthError",
    "BinanceConfig",
    "BinanceExchange",
    "BinanceFilterFailure",
    "BinanceInsufficientBalance",
    "BinanceRateLimited",
    "BinanceRejected",
    "BinanceSymbolInfo",
    "BinanceUnavailable",
    "OrderStateUnknown",
    "RequestGate",
    "client_class",
    "parse_symbol_info",
    "socket_manager_class",
]

log = logging.getLogger("criptoren.binance")

ZERO = Decimal(0)


def _plain(value: Decimal) -> str:
    """A Decimal as Binance reads it: no exponent, no trailing zeros."""
    return format(value.normalize(), "f")


def _utc(ms: int | str | None) -> datetime:
    if ms is None:
        return datetime.now(UTC)
    return datetime.fromtimestamp(int(ms) / 1000, UTC)


def _commission_rate(rates: Mapping[str, Any] | None, side: Side) -> Decimal:
    """faqs/commission_faq.md: a taker trade pays `taker + buyer` (on a buy) or `taker + seller`
    (on a sell) of each kind of commission."""
    if not rates:
        return ZERO
    other = "buyer" if side is Side.BUY else "seller"
    return Decimal(str(rates.get("taker", "0"))) + Decimal(str(rates.get(other, "0")))


# ---------------------------------------------------------------- the adapter


class BinanceExchange(UserStream):
    """The `Exchange` port on Binance spot. `await start()` before use, `await close()` after (or use
    `async with`). One instance per API key."""

    name = "binance"
    rests_limit_orders = True  # scheduled sells rest on the exchange as LIMIT GTC orders (rule 6)

    def __init__(self, config: BinanceConfig, gate: RequestGate | None = None) -> None:
        self.config = config
        self._client: AsyncClient | None = None
        self._sockets: BinanceSocketManager | None = None
        self._gate = gate or RequestGate(config)
        self._order_gate = OrderGate()
        self._fee_rate = config.fee_rate  # the account's, until a symbol's own are loaded
        self._symbol_fees: dict[str, Decimal] = {}
        self._fees_tried: dict[str, float] = {}
        self._symbols: dict[str, BinanceSymbolInfo] = {}
        self._filters_loaded_at = float("-inf")
        self._filters_lock = asyncio.Lock()
        self._averages: dict[str, tuple[float, Decimal]] = {}
        self._sent: OrderedDict[str, None] = OrderedDict()  # client order ids this process has sent
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._init_stream()
        # Counters, for logs and tests.
        self.rate_limit_hits = 0
        self.unknown_outcomes = 0

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
            raise BinanceUnavailable(f"Binance is not reachable: {describe(e)}") from e
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
        """One REST call through the gates. A 429/418 closes the IP gate for `Retry-After` and the
        call is sent again (a refused request was not executed); a 429 -1015 does the same for this
        account's new orders only; -1021 resyncs the clock and sends again, once. Anything else
        propagates as python-binance raised it."""
        client = self._require_client()
        resynced = False
        max_wait = self.config.max_rate_limit_wait
        while True:
            if method == "create_order":
                await self._order_gate.wait(max_wait)
            await self._gate.acquire(WEIGHTS.get(method, 1), max_wait)
            try:
                return await getattr(client, method)(**params)
            except BinanceAPIException as e:
                if e.status_code in (418, 429):
                    metrics.exchange_error(TOO_MANY_ORDERS if e.code == TOO_MANY_ORDERS else f"http_{e.status_code}")
                    wait = retry_after(e, self.config.default_retry_after)
                    self.rate_limit_hits += 1
                    if e.code == TOO_MANY_ORDERS:
                        # faqs/order_count_decrement.md: the account's unfilled order count; reads go on.
                        self._order_gate.pause_for(wait)
                        log.warning("Binance order count limit (-1015): new orders wait %.1f s.", wait)
                    else:
                        self._gate.pause_for(wait)
                        log.warning("Binance rate limit (HTTP %s): all requests wait %.1f s.", e.status_code, wait)
                    if wait > max_wait:
                        raise BinanceRateLimited(
                            f"Binance refused requests for {wait:.0f} s (HTTP {e.status_code}, code {e.code}).",
                            retry_after=round(wait),
                            http_status=e.status_code,
                            binance_code=e.code,
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
            raise BinanceUnavailable(f"Binance did not answer ({describe(e)}).", request=method) from e

    def _map_error(self, error: BinanceAPIException, **details: Any) -> ExchangeError:
        code = int(error.code or 0)
        metrics.exchange_error(code or f"http_{error.status_code}")
        message = error.message or ""
        details = {"binance_code": code, "http_status": error.status_code, **details}
        text = f"Binance refused the request: {message} (code {code})."
        if code in FILTER_CODES:
            retryable = next((f for f in RETRYABLE_FILTERS if message.endswith(f": {f}")), None)
            if retryable is not None:  # refused now, may pass later (errors.md "Filter failures")
                return OrderNotAllowedNow(text, filter=retryable, **details)
            self._filters_loaded_at = float("-inf")  # they may have changed: reload before the next order
            return BinanceFilterFailure(text, **details)
        if code == -2010 and "insufficient balance" in message.lower():
            self.balance_cache.invalidate()
            return BinanceInsufficientBalance(text, **details)
        if code in AUTH_CODES:
            return BinanceAuthError(text, **details)
        if error.status_code >= 500 or code in UNKNOWN_OUTCOME_CODES or code in (-1003, TOO_MANY_ORDERS, -1021):
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

    async def _order_info(self, name: str) -> BinanceSymbolInfo:
        """The symbol's filters, and its commission loaded (once) for the fee rate of what follows."""
        info = await self._symbol_info(name)
        if self.config.load_fee_rate and name not in self._symbol_fees:
            last = self._fees_tried.get(name)
            if last is None or time.monotonic() - last > self.config.filters_ttl:
                self._fees_tried[name] = time.monotonic()
                try:
                    await self.refresh_symbol_fee_rate(name)
                except ExchangeError as e:
                    log.warning("Commission of %s not read (%s): the account's is used.", name, e.message)
        return info

    async def symbol_filters(self, symbol: Symbol | str) -> SymbolFilters:
        """The exchange's current filters of a symbol (cached for `filters_ttl`, refreshed after a
        filter rejection)."""
        return (await self._symbol_info(symbol if isinstance(symbol, str) else symbol.symbol)).filters

    async def refresh_fee_rate(self) -> Decimal:
        """The account's commission on a taker sell: `commissionRates.taker + seller` (else the older
        `takerCommission + sellerCommission` in bips). Its balances come with it."""
        account = await self._read("get_account", omitZeroBalances="true")
        rates = account.get("commissionRates")
        if rates:
            self._fee_rate = _commission_rate(rates, Side.SELL)
        elif "takerCommission" in account:
            self._fee_rate = Decimal(int(account["takerCommission"]) + int(account.get("sellerCommission", 0))) / 10000
        self._load_balances(account)
        return self._fee_rate

    async def refresh_symbol_fee_rate(self, symbol: str) -> Decimal:
        """rest-api.md "Query Commission Rates" and faqs/commission_faq.md "How is the commission
        calculated?": a sell pays taker + seller of the standard, the tax and the special commission
        (rule 3's `f`). The BNB discount is left out: it applies only while BNB pays the fee."""
        answer = await self._read("v3_get_account_commission", symbol=symbol)
        rate = sum(
            (_commission_rate(answer.get(kind), Side.SELL) for kind in ("standardCommission", "taxCommission",
                                                                         "specialCommission")),
            ZERO,
        )  # fmt: skip
        self._symbol_fees[symbol] = rate
        return rate

    async def for_client(self, client_id: int) -> BinanceExchange:
        """One key, one account: `ExchangeRouter` holds one adapter per client's key."""
        return self

    def fee_rate(self, symbol: Symbol) -> Decimal:
        """Rule 3's `f`: what a taker sell of this symbol pays, every kind of commission included."""
        return self._symbol_fees.get(symbol.symbol, self._fee_rate)

    async def balances(self) -> dict[str, Decimal]:
        """Free balance of every asset the account holds, read now."""
        account = await self._read("get_account", omitZeroBalances="true")
        self._load_balances(account)
        return {b["asset"]: Decimal(b["free"]) for b in account.get("balances", [])}

    async def balance(self, asset: str) -> Decimal:
        """Free balance of one asset, read now (0 when the account holds none)."""
        return (await self.balances()).get(asset, ZERO)

    def _load_balances(self, account: Mapping[str, Any]) -> None:
        at = int(account.get("updateTime") or self._gate.server_time() * 1000)
        self.balance_cache.load({b["asset"]: Decimal(str(b["free"])) for b in account.get("balances", [])}, at)

    async def free_balance(self, asset: str) -> Decimal:
        """SPEC §4b: the free balance the cache holds, read again over REST first when it may be
        stale (see `binance_stream`)."""
        if not self.balance_cache.fresh(self.stream_connected):
            await self.balances()
        return self.balance_cache.free.get(asset, ZERO)

    async def current_price(self, symbol: Symbol) -> tuple[Decimal, datetime] | None:
        """The last trade price (`/api/v3/ticker/price`); a `PriceSource`."""
        data = await self._read("get_symbol_ticker", symbol=symbol.symbol)
        return Decimal(data["price"]), datetime.now(UTC)

    async def average_price(self, symbol: str) -> Decimal:
        """rest-api.md "Current average price" (`GET /api/v3/avgPrice`): the price PERCENT_PRICE_BY_SIDE
        and NOTIONAL judge orders by. Reused for `avg_price_ttl` seconds."""
        loop = asyncio.get_running_loop()
        cached = self._averages.get(symbol)
        if cached is not None and loop.time() - cached[0] < self.config.avg_price_ttl:
            return cached[1]
        price = Decimal(str((await self._read("get_avg_price", symbol=symbol))["price"]))
        self._averages[symbol] = (loop.time(), price)
        return price

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

    @contextlib.contextmanager
    def _before_sending(self, coid: str) -> Iterator[None]:
        """The filter checks of an order (`domain.filters`), as the adapter's errors; counted."""
        try:
            yield
        except FilterFailure as e:
            metrics.ORDERS_NOT_SENT.labels(str(e.details.get("filter", "FILTER"))).inc()
            details = {**e.details, "client_order_id": coid}
            if isinstance(e, OrderNotAllowedNow):
                raise OrderNotAllowedNow(e.message, **details) from e
            raise BinanceFilterFailure(e.message, **details) from e

    def _lot(self, info: BinanceSymbolInfo, quantity: Decimal, what: str) -> Decimal:
        """Rule 9: a quantity is rounded down to the lot step; LOT_SIZE's minimum and maximum."""
        f = info.filters
        qty = ch.round_down_to_step(quantity, f.step_size)
        if qty < f.min_qty or qty <= 0:
            raise FilterFailure(
                f"{what}: quantity {_plain(quantity)} is below the exchange's minimum {_plain(f.min_qty)} once "
                "rounded to the lot step (LOT_SIZE).",
                filter="LOT_SIZE",
            )
        if f.max_qty > 0 and qty > f.max_qty:
            raise FilterFailure(
                f"{what}: quantity {_plain(qty)} is above the exchange's maximum {_plain(f.max_qty)} (LOT_SIZE).",
                filter="LOT_SIZE",
            )
        return qty

    async def _average(self, symbol: str) -> Decimal | None:
        """The average price for a check; None when Binance cannot say now (it judges the order itself)."""
        try:
            return await self.average_price(symbol)
        except TemporaryExchangeError as e:
            log.warning("No average price of %s (%s): Binance checks the order itself.", symbol, e.message)
            return None

    def _known_open_orders(self, symbol: str) -> int:
        """Resting orders of this account on the symbol that the adapter follows."""
        return sum(1 for w in self._watched.values() if w.symbol == symbol and w.unknown_until is None)

    async def _open_orders(self, info: BinanceSymbolInfo) -> int:
        """rest-api.md "Current open orders": how many orders are open on the symbol (every order of
        the account counts for MAX_NUM_ORDERS, not only ours)."""
        if info.filters.max_num_orders <= 0:
            return 0
        try:
            return len(await self._read("get_open_orders", symbol=info.symbol))
        except TemporaryExchangeError:
            return self._known_open_orders(info.symbol)

    async def _check_balance(self, asset: str, needed: Decimal, coid: str, what: str) -> None:
        """SPEC §4b: the cached free balance of the asset the order spends must cover it; else
        nothing is sent (Binance would answer -2010). Without an answer about the balance, the order
        goes out and Binance judges it."""
        try:
            free = await self.free_balance(asset)
        except TemporaryExchangeError as e:
            log.warning("Balance of %s not read (%s): Binance checks the order itself.", asset, e.message)
            return
        if free < needed:
            metrics.ORDERS_NOT_SENT.labels("INSUFFICIENT_BALANCE").inc()
            raise BinanceInsufficientBalance(
                f"{what}: insufficient balance: it needs {_plain(needed)} {asset}, the account's free balance is "
                f"{_plain(free)} {asset}.",
                asset=asset,
                needed=_plain(needed),
                free=_plain(free),
                client_order_id=coid,
                before_sending=True,
            )

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
        info = await self._order_info(symbol.symbol)
        if (existing := await self._already_placed(info, client_order_id)) is not None:
            return existing
        f, what = info.filters, f"Buy {client_order_id}"
        params: dict[str, Any] = {"symbol": info.symbol, "side": "BUY", "type": "MARKET"}
        with self._before_sending(client_order_id):
            if quote_amount is not None:
                quote = ch.round_down_to_step(quote_amount, info.quote_step)
                flt.check_notional(quote, f, what, market=True)
                if quote <= 0:
                    raise FilterFailure(f"{what}: nothing to spend.", filter="MIN_NOTIONAL")
                if f.market_max_qty > 0 and (average := await self._average(info.symbol)) is not None:
                    flt.check_market_quote(quote, average, f, what)
                params["quoteOrderQty"], spends = _plain(quote), quote
            elif quantity is not None:
                qty = self._lot(info, quantity, what)
                flt.check_market_lot(qty, f, what)
                average = await self._average(info.symbol)
                if average is not None:
                    flt.check_notional(qty * average, f, what, market=True)
                params["quantity"], spends = _plain(qty), qty * (average or ZERO)
            else:
                raise ValueError("market_buy needs quote_amount or quantity")
            flt.check_open_orders(self._known_open_orders(info.symbol), f, info.symbol, what)
        await self._check_balance(info.quote_asset, spends, client_order_id, what)
        return await self._place(info, client_order_id, params)

    async def market_sell(self, symbol: Symbol, client_order_id: str, quantity: Decimal) -> Execution:
        """MARKET SELL of `quantity` rounded down to the lot step (only `acceptLoss` sells, rule 8)."""
        info = await self._order_info(symbol.symbol)
        if (existing := await self._already_placed(info, client_order_id)) is not None:
            return existing
        f, what = info.filters, f"Sell {client_order_id}"
        with self._before_sending(client_order_id):
            qty = self._lot(info, quantity, what)
            flt.check_market_lot(qty, f, what)
            if (average := await self._average(info.symbol)) is not None:
                flt.check_notional(qty * average, f, what, market=True)
            flt.check_open_orders(self._known_open_orders(info.symbol), f, info.symbol, what)
        await self._check_balance(info.base_asset, qty, client_order_id, what)
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
        step. A resting order is watched: its later fills come through `order_updates()`. A price
        below PERCENT_PRICE_BY_SIDE's range is raised to it (the sell fills at the bids all the same);
        one above it, or a symbol at MAX_NUM_ORDERS, raises `OrderNotAllowedNow` (nothing is sent)."""
        info = await self._order_info(symbol.symbol)
        if (existing := await self._already_placed(info, client_order_id)) is not None:
            return existing
        f, what = info.filters, f"Sell {client_order_id}"
        with self._before_sending(client_order_id):
            qty = self._lot(info, quantity, what)
            limit = ch.round_up_to_step(price, f.tick_size)
            ch.check_order_filters(qty, limit, f, what)
            flt.check_notional(qty * limit, f, what, market=False)
            if limit < info.min_price or (info.max_price > 0 and limit > info.max_price):
                raise FilterFailure(
                    f"{what}: price {_plain(limit)} is outside the exchange's range (PRICE_FILTER).",
                    filter="PRICE_FILTER",
                )
            if f.percent_price is not None and (average := await self._average(info.symbol)) is not None:
                limit = flt.raise_to_allowed_sell_price(limit, average, f)
                flt.check_percent_price(Side.SELL, limit, average, f, what)
            resting = time_in_force is TimeInForce.GTC
            open_orders = await self._open_orders(info) if resting else self._known_open_orders(info.symbol)
            flt.check_open_orders(open_orders, f, info.symbol, what)
        await self._check_balance(info.base_asset, qty, client_order_id, what)
        params = {
            "symbol": info.symbol,
            "side": "SELL",
            "type": "LIMIT",
            "timeInForce": time_in_force.value,
            "quantity": _plain(qty),
            "price": _plain(limit),
        }
        return await self._place(info, client_order_id, params)

    async def _already_placed(self, info: BinanceSymbolInfo, coid: str) -> Execution | None:
        """Binance accepts a client order id again once its order is no longer open, so a caller's
        retry must not be sent blindly: the first order is the outcome."""
        if coid in self._sent or self.config.query_before_send:
            existing = await self._query(info, coid)
            if existing is not None:
                log.info("Order %s was already placed: returning it instead of sending it again.", coid)
                return self._track(info, existing)
            watched = self._watched.get(coid)
            if watched is not None and watched.unknown_until is not None:
                raise OrderStateUnknown(
                    f"Order {coid} was sent and its outcome is still unknown: it is not sent again.",
                    client_order_id=coid,
                )
        return None

    async def _place(self, info: BinanceSymbolInfo, coid: str, params: dict[str, Any]) -> Execution:
        """Send an order once; an unknown outcome is asked for, never resent (module docstring)."""
        params = {**params, "newClientOrderId": coid, "newOrderRespType": "FULL"}
        self._sent[coid] = None
        while len(self._sent) > 10_000:
            self._sent.popitem(last=False)
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
            metrics.exchange_error(e.code or f"http_{e.status_code}")
            cause = e
        except TRANSPORT_ERRORS as e:
            metrics.exchange_error("transport")
            cause = e
        else:
            self.balance_cache.invalidate()  # the order spent or locked funds
            self._remember_fills(coid, response.get("fills") or [])
            return self._track(info, await self._execution(info, response, response.get("fills")))
        self.unknown_outcomes += 1
        self.balance_cache.invalidate()
        log.warning("Order %s: outcome unknown (%s); asking Binance for it, never resending.", coid, describe(cause))
        found = await self._settle_unknown(info, coid, cause)
        if found is not None:
            return self._track(info, found)
        self._watch_unknown(info.symbol, coid)
        raise OrderStateUnknown(
            f"Order {coid} got no outcome from Binance ({describe(cause)}) and Binance does not list it yet. Its "
            "execution status is unknown — the matching engine may still take it — so it is not sent again: "
            "it is followed, and reconciliation settles it.",
            client_order_id=coid,
        ) from cause

    async def _settle_unknown(self, info: BinanceSymbolInfo, coid: str, cause: BaseException) -> Execution | None:
        """Ask for the order until it shows up or its recvWindow (+ `unknown_grace`) has passed: most
        lost answers are found so. None if it has not shown up — which proves nothing (see above)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.recv_window_ms / 1000 + self.config.unknown_grace
        give_up = deadline + self.config.unknown_give_up
        while True:
            try:
                found = await self._query(info, coid)
            except TemporaryExchangeError as e:
                if loop.time() >= give_up:
                    self._watch_unknown(info.symbol, coid)
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
            raise BinanceUnavailable(f"Binance did not answer a query of {coid} ({describe(e)}).") from e
        return await self._execution(info, data, None)

    async def get_order(self, symbol: Symbol, client_order_id: str) -> Execution | None:
        """The order by its client order id (fills from `myTrades`), None when Binance has none."""
        return await self._query(await self._symbol_info(symbol.symbol), client_order_id)

    async def cancel_order(self, symbol: Symbol, client_order_id: str) -> Execution | None:
        """Cancel by client order id. An order already gone (-2011: filled, expired, cancelled) is
        not an error: its final state is returned; None when Binance never had it."""
        info = await self._symbol_info(symbol.symbol)
        self.balance_cache.invalidate()  # its funds are unlocked (or were sold)
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
                f"The cancel of {coid} got no answer ({describe(cause)}) and the order is still open.",
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
