"""Periodic jobs: settle orders left in an unknown state, backfill candles missed by the stream.
Tasks receive ids, never objects, and are idempotent in the database."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from domain import services
from domain.model import Candle

log = logging.getLogger("criptoren.cron")

MAX_BACKFILL = timedelta(days=2)


async def reconcile_orders(ctx: dict[str, Any]) -> int:
    """Ask the exchange about every order not in a final state and record what it says."""
    app = ctx["app"]
    settled = await services.reconcile_orders(app.uow(), app.exchange)
    if settled:
        log.info("Reconciled %d orders", settled)
    return settled


async def backfill_candles(ctx: dict[str, Any]) -> int:
    """Fetch the 1m candles missing since the last stored one (a stream that was down)."""
    app, source = ctx["app"], ctx["source"]
    now = datetime.now(UTC)
    stored = 0
    async with app.uow() as uow:
        for symbol in await uow.symbols.watched():
            last = await uow.candles.last_close_time(symbol.id, "1m")
            start = max(last or now - MAX_BACKFILL, now - MAX_BACKFILL)
            if now - start < timedelta(minutes=2):
                continue
            candles = await source.closed_candles(symbol.symbol, "1m", start, now)
            rows = [
                Candle(symbol.id, c.interval, c.open_time, c.close_time, c.open, c.high, c.low, c.close, c.volume)
                for c in candles
            ]
            stored += await uow.candles.upsert(rows)
        await uow.commit()
    if stored:
        log.info("Backfilled %d candles", stored)
    return stored


async def backup_database(ctx: dict[str, Any]) -> str:
    """The daily backup (`BACKUP_CRON=true`): pg_dump into BACKUP_DIR, the newest BACKUP_KEEP kept."""
    from domain.adapters.bootstrap import backups

    settings = ctx["app"].settings
    path = await backups.backup(str(settings.database_url), settings.backups_path, settings.backup_keep)
    return str(path)
