"""Exact numbers: how many digits each kind of stored value keeps, the checks that refuse a value
that would not be kept exactly, and the one written form of a number.

A value the API accepts is stored exactly as given, or refused with `VALIDATION` naming what is
allowed: never rounded on the way in. The database columns take their precision from `MONEY` and
`PERCENT` (domain/adapters/persistence/orm.py), so a check here and its column cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, DefaultContext

from domain.errors import ValidationError


@dataclass(frozen=True)
class Scale:
    """A column's NUMERIC(digits, places): at most `digits` digits, `places` of them decimals."""

    digits: int
    places: int

    @property
    def limit(self) -> Decimal:
        """Every stored value is below this in magnitude."""
        return Decimal(10) ** (self.digits - self.places)


MONEY = Scale(38, 18)  # prices, amounts, quantities, fees
PERCENT = Scale(9, 4)  # p, b, s and m of SPEC §4, in percent

# The domain computes in Python's default decimal context: a value with more significant digits
# than it keeps would be rounded by the first operation on it (a sum, a sign change).
SIGNIFICANT_DIGITS = DefaultContext.prec
# The largest price, amount or quantity accepted: far above any market, far below MONEY's limit.
MAX_AMOUNT = Decimal("1e15")
# A number written with more digits than this is shown in scientific notation (never stored).
_PLAIN_DIGITS = 100
# `plain`'s fast path: a result of at most this many characters has fewer than _PLAIN_DIGITS digits
# and exponent together, so the general case would write it alike.
_FAST_LENGTH = _PLAIN_DIGITS // 2
_FAST_MAGNITUDE = _FAST_LENGTH


def _trailing_zeros(digits: tuple[int, ...]) -> int:
    n = len(digits)
    while n > 1 and digits[n - 1] == 0:
        n -= 1
    return len(digits) - n


def decimal_places(value: Decimal) -> int:
    """Digits `value` needs after the point: "1.50" needs 1, "2E+3" and "0E-30" none. `value` is
    finite."""
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    if not any(digits):
        return 0
    return max(0, -(exponent + _trailing_zeros(digits)))


def significant_digits(value: Decimal) -> int:
    """Digits from the first non-zero one to the last: "0.0012300" has 3. `value` is finite."""
    _, digits, _ = value.as_tuple()
    return 0 if not any(digits) else len(digits) - _trailing_zeros(digits)


def plain(value: Decimal) -> str:
    """The one written form of a number, in messages, error details and the API's Decimal fields:
    plain notation, no exponent, no trailing zeros ("2432.80483676", "100489", "0.00389"). Exact:
    no digit is rounded away, however many there are."""
    if not value.is_finite():
        return str(value)
    if not value:
        return "0"
    # The common case, fast (the API writes hundreds of these per page): `format(…, "f")` writes
    # every digit exactly; only the trailing zeros of the fraction are to go. A short result is the
    # one the general case below gives.
    if -_FAST_MAGNITUDE < value.adjusted() < _FAST_MAGNITUDE:
        text = format(value, "f")
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        if len(text) <= _FAST_LENGTH:
            return text
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    zeros = _trailing_zeros(digits)
    digits, exponent = digits[: len(digits) - zeros], exponent + zeros
    if max(exponent, -exponent) + len(digits) > _PLAIN_DIGITS:
        return str(value)  # absurd magnitudes only: no stored value is written so
    return format(Decimal((sign, digits, exponent)), "f")


@dataclass(frozen=True)
class Bounds:
    """The range a parameter may take: `low` < value (or <=), value <= `high` (or <)."""

    low: Decimal
    high: Decimal
    low_included: bool = False
    high_included: bool = True
    scale: Scale = MONEY

    def holds(self, value: Decimal) -> bool:
        if not value.is_finite():
            return False
        above = value >= self.low if self.low_included else value > self.low
        below = value <= self.high if self.high_included else value < self.high
        return (
            above
            and below
            and decimal_places(value) <= self.scale.places
            and significant_digits(value) <= SIGNIFICANT_DIGITS
        )

    def describe(self) -> str:
        """e.g. "greater than 0 and at most 100, with at most 4 decimal places"."""
        low = f"{'at least' if self.low_included else 'greater than'} {plain(self.low)}"
        high = f"{'at most' if self.high_included else 'below'} {plain(self.high)}"
        digits = f" ({SIGNIFICANT_DIGITS} significant digits in all)" if self.scale.digits > SIGNIFICANT_DIGITS else ""
        return f"{low} and {high}, with at most {self.scale.places} decimal places{digits}"

    def check(self, name: str, value: Decimal) -> Decimal:
        """`value` if it lies in these bounds and is kept exactly; else `ValidationError` naming
        the field, the range and the precision allowed."""
        if not self.holds(value):
            raise ValidationError(
                f"{name} must be {self.describe()}.",
                field=name,
                minimum=self.low,
                maximum=self.high,
                decimal_places=self.scale.places,
            )
        return value


# A price (basePrice, topPrice) or an amount of money or quantity given by a user.
AMOUNT = Bounds(Decimal(0), MAX_AMOUNT)
# A fee rate as a fraction ("0.001" is 0.1%); below 1, or a sell could return nothing.
FEE_RATE = Bounds(Decimal(0), Decimal(1), low_included=True, high_included=False)
