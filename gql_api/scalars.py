"""The `Decimal` scalar: money, quantities and percentages travel as strings, never floats."""

from __future__ import annotations

import decimal
import re

import strawberry

from domain.numbers import plain

MAX_DECIMAL_LENGTH = 40
# ASCII digits only, an optional sign, one dot, an optional exponent. Python's Decimal also reads
# other scripts' digits ("١٢٣", "１２３") and underscores ("1_000"): a money API must not.
DECIMAL_TEXT = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
NON_FINITE = re.compile(r"[+-]?(nan|snan|inf|infinity)", re.IGNORECASE)


class DecimalInputError(ValueError):
    """A value that is not a finite decimal number written in ASCII digits."""


def parse_decimal(value: object) -> decimal.Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise DecimalInputError(f'{value!r} is not a decimal number: pass it as a string, e.g. "2000.50".')
    text = str(value).strip(" \t\r\n")
    if len(text) > MAX_DECIMAL_LENGTH:
        raise DecimalInputError(f"Decimal values are at most {MAX_DECIMAL_LENGTH} characters long.")
    if NON_FINITE.fullmatch(text):
        raise DecimalInputError(f"{text!r} is not a finite decimal number.")
    if not DECIMAL_TEXT.fullmatch(text):
        raise DecimalInputError(
            f'{text!r} is not a decimal number: use the digits 0-9, an optional sign and one dot, e.g. "2000.50".'
        )
    return decimal.Decimal(text)


def serialize_decimal(value: decimal.Decimal) -> str:
    # The one written form of a number, exact: "399.75", "100489", "0.00389" (domain.numbers.plain).
    return plain(value)


DecimalScalar = strawberry.scalar(
    name="Decimal",
    description=(
        'An exact decimal number, serialized as a string ("102498.78"). Send strings too: '
        "money and quantities are never floating point. Written in the digits 0-9, with an optional "
        "sign, one dot and an optional exponent."
    ),
    serialize=serialize_decimal,
    parse_value=parse_decimal,
)
