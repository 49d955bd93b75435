"""Candle history: closed candles stored (and the coarser timeframes they close, built from them),
and the gaps a stream outage left, found for backfilling. One transaction each."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta

from domain import channel as ch
from domain.errors import ValidationError
from domain.model import Candle, Symbol
from domain.ports import UnitOfWork, UnitOfWorkFactory


async def store_closed_candle(candle: Candle, closing: Iterable[str], uow: UnitOfWork) -> list[Candle]:
    """Store a closed candle, and each of the `closing` timeframes it closes (rule 10: aggregated
    from the stored finer candles). Returns the candles stored, the given one first."""
    stored = [candle]
    async with uow:
        await uow.candles.upsert([candle])
        for tf in closing:
            built = await uow.candles.aggregate(
                candle.symbol_id, candle.interval, tf, candle.close_time - ch.timeframe_delta(tf), candle.close_time
            )
            if built is not None:
                await uow.candles.upsert([built])
                stored.append(built)
        await uow.commit()
    return stored


async def candle_gaps(
    uow: UnitOfWork, interval: str, now: datetime, max_back: timedelta, min_gap: timedelta
) -> list[tuple[Symbol, datetime]]:
    """The watched symbols whose stored `interval` candles stop at least `min_gap` before `now`, each
    with the time to backfill from (never further back than `max_back`). Read only."""
    gaps: list[tuple[Symbol, datetime]] = []
    async with uow:
        for symbol in await uow.symbols.watched():
            assert symbol.id is not None
            last = await uow.candles.last_close_time(symbol.id, interval)
            start = max(last or now - max_back, now - max_back)
            if now - start >= min_gap:
                gaps.append((symbol, start))
    return gaps


async def store_candles(candles: Sequence[Candle], uow: UnitOfWork) -> int:
    """Insert or update candles (on symbol, interval and open time); returns how many."""
    async with uow:
        stored = await uow.candles.upsert(candles)
        await uow.commit()
    return stored


async def import_candles(rows: Iterable[Candle], uow: UnitOfWorkFactory, batch: int = 2000) -> int:
    """Store candles read from a file (for backtests), in batches of `batch` (a statement's
    parameters stay under PostgreSQL's limit), one transaction each: an existing candle (same
    symbol, interval, open time) is replaced. Returns how many."""
    stored = 0
    pending: list[Candle] = []
    for candle in rows:
        pending.append(candle)
        if len(pending) >= batch:
            stored += await store_candles(pending, uow())
            pending = []
    if pending:
        stored += await store_candles(pending, uow())
    return stored


async def strategies_unjudged(uow: UnitOfWork, steps: Mapping[str, timedelta]) -> list[str]:
    """Rule 5 for a market of fixed candle spacings (a replay: symbol -> spacing): the active
    strategies of those symbols whose timeframe those candles cannot judge, each described with the
    coarsest candle interval that works. Empty when all can be judged. Read only."""
    problems: list[str] = []
    async with uow:
        for name, step in steps.items():
            symbol = await uow.symbols.get_by_name(name)
            if symbol is None or symbol.id is None:
                continue
            for strategy in await uow.strategies.list_by_symbol(symbol.id):
                if not strategy.is_active or ch.judges_timeframe(step, strategy.timeframe):
                    continue
                try:
                    ch.check_candle_interval(step, strategy.timeframe)
                except ValidationError as e:
                    problems.append(f"strategy {strategy.id} ({strategy.name!r}, {name}): {e.message}")
    return problems
