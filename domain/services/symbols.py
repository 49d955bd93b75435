"""Symbols: every Binance spot symbol is tradable (SPEC §4b). They are synced from the exchange's
list (exchangeInfo: status, assets, tick, step, min/max quantity, minimum notional, quote-order
support) at worker start, daily and on demand, or added by hand where the exchange is unreachable.

A symbol the exchange halts or delists keeps its history; its strategies are paused with an event
and no order is sent for it (the engine skips a symbol that is not trading). When it trades again an
event says so; its strategies stay paused until their owner activates them. A changed filter
applies from the next order (orders read the symbol's row when they are built).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from domain import commands as cmds
from domain.errors import ValidationError
from domain.events import EventType
from domain.model import Candle, Symbol
from domain.ports import UnitOfWork
from domain.services.common import fmt, record_event, utcnow

SYMBOL_NAME = re.compile(r"^[A-Z0-9]{2,20}$")
ASSET_NAME = re.compile(r"^[A-Z0-9]{1,20}$")
TRADING = "TRADING"
# Filters are stored as NUMERIC(38, 18): a value is accepted only if stored exactly.
MAX_SCALE = 18
MAX_VALUE = Decimal("1e20")
FILTERS = ("step_size", "min_qty", "max_qty", "tick_size", "min_notional", "status", "quote_order_qty_allowed")


def _name(value: str, pattern: re.Pattern[str], field_name: str, what: str) -> str:
    if not isinstance(value, str) or not value.isascii() or not pattern.match(value.strip().upper()):
        raise ValidationError(f"{field_name}: {what} (ASCII letters and digits).", field=field_name)
    return value.strip().upper()


def _amount(value: Decimal | None, field_name: str, *, positive: bool) -> Decimal | None:
    if value is None:
        return None
    if not value.is_finite() or value < 0 or (positive and value == 0) or value >= MAX_VALUE:
        bound = "greater than 0" if positive else "at least 0"
        raise ValidationError(f"{field_name} must be {bound} and below {MAX_VALUE:f}.", field=field_name)
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_SCALE and value != value.quantize(Decimal(1).scaleb(-MAX_SCALE)):
        raise ValidationError(f"{field_name} has more than {MAX_SCALE} decimals.", field=field_name)
    return value


def symbol_from(cmd: cmds.AddSymbol) -> Symbol:
    """The symbol a hand-written description gives, validated (names, positive filters, precision)."""
    name = _name(cmd.symbol, SYMBOL_NAME, "symbol", "2 to 20 characters")
    base = _name(cmd.base_asset, ASSET_NAME, "baseAsset", "1 to 20 characters")
    quote = _name(cmd.quote_asset, ASSET_NAME, "quoteAsset", "1 to 20 characters")
    if base == quote:
        raise ValidationError("baseAsset and quoteAsset must differ.", field="quoteAsset")
    if name != base + quote:
        raise ValidationError(f"symbol must be the base asset then the quote asset: {base}{quote}.", field="symbol")
    tick = _amount(cmd.tick_size, "tickSize", positive=True)
    step = _amount(cmd.step_size, "stepSize", positive=True)
    notional = _amount(cmd.min_notional, "minNotional", positive=False)
    min_qty = _amount(cmd.min_qty, "minQty", positive=False)
    max_qty = _amount(cmd.max_qty, "maxQty", positive=True)
    assert tick is not None and step is not None and notional is not None
    min_qty = step if min_qty is None else min_qty
    if max_qty is not None and max_qty < min_qty:
        raise ValidationError("maxQty must be at least minQty.", field="maxQty")
    return Symbol(name, base, quote, step, min_qty, tick, notional, max_qty=max_qty)


async def add_symbol(cmd: cmds.AddSymbol, uow: UnitOfWork) -> Symbol:
    """Add a symbol by hand (where the exchange's list cannot be read). A symbol already known is
    refused: the sync keeps known symbols up to date."""
    symbol = symbol_from(cmd)
    async with uow:
        if await uow.symbols.get_by_name(symbol.symbol) is not None:
            raise ValidationError(f"Symbol {symbol.symbol} is already known.", field="symbol")
        symbol.created_at = utcnow()
        uow.symbols.add(symbol)
        await uow.flush()
        await uow.commit()
    return symbol


@dataclass
class SyncReport:
    """What a sync changed, by symbol name."""

    listed: int = 0
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)  # filters or quote-order support
    halted: list[str] = field(default_factory=list)  # no longer trading (or no longer listed)
    resumed: list[str] = field(default_factory=list)
    paused_strategies: list[int] = field(default_factory=list)


def _filters(s: Symbol) -> tuple[object, ...]:
    return tuple(getattr(s, name) for name in FILTERS)


async def sync_symbols(listed: Sequence[Symbol], uow: UnitOfWork, *, delisted: bool = True) -> SyncReport:
    """Bring the symbols table in line with the exchange's list (one transaction): new symbols are
    added, changed filters and statuses stored; a symbol that stops trading — halted, or gone from
    the list (`delisted`) — pauses its active strategies with an event (SPEC §4b)."""
    report = SyncReport(listed=len(listed))
    by_name = {s.symbol: s for s in listed}
    async with uow:
        known = {s.symbol: s for s in await uow.symbols.list()}
        for name, new in by_name.items():
            old = known.get(name)
            if old is None:
                new.is_active = new.status == TRADING
                new.created_at = utcnow()
                uow.symbols.add(new)
                report.added.append(name)
                continue
            was_trading = old.is_active
            if _filters(old) != _filters(new) or old.base_asset != new.base_asset or old.quote_asset != new.quote_asset:
                if _filters(old)[:5] != _filters(new)[:5] or old.quote_order_qty_allowed != new.quote_order_qty_allowed:
                    report.changed.append(name)
                old.step_size, old.min_qty, old.max_qty = new.step_size, new.min_qty, new.max_qty
                old.tick_size, old.min_notional = new.tick_size, new.min_notional
                old.base_asset, old.quote_asset = new.base_asset, new.quote_asset
                old.quote_order_qty_allowed, old.status = new.quote_order_qty_allowed, new.status
            old.is_active = old.status == TRADING
            if was_trading and not old.is_active:
                report.halted.append(name)
                report.paused_strategies += await _pause_strategies(uow, old)
            elif not was_trading and old.is_active:
                report.resumed.append(name)
                await _note_trading(uow, old)
        if delisted:
            for name, old in known.items():
                if name not in by_name and old.is_active:
                    old.status, old.is_active = "DELISTED", False
                    report.halted.append(name)
                    report.paused_strategies += await _pause_strategies(uow, old)
        await uow.flush()
        await uow.commit()
    return report


async def _pause_strategies(uow: UnitOfWork, symbol: Symbol) -> list[int]:
    assert symbol.id is not None
    paused = []
    for strategy in await uow.strategies.list_by_symbol(symbol.id):
        if not strategy.is_active:
            continue
        locked = await uow.strategies.get(strategy.id or 0, for_update=True)
        assert locked is not None and locked.id is not None
        locked.deactivate()
        record_event(
            uow, locked, EventType.SYMBOL_HALTED,
            f"{symbol.symbol} is not trading on the exchange ({symbol.status}): strategy paused, no order is sent.",
            status=symbol.status,
        )  # fmt: skip
        paused.append(locked.id)
    return paused


async def _note_trading(uow: UnitOfWork, symbol: Symbol) -> None:
    assert symbol.id is not None
    for strategy in await uow.strategies.list_by_symbol(symbol.id):
        record_event(
            uow, strategy, EventType.SYMBOL_TRADING,
            f"{symbol.symbol} trades again; activate the strategy to resume entries "
            f"(minimum notional {fmt(symbol.min_notional)} {symbol.quote_asset}).",
        )  # fmt: skip


async def set_reference_price(symbol: Symbol, price: Decimal, uow: UnitOfWork) -> None:
    """A symbol added by hand gets its price now as a 1-minute candle (O = H = L = C, no volume): the
    last known price of a market that has none yet (the offline market starts its walk there)."""
    checked = _amount(price, "price", positive=True)
    assert checked is not None and symbol.id is not None
    start = utcnow().replace(second=0, microsecond=0)
    candle = Candle(symbol.id, "1m", start, start + timedelta(minutes=1), price, price, price, price, Decimal(0))
    async with uow:
        await uow.candles.upsert([candle])
        await uow.commit()
