"""Use cases of clients and strategies: creation, channel changes, activation (rules 1, 5, 11),
retirement (archiving)."""

from __future__ import annotations

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
        cmd.channel.validate(exchange.fee_rate(symbol), symbol.tick_size)
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
    """Change a strategy's parameters (validated by rule 11). Updating re-arms it and clears a
    channel break (rule 5)."""
    async with uow:
        strategy = await get_strategy(uow, cmd.strategy_id, cmd.client_id, lock=True)
        check_not_archived(strategy)
        symbol = await get_symbol(uow, strategy.symbol_id)
        exchange = await exchange.for_client(strategy.client_id)

        channel = cmd.channel_from(strategy.channel)
        channel.validate(exchange.fee_rate(symbol), symbol.tick_size)
        if cmd.name is not None:
            name = check_name(cmd.name)
            other = await uow.strategies.find(strategy.client_id, name)
            if other is not None and other.id != strategy.id:
                raise ValidationError(f"A strategy named {name!r} already exists.", field="name")
            strategy.name = name
        strategy.change_channel(channel)
        record_event(uow, strategy, EventType.STRATEGY_UPDATED, "Strategy updated and re-armed.")
        await uow.commit()
    return strategy


async def set_strategy_active(cmd: cmds.SetStrategyActive, uow: UnitOfWork) -> Strategy:
    """Activate or pause a strategy. Activation arms it and clears a channel break (rules 1, 5).

    A paused strategy makes no entries; its scheduled sells and exits keep protecting profit."""
    async with uow:
        strategy = await get_strategy(uow, cmd.strategy_id, cmd.client_id, lock=True)
        check_not_archived(strategy)
        if cmd.is_active:
            strategy.activate()
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
