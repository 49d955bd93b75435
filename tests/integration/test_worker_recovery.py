"""A decision that fails (its transaction cannot commit: the database went away) rolls back; the
worker restarts the symbol's consumer from its checkpoint, retries the tick, and ends with the same
trades as a clean run."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

from domain.adapters.bootstrap import App
from domain.adapters.market.replay import ReplayMarket
from domain.adapters.seed import seed_demo
from domain.ports import Page
from workers.market import MarketWorker

DATA = Path(__file__).resolve().parents[1] / "data"


class FlakyUnitOfWork:
    """Units of work whose first commit after a buy fails, as a lost database connection would."""

    def __init__(self, factory: Any) -> None:
        self.factory = factory
        self.failures = 1

    def __call__(self) -> Any:
        uow = self.factory()
        commit = uow.commit

        async def flaky_commit() -> None:
            if self.failures and uow.new_trades:
                self.failures -= 1
                raise ConnectionResetError("the database connection was lost")
            await commit()

        uow.commit = flaky_commit
        return uow


async def test_a_failed_decision_is_retried_after_a_restart(db: App) -> None:
    await seed_demo(db.uow, db.exchange)
    real = db.uow
    flaky = FlakyUnitOfWork(real)
    db.uow = flaky  # type: ignore[assignment]
    worker = MarketWorker(db, ReplayMarket({"BTCUSDT": DATA / "btc-channel-1h.csv"}), poll_seconds=0.05)
    task = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(30):
            while "BTCUSDT" not in worker.finished:
                await asyncio.sleep(0.05)
    finally:
        worker.stop()
        await task
        db.uow = real
    assert flaky.failures == 0
    async with db.uow() as uow:
        trades = [(t.side.value, t.price, t.notes) for t in reversed(await uow.trades.list(Page(100)))]
    assert trades[:3] == [
        ("buy", Decimal("102498.78"), "entry"),
        ("sell", Decimal("108413.48"), "exit"),
        ("buy", Decimal("102498.78"), "entry"),
    ]
    assert len(trades) == 4
