"""Queries (SPEC §5). Thin: arguments -> a read of `domain.views` -> `Type.from_domain`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, cast

import strawberry

from domain import model, views
from domain.services import auth
from gql_api.alerts import AlertQueries
from gql_api.backtest import BacktestQueries
from gql_api.context import Info
from gql_api.permissions import IsAuthenticated
from gql_api.types import (
    DEFAULT_PAGE,
    After,
    Candle,
    CapitalBalance,
    Client,
    Connection,
    EventTypes,
    First,
    Order,
    OrderStatus,
    Position,
    PositionsReport,
    PositionStatus,
    PriceQuote,
    ProfitReport,
    Strategy,
    StrategyEvent,
    Symbol,
    Trade,
    TradesReport,
    connection,
    page,
    parse_id,
)

__all__ = ["DEFAULT_PAGE", "After", "First", "OwnClient", "Query", "own_client", "page"]

OwnClient = Annotated[
    strawberry.ID | None,
    strawberry.argument(description="Client id: your own (the default). Another client's id is NOT_FOUND."),
]


def own_client(info: Info, client_id: strawberry.ID | None) -> int:
    """The client a request names, defaulting to the current one (the views refuse any other)."""
    if client_id is None:
        assert info.context.client_id is not None  # IsAuthenticated ran first
        return info.context.client_id
    return parse_id(client_id, "Client")


@strawberry.type(description="Read Criptoren's strategies, positions, trades, capital, reports and prices.")
class Query(BacktestQueries, AlertQueries):
    @strawberry.field(permission_classes=[IsAuthenticated], description="The client the access token acts for.")
    async def me(self, info: Info) -> Client:
        assert info.context.client_id is not None
        return Client.from_domain(await auth.current_client(info.context.read(), info.context.client_id))

    @strawberry.field(permission_classes=[IsAuthenticated], description="One strategy by id.")
    async def strategy(
        self, info: Info, id: Annotated[strawberry.ID, strawberry.argument(description="Strategy id.")]
    ) -> Strategy:
        async with info.context.read() as uow:
            found = await views.strategy(uow, parse_id(id, "Strategy"), info.context.client_id)
        return Strategy.from_domain(found)

    @strawberry.field(
        permission_classes=[IsAuthenticated],
        description="A client's strategies, newest first; archived ones only with includeArchived.",
    )
    async def strategies(
        self,
        info: Info,
        client_id: OwnClient = None,
        first: First = DEFAULT_PAGE,
        after: After = None,
        include_archived: Annotated[
            bool, strawberry.argument(description="Also the archived strategies (archiveStrategy).")
        ] = False,
    ) -> Connection[Strategy]:
        p = page(info, first, after)
        async with info.context.read() as uow:
            rows = await views.strategies(
                uow, p, own_client(info, client_id), info.context.client_id, include_archived=include_archived
            )
        return connection(list(rows), first, Strategy.from_domain)

    @strawberry.field(permission_classes=[IsAuthenticated], description="One position by id.")
    async def position(
        self, info: Info, id: Annotated[strawberry.ID, strawberry.argument(description="Position id.")]
    ) -> Position:
        async with info.context.read() as uow:
            found = await views.position(uow, parse_id(id, "Position"), info.context.client_id)
        return Position.from_domain(found)

    @strawberry.field(
        permission_classes=[IsAuthenticated],
        description="Positions, newest first, optionally of one status and one strategy.",
    )
    async def positions(
        self,
        info: Info,
        status: Annotated[PositionStatus | None, strawberry.argument(description="Only this status.")] = None,
        strategy_id: Annotated[
            strawberry.ID | None, strawberry.argument(description="Only this strategy's positions.")
        ] = None,
        first: First = DEFAULT_PAGE,
        after: After = None,
    ) -> Connection[Position]:
        p = page(info, first, after)
        async with info.context.read() as uow:
            rows = await views.positions(
                uow, p, info.context.client_id,
                status=model.PositionStatus(cast(str, status.value)) if status else None,
                strategy_id=parse_id(strategy_id, "Strategy") if strategy_id is not None else None,
            )  # fmt: skip
        return connection(list(rows), first, Position.from_domain)

    @strawberry.field(
        permission_classes=[IsAuthenticated], description="Positions waiting for their scheduled sell, newest first."
    )
    async def scheduled_sells(
        self, info: Info, first: First = DEFAULT_PAGE, after: After = None
    ) -> Connection[Position]:
        p = page(info, first, after)
        async with info.context.read() as uow:
            rows = await views.positions(uow, p, info.context.client_id, status=model.PositionStatus.SCHEDULED)
        return connection(list(rows), first, Position.from_domain)

    @strawberry.field(
        permission_classes=[IsAuthenticated],
        description="Executed trades, newest first, optionally of one symbol, strategy or position.",
    )
    async def trades(
        self,
        info: Info,
        symbol: Annotated[str | None, strawberry.argument(description="Only this symbol, e.g. BTCUSDT.")] = None,
        strategy_id: Annotated[strawberry.ID | None, strawberry.argument(description="Only this strategy.")] = None,
        position_id: Annotated[strawberry.ID | None, strawberry.argument(description="Only this position.")] = None,
        first: First = DEFAULT_PAGE,
        after: After = None,
    ) -> Connection[Trade]:
        p = page(info, first, after)
        async with info.context.read() as uow:
            rows = await views.trades(
                uow, p, info.context.client_id, symbol_name=symbol,
                strategy_id=parse_id(strategy_id, "Strategy") if strategy_id is not None else None,
                position_id=parse_id(position_id, "Position") if position_id is not None else None,
            )  # fmt: skip
        return connection(list(rows), first, Trade.from_domain)

    @strawberry.field(
        permission_classes=[IsAuthenticated],
        description="Exchange orders, newest first, optionally of one strategy, position or status: filled, "
        "resting (OPEN), rejected with the exchange's reason, unknown until reconciliation settles them.",
    )
    async def orders(
        self,
        info: Info,
        strategy_id: Annotated[strawberry.ID | None, strawberry.argument(description="Only this strategy's.")] = None,
        position_id: Annotated[strawberry.ID | None, strawberry.argument(description="Only this position's.")] = None,
        status: Annotated[OrderStatus | None, strawberry.argument(description="Only this status.")] = None,
        first: First = DEFAULT_PAGE,
        after: After = None,
    ) -> Connection[Order]:
        p = page(info, first, after)
        async with info.context.read() as uow:
            rows = await views.orders(
                uow, p, info.context.client_id,
                strategy_id=parse_id(strategy_id, "Strategy") if strategy_id is not None else None,
                position_id=parse_id(position_id, "Position") if position_id is not None else None,
                status=model.OrderStatus(cast(str, status.value)) if status else None,
            )  # fmt: skip
        return connection(list(rows), first, Order.from_domain)

    @strawberry.field(
        permission_classes=[IsAuthenticated],
        description="Events of all your strategies, newest first, optionally of some types: a history without "
        "a WebSocket (the positionEvents subscription delivers them live).",
    )
    async def events(
        self, info: Info, types: EventTypes = None, first: First = DEFAULT_PAGE, after: After = None
    ) -> Connection[StrategyEvent]:
        p = page(info, first, after)
        async with info.context.read() as uow:
            rows = await views.events(uow, p, info.context.client_id, types=types)
        return connection(list(rows), first, StrategyEvent.from_domain)

    @strawberry.field(
        permission_classes=[IsAuthenticated],
        description="A client's capital over its strategies in one quote asset: principal, committed, free, profit, "
        "total. Without `asset`, the only asset the client's capital is in (VALIDATION when there are several: "
        "amounts in different assets are never added; see capitalBalances).",
    )
    async def capital_balance(
        self,
        info: Info,
        client_id: OwnClient = None,
        asset: Annotated[
            str | None, strawberry.argument(description="Quote asset, e.g. USDT or BTC (default: the only one).")
        ] = None,
    ) -> CapitalBalance:
        async with info.context.read() as uow:
            found, ledger = await views.capital_balance(uow, own_client(info, client_id), info.context.client_id, asset)
        return CapitalBalance.from_domain(ledger, found)

    @strawberry.field(
        permission_classes=[IsAuthenticated],
        description="A client's capital per quote asset (one entry per asset its strategies trade in).",
    )
    async def capital_balances(self, info: Info, client_id: OwnClient = None) -> list[CapitalBalance]:
        async with info.context.read() as uow:
            ledgers = await views.capital_balances(uow, own_client(info, client_id), info.context.client_id)
        return [CapitalBalance.from_domain(ledger, asset) for asset, ledger in sorted(ledgers.items())]

    @strawberry.field(permission_classes=[IsAuthenticated], description="Accumulated profit of a strategy.")
    async def profit_report(
        self, info: Info, strategy_id: Annotated[strawberry.ID, strawberry.argument(description="Strategy id.")]
    ) -> ProfitReport:
        async with info.context.read() as uow:
            report = await views.profit_report(uow, parse_id(strategy_id, "Strategy"), info.context.client_id)
        return ProfitReport.from_domain(report)

    @strawberry.field(
        permission_classes=[IsAuthenticated],
        description="Open, scheduled and recently closed positions with their results.",
    )
    async def positions_report(
        self, info: Info, days: Annotated[int, strawberry.argument(description="Period in days (1 to 3650).")] = 30
    ) -> PositionsReport:
        async with info.context.read() as uow:
            report = await views.positions_report(uow, days, info.context.client_id, datetime.now(UTC))
        return PositionsReport.from_domain(report)

    @strawberry.field(
        permission_classes=[IsAuthenticated],
        description="Trade history summary of one symbol (use `trades` for the trades themselves).",
    )
    async def trades_report(
        self, info: Info, symbol: Annotated[str, strawberry.argument(description="Symbol, e.g. BTCUSDT.")]
    ) -> TradesReport:
        async with info.context.read() as uow:
            report = await views.trades_report(uow, symbol, info.context.client_id)
        return TradesReport.from_domain(report)

    @strawberry.field(description="Candles of a symbol, oldest first (the latest `limit`).")
    async def price_history(
        self,
        info: Info,
        symbol: Annotated[str, strawberry.argument(description="Symbol, e.g. BTCUSDT.")],
        interval: Annotated[str, strawberry.argument(description="Candle interval: 1m, 5m, 15m, 1h, 4h, 1d…")] = "4h",
        limit: Annotated[int, strawberry.argument(description="Number of candles (1 to 1000).")] = 100,
    ) -> list[Candle]:
        async with info.context.read() as uow:
            candles = await views.price_history(uow, symbol, interval, limit)
        return [Candle.from_domain(c) for c in candles]

    @strawberry.field(description="The last known price of a symbol.")
    async def current_price(
        self, info: Info, symbol: Annotated[str, strawberry.argument(description="Symbol, e.g. BTCUSDT.")]
    ) -> PriceQuote:
        async with info.context.read() as uow:
            found, quote = await views.current_price(uow, info.context.app.prices, symbol)
        return PriceQuote(symbol=found.symbol, price=quote[0] if quote else None, at=quote[1] if quote else None)

    @strawberry.field(description="The symbols Criptoren can trade, with their exchange filters.")
    async def symbols(self, info: Info) -> list[Symbol]:
        async with info.context.read() as uow:
            return [Symbol.from_domain(s) for s in await uow.symbols.list()]
