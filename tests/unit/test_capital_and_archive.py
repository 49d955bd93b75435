"""Taking principal back (`withdraw_capital`, rule 2) and retiring a strategy (`archive_strategy`),
through the services on the in-memory unit of work and the paper exchange."""

from __future__ import annotations

from decimal import Decimal

from domain import channel as ch
from domain import commands as cmds
from domain import services
from domain.errors import InsufficientCapital, InvalidState, NotFound, ValidationError
from domain.events import EventType
from domain.model import (
    AllocationKind,
    CapitalAllocation,
    Client,
    Ledger,
    Order,
    OrderPurpose,
    OrderStatus,
    OrderType,
    PositionStatus,
    Side,
    Strategy,
)
from domain.ports import Page
from tests.unit.fakes import World
from tests.unit.test_services import (
    D,
    allocate,
    enter_demo,
    events,
    ledger,
    make_client,
    make_strategy,
    manual_buy,
    path,
    rejected,
    reload,
    tick,
    world,
)

__all__ = ["world"]  # the fixture


async def withdraw(world: World, strategy: Strategy, amount: str | Decimal) -> CapitalAllocation:
    assert strategy.id is not None
    return (await withdraw_with_warnings(world, strategy, str(amount))).allocation


async def withdraw_with_warnings(world: World, strategy: Strategy, amount: str) -> services.Allocated:
    assert strategy.id is not None
    return await services.withdraw_capital(cmds.WithdrawCapital(strategy.id, D(amount)), world.uow(), world.exchange)


async def archive(world: World, strategy: Strategy) -> Strategy:
    assert strategy.id is not None
    return await services.archive_strategy(cmds.ArchiveStrategy(strategy.id), world.uow())


# ---------------------------------------------------------------- withdrawCapital


async def test_withdrawing_principal_is_a_negative_withdrawal_in_the_ledger(world: World) -> None:
    strategy = await make_strategy(world, capital=2000)
    allocation = await withdraw(world, strategy, "500")
    assert (allocation.kind, allocation.amount, allocation.is_profit) == (AllocationKind.WITHDRAWAL, D(-500), False)
    lg = await ledger(world, strategy)
    assert (lg.principal, lg.committed, lg.profit) == (D(1500), 0, 0)
    (event,) = events(world, EventType.CAPITAL_WITHDRAWN)
    assert event.data == {"amount": "500"}


async def test_only_the_free_principal_can_be_withdrawn(world: World) -> None:
    strategy = await make_strategy(world, capital=2000)
    position = await enter_demo(world, strategy)  # 400 of the 2000 are held by the position
    free = D(2000) - position.cost
    err = await rejected(
        world, withdraw(world, strategy, free + D("0.00000001")), InsufficientCapital, "INSUFFICIENT_CAPITAL"
    )
    assert D(err.details["available"]) == free and "held by its open and scheduled positions" in err.message
    for bad in ("0", "-5"):
        await rejected(world, withdraw(world, strategy, bad), ValidationError, "VALIDATION")
    await withdraw(world, strategy, free)  # all of it: the position keeps what it holds
    lg = await ledger(world, strategy)
    assert (lg.principal, lg.committed, lg.free) == (position.cost, position.cost, 0)
    # Scheduled positions hold their cost too.
    await services.schedule_sell(cmds.ScheduleSell(position.id or 0), world.uow(), world.exchange)
    await rejected(world, withdraw(world, strategy, "0.01"), InsufficientCapital, "INSUFFICIENT_CAPITAL")


async def test_the_next_entry_is_sized_on_the_smaller_bankroll(world: World) -> None:
    """Rule 2: each entry spends p% of the bankroll as it is then: 20% of 2000 before a withdrawal of
    1000, 20% of 1000 after it."""
    strategy = await make_strategy(world, capital=2000)
    first = await enter_demo(world, strategy)
    await path(world, "102500", "109000", "108400", "100000")  # sold at X, re-armed at the base
    await withdraw(world, strategy, "1000")
    second = (await tick(world, "102000", "102500")).opened[0]
    entries = [o for o in world.store.all(Order) if o.purpose is OrderPurpose.ENTRY]
    assert [o.requested_quote for o in entries] == [D(400), D(200)]
    assert abs(second.cost / D(1000) * 100 - D(20)) <= ch.ALLOCATION_TOLERANCE_PT
    assert first.cost > second.cost * 2 - D(1)


async def test_capital_of_another_client_is_not_found(world: World) -> None:
    strategy = await make_strategy(world)
    other = await make_client(world, "Bob")
    assert strategy.id is not None
    await rejected(
        world,
        services.withdraw_capital(cmds.WithdrawCapital(strategy.id, D(1), other.id), world.uow(), world.exchange),
        NotFound,
        "NOT_FOUND",
    )


async def test_a_withdrawal_that_makes_entries_too_small_for_lot_rounding_stands_with_a_warning(world: World) -> None:
    """Rule 11, as for an allocation: 1,900 of 2,000 taken back leaves entries of 20 (20% of 100),
    which keep 0.00018 BTC after lot rounding and the fee — min_sell 108,842.97, above X = 108,413.48,
    so every exit would become a scheduled sell. The withdrawal succeeds, and says so in its result
    and as an event; a withdrawal that leaves workable entries says nothing."""
    strategy = await make_strategy(world, capital=2000)
    fine = await withdraw_with_warnings(world, strategy, "1000")
    assert fine.warnings == () and events(world, EventType.ENTRIES_TOO_SMALL) == []
    done = await withdraw_with_warnings(world, strategy, "900")
    assert (done.allocation.kind, done.allocation.amount) == (AllocationKind.WITHDRAWAL, D(-900))
    (warning,) = done.warnings
    assert "keeps 0.00018 for a cost of 19.4747682" in warning and "108842.97" in warning
    assert "every exit would become a scheduled sell" in warning and "at least 111064.26" in warning
    (event,) = events(world, EventType.ENTRIES_TOO_SMALL)
    assert event.message == warning and event.data["principal"] == "100"
    assert (await ledger(world, strategy)).principal == D(100)  # the withdrawal stands


async def test_a_withdrawal_that_leaves_entries_under_the_minimum_notional_warns(world: World) -> None:
    """Rule 11: 20 left, entries of 4 USDT — under BTCUSDT's 5 USDT minimum: every entry would be
    skipped. Taking all of it back leaves no entries to warn about (NO_CAPITAL skips say so)."""
    strategy = await make_strategy(world, capital=2000)
    (warning,) = (await withdraw_with_warnings(world, strategy, "1980")).warnings
    assert "every entry would be skipped" in warning
    assert (await withdraw_with_warnings(world, strategy, "20")).warnings == ()
    assert len(events(world, EventType.ENTRIES_TOO_SMALL)) == 1


async def test_a_withdrawal_from_an_archived_strategy_does_not_warn(world: World) -> None:
    """An archived strategy makes no more entries: taking its principal back says nothing of them."""
    strategy = await make_strategy(world, capital=2000)
    await archive(world, strategy)
    assert (await withdraw_with_warnings(world, strategy, "1900")).warnings == ()
    assert events(world, EventType.ENTRIES_TOO_SMALL) == []


# ---------------------------------------------------------------- archiveStrategy


async def test_archiving_is_refused_while_positions_are_open_or_scheduled(world: World) -> None:
    strategy = await make_strategy(world)
    position = await enter_demo(world, strategy)
    err = await rejected(world, archive(world, strategy), InvalidState, "INVALID_STATE")
    assert f"{position.id} (open)" in err.message and err.details["positions"] == str(position.id)
    await services.schedule_sell(cmds.ScheduleSell(position.id or 0), world.uow(), world.exchange)
    err = await rejected(world, archive(world, strategy), InvalidState, "INVALID_STATE")
    assert f"{position.id} (scheduled)" in err.message


async def test_archiving_is_refused_while_an_order_is_unsettled(world: World) -> None:
    strategy = await make_strategy(world)
    async with world.uow() as uow:  # an entry whose outcome the exchange could not confirm
        uow.orders.add(
            Order(
                "cr-e1-1",
                1,
                1,
                Side.BUY,
                OrderType.MARKET,
                OrderPurpose.ENTRY,
                strategy_id=strategy.id,
                status=OrderStatus.UNKNOWN,
                requested_quote=D(400),
            )
        )
        await uow.commit()
    err = await rejected(world, archive(world, strategy), InvalidState, "INVALID_STATE")
    assert "cr-e1-1 (unknown)" in err.message


async def test_an_archived_strategy_keeps_its_history_stops_trading_and_frees_its_name(world: World) -> None:
    strategy = await make_strategy(world, capital=2000)
    await enter_demo(world, strategy)
    await path(world, "102500", "109000", "108400")  # sold at X: a closed position, two trades, a profit
    before = await ledger(world, strategy)
    archived = await archive(world, strategy)
    assert archived.archived_at is not None and not archived.is_active and archived.is_archived
    assert events(world, EventType.STRATEGY_ARCHIVED)
    # History kept: positions, trades, ledger.
    assert strategy.id is not None
    async with world.uow() as uow:
        (position,) = await uow.positions.list(Page(10), strategy_id=strategy.id)
        assert position.status is PositionStatus.CLOSED
        assert len(await uow.trades.list(Page(10), strategy_id=strategy.id)) == 2
        assert await uow.allocations.ledger(strategy.id) == before
        # Out of the lists by default, and out of the engine's sight.
        client_id = strategy.client_id
        assert await uow.strategies.list_by_client(client_id, Page(10)) == []
        assert [s.id for s in await uow.strategies.list_by_client(client_id, Page(10), include_archived=True)] == [
            strategy.id
        ]
        assert await uow.strategies.list_by_symbol(1) == []
        assert await uow.strategies.lock_for_tick(1) == []
    # No trading, no money in, no changes; its principal and profit can still be taken back.
    for action in (
        services.set_strategy_active(cmds.SetStrategyActive(strategy.id, True), world.uow()),
        services.allocate_capital(cmds.AllocateCapital(strategy.id, D(10)), world.uow(), world.exchange),
        services.update_strategy(cmds.UpdateStrategy(strategy.id, top_price=D(120000)), world.uow(), world.exchange),
        manual_buy(world, strategy, "102500", quote="100"),
        archive(world, strategy),
    ):
        err = await rejected(world, action, InvalidState, "INVALID_STATE")
        assert "archived" in err.message
    assert (await tick(world, "100000", "102500")).opened == []  # an entry crossing: nothing
    await withdraw(world, strategy, "2000")
    await services.withdraw_profit(cmds.WithdrawProfit(strategy.id, before.profit), world.uow())
    assert await ledger(world, strategy) == Ledger(principal=D(0), committed=D(0), profit=D(0))
    # Its name is free: a new strategy may take it; the archived one keeps its own.
    again = await make_strategy(world, capital=None, client=reload(world, Client, strategy.client_id))
    assert again.name == strategy.name and again.id != strategy.id
    assert reload(world, Strategy, strategy.id).name == strategy.name


async def test_a_name_in_use_by_a_strategy_that_is_not_archived_stays_taken(world: World) -> None:
    strategy = await make_strategy(world, capital=None)
    client = reload(world, Client, strategy.client_id)
    await rejected(world, make_strategy(world, capital=None, client=client), ValidationError, "VALIDATION")
    await allocate(world, strategy, D(1))  # not archived: money still goes in
