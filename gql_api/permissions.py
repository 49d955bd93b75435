"""Field permissions. Every field is private unless it is one of the public ones: `login`,
`refreshToken`, and market data (`currentPrice`, `priceHistory`, `symbols`, `prices`)."""

from __future__ import annotations

from typing import Any

from graphql import GraphQLErrorExtensions
from strawberry.permission import BasePermission

from gql_api.context import Info

UNAUTHENTICATED = "UNAUTHENTICATED"
# Root fields answered without an access token (a test checks every other field refuses).
PUBLIC_FIELDS = frozenset({"login", "refreshToken", "currentPrice", "priceHistory", "symbols", "prices"})


class IsAuthenticated(BasePermission):
    """The request carries a valid access token: `info.context.client_id` is the current client."""

    message = (
        "Authentication required: send a valid access token (HTTP header `Authorization: Bearer <token>`, "
        "or `Authorization` in the WebSocket connection_init payload). Get one with `login`; when it "
        "expires, use `refreshToken`."
    )
    # Not a ClassVar: BasePermission declares it an instance attribute (mypy refuses the override). Only read.
    error_extensions: GraphQLErrorExtensions = {"code": UNAUTHENTICATED}  # noqa: RUF012

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        if info.context.client_id is not None:
            return True
        if info.context.auth_error is not None:
            # A token was sent but refused: say so (expired, most likely), with the same code.
            raise self.error_class(info.context.auth_error, extensions=dict(self.error_extensions))
        return False
