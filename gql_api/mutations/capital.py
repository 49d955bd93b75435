"""Capital mutations: allocate principal, take principal back, withdraw profit."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

import strawberry

from domain import commands as cmds
from domain import services
from gql_api.audit import Audited
from gql_api.context import Info
from gql_api.permissions import IsAuthenticated
from gql_api.types import CapitalAllocation, parse_id


@strawberry.type
class CapitalMutations:
    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        extensions=[Audited()],
        description="Add principal (quote asset) to a strategy's bankroll. When the entries it sizes would not "
        "work after lot rounding, it still succeeds and says so in `warnings` (SPEC §4 rule 11).",
    )
    async def allocate_capital(
        self,
        info: Info,
        strategy_id: Annotated[strawberry.ID, strawberry.argument(description="Strategy id.")],
        amount: Annotated[Decimal, strawberry.argument(description='Positive amount in the quote asset, e.g. "2000".')],
        note: Annotated[str | None, strawberry.argument(description="Free text kept with the allocation.")] = None,
    ) -> CapitalAllocation:
        cmd = cmds.AllocateCapital(parse_id(strategy_id, "Strategy"), amount, info.context.client_id, note)
        app = info.context.app
        done = await services.allocate_capital(cmd, app.uow(), app.exchange)
        return CapitalAllocation.from_domain(done.allocation, done.warnings)

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        extensions=[Audited()],
        description="Take principal back from a strategy: at most its free principal (what its open and "
        "scheduled positions hold stays theirs; INSUFFICIENT_CAPITAL beyond). Entries from the next one on are "
        "sized on the smaller bankroll. Recorded in the ledger as a withdrawal (a negative amount). When the "
        "entries sized on what remains would not work after lot rounding, it still succeeds and says so in "
        "`warnings` (SPEC §4 rule 11).",
    )
    async def withdraw_capital(
        self,
        info: Info,
        strategy_id: Annotated[strawberry.ID, strawberry.argument(description="Strategy id.")],
        amount: Annotated[Decimal, strawberry.argument(description="Positive amount in the quote asset.")],
    ) -> CapitalAllocation:
        cmd = cmds.WithdrawCapital(parse_id(strategy_id, "Strategy"), amount, info.context.client_id)
        app = info.context.app
        done = await services.withdraw_capital(cmd, app.uow(), app.exchange)
        return CapitalAllocation.from_domain(done.allocation, done.warnings)

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        extensions=[Audited()],
        description="Pay out segregated profit; at most the strategy's profit balance.",
    )
    async def withdraw_profit(
        self,
        info: Info,
        strategy_id: Annotated[strawberry.ID, strawberry.argument(description="Strategy id.")],
        amount: Annotated[Decimal, strawberry.argument(description="Positive amount in the quote asset.")],
    ) -> CapitalAllocation:
        cmd = cmds.WithdrawProfit(parse_id(strategy_id, "Strategy"), amount, info.context.client_id)
        return CapitalAllocation.from_domain(await services.withdraw_profit(cmd, info.context.app.uow()))
