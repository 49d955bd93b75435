"""Periodic jobs: settle orders left in an unknown state, backfill candles missed by the stream, sync
the symbols from Binance, back the database up. Tasks receive ids, never objects, and are
idempotent in the database."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from domain import services
from domain.adapters.bootstrap import symbol_directory
from domain.errors import ExchangeError
from domain.model import Candle
from domain.services import candles, symbols

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
    for symbol, start in await candles.candle_gaps(app.uow(), "1m", now, MAX_BACKFILL, timedelta(minutes=2)):
        assert symbol.id is not None
        fetched = await source.closed_candles(symbol.symbol, "1m", start, now)
        rows = [
            Candle(symbol.id, c.interval, c.open_time, c.close_time, c.open, c.high, c.low, c.close, c.volume)
            for c in fetched
        ]
        stored += await candles.store_candles(rows, app.uow())
    if stored:
        log.info("Backfilled %d candles", stored)
    return stored


async def backup_database(ctx: dict[str, Any]) -> str:
    """The daily backup (`BACKUP_CRON=true`): pg_dump into BACKUP_DIR, the newest BACKUP_KEEP kept."""
    from domain.adapters.bootstrap import backups

    settings = ctx["app"].settings
    path = await backups.backup(str(settings.database_url), settings.backups_path, settings.backup_keep)
    return str(path)


async def sync_symbols(ctx: dict[str, Any]) -> int:
    """Daily, and at start (SPEC §4b): every Binance spot symbol with its filters; a halted or delisted
    symbol pauses its strategies. Binance unreachable: logged, the symbols stay as they are."""
    app = ctx["app"]
    try:
        listed = await symbol_directory(app.settings).exchange_symbols()
    except ExchangeError as e:
        log.warning("Symbols not synced: %s (add symbols by hand: criptoren symbols add).", e.message)
        return 0
    report = await symbols.sync_symbols(listed, app.uow())
    log.info(
        "Symbols synced from Binance: %d listed, %d added, %d changed, %d halted, %d trading again.",
        report.listed, len(report.added), len(report.changed), len(report.halted), len(report.resumed),
    )  # fmt: skip
    for name in report.halted:
        log.warning("Symbol %s is not trading: its strategies are paused.", name)
    return len(report.added) + len(report.changed) + len(report.halted) + len(report.resumed)
