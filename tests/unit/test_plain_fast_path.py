"""`plain` (the API's written form of a Decimal) takes a fast path for the common values — every
Decimal field of a page goes through it — and writes exactly what the general form writes, for
every value: large and small exponents, long and short digit strings, signs, zeros."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.numbers import _PLAIN_DIGITS, _trailing_zeros, plain


def general(value: Decimal) -> str:
    """The general form (what `plain` wrote before the fast path)."""
    if not value.is_finite():
        return str(value)
    if not value:
        return "0"
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    zeros = _trailing_zeros(digits)
    digits, exponent = digits[: len(digits) - zeros], exponent + zeros
    if max(exponent, -exponent) + len(digits) > _PLAIN_DIGITS:
        return str(value)
    return format(Decimal((sign, digits, exponent)), "f")


@given(
    negative=st.booleans(),
    digits=st.text(alphabet="0123456789", min_size=1, max_size=70),
    exponent=st.integers(min_value=-130, max_value=130),
)
@settings(max_examples=2000, deadline=None)
def test_the_fast_path_writes_what_the_general_form_writes(negative: bool, digits: str, exponent: int) -> None:
    value = Decimal(f"{'-' if negative else ''}{digits}E{exponent}")
    assert plain(value) == general(value)


def test_stored_values_take_the_fast_path_and_keep_every_digit() -> None:
    for text in ("2450.000000000000000000", "-0.000000000000000001", "99999999999999999999.999999999999999999",
                 "100.000", "0E-18", "1E+3", "NaN", "-Infinity"):  # fmt: skip
        value = Decimal(text)
        assert plain(value) == general(value)
    assert plain(Decimal("2450.000000000000000000")) == "2450"
