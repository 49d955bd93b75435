"""`criptoren candles import FILE --symbol S --interval I`: load a candle CSV into historical_prices,
for backtests of stored candles (`criptoren backtest --symbol S --interval I`, the `backtest` query).

The file: `open_time_ms,open,high,low,close[,volume]` (a header line is allowed) — what Binance's
kline files start with. Prices are read exactly (Decimal), never through floats.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from domain.adapters.bootstrap import open_database
from domain.adapters.config import Settings
from domain.channel import EPOCH, TIMEFRAMES
from domain.errors import DomainError, ValidationError
from domain.model import Candle
from domain.services import backtests, candles

COMMANDS = ("candles",)
NUMBER = re.compile(r"^[0-9]+(\.[0-9]+)?$")


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("candles", help="load candles from a CSV file (for backtests)")
    actions = parser.add_subparsers(dest="action", required=True)
    imp = actions.add_parser("import", help="import a CSV open_time_ms,open,high,low,close[,volume]")
    imp.add_argument("file", type=Path, help="the CSV file")
    imp.add_argument("--symbol", required=True, help="a known symbol (criptoren symbols list)")
    imp.add_argument("--interval", required=True, choices=list(TIMEFRAMES), help="the candles' interval")


def run(args: argparse.Namespace, settings: Settings) -> None:
    if not args.file.is_file():
        sys.stderr.write(f"criptoren candles import: no such file: {args.file}\n")
        raise SystemExit(1)
    try:
        count = asyncio.run(_import(args.file, args.symbol, args.interval, settings))
    except DomainError as e:
        sys.stderr.write(f"criptoren candles import: {e.message}\n")
        raise SystemExit(1) from None
    sys.stdout.write(f"Imported {count:,} {args.interval} candles of {args.symbol.upper()}.\n")


def read_candles(path: Path, symbol_id: int, interval: str) -> Iterator[Candle]:
    """The file's candles, line by line (constant memory); a malformed line stops the import with
    its line number."""
    step = TIMEFRAMES[interval]
    step_ms = int(step.total_seconds() * 1000)
    previous: int | None = None
    with path.open(encoding="ascii", errors="strict") as f:
        for number, line in enumerate(f, 1):
            fields = line.strip().split(",")
            if not line.strip() or (number == 1 and not fields[0].isdigit()):
                continue  # a header, or a blank line
            if len(fields) < 5 or not fields[0].isdigit() or not all(NUMBER.match(v) for v in fields[1:6]):
                raise ValidationError(f"{path}:{number}: not open_time_ms,open,high,low,close[,volume].")
            open_ms = int(fields[0])
            if open_ms % step_ms or (previous is not None and open_ms <= previous):
                raise ValidationError(
                    f"{path}:{number}: open times must increase and be multiples of {interval} ({open_ms})."
                )
            previous = open_ms
            o, h, low, c = (Decimal(v) for v in fields[1:5])
            volume = Decimal(fields[5]) if len(fields) > 5 else Decimal(0)
            if not (low > 0 and h >= max(o, c) and low <= min(o, c)):
                raise ValidationError(f"{path}:{number}: inconsistent prices (high, low, open, close).")
            opened = EPOCH + timedelta(milliseconds=open_ms)
            yield Candle(symbol_id, interval, opened, opened + step, o, h, low, c, volume)


async def _import(path: Path, name: str, interval: str, settings: Settings) -> int:
    db = open_database(settings)
    try:
        symbol = await backtests.stored_symbol(db.uow(), name)
        assert symbol.id is not None
        try:
            return await candles.import_candles(read_candles(path, symbol.id, interval), db.uow)
        except UnicodeDecodeError as e:
            raise ValidationError(f"{path}: not an ASCII CSV file ({e.reason}).") from None
    finally:
        await db.close()
