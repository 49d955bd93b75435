"""Read side: queries for the API, scoped to a client when one is given. They never commit.

Objects of another client are reported exactly as missing ones (`NotFound`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from domain.errors import NotFound, ValidationError
from domain.events import EventType
from domain.model import (
    Candle,
    Ledger,
    Order,
    OrderStatus,
    Position,
    PositionStatus,
    Strategy,
    StrategyEvent,
    Symbol,
)
from domain.ports import ExportedTrade, Page, PriceSource, UnitOfWork, UnitOfWorkFactory
from domain.rows import PositionRow, StrategyRow, TradeRow

MAX_HISTORY = 1000
EXPORT_PAGE = 500  # trades read per statement by the export: its memory does not grow with the file


async def strategy(uow: UnitOfWork, strategy_id: int, client_id: int | None) -> Strategy:
    found = await uow.strategies.get(strategy_id)
    if found is None or (client_id is not None and found.client_id != client_id):
        raise NotFound(f"Strategy {strategy_id} not found.", entity="Strategy", id=strategy_id)
    return found


async def position(uow: UnitOfWork, position_id: int, client_id: int | None) -> Position:
    found = await uow.positions.get(position_id)
    if found is None or (client_id is not None and found.client_id != client_id):
        raise NotFound(f"Position {position_id} not found.", entity="Position", id=position_id)
    return found


async def client_exists(uow: UnitOfWork, client_id: int, current: int | None) -> None:
    if (current is not None and client_id != current) or await uow.clients.get(client_id) is None:
        raise NotFound(f"Client {client_id} not found.", entity="Client", id=client_id)


async def symbol(uow: UnitOfWork, name: str) -> Symbol:
    found = await uow.symbols.get_by_name(name.upper())
    if found is None:
        raise NotFound(f"Symbol {name} is not known.", entity="Symbol", id=name)
    return found


async def capital_balances(uow: UnitOfWork, client_id: int, current: int | None) -> dict[str, Ledger]:
    """A client's capital per quote asset (SPEC §4b: totals per asset, never BTC added to USDT)."""
    await client_exists(uow, client_id, current)
    return await uow.allocations.client_ledgers(client_id)


async def capital_balance(
    uow: UnitOfWork, client_id: int, current: int | None, asset: str | None = None
) -> tuple[str | None, Ledger]:
    """A client's capital in one quote asset: the one asked for, else the only one it holds (none
    yet: zeros). A client with capital in several assets must say which."""
    ledgers = await capital_balances(uow, client_id, current)
    if asset is not None:
        asset = asset.strip().upper()
        return asset, ledgers.get(asset, Ledger(principal=Decimal(0), committed=Decimal(0), profit=Decimal(0)))
    if len(ledgers) > 1:
        raise ValidationError(
            f"This client's capital is in {len(ledgers)} assets ({', '.join(sorted(ledgers))}): give asset, or "
            "read capitalBalances.",
            field="asset",
            assets=sorted(ledgers),
        )
    if not ledgers:
        return None, Ledger(principal=Decimal(0), committed=Decimal(0), profit=Decimal(0))
    return next(iter(ledgers.items()))


@dataclass(frozen=True)
class ProfitReport:
    strategy: Strategy
    ledger: Ledger
    realized_profit: Decimal  # all realised results, losses included
    withdrawn_profit: Decimal
    closed_positions: int
    winning_positions: int
    losing_positions: int
    live_positions: int
    fees_paid: Decimal  # in the quote asset
    quote_asset: str = ""  # the asset of every amount here (the strategy's symbol's quote asset)


@dataclass(frozen=True)
class PositionsReport:
    days: int
    since: datetime
    open: int
    scheduled: int
    closed: int  # closed within the period
    opened: int  # opened within the period
    realized_profit: Decimal  # of positions closed within the period
    committed: Decimal  # cost of open and scheduled positions
    positions: Sequence[PositionRow]


@dataclass(frozen=True)
class TradesReport:
    symbol: Symbol
    trades: int
    buys: int
    sells: int
    bought_quantity: Decimal
    sold_quantity: Decimal
    quote_spent: Decimal
    quote_received: Decimal
    realized_profit: Decimal
    first_trade_at: datetime | None
    last_trade_at: datetime | None


async def profit_report(uow: UnitOfWork, strategy_id: int, client_id: int | None) -> ProfitReport:
    found = await strategy(uow, strategy_id, client_id)
    assert found.id is not None
    summary = await uow.reports.strategy_profit(found.id)
    ledger = await uow.allocations.ledger(found.id)
    traded = await uow.symbols.get(found.symbol_id)
    return ProfitReport(strategy=found, ledger=ledger, quote_asset=traded.quote_asset if traded else "", **summary)


async def positions_report(uow: UnitOfWork, days: int, client_id: int | None, now: datetime) -> PositionsReport:
    if not 1 <= days <= 3650:
        raise ValidationError("days must be between 1 and 3650.", field="days")
    since = now - timedelta(days=days)
    summary = await uow.reports.positions_summary(client_id, since)
    positions = await uow.batch.positions_page(Page(MAX_HISTORY), client_id=client_id, since=since)
    return PositionsReport(days=days, since=since, positions=positions, **summary)


async def trades_report(uow: UnitOfWork, symbol_name: str, client_id: int | None) -> TradesReport:
    found = await symbol(uow, symbol_name)
    assert found.id is not None
    summary = await uow.reports.trades_summary(found.id, client_id)
    return TradesReport(symbol=found, **summary)


async def price_history(uow: UnitOfWork, symbol_name: str, interval: str, limit: int) -> Sequence[Candle]:
    from domain.channel import TIMEFRAMES

    if interval not in TIMEFRAMES:
        raise ValidationError(f"interval must be one of {', '.join(TIMEFRAMES)}.", field="interval")
    if not 1 <= limit <= MAX_HISTORY:
        raise ValidationError(f"limit must be between 1 and {MAX_HISTORY}.", field="limit")
    found = await symbol(uow, symbol_name)
    assert found.id is not None
    return await uow.candles.history(found.id, interval, limit)


async def current_price(
    uow: UnitOfWork, prices: PriceSource, symbol_name: str
) -> tuple[Symbol, tuple[Decimal, datetime] | None]:
    found = await symbol(uow, symbol_name)
    return found, await prices.current_price(found)


async def trades(
    uow: UnitOfWork,
    page: Page,
    client_id: int | None,
    *,
    symbol_name: str | None = None,
    strategy_id: int | None = None,
    position_id: int | None = None,
) -> Sequence[TradeRow]:
    symbol_id = None
    if symbol_name is not None:
        symbol_id = (await symbol(uow, symbol_name)).id
    if strategy_id is not None:
        await strategy(uow, strategy_id, client_id)
    if position_id is not None:
        await position(uow, position_id, client_id)
    return await uow.batch.trades_page(
        page, client_id=client_id, symbol_id=symbol_id, strategy_id=strategy_id, position_id=position_id
    )


async def positions(
    uow: UnitOfWork,
    page: Page,
    client_id: int | None,
    *,
    status: PositionStatus | None = None,
    strategy_id: int | None = None,
) -> Sequence[PositionRow]:
    if strategy_id is not None:
        await strategy(uow, strategy_id, client_id)
    return await uow.batch.positions_page(page, client_id=client_id, status=status, strategy_id=strategy_id)


async def strategies(
    uow: UnitOfWork, page: Page, client_id: int, current: int | None, *, include_archived: bool = False
) -> Sequence[StrategyRow]:
    await client_exists(uow, client_id, current)
    return await uow.batch.strategies_page(client_id, page, include_archived=include_archived)


async def orders(
    uow: UnitOfWork,
    page: Page,
    client_id: int | None,
    *,
    strategy_id: int | None = None,
    position_id: int | None = None,
    status: OrderStatus | None = None,
) -> Sequence[Order]:
    """The client's exchange orders, newest first: every order Criptoren recorded, whatever became of
    it (filled, resting, rejected with the exchange's reason, unknown until reconciliation)."""
    if strategy_id is not None:
        await strategy(uow, strategy_id, client_id)
    if position_id is not None:
        await position(uow, position_id, client_id)
    return await uow.orders.list(
        page,
        client_id=client_id,
        strategy_id=strategy_id,
        position_id=position_id,
        statuses=None if status is None else (status,),
    )


EVENT_TYPES = tuple(t.value for t in EventType)


def check_event_types(types: Sequence[str] | None) -> tuple[str, ...] | None:
    """A type filter of events: known types only (a typo would silently match nothing)."""
    if types is None:
        return None
    unknown = sorted(set(types) - set(EVENT_TYPES))
    if unknown or not types:
        raise ValidationError(
            f"Unknown event types: {', '.join(unknown) or '(none given)'}. Known: {', '.join(EVENT_TYPES)}.",
            field="types",
        )
    return tuple(sorted(set(types)))


async def events(
    uow: UnitOfWork, page: Page, client_id: int | None, *, types: Sequence[str] | None = None
) -> Sequence[StrategyEvent]:
    """Events of all the client's strategies, newest first, optionally of some types only."""
    return await uow.events.list(page, client_id=client_id, types=check_event_types(types))


@dataclass(frozen=True)
class TradeExport:
    """What a trade export covers: a client's fills executed in [start, end), of one strategy or all."""

    client_id: int
    start: datetime | None = None
    end: datetime | None = None
    strategy_id: int | None = None


async def check_trade_export(uow: UnitOfWork, export: TradeExport, current: int | None) -> None:
    """Refuse an export that cannot run (before anything is sent): another client, a strategy that
    is not the client's, an empty period."""
    await client_exists(uow, export.client_id, current)
    if export.strategy_id is not None:
        await strategy(uow, export.strategy_id, export.client_id)
    if export.start is not None and export.end is not None and export.start >= export.end:
        raise ValidationError("from must be before to.", field="from")


async def trade_export(
    uow_factory: UnitOfWorkFactory, export: TradeExport, page_size: int = EXPORT_PAGE
) -> AsyncIterator[Sequence[ExportedTrade]]:
    """The export's fills in time order, a page at a time, each page read in a short transaction of
    its own and resumed after the previous page's last (time, id): memory stays that of one page
    however long the history, and no transaction stays open while a slow reader downloads."""
    after: tuple[datetime, int] | None = None
    while True:
        async with uow_factory() as uow:
            rows = await uow.trades.export_page(
                export.client_id, after, page_size, start=export.start, end=export.end, strategy_id=export.strategy_id
            )
        if rows:
            yield rows
        if len(rows) < page_size:
            return
        after = (rows[-1].executed_at, rows[-1].id)


async def orders_by_status(uow: UnitOfWork) -> dict[str, int]:
    """How many orders are in each status (the API's metrics)."""
    async with uow:
        return await uow.orders.count_by_status()


async def reference_price(uow: UnitOfWork, symbol_name: str) -> tuple[Decimal, Decimal] | None:
    """A symbol's last stored close and its price tick (where a synthetic walk of it starts)."""
    async with uow:
        found = await uow.symbols.get_by_name(symbol_name)
        if found is None or found.id is None:
            return None
        last = await uow.candles.latest_close(found.id)
    return None if last is None else (last[0], found.tick_size)
