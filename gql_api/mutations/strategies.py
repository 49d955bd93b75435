"""Strategy mutations: create, update, activate/pause, archive."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

import strawberry

from domain import channel as ch
from domain import commands as cmds
from domain import services
from domain.channel import Channel
from gql_api.audit import Audited
from gql_api.context import Info
from gql_api.permissions import IsAuthenticated
from gql_api.types import Strategy, parse_id


@strawberry.input(description="A new channel strategy. Defaults follow the plan: p=20, b=2, s=2, m=0.5, 4h.")
class CreateStrategyInput:
    client_id: strawberry.ID | None = strawberry.field(
        default=None, description="Owner client id: your own (the default). Another client's id is NOT_FOUND."
    )
    symbol: str = strawberry.field(description="Symbol, e.g. BTCUSDT.")
    name: str = strawberry.field(description="Name, unique per client (1 to 100 characters).")
    base_price: Decimal = strawberry.field(description="B: the channel's floor (0 < B <= 1e15, at most 18 decimals).")
    top_price: Decimal = strawberry.field(
        description="T: the channel's ceiling, above B (at most 1e15, at most 18 decimals)."
    )
    capital_percentage: Decimal = strawberry.field(
        default=ch.DEFAULT_CAPITAL_PERCENTAGE,
        description="p: share of the bankroll per entry, in % (0 < p <= 100, at most 4 decimals).",
    )
    buy_threshold: Decimal = strawberry.field(
        default=ch.DEFAULT_BUY_THRESHOLD, description="b: entry level above B, in % (0 < b < 100, at most 4 decimals)."
    )
    sell_threshold: Decimal = strawberry.field(
        default=ch.DEFAULT_SELL_THRESHOLD, description="s: exit level under T, in % (0 <= s < 100, at most 4 decimals)."
    )
    min_profit: Decimal = strawberry.field(
        default=ch.DEFAULT_MIN_PROFIT,
        description="m: minimum profit per sell, in % (0 <= m < 1000, at most 4 decimals).",
    )
    timeframe: str = strawberry.field(default=ch.DEFAULT_TIMEFRAME, description="Candle timeframe for channel breaks.")
    is_active: bool = strawberry.field(default=True, description="Start active (armed).")


@strawberry.input(description="Changes to a strategy; omitted fields keep their value. Updating re-arms it.")
class UpdateStrategyInput:
    name: str | None = strawberry.field(default=None, description="New name.")
    base_price: Decimal | None = strawberry.field(default=None, description="New floor B.")
    top_price: Decimal | None = strawberry.field(default=None, description="New ceiling T.")
    capital_percentage: Decimal | None = strawberry.field(default=None, description="New p.")
    buy_threshold: Decimal | None = strawberry.field(default=None, description="New b.")
    sell_threshold: Decimal | None = strawberry.field(default=None, description="New s.")
    min_profit: Decimal | None = strawberry.field(default=None, description="New m (for new positions).")
    timeframe: str | None = strawberry.field(default=None, description="New timeframe.")


@strawberry.type
class StrategyMutations:
    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        extensions=[Audited()],
        description="Create a channel strategy. Refused (VALIDATION) when the channel cannot yield minProfit after "
        "fees; the error names the smallest workable topPrice.",
    )
    async def create_strategy(
        self, info: Info, input: Annotated[CreateStrategyInput, strawberry.argument(description="The strategy.")]
    ) -> Strategy:
        assert info.context.client_id is not None  # IsAuthenticated ran first
        client_id = info.context.client_id if input.client_id is None else parse_id(input.client_id, "Client")
        if client_id != info.context.client_id:
            client_id = -1  # another client's id reads as unknown
        cmd = cmds.CreateStrategy(
            client_id=client_id, symbol=input.symbol, name=input.name, is_active=input.is_active,
            channel=Channel(
                input.base_price, input.top_price, input.capital_percentage, input.buy_threshold,
                input.sell_threshold, input.min_profit, input.timeframe,
            ),
        )  # fmt: skip
        app = info.context.app
        return Strategy.from_domain(await services.create_strategy(cmd, app.uow(), app.exchange))

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        extensions=[Audited()],
        description="Change a strategy's channel or parameters. Re-arms it and clears a channel break.",
    )
    async def update_strategy(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="Strategy id.")],
        input: Annotated[UpdateStrategyInput, strawberry.argument(description="The changes.")],
    ) -> Strategy:
        cmd = cmds.UpdateStrategy(
            strategy_id=parse_id(id, "Strategy"), client_id=info.context.client_id, name=input.name,
            base_price=input.base_price, top_price=input.top_price, capital_percentage=input.capital_percentage,
            buy_threshold=input.buy_threshold, sell_threshold=input.sell_threshold, min_profit=input.min_profit,
            timeframe=input.timeframe,
        )  # fmt: skip
        app = info.context.app
        return Strategy.from_domain(await services.update_strategy(cmd, app.uow(), app.exchange))

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        extensions=[Audited()],
        description="Activate (arms it, clears a channel break) or pause (no entries; exits and scheduled sells "
        "go on).",
    )
    async def set_strategy_active(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="Strategy id.")],
        is_active: Annotated[bool, strawberry.argument(description="True to activate, false to pause.")],
    ) -> Strategy:
        cmd = cmds.SetStrategyActive(parse_id(id, "Strategy"), is_active, info.context.client_id)
        return Strategy.from_domain(await services.set_strategy_active(cmd, info.context.app.uow()))

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        extensions=[Audited()],
        description="Retire a strategy: it stops trading, leaves the `strategies` list (includeArchived shows it) "
        "and frees its name; its history, positions, trades and ledger stay, and its principal and profit can "
        "still be withdrawn. Refused (INVALID_STATE, naming them) while it holds open or scheduled positions or "
        "unsettled orders.",
    )
    async def archive_strategy(
        self, info: Info, id: Annotated[strawberry.ID, strawberry.argument(description="Strategy id.")]
    ) -> Strategy:
        cmd = cmds.ArchiveStrategy(parse_id(id, "Strategy"), info.context.client_id)
        return Strategy.from_domain(await services.archive_strategy(cmd, info.context.app.uow()))
