"""The backtest use case, shared by the GraphQL `backtest` query and `criptoren backtest`/`sweep`:
which channel, bankroll and symbol a run uses, its validation, and the stored candles it reads.
The run itself is `domain.backtest.run_backtest` (the live engine on an in-memory store)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from domain import commands as cmds
from domain.backtest import CandleSeries
from domain.channel import Channel, check_candle_interval, timeframe_delta
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
    `limit`, the latest `limit` of them. Read as CSV text, not as rows: a year of 1-minute candles
    takes about 60 MB rather than several hundred."""
    step_ms = timeframe_delta(interval) // timedelta(milliseconds=1)
    async with uow:
        data = await uow.candles.price_csv(symbol_id, interval, start, end, limit)
    if not data:
        return CandleSeries.from_prices([], [], step_ms)
    return CandleSeries.from_csv(data, f"the stored {interval} candles", step_ms)


async def backtest_candles(
    uow: UnitOfWork, symbol: Symbol, interval: str, start: datetime | None, end: datetime | None, most: int
) -> CandleSeries:
    """The candles a backtest of stored candles runs over: those of [start, end), or without
    either the latest `most`. A range of more than `most` candles, or of none, is refused."""
    assert symbol.id is not None
    ranged = start is not None or end is not None
    series = await stored_candles(uow, symbol.id, interval, start, end, limit=most + 1 if ranged else most)
    if len(series) > most:
        raise ValidationError(f"That range holds more than {most:,} candles: narrow it.", field="start")
    if not len(series):
        raise ValidationError(f"No {interval} candles of {symbol.symbol} are stored there.", field="start")
    return series


def check_interval(interval: str, timeframes: Iterable[str]) -> None:
    """Rule 5: candles of `interval` must judge the closes of each timeframe backtested — never
    coarser. Raises `ValidationError` naming the coarsest candle interval that works."""
    step = timeframe_delta(interval)
    for timeframe in timeframes:
        check_candle_interval(step, timeframe)
