"""Taking principal back on PostgreSQL, racing entries and buys (rule 2): withdrawals and buys of one
strategy run at once, each in its own transaction on its own connection. The strategy's row lock,
which every money service takes, serialises them: nothing is ever overdrawn, the ledger holds
exactly the withdrawals that succeeded, and an entry is sized on the bankroll as it was when it
ran."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import text

from domain import commands as cmds
from domain import services
from domain.adapters.bootstrap import App
from domain.adapters.seed import seed_demo
from domain.channel import Channel
from domain.errors import InsufficientCapital
from domain.model import CapitalAllocation, OrderPurpose, OrderStatus, PositionStatus
from domain.ports import Page

PRINCIPAL = Decimal(1000)


async def test_withdrawals_racing_buys_and_an_entry_never_overdraw(db: App) -> None:
    await seed_demo(db.uow, db.exchange)
    strategy = await services.create_strategy(
        cmds.CreateStrategy(1, "ETHUSDT", "ETH race", Channel(Decimal(2400), Decimal(2800))), db.uow(), db.exchange
    )
    assert strategy.id is not None
    sid = strategy.id
    await services.allocate_capital(cmds.AllocateCapital(sid, PRINCIPAL), db.uow(), db.exchange)
    db.price_book.set("ETHUSDT", Decimal(2450))

    async def buy() -> bool:
        try:
            await services.buy(cmds.Buy(sid, quote_amount=Decimal(150)), db.uow(), db.exchange, db.prices)
        except InsufficientCapital:
            return False
        return True

    async def withdraw() -> CapitalAllocation | None:
        try:
            done = await services.withdraw_capital(cmds.WithdrawCapital(sid, Decimal(100)), db.uow(), db.exchange)
            return done.allocation
        except InsufficientCapital:
            return None

    async def entry() -> None:  # the engine: the price rises through E = 2448
        await services.process_price_move(
            cmds.ProcessPriceMove(2, Decimal(2440), Decimal(2450), datetime.now(UTC), frozenset({sid})),
            db.uow(),
            db.exchange,
        )

    # 5 buys of 150, 5 withdrawals of 100 and an entry of 20%: more than the principal, all at once.
    calls = [buy() if i % 2 else withdraw() for i in range(10)]
    results = await asyncio.gather(*calls[:5], entry(), *calls[5:])
    withdrawn = [r for r in results if isinstance(r, CapitalAllocation)]
    refused = [r for r in results if r is None or r is False]
    assert refused, "the demand exceeds the principal: something must have been refused"

    async with db.uow() as uow:
        ledger = await uow.allocations.ledger(sid)
        live = await uow.positions.list_live_by_strategy(sid)
        orders = await uow.orders.list(Page(100), strategy_id=sid)
    async with db.engine.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT kind, amount FROM capital_allocations WHERE strategy_id = :s ORDER BY id"), {"s": sid}
            )
        ).all()
    # The ledger holds the deposit and exactly the withdrawals that succeeded, nothing else.
    assert [(k, a) for k, a in rows] == [("deposit", PRINCIPAL)] + [("withdrawal", Decimal(-100))] * len(withdrawn)
    assert ledger.principal == PRINCIPAL - 100 * len(withdrawn)
    assert ledger.committed == sum((p.cost for p in live), Decimal(0))
    assert all(p.status is PositionStatus.OPEN for p in live)
    assert ledger.free >= 0, f"overdrawn: {ledger}"
    # The entry, if it ran, spent 20% of the bankroll as it was at that moment (rule 2).
    for order in (o for o in orders if o.purpose is OrderPurpose.ENTRY and o.status is OrderStatus.FILLED):
        assert order.created_at is not None
        before = sum(1 for w in withdrawn if w.created_at is not None and w.created_at < order.created_at)
        assert order.requested_quote == (PRINCIPAL - 100 * before) * Decimal("0.2")


async def test_the_next_entry_after_a_withdrawal_is_sized_on_the_new_bankroll(db: App) -> None:
    """Rule 2, on PostgreSQL: 2,000 allocated, 1,000 taken back: the next entry spends 20% of 1,000."""
    await seed_demo(db.uow, db.exchange)  # the demo strategy: 2,000 USDT, p = 20%, E = 102,498.78
    await services.withdraw_capital(cmds.WithdrawCapital(1, Decimal(1000)), db.uow(), db.exchange)
    db.price_book.set("BTCUSDT", Decimal(102500))
    outcome = await services.process_price_move(
        cmds.ProcessPriceMove(1, Decimal(102000), Decimal(102500), datetime.now(UTC)), db.uow(), db.exchange
    )
    (position,) = outcome.opened
    async with db.uow() as uow:
        (order,) = await uow.orders.list(Page(10), strategy_id=1)
        ledger = await uow.allocations.ledger(1)
    assert order.requested_quote == Decimal(200)
    assert abs(position.cost / Decimal(1000) * 100 - 20) <= Decimal("0.1")
    assert ledger.principal == Decimal(1000) and ledger.committed == position.cost


async def test_a_withdrawal_that_makes_entries_unworkable_is_stored_with_its_warning_event(db: App) -> None:
    """Rule 11 on PostgreSQL: withdrawing 1,900 of the demo's 2,000 leaves entries of 20 USDT whose
    lot rounding pushes min_sell (108,842.97) above X (108,413.48). The withdrawal and its
    `entries_too_small` event commit together; a refused withdrawal stores neither."""
    await seed_demo(db.uow, db.exchange)
    try:
        await services.withdraw_capital(cmds.WithdrawCapital(1, Decimal(2001)), db.uow(), db.exchange)
    except InsufficientCapital:
        pass
    else:
        raise AssertionError("more than the free principal was withdrawn")
    done = await services.withdraw_capital(cmds.WithdrawCapital(1, Decimal(1900)), db.uow(), db.exchange)
    (warning,) = done.warnings
    assert "108842.97" in warning and "every exit would become a scheduled sell" in warning
    async with db.uow() as uow:
        stored = [(e.type, e.message) for e in await uow.events.list_by_strategy(1, 20)]
        ledger = await uow.allocations.ledger(1)
    assert ledger.principal == Decimal(100)
    assert stored[:2] == [("entries_too_small", warning), ("capital_withdrawn", "1900 of principal withdrawn.")]
    assert [t for t, _ in stored].count("entries_too_small") == 1
