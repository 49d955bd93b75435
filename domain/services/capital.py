"""Use cases of the ledger: principal in and back out, segregated profit out (rules 2, 7, 11)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from domain import commands as cmds
from domain.errors import (
    ExchangeError,
    InsufficientCapital,
)
from domain.events import EventType
from domain.model import (
    AllocationKind,
    CapitalAllocation,
    Strategy,
)
from domain.ports import Exchange, UnitOfWork
from domain.services.common import (
    check_amount,
    check_not_archived,
    fmt,
    get_strategy,
    get_symbol,
    record_event,
    utcnow,
)
from domain.services.strategies import warn_if_entries_fail


@dataclass(frozen=True)
class Allocated:
    """A capital movement and what the user should know of its effect (rule 11 warnings)."""

    allocation: CapitalAllocation
    warnings: tuple[str, ...] = ()


async def _book(
    uow: UnitOfWork,
    strategy: Strategy,
    amount: Decimal,
    kind: AllocationKind,
    event: EventType,
    message: str,
    note: str | None = None,
) -> CapitalAllocation:
    """A ledger entry of `strategy` (signed `amount`; profit or principal by its `kind`) and its event."""
    assert strategy.id is not None
    allocation = CapitalAllocation(
        client_id=strategy.client_id,
        strategy_id=strategy.id,
        amount=amount,
        kind=kind,
        is_profit=kind.is_profit,
        note=note,
        created_at=utcnow(),
    )
    uow.allocations.add(allocation)
    await uow.flush()
    record_event(uow, strategy, event, message, amount=abs(amount))
    return allocation


async def _entries_warnings(uow: UnitOfWork, exchange: Exchange, strategy: Strategy) -> tuple[str, ...]:
    """Rule 11 after a movement of principal: when the entries sized by rule 2 on the principal as it
    now is would not work — too small for the exchange's filters, or so small that lot rounding pushes
    min_sell above X — the warning, also recorded as an event (`warn_if_entries_fail`); () otherwise,
    and for an archived strategy, which makes no more entries."""
    assert strategy.id is not None
    if strategy.is_archived:
        return ()
    symbol = await get_symbol(uow, strategy.symbol_id)
    try:
        fee_rate = (await exchange.for_client(strategy.client_id)).fee_rate(symbol)
    except ExchangeError:
        fee_rate = exchange.fee_rate(symbol)  # the account cannot answer now: the default rate
    principal = await uow.allocations.principal(strategy.id)
    warning = warn_if_entries_fail(uow, strategy, symbol, principal, fee_rate)
    return () if warning is None else (warning,)


async def allocate_capital(cmd: cmds.AllocateCapital, uow: UnitOfWork, exchange: Exchange) -> Allocated:
    """Add principal to a strategy's bankroll (rule 2). When the entries it sizes would not work —
    too small for the exchange's filters, or so small that lot rounding pushes min_sell above X —
    the allocation stands but says so: a warning in the result and an event (rule 11)."""
    check_amount("amount", cmd.amount)
    async with uow:
        strategy = await get_strategy(uow, cmd.strategy_id, cmd.client_id, lock=True)
        check_not_archived(strategy)
        assert strategy.id is not None
        allocation = await _book(
            uow, strategy, cmd.amount, AllocationKind.DEPOSIT, EventType.CAPITAL_ALLOCATED,
            f"{fmt(cmd.amount)} allocated.", cmd.note,
        )  # fmt: skip
        warnings = await _entries_warnings(uow, exchange, strategy)
        await uow.commit()
    return Allocated(allocation, warnings)


async def withdraw_capital(cmd: cmds.WithdrawCapital, uow: UnitOfWork, exchange: Exchange) -> Allocated:
    """Take principal back (rule 2): at most the free principal — the bankroll minus the cost of the
    open and scheduled positions, which stays theirs. Read under the strategy's row lock, which every
    entry and buy takes too, so a concurrent entry cannot spend what is withdrawn (nor the reverse).
    Entries from the next one on are sized on the smaller bankroll. Also from an archived strategy.
    When what remains makes the entries too small to work (rule 11: the filters refuse them, or lot
    rounding pushes min_sell above X), the withdrawal stands but says so, as `allocate_capital` does:
    a warning in the result and an event."""
    check_amount("amount", cmd.amount)
    async with uow:
        strategy = await get_strategy(uow, cmd.strategy_id, cmd.client_id, lock=True)
        assert strategy.id is not None
        ledger = await uow.allocations.ledger(strategy.id)
        if cmd.amount > ledger.free:
            raise InsufficientCapital(
                f"Cannot withdraw {fmt(cmd.amount)}: the strategy's free principal is {fmt(ledger.free)} "
                f"(principal {fmt(ledger.principal)}, of which {fmt(ledger.committed)} is held by its open and "
                "scheduled positions).",
                available=fmt(ledger.free),
            )
        allocation = await _book(
            uow, strategy, -cmd.amount, AllocationKind.WITHDRAWAL, EventType.CAPITAL_WITHDRAWN,
            f"{fmt(cmd.amount)} of principal withdrawn.",
        )  # fmt: skip
        warnings = await _entries_warnings(uow, exchange, strategy)
        await uow.commit()
    return Allocated(allocation, warnings)


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
        allocation = await _book(
            uow, strategy, -cmd.amount, AllocationKind.PROFIT_WITHDRAWAL, EventType.PROFIT_WITHDRAWN,
            f"{fmt(cmd.amount)} of profit withdrawn.",
        )  # fmt: skip
        await uow.commit()
    return allocation
