"""Use cases of the ledger: principal in, segregated profit out (rules 2, 7)."""

from __future__ import annotations

from domain import commands as cmds
from domain.errors import (
    InsufficientCapital,
)
from domain.events import EventType
from domain.model import (
    AllocationKind,
    CapitalAllocation,
)
from domain.ports import UnitOfWork
from domain.services.common import (
    check_amount,
    fmt,
    get_strategy,
    record_event,
    utcnow,
)


async def allocate_capital(cmd: cmds.AllocateCapital, uow: UnitOfWork) -> CapitalAllocation:
    """Add principal to a strategy's bankroll (rule 2)."""
    check_amount("amount", cmd.amount)
    async with uow:
        strategy = await get_strategy(uow, cmd.strategy_id, cmd.client_id, lock=True)
        assert strategy.id is not None
        allocation = CapitalAllocation(
            client_id=strategy.client_id,
            strategy_id=strategy.id,
            amount=cmd.amount,
            kind=AllocationKind.DEPOSIT,
            is_profit=False,
            note=cmd.note,
            created_at=utcnow(),
        )
        uow.allocations.add(allocation)
        await uow.flush()
        record_event(uow, strategy, EventType.CAPITAL_ALLOCATED, f"{fmt(cmd.amount)} allocated.", amount=cmd.amount)
        await uow.commit()
    return allocation


async def withdraw_profit(cmd: cmds.WithdrawProfit, uow: UnitOfWork) -> CapitalAllocation:
    """Pay out segregated profit (rule 7); never more than the strategy's profit balance."""
    check_amount("amount", cmd.amount)
    async with uow:
        strategy = await get_strategy(uow, cmd.strategy_id, cmd.client_id, lock=True)
        assert strategy.id is not None
        ledger = await uow.allocations.ledger(strategy.id)
        if cmd.amount > ledger.profit:
            raise InsufficientCapital(
                f"Cannot withdraw {fmt(cmd.amount)}: the strategy's profit balance is {fmt(ledger.profit)}.",
                available=ledger.profit,
            )
        allocation = CapitalAllocation(
            client_id=strategy.client_id,
            strategy_id=strategy.id,
            amount=-cmd.amount,
            kind=AllocationKind.PROFIT_WITHDRAWAL,
            is_profit=True,
            created_at=utcnow(),
        )
        uow.allocations.add(allocation)
        await uow.flush()
        record_event(
            uow, strategy, EventType.PROFIT_WITHDRAWN, f"{fmt(cmd.amount)} of profit withdrawn.", amount=cmd.amount
        )
        await uow.commit()
    return allocation
