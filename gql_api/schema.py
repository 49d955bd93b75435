"""The schema: queries and mutations, the Decimal scalar, error codes, abuse limits."""

from __future__ import annotations

import decimal

import strawberry
from strawberry.extensions import MaxAliasesLimiter, MaxTokensLimiter, QueryDepthLimiter
from strawberry.schema.config import StrawberryConfig

from gql_api.errors import ErrorCodes
from gql_api.mutations.capital import CapitalMutations
from gql_api.mutations.orders import OrderMutations
from gql_api.mutations.strategies import StrategyMutations
from gql_api.queries import Query
from gql_api.scalars import DecimalScalar

MAX_DEPTH = 10
MAX_ALIASES = 30
MAX_TOKENS = 2000


@strawberry.type(description="Change strategies, capital and positions. A failed mutation changes nothing.")
class Mutation(StrategyMutations, CapitalMutations, OrderMutations):
    pass


class CriptorenSchema(strawberry.Schema):
    def process_errors(self, errors, execution_context=None) -> None:  # type: ignore[no-untyped-def, override]
        # Expected errors (domain, validation) are not logged as failures; ErrorCodes logs the rest.
        return None


schema = CriptorenSchema(
    query=Query,
    mutation=Mutation,
    config=StrawberryConfig(scalar_map={decimal.Decimal: DecimalScalar}),
    extensions=[
        ErrorCodes,
        lambda: QueryDepthLimiter(max_depth=MAX_DEPTH),
        lambda: MaxAliasesLimiter(max_alias_count=MAX_ALIASES),
        lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
    ],
)


def sdl() -> str:
    """The schema in SDL, as checked in at `schema.graphql`."""
    return strawberry.printer.print_schema(schema) + "\n"
