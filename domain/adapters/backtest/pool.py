"""Backtests of stored candles in worker processes: off the API's event loop, a bounded number at
once, one per client.

A backtest over a year of 1-minute candles is seconds of CPU and, read as rows, hundreds of MB. In
the API process it held the GIL (a thread did not help: /healthz stalled for seconds) and four at
once took 1.4 GB. Here each runs in a process of a pool of `BACKTEST_CONCURRENCY` (spawned at the
first backtest, kept), which reads its candles from PostgreSQL itself, as CSV text
(`services.backtests.stored_candles`), and sends back only what the caller keeps. A caller waits at
most `BACKTEST_WAIT_SECONDS` for a free process, then gets `Busy`; a client with a backtest running
gets `Busy` at once for a second one.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
from collections.abc import Callable, Hashable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

import numpy as np

from domain.adapters.backtest.runner import backtest_async
from domain.adapters.ops import metrics
from domain.adapters.persistence import orm
from domain.adapters.persistence.unit_of_work import SqlAlchemyUnitOfWorkFactory, make_engine, make_session_factory
from domain.backtest import BacktestResult
from domain.channel import Channel
from domain.errors import Busy
from domain.model import Symbol
from domain.services import backtests

log = logging.getLogger("criptoren.backtest")

T = TypeVar("T")


@dataclass(frozen=True)
class StoredBacktest:
    """A backtest of a symbol's stored candles (those of [start, end), or the latest
    `max_candles`), as a pool process runs it. Only the first `max_trades` trades and `max_marks`
    marks come back (and no equity curve): what the caller returns, not what it would drop."""

    symbol: Symbol
    interval: str
    start: datetime | None
    end: datetime | None
    max_candles: int
    channel: Channel
    bankroll: Decimal
    fee_rate: Decimal
    max_trades: int
    max_marks: int


# A pool process's own event loop and database engine, kept from one backtest to the next.
_process_state: dict[str, Any] = {}


def _start_process() -> None:
    # Ctrl-C in a terminal reaches the whole process group: the API stops its pool itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The symbol arrives as the mapped class's instance: its mapping must exist to unpickle it.
    orm.start_mappers()


def run_stored_backtest(database_url: str, job: StoredBacktest) -> BacktestResult:
    """In a pool process: read the candles, run the backtest, keep what the caller returns."""
    loop = _process_state.get("loop")
    if loop is None:
        loop = _process_state["loop"] = asyncio.new_event_loop()
    return loop.run_until_complete(_run(database_url, job))


async def _run(database_url: str, job: StoredBacktest) -> BacktestResult:
    if _process_state.get("url") != database_url:
        engine = make_engine(database_url, pool_size=1, max_overflow=0)
        _process_state.update(url=database_url, uow=SqlAlchemyUnitOfWorkFactory(make_session_factory(engine)))
    uow = _process_state["uow"]
    series = await backtests.backtest_candles(uow(), job.symbol, job.interval, job.start, job.end, job.max_candles)
    result = await backtest_async(series, job.channel, job.bankroll, job.symbol, job.fee_rate)
    return replace(
        result, trades=result.trades[: job.max_trades + 1], marks=result.marks[: job.max_marks], equity=np.empty(0)
    )


class BacktestPool:
    """At most `size` backtests at once in this process's pool, one per owner (a client)."""

    def __init__(self, size: int, wait_seconds: float) -> None:
        self.size = max(1, size)
        self.wait_seconds = wait_seconds
        self._slots: asyncio.Semaphore | None = None
        self._owners: set[Hashable] = set()
        self._executor: ProcessPoolExecutor | None = None

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                self.size, mp_context=multiprocessing.get_context("spawn"), initializer=_start_process
            )
        return self._executor

    async def run(self, owner: Hashable, function: Callable[..., T], *args: Any) -> T:
        """`function(*args)` in a pool process, for `owner`. `Busy` when the owner has one running
        already, or when no process frees up within `wait_seconds`."""
        if owner in self._owners:
            metrics.BACKTESTS_BUSY.inc()
            raise Busy("You have a backtest running already: wait for it to finish.", limit="one per client")
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.size)
        self._owners.add(owner)
        try:
            try:
                async with asyncio.timeout(self.wait_seconds):
                    await self._slots.acquire()
            except TimeoutError:
                metrics.BACKTESTS_BUSY.inc()
                raise Busy(
                    f"The server runs {self.size} backtests at once and all are taken: retry in a moment.",
                    limit=f"{self.size} at once",
                ) from None
            try:
                return await asyncio.get_running_loop().run_in_executor(self._pool(), function, *args)
            except BrokenProcessPool:
                self._executor = None  # a process died (killed?): a new pool next time
                raise
            finally:
                self._slots.release()
        finally:
            self._owners.discard(owner)

    def close(self) -> None:
        """Stop the pool's processes: at once when idle; a backtest running is not waited for."""
        if self._executor is not None:
            self._executor.shutdown(wait=not self._owners, cancel_futures=True)
            self._executor = None
