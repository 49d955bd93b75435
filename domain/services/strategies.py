"""Use cases of clients and strategies: creation, channel changes, activation (rules 1, 5, 11),
retirement (archiving)."""

from __future__ import annotations

from decimal import Decimal

from domain import channel as ch
from domain import commands as cmds
from domain.errors import (
    InvalidState,
    NotFound,
    ValidationError,
)
from domain.events import EventType
from domain.model import (
    Client,
    Strategy,
    Symbol,
)
from domain.ports import Exchange, Page, UnitOfWork
from domain.services.common import (
    check_not_archived,
    get_strategy,
    get_symbol,
    record_event,
    utcnow,
)
from domain.services.execution import UNSETTLED


async def create_client(cmd: cmds.CreateClient, uow: UnitOfWork) -> Client:
    name = check_name(cmd.name)
    async with uow:
        client = Client(name=name, created_at=utcnow())
        uow.clients.add(client)
        await uow.flush()
        await uow.commit()
    return client


def check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 100:
        raise ValidationError("name must have 1 to 100 characters.", field="name")
    return name


async def create_strategy(cmd: cmds.CreateStrategy, uow: UnitOfWork, exchange: Exchange) -> Strategy:
    """Create a channel strategy, validated by rule 11. It starts armed (rule 1)."""
    name = check_name(cmd.name)
    async with uow:
        if await uow.clients.get(cmd.client_id) is None:
            raise NotFound(f"Client {cmd.client_id} not found.", entity="Client", id=cmd.client_id)
        symbol = await uow.symbols.get_by_name(cmd.symbol.upper())
        if symbol is None:
            raise NotFound(f"Symbol {cmd.symbol} is not known.", entity="Symbol", id=cmd.symbol)
        exchange = await exchange.for_client(cmd.client_id)
        # Rule 11: the smallest workable top is named for the smallest entry (no principal yet).
        cmd.channel.validate(exchange.fee_rate(symbol), symbol.tick_size, filters=symbol.filters)
        if await uow.strategies.find(cmd.client_id, name) is not None:
            raise ValidationError(f"A strategy named {name!r} already exists.", field="name")
        assert symbol.id is not None
        strategy = Strategy.open(cmd.client_id, symbol.id, name, cmd.channel, is_active=cmd.is_active)
        uow.strategies.add(strategy)
        await uow.flush()
        record_event(uow, strategy, EventType.STRATEGY_CREATED, f"Strategy {name!r} created.")
        await uow.commit()
    return strategy


async def update_strategy(cmd: cmds.UpdateStrategy, uow: UnitOfWork, exchange: Exchange) -> Strategy:
    """Change a strategy's name and parameters (validated by rule 11, the smallest workable top
    named for its principal). Only a change of base or buy threshold arms it and clears a channel
    break (rules 1, 5); a rename or any other edit leaves the arming as it was. A channel whose
    entries would not work after lot rounding is recorded as an event (rule 11)."""
    async with uow:
        strategy = await get_strategy(uow, cmd.strategy_id, cmd.client_id, lock=True)
        check_not_archived(strategy)
        symbol = await get_symbol(uow, strategy.symbol_id)
        exchange = await exchange.for_client(strategy.client_id)
        assert strategy.id is not None
        principal = await uow.allocations.principal(strategy.id)
        fee_rate = exchange.fee_rate(symbol)

        channel = cmd.channel_from(strategy.channel)
        channel.validate(fee_rate, symbol.tick_size, filters=symbol.filters, principal=principal)
        if cmd.name is not None:
            name = check_name(cmd.name)
            other = await uow.strategies.find(strategy.client_id, name)
            if other is not None and other.id != strategy.id:
                raise ValidationError(f"A strategy named {name!r} already exists.", field="name")
            strategy.name = name
        armed = strategy.change_channel(channel)
        message = "Strategy updated: new entry level, armed." if armed else "Strategy updated (arming unchanged)."
        record_event(uow, strategy, EventType.STRATEGY_UPDATED, message, armed=armed)
        warn_if_entries_fail(uow, strategy, symbol, principal, fee_rate)
        await uow.commit()
    return strategy


def warn_if_entries_fail(
    uow: UnitOfWork, strategy: Strategy, symbol: Symbol, principal: Decimal, fee_rate: Decimal
) -> str | None:
    """Rule 11: when entries sized by rule 2 for `principal` would not work (too small for the
    exchange's filters, or lot rounding pushing min_sell above X), record it as an event and return
    the warning; None when they work."""
    warning = ch.entries_warning(strategy.channel, principal, symbol.filters, fee_rate, symbol.tick_size)
    if warning is not None:
        record_event(uow, strategy, EventType.ENTRIES_TOO_SMALL, warning, principal=principal)
    return warning


async def set_strategy_active(cmd: cmds.SetStrategyActive, uow: UnitOfWork) -> Strategy:
    """Activate or pause a strategy. Re-activation from inactive arms it and clears a channel break
    (rules 1, 5); activating an active strategy changes nothing.

    A paused strategy makes no entries; its scheduled sells and exits keep protecting profit."""
    async with uow:
        strategy = await get_strategy(uow, cmd.strategy_id, cmd.client_id, lock=True)
        check_not_archived(strategy)
        if cmd.is_active:
            # Rule 1: only a re-activation from inactive arms; an active strategy stays as it is.
            if strategy.activate():
                record_event(uow, strategy, EventType.STRATEGY_ACTIVATED, "Strategy activated and armed.")
        elif strategy.is_active:
            strategy.deactivate()
            record_event(uow, strategy, EventType.STRATEGY_DEACTIVATED, "Strategy paused: no new entries.")
        await uow.commit()
    return strategy


async def archive_strategy(cmd: cmds.ArchiveStrategy, uow: UnitOfWork) -> Strategy:
    """Retire a strategy: it stops trading for good (the engine no longer looks at it), leaves the
    lists (`strategies(includeArchived: true)` shows it) and frees its name; its history, positions,
    trades and ledger stay. Refused (INVALID_STATE, naming them) while it holds open or scheduled
    positions, or orders the exchange may still fill: they would be left without an engine. Under
    the strategy's row lock, so no entry can open a position meanwhile. Its remaining principal
    and profit can still be withdrawn."""
    async with uow:
        strategy = await get_strategy(uow, cmd.strategy_id, cmd.client_id, lock=True)
        check_not_archived(strategy)
        assert strategy.id is not None
        live = await uow.positions.list_live_by_strategy(strategy.id)
        if live:
            named = ", ".join(f"{p.id} ({p.status.value})" for p in live)
            raise InvalidState(
                f"Strategy {strategy.id} still holds open or scheduled positions: {named}. Sell them (or wait for "
                "their sells) before archiving it.",
                positions=",".join(str(p.id) for p in live),
            )
        pending = await uow.orders.list(Page(10), strategy_id=strategy.id, statuses=UNSETTLED)
        if pending:
            named = ", ".join(f"{o.client_order_id} ({o.status.value})" for o in pending)
            raise InvalidState(
                f"Strategy {strategy.id} has orders the exchange has not settled yet: {named}. Archive it once "
                "reconciliation has settled them.",
                orders=",".join(o.client_order_id for o in pending),
            )
        strategy.archive(utcnow())
        record_event(uow, strategy, EventType.STRATEGY_ARCHIVED, f"Strategy {strategy.name!r} archived.")
        await uow.commit()
    return strategy
