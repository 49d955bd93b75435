"""The pure rules of `domain.channel` (SPEC §4), one function at a time, boundaries included."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain import channel as ch
from domain.errors import FilterFailure, ValidationError
from domain.model import SymbolFilters

D = Decimal
F = D("0.001")  # Binance spot taker fee
BTC = SymbolFilters(step_size=D("0.00001"), min_qty=D("0.00001"), tick_size=D("0.01"), min_notional=D(5))
ETH = SymbolFilters(step_size=D("0.0001"), min_qty=D("0.0001"), tick_size=D("0.01"), min_notional=D(5))

# The demo channel (SPEC §7).
B, T = D(100489), D(110626)
DEMO = ch.levels(B, T, D(2), D(2))


def validate(**overrides: object) -> ch.Levels:
    params: dict[str, object] = {
        "base": B,
        "top": T,
        "capital_percentage": D(20),
        "buy_threshold": D(2),
        "sell_threshold": D(2),
        "min_profit": D("0.5"),
        "fee_rate": F,
        "timeframe": "4h",
    }
    params.update(overrides)
    fee_rate = params.pop("fee_rate")
    return ch.Channel(**params).validate(fee_rate)  # type: ignore[arg-type]


# ---------------------------------------------------------------- levels


def test_levels_of_the_demo_channel_match_spec_section_7() -> None:
    assert DEMO.entry == D("102498.78")
    assert DEMO.exit == D("108413.48")
    assert (DEMO.base, DEMO.top) == (B, T)
    # ... and the channel is workable: X >= E * 1.005 / 0.999^2.
    assert DEMO.exit >= DEMO.entry * D("1.005") / (1 - F) ** 2
    assert validate() == DEMO


def test_levels_formulas() -> None:
    lv = ch.levels(D(1000), D(2000), D("2.5"), D(10))
    assert lv.entry == D(1025)  # B * (1 + b/100)
    assert lv.exit == D(1800)  # T * (1 - s/100)


def test_levels_with_zero_thresholds_are_the_channel_bounds() -> None:
    lv = ch.levels(D(1000), D(2000), D(0), D(0))
    assert (lv.entry, lv.exit) == (D(1000), D(2000))


# ---------------------------------------------------------------- validation (rule 11 and parameters)


def _validation_error(**overrides: object) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        validate(**overrides)
    assert info.value.code == "VALIDATION"
    return info.value


def test_top_equal_to_base_is_rejected() -> None:
    err = _validation_error(top=B)
    assert err.details["field"] == "topPrice"
    assert "must be above basePrice" in err.message


def test_top_below_base_is_rejected() -> None:
    err = _validation_error(top=B - 1)
    assert err.details["field"] == "topPrice"


@pytest.mark.parametrize("base", [D(0), D(-1), D("NaN"), D("Infinity")])
def test_non_positive_or_non_finite_base_is_rejected(base: Decimal) -> None:
    err = _validation_error(base=base)
    assert err.details["field"] == "basePrice"
    assert "greater than 0" in err.message


@pytest.mark.parametrize("top", [D(0), D(-5), D("NaN"), D("-Infinity")])
def test_non_positive_or_non_finite_top_is_rejected(top: Decimal) -> None:
    err = _validation_error(top=top)
    assert err.details["field"] == "topPrice"


@pytest.mark.parametrize("capital", [D(0), D(-1), D("100.01"), D(101), D("Infinity")])
def test_capital_percentage_out_of_range_is_rejected(capital: Decimal) -> None:
    err = _validation_error(capital_percentage=capital)
    assert err.details["field"] == "capitalPercentage"


@pytest.mark.parametrize("capital", [D("0.01"), D(20), D(100)])
def test_capital_percentage_in_range_is_accepted(capital: Decimal) -> None:
    validate(capital_percentage=capital)


@pytest.mark.parametrize("field", ["buy_threshold", "sell_threshold"])
@pytest.mark.parametrize("value", [D(-1), D("-0.01"), D(100), D(150)])
def test_thresholds_out_of_range_are_rejected(field: str, value: Decimal) -> None:
    err = _validation_error(**{field: value})
    assert err.details["field"] == {"buy_threshold": "buyThreshold", "sell_threshold": "sellThreshold"}[field]


def test_zero_sell_threshold_is_accepted() -> None:
    lv = validate(buy_threshold=D("0.01"), sell_threshold=D(0))
    assert lv.exit == T


def test_zero_buy_threshold_is_rejected() -> None:
    """b = 0 puts E on B: the entry tick would also re-arm, and noise around B would stack entries."""
    err = _validation_error(buy_threshold=D(0))
    assert err.details["field"] == "buyThreshold"


@pytest.mark.parametrize("min_profit", [D("-0.5"), D(1000), D(5000)])
def test_min_profit_out_of_range_is_rejected(min_profit: Decimal) -> None:
    err = _validation_error(min_profit=min_profit)
    assert err.details["field"] == "minProfit"


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("capital_percentage", "capitalPercentage"),
        ("buy_threshold", "buyThreshold"),
        ("sell_threshold", "sellThreshold"),
        ("min_profit", "minProfit"),
    ],
)
def test_nan_parameters_are_a_validation_error(name: str, field: str) -> None:
    """A Decimal scalar accepts "NaN": it must come back as a VALIDATION error naming the field, not
    as decimal.InvalidOperation (an internal error), as it already does for basePrice/topPrice."""
    err = _validation_error(**{name: D("NaN")})
    assert err.details["field"] == field


@pytest.mark.parametrize("timeframe", ["3h", "", "4H", "1w", "240"])
def test_unknown_timeframe_is_rejected(timeframe: str) -> None:
    err = _validation_error(timeframe=timeframe)
    assert err.details["field"] == "timeframe"


@pytest.mark.parametrize("timeframe", list(ch.TIMEFRAMES))
def test_every_listed_timeframe_is_accepted(timeframe: str) -> None:
    validate(timeframe=timeframe)


NARROW_CASES = [
    # base, top, b, s, m, fee, tick
    (D(100489), D(104000), D(2), D(2), D("0.5"), F, D("0.01")),
    (D(100489), D(104000), D(2), D(2), D("0.5"), F, ch.PRICE_QUANTUM),
    (D(2500), D(2560), D(1), D(1), D(1), F, D("0.01")),
    (D("0.5"), D("0.51"), D(2), D(2), D("0.5"), D("0.00075"), D("0.0001")),
    (D(100), D("100.1"), D("0.01"), D(0), D(0), F, D("0.01")),
    (D(30000), D(30001), D(3), D(5), D(2), D("0.002"), D("0.1")),
]


@pytest.mark.parametrize(("base", "top", "b", "s", "m", "fee", "tick"), NARROW_CASES)
def test_narrow_channel_names_the_smallest_workable_top_exactly(
    base: Decimal, top: Decimal, b: Decimal, s: Decimal, m: Decimal, fee: Decimal, tick: Decimal
) -> None:
    with pytest.raises(ValidationError) as info:
        ch.Channel(base, top, D(20), b, s, m).validate(fee, tick)
    err = info.value
    assert err.details["field"] == "topPrice"
    assert "too narrow" in err.message
    smallest = D(err.details["smallest_workable_top"])
    assert smallest == ch.smallest_workable_top(base, b, s, m, fee, tick)
    assert f"smallest workable topPrice is {smallest:f}." in err.message
    assert smallest % tick == 0
    # That top is workable ...
    lv = ch.Channel(base, smallest, D(20), b, s, m).validate(fee, tick)
    assert lv.exit >= lv.entry * (1 + m / 100) / (1 - fee) ** 2
    # ... and one tick less is not.
    with pytest.raises(ValidationError) as less:
        ch.Channel(base, smallest - tick, D(20), b, s, m).validate(fee, tick)
    assert less.value.details["smallest_workable_top"] == err.details["smallest_workable_top"]


def test_smallest_workable_top_detail_is_plain_decimal_notation() -> None:
    """`details['smallest_workable_top']` reaches API clients as a Decimal string: it must read like
    the message ("33310"), not in exponent notation ("3.331E+4", what `str(d.normalize())` gives)."""
    with pytest.raises(ValidationError) as info:
        ch.Channel(D(30000), D(30001), D(20), D(3), D(5), D(2)).validate(D("0.002"), D("0.1"))
    detail = info.value.details["smallest_workable_top"]
    assert D(detail) == D(33310)
    assert detail == "33310"
    assert f"topPrice is {detail}." in info.value.message


def test_smallest_workable_top_is_workable_without_fee_and_profit() -> None:
    """With a zero fee (FEE_RATE=0), no minimum profit and s = 0, X >= E*(1+m)/(1-f)^2 allows
    X == E, but an entry needs `cur < X`: the named top is one tick above E, and it validates."""
    base, b, s, m, fee, tick = D(100), D(2), D(0), D(0), D(0), D("0.01")
    smallest = ch.smallest_workable_top(base, b, s, m, fee, tick)
    assert smallest == D("102.01")
    ch.Channel(base, smallest, D(20), b, s, m).validate(fee, tick)
    with pytest.raises(ValidationError):
        ch.Channel(base, smallest - tick, D(20), b, s, m).validate(fee, tick)


percent_2dp = st.integers(min_value=0, max_value=1500).map(lambda n: D(n) / 100)


@settings(max_examples=150, deadline=None)
@given(
    base_cents=st.integers(min_value=1, max_value=20_000_000),
    b=percent_2dp.filter(lambda v: v > 0),
    s=percent_2dp,
    m=st.integers(min_value=0, max_value=500).map(lambda n: D(n) / 100),
    fee_bp=st.integers(min_value=1, max_value=50),
    tick=st.sampled_from([D("0.01"), D("0.1"), D("0.00000001")]),
)
def test_smallest_workable_top_is_always_exactly_workable(
    base_cents: int, b: Decimal, s: Decimal, m: Decimal, fee_bp: int, tick: Decimal
) -> None:
    base, fee = D(base_cents) / 100, D(fee_bp) / 10_000
    smallest = ch.smallest_workable_top(base, b, s, m, fee, tick)
    ch.Channel(base, smallest, D(20), b, s, m).validate(fee, tick)
    if smallest - tick > base:
        with pytest.raises(ValidationError):
            ch.Channel(base, smallest - tick, D(20), b, s, m).validate(fee, tick)


def test_validate_percentage() -> None:
    ch.validate_percentage("minProfit", D(0))
    ch.validate_percentage("minProfit", D("999.99"))
    for bad in (D(-1), D(1000), D("NaN"), D("Infinity")):
        with pytest.raises(ValidationError) as info:
            ch.validate_percentage("minProfit", bad)
        assert info.value.details["field"] == "minProfit"
    with pytest.raises(ValidationError):
        ch.validate_percentage("x", D(10), upper=D(10))


# ---------------------------------------------------------------- rounding


@pytest.mark.parametrize(
    ("value", "step", "down", "up"),
    [
        (D("0.0038961"), D("0.00001"), D("0.00389"), D("0.00390")),
        (D("0.00390"), D("0.00001"), D("0.00390"), D("0.00390")),
        (D("108943.7001"), D("0.01"), D("108943.70"), D("108943.71")),
        (D("108943.70"), D("0.01"), D("108943.70"), D("108943.70")),
        (D(7), D(5), D(5), D(10)),
        (D(0), D("0.01"), D(0), D(0)),
        (D("-0.015"), D("0.01"), D("-0.02"), D("-0.01")),
        (D("1.23456789"), D("0.00000001"), D("1.23456789"), D("1.23456789")),
    ],
)
def test_round_to_step(value: Decimal, step: Decimal, down: Decimal, up: Decimal) -> None:
    assert ch.round_down_to_step(value, step) == down
    assert ch.round_up_to_step(value, step) == up


def test_round_to_non_positive_step_leaves_the_value() -> None:
    assert ch.round_down_to_step(D("1.234"), D(0)) == D("1.234")
    assert ch.round_up_to_step(D("1.234"), D(-1)) == D("1.234")


# ---------------------------------------------------------------- rule 3: minimum sell price


MIN_SELL_CASES = [
    (D("399.75"), D("0.00389"), D("0.5"), F),
    (D("399.6"), D("0.00369"), D("0.5"), F),
    (D(1000), D(3), D(0), F),
    (D("123.45678901"), D("0.0457"), D("2.25"), D("0.00075")),
    (D(50), D("0.00047"), D(10), D(0)),
    (D(1), D(1), D(1), D("0.001")),
]


@pytest.mark.parametrize(("cost", "qty", "m", "fee"), MIN_SELL_CASES)
def test_selling_q_at_min_sell_returns_at_least_the_cost_plus_min_profit(
    cost: Decimal, qty: Decimal, m: Decimal, fee: Decimal
) -> None:
    min_sell = ch.min_sell_price(cost, qty, m, fee)
    target = cost * (1 + m / 100)
    assert qty * min_sell * (1 - fee) >= target  # proceeds after the sell fee
    # Rounded *up* to 8 decimals, and tight: one quantum less would miss the target.
    assert min_sell % ch.PRICE_QUANTUM == 0
    assert qty * (min_sell - ch.PRICE_QUANTUM) * (1 - fee) < target
    exact = cost * (1 + m / 100) / (qty * (1 - fee))
    assert exact <= min_sell < exact + ch.PRICE_QUANTUM


def test_min_sell_of_the_demo_entry() -> None:
    min_sell = ch.min_sell_price(D("399.75"), D("0.00389"), D("0.5"), F)
    assert min_sell == ch.round_up_to_step(D("399.75") * D("1.005") / (D("0.00389") * D("0.999")), D("1e-8"))
    assert min_sell == D("103380.69431900")  # 0.86% above the 102500 fill: two fees, lot rounding, 0.5%


@pytest.mark.parametrize(
    ("min_sell", "expected"),
    [
        (D("103377.00000001"), D("103377.01")),
        (D("103377.01"), D("103377.01")),
        (D("103377.009"), D("103377.01")),
        (D("103377.0100001"), D("103377.02")),
    ],
)
def test_limit_sell_price_rounds_up_to_the_tick(min_sell: Decimal, expected: Decimal) -> None:
    limit = ch.limit_sell_price(min_sell, BTC)
    assert limit == expected
    assert limit >= min_sell
    assert limit % BTC.tick_size == 0


# ---------------------------------------------------------------- rule 9: buys, fees, dust


def test_position_from_buy_with_the_fee_in_the_base_asset() -> None:
    r = ch.position_from_buy(D("0.00390"), D("399.75"), D("0.0000039"), "BTC", "BTC", "USDT", D(102500), BTC)
    assert r.quantity == D("0.00389")  # 0.0038961 rounded down to the step
    assert r.dust == D("0.0000061")
    assert r.quantity + r.dust == D("0.00390") - D("0.0000039")
    assert r.cost == D("399.75")  # the fee is not quote: the cost is the quote spent
    assert r.fee_in_quote == D("0.0000039") * D(102500)


def test_position_from_buy_with_the_fee_in_the_quote_asset() -> None:
    r = ch.position_from_buy(D("0.00390"), D("399.75"), D("0.39975"), "USDT", "BTC", "USDT", D(102500), BTC)
    assert r.quantity == D("0.00390")
    assert r.dust == 0
    assert r.cost == D("400.14975")
    assert r.fee_in_quote == D("0.39975")


def test_position_from_buy_with_the_fee_in_bnb() -> None:
    r = ch.position_from_buy(
        D("0.05"), D("125.5"), D("0.00015"), "BNB", "ETH", "USDT", D(2510), ETH, fee_asset_price_in_quote=D(600)
    )
    assert r.quantity == D("0.05")
    assert r.dust == 0
    assert r.fee_in_quote == D("0.09")
    assert r.cost == D("125.59")


def test_position_from_buy_with_a_third_asset_fee_needs_its_price() -> None:
    with pytest.raises(ValueError, match="BNB"):
        ch.position_from_buy(D("0.05"), D("125.5"), D("0.00015"), "BNB", "ETH", "USDT", D(2510), ETH)


def test_position_from_buy_gross_off_step_leaves_dust() -> None:
    r = ch.position_from_buy(D("0.000123"), D("12.3"), D("0.01"), "USDT", "BTC", "USDT", D(100000), BTC)
    assert r.quantity == D("0.00012")
    assert r.dust == D("0.000003")


def test_buy_quantity_for_quote_rounds_down_to_the_step() -> None:
    assert ch.buy_quantity_for_quote(D(400), D(102500), BTC) == D("0.00390")
    assert ch.buy_quantity_for_quote(D("399.99"), D("2500"), ETH) == D("0.1599")
    assert ch.buy_quantity_for_quote(D("0.5"), D(102500), BTC) == 0


def test_sell_result_takes_the_fee_from_the_quote() -> None:
    r = ch.sell_result(D("421.676"), D("0.421676"), D("399.75"))
    assert r.proceeds == D("421.254324")
    assert r.fee == D("0.421676")
    assert r.profit == D("21.504324")
    loss = ch.sell_result(D(390), D("0.39"), D("399.75"))
    assert loss.profit == D("-10.14")


# ---------------------------------------------------------------- rule 11: exchange filters


def _filter_failure(quantity: Decimal, price: Decimal, filters: SymbolFilters = BTC) -> FilterFailure:
    with pytest.raises(FilterFailure) as info:
        ch.check_order_filters(quantity, price, filters, "Test order")
    assert info.value.code == "FILTER_FAILURE"
    assert info.value.message.startswith("Test order: ")
    return info.value


def test_filters_accept_an_order_at_the_minimums() -> None:
    ch.check_order_filters(D("0.00005"), D(100000), BTC, "x")  # notional exactly 5, quantity on the step
    ch.check_order_filters(D("0.00001"), D(500000), BTC, "x")  # quantity exactly min_qty


def test_filters_refuse_a_quantity_below_min_qty() -> None:
    assert _filter_failure(D("0.000009"), D(10_000_000)).details["filter"] == "LOT_SIZE"


@pytest.mark.parametrize("quantity", [D(0), D(-1)])
def test_filters_refuse_a_zero_or_negative_quantity(quantity: Decimal) -> None:
    zero_min = SymbolFilters(step_size=D("0.00001"), min_qty=D(0), tick_size=D("0.01"), min_notional=D(0))
    assert _filter_failure(quantity, D(100000), zero_min).details["filter"] == "LOT_SIZE"


def test_filters_refuse_a_quantity_off_the_step() -> None:
    err = _filter_failure(D("0.000125"), D(100000))
    assert err.details["filter"] == "LOT_SIZE"
    assert "lot step" in err.message


def test_filters_refuse_a_notional_below_the_minimum() -> None:
    err = _filter_failure(D("0.00004"), D("124999.99"))  # 4.9999996
    assert err.details["filter"] == "MIN_NOTIONAL"


# ---------------------------------------------------------------- rules 1, 4, 5, 6: triggers

E, X = DEMO.entry, DEMO.exit
TICK = D("0.01")


@pytest.mark.parametrize(
    ("prev", "cur", "fires"),
    [
        (E - TICK, E, True),  # prev < E <= cur: reaching E exactly is enough
        (E - 1000, E + 1000, True),
        (B - 1000, X - TICK, True),  # a jump from under the base, still under X
        (E, E + TICK, False),  # prev == E: not a crossing from below
        (E + TICK, E + 1000, False),  # already above E
        (E - 1000, E - TICK, False),  # not reached
        (E - TICK, X, False),  # cur == X: a gap up to X is not an entry (cur < X)
        (E - TICK, X + 1000, False),  # gap up past X
        (E + 1000, E - TICK, False),  # falling
        (E, E, False),  # duplicate delivery
    ],
)
def test_entry_triggered(prev: Decimal, cur: Decimal, fires: bool) -> None:
    assert ch.entry_triggered(prev, cur, DEMO) is fires


@pytest.mark.parametrize(
    ("prev", "cur", "fires"),
    [
        (X + TICK, X, True),  # prev > X >= cur: reaching X exactly from above is enough
        (X + 1000, X - 1000, True),
        (T + 5000, B - 5000, True),  # a crash through the whole channel
        (X, X - TICK, False),  # prev == X: not a crossing from above
        (X + 1000, X + TICK, False),  # still above
        (X - 1000, X - 2000, False),  # already below
        (X - TICK, X + TICK, False),  # rising
        (X, X, False),
    ],
)
def test_exit_triggered(prev: Decimal, cur: Decimal, fires: bool) -> None:
    assert ch.exit_triggered(prev, cur, DEMO) is fires


@pytest.mark.parametrize(("price", "fires"), [(B, True), (B - TICK, True), (D(1), True), (B + TICK, False), (E, False)])
def test_rearm_triggered_when_the_price_touches_the_base(price: Decimal, fires: bool) -> None:
    assert ch.rearm_triggered(price, DEMO) is fires


@pytest.mark.parametrize(("close", "broken"), [(B - TICK, True), (D(90000), True), (B, False), (B + TICK, False)])
def test_channel_broken_only_on_a_close_strictly_below_the_base(close: Decimal, broken: bool) -> None:
    assert ch.channel_broken(close, DEMO) is broken


@pytest.mark.parametrize(
    ("cur", "fires"), [(D("103377.01"), True), (D("103377.02"), True), (D("103377.00"), False), (D(1), False)]
)
def test_scheduled_sell_triggered_when_the_price_reaches_it(cur: Decimal, fires: bool) -> None:
    assert ch.scheduled_sell_triggered(cur, D("103377.01")) is fires


# ---------------------------------------------------------------- rule 2: sizing


@pytest.mark.parametrize(
    ("bankroll", "p", "quote"),
    [
        (D(2000), D(20), D(400)),
        (D(1000), D("33.333333333"), D("333.33333333")),  # rounded down to 8 decimals
        (D("0.00000001"), D(50), D(0)),
        (D(1234.5), D(100), D("1234.5")),
    ],
)
def test_entry_quote_amount_is_p_percent_of_the_bankroll(bankroll: Decimal, p: Decimal, quote: Decimal) -> None:
    amount = ch.entry_quote_amount(bankroll, p)
    assert amount == quote
    assert amount <= bankroll * p / 100


@pytest.mark.parametrize(
    ("p", "n"), [(D(20), 5), (D(30), 3), (D(100), 1), (D("0.5"), 200), (D("33.34"), 2), (D("33.33"), 3), (D(51), 1)]
)
def test_max_open_positions_is_floor_of_100_over_p(p: Decimal, n: int) -> None:
    assert ch.max_open_positions(p) == n


def test_allocation_deviation_in_percentage_points() -> None:
    assert ch.allocation_deviation_pt(D("399.75"), D(2000), D(20)) == D("0.0125")
    assert ch.allocation_deviation_pt(D(402), D(2000), D(20)) == D("0.1")
    assert ch.allocation_deviation_pt(D(380), D(2000), D(20)) == D(1)


# ---------------------------------------------------------------- rule 10: timeframes and replay


def test_timeframe_delta() -> None:
    assert ch.timeframe_delta("4h") == timedelta(hours=4)
    assert ch.timeframe_delta("1d") == timedelta(days=1)
    with pytest.raises(ValidationError) as info:
        ch.timeframe_delta("3h")
    assert info.value.details["field"] == "timeframe"


@pytest.mark.parametrize(
    ("at", "timeframe", "opened"),
    [
        (datetime(2025, 6, 1, 4, 0, tzinfo=UTC), "4h", datetime(2025, 6, 1, 4, 0, tzinfo=UTC)),  # on a multiple
        (datetime(2025, 6, 1, 7, 59, 59, 999999, tzinfo=UTC), "4h", datetime(2025, 6, 1, 4, 0, tzinfo=UTC)),
        (datetime(2025, 6, 1, 8, 0, tzinfo=UTC), "4h", datetime(2025, 6, 1, 8, 0, tzinfo=UTC)),
        (datetime(2025, 6, 1, 23, 59, tzinfo=UTC), "1d", datetime(2025, 6, 1, tzinfo=UTC)),
        (datetime(2025, 6, 1, 0, 14, 59, tzinfo=UTC), "15m", datetime(2025, 6, 1, 0, 0, tzinfo=UTC)),
        (datetime(2025, 6, 1, 11, 30, tzinfo=UTC), "6h", datetime(2025, 6, 1, 6, 0, tzinfo=UTC)),
        (datetime(2025, 6, 1, 17, 0, tzinfo=UTC), "8h", datetime(2025, 6, 1, 16, 0, tzinfo=UTC)),
        (datetime(1970, 1, 1, tzinfo=UTC), "12h", datetime(1970, 1, 1, tzinfo=UTC)),
        # An aware time in another zone is judged in UTC: 02:30+03:00 is 23:30 UTC the day before.
        (
            datetime(2025, 6, 2, 2, 30, tzinfo=timezone(timedelta(hours=3))),
            "4h",
            datetime(2025, 6, 1, 20, 0, tzinfo=UTC),
        ),
    ],
)
def test_candle_open_time_is_a_multiple_of_the_timeframe_since_the_epoch(
    at: datetime, timeframe: str, opened: datetime
) -> None:
    result = ch.candle_open_time(at, timeframe)
    assert result == opened
    assert (result - ch.EPOCH) % ch.TIMEFRAMES[timeframe] == timedelta(0)
    assert result <= at < result + ch.TIMEFRAMES[timeframe]


def test_replay_path_of_a_rising_candle_is_o_l_h_c() -> None:
    assert ch.replay_path(None, D(100), D(110), D(95), D(105)) == [D(100), D(95), D(110), D(105)]


def test_replay_path_of_a_flat_candle_is_o_l_h_c() -> None:
    assert ch.replay_path(None, D(100), D(110), D(95), D(100)) == [D(100), D(95), D(110), D(100)]


def test_replay_path_of_a_falling_candle_is_o_h_l_c() -> None:
    assert ch.replay_path(None, D(100), D(110), D(90), D(95)) == [D(100), D(110), D(90), D(95)]


def test_replay_path_is_joined_to_the_previous_close() -> None:
    # The open equal to the previous close is not a new point: the path continues from it.
    assert ch.replay_path(D(100), D(100), D(110), D(95), D(105)) == [D(95), D(110), D(105)]
    # A gap: the open is a point of its own, reached from the previous close.
    assert ch.replay_path(D(98), D(100), D(110), D(95), D(105)) == [D(100), D(95), D(110), D(105)]


def test_replay_path_drops_repeated_points() -> None:
    assert ch.replay_path(None, D(100), D(100), D(100), D(100)) == [D(100)]
    assert ch.replay_path(D(100), D(100), D(100), D(100), D(100)) == []
    assert ch.replay_path(None, D(100), D(105), D(100), D(105)) == [D(100), D(105)]  # O == L, H == C
    assert ch.replay_path(None, D(105), D(105), D(100), D(100)) == [D(105), D(100)]  # O == H, L == C
