"""Backtests off the API's event loop (issue 17, item 11): a pool of processes, at most N at once,
one per client, others waiting a while then `Busy`; candles read from PostgreSQL as CSV text,
exactly."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from domain.adapters.backtest.pool import BacktestPool
from domain.adapters.bootstrap import App
from domain.adapters.persistence.memory import MemoryStore, MemoryUnitOfWorkFactory
from domain.errors import Busy
from domain.model import Candle
from domain.services.backtests import stored_candles


def held(folder: str, name: str) -> int:
    """In a pool process: say it started, wait until released (at most a minute); its pid."""
    (Path(folder) / f"{name}.started").touch()
    deadline = time.monotonic() + 60
    while not (Path(folder) / f"{name}.release").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return os.getpid()


async def started(folder: Path, name: str) -> None:
    async with asyncio.timeout(60):  # spawning the pool's first process takes a second or two
        while not (folder / f"{name}.started").exists():
            await asyncio.sleep(0.02)


async def test_one_backtest_per_client_and_at_most_n_at_once(tmp_path: Path) -> None:
    pool = BacktestPool(size=2, wait_seconds=0.3)
    try:
        alice = asyncio.create_task(pool.run("alice", held, str(tmp_path), "alice"))
        bob = asyncio.create_task(pool.run("bob", held, str(tmp_path), "bob"))
        await started(tmp_path, "alice")
        await started(tmp_path, "bob")  # two at once, each in a process of its own
        # Alice again: at once, whatever the pool holds.
        with pytest.raises(Busy, match="running already"):
            await pool.run("alice", held, str(tmp_path), "again")
        # Carol: both processes are taken and stay so past the wait.
        with pytest.raises(Busy, match="2 backtests at once"):
            await pool.run("carol", held, str(tmp_path), "carol")
        assert not (tmp_path / "carol.started").exists() and not (tmp_path / "again.started").exists()
        (tmp_path / "alice.release").touch()
        assert await alice != os.getpid()  # not this process: its event loop stayed free
        # A slot and Alice's turn are free again.
        (tmp_path / "carol.release").touch()
        assert await pool.run("alice", held, str(tmp_path), "carol") != os.getpid()
        (tmp_path / "bob.release").touch()
        await bob
    finally:
        pool.close()


async def test_a_caller_waits_for_a_slot_within_the_wait(tmp_path: Path) -> None:
    pool = BacktestPool(size=1, wait_seconds=60)
    try:
        first = asyncio.create_task(pool.run("alice", held, str(tmp_path), "first"))
        await started(tmp_path, "first")
        second = asyncio.create_task(pool.run("bob", held, str(tmp_path), "second"))
        await asyncio.sleep(0.2)
        assert not second.done() and not (tmp_path / "second.started").exists()  # waiting, not refused
        (tmp_path / "first.release").touch()
        (tmp_path / "second.release").touch()
        assert {await first, await second} != {os.getpid()}
    finally:
        pool.close()


AWKWARD = [("0.00000001", "0.00000003", "0.00000001", "0.00000002"), ("123456789.12345678", "123456790", "1E-8", "5")]


async def test_stored_candles_are_read_exactly_from_postgresql_and_memory(db: App) -> None:
    async with db.uow() as uow:
        symbol = await uow.symbols.get_by_name("BTCUSDT")
    assert symbol is not None and symbol.id is not None
    start = datetime(2024, 1, 1, tzinfo=UTC)
    candles = [
        Candle(symbol.id, "1h", start + timedelta(hours=i), start + timedelta(hours=i + 1) - timedelta(milliseconds=1),
               *(Decimal(p) for p in AWKWARD[i % 2]), Decimal(1))
        for i in range(10)
    ]  # fmt: skip
    async with db.uow() as uow:
        await uow.candles.upsert(candles)
        await uow.commit()
    memory = MemoryStore()
    memory_uow = MemoryUnitOfWorkFactory(memory)
    async with memory_uow() as uow:
        await uow.candles.upsert(candles)
        await uow.commit()
    for uow_factory in (db.uow, memory_uow):
        every = await stored_candles(uow_factory(), symbol.id, "1h")
        assert len(every) == 10 and every.interval == "1h"
        assert [every.exact(i) for i in range(10)] == [tuple(Decimal(p) for p in AWKWARD[i % 2]) for i in range(10)]
        assert [every.open_time(i) for i in range(10)] == [c.open_time for c in candles]
        latest = await stored_candles(uow_factory(), symbol.id, "1h", limit=3)
        assert [latest.open_time(i) for i in range(3)] == [c.open_time for c in candles[-3:]]
        ranged = await stored_candles(
            uow_factory(), symbol.id, "1h", start + timedelta(hours=2), start + timedelta(hours=5)
        )
        assert [ranged.open_time(i) for i in range(len(ranged))] == [c.open_time for c in candles[2:5]]
        assert len(await stored_candles(uow_factory(), symbol.id, "4h")) == 0
