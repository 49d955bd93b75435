"""The gates every REST request of the Binance adapter passes (rest-api.md "LIMITS").

`RequestGate` — per IP, so shared by the adapters of a process: request weight counted against
exchangeInfo's REQUEST_WEIGHT limit and corrected by each response's `X-MBX-USED-WEIGHT-1M`; a 429
or 418 closes it for everyone until `Retry-After` has passed ("IP Limits").

`OrderGate` — per account: new orders only. Binance counts unfilled orders per account ("Unfilled
Order Count", faqs/order_count_decrement.md) and answers a new order over the limit with 429
-1015 "Too many new orders" and `Retry-After`; reads go on meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from domain.adapters.exchanges.binance_api import BinanceRateLimited

if TYPE_CHECKING:
    from domain.adapters.exchanges.binance_api import BinanceConfig

log = logging.getLogger("criptoren.binance")

# Request weights (rest-api.md), per python-binance method: the gate counts them before sending.
WEIGHTS: dict[str, int] = {
    "create_order": 1,
    "get_order": 4,
    "cancel_order": 1,
    "get_open_orders": 6,
    "get_account": 20,
    "get_my_trades": 20,
    "get_exchange_info": 20,
    "get_avg_price": 2,
    "v3_get_account_commission": 20,
    "get_symbol_ticker": 2,
    "get_klines": 2,
    "get_server_time": 1,
    "ping": 1,
}


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


class OrderGate:
    """New orders of one account wait here after a -1015 (the order count limit) until its
    `Retry-After` has passed; the refused order was not placed, so it is then sent again."""

    def __init__(self) -> None:
        self.paused_until = 0.0
        self.pauses = 0

    def pause_for(self, seconds: float) -> None:
        until = asyncio.get_running_loop().time() + seconds
        if until > self.paused_until:
            self.paused_until = until
            self.pauses += 1

    async def wait(self, max_wait: float) -> None:
        loop = asyncio.get_running_loop()
        while (delay := self.paused_until - loop.time()) > 0:
            if delay > max_wait:
                raise BinanceRateLimited(
                    f"Binance refuses new orders of this account for {delay:.0f} s more (order count limit, -1015).",
                    retry_after=round(delay),
                    binance_code=-1015,
                )
            await asyncio.sleep(delay)
