"""Access tokens: short-lived JWTs (HS256) that say which client a request acts for.

The signing key is derived from `CRIPTOREN_SECRET_KEY` (`domain.adapters.keys`). Tokens are
checked without a database round trip; they live `ACCESS_TOKEN_MINUTES` (15 by default), and a
session is ended for good by revoking its refresh token (`logout`).

`authenticate(app, token)` is the one entry point for every transport: HTTP (`Authorization:
Bearer …`, in `get_context`) and WebSocket (`connection_init` payload, in `on_ws_connect`).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import jwt
from strawberry.exceptions import ConnectionRejectionError

from domain.adapters.bootstrap import App, derive_key, secret_key
from domain.adapters.config import Settings
from domain.errors import Unauthenticated

ALGORITHM = "HS256"
ISSUER = "criptoren"
TOKEN_TYPE = "access"  # noqa: S105 - the `typ` claim, not a secret
MAX_TOKEN_LENGTH = 2000
INVALID_TOKEN = "The access token is invalid or expired: log in or refresh it."  # noqa: S105 - a message


@dataclass(frozen=True)
class AccessTokens:
    key: bytes
    ttl: timedelta

    def issue(self, client_id: int, now: datetime | None = None) -> tuple[str, datetime]:
        now = now or datetime.now(UTC)
        expires = now + self.ttl
        claims = {
            "sub": str(client_id),
            "iss": ISSUER,
            "typ": TOKEN_TYPE,
            "iat": int(now.timestamp()),
            "exp": int(expires.timestamp()),
        }
        return jwt.encode(claims, self.key, algorithm=ALGORITHM), expires

    def verify(self, token: str) -> int:
        """The client id of a valid token; `Unauthenticated` for anything else."""
        return self.decode(token)[0]

    def decode(self, token: str) -> tuple[int, datetime]:
        """The client id and expiry of a valid token; `Unauthenticated` for anything else."""
        if len(token) > MAX_TOKEN_LENGTH:
            raise Unauthenticated(INVALID_TOKEN)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.key,
                algorithms=[ALGORITHM],  # never the token's own choice (no "none", no RS/HS confusion)
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "iss"]},
            )
            client_id = int(claims["sub"])
        except (jwt.PyJWTError, ValueError, TypeError):
            raise Unauthenticated(INVALID_TOKEN) from None
        if claims.get("typ") != TOKEN_TYPE or not 0 < client_id < 2**31:
            raise Unauthenticated(INVALID_TOKEN)
        return client_id, datetime.fromtimestamp(claims["exp"], UTC)


@cache
def _tokens(secret: str, minutes: int) -> AccessTokens:
    return AccessTokens(derive_key(secret, "access-token"), timedelta(minutes=minutes))


def access_tokens(settings: Settings) -> AccessTokens:
    return _tokens(secret_key(settings), settings.access_token_minutes)


def _decode(app: App, token: str | None) -> tuple[int, datetime]:
    if not token or not isinstance(token, str):
        raise Unauthenticated("An access token is required: log in first.")
    scheme, _, value = token.strip().partition(" ")
    if value and scheme.lower() == "bearer":
        token = value.strip()
    return access_tokens(app.settings).decode(token)


async def authenticate(app: App, token: str | None) -> int:
    """The client id an access token stands for. Raises `Unauthenticated` (code UNAUTHENTICATED)
    when the token is missing, malformed, forged or expired. Accepts a bare token or `Bearer <token>`."""
    return _decode(app, token)[0]


# Where a WebSocket client may put its token in the `connection_init` payload.
CONNECTION_TOKEN_KEYS = ("Authorization", "authorization", "accessToken", "token")
TOKEN_EXPIRED_CLOSE_CODE = 4403  # graphql-transport-ws: Forbidden (as for a refused connection_init)
_expiry_tasks: set[asyncio.Task[None]] = set()


class ConnectionRefused(ConnectionRejectionError, PermissionError):
    """A WebSocket connection refused for its token: Strawberry's handler closes it with 4403
    (ConnectionRejectionError); a handler of our own can catch the PermissionError."""

    def __init__(self, message: str) -> None:
        ConnectionRejectionError.__init__(self, {"code": "UNAUTHENTICATED", "message": message})
        PermissionError.__init__(self, message)


def connection_token(params: Any) -> str | None:
    """The token of a `connection_init` payload: `{"Authorization": "Bearer …"}` (what GraphiQL
    sends from its headers pane), `{"headers": {"Authorization": …}}`, or `{"token": …}`."""
    if not isinstance(params, dict):
        return None
    for source in (params, params.get("headers")):
        if isinstance(source, dict):
            for key in CONNECTION_TOKEN_KEYS:
                value = source.get(key)
                if isinstance(value, str) and value:
                    return value
    return None


async def _close_when_expired(websocket: Any, delay: float) -> None:
    await asyncio.sleep(delay)
    with contextlib.suppress(RuntimeError, OSError):  # already closed
        await websocket.close(code=TOKEN_EXPIRED_CLOSE_CODE, reason="Access token expired")


async def authenticate_connection(context: Any) -> None:
    """For `on_ws_connect`: the token of the `connection_init` payload (`{"Authorization": "Bearer
    …"}`) makes `context.client_id` the current client for every operation of the connection, and
    the socket is closed with 4403 when the token expires (the client refreshes and reconnects). A
    bad token refuses the connection (`ConnectionRefused`: 4403). Without a token the connection is
    anonymous: public subscriptions (`prices`) only."""
    token = connection_token(context.connection_params)
    if token is None:
        return
    try:
        client_id, expires = _decode(context.app, token)
    except Unauthenticated as e:
        raise ConnectionRefused(e.message) from None
    context.client_id = client_id
    if context.request is not None:
        delay = max(0.0, (expires - datetime.now(UTC)).total_seconds())
        task = asyncio.create_task(_close_when_expired(context.request, delay))
        _expiry_tasks.add(task)
        task.add_done_callback(_expiry_tasks.discard)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None without one."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else ""
