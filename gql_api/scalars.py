"""The `Decimal` scalar: money, quantities and percentages travel as strings, never floats."""

from __future__ import annotations

import decimal
import re

import strawberry
from graphql import FloatValueNode, IntValueNode, StringValueNode, ValueNode

from domain.numbers import plain

MAX_DECIMAL_LENGTH = 40
# ASCII digits only, an optional sign, one dot, an optional exponent. Python's Decimal also reads
# other scripts' digits ("١٢٣", "１２３") and underscores ("1_000"): a money API must not.
DECIMAL_TEXT = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
NON_FINITE = re.compile(r"[+-]?(nan|snan|inf|infinity)", re.IGNORECASE)


class DecimalInputError(ValueError):
    """A value that is not a finite decimal number written in ASCII digits."""


def parse_decimal(value: object) -> decimal.Decimal:
    """A Decimal given in the variables (JSON): a string, or an integer. A JSON number with a
    fraction or an exponent arrives as a binary float that may have lost digits already
    (1234.56789012345678 reads 1234.5678901234568): refused, never stored as another number."""
    if isinstance(value, float):
        raise DecimalInputError(f'{value!r} is a floating-point number: pass decimals as strings, e.g. "2000.50".')
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise DecimalInputError(f'{value!r} is not a decimal number: pass it as a string, e.g. "2000.50".')
    if isinstance(value, int) and abs(value) >= 10**MAX_DECIMAL_LENGTH:
        raise DecimalInputError(f"Decimal values are at most {MAX_DECIMAL_LENGTH} characters long.")
    return parse_decimal_text(str(value))


def parse_decimal_literal(node: ValueNode, variables: object = None) -> decimal.Decimal:
    """A Decimal written in the document: a string, or a number literal read exactly as written
    (`amount: 2000.50`), not through a float."""
    if isinstance(node, StringValueNode | IntValueNode | FloatValueNode):
        return parse_decimal_text(node.value)
    raise DecimalInputError('Not a decimal number: pass it as a string, e.g. "2000.50".')


def parse_decimal_text(text: str) -> decimal.Decimal:
    text = text.strip(" \t\r\n")
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
        "money and quantities are never floating point (a JSON number with a fraction or an exponent is "
        "refused: it has lost digits already). Written in the digits 0-9, with an optional sign, one dot "
        "and an optional exponent; a number literal in a document is read exactly as written."
    ),
    serialize=serialize_decimal,
    parse_value=parse_decimal,
    parse_literal=parse_decimal_literal,
)
