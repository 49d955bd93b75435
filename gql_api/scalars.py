"""The `Decimal` scalar: money, quantities and percentages travel as strings, never floats."""

from __future__ import annotations

import decimal

import strawberry

MAX_DECIMAL_LENGTH = 40


class DecimalInputError(ValueError):
    """A value that is not a finite decimal number."""


def parse_decimal(value: object) -> decimal.Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise DecimalInputError(f'{value!r} is not a decimal number: pass it as a string, e.g. "2000.50".')
    text = str(value).strip()
    if len(text) > MAX_DECIMAL_LENGTH:
        raise DecimalInputError(f"Decimal values are at most {MAX_DECIMAL_LENGTH} characters long.")
    try:
        parsed = decimal.Decimal(text)
    except decimal.InvalidOperation:
        raise DecimalInputError(f'{text!r} is not a decimal number: use digits and one dot, e.g. "2000.50".') from None
    if not parsed.is_finite():
        raise DecimalInputError(f"{text!r} is not a finite decimal number.")
    return parsed


def serialize_decimal(value: decimal.Decimal) -> str:
    # Plain notation without trailing zeros: "399.75", "100489", "0.00389".
    return format(value.normalize(), "f") if value else "0"


DecimalScalar = strawberry.scalar(
    name="Decimal",
    description=(
        'An exact decimal number, serialized as a string ("102498.78"). Send strings too: '
        "money and quantities are never floating point."
    ),
    serialize=serialize_decimal,
    parse_value=parse_decimal,
)
