"""Inputs are stored exactly as accepted, or refused (issue 17, items 5-6), and every number is
written in one form (issue 14, item 4): the checks of `domain.numbers`, the channel's ranges, the
Decimal scalar, ids and cursors."""

from __future__ import annotations

import base64
from decimal import Decimal

import pytest
from graphql import BooleanValueNode, FloatValueNode, GraphQLError, IntValueNode, StringValueNode
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Numeric

from domain import channel as ch
from domain.adapters.persistence import orm
from domain.errors import NotFound, ValidationError, WouldSellAtLoss
from domain.numbers import (
    AMOUNT,
    FEE_RATE,
    MAX_AMOUNT,
    MONEY,
    PERCENT,
    Bounds,
    decimal_places,
    plain,
    significant_digits,
)
from domain.services.common import check_amount
from gql_api.errors import classify
from gql_api.scalars import DecimalInputError, parse_decimal, parse_decimal_literal, serialize_decimal
from gql_api.types import decode_cursor, encode_cursor, parse_id

D = Decimal


def channel(**changes: Decimal) -> ch.Channel:
    return ch.Channel(D(2000), D(2600)).with_changes(**changes)  # type: ignore[arg-type]


def refused(call: object, *args: object, **kwargs: object) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        call(*args, **kwargs)  # type: ignore[operator]
    return info.value


# ---------------------------------------------------------------- one place knows each column's precision


def test_every_numeric_column_has_a_precision_of_the_domain() -> None:
    """The ORM takes its NUMERIC precisions from domain.numbers: a column the checks do not know
    could round what they accept."""
    known = {(MONEY.digits, MONEY.places), (PERCENT.digits, PERCENT.places)}
    columns = [c for t in orm.metadata.sorted_tables for c in t.columns if isinstance(c.type, Numeric)]
    assert columns
    for column in columns:
        assert (column.type.precision, column.type.scale) in known, column
    percent = {c.name for c in columns if c.type.scale == PERCENT.places}
    assert percent == {"capital_percentage", "buy_threshold", "sell_threshold", "min_profit"}


@pytest.mark.parametrize(
    "bounds", [AMOUNT, FEE_RATE, ch.CAPITAL_PERCENTAGE, ch.BUY_THRESHOLD, ch.SELL_THRESHOLD, ch.MIN_PROFIT]
)
def test_every_value_a_bound_accepts_fits_its_column(bounds: Bounds) -> None:
    """The integer digits too: a value at a bound's upper end is below its column's limit."""
    assert bounds.high < bounds.scale.limit and -bounds.scale.limit < bounds.low


# ---------------------------------------------------------------- the written form


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("2432.804836760000000000", "2432.80483676"),
        ("100489", "100489"),
        ("1.00489E+5", "100489"),
        ("0.00389", "0.00389"),
        ("1E-18", "0.000000000000000001"),
        ("-5.50", "-5.5"),
        ("0E-18", "0"),
        ("-0", "0"),
        ("12345678901234567890.123456789012345678", "12345678901234567890.123456789012345678"),
    ],
)
def test_plain_is_exact_without_exponent_or_trailing_zeros(value: str, written: str) -> None:
    assert plain(D(value)) == written
    assert serialize_decimal(D(value)) == written  # the API's Decimal fields: the same form


def test_plain_keeps_every_digit_of_a_38_digit_column_value() -> None:
    """normalize() rounds to 28 significant digits: a stored NUMERIC(38, 18) value would read back
    as another number."""
    stored = D("99999999999999999999.999999999999999999")
    assert D(plain(stored)) == stored


def test_error_details_are_written_like_the_messages() -> None:
    """WOULD_SELL_AT_LOSS said 2432.80483676 in its message and "2432.804836760000000000" in its
    details (issue 14, item 4)."""
    min_sell = D("2432.804836760000000000")
    error = WouldSellAtLoss(f"below {plain(min_sell)}", min_sell_price=min_sell, price=D("2400.10"))
    details = classify(GraphQLError("x", original_error=error)).extensions["details"]  # type: ignore[index]
    assert details == {"min_sell_price": "2432.80483676", "price": "2400.1"}
    assert details["min_sell_price"] in error.message


@given(st.decimals(allow_nan=False, allow_infinity=False, places=18, min_value=-(10**19), max_value=10**19))
@settings(max_examples=300, deadline=None)
def test_plain_reads_back_as_the_same_number(value: Decimal) -> None:
    text = plain(value)
    assert D(text) == value and "E" not in text and "e" not in text
    assert "." not in text or not text.endswith("0")


# ---------------------------------------------------------------- amounts


@pytest.mark.parametrize(
    "value",
    ["1E-18", "0.000000000000000001", "1", "2000.50", str(MAX_AMOUNT), "9999999999.999999999999999999"],
)
def test_amounts_kept_exactly_are_accepted(value: str) -> None:
    check_amount("amount", D(value))


@pytest.mark.parametrize(
    "value",
    [
        "1E-19",  # stored as 0: broke amount_nonzero (INTERNAL)
        "0.0000000000000000015",  # stored as 0.000000000000000002
        "100.0000000000000000001",
        "12345678901.123456789012345678",  # 29 significant digits: rounded by the first sum
        "1000000000000000.000000000001",
        "1E+25",
        "0",
        "-1",
        "NaN",
        "Infinity",
        "1E+999999",
        "1E-999999",
    ],
)
def test_amounts_not_kept_exactly_are_refused(value: str) -> None:
    err = refused(check_amount, "amount", D(value))
    assert err.details["field"] == "amount" and err.details["decimal_places"] == 18
    assert "greater than 0 and at most 1000000000000000, with at most 18 decimal places" in err.message


def test_decimal_places_and_significant_digits() -> None:
    assert [decimal_places(D(v)) for v in ("1.50", "2E+3", "1E-18", "0.0012300", "7", "0E-30")] == [1, 0, 18, 5, 0, 0]
    assert [significant_digits(D(v)) for v in ("1.50", "2E+3", "0.0012300", "0", "100.001")] == [2, 1, 3, 0, 6]
    assert AMOUNT.holds(D("0.100000000000000000000000"))  # trailing zeros are not digits kept


# ---------------------------------------------------------------- the channel's parameters


@pytest.mark.parametrize(
    ("field", "name", "value"),
    [
        ("buy_threshold", "buyThreshold", "0.00001"),  # stored as 0: E = B, entries stacked (rule 1)
        ("buy_threshold", "buyThreshold", "99.99999"),  # stored as 100: broke the range check
        ("min_profit", "minProfit", "0.00001"),  # stored as 0
        ("min_profit", "minProfit", "999.99999"),  # stored as 1000, over the limit
        ("capital_percentage", "capitalPercentage", "20.12345"),  # stored as 20.1235
        ("capital_percentage", "capitalPercentage", "0.00001"),  # stored as 0: INTERNAL
        ("capital_percentage", "capitalPercentage", "99.99999"),  # stored as 100
        ("sell_threshold", "sellThreshold", "99.99999"),
        ("base", "basePrice", "1E-19"),  # stored as 0: INTERNAL
        ("base", "basePrice", "2000.0000000000000000001"),
        ("top", "topPrice", "1E+25"),  # numeric overflow: INTERNAL
        ("top", "topPrice", "100000000000000000000"),
    ],
)
def test_channel_parameters_not_kept_exactly_are_refused(field: str, name: str, value: str) -> None:
    err = refused(channel(**{field: D(value)}).validate, D("0.001"), D("0.01"))
    assert err.details["field"] == name
    places = 4 if name not in ("basePrice", "topPrice") else 18
    assert f"with at most {places} decimal places" in err.message and err.details["decimal_places"] == places


@pytest.mark.parametrize(
    "changes",
    [
        {"buy_threshold": D("0.0001")},
        {"capital_percentage": D("12.3456"), "sell_threshold": D("1.2345")},
        {"capital_percentage": D("0.0001")},
        {"min_profit": D("999.9999"), "top": D(30000)},
        {"base": D("1999.123456789012345678"), "top": D("2600.000000000000000001")},
        {"base": D("1E-18"), "top": D(1)},
    ],
)
def test_channel_parameters_at_their_precision_are_accepted(changes: dict[str, Decimal]) -> None:
    channel(**changes).validate(D("0.001"), D("0.01"))


def test_buy_threshold_message_names_the_range_and_precision() -> None:
    err = refused(channel(buy_threshold=D("0.00001")).validate, D("0.001"))
    assert err.message == "buyThreshold must be greater than 0 and below 100, with at most 4 decimal places."


@pytest.mark.parametrize("fee_rate", ["1", "1.5", "-0.001", "NaN"])
def test_fee_rates_that_break_the_rules_are_refused(fee_rate: str) -> None:
    """A fee rate of 1 divided by zero (1 - f)^2 in rule 11: INTERNAL from `backtest`."""
    err = refused(channel().validate, D(fee_rate))
    assert err.details["field"] == "feeRate"


@pytest.mark.parametrize("fee_rate", ["0", "0.001", "0.00075", "0.5"])
def test_fee_rates_below_one_are_accepted(fee_rate: str) -> None:
    channel(top=D(10000)).validate(D(fee_rate))


def test_schedule_min_profit_is_checked_to_its_column() -> None:
    ch.validate_percentage("minProfit", D("999.9999"))
    ch.validate_percentage("minProfit", D("0E-30"))  # zero, however written, is kept
    for bad in ("0.00001", "999.99999", "1000"):
        assert refused(ch.validate_percentage, "minProfit", D(bad)).details["field"] == "minProfit"


# ---------------------------------------------------------------- the Decimal scalar


@pytest.mark.parametrize("text", ["1", "-5", "+5", "2000.50", ".5", "5.", "1e3", "2.5E-7", " 12 ", 12, 10**39])
def test_decimals_in_ascii_digits_are_read(text: object) -> None:
    assert parse_decimal(text) == D(str(text).strip())


@pytest.mark.parametrize("value", [0.5, 1234.56789012345678, 1e-400, 10**40, True, None, [1]])
def test_floats_and_other_json_values_are_refused(value: object) -> None:
    """A JSON number with a fraction is a binary float: 1234.56789012345678 arrives as
    1234.5678901234568, another number. Refused, never stored."""
    with pytest.raises(DecimalInputError):
        parse_decimal(value)


@pytest.mark.parametrize("written", ["1234.56789012345678", "1e-19", "2000", "0.000000000000000001"])
def test_number_literals_are_read_exactly_as_written(written: str) -> None:
    node = FloatValueNode(value=written) if any(c in written for c in ".e") else IntValueNode(value=written)
    assert parse_decimal_literal(node) == D(written)
    assert parse_decimal_literal(StringValueNode(value=written)) == D(written)
    with pytest.raises(DecimalInputError):
        parse_decimal_literal(BooleanValueNode(value=True))


@pytest.mark.parametrize(
    "text",
    ["١٢٣", "１２３", "1_000", "٣.٥", "1e١", "1\u00a0000", "²", "NaN", "-Infinity", "sNaN", "1e", "", ".", "0x10"],
)
def test_decimals_in_other_digits_or_forms_are_refused(text: str) -> None:
    """Python's Decimal reads "١٢٣", "１２３" and "1_000" as numbers: a money API must not."""
    with pytest.raises(DecimalInputError):
        parse_decimal(text)


# ---------------------------------------------------------------- ids and cursors


@pytest.mark.parametrize("value", ["1", "42", "2147483647", 7])
def test_ids_as_we_write_them_are_read(value: object) -> None:
    assert parse_id(value, "Strategy") == int(str(value))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value", ["١", "１", "1_0", "01", "+1", "-1", "0", " 1", "2147483648", "99999999999999999999", "1.0", ""]
)
def test_other_ids_are_not_found(value: str) -> None:
    with pytest.raises(NotFound):
        parse_id(value, "Strategy")


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


@pytest.mark.parametrize("row_id", [1, 12, 2**31 - 1])
def test_cursors_of_this_api_are_read(row_id: int) -> None:
    assert decode_cursor(encode_cursor(row_id)) == row_id


@pytest.mark.parametrize(
    "cursor",
    [
        _cursor(f"cursor:{2**31}"),  # overflowed the id column's int4: INTERNAL
        _cursor(f"cursor:{2**63}"),
        _cursor(f"cursor:{10**20}"),
        _cursor("cursor:١٢٣"),
        _cursor("cursor:1_0"),
        _cursor("cursor:012"),
        _cursor("cursor:-5"),
        _cursor("cursor:0"),
        _cursor("other:12"),
        encode_cursor(1).rstrip("="),
        "bm9wZQ==",
        "é",
        "\ud800",
    ],
)
def test_other_cursors_are_refused(cursor: str) -> None:
    err = refused(decode_cursor, cursor)
    assert err.details["field"] == "after"
