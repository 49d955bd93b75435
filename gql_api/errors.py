"""Error codes for GraphQL: every error carries a stable `extensions.code`.

- a `DomainError` keeps its own code (`NOT_FOUND`, `VALIDATION`, `INSUFFICIENT_CAPITAL`,
  `WOULD_SELL_AT_LOSS`, `FILTER_FAILURE`, `INVALID_STATE`, `NO_PRICE`, …) and its details;
- a value the API cannot read (a malformed Decimal, a wrong variable type) is `VALIDATION`;
- a query that does not match the schema is `GRAPHQL_VALIDATION_FAILED`;
- anything else is `INTERNAL`, with its message masked (the details go to the log).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from domain.errors import DomainError
from domain.numbers import plain
from gql_api.scalars import DecimalInputError

log = logging.getLogger("criptoren.api")

INPUT_MARKERS = ("Expected value of type", "has invalid value", "got invalid value", "of required type")


def _causes(error: BaseException | None) -> Iterator[BaseException]:
    seen = 0
    while error is not None and seen < 10:
        yield error
        error = getattr(error, "original_error", None) or error.__cause__ or error.__context__
        seen += 1


def _detail(value: Any) -> Any:
    # Numbers read as in the messages and the Decimal fields: one form (domain.numbers.plain).
    if isinstance(value, Decimal):
        return plain(value)
    return value if isinstance(value, str | int | bool) else str(value)


def classify(error: GraphQLError) -> GraphQLError:
    """Return the error with `extensions.code` (and, for unexpected errors, a masked message)."""
    extensions: dict[str, Any] = dict(error.extensions or {})
    if "code" in extensions:
        return error
    causes = list(_causes(error.original_error))
    domain = next((c for c in causes if isinstance(c, DomainError)), None)
    message = error.message
    if domain is not None:
        extensions["code"] = domain.code
        if domain.details:
            extensions["details"] = {k: _detail(v) for k, v in domain.details.items()}
        message = domain.message
    elif any(isinstance(c, DecimalInputError) for c in causes) or any(m in message for m in INPUT_MARKERS):
        extensions["code"] = "VALIDATION"
    elif error.original_error is None or isinstance(error.original_error, GraphQLError):
        extensions["code"] = "GRAPHQL_VALIDATION_FAILED"
    else:
        log.error("Unexpected error in %s", error.path, exc_info=error.original_error)
        extensions["code"] = "INTERNAL"
        message = "Internal error: the request failed unexpectedly. It has been logged."
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=error.original_error if domain is not None else None,
        extensions=extensions,
    )


class ErrorCodes(SchemaExtension):
    """Adds `extensions.code` to every error of a result (see the module docstring)."""

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if result is not None and result.errors:
            result.errors = [classify(e) for e in result.errors]

    def on_stream_result(self, result: Any) -> Iterator[None]:
        # Each result of a subscription (and of operations over WebSocket) gets its codes too.
        errors = getattr(result, "errors", None)
        if errors:
            result.errors = [classify(e) for e in errors]
        yield
