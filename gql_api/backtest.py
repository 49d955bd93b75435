"""The `backtest` query: a channel over a stored symbol's candles, run by the live engine on an
in-memory store (domain/backtest.py), so a front-end can show how it would have done. It runs in the
backtest pool's processes (domain/adapters/backtest/pool.py): at most `BACKTEST_CONCURRENCY` at once
per API process, one per client; others wait up to `BACKTEST_WAIT_SECONDS`, then get `BUSY`."""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal
from typing import Annotated

import strawberry

from domain import backtest as bt
from domain import commands as cmds
from domain.adapters.bootstrap import StoredBacktest, resolve_database_url, run_stored_backtest
from domain.errors import ValidationError
from domain.model import PositionStatus as DomainPositionStatus
from domain.services import backtests
from gql_api.context import Info
from gql_api.permissions import IsAuthenticated
from gql_api.types import PositionStatus, Side, parse_id
from gql_api.types import d as _d

# A year of 1-minute candles and some: the run takes a few seconds of one core at most.
MAX_CANDLES = 600_000
MAX_TRADES = 1000
DEFAULT_TRADES = 100


@strawberry.input(
    description="A backtest: a channel (given here, or a stored strategy's) over a stored symbol's candles. "
    "Candles are replayed O→L→H→C when rising, O→H→L→C when falling, filled at the levels crossed; the jump "
    "from a close to the next open is one tick, filled at the open (SPEC §4 rule 10)."
)
class BacktestInput:
    symbol: str | None = strawberry.field(
        default=None, description="Symbol whose stored candles to use, e.g. BTCUSDT (default: the strategy's)."
    )
    strategy_id: strawberry.ID | None = strawberry.field(
        default=None, description="One of your strategies: its channel and bankroll are the defaults."
    )
    interval: str = strawberry.field(
        default="1m",
        description="Interval of the stored candles (default 1m); never coarser than the timeframe, whose closes "
        "they must show (SPEC §4 rule 5).",
    )
    start: datetime | None = strawberry.field(default=None, description="First candle open time (UTC).")
    end: datetime | None = strawberry.field(
        default=None,
        description=f"Candles opening before this time. Without start and end: the latest {MAX_CANDLES:,} candles.",
    )
    base_price: Decimal | None = strawberry.field(default=None, description="Base price B.")
    top_price: Decimal | None = strawberry.field(default=None, description="Top price T.")
    capital_percentage: Decimal | None = strawberry.field(
        default=None, description="Share of the bankroll spent per entry, in % (default 20)."
    )
    buy_threshold: Decimal | None = strawberry.field(default=None, description="Entry at B × (1 + b/100), b in %.")
    sell_threshold: Decimal | None = strawberry.field(default=None, description="Exit at T × (1 − s/100), s in %.")
    min_profit: Decimal | None = strawberry.field(default=None, description="Minimum profit of a sell, in %.")
    timeframe: str | None = strawberry.field(default=None, description="Timeframe judging channel breaks (4h).")
    bankroll: Decimal | None = strawberry.field(
        default=None, description="Principal in the quote asset (default: the strategy's, else 2000)."
    )
    fee_rate: Decimal | None = strawberry.field(
        default=None, description='Fee rate, e.g. "0.001" (default: the exchange\'s).'
    )
    max_trades: int = strawberry.field(
        default=DEFAULT_TRADES, description=f"Trades returned, the first ones (1 to {MAX_TRADES})."
    )


@strawberry.enum(description="What a backtest mark records.")
class BacktestMarkKind(enum.Enum):
    SCHEDULED = strawberry.enum_value("scheduled", description="A position was scheduled to sell at its price.")
    CHANNEL_BROKEN = strawberry.enum_value(
        "channel_broken", description="A timeframe candle closed below the base (rule 5)."
    )


@strawberry.type(description="A backtest's figures.")
class BacktestSummary:
    symbol: str = strawberry.field(description="Symbol backtested.")
    interval: str = strawberry.field(description="Interval of the candles replayed.")
    candles: int = strawberry.field(description="Number of candles.")
    start: datetime = strawberry.field(description="Open time of the first candle (UTC).")
    end: datetime = strawberry.field(description="Close time of the last candle (UTC).")
    base_price: Decimal = _d("Base price B.")
    entry_level: Decimal = _d("Entry level E = B × (1 + b/100).")
    exit_level: Decimal = _d("Exit level X = T × (1 − s/100).")
    top_price: Decimal = _d("Top price T.")
    capital_percentage: Decimal = _d("Share of the bankroll per entry, in %.")
    buy_threshold: Decimal = _d("b, in %.")
    sell_threshold: Decimal = _d("s, in %.")
    min_profit: Decimal = _d("m, in %.")
    timeframe: str = strawberry.field(description="Timeframe judging channel breaks.")
    bankroll: Decimal = _d("Principal allocated.")
    fee_rate: Decimal = _d("Fee rate applied.")
    entries: int = strawberry.field(description="Buys.")
    exits: int = strawberry.field(description="Sells.")
    wins: int = strawberry.field(description="Sells with a profit.")
    skipped_entries: int = strawberry.field(description="Entries skipped (capital, position count, filters).")
    net_profit: Decimal = _d("Realised profit: the sum of the sells' profits (quote asset).")
    segregated_profit: Decimal = _d("The strategy's segregated profit ledger at the end (rule 7).")
    fees: Decimal = _d("Fees paid, valued in the quote asset.")
    max_drawdown: Decimal = _d("Largest fall of equity from a peak, at candle closes (quote asset).")
    max_drawdown_pct: Decimal = _d("That fall in % of the peak.")
    exposure_pct: Decimal = _d("Share of the candles during which a position was held, in %.")
    channel_broken_at: datetime | None = strawberry.field(description="When the channel broke, if it did.")
    left_open: int = strawberry.field(description="Positions still open at the end.")
    left_scheduled: int = strawberry.field(description="Positions still scheduled at the end.")
    unrealised: Decimal = _d("Result of the positions left if sold at the last close, after the fee.")
    last_close: Decimal = _d("Close of the last candle.")
    final_equity: Decimal = _d("Bankroll + net profit + unrealised.")
    replayed_candles: int = strawberry.field(description="Candles replayed tick by tick (the others were skipped).")

    @classmethod
    def from_domain(cls, s: bt.Summary) -> BacktestSummary:
        c, lv = s.channel, s.levels
        return cls(
            symbol=s.symbol, interval=s.interval, candles=s.candles, start=s.start, end=s.end,
            base_price=lv.base, entry_level=lv.entry, exit_level=lv.exit, top_price=lv.top,
            capital_percentage=c.capital_percentage, buy_threshold=c.buy_threshold,
            sell_threshold=c.sell_threshold, min_profit=c.min_profit, timeframe=c.timeframe,
            bankroll=s.bankroll, fee_rate=s.fee_rate, entries=s.entries, exits=s.exits, wins=s.wins,
            skipped_entries=s.skipped_entries, net_profit=s.net_profit, segregated_profit=s.segregated_profit,
            fees=s.fees, max_drawdown=s.max_drawdown, max_drawdown_pct=s.max_drawdown_pct,
            exposure_pct=s.exposure_pct, channel_broken_at=s.channel_broken_at, left_open=s.left_open,
            left_scheduled=s.left_scheduled, unrealised=s.unrealised, last_close=s.last_close,
            final_equity=s.final_equity, replayed_candles=s.replayed_candles,
        )  # fmt: skip


@strawberry.type(description="A fill of a backtest.")
class BacktestTrade:
    executed_at: datetime = strawberry.field(description="When, on the candles' clock (UTC).")
    side: Side = strawberry.field(description="Buy or sell.")
    price: Decimal = _d(
        "Fill price: the level crossed inside a candle, the open after a jump, a scheduled sell's limit (rule 10)."
    )
    quantity: Decimal = _d("Gross quantity (base asset).")
    quote_amount: Decimal = _d("Gross value (quote asset).")
    fee: Decimal = _d("Fee, valued in the quote asset.")
    profit: Decimal | None = _d("Sells: proceeds after fees minus the position's cost.")
    reason: str = strawberry.field(description="entry, exit or scheduled_exit.")
    position: int = strawberry.field(description="Number of the backtest's position it belongs to.")

    @classmethod
    def from_domain(cls, t: bt.BacktestTrade) -> BacktestTrade:
        return cls(
            executed_at=t.at, side=Side(t.side.value), price=t.price, quantity=t.quantity, quote_amount=t.quote,
            fee=t.fee, profit=t.profit, reason=t.reason, position=t.position_id,
        )  # fmt: skip


@strawberry.type(description="A position still held at the end of a backtest.")
class BacktestPosition:
    position: int = strawberry.field(description="Number of the backtest's position.")
    status: PositionStatus = strawberry.field(description="Open or scheduled.")
    entry_price: Decimal = _d("Buy price.")
    quantity: Decimal = _d("Net quantity held.")
    cost: Decimal = _d("Quote spent on it.")
    min_sell_price: Decimal = _d("Its minimum sell price (rule 3).")
    scheduled_exit_price: Decimal | None = _d("Scheduled sell price, if scheduled.")
    unrealised: Decimal = _d("Its result if sold at the last close, after the fee.")

    @classmethod
    def from_domain(cls, p: bt.LeftPosition) -> BacktestPosition:
        status = PositionStatus.SCHEDULED if p.status is DomainPositionStatus.SCHEDULED else PositionStatus.OPEN
        return cls(
            position=p.position_id, status=status, entry_price=p.entry_price, quantity=p.quantity, cost=p.cost,
            min_sell_price=p.min_sell_price, scheduled_exit_price=p.scheduled_exit_price, unrealised=p.unrealised,
        )  # fmt: skip


@strawberry.type(description="A schedule or a channel break during a backtest.")
class BacktestMark:
    at: datetime = strawberry.field(description="When (UTC).")
    price: Decimal = _d("Price at that moment.")
    kind: BacktestMarkKind = strawberry.field(description="What happened.")


@strawberry.type(description="How a channel would have done over stored candles.")
class BacktestResult:
    summary: BacktestSummary = strawberry.field(description="The figures.")
    trades: list[BacktestTrade] = strawberry.field(description="The first `maxTrades` fills, in order.")
    trades_truncated: bool = strawberry.field(description="True when more fills happened than were returned.")
    positions_left: list[BacktestPosition] = strawberry.field(description="Positions held at the end.")
    marks: list[BacktestMark] = strawberry.field(description=f"Schedules and channel breaks (the first {MAX_TRADES}).")


@strawberry.type
class BacktestQueries:
    @strawberry.field(
        permission_classes=[IsAuthenticated],
        description="Backtest a channel over a stored symbol's candles with the live engine's rules; returns the "
        "figures and the first trades. Nothing is stored or traded.",
    )
    async def backtest(
        self, info: Info, input: Annotated[BacktestInput, strawberry.argument(description="What to backtest.")]
    ) -> BacktestResult:
        if not 1 <= input.max_trades <= MAX_TRADES:
            raise ValidationError(f"maxTrades must be between 1 and {MAX_TRADES}.", field="maxTrades")
        app = info.context.app
        setup = await backtests.prepare_backtest(
            cmds.PrepareBacktest(
                client_id=info.context.client_id,
                strategy_id=None if input.strategy_id is None else parse_id(input.strategy_id, "Strategy"),
                base_price=input.base_price, top_price=input.top_price,
                capital_percentage=input.capital_percentage, buy_threshold=input.buy_threshold,
                sell_threshold=input.sell_threshold, min_profit=input.min_profit, timeframe=input.timeframe,
                bankroll=input.bankroll,
            ),
            app.uow,
        )  # fmt: skip
        channel, bankroll = setup.channel, setup.bankroll
        if input.symbol is not None:
            symbol = await backtests.stored_symbol(app.uow(), input.symbol)
        elif setup.symbol is not None:
            symbol = setup.symbol
        else:
            raise ValidationError("Give a symbol or a strategyId.", field="symbol")
        assert symbol.id is not None
        fee_rate = input.fee_rate if input.fee_rate is not None else app.exchange.fee_rate(symbol)
        channel.validate(fee_rate, symbol.tick_size)
        backtests.check_interval(input.interval, [channel.timeframe])
        job = StoredBacktest(
            symbol=symbol, interval=input.interval, start=input.start, end=input.end, max_candles=MAX_CANDLES,
            channel=channel, bankroll=bankroll, fee_rate=fee_rate, max_trades=input.max_trades, max_marks=MAX_TRADES,
        )  # fmt: skip
        # In a process of the backtest pool, which reads the candles itself: this process keeps
        # serving meanwhile. BUSY when the client has one running, or the pool stays full.
        result = await app.backtests.run(
            info.context.client_id, run_stored_backtest, resolve_database_url(app.settings), job
        )
        return BacktestResult(
            summary=BacktestSummary.from_domain(result.summary),
            trades=[BacktestTrade.from_domain(t) for t in result.trades[: input.max_trades]],
            trades_truncated=len(result.trades) > input.max_trades,
            positions_left=[BacktestPosition.from_domain(p) for p in result.left],
            marks=[
                BacktestMark(at=m.at, price=m.price, kind=BacktestMarkKind(m.kind)) for m in result.marks[:MAX_TRADES]
            ],
        )
