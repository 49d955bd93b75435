"""The backtest use case, shared by the GraphQL `backtest` query and `criptoren backtest`/`sweep`:
which channel, bankroll and symbol a run uses, its validation, and the stored candles it reads.
The run itself is `domain.backtest.run_backtest` (the live engine on an in-memory store)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from domain import commands as cmds
from domain.backtest import CandleSeries
from domain.channel import EPOCH, Channel, timeframe_delta
from domain.errors import NotFound, ValidationError
from domain.model import Symbol
from domain.ports import UnitOfWork, UnitOfWorkFactory
from domain.services.common import check_amount, get_strategy

# The principal a backtest assumes when neither the strategy nor the caller gives one.
DEFAULT_BANKROLL = Decimal(2000)


@dataclass(frozen=True)
class BacktestSetup:
    """What a backtest runs: the channel, the bankroll, and the symbol of the strategy it comes
    from (None for a channel given whole: the caller names the symbol)."""

    channel: Channel
    bankroll: Decimal
    symbol: Symbol | None


async def prepare_backtest(cmd: cmds.PrepareBacktest, uow: UnitOfWorkFactory) -> BacktestSetup:
    """The channel to backtest: a stored strategy's (only the caller's own: another client's is not
    found) with the given parameters changed, or a channel given whole. The bankroll is the one
    given, else the strategy's principal, else `DEFAULT_BANKROLL`. Read only."""
    if cmd.bankroll is not None:
        check_amount("bankroll", cmd.bankroll)
    if cmd.strategy_id is not None:
        async with uow() as u:
            strategy = await get_strategy(u, cmd.strategy_id, cmd.client_id)
            symbol = await u.symbols.get(strategy.symbol_id)
            principal = await u.allocations.principal(cmd.strategy_id)
        return BacktestSetup(cmd.channel_from(strategy.channel), cmd.bankroll or principal or DEFAULT_BANKROLL, symbol)
    if cmd.base_price is None or cmd.top_price is None:
        raise ValidationError("Give basePrice and topPrice, or a strategyId.", field="basePrice")
    channel = cmd.channel_from(Channel(cmd.base_price, cmd.top_price))
    return BacktestSetup(channel, cmd.bankroll or DEFAULT_BANKROLL, None)


async def stored_symbol(uow: UnitOfWork, name: str) -> Symbol:
    async with uow:
        symbol = await uow.symbols.get_by_name(name.upper())
    if symbol is None:
        raise NotFound(f"Symbol {name} is not known.", entity="Symbol", id=name)
    return symbol


async def stored_candles(
    uow: UnitOfWork,
    symbol_id: int,
    interval: str,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int | None = None,
) -> CandleSeries:
    """A symbol's stored candles of one interval (open time in [start, end)), oldest first; with
    `limit`, the latest `limit` of them."""
    step_ms = int(timeframe_delta(interval).total_seconds() * 1000)
    async with uow:
        rows = await uow.candles.price_rows(symbol_id, interval, start, end, limit)
    open_ms = [int((r[0] - EPOCH).total_seconds() * 1000) for r in rows]
    return CandleSeries.from_prices(open_ms, [(r[1], r[2], r[3], r[4]) for r in rows], step_ms)
