"""The schema: queries, mutations and subscriptions, the Decimal scalar, error codes, abuse limits."""

from __future__ import annotations

import decimal

import strawberry
from strawberry.schema.config import StrawberryConfig

from gql_api.context import ReadSnapshots
from gql_api.errors import ErrorCodes, classify
from gql_api.hardening import MAX_ALIASES, MAX_DEPTH, MAX_TOKENS, OperationGuards
from gql_api.mutations.alerts import AlertMutations
from gql_api.mutations.auth import AuthMutations
from gql_api.mutations.capital import CapitalMutations
from gql_api.mutations.exchange import ExchangeMutations
from gql_api.mutations.orders import OrderMutations
from gql_api.mutations.strategies import StrategyMutations
from gql_api.mutations.trading import TradingMutations
from gql_api.queries import Query
from gql_api.scalars import DecimalScalar
from gql_api.subscriptions import Subscription

__all__ = ["MAX_ALIASES", "MAX_DEPTH", "MAX_TOKENS", "schema", "sdl"]


@strawberry.type(
    description="Log in, and change strategies, capital and positions. A failed mutation changes nothing; every "
    "mutation is recorded in the audit log."
)
class Mutation(
    AuthMutations,
    StrategyMutations,
    CapitalMutations,
    OrderMutations,
    ExchangeMutations,
    TradingMutations,
    AlertMutations,
):
    pass


class CriptorenSchema(strawberry.Schema):
    def process_errors(self, errors, execution_context=None) -> None:  # type: ignore[no-untyped-def, override]
        # Expected errors (domain, validation) are not logged as failures; ErrorCodes logs the rest.
        # Errors that bypass the extensions (an exception before execution) get their codes here.
        if isinstance(errors, list):
            errors[:] = [classify(e) for e in errors]


schema = CriptorenSchema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    config=StrawberryConfig(scalar_map={decimal.Decimal: DecimalScalar}),
    # The depth, alias and token limits are OperationGuards' (gql_api/hardening.py).
    extensions=[ErrorCodes, OperationGuards, ReadSnapshots],
)


def sdl() -> str:
    """The schema in SDL, as checked in at `schema.graphql`."""
    return strawberry.printer.print_schema(schema) + "\n"
