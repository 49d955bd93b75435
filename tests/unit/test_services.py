"""Every rule of SPEC §4 through `domain.services`, on the in-memory unit of work, the real paper
exchange and a `MemoryPriceBook`. Errors are checked by class and `code`, and for leaving the
store exactly as it was (the transaction rolled back)."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import pytest

from domain import channel as ch
from domain import commands as cmds
from domain import services
from domain.channel import Channel
from domain.errors import (
    DomainError,
    FilterFailure,
    InsufficientCapital,
    InvalidState,
    NoPrice,
    NotFound,
    ValidationError,
    WouldSellAtLoss,
)
from domain.events import EventType, SkipReason
from domain.model import (
    AllocationKind,
    CapitalAllocation,
    Client,
    Order,
    OrderPurpose,
    OrderStatus,
    OrderType,
    Position,
    PositionStatus,
    Side,
    Strategy,
    StrategyEvent,
    Symbol,
    TimeInForce,
    Trade,
)
from domain.ports import Page
from tests.unit.fakes import FakeIntegrityError, FakeStore, FakeUnitOfWork, World

D = Decimal
F = D("0.001")
BTC_ID = 1
T0 = datetime(2025, 6, 1, tzinfo=UTC)
# The demo channel (SPEC §7): B = 100489, E = 102498.78, X = 108413.48, T = 110626.
B, E, X, T = D(100489), D("102498.78"), D("108413.48"), D(110626)
ERR = TypeVar("ERR", bound=DomainError)


@pytest.fixture
def world() -> World:
    return World.make()


# ---------------------------------------------------------------- helpers


async def make_client(world: World, name: str = "TradeBot XYZ") -> Client:
    return await services.create_client(cmds.CreateClient(name), world.uow())


def create_cmd(client_id: int, symbol: str, name: str, **fields: Any) -> cmds.CreateStrategy:
    """A CreateStrategy from the API's flat field names (base_price, top_price, ...)."""
    names = {"base_price": "base", "top_price": "top"}
    is_active = fields.pop("is_active", True)
    channel = Channel(**{names.get(k, k): v for k, v in fields.items()})
    return cmds.CreateStrategy(client_id, symbol, name, channel, is_active)


async def make_strategy(
    world: World,
    capital: Decimal | int | None = 2000,
    client: Client | None = None,
    name: str = "Canal H4 BTC/USDT",
    **params: Any,
) -> Strategy:
    client = client or await make_client(world)
    assert client.id is not None
    fields: dict[str, Any] = {"base_price": B, "top_price": T}
    fields.update(params)
    strategy = await services.create_strategy(
        create_cmd(client.id, fields.pop("symbol", "BTCUSDT"), name, **fields),
        world.uow(),
        world.exchange,
    )
    if capital:
        await allocate(world, strategy, D(capital))
    return strategy


async def allocate(world: World, strategy: Strategy, amount: Decimal) -> CapitalAllocation:
    assert strategy.id is not None
    return await services.allocate_capital(cmds.AllocateCapital(strategy.id, amount), world.uow(), world.exchange)


async def tick(world: World, prev: Decimal | str, cur: Decimal | str, symbol_id: int = BTC_ID) -> services.TickOutcome:
    symbol = {1: "BTCUSDT", 2: "ETHUSDT"}[symbol_id]
    world.book.set(symbol, D(cur))
    return await services.process_price_move(
        cmds.ProcessPriceMove(symbol_id, D(prev), D(cur), T0), world.uow(), world.exchange
    )


async def path(world: World, *prices: Decimal | str) -> list[services.TickOutcome]:
    """Ticks along a path: each point is a price update from the previous one."""
    return [await tick(world, a, b) for a, b in itertools.pairwise(prices)]


async def candle(world: World, close: Decimal | str, interval: str = "4h", close_time: datetime = T0) -> list[Strategy]:
    return await services.process_candle_close(
        cmds.ProcessCandleClose(BTC_ID, interval, D(close), close_time), world.uow(), world.exchange
    )


async def manual_buy(
    world: World, strategy: Strategy, price: Decimal | str, quote: Decimal | str | None = None, qty: Any = None
) -> Position:
    assert strategy.id is not None
    world.book.set("BTCUSDT", D(price))
    return await services.buy(
        cmds.Buy(strategy.id, D(quote) if quote is not None else None, D(qty) if qty is not None else None),
        world.uow(),
        world.exchange,
        world.book,
    )


async def enter_demo(world: World, strategy: Strategy) -> Position:
    """An entry of the demo strategy at 102500 (400 USDT buys 0.00390 BTC)."""
    out = await tick(world, "102000", "102500")
    assert len(out.opened) == 1
    return out.opened[0]


async def ledger(world: World, strategy: Strategy) -> Any:
    assert strategy.id is not None
    async with world.uow() as uow:
        return await uow.allocations.ledger(strategy.id)


def reload(world: World, cls: type, row_id: int | None) -> Any:
    assert row_id is not None
    row = world.store.get(cls, row_id)
    assert row is not None
    return row


def events(world: World, type_: EventType | None = None) -> list[StrategyEvent]:
    return [e for e in world.store.all(StrategyEvent) if type_ is None or e.type == type_.value]


def trades(world: World, side: Side | None = None) -> list[Trade]:
    return [t for t in world.store.all(Trade) if side is None or t.side is side]


def orders(world: World, purpose: OrderPurpose | None = None) -> list[Order]:
    return [o for o in world.store.all(Order) if purpose is None or o.purpose is purpose]


def positions(world: World) -> list[Position]:
    return world.store.all(Position)


async def rejected(world: World, action: Awaitable[Any], error: type[ERR], code: str) -> ERR:
    """Run `action`, expect `error` with `code`, and check that the store did not change."""
    before = world.store.snapshot()
    with pytest.raises(error) as info:
        await action
    assert info.value.code == code
    assert world.store.snapshot() == before, "the failed service left changes behind"
    return info.value


# ---------------------------------------------------------------- the fake itself


async def test_fake_uow_assigns_ids_on_flush_and_rolls_back_without_commit(world: World) -> None:
    uow = world.uow()
    async with uow:
        client = Client(name="A")
        uow.clients.add(client)
        assert client.id is None
        await uow.flush()
        assert client.id is not None
        assert await uow.clients.get_by_name("A") is client  # identity map
    assert world.store.all(Client) == []  # not committed: rolled back on exit
    async with world.uow() as uow:
        assert await uow.clients.get_by_name("A") is None


async def test_fake_uow_publishes_only_on_commit_and_isolates_objects(world: World) -> None:
    client = await make_client(world, "A")
    assert client.id is not None
    async with world.uow() as uow:
        loaded = await uow.clients.get(client.id)
        assert loaded is not None and loaded is not client
        loaded.name = "B"
        assert reload(world, Client, client.id).name == "A"  # invisible until committed
        await uow.rollback()
    client.name = "C"  # an object held after commit is not the store's row
    assert reload(world, Client, client.id).name == "A"
    async with world.uow() as uow:
        loaded = await uow.clients.get(client.id)
        assert loaded is not None
        loaded.name = "B"
        await uow.commit()
    assert reload(world, Client, client.id).name == "B"
    assert loaded.name == "B"


async def test_fake_uow_autoflushes_before_queries_and_enforces_constraints(world: World) -> None:
    strategy = await make_strategy(world)
    assert strategy.id is not None
    async with world.uow() as uow:
        uow.allocations.add(
            CapitalAllocation(strategy.client_id, strategy.id, D(5), AllocationKind.DEPOSIT, is_profit=False)
        )
        assert (await uow.allocations.ledger(strategy.id)).principal == 2005
    assert (await ledger(world, strategy)).principal == 2000
    async with world.uow() as uow:
        uow.allocations.add(
            CapitalAllocation(strategy.client_id, strategy.id, D(5), AllocationKind.PROFIT, is_profit=False)
        )
        with pytest.raises(FakeIntegrityError, match="profit_flag_matches_kind"):
            await uow.flush()


async def test_fake_uow_refuses_use_outside_a_transaction() -> None:
    uow = FakeUnitOfWork(FakeStore())
    with pytest.raises(RuntimeError):
        uow.clients.add(Client(name="x"))


async def test_fake_repositories_page_newest_first(world: World) -> None:
    client = await make_client(world)
    assert client.id is not None
    made = [await make_strategy(world, None, client, name=f"S{i}") for i in range(5)]
    async with world.uow() as uow:
        first = await uow.strategies.list_by_client(client.id, Page(2))
        rest = await uow.strategies.list_by_client(client.id, Page(10, before_id=first[-1].id))
    assert [s.id for s in first] == [made[4].id, made[3].id]
    assert [s.id for s in rest] == [made[2].id, made[1].id, made[0].id]


# ---------------------------------------------------------------- rule 1: entry, once per bounce


async def test_entry_buys_when_the_price_rises_through_the_entry_level(world: World) -> None:
    strategy = await make_strategy(world)
    position = await enter_demo(world, strategy)
    assert position.status is PositionStatus.OPEN
    assert position.entry_price == D(102500)
    (order,) = orders(world, OrderPurpose.ENTRY)
    assert (order.side, order.type, order.status) == (Side.BUY, OrderType.MARKET, OrderStatus.FILLED)
    assert order.requested_quote == D(400)  # quoteOrderQty: 20% of 2000
    assert order.position_id == position.id
    (trade,) = trades(world)
    assert (trade.side, trade.price, trade.quantity, trade.notes) == (Side.BUY, D(102500), D("0.00390"), "entry")
    assert not reload(world, Strategy, strategy.id).is_armed
    assert len(events(world, EventType.POSITION_OPENED)) == 1


async def test_entry_fires_when_the_price_reaches_e_exactly(world: World) -> None:
    await make_strategy(world)
    assert (await tick(world, E - D("0.01"), E)).opened


async def test_no_entry_from_exactly_e(world: World) -> None:
    await make_strategy(world)
    assert (await tick(world, E, E + 100)).opened == []
    assert positions(world) == []


async def test_noise_around_e_does_not_stack_entries(world: World) -> None:
    strategy = await make_strategy(world)
    await enter_demo(world, strategy)
    noise = ["102500"] + ["102400", "102600"] * 20
    await path(world, *noise)
    assert len(positions(world)) == 1
    assert len(orders(world)) == 1
    assert events(world, EventType.ENTRY_SKIPPED) == []


async def test_touching_the_base_rearms_for_the_next_bounce(world: World) -> None:
    strategy = await make_strategy(world)
    await enter_demo(world, strategy)
    await tick(world, "102500", B + D("0.01"))  # close to the base, not touching it
    assert not reload(world, Strategy, strategy.id).is_armed
    assert (await tick(world, B + D("0.01"), "102600")).opened == []
    await tick(world, "102600", B)  # price <= B
    assert reload(world, Strategy, strategy.id).is_armed
    assert len(events(world, EventType.STRATEGY_REARMED)) == 1
    assert len((await tick(world, B, "102500")).opened) == 1
    assert len(positions(world)) == 2


async def test_no_entry_on_a_gap_up_past_the_exit_level(world: World) -> None:
    strategy = await make_strategy(world)
    assert (await tick(world, "102000", X)).opened == []  # cur == X is not < X
    assert (await tick(world, "102000", "109000")).opened == []
    assert positions(world) == [] and orders(world) == []
    assert reload(world, Strategy, strategy.id).is_armed  # no entry, nothing skipped: still armed


async def test_no_entry_while_channel_broken(world: World) -> None:
    strategy = await make_strategy(world)
    assert await candle(world, "100000")
    await path(world, "101000", "100000", "102500", "100400", "102600")
    assert positions(world) == []
    s = reload(world, Strategy, strategy.id)
    assert s.is_channel_broken and not s.is_armed  # touching B does not re-arm a broken channel


async def test_no_entry_while_inactive(world: World) -> None:
    strategy = await make_strategy(world)
    assert strategy.id is not None
    await services.set_strategy_active(cmds.SetStrategyActive(strategy.id, False), world.uow())
    await path(world, "102000", "102500", "100000", "102500")
    assert positions(world) == []
    created_paused = await make_strategy(world, name="paused", is_active=False)
    await path(world, "102000", "102500")
    assert positions(world) == []
    assert not reload(world, Strategy, created_paused.id).is_active


async def test_nothing_is_bought_on_activation_alone(world: World) -> None:
    strategy = await make_strategy(world, is_active=False)
    assert strategy.id is not None
    await path(world, "102000", "102500", "103000")
    await services.set_strategy_active(cmds.SetStrategyActive(strategy.id, True), world.uow())
    await path(world, "103000", "103500", "103000", "104000")  # above E, no crossing from below
    assert positions(world) == []


async def test_skipped_entry_for_no_capital_disarms_and_is_recorded(world: World) -> None:
    strategy = await make_strategy(world, capital=None)
    await path(world, "102000", "102500", "102400", "102600")
    (skipped,) = events(world, EventType.ENTRY_SKIPPED)
    assert skipped.data["reason"] == SkipReason.NO_CAPITAL.value
    assert not reload(world, Strategy, strategy.id).is_armed


# ---------------------------------------------------------------- rule 2: size


@pytest.mark.parametrize(
    ("capital", "pct", "cur"),
    [
        (2000, D(20), "102500"),
        (2000, D(20), "108413.47"),
        (1000, D(5), "102498.78"),
        (123457, D("33.3"), "104321.99"),
        (500, D(100), "102600"),
        (987, D("7.5"), "102777.77"),
    ],
)
async def test_entry_spends_p_percent_of_the_bankroll_within_a_tenth_of_a_point(
    world: World, capital: int, pct: Decimal, cur: str
) -> None:
    await make_strategy(world, capital=capital, capital_percentage=pct)
    (position,) = (await tick(world, "102000", cur)).opened
    (trade,) = trades(world)
    spent = trade.quote_amount  # the quote given up (the fee is taken in BTC)
    assert spent == position.cost
    assert abs(spent / D(capital) * 100 - pct) <= D("0.1")
    assert spent <= D(capital) * pct / 100


async def test_entry_skipped_when_free_principal_is_short(world: World) -> None:
    strategy = await make_strategy(world)
    await manual_buy(world, strategy, "101000", quote="1700")  # 300 left free; an entry needs 400
    before_orders = len(orders(world))
    out = await tick(world, "101000", "102500")
    assert out.opened == []
    assert len(orders(world)) == before_orders
    (skipped,) = events(world, EventType.ENTRY_SKIPPED)
    assert skipped.data["reason"] == SkipReason.INSUFFICIENT_CAPITAL.value
    assert "free principal" in skipped.message
    assert not reload(world, Strategy, strategy.id).is_armed  # a skipped entry also disarms


async def test_at_most_floor_100_over_p_positions(world: World) -> None:
    strategy = await make_strategy(world, capital_percentage=D(30))  # floor(100/30) = 3
    bounce = ["100000", "102500"]
    await path(world, *(bounce * 5))
    assert len(positions(world)) == 3
    skipped = events(world, EventType.ENTRY_SKIPPED)
    assert skipped and {e.data["reason"] for e in skipped} == {SkipReason.MAX_POSITIONS.value}
    assert (await ledger(world, strategy)).free >= 0


async def test_entries_never_grow_from_profit(world: World) -> None:
    strategy = await make_strategy(world)
    await enter_demo(world, strategy)
    await path(world, "102500", "109000", "108400")  # sold at a profit
    assert (await ledger(world, strategy)).profit > 0
    await path(world, "108400", "100000", "102500")
    second = orders(world, OrderPurpose.ENTRY)[-1]
    assert second.requested_quote == D(400)  # still 20% of the 2000 principal


# ---------------------------------------------------------------- rule 3: minimum sell price


async def test_position_min_sell_price_follows_rule_3(world: World) -> None:
    strategy = await make_strategy(world)
    position = await enter_demo(world, strategy)
    assert position.cost == D("399.75")
    assert position.quantity == D("0.00389")
    assert position.min_profit == D("0.5")
    exact = position.cost * D("1.005") / (position.quantity * (1 - F))
    assert exact <= position.min_sell_price < exact + D("1e-8")
    assert position.min_sell_price == ch.min_sell_price(position.cost, position.quantity, D("0.5"), F)


# ---------------------------------------------------------------- rule 4: exit


async def test_exit_sells_at_market_when_at_or_above_min_sell(world: World) -> None:
    strategy = await make_strategy(world)
    position = await enter_demo(world, strategy)
    await tick(world, "102500", "109000")
    out = await tick(world, "109000", "108400")
    assert [p.id for p in out.closed] == [position.id]
    closed = reload(world, Position, position.id)
    assert closed.status is PositionStatus.CLOSED and closed.exit_price == D(108400)
    (order,) = orders(world, OrderPurpose.EXIT)
    assert (order.type, order.time_in_force) == (OrderType.LIMIT, TimeInForce.IOC)
    assert order.price == ch.round_up_to_step(position.min_sell_price, D("0.01"))  # BTCUSDT tick
    (sell,) = trades(world, Side.SELL)
    assert sell.price == D(108400) >= position.min_sell_price
    assert sell.notes == "exit"


async def test_exit_fires_when_the_price_reaches_x_exactly_but_not_from_x(world: World) -> None:
    strategy = await make_strategy(world)
    await enter_demo(world, strategy)
    await tick(world, "102500", X)
    assert (await tick(world, X, X - 100)).closed == []  # prev == X: not a crossing from above
    await tick(world, X - 100, "109000")
    assert len((await tick(world, "109000", X)).closed) == 1  # cur == X


async def test_exit_below_min_sell_schedules_at_min_sell_rounded_up_to_the_tick(world: World) -> None:
    strategy = await make_strategy(world)
    early = await enter_demo(world, strategy)
    late = await manual_buy(world, strategy, "108000", quote="400")  # min_sell ~108943 > X
    assert late.min_sell_price > X
    await tick(world, "108000", "109000")
    out = await tick(world, "109000", "108400")
    assert [p.id for p in out.closed] == [early.id]
    assert [p.id for p in out.scheduled] == [late.id]
    parked = reload(world, Position, late.id)
    assert parked.status is PositionStatus.SCHEDULED
    assert parked.scheduled_exit_price is not None
    assert parked.scheduled_exit_price == ch.round_up_to_step(late.min_sell_price, D("0.01"))
    assert late.min_sell_price <= parked.scheduled_exit_price < late.min_sell_price + D("0.01")
    assert parked.channel_exit_date is None
    assert len(trades(world, Side.SELL)) == 1  # nothing sold below min_sell
    assert events(world, EventType.POSITION_SCHEDULED)[-1].position_id == late.id


async def test_paused_strategy_still_exits(world: World) -> None:
    strategy = await make_strategy(world)
    position = await enter_demo(world, strategy)
    assert strategy.id is not None
    await services.set_strategy_active(cmds.SetStrategyActive(strategy.id, False), world.uow())
    await path(world, "102500", "109000", "108400")
    assert reload(world, Position, position.id).status is PositionStatus.CLOSED


# ---------------------------------------------------------------- rule 5: channel break


async def test_candle_close_below_base_breaks_the_channel_and_schedules_open_positions(world: World) -> None:
    strategy = await make_strategy(world)
    position = await enter_demo(world, strategy)
    close_time = T0 + timedelta(hours=8)
    broken = await candle(world, "100488.99", close_time=close_time)
    assert [s.id for s in broken] == [strategy.id]
    s = reload(world, Strategy, strategy.id)
    assert s.channel_broken_at == close_time and s.is_channel_broken and not s.is_armed
    (event,) = events(world, EventType.CHANNEL_BROKEN)
    assert event.data["close"] == "100488.99"
    parked = reload(world, Position, position.id)
    assert parked.status is PositionStatus.SCHEDULED
    assert parked.channel_exit_date == close_time
    assert parked.scheduled_exit_price == ch.round_up_to_step(position.min_sell_price, D("0.01"))


async def test_candle_close_at_the_base_does_not_break(world: World) -> None:
    await make_strategy(world)
    assert await candle(world, B) == []
    assert events(world, EventType.CHANNEL_BROKEN) == []


async def test_only_candles_of_the_strategy_timeframe_break_its_channel(world: World) -> None:
    strategy = await make_strategy(world)
    position = await enter_demo(world, strategy)
    for interval in ("1m", "1h", "1d"):
        assert await candle(world, "90000", interval=interval) == []
    assert not reload(world, Strategy, strategy.id).is_channel_broken
    assert reload(world, Position, position.id).status is PositionStatus.OPEN
    hourly = await make_strategy(world, name="hourly", timeframe="1h")
    assert [s.id for s in await candle(world, "90000", interval="1h")] == [hourly.id]


async def test_a_broken_channel_is_rearmed_by_updating_it(world: World) -> None:
    strategy = await make_strategy(world)
    assert strategy.id is not None
    await candle(world, "100000")
    updated = await services.update_strategy(
        cmds.UpdateStrategy(strategy.id, base_price=D(99000), top_price=D(110000)), world.uow(), world.exchange
    )
    assert updated.is_armed and not updated.is_channel_broken
    s = reload(world, Strategy, strategy.id)
    assert s.is_armed and s.channel_broken_at is None and s.base_price == D(99000)
    assert len((await tick(world, "100000", "101000")).opened) == 1  # E = 100980


async def test_a_broken_channel_is_rearmed_by_reactivating_it(world: World) -> None:
    """Rules 1 and 5: re-activated from inactive (paused, then activated), it is armed again."""
    strategy = await make_strategy(world)
    assert strategy.id is not None
    await candle(world, "100000")
    await services.set_strategy_active(cmds.SetStrategyActive(strategy.id, False), world.uow())
    await services.set_strategy_active(cmds.SetStrategyActive(strategy.id, True), world.uow())
    s = reload(world, Strategy, strategy.id)
    assert s.is_armed and not s.is_channel_broken
    assert events(world, EventType.STRATEGY_ACTIVATED)
    assert len((await tick(world, "100000", "102500")).opened) == 1


async def test_a_paused_strategy_holding_positions_still_has_them_scheduled_on_a_break(world: World) -> None:
    """Rule 5 has no exception for paused strategies, and pausing only stops entries ("its scheduled
    sells and exits keep protecting profit"): a close below B must park the open positions."""
    strategy = await make_strategy(world)
    assert strategy.id is not None
    position = await enter_demo(world, strategy)
    await services.set_strategy_active(cmds.SetStrategyActive(strategy.id, False), world.uow())
    await candle(world, "100000")
    assert reload(world, Position, position.id).status is PositionStatus.SCHEDULED


# ---------------------------------------------------------------- rule 6: scheduled sells


async def _scheduled_position(world: World) -> tuple[Strategy, Position]:
    strategy = await make_strategy(world)
    position = await enter_demo(world, strategy)
    await candle(world, "100000")
    parked = reload(world, Position, position.id)
    assert parked.status is PositionStatus.SCHEDULED
    return strategy, parked


async def test_scheduled_position_sells_on_the_tick_reaching_its_price(world: World) -> None:
    _, parked = await _scheduled_position(world)
    price = parked.scheduled_exit_price
    assert price is not None
    assert (await tick(world, "100000", price - D("0.01"))).closed == []
    out = await tick(world, price - D("0.01"), price)
    assert [p.id for p in out.closed] == [parked.id]
    (sell,) = trades(world, Side.SELL)
    assert sell.price == price and sell.notes == "scheduled_exit"
    (order,) = orders(world, OrderPurpose.SCHEDULED_EXIT)
    assert (order.type, order.time_in_force, order.price) == (OrderType.LIMIT, TimeInForce.GTC, price)
    closed = reload(world, Position, parked.id)
    assert closed.status is PositionStatus.CLOSED and closed.exit_price == price
    assert closed.realized_profit is not None and closed.realized_profit >= closed.cost * D("0.005")


async def test_scheduled_sell_fills_at_its_limit_price_on_a_jump_past_it(world: World) -> None:
    _, parked = await _scheduled_position(world)
    assert parked.scheduled_exit_price is not None
    await tick(world, "100000", parked.scheduled_exit_price + 500)
    (sell,) = trades(world, Side.SELL)
    assert sell.price == parked.scheduled_exit_price


async def test_user_schedules_an_open_position_with_their_own_min_profit(world: World) -> None:
    strategy = await make_strategy(world)
    position = await enter_demo(world, strategy)
    assert position.id is not None
    scheduled = await services.schedule_sell(cmds.ScheduleSell(position.id, D(3)), world.uow(), world.exchange)
    target = ch.min_sell_price(position.cost, position.quantity, D(3), F)
    assert scheduled.status is PositionStatus.SCHEDULED
    assert scheduled.scheduled_exit_price == ch.round_up_to_step(target, D("0.01"))
    parked = reload(world, Position, position.id)
    assert parked.scheduled_exit_price == scheduled.scheduled_exit_price
    assert events(world, EventType.POSITION_SCHEDULED)[-1].position_id == position.id
    # It sells there, and not on the ordinary exit below it.
    assert parked.scheduled_exit_price is not None
    await path(world, "102500", "105000", parked.scheduled_exit_price - D("0.01"))
    assert trades(world, Side.SELL) == []
    await tick(world, parked.scheduled_exit_price - D("0.01"), parked.scheduled_exit_price)
    (sell,) = trades(world, Side.SELL)
    assert sell.price == parked.scheduled_exit_price
    assert sell.profit is not None and sell.profit >= position.cost * D("0.03")


async def test_user_schedule_records_the_min_profit_it_used(world: World) -> None:
    """`Position.min_profit` is "the strategy's, or the user's when scheduled by hand" (model.py)."""
    strategy = await make_strategy(world)
    position = await enter_demo(world, strategy)
    assert position.id is not None
    await services.schedule_sell(cmds.ScheduleSell(position.id, D(3)), world.uow(), world.exchange)
    assert reload(world, Position, position.id).min_profit == D(3)


async def test_sell_with_is_scheduled_schedules_at_the_position_min_sell(world: World) -> None:
    strategy = await make_strategy(world)
    position = await enter_demo(world, strategy)
    assert position.id is not None
    await services.sell(cmds.Sell(position.id, is_scheduled=True), world.uow(), world.exchange, world.book)
    parked = reload(world, Position, position.id)
    assert parked.status is PositionStatus.SCHEDULED
    assert parked.scheduled_exit_price == ch.round_up_to_step(position.min_sell_price, D("0.01"))


async def test_cancelling_a_schedule_reopens_the_position(world: World) -> None:
    _, parked = await _scheduled_position(world)
    assert parked.id is not None
    reopened = await services.cancel_scheduled_sell(cmds.CancelScheduledSell(parked.id), world.uow(), world.exchange)
    assert reopened.status is PositionStatus.OPEN
    again = reload(world, Position, parked.id)
    assert again.status is PositionStatus.OPEN
    assert again.scheduled_exit_price is None and again.channel_exit_date is None
    assert events(world, EventType.SCHEDULE_CANCELLED)
    assert parked.scheduled_exit_price is not None
    await tick(world, "100000", parked.scheduled_exit_price + 1)  # no longer a scheduled sell
    assert trades(world, Side.SELL) == []


async def test_cancel_of_an_open_position_is_invalid_state(world: World) -> None:
    strategy = await make_strategy(world)
    position = await enter_demo(world, strategy)
    assert position.id is not None
    err = await rejected(
        world,
        services.cancel_scheduled_sell(cmds.CancelScheduledSell(position.id), world.uow(), world.exchange),
        InvalidState,
        "INVALID_STATE",
    )
    assert err.details["status"] == "open"


async def test_schedule_rejects_a_closed_position_and_a_bad_min_profit(world: World) -> None:
    strategy = await make_strategy(world)
    position = await enter_demo(world, strategy)
    assert position.id is not None
    await rejected(
        world,
        services.schedule_sell(cmds.ScheduleSell(position.id, D(-1)), world.uow(), world.exchange),
        ValidationError,
        "VALIDATION",
    )
    await path(world, "102500", "109000", "108400")
    await rejected(
        world,
        services.schedule_sell(cmds.ScheduleSell(position.id), world.uow(), world.exchange),
        InvalidState,
        "INVALID_STATE",
    )


# ---------------------------------------------------------------- rule 7: profit segregation


async def test_profit_is_segregated_and_the_bankroll_unchanged(world: World) -> None:
    strategy = await make_strategy(world)
    position = await enter_demo(world, strategy)
    await path(world, "102500", "109000", "108400")
    closed = reload(world, Position, position.id)
    (sell,) = trades(world, Side.SELL)
    assert sell.fees == sell.quote_amount * F  # the sell fee comes from the quote proceeds
    assert closed.proceeds == sell.quote_amount - sell.fees
    assert closed.realized_profit == closed.proceeds - closed.cost == sell.profit
    (profit,) = [a for a in world.store.all(CapitalAllocation) if a.kind is AllocationKind.PROFIT]
    assert profit.is_profit and profit.amount == closed.realized_profit and profit.position_id == position.id
    lg = await ledger(world, strategy)
    assert lg.principal == D(2000) and lg.committed == 0 and lg.profit == closed.realized_profit
    assert lg.free == D(2000) and lg.total == D(2000) + closed.realized_profit


async def test_withdraw_profit_up_to_the_balance(world: World) -> None:
    strategy = await make_strategy(world)
    assert strategy.id is not None
    await enter_demo(world, strategy)
    await path(world, "102500", "109000", "108400")
    profit = (await ledger(world, strategy)).profit
    await rejected(
        world,
        services.withdraw_profit(cmds.WithdrawProfit(strategy.id, profit + D("0.00000001")), world.uow()),
        InsufficientCapital,
        "INSUFFICIENT_CAPITAL",
    )
    await rejected(
        world,
        services.withdraw_profit(cmds.WithdrawProfit(strategy.id, D(0)), world.uow()),
        ValidationError,
        "VALIDATION",
    )
    withdrawal = await services.withdraw_profit(cmds.WithdrawProfit(strategy.id, D(10)), world.uow())
    assert withdrawal.kind is AllocationKind.PROFIT_WITHDRAWAL and withdrawal.is_profit
    assert withdrawal.amount == D(-10)
    lg = await ledger(world, strategy)
    assert lg.profit == profit - 10 and lg.principal == D(2000)
    await services.withdraw_profit(cmds.WithdrawProfit(strategy.id, profit - 10), world.uow())
    assert (await ledger(world, strategy)).profit == 0
    assert events(world, EventType.PROFIT_WITHDRAWN)


async def test_withdraw_profit_with_no_profit_is_refused(world: World) -> None:
    strategy = await make_strategy(world)
    assert strategy.id is not None
    err = await rejected(
        world,
        services.withdraw_profit(cmds.WithdrawProfit(strategy.id, D(1)), world.uow()),
        InsufficientCapital,
        "INSUFFICIENT_CAPITAL",
    )
    assert err.details["available"] == 0


# ---------------------------------------------------------------- rule 8: manual orders


async def test_manual_buy_by_quote_amount(world: World) -> None:
    strategy = await make_strategy(world)
    position = await manual_buy(world, strategy, "105000", quote="300")
    (order,) = orders(world, OrderPurpose.MANUAL_BUY)
    assert (order.requested_quote, order.requested_quantity) == (D(300), None)
    assert order.type is OrderType.MARKET
    assert position.cost == D("0.00285") * 105000 <= D(300)
    assert position.min_sell_price == ch.min_sell_price(position.cost, position.quantity, D("0.5"), F)
    assert (await ledger(world, strategy)).committed == position.cost


async def test_manual_buy_by_quantity(world: World) -> None:
    strategy = await make_strategy(world)
    position = await manual_buy(world, strategy, "105000", qty="0.003")
    (order,) = orders(world, OrderPurpose.MANUAL_BUY)
    assert (order.requested_quote, order.requested_quantity) == (None, D("0.003"))
    (trade,) = trades(world)
    assert trade.quantity == D("0.003") and trade.quote_amount == D(315)
    assert position.quantity == D("0.00299")  # 0.003 - 0.000003 fee, rounded down


@pytest.mark.parametrize(("quote", "qty"), [(None, None), ("100", "0.001")])
async def test_manual_buy_needs_exactly_one_of_quote_amount_or_quantity(
    world: World, quote: str | None, qty: str | None
) -> None:
    strategy = await make_strategy(world)
    err = await rejected(world, manual_buy(world, strategy, "105000", quote, qty), ValidationError, "VALIDATION")
    assert err.details["field"] == "quoteAmount"


@pytest.mark.parametrize(("quote", "qty"), [("0", None), ("-5", None), (None, "0"), ("NaN", None)])
async def test_manual_buy_amounts_must_be_positive(world: World, quote: str | None, qty: str | None) -> None:
    strategy = await make_strategy(world)
    await rejected(world, manual_buy(world, strategy, "105000", quote, qty), ValidationError, "VALIDATION")


async def test_manual_buy_beyond_free_principal_is_refused(world: World) -> None:
    strategy = await make_strategy(world)
    await enter_demo(world, strategy)  # 399.75 committed
    err = await rejected(
        world, manual_buy(world, strategy, "102500", quote="1700"), InsufficientCapital, "INSUFFICIENT_CAPITAL"
    )
    assert D(err.details["available"]) == D("1600.25")
    await rejected(
        world, manual_buy(world, strategy, "100000", qty="0.01601"), InsufficientCapital, "INSUFFICIENT_CAPITAL"
    )
    await manual_buy(world, strategy, "100000", qty="0.016")  # exactly 1600: fits


@pytest.mark.parametrize(
    ("quote", "qty", "which"),
    [(None, "0.000015", "LOT_SIZE"), (None, "0.000001", "LOT_SIZE"), ("4.99", None, "MIN_NOTIONAL")],
)
async def test_manual_buy_must_meet_the_exchange_filters(
    world: World, quote: str | None, qty: str | None, which: str
) -> None:
    strategy = await make_strategy(world)
    err = await rejected(world, manual_buy(world, strategy, "100000", quote, qty), FilterFailure, "FILTER_FAILURE")
    assert err.details["filter"] == which


async def test_manual_buy_without_a_known_price(world: World) -> None:
    strategy = await make_strategy(world)
    assert strategy.id is not None
    await rejected(
        world,
        services.buy(cmds.Buy(strategy.id, D(100)), world.uow(), world.exchange, world.book),
        NoPrice,
        "NO_PRICE",
    )


async def test_manual_orders_of_another_client_are_not_found(world: World) -> None:
    strategy = await make_strategy(world)
    position = await enter_demo(world, strategy)
    other = await make_client(world, "Other")
    assert strategy.id is not None and position.id is not None
    world.book.set("BTCUSDT", D(105000))
    await rejected(
        world,
        services.buy(cmds.Buy(strategy.id, D(100), client_id=other.id), world.uow(), world.exchange, world.book),
        NotFound,
        "NOT_FOUND",
    )
    await rejected(
        world,
        services.sell(cmds.Sell(position.id, client_id=other.id), world.uow(), world.exchange, world.book),
        NotFound,
        "NOT_FOUND",
    )
    await rejected(
        world,
        services.sell(cmds.Sell(999), world.uow(), world.exchange, world.book),
        NotFound,
        "NOT_FOUND",
    )


async def test_manual_sell_at_or_above_min_sell(world: World) -> None:
    strategy = await make_strategy(world)
    position = await enter_demo(world, strategy)
    assert position.id is not None
    price = ch.round_up_to_step(position.min_sell_price, D("0.01"))
    world.book.set("BTCUSDT", price)
    sold = await services.sell(cmds.Sell(position.id), world.uow(), world.exchange, world.book)
    assert sold.status is PositionStatus.CLOSED
    (order,) = orders(world, OrderPurpose.MANUAL_SELL)
    assert (order.type, order.time_in_force) == (OrderType.LIMIT, TimeInForce.IOC)
    (sell,) = trades(world, Side.SELL)
    assert sell.price == price and sell.profit is not None and sell.profit >= position.cost * D("0.005")


async def test_manual_sell_below_min_sell_is_refused(world: World) -> None:
    strategy = await make_strategy(world)
    position = await enter_demo(world, strategy)
    assert position.id is not None
    world.book.set("BTCUSDT", D("103380.69"))  # one cent under min_sell (103380.694319)
    err = await rejected(
        world,
        services.sell(cmds.Sell(position.id), world.uow(), world.exchange, world.book),
        WouldSellAtLoss,
        "WOULD_SELL_AT_LOSS",
    )
    assert D(err.details["min_sell_price"]) == position.min_sell_price
    assert "acceptLoss" in err.message


async def test_accept_loss_sells_at_market_and_the_loss_reduces_principal(world: World) -> None:
    strategy = await make_strategy(world)
    position = await enter_demo(world, strategy)
    assert position.id is not None
    world.book.set("BTCUSDT", D(95000))
    sold = await services.sell(cmds.Sell(position.id, accept_loss=True), world.uow(), world.exchange, world.book)
    assert sold.status is PositionStatus.CLOSED
    (order,) = orders(world, OrderPurpose.LOSS_EXIT)
    assert order.type is OrderType.MARKET and order.price is None
    (sell,) = trades(world, Side.SELL)
    assert sell.price == D(95000) and sell.notes == "loss_exit"
    loss = D("0.00389") * 95000 * (1 - F) - D("399.75")
    assert sell.profit == loss < 0
    (alloc,) = [a for a in world.store.all(CapitalAllocation) if a.kind is AllocationKind.LOSS]
    assert not alloc.is_profit and alloc.amount == loss
    lg = await ledger(world, strategy)
    assert lg.principal == D(2000) + loss and lg.profit == 0 and lg.committed == 0
    (closed,) = [e for e in events(world, EventType.POSITION_CLOSED)]
    assert "loss" in closed.message
    # The next entry is sized on the reduced principal.
    await path(world, "102500", "95000", "102500")
    assert orders(world, OrderPurpose.ENTRY)[-1].requested_quote == ch.entry_quote_amount(D(2000) + loss, D(20))


async def test_a_manual_sell_that_found_no_bid_can_be_retried(world: World) -> None:
    """Rule 8: a manual sell is a LIMIT IOC at min_sell rounded up to the tick; when it finds no bid
    it is refused (WOULD_SELL_AT_LOSS) and the transaction rolls back — including the position's
    `sell_seq`, so a retry rebuilds the same client order id. `_send` then asks the exchange for
    that id and takes the first attempt's EXPIRED, unfilled execution as the retry's result: the
    position can never be sold by hand again, whatever the price."""
    strategy = await make_strategy(world)
    position = await enter_demo(world, strategy)
    assert position.id is not None
    # Above min_sell (103380.694319) but under the IOC's limit 103380.70: nothing fills.
    world.book.set("BTCUSDT", D("103380.695"))
    await rejected(
        world,
        services.sell(cmds.Sell(position.id), world.uow(), world.exchange, world.book),
        WouldSellAtLoss,
        "WOULD_SELL_AT_LOSS",
    )
    world.book.set("BTCUSDT", D(104000))
    sold = await services.sell(cmds.Sell(position.id), world.uow(), world.exchange, world.book)
    assert sold.status is PositionStatus.CLOSED
    (sell,) = trades(world, Side.SELL)
    assert sell.price == D(104000)


async def test_selling_a_closed_position_is_invalid_state(world: World) -> None:
    strategy = await make_strategy(world)
    position = await enter_demo(world, strategy)
    assert position.id is not None
    await path(world, "102500", "109000", "108400")
    await rejected(
        world,
        services.sell(cmds.Sell(position.id, accept_loss=True), world.uow(), world.exchange, world.book),
        InvalidState,
        "INVALID_STATE",
    )


async def test_every_trade_references_its_order(world: World) -> None:
    """A trade row keeps the id of the order that produced it (buy and sell)."""
    strategy = await make_strategy(world)
    await enter_demo(world, strategy)
    await path(world, "102500", "109000", "108400")
    buy, sell = trades(world)
    entry, exit_ = orders(world)
    assert (entry.purpose, exit_.purpose) == (OrderPurpose.ENTRY, OrderPurpose.EXIT)
    assert buy.order_id == entry.id
    assert sell.order_id == exit_.id


# ---------------------------------------------------------------- rule 9: quantities, fees, dust


async def test_buy_fee_in_base_reduces_the_quantity_and_the_rest_is_dust(world: World) -> None:
    strategy = await make_strategy(world)
    position = await enter_demo(world, strategy)
    (buy,) = trades(world, Side.BUY)
    assert (buy.quantity, buy.fees, buy.fee_asset) == (D("0.00390"), D("0.0000039"), "BTC")
    assert position.quantity == D("0.00389")
    assert position.dust == D("0.0000061")
    assert position.quantity + position.dust == buy.quantity - buy.fees
    assert position.fees == buy.fees * D(102500)
    await path(world, "102500", "109000", "108400")
    (sell,) = trades(world, Side.SELL)
    assert sell.quantity == position.quantity  # the dust is not sold
    assert sell.fee_asset == "USDT"


# ---------------------------------------------------------------- rule 11: validation


async def test_create_strategy_rejects_a_narrow_channel_naming_the_smallest_top(world: World) -> None:
    client = await make_client(world)
    assert client.id is not None
    err = await rejected(
        world,
        services.create_strategy(
            cmds.CreateStrategy(client.id, "BTCUSDT", "narrow", Channel(B, D(104000))), world.uow(), world.exchange
        ),
        ValidationError,
        "VALIDATION",
    )
    smallest = D(err.details["smallest_workable_top"])
    # Rule 11: named for a position that really works once lots are rounded — without a principal
    # yet, the smallest entry the symbol's filters allow (0.00006 BTC at E keeps 0.00005).
    btc = world.store.get(Symbol, BTC_ID)
    assert smallest == ch.smallest_workable_top(B, D(2), D(2), D("0.5"), F, D("0.01"), filters=btc.filters)
    assert smallest == D("126262.53")
    created = await services.create_strategy(
        cmds.CreateStrategy(client.id, "BTCUSDT", "narrow", Channel(B, smallest)), world.uow(), world.exchange
    )
    assert created.top_price == smallest


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"top_price": B}, "topPrice"),
        ({"base_price": D(0)}, "basePrice"),
        ({"capital_percentage": D(0)}, "capitalPercentage"),
        ({"capital_percentage": D(101)}, "capitalPercentage"),
        ({"buy_threshold": D(-1)}, "buyThreshold"),
        ({"sell_threshold": D(100)}, "sellThreshold"),
        ({"min_profit": D(-1)}, "minProfit"),
        ({"timeframe": "3h"}, "timeframe"),
        ({"name": "  "}, "name"),
    ],
)
async def test_create_strategy_validation(world: World, params: dict[str, Any], field: str) -> None:
    client = await make_client(world)
    assert client.id is not None
    fields: dict[str, Any] = {"name": "s", "base_price": B, "top_price": T} | params
    err = await rejected(
        world,
        services.create_strategy(create_cmd(client.id, "BTCUSDT", **fields), world.uow(), world.exchange),
        ValidationError,
        "VALIDATION",
    )
    assert err.details["field"] == field


async def test_create_strategy_unknown_symbol_client_and_duplicate_name(world: World) -> None:
    strategy = await make_strategy(world, capital=None)
    await rejected(
        world,
        services.create_strategy(
            cmds.CreateStrategy(strategy.client_id, "DOGEUSDT", "d", Channel(B, T)), world.uow(), world.exchange
        ),
        NotFound,
        "NOT_FOUND",
    )
    await rejected(
        world,
        services.create_strategy(cmds.CreateStrategy(999, "BTCUSDT", "d", Channel(B, T)), world.uow(), world.exchange),
        NotFound,
        "NOT_FOUND",
    )
    err = await rejected(
        world,
        services.create_strategy(
            cmds.CreateStrategy(strategy.client_id, "btcusdt", strategy.name, Channel(B, T)),
            world.uow(),
            world.exchange,
        ),
        ValidationError,
        "VALIDATION",
    )
    assert err.details["field"] == "name"


async def test_update_strategy_rejects_a_narrow_channel_and_changes_nothing(world: World) -> None:
    strategy = await make_strategy(world)
    assert strategy.id is not None
    await enter_demo(world, strategy)  # disarmed
    err = await rejected(
        world,
        services.update_strategy(cmds.UpdateStrategy(strategy.id, top_price=D(103000)), world.uow(), world.exchange),
        ValidationError,
        "VALIDATION",
    )
    assert "smallest_workable_top" in err.details
    assert not reload(world, Strategy, strategy.id).is_armed  # a refused update does not re-arm


async def test_allocate_capital_must_be_positive(world: World) -> None:
    strategy = await make_strategy(world)
    for amount in (D(0), D(-10), D("Infinity"), D("1e16")):
        await rejected(world, allocate(world, strategy, amount), ValidationError, "VALIDATION")
    await rejected(
        world,
        services.allocate_capital(cmds.AllocateCapital(999, D(10)), world.uow(), world.exchange),
        NotFound,
        "NOT_FOUND",
    )


async def test_an_entry_that_cannot_meet_the_filters_is_skipped_with_the_reason(world: World) -> None:
    await make_strategy(world, capital=20)  # 20% of 20 = 4 USDT, under the 5 USDT minimum notional
    assert (await tick(world, "102000", "102500")).opened == []
    assert orders(world) == []
    (skipped,) = events(world, EventType.ENTRY_SKIPPED)
    assert skipped.data["reason"] == SkipReason.FILTER_FAILURE.value
    assert "MIN_NOTIONAL" in skipped.message


async def test_a_manual_buy_whose_net_quantity_rounds_to_nothing_is_a_filter_failure(world: World) -> None:
    """Rules 8, 9, 11: 0.00001 BTC (the minimum quantity) at 500000 meets LOT_SIZE and MIN_NOTIONAL,
    but the fee taken in BTC leaves 0.00000999, i.e. Q = 0 after rounding to the step: a position
    that can never be sold, whose min_sell divides by zero. The buy must be refused with the reason
    (FILTER_FAILURE, as `plan_entry` does for entries), not fail with decimal.DivisionByZero. The same
    happens on any symbol where one lot step is worth more than the minimum notional."""
    strategy = await make_strategy(world)
    await allocate(world, strategy, D(100000))
    err = await rejected(world, manual_buy(world, strategy, "500000", qty="0.00001"), FilterFailure, "FILTER_FAILURE")
    assert err.details["filter"] == "LOT_SIZE"


async def test_a_price_move_limited_to_some_strategies_leaves_the_others_alone(world: World) -> None:
    first = await make_strategy(world)
    second = await make_strategy(world, client=await make_client(world, "Other"), name="other")
    assert first.id is not None and second.id is not None
    world.book.set("BTCUSDT", D(102500))
    out = await services.process_price_move(
        cmds.ProcessPriceMove(BTC_ID, D(102000), D(102500), T0, strategy_ids=frozenset({second.id})),
        world.uow(),
        world.exchange,
    )
    assert [p.strategy_id for p in out.opened] == [second.id]
    assert [s.strategy_id for s in out.snapshots] == [second.id]
    assert reload(world, Strategy, first.id).is_armed


# ---------------------------------------------------------------- idempotency


async def test_client_order_ids_are_deterministic_and_fit_binance(world: World) -> None:
    strategy = await make_strategy(world)
    await enter_demo(world, strategy)
    await path(world, "102500", "109000", "108400", "100000", "102500")
    ids = [o.client_order_id for o in orders(world)]
    assert len(ids) == len(set(ids)) == 3
    assert ids[0] == f"cr-e{strategy.id}-1"
    assert all(len(i) <= 36 for i in ids)
    longest = services.client_order_id(OrderPurpose.SCHEDULED_EXIT, 2**63 - 1, 2**31 - 1)
    assert len(longest) <= 36


async def test_a_duplicated_tick_does_not_trade_twice(world: World) -> None:
    strategy = await make_strategy(world)
    await enter_demo(world, strategy)
    before = world.store.snapshot()
    await tick(world, "102000", "102500")  # the same update delivered again
    await tick(world, "102500", "102500")
    assert world.store.snapshot() == before
    await tick(world, "102500", "109000")
    await tick(world, "109000", "108400")
    sold = world.store.snapshot()
    await tick(world, "109000", "108400")
    await tick(world, "108400", "108400")
    assert world.store.snapshot() == sold


async def test_a_duplicated_entry_tick_does_not_buy_twice_with_the_smallest_buy_threshold(world: World) -> None:
    """Rule 1 (b = 0 is refused by validation, see test_channel): with the smallest b, E sits one
    cent above B; the entry tick delivered twice, and noise around E, buy once."""
    strategy = await make_strategy(world, buy_threshold=D("0.01"))
    e = ch.levels(B, T, D("0.01"), D(2)).entry
    await tick(world, "100000", e)
    await tick(world, "100000", e)  # the same update, delivered twice
    assert len(positions(world)) == 1
    await path(world, e, e - D("0.01"), e, e - D("0.01"), e)  # noise around E
    assert len(positions(world)) == 1
    assert not reload(world, Strategy, strategy.id).is_armed
