"""Order mutations: manual buy and sell, schedule and cancel scheduled sells (SPEC §4 rules 6, 8)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

import strawberry

from domain import commands as cmds
from domain import services
from gql_api.audit import Audited
from gql_api.context import Info
from gql_api.permissions import IsAuthenticated
from gql_api.types import Position, parse_id


@strawberry.type
class OrderMutations:
    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        extensions=[Audited()],
        description="Buy at market for a strategy, by quote amount or by quantity (exactly one). Checked against "
        "the strategy's free principal (INSUFFICIENT_CAPITAL) and the exchange filters (FILTER_FAILURE).",
    )
    async def buy(
        self,
        info: Info,
        strategy_id: Annotated[strawberry.ID, strawberry.argument(description="Strategy id.")],
        quote_amount: Annotated[
            Decimal | None, strawberry.argument(description='Quote asset to spend, e.g. "100" USDT.')
        ] = None,
        quantity: Annotated[Decimal | None, strawberry.argument(description="Base asset quantity to buy.")] = None,
    ) -> Position:
        cmd = cmds.Buy(parse_id(strategy_id, "Strategy"), quote_amount, quantity, info.context.client_id)
        app = info.context.app
        return Position.from_domain(await services.buy(cmd, app.uow(), app.exchange, app.prices))

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        extensions=[Audited()],
        description="Sell a position now, never below its minimum sell price (WOULD_SELL_AT_LOSS) unless acceptLoss "
        "is true (a market sell whose loss reduces principal); or, with isScheduled, schedule it at its minimum "
        "sell price.",
    )
    async def sell(
        self,
        info: Info,
        position_id: Annotated[strawberry.ID, strawberry.argument(description="Position id.")],
        is_scheduled: Annotated[
            bool, strawberry.argument(description="Schedule at the minimum sell price instead of selling now.")
        ] = False,
        accept_loss: Annotated[
            bool, strawberry.argument(description="Emergency exit: sell at market even below the minimum sell price.")
        ] = False,
    ) -> Position:
        cmd = cmds.Sell(parse_id(position_id, "Position"), is_scheduled, accept_loss, info.context.client_id)
        app = info.context.app
        return Position.from_domain(await services.sell(cmd, app.uow(), app.exchange, app.prices))

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        extensions=[Audited()],
        description="Schedule an open position to sell at its minimum sell price for minProfit (default: the "
        "position's), rounded up to the tick. At or below the market price it sells at once, at the market's "
        "price (never below that limit); above it, when the price reaches it (SPEC §4 rule 6).",
    )
    async def schedule_sell(
        self,
        info: Info,
        position_id: Annotated[strawberry.ID, strawberry.argument(description="Position id.")],
        min_profit: Annotated[
            Decimal | None, strawberry.argument(description="Minimum profit in %, after fees (>= 0).")
        ] = None,
    ) -> Position:
        cmd = cmds.ScheduleSell(parse_id(position_id, "Position"), min_profit, info.context.client_id)
        app = info.context.app
        return Position.from_domain(await services.schedule_sell(cmd, app.uow(), app.exchange))

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        extensions=[Audited()],
        description="Cancel a scheduled sell: the position is open again.",
    )
    async def cancel_scheduled_sell(
        self, info: Info, id: Annotated[strawberry.ID, strawberry.argument(description="Position id.")]
    ) -> Position:
        cmd = cmds.CancelScheduledSell(parse_id(id, "Position"), info.context.client_id)
        app = info.context.app
        return Position.from_domain(await services.cancel_scheduled_sell(cmd, app.uow(), app.exchange))
