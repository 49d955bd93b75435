"""Fills of resting orders (SPEC §4 rule 6 on Binance): the worker's consumer of order updates.

A scheduled sell rests on Binance as a LIMIT GTC order and fills whenever the market gets there.
The exchange reports it (the user data stream; polling while the stream is down), and
`OrderUpdatesWorker` applies each report through `services.apply_order_update`: under the order's
lock, only what is new — so a report that arrives twice, or after reconciliation already applied
it, or in several worker processes at once, is applied once.

It also tells each account which orders to follow: at start-up every open or partially filled
order (placed before a restart, or by the API process), then every `scan_seconds` the ones placed
since by other processes. A report of an order whose transaction has not committed yet (the fill
came back before the row) is retried for a few seconds; after that the reconciliation job
(workers/cron.py, every 30 s) settles it from the exchange.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from domain import services
from domain.adapters.bootstrap import App
from domain.errors import DomainError, ExchangeError
from domain.ports import Execution, OrderUpdates, OrderUpdateStream

log = logging.getLogger("criptoren.orders")

UNKNOWN_ORDER_RETRIES = (0.1, 0.25, 0.5, 1.0, 2.0)


def order_updates_of(app: App) -> AsyncIterator[Execution] | None:
    """The stream of order updates of the app's exchange, if its orders rest (Binance)."""
    exchange = app.exchange
    if isinstance(exchange, OrderUpdateStream):
        return exchange.order_updates()
    return None


class OrderUpdatesWorker:
    def __init__(self, app: App, *, scan_seconds: float = 5.0) -> None:
        self.app = app
        self.scan_seconds = scan_seconds
        self.applied = 0  # updates that changed something (for logs and tests)
        self._stop = asyncio.Event()

    async def run(self) -> None:
        updates = order_updates_of(self.app)
        if updates is None:
            log.info("Exchange %s has no resting orders: no order updates to follow.", self.app.exchange.name)
            return
        await self.watch_resting_orders()
        scanner = asyncio.create_task(self._scan(), name="watch-resting-orders")
        try:
            async for execution in updates:
                await self.apply(execution)
        finally:
            scanner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await scanner

    def stop(self) -> None:
        self._stop.set()

    async def apply(self, execution: Execution) -> bool:
        """Apply one update; True if it changed anything."""
        for delay in (*UNKNOWN_ORDER_RETRIES, None):
            try:
                changed = await services.apply_order_update(execution, self.app.uow(), self.app.exchange)
            except DomainError as e:
                log.warning(
                    "Order update of %s not applied (%s); reconciliation will settle it.",
                    execution.client_order_id,
                    e.message,
                )
                return False
            if changed is not None:
                self.applied += changed
                return changed
            if delay is None:
                break
            await asyncio.sleep(delay)  # its row may not be committed yet
        log.info("Order update of %s: no such order here; reconciliation settles it.", execution.client_order_id)
        return False

    async def watch_resting_orders(self) -> int:
        """Ask each client's account to follow its resting orders (those it does not follow yet)."""
        watched = 0
        for order, symbol in await services.resting_orders(self.app.uow()):
            try:
                account = await self.app.exchange.for_client(order.client_id)
            except ExchangeError:
                continue  # the router logs why; the next scan tries again
            if isinstance(account, OrderUpdates) and order.client_order_id not in _watched(account):
                account.watch(symbol, order.client_order_id)
                watched += 1
        if watched:
            log.info("Following %d resting orders.", watched)
        return watched

    async def _scan(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.scan_seconds)
            try:
                await self.watch_resting_orders()
            except Exception:  # a failed scan must not end the consumer: the next one tries again
                log.exception("Scanning resting orders failed")


def _watched(account: OrderUpdates) -> list[str]:
    orders: list[str] = getattr(account, "watched_orders", [])
    return orders
