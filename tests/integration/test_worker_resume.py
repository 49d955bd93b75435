"""A worker resumes a symbol after the last tick it applied, not after an older checkpoint.

While Redis is down the consumer goes on trading as long as its lease is certain, but its checkpoint
(in Redis) is not saved; a Redis that keeps nothing loses it altogether. The next consumer of the
same worker must not apply those ticks again: a replayed dip to B and rise through E would re-arm
the strategy and buy a second time in the same bounce (SPEC §4 rule 1; found as `buy, buy, sell,
sell` in tests/e2e/test_worker_outages.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

from domain.adapters.bootstrap import App
from domain.adapters.market.replay import POINTS_PER_CANDLE, ReplayMarket
from domain.adapters.seed import seed_demo
from domain.market import ClosedCandle, MarketEvent
from tests.integration.test_worker_supervision import sides_by_strategy
from tests.markets import bouncing_market
from workers.market import SymbolConsumer


class UpTo:
    """The replay, cut after a candle: a consumer that stops there (as a fenced one does)."""

    def __init__(self, replay: ReplayMarket, last_candle: int) -> None:
        self.replay, self.name, self.fills_at_levels = replay, replay.name, replay.fills_at_levels
        self.limit = (last_candle + 1) * POINTS_PER_CANDLE

    async def stream(self, symbol: str, after_seq: int | None = None) -> AsyncIterator[MarketEvent]:
        async for event in self.replay.stream(symbol, after_seq):
            if event.seq >= self.limit:
                return
            yield event

    async def closed_candles(self, *args: object) -> list[ClosedCandle]:
        return await self.replay.closed_candles(*args)  # type: ignore[arg-type]

    async def close(self) -> None:
        return None


async def _run_with_stale_checkpoint(
    db: App, tmp_path: Path, applied: dict[str, tuple[int, Decimal]] | None
) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    await seed_demo(db.uow, db.exchange)
    replay = ReplayMarket({"BTCUSDT": bouncing_market(tmp_path / "m.csv")}, speed=0)
    async with db.uow() as uow:
        symbol = await uow.symbols.get_by_name("BTCUSDT")
    assert symbol is not None
    first = SymbolConsumer(db, UpTo(replay, 18), symbol, applied=applied)
    await first.run()
    saved = first._checkpoint()  # the last checkpoint Redis kept
    # Redis goes down: the worker goes on (its lease is still certain), checkpointing nothing.
    during = SymbolConsumer(db, UpTo(replay, 21), symbol, applied=applied)
    await during.run()
    held = await sides_by_strategy(db)
    await db.redis.set(first._cursor_key, saved)
    again = SymbolConsumer(db, UpTo(replay, 21), symbol, applied=applied)
    await again.run()
    return held, await sides_by_strategy(db)


async def test_the_same_worker_resumes_after_the_last_tick_it_applied(db: App, tmp_path: Path) -> None:
    held, after = await _run_with_stale_checkpoint(db, tmp_path, applied={})
    assert after == held, f"ticks applied again: {held} -> {after}"
    for sides in after.values():
        assert sides == ["buy", "sell"] * (len(sides) // 2) + ["buy"] * (len(sides) % 2)


async def test_without_its_own_record_a_stale_checkpoint_is_replayed(db: App, tmp_path: Path) -> None:
    """The control: what the test above guards against does happen with the Redis checkpoint alone
    (another worker taking over from an old checkpoint still replays — named in the README)."""
    held, after = await _run_with_stale_checkpoint(db, tmp_path, applied=None)
    assert after != held
