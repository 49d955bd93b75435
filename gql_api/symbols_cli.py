"""`criptoren symbols add|list|sync`: the symbols a strategy can trade (SPEC §4b).

criptoren symbols add SOLUSDT --base-asset SOL --quote-asset USDT --tick-size 0.01 --step-size 0.001 --min-notional 5
criptoren symbols list
criptoren symbols sync          (from Binance's exchangeInfo; the worker also does it at start and daily)
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from decimal import Decimal, InvalidOperation

from domain import commands as cmds
from domain.adapters.bootstrap import open_database, symbol_directory
from domain.adapters.config import Settings
from domain.errors import DomainError
from domain.services import symbols

COMMANDS = ("symbols",)
# Plain ASCII decimals only: Decimal() would also take "1_000", "١٢٣" or "1e400".
DECIMAL = re.compile(r"^[0-9]+(\.[0-9]+)?$")


def _decimal(text: str) -> Decimal:
    if not DECIMAL.match(text):
        raise argparse.ArgumentTypeError(f"not a plain decimal number: {text!r}")
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid numbers
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("symbols", help="the symbols strategies can trade: add by hand, list, sync from Binance")
    actions = parser.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="add a symbol by hand (offline, paper, air-gapped)")
    add.add_argument("symbol", help="e.g. SOLUSDT (the base asset then the quote asset)")
    add.add_argument("--base-asset", required=True, help="e.g. SOL")
    add.add_argument("--quote-asset", required=True, help="e.g. USDT: capital, prices and profit are in it")
    add.add_argument("--tick-size", type=_decimal, required=True, help="PRICE_FILTER tick, e.g. 0.01")
    add.add_argument("--step-size", type=_decimal, required=True, help="LOT_SIZE step, e.g. 0.001")
    add.add_argument("--min-notional", type=_decimal, required=True, help="smallest order value in the quote asset")
    add.add_argument("--min-qty", type=_decimal, help="LOT_SIZE minimum quantity (default: one step)")
    add.add_argument("--max-qty", type=_decimal, help="LOT_SIZE maximum quantity (default: none)")
    add.add_argument("--price", type=_decimal, help="its price now: where the offline (synthetic) market starts it")
    actions.add_parser("list", help="list the known symbols and their filters")
    actions.add_parser("sync", help="sync every spot symbol from Binance's exchangeInfo")


def run(args: argparse.Namespace, settings: Settings) -> None:
    try:
        asyncio.run(_run(args, settings))
    except DomainError as e:
        sys.stderr.write(f"criptoren symbols {args.action}: {e.message}\n")
        raise SystemExit(1) from None


def _plain(value: Decimal | None) -> str:
    return "-" if value is None else f"{value.normalize():f}"


async def _run(args: argparse.Namespace, settings: Settings) -> None:
    db = open_database(settings)
    try:
        if args.action == "add":
            cmd = cmds.AddSymbol(
                args.symbol, args.base_asset, args.quote_asset, args.tick_size, args.step_size, args.min_notional,
                min_qty=args.min_qty, max_qty=args.max_qty,
            )  # fmt: skip
            added = await symbols.add_symbol(cmd, db.uow())
            if args.price is not None:
                await symbols.set_reference_price(added, args.price, db.uow())
            sys.stdout.write(f"Added {added.symbol} ({added.base_asset}/{added.quote_asset}).\n")
        elif args.action == "list":
            async with db.uow() as uow:
                known = await uow.symbols.list()
            sys.stdout.write(f"{'SYMBOL':<14}{'BASE':<8}{'QUOTE':<8}{'STATUS':<10}{'TICK':>14}{'STEP':>14}"
                             f"{'MIN QTY':>14}{'MAX QTY':>16}{'MIN NOTIONAL':>14}\n")  # fmt: skip
            for s in known:
                sys.stdout.write(
                    f"{s.symbol:<14}{s.base_asset:<8}{s.quote_asset:<8}{s.status:<10}{_plain(s.tick_size):>14}"
                    f"{_plain(s.step_size):>14}{_plain(s.min_qty):>14}{_plain(s.max_qty):>16}"
                    f"{_plain(s.min_notional):>14}\n"
                )
        else:
            listed = await symbol_directory(settings).exchange_symbols()
            report = await symbols.sync_symbols(listed, db.uow())
            sys.stdout.write(
                f"{report.listed} symbols listed by Binance: {len(report.added)} added, {len(report.changed)} "
                f"changed, {len(report.halted)} not trading ({', '.join(report.halted) or 'none'}), "
                f"{len(report.resumed)} trading again; {len(report.paused_strategies)} strategies paused.\n"
            )
    finally:
        await db.close()
