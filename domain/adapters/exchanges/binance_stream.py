"""The user data stream of the Binance adapter: order reports of watched orders and the account's
balances (user-data-stream.md), with polling as the fallback.

Subscription. python-binance 1.0.37 subscribes on the WebSocket API with
`userDataStream.subscribe.signature`. Binance allows one subscription per account and connection
(web-socket-api.md "User Data Stream subscription"; a second one is refused with -2035
SUBSCRIPTION_ACTIVE), so the subscription is made again only when the old one is gone: the
connection dropped (python-binance reconnects it), or Binance ended it (`eventStreamTerminated`,
user-data-stream.md "Event Stream Terminated"). A -2035 means a subscription we lost track of is
still active on the connection (a subscribe whose answer timed out): the connection is closed and
the next subscribe happens on a new one. An event that fails to process is logged and skipped —
the poller catches up — and never ends the subscription.

Orders. `order_updates()` yields the cumulative state of each watched order whenever it advances,
once (duplicated stream messages and the stream/poll overlap are filtered out). While the stream is
down the open orders are polled (`poll_interval`; every `safety_poll_interval` while it is up). An
order whose outcome is unknown is watched for `unknown_watch` seconds even while Binance does not
list it: if the matching engine takes it late, its report still reaches the caller.

Balances (SPEC §4b). `BalanceCache` holds the account's free balances: loaded over REST, then kept
up to date by `outboundAccountPosition` (the balances an event changed: a fill, a cancel, a resting
order's lock) and `balanceUpdate` (deposits, withdrawals, transfers: a delta). It is read again over
REST when it may be stale: while the stream is down or after it resubscribed (events may have been
missed), after an order of ours was answered (its fill may be answered before the stream reports
it), after a -2010, and at least every `balance_max_age` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict, defaultdict
from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from binance.exceptions import BinanceAPIException, BinanceWebsocketUnableToConnect
from binance.ws.constants import WSListenerState
from websockets.protocol import State

from domain.adapters.exchanges.binance_api import (
    RESTING,
    STATUSES,
    SUBSCRIPTION_ACTIVE,
    TERMINAL,
    TRANSPORT_ERRORS,
    describe,
)
from domain.errors import ExchangeError
from domain.model import OrderStatus, Symbol
from domain.ports import Execution

if TYPE_CHECKING:
    from binance import AsyncClient, BinanceSocketManager

    from domain.adapters.exchanges.binance_api import BinanceConfig, BinanceSymbolInfo

log = logging.getLogger("criptoren.binance")

ZERO = Decimal(0)


class _StreamDropped(Exception):
    pass


class _SubscriptionEnded(_StreamDropped):
    """Binance ended the subscription (`eventStreamTerminated`); the connection may live on."""


@dataclass
class _Watched:
    symbol: str
    last: tuple[OrderStatus, Decimal] | None  # last state the caller knows (returned or emitted)
    # An order whose outcome is unknown: followed until then (event loop time) even while absent.
    unknown_until: float | None = None


class BalanceCache:
    """Free balances by asset, with the exchange time of each value so that an older event never
    overwrites a newer value (REST `updateTime`, `outboundAccountPosition.u`, `balanceUpdate.T`)."""

    def __init__(self, max_age: float) -> None:
        self.max_age = max_age
        self.free: dict[str, Decimal] = {}
        self._times: dict[str, int] = {}
        self._base_time = 0  # the REST snapshot's time: assets it did not list held 0 then
        self._loaded_at = float("-inf")
        self._valid = False
        self.loads = 0

    def fresh(self, stream_up: bool) -> bool:
        return self._valid and stream_up and time.monotonic() - self._loaded_at < self.max_age

    def invalidate(self) -> None:
        self._valid = False

    def load(self, balances: Mapping[str, Decimal], at_ms: int) -> None:
        self.free = dict(balances)
        self._base_time = at_ms
        self._times = dict.fromkeys(balances, at_ms)
        self._loaded_at = time.monotonic()
        self._valid = True
        self.loads += 1

    def on_account_position(self, event: Mapping[str, Any]) -> None:
        """user-data-stream.md "Account Update": `outboundAccountPosition`, B[a, f, l] as of u."""
        at = int(event.get("u") or event.get("E") or 0)
        for row in event.get("B", []):
            asset = str(row["a"])
            if at >= self._times.get(asset, self._base_time):
                self.free[asset], self._times[asset] = Decimal(str(row["f"])), at
        log.debug("Balances from the user data stream: %s", self.free)

    def on_balance_update(self, event: Mapping[str, Any]) -> None:
        """user-data-stream.md "Balance Update": `balanceUpdate`, a delta `d` of asset `a` at `T`."""
        asset, at = str(event["a"]), int(event.get("T") or event.get("E") or 0)
        if at > self._times.get(asset, self._base_time):
            self.free[asset] = self.free.get(asset, ZERO) + Decimal(str(event["d"]))
            self._times[asset] = at


class UserStream:
    """The user data stream and order polling of `BinanceExchange` (a mixin: it uses the adapter's
    client, symbol filters and order decoding)."""

    config: BinanceConfig
    _sockets: BinanceSocketManager | None
    _closing: bool
    # Counters, for logs and tests.
    updates_from_stream: int
    updates_from_polling: int

    if TYPE_CHECKING:

        def _require_client(self) -> AsyncClient: ...
        async def _symbol_info(self, name: str) -> BinanceSymbolInfo: ...
        async def _read(self, method: str, **params: Any) -> Any: ...
        async def _sync_time(self) -> None: ...
        async def _query(self, info: BinanceSymbolInfo, coid: str) -> Execution | None: ...
        async def _execution(
            self, info: BinanceSymbolInfo, data: Mapping[str, Any], fills: Iterable[Mapping[str, Any]] | None
        ) -> Execution: ...
        def _spawn(self, coro: Any) -> None: ...

    def _init_stream(self) -> None:
        self._watched: dict[str, _Watched] = {}
        self._fills: OrderedDict[str, dict[int, dict[str, Any]]] = OrderedDict()  # coid -> tradeId -> fill
        self._early: OrderedDict[str, dict[str, Any]] = OrderedDict()  # reports of orders not yet watched
        self._updates: asyncio.Queue[Execution] = asyncio.Queue()
        self._poll_lock = asyncio.Lock()
        self._stream_changed = asyncio.Event()
        self._stream_up = asyncio.Event()
        self._user_socket: Any = None
        self.balance_cache = BalanceCache(self.config.balance_max_age)
        self.updates_from_stream = 0
        self.updates_from_polling = 0
        self.subscriptions = 0  # subscribe requests that succeeded

    # ------------------------------------------------------------ watched orders

    def watch(self, symbol: Symbol | str, client_order_id: str) -> None:
        """Follow an order placed earlier (e.g. before a restart); its current state is emitted by
        `order_updates()` at the next poll, then every change."""
        name = symbol if isinstance(symbol, str) else symbol.symbol
        self._watched[client_order_id] = _Watched(name, None)
        self._stream_changed.set()

    def _watch_unknown(self, symbol: str, client_order_id: str) -> None:
        """Follow an order whose outcome is unknown: its report is emitted if it appears late."""
        until = asyncio.get_running_loop().time() + self.config.unknown_watch
        self._watched[client_order_id] = _Watched(symbol, None, unknown_until=until)
        self._stream_changed.set()
        early = self._early.pop(client_order_id, None)
        if early is not None:
            self._spawn(self._safely(self._on_user_event(early)))

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
        else:
            self._watched.pop(execution.client_order_id, None)
        return execution

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
        watched.last, watched.unknown_until = state, None
        if source == "stream":
            self.updates_from_stream += 1
        else:
            self.updates_from_polling += 1
        log.info(
            "Order %s %s: %s executed (%s).", execution.client_order_id, execution.status.value,
            format(execution.executed_quantity.normalize(), "f"), source,
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

    # ------------------------------------------------------------ events

    async def _on_user_event(self, event: Mapping[str, Any]) -> None:
        kind = event.get("e")
        if kind == "outboundAccountPosition":
            self.balance_cache.on_account_position(event)
        elif kind == "balanceUpdate":
            self.balance_cache.on_balance_update(event)
        elif kind == "executionReport":
            await self._on_execution_report(event)

    async def _on_execution_report(self, event: Mapping[str, Any]) -> None:
        """user-data-stream.md "Order Update": `executionReport` (c: client order id, or the
        cancel's own id with C the original; X: status; z: cumulative quantity; Z: cumulative quote;
        l, L, n, N, t: the last fill — an order that fills at several prices reports each fill)."""
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

    # ------------------------------------------------------------ polling

    async def _poll_watched(self) -> None:
        """Fallback: the open orders of each watched symbol; an order that changed or left the list
        is queried for its state."""
        async with self._poll_lock:
            by_symbol: dict[str, list[str]] = defaultdict(list)
            for coid, entry in list(self._watched.items()):
                by_symbol[entry.symbol].append(coid)
            now = asyncio.get_running_loop().time()
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
                        watched = self._watched.get(coid)
                        if watched is not None and watched.unknown_until is not None and now < watched.unknown_until:
                            continue  # its outcome is unknown: it may still appear
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

    # ------------------------------------------------------------ the subscription

    def _set_stream(self, up: bool) -> None:
        if up == self._stream_up.is_set():
            return
        self.balance_cache.invalidate()  # events may have been missed (or will be, while it is down)
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

    async def _subscribe(self, socket: Any) -> Any:
        """`userDataStream.subscribe.signature` (python-binance's `user_socket().connect()`); returns
        the connection it holds on. -2035: a subscription of ours is still active on this connection
        (one per account and connection), so the connection is closed first — its subscriptions end
        with it — and the subscribe made on the new one."""
        ws_api = self._require_client().ws_api
        try:
            await socket.connect()
        except BinanceAPIException as e:
            if e.code != SUBSCRIPTION_ACTIVE:
                raise
            log.warning("Binance user data stream: a subscription is still active (-2035): reconnecting first.")
            await self._reconnect_ws_api()
            await socket.connect()
        self.subscriptions += 1
        return ws_api.ws

    async def _reconnect_ws_api(self) -> None:
        """Close the WebSocket API connection. python-binance's read loop, if it runs, connects again
        (waited for, up to `ws_timeout`); else its next request connects."""
        ws_api = self._require_client().ws_api
        old = ws_api.ws
        reader = getattr(ws_api, "_handle_read_loop", None)
        if old is not None:
            with contextlib.suppress(Exception):
                await old.close()
        if old is None or not reader:
            ws_api.ws = None
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(self.config.ws_timeout, 1.0)
        while ws_api.ws is old and loop.time() < deadline and not self._closing:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        if ws_api.ws is old:
            ws_api.ws = None
        await self._wait_for_ws_api()

    async def _run_user_stream(self) -> None:
        """Subscribe, read events, and subscribe again once the subscription is gone; while it is
        down, the poller covers the watched orders."""
        assert self._sockets is not None
        socket = self._user_socket = self._sockets.user_socket()
        failures = 0
        try:
            while not self._closing:
                receive: asyncio.Future[Any] | None = None
                try:
                    await self._wait_for_ws_api()
                    subscribed_on = await self._subscribe(socket)
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
                        if event.get("e") == "eventStreamTerminated":
                            raise _SubscriptionEnded("Binance ended the subscription (eventStreamTerminated)")
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
        """Stream and poll work whose failure must not stop the stream (nor make it subscribe
        again on the same connection): logged, and the poller catches up."""
        try:
            await work
        except ExchangeError as e:
            log.warning("Binance order update not processed (%s); polling will catch up.", e.message)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("Binance user data event not processed; polling will catch up.")
            self.balance_cache.invalidate()
            self._stream_changed.set()

    def _stream_failed(self, error: BaseException) -> None:
        if self.stream_connected:
            log.warning("Binance user data stream lost: %s", describe(error))
        else:
            log.debug("Binance user data stream not subscribed: %s", describe(error))
        self._set_stream(False)
