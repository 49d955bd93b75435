"""The channel strategy's rules (SPEC §4) as pure functions: prices in, decisions out.

No I/O and no floats. Rounding is always explicit and named.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, localcontext
from typing import TYPE_CHECKING

from domain.errors import FilterFailure, ValidationError
from domain.numbers import AMOUNT, FEE_RATE, PERCENT, Bounds, plain

if TYPE_CHECKING:
    from domain.model import SymbolFilters

HUNDRED = Decimal(100)
ONE = Decimal(1)
# min_sell is kept to 8 decimals, rounded *up*: a stored floor can only be above the exact one.
PRICE_QUANTUM = Decimal("0.00000001")
# Allowed deviation of an entry's spend from capital_percentage, in percentage points (rule 2).
ALLOCATION_TOLERANCE_PT = Decimal("0.1")
DEFAULT_FEE_RATE = Decimal("0.001")

TIMEFRAMES: dict[str, timedelta] = {
    "1m": timedelta(minutes=1),
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "30m": timedelta(minutes=30),
    "1h": timedelta(hours=1),
    "2h": timedelta(hours=2),
    "4h": timedelta(hours=4),
    "6h": timedelta(hours=6),
    "8h": timedelta(hours=8),
    "12h": timedelta(hours=12),
    "1d": timedelta(days=1),
}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# ---------------------------------------------------------------- rounding


def round_down_to_step(value: Decimal, step: Decimal) -> Decimal:
    """Largest multiple of `step` that is <= value (quantities: LOT_SIZE, rule 9)."""
    if step <= 0:
        return value
    return (value / step).to_integral_value(rounding=ROUND_FLOOR) * step


def round_up_to_step(value: Decimal, step: Decimal) -> Decimal:
    """Smallest multiple of `step` that is >= value (limit prices: PRICE_FILTER tick, rule 9)."""
    if step <= 0:
        return value
    return (value / step).to_integral_value(rounding=ROUND_CEILING) * step


# ---------------------------------------------------------------- levels and validation


@dataclass(frozen=True)
class Levels:
    base: Decimal  # B
    entry: Decimal  # E = B * (1 + b/100)
    exit: Decimal  # X = T * (1 - s/100)
    top: Decimal  # T


def levels(base: Decimal, top: Decimal, buy_threshold: Decimal, sell_threshold: Decimal) -> Levels:
    """Entry and exit levels of a channel (SPEC §4)."""
    return Levels(
        base=base,
        entry=base * (ONE + buy_threshold / HUNDRED),
        exit=top * (ONE - sell_threshold / HUNDRED),
        top=top,
    )


# The ranges of SPEC §4's parameters, each to the 4 decimals its column keeps (domain.numbers).
CAPITAL_PERCENTAGE = Bounds(Decimal(0), HUNDRED, scale=PERCENT)  # 0 < p <= 100
# b > 0: with E = B the tick that enters would also re-arm (price <= B), and noise around B
# would stack entries (rule 1). A b under 0.0001 would be stored as 0: refused, not rounded.
BUY_THRESHOLD = Bounds(Decimal(0), HUNDRED, high_included=False, scale=PERCENT)  # 0 < b < 100
SELL_THRESHOLD = Bounds(Decimal(0), HUNDRED, low_included=True, high_included=False, scale=PERCENT)  # 0 <= s < 100
MIN_PROFIT = Bounds(Decimal(0), Decimal(1000), low_included=True, high_included=False, scale=PERCENT)  # 0 <= m < 1000

# The defaults of SPEC §4's parameters, defined once.
DEFAULT_CAPITAL_PERCENTAGE = Decimal(20)
DEFAULT_BUY_THRESHOLD = Decimal(2)
DEFAULT_SELL_THRESHOLD = Decimal(2)
DEFAULT_MIN_PROFIT = Decimal("0.5")
DEFAULT_TIMEFRAME = "4h"


@dataclass(frozen=True)
class Channel:
    """A strategy's channel (SPEC §4): floor B, ceiling T, entry size p%, thresholds b% and s%,
    minimum profit m% and the timeframe whose closes judge a break. One value, with its levels
    and its validation: nothing else recomputes them from loose arguments."""

    base: Decimal
    top: Decimal
    capital_percentage: Decimal = DEFAULT_CAPITAL_PERCENTAGE
    buy_threshold: Decimal = DEFAULT_BUY_THRESHOLD
    sell_threshold: Decimal = DEFAULT_SELL_THRESHOLD
    min_profit: Decimal = DEFAULT_MIN_PROFIT
    timeframe: str = DEFAULT_TIMEFRAME

    @property
    def levels(self) -> Levels:
        """E = B * (1 + b/100), X = T * (1 - s/100)."""
        return levels(self.base, self.top, self.buy_threshold, self.sell_threshold)

    def validate(
        self,
        fee_rate: Decimal,
        tick_size: Decimal = PRICE_QUANTUM,
        *,
        filters: SymbolFilters | None = None,
        principal: Decimal | None = None,
    ) -> Levels:
        """Rule 11 and the parameters' ranges; returns the levels. Raises `ValidationError` naming
        the field and, for a narrow channel, the smallest workable top (`validate_channel`)."""
        return validate_channel(self, fee_rate, tick_size, filters=filters, principal=principal)

    def with_changes(
        self,
        *,
        base: Decimal | None = None,
        top: Decimal | None = None,
        capital_percentage: Decimal | None = None,
        buy_threshold: Decimal | None = None,
        sell_threshold: Decimal | None = None,
        min_profit: Decimal | None = None,
        timeframe: str | None = None,
    ) -> Channel:
        """This channel with the given parameters changed (`None` keeps a parameter)."""
        return Channel(
            self.base if base is None else base,
            self.top if top is None else top,
            self.capital_percentage if capital_percentage is None else capital_percentage,
            self.buy_threshold if buy_threshold is None else buy_threshold,
            self.sell_threshold if sell_threshold is None else sell_threshold,
            self.min_profit if min_profit is None else min_profit,
            self.timeframe if timeframe is None else timeframe,
        )

    def entry_moved(self, other: Channel) -> bool:
        """Whether `other` has another entry level's inputs (base or buy threshold): rule 1 re-arms
        a strategy only on such a change."""
        return (self.base, self.buy_threshold) != (other.base, other.buy_threshold)


def smallest_workable_top(
    base: Decimal,
    buy_threshold: Decimal,
    sell_threshold: Decimal,
    min_profit: Decimal,
    fee_rate: Decimal,
    tick_size: Decimal = PRICE_QUANTUM,
    *,
    filters: SymbolFilters | None = None,
    entry_quote: Decimal | None = None,
) -> Decimal:
    """Smallest top T, a multiple of the tick, with X >= E * (1 + m/100) / (1 - f)^2 (rule 11) and
    X above E (an entry needs `cur < X`).

    With the symbol's `filters`, the top must also work once lots are rounded (rule 11, rules 2 and
    9): the position an entry at E buys — spending `entry_quote` (rule 2: p% of the principal), or
    the smallest entry the filters allow while there is no principal — must have `min_sell <= X`,
    its exit (a LIMIT IOC at min_sell rounded up to the tick, rule 4) filling at X, or every exit
    of the channel would become a scheduled sell."""
    entry = base * (ONE + buy_threshold / HUNDRED)
    needed_exit = entry * (ONE + min_profit / HUNDRED) / ((ONE - fee_rate) ** 2)
    if filters is not None:
        needed_exit = max(needed_exit, exit_floor(entry, entry_quote, filters, fee_rate, min_profit))
    keep = ONE - sell_threshold / HUNDRED
    top = round_up_to_step(needed_exit / keep, tick_size)
    while top * keep < needed_exit:  # the division's own rounding
        top += tick_size
    while top * keep <= entry:
        top += tick_size
    return top


def validate_channel(
    channel: Channel,
    fee_rate: Decimal,
    tick_size: Decimal = PRICE_QUANTUM,
    *,
    filters: SymbolFilters | None = None,
    principal: Decimal | None = None,
) -> Levels:
    """Check a channel's parameters (SPEC §4 parameters and rule 11); return its levels.

    Raises `ValidationError` naming the field and, for a narrow channel, the smallest workable top:
    with the symbol's `filters`, one that works once lots are rounded — for entries sized by rule 2
    for `principal`, or for the smallest entry the filters allow while there is none (rule 11).
    """
    base, top, timeframe = channel.base, channel.top, channel.timeframe
    capital_percentage, buy_threshold = channel.capital_percentage, channel.buy_threshold
    sell_threshold, min_profit = channel.sell_threshold, channel.min_profit
    # Every parameter is stored exactly as given (NUMERIC scales of domain.numbers) or refused.
    FEE_RATE.check("feeRate", fee_rate)
    AMOUNT.check("basePrice", base)
    AMOUNT.check("topPrice", top)
    if top <= base:
        raise ValidationError(f"topPrice ({plain(top)}) must be above basePrice ({plain(base)}).", field="topPrice")
    CAPITAL_PERCENTAGE.check("capitalPercentage", capital_percentage)
    BUY_THRESHOLD.check("buyThreshold", buy_threshold)
    SELL_THRESHOLD.check("sellThreshold", sell_threshold)
    MIN_PROFIT.check("minProfit", min_profit)
    if timeframe not in TIMEFRAMES:
        raise ValidationError(f"timeframe must be one of {', '.join(TIMEFRAMES)}.", field="timeframe")
    lv = channel.levels
    if lv.exit <= lv.entry or lv.exit < lv.entry * (ONE + min_profit / HUNDRED) / ((ONE - fee_rate) ** 2):
        quote = entry_quote_amount(principal, capital_percentage) if principal and principal > 0 else None
        smallest = smallest_workable_top(
            base, buy_threshold, sell_threshold, min_profit, fee_rate, tick_size, filters=filters, entry_quote=quote
        )
        raise ValidationError(
            f"The channel is too narrow to yield the minimum profit of {plain(min_profit)}% after fees: "
            f"the exit level {plain(lv.exit)} is below what an entry at "
            f"{plain(lv.entry)} needs. The smallest workable topPrice is "
            f"{plain(smallest)}.",
            field="topPrice",
            smallest_workable_top=plain(smallest),
        )
    return lv


def entries_warning(
    channel: Channel, principal: Decimal, filters: SymbolFilters, fee_rate: Decimal, tick_size: Decimal
) -> str | None:
    """Rule 11: why entries sized by rule 2 for `principal` would not work, or None when they do —
    an entry at E too small for the exchange's filters (every entry skipped), or one whose lot
    rounding pushes `min_sell` above X (every exit a scheduled sell). For a warning, not a refusal:
    the allocation that causes it still stands."""
    if principal <= 0:
        return None
    lv = channel.levels
    quote = entry_quote_amount(principal, channel.capital_percentage)
    smallest = smallest_entry_quantity(lv.entry, filters, fee_rate)
    if round_down_to_step(quote / lv.entry, filters.step_size) < smallest:
        return (
            f"Each entry would spend {_plain(quote)} ({_plain(channel.capital_percentage)}% of the principal "
            f"{_plain(principal)}), less than the smallest order the exchange accepts at the entry level "
            f"{_plain(lv.entry)} (about {_plain(round_up_to_step(smallest * lv.entry, PRICE_QUANTUM))}): every "
            "entry would be skipped. Allocate more, or raise capitalPercentage."
        )
    bought = entry_fill(lv.entry, quote, filters, fee_rate)
    floor = exit_floor(lv.entry, quote, filters, fee_rate, channel.min_profit)
    if floor <= lv.exit:
        return None
    top = smallest_workable_top(
        channel.base, channel.buy_threshold, channel.sell_threshold, channel.min_profit, fee_rate, tick_size,
        filters=filters, entry_quote=quote,
    )  # fmt: skip
    return (
        f"After lot rounding, an entry of {_plain(quote)} at the entry level {_plain(lv.entry)} keeps "
        f"{_plain(bought.quantity)} for a cost of {_plain(bought.cost)}: its minimum sell price "
        f"{_plain(floor)} (to the tick) is above the exit level {_plain(lv.exit)}, so every exit would become "
        f"a scheduled sell. Allocate more, or raise topPrice to at least {_plain(top)}."
    )


def _plain(value: Decimal) -> str:
    return plain(value)


def validate_percentage(name: str, value: Decimal, upper: Decimal = MIN_PROFIT.high) -> None:
    """A percentage such as a minimum profit m: at least 0, below `upper`, to the 4 decimals of
    the percent columns (stored exactly or refused)."""
    Bounds(Decimal(0), upper, low_included=True, high_included=False, scale=PERCENT).check(name, value)


# ---------------------------------------------------------------- rules 1, 4, 5, 6: triggers


def entry_triggered(prev: Decimal, cur: Decimal, lv: Levels) -> bool:
    """Rule 1: the price rose through E while still under X (`prev < E <= cur` and `cur < X`)."""
    return prev < lv.entry <= cur < lv.exit


def exit_triggered(prev: Decimal, cur: Decimal, lv: Levels) -> bool:
    """Rule 4: the price turned down through X (`prev > X >= cur`)."""
    return prev > lv.exit >= cur


def rearm_triggered(price: Decimal, lv: Levels) -> bool:
    """Rule 1: a disarmed strategy is re-armed when the price touches the base (`price <= B`)."""
    return price <= lv.base


def channel_broken(candle_close: Decimal, lv: Levels) -> bool:
    """Rule 5: a closed candle of the strategy's timeframe below B breaks the channel."""
    return candle_close < lv.base


def scheduled_sell_triggered(cur: Decimal, scheduled_exit_price: Decimal) -> bool:
    """Rule 6: a scheduled position sells as soon as the price reaches its exit price."""
    return cur >= scheduled_exit_price


# ---------------------------------------------------------------- rules 2, 3, 9: sizes and prices


def entry_quote_amount(bankroll: Decimal, capital_percentage: Decimal) -> Decimal:
    """Rule 2: each entry spends p% of the bankroll (quote asset), to 8 decimals, rounded down."""
    return round_down_to_step(bankroll * capital_percentage / HUNDRED, PRICE_QUANTUM)


def max_open_positions(capital_percentage: Decimal) -> int:
    """Rule 2: at most floor(100/p) positions of a strategy at once."""
    return int((HUNDRED / capital_percentage).to_integral_value(rounding=ROUND_FLOOR))


def allocation_deviation_pt(spent: Decimal, bankroll: Decimal, capital_percentage: Decimal) -> Decimal:
    """|spent / bankroll * 100 - p| in percentage points (rule 2 requires <= 0.1)."""
    return abs(spent / bankroll * HUNDRED - capital_percentage)


def buy_quantity_for_quote(quote: Decimal, price: Decimal, filters: SymbolFilters) -> Decimal:
    """Gross quantity a MARKET buy of `quote` gets at `price`, rounded down to the lot step (rule 9)."""
    return round_down_to_step(quote / price, filters.step_size)


def check_order_filters(quantity: Decimal, price: Decimal, filters: SymbolFilters, what: str) -> None:
    """Rule 11: LOT_SIZE (minimum and step) and MIN_NOTIONAL apply to every order."""
    if quantity < filters.min_qty or quantity <= 0:
        raise FilterFailure(
            f"{what}: quantity {plain(quantity)} is below the exchange's minimum {plain(filters.min_qty)} (LOT_SIZE).",
            filter="LOT_SIZE",
        )
    if round_down_to_step(quantity, filters.step_size) != quantity:
        raise FilterFailure(
            f"{what}: quantity {plain(quantity)} is not a multiple of the lot step "
            f"{plain(filters.step_size)} (LOT_SIZE).",
            filter="LOT_SIZE",
        )
    notional = quantity * price
    if notional < filters.min_notional:
        raise FilterFailure(
            f"{what}: order value {plain(notional)} is below the exchange's minimum "
            f"{plain(filters.min_notional)} (MIN_NOTIONAL).",
            filter="MIN_NOTIONAL",
        )


def commission(amount: Decimal) -> Decimal:
    """A fee as Binance reports it: to 8 decimals, rounded half up (the paper exchange does the same,
    so that paper and Binance book the same fees to the last digit). Quantized with room for the
    largest amounts the API accepts (28 significant digits, plus 8 decimals), which the default
    context could not hold."""
    with localcontext() as wide:
        wide.prec = 60
        return amount.quantize(PRICE_QUANTUM, rounding=ROUND_HALF_UP)


def net_quantity(gross: Decimal, fee_rate: Decimal, step: Decimal) -> Decimal:
    """Rule 9: what a buy of `gross` leaves to sell — the fee taken from the base asset received,
    the rest rounded down to the lot step (the remainder is dust)."""
    return round_down_to_step(gross - commission(gross * fee_rate), step)


def smallest_entry_quantity(price: Decimal, filters: SymbolFilters, fee_rate: Decimal) -> Decimal:
    """The smallest gross quantity, a multiple of the lot step, that can be bought at `price` and
    whose net quantity (rule 9) can be sold there again: LOT_SIZE and MIN_NOTIONAL on both orders
    (rule 11) — the size of an entry "for the symbol's minimum notional"."""
    step = filters.step_size if filters.step_size > 0 else PRICE_QUANTUM
    need = max(filters.min_qty, round_up_to_step(filters.min_notional / price, step), step)
    # The net is about gross * (1 - f), less a step of rounding: start just under, step up.
    gross = max(need, round_up_to_step(need / (ONE - fee_rate), step) - step)
    while net_quantity(gross, fee_rate, step) < need:
        gross += step
    return gross


@dataclass(frozen=True)
class EntryFill:
    """A position bought at one price, as the paper exchange and Binance fill it (rule 9, the fee
    in the base asset): gross quantity, net quantity Q and cost C."""

    gross: Decimal
    quantity: Decimal
    cost: Decimal


def entry_fill(price: Decimal, quote: Decimal | None, filters: SymbolFilters, fee_rate: Decimal) -> EntryFill:
    """The position an entry at `price` opens: spending `quote` (rule 2; the gross quantity rounded
    down to the step), or — with None, or a quote too small for the filters, whose entry would be
    skipped — the smallest entry the filters allow (`smallest_entry_quantity`)."""
    smallest = smallest_entry_quantity(price, filters, fee_rate)
    gross = smallest if quote is None else max(round_down_to_step(quote / price, filters.step_size), smallest)
    return EntryFill(gross, net_quantity(gross, fee_rate, filters.step_size), gross * price)


def exit_floor(
    price: Decimal, quote: Decimal | None, filters: SymbolFilters, fee_rate: Decimal, min_profit: Decimal
) -> Decimal:
    """The lowest price at which the exit of an entry at `price` (`entry_fill`) fills: its min_sell
    (rule 3) rounded up to the tick, the limit of its LIMIT IOC sell (rules 4, 9)."""
    bought = entry_fill(price, quote, filters, fee_rate)
    return round_up_to_step(min_sell_price(bought.cost, bought.quantity, min_profit, fee_rate), filters.tick_size)


@dataclass(frozen=True)
class BuyResult:
    """What a filled buy leaves in the position (rule 9)."""

    quantity: Decimal  # Q: net of a base-asset fee, rounded down to the step
    dust: Decimal  # net - Q
    cost: Decimal  # C: quote spent, a quote-asset fee included
    fee_in_quote: Decimal  # the buy fee valued in the quote asset


def position_from_buy(
    gross_quantity: Decimal,
    quote_spent: Decimal,
    fee: Decimal,
    fee_asset: str,
    base_asset: str,
    quote_asset: str,
    average_price: Decimal,
    filters: SymbolFilters,
    fee_asset_price_in_quote: Decimal | None = None,
) -> BuyResult:
    """Rule 9: a fee in the base asset reduces the quantity; in the quote asset (or BNB, valued in
    quote at the fill) it adds to the cost. The net quantity is rounded down to the step; the rest
    is dust."""
    net = gross_quantity
    cost = quote_spent
    if fee_asset == base_asset:
        net = gross_quantity - fee
        fee_in_quote = fee * average_price
    elif fee_asset == quote_asset:
        cost = quote_spent + fee
        fee_in_quote = fee
    else:
        if fee_asset_price_in_quote is None:
            raise ValueError(f"a fee paid in {fee_asset} needs its price in {quote_asset}")
        fee_in_quote = fee * fee_asset_price_in_quote
        cost = quote_spent + fee_in_quote
    quantity = round_down_to_step(net, filters.step_size)
    return BuyResult(quantity=quantity, dust=net - quantity, cost=cost, fee_in_quote=fee_in_quote)


def min_sell_price(cost: Decimal, quantity: Decimal, min_profit: Decimal, fee_rate: Decimal) -> Decimal:
    """Rule 3: `min_sell = C * (1 + m/100) / (Q * (1 - f))`, rounded up to 8 decimals.

    Selling Q at or above it returns at least C * (1 + m/100) after the sell fee.
    """
    exact = cost * (ONE + min_profit / HUNDRED) / (quantity * (ONE - fee_rate))
    return round_up_to_step(exact, PRICE_QUANTUM)


def limit_sell_price(min_sell: Decimal, filters: SymbolFilters) -> Decimal:
    """Rule 9: a limit sell price is min_sell rounded *up* to the tick, never down."""
    return round_up_to_step(min_sell, filters.tick_size)


@dataclass(frozen=True)
class SellResult:
    proceeds: Decimal  # quote received after the sell fee
    fee: Decimal  # quote
    profit: Decimal  # proceeds - cost (negative only for an acceptLoss sell)


def sell_result(quote_received: Decimal, fee: Decimal, cost: Decimal) -> SellResult:
    """Rule 7: the sell fee comes out of the quote proceeds; profit = proceeds after fees - C."""
    proceeds = quote_received - fee
    return SellResult(proceeds=proceeds, fee=fee, profit=proceeds - cost)


# ---------------------------------------------------------------- rule 10: timeframe closes


def timeframe_delta(timeframe: str) -> timedelta:
    try:
        return TIMEFRAMES[timeframe]
    except KeyError:
        raise ValidationError(f"Unknown timeframe {timeframe!r}.", field="timeframe") from None


def interval_name(step: timedelta) -> str:
    """The name of a candle spacing: a listed timeframe's ("4h"), else in minutes ("3m")."""
    name = next((n for n, d in TIMEFRAMES.items() if d == step), None)
    return name or f"{step / timedelta(minutes=1):g}m"


def judges_timeframe(step: timedelta, timeframe: str) -> bool:
    """Rule 5: candles `step` apart can judge `timeframe`'s closes when the timeframe is a whole
    number of them (its closes are theirs, aggregated; rule 10) — never when they are coarser."""
    delta = timeframe_delta(timeframe)
    return timedelta(0) < step <= delta and not delta % step


def check_candle_interval(step: timedelta, timeframe: str) -> None:
    """Rule 5: a replay or backtest whose candles cannot judge the strategy's timeframe — coarser
    candles would never show its closes, so its channel would never break — is refused with a
    `ValidationError` naming the coarsest candle interval that works."""
    if judges_timeframe(step, timeframe):
        return
    finer = [n for n, d in TIMEFRAMES.items() if judges_timeframe(d, timeframe)]
    coarsest = finer[-1]
    raise ValidationError(
        f"Candles of {interval_name(step)} cannot judge every close of the strategy's {timeframe} timeframe: "
        f"a channel break (SPEC §4 rule 5) would go unseen. The coarsest candle interval that works is "
        f"{coarsest}" + (f" (or one that divides it: {', '.join(reversed(finer[:-1]))})." if finer[:-1] else "."),
        field="interval",
        coarsest_interval=coarsest,
        timeframe=timeframe,
    )


def candle_open_time(at: datetime, timeframe: str) -> datetime:
    """Open time of the timeframe candle containing `at`: multiples of the timeframe since the epoch."""
    delta = timeframe_delta(timeframe)
    n = (at - EPOCH) // delta
    return EPOCH + n * delta


def replay_path(prev_close: Decimal | None, o: Decimal, h: Decimal, low: Decimal, c: Decimal) -> list[Decimal]:
    """Rule 10: a candle's price path, O->L->H->C when rising or flat, O->H->L->C when falling,
    joined to the previous close. Repeated points are dropped."""
    points = [o, low, h, c] if c >= o else [o, h, low, c]
    path: list[Decimal] = []
    last = prev_close
    for p in points:
        if p != last:
            path.append(p)
            last = p
    return path
