"""The engine-driven rules: a price move (rules 1, 4, 6) and a timeframe close (rule 5), one
transaction per decision, every rule re-checked under the strategies' row locks."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from domain import channel as ch
from domain import commands as cmds
from domain.engine import StrategySnapshot
from domain.errors import (
    ExchangeError,
    FilterFailure,
    InsufficientBalance,
    PermanentExchangeError,
)
from domain.events import EventType, SkipReason
from domain.logctx import log_fields
from domain.model import (
    Ledger,
    OrderPurpose,
    Position,
    PositionStatus,
    Strategy,
    Symbol,
)
from domain.ports import Exchange, TickRow, UnitOfWork
from domain.services.common import (
    fmt,
    get_symbol,
    is_closed,
    record_event,
)
from domain.services.execution import (
    park_position,
    place_buy,
    place_sell,
    plan_entry,
    schedule_position,
)


async def _try_entry(
    uow: UnitOfWork,
    exchange: Exchange,
    strategy: Strategy,
    symbol: Symbol,
    price: Decimal,
    live: Sequence[Position],
    principal: Decimal,
    *,
    paused: bool = False,
) -> Position | None:
    """Rules 1 and 2: one entry per bounce, sized at p% of the bankroll, if free principal covers
    it and, on a real exchange, the account's free balance of the quote asset too (SPEC §4b: else
    INSUFFICIENT_BALANCE, found before anything is sent). A skipped entry disarms the strategy too,
    and is recorded with its reason. `live` are the strategy's open and scheduled positions,
    `principal` its bankroll (read under its lock). `paused`: the client's trading is paused
    (emergency stop): the entry is skipped."""
    assert strategy.id is not None
    strategy.disarm()
    ledger = Ledger(principal=principal, committed=sum((p.cost for p in live), Decimal(0)), profit=Decimal(0))

    def skip(reason: SkipReason, message: str) -> None:
        record_event(uow, strategy, EventType.ENTRY_SKIPPED, message, reason=reason.value, price=price)

    if paused:
        skip(SkipReason.TRADING_PAUSED, "Entry skipped: trading is paused for the client.")
        return None
    if ledger.principal <= 0:
        skip(SkipReason.NO_CAPITAL, "Entry skipped: no capital is allocated to the strategy.")
        return None
    if len(live) >= ch.max_open_positions(strategy.capital_percentage):
        skip(SkipReason.MAX_POSITIONS, f"Entry skipped: {len(live)} positions are already open.")
        return None
    try:
        plan = plan_entry(ledger.principal, strategy, symbol, price, exchange.fee_rate(symbol))
    except FilterFailure as e:
        # Lot rounding too coarse for p% within 0.1 pt (rule 2) has its own reason; the rest are filters.
        precision = e.details.get("filter") == "ALLOCATION_PRECISION"
        skip(SkipReason.ALLOCATION_PRECISION if precision else SkipReason.FILTER_FAILURE, f"Entry skipped: {e.message}")
        return None
    if plan.estimated_cost > ledger.free:
        skip(
            SkipReason.INSUFFICIENT_CAPITAL,
            f"Entry skipped: it needs {fmt(plan.estimated_cost)} but the free principal is {fmt(ledger.free)}.",
        )
        return None
    try:
        opened = await place_buy(uow, exchange, strategy, symbol, OrderPurpose.ENTRY, plan)
    except InsufficientBalance as e:
        # SPEC §4b: the account's free balance (cached from the user data stream, refreshed over
        # REST) does not cover it; the exchange adapter found it before sending.
        skip(SkipReason.INSUFFICIENT_BALANCE, f"Entry skipped: {e.message}")
        return None
    except PermanentExchangeError as e:
        skip(SkipReason.EXCHANGE_REJECTED, f"Entry skipped: the exchange refused it ({e.message}).")
        return None
    if opened is None:
        skip(
            SkipReason.ORDER_UNKNOWN,
            "Entry not confirmed by the exchange: the order is recorded and reconciliation opens the position "
            "if it filled.",
        )
    return opened


@dataclass
class TickOutcome:
    opened: list[Position] = field(default_factory=list)
    closed: list[Position] = field(default_factory=list)
    scheduled: list[Position] = field(default_factory=list)
    # The engine's view of every strategy looked at, after the move (to refresh its index).
    snapshots: list[StrategySnapshot] = field(default_factory=list)


def snapshot(strategy: Strategy, live: Sequence[Position]) -> StrategySnapshot:
    """The engine index's view of a strategy and its live positions."""
    assert strategy.id is not None
    return StrategySnapshot.of(
        strategy.id, strategy.levels, strategy.timeframe, strategy.is_active, strategy.is_armed,
        strategy.is_channel_broken,
        has_open_positions=any(p.status is PositionStatus.OPEN for p in live),
        scheduled=[
            (p.id, p.scheduled_exit_price)
            for p in live
            if p.status is PositionStatus.SCHEDULED and p.id is not None and p.scheduled_exit_price is not None
        ],
    )  # fmt: skip


async def engine_snapshots(
    uow: UnitOfWork, symbol_id: int, strategy_ids: Collection[int] | None = None
) -> list[StrategySnapshot]:
    """Snapshots of a symbol's strategies (all, or some) for the engine's index. Read only."""
    async with uow:
        strategies = await uow.strategies.list_by_symbol(symbol_id, strategy_ids)
        live = await uow.positions.list_live_by_strategies([s.id for s in strategies if s.id is not None])
    by_strategy: dict[int, list[Position]] = {}
    for p in live:
        by_strategy.setdefault(p.strategy_id, []).append(p)
    return [snapshot(s, by_strategy.get(s.id or 0, [])) for s in strategies]


async def process_price_move(
    cmd: cmds.ProcessPriceMove, uow: UnitOfWork, exchange: Exchange, symbol: Symbol | None = None
) -> TickOutcome:
    """Apply rules 1 (re-arm, entry), 4 (exit) and 6 (scheduled sells, paper) to `prev -> cur` for
    the symbol's strategies (or those of `cmd.strategy_ids`), in one transaction. Paused strategies
    only sell. `symbol` may be passed by a caller that has it (the engine), saving a query."""
    outcome = TickOutcome()
    async with uow:
        if symbol is None:
            symbol = await get_symbol(uow, cmd.symbol_id)
        if not symbol.is_active:
            return outcome  # SPEC §4b: a halted or delisted symbol sends no order
        rows = await uow.strategies.lock_for_tick(cmd.symbol_id, cmd.strategy_ids)
        for row in rows:
            try:
                account = await exchange.for_client(row.strategy.client_id)
            except ExchangeError:
                # The client's account cannot trade now (keys refused, exchange unreachable): its
                # strategies wait for the next move (the exchange adapter logs why).
                continue
            with log_fields(strategy_id=row.strategy.id):
                await _apply_tick(uow, account, row, symbol, cmd.prev, cmd.cur, outcome)
        await uow.commit()
    return outcome


async def _apply_tick(
    uow: UnitOfWork,
    exchange: Exchange,
    row: TickRow,
    symbol: Symbol,
    prev: Decimal,
    cur: Decimal,
    outcome: TickOutcome,
) -> None:
    strategy, live, principal = row.strategy, row.live, row.principal
    paused, sells_held = row.paused, row.sells_held
    assert strategy.id is not None
    lv = strategy.levels
    if strategy.rearm_on(cur):
        record_event(
            uow, strategy, EventType.STRATEGY_REARMED, f"Price {fmt(cur)} touched the base: armed again.", price=cur
        )
    # Rule 6 (paper): a scheduled position sells on the tick that reaches its price — at its limit,
    # as the resting order would have filled, even when the tick jumped past it (rule 10).
    if not exchange.rests_limit_orders:
        for position in live:
            if (
                position.status is PositionStatus.SCHEDULED
                and position.scheduled_exit_price is not None
                and ch.scheduled_sell_triggered(cur, position.scheduled_exit_price)
            ):
                await place_sell(
                    uow, exchange, strategy, symbol, position, OrderPurpose.SCHEDULED_EXIT, cur, reached=True
                )
                if is_closed(position):
                    outcome.closed.append(position)
    # Rule 4: exit on the way down through X (unless the client's emergency stop holds its sells).
    if ch.exit_triggered(prev, cur, lv) and not sells_held:
        for position in live:
            if position.status is not PositionStatus.OPEN:
                continue
            if cur >= position.min_sell_price:
                try:
                    execution = await place_sell(uow, exchange, strategy, symbol, position, OrderPurpose.EXIT, cur)
                except (FilterFailure, PermanentExchangeError) as e:
                    # Refused (e.g. the account no longer holds the quantity): recorded, and the
                    # position stays open for the user to see; the engine goes on with the others.
                    record_event(
                        uow, strategy, EventType.ORDER_REFUSED,
                        f"The exchange refused the exit of position {position.id}: {e.message}", position,
                        error=e.message,
                    )  # fmt: skip
                    continue
                if is_closed(position):
                    outcome.closed.append(position)
                    continue
                if execution is None:
                    await park_position(uow, exchange, strategy, symbol, position)
                    outcome.scheduled.append(position)
                    continue
                # An unfilled IOC remainder becomes scheduled (rule 4).
            await schedule_position(
                uow,
                exchange,
                strategy,
                symbol,
                position,
                position.min_sell_price,
                "exit level crossed below the minimum sell price",
            )
            outcome.scheduled.append(position)
    # Rule 1: entry on the way up through E, once per bounce.
    if strategy.can_enter and ch.entry_triggered(prev, cur, lv):
        opened = await _try_entry(
            uow, exchange, strategy, symbol, cur, [p for p in live if not is_closed(p)], principal, paused=paused
        )
        if opened is not None:
            outcome.opened.append(opened)
            live.append(opened)
    outcome.snapshots.append(snapshot(strategy, [p for p in live if not is_closed(p)]))


async def process_candle_close(cmd: cmds.ProcessCandleClose, uow: UnitOfWork, exchange: Exchange) -> list[Strategy]:
    """Rule 5: a closed candle of a strategy's timeframe below B breaks its channel: no entries, and
    each open position is scheduled at its min_sell with `channel_exit_date` = the close time."""
    broken: list[Strategy] = []
    async with uow:
        symbol = await get_symbol(uow, cmd.symbol_id)
        for strategy in await uow.strategies.list_active_by_symbol(cmd.symbol_id, cmd.strategy_ids):
            # A paused strategy holding positions breaks too: its open positions are parked all the same.
            if strategy.timeframe != cmd.interval or strategy.is_channel_broken:
                continue
            lv = strategy.levels
            if not ch.channel_broken(cmd.close, lv):
                continue
            if (await uow.clients.paused([strategy.client_id])).get(strategy.client_id):
                continue  # an emergency stop holds the client's sells: judged on a close after it resumes
            assert strategy.id is not None
            try:
                account, rest = await exchange.for_client(strategy.client_id), True
            except ExchangeError:
                # Parked all the same; reconciliation places the resting sells once the account answers.
                account, rest = exchange, False
            strategy.break_channel(cmd.close_time)
            record_event(
                uow,
                strategy,
                EventType.CHANNEL_BROKEN,
                f"A {strategy.timeframe} candle closed at {fmt(cmd.close)}, below the base {fmt(lv.base)}: "
                "channel broken, no new entries.",
                close=cmd.close,
                close_time=cmd.close_time.isoformat(),
            )
            for position in await uow.positions.list_live_by_strategy(strategy.id):
                if position.status is PositionStatus.OPEN:
                    await schedule_position(
                        uow,
                        account,
                        strategy,
                        symbol,
                        position,
                        position.min_sell_price,
                        "channel broken",
                        channel_exit_date=cmd.close_time,
                        rest=rest,
                    )
            broken.append(strategy)
        await uow.commit()
    return broken
