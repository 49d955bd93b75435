"""Access tokens: short-lived JWTs (HS256) that say which client a request acts for.

The signing key is derived from `CRIPTOREN_SECRET_KEY` (`domain.adapters.keys`). Tokens are
checked without a database round trip; they live `ACCESS_TOKEN_MINUTES` (15 by default). Each
carries its session (`sid`, the login's refresh-token family): ending a session (`logout`, or a
reused refresh token) puts its id on a denylist in Redis for an access token's lifetime, so its
access tokens stop working at once, not at their expiry (`revoke_session`).

`authenticate(app, token)` is the one entry point for every transport: HTTP (`Authorization:
Bearer …`, in `get_context`) and WebSocket (`connection_init` payload, `authenticate_connection`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import jwt
from redis.exceptions import RedisError

from domain.adapters.bootstrap import App, derive_key, secret_key
from domain.adapters.config import Settings
from domain.errors import Unauthenticated

ALGORITHM = "HS256"
ISSUER = "criptoren"
TOKEN_TYPE = "access"  # noqa: S105 - the `typ` claim, not a secret
MAX_TOKEN_LENGTH = 2000
INVALID_TOKEN = "The access token is invalid or expired: log in or refresh it."  # noqa: S105 - a message
SESSION_ENDED = "The session has ended (logged out): log in again."
# Where a revoked session's id is announced, so that open WebSockets of that session close at once.
REVOKED_CHANNEL = "sessions-revoked"

log = logging.getLogger("criptoren.api")


@dataclass(frozen=True)
class TokenClaims:
    """What a valid access token says: whose it is, until when, and of which session (None for
    tokens issued outside a login, e.g. by tests and tools: those cannot be revoked)."""

    client_id: int
    expires_at: datetime
    session_id: str | None = None


@dataclass(frozen=True)
class AccessTokens:
    key: bytes
    ttl: timedelta

    def issue(self, client_id: int, now: datetime | None = None, session_id: str | None = None) -> tuple[str, datetime]:
        now = now or datetime.now(UTC)
        expires = now + self.ttl
        claims: dict[str, Any] = {
            "sub": str(client_id),
            "iss": ISSUER,
            "typ": TOKEN_TYPE,
            "iat": int(now.timestamp()),
            "exp": int(expires.timestamp()),
        }
        if session_id is not None:
            claims["sid"] = session_id
        return jwt.encode(claims, self.key, algorithm=ALGORITHM), expires

    def verify(self, token: str) -> int:
        """The client id of a valid token; `Unauthenticated` for anything else."""
        return self.decode(token).client_id

    def decode(self, token: str) -> TokenClaims:
        """The claims of a valid token; `Unauthenticated` for anything else (the denylist is not
        consulted here: see `authenticate`)."""
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
        session_id = claims.get("sid")
        if claims.get("typ") != TOKEN_TYPE or not 0 < client_id < 2**31 or not isinstance(session_id, str | None):
            raise Unauthenticated(INVALID_TOKEN)
        return TokenClaims(client_id, datetime.fromtimestamp(claims["exp"], UTC), session_id)


@cache
def _tokens(secret: str, minutes: int) -> AccessTokens:
    return AccessTokens(derive_key(secret, "access-token"), timedelta(minutes=minutes))


def access_tokens(settings: Settings) -> AccessTokens:
    return _tokens(secret_key(settings), settings.access_token_minutes)


def _decode(app: App, token: str | None) -> TokenClaims:
    if not token or not isinstance(token, str):
        raise Unauthenticated("An access token is required: log in first.")
    scheme, _, value = token.strip().partition(" ")
    if value and scheme.lower() == "bearer":
        token = value.strip()
    return access_tokens(app.settings).decode(token)


# ---------------------------------------------------------------- the denylist of ended sessions


def _revoked_key(app: App, session_id: str) -> str:
    return f"{app.settings.redis_prefix}:revoked-session:{session_id}"


_warned_at = [0.0]


def _warn(what: str, error: Exception) -> None:
    # Redis down: the API keeps answering (as the rate limit does); say so, at most once a minute.
    if time.monotonic() - _warned_at[0] > 60:
        _warned_at[0] = time.monotonic()
        log.warning("%s: Redis is unreachable (%s)", what, error)


async def session_revoked(app: App, session_id: str | None) -> bool:
    """Whether the session was ended (logout, reused refresh token). Unknown when Redis is down:
    then False (logged), like the rate limit."""
    if session_id is None:
        return False
    try:
        return bool(await app.redis.exists(_revoked_key(app, session_id)))
    except (RedisError, OSError) as e:
        _warn("Revoked sessions are not checked", e)
        return False


async def revoke_session(app: App, session_id: str) -> None:
    """End a session's access tokens now: its id stays on the denylist for an access token's
    lifetime (every token of it has expired by then), and open WebSockets of it are told to close."""
    ttl = app.settings.access_token_minutes * 60 + 60  # + clock leeway
    try:
        async with app.redis.pipeline(transaction=False) as pipe:
            pipe.set(_revoked_key(app, session_id), 1, ex=ttl)
            pipe.publish(app.bus.channel(REVOKED_CHANNEL), json.dumps({"session": session_id}))
            await pipe.execute()
    except (RedisError, OSError) as e:
        log.error("Could not revoke the access tokens of a session (they expire within %d min): %s", ttl // 60, e)


async def authenticate_claims(app: App, token: str | None) -> TokenClaims:
    """The claims of a valid access token of a live session. Raises `Unauthenticated` (code
    UNAUTHENTICATED) when the token is missing, malformed, forged, expired or of an ended session.
    Accepts a bare token or `Bearer <token>`."""
    claims = _decode(app, token)
    if await session_revoked(app, claims.session_id):
        raise Unauthenticated(SESSION_ENDED)
    return claims


async def authenticate(app: App, token: str | None) -> int:
    """The client id an access token stands for (see `authenticate_claims`)."""
    return (await authenticate_claims(app, token)).client_id


# Where a WebSocket client may put its token in the `connection_init` payload.
CONNECTION_TOKEN_KEYS = ("Authorization", "authorization", "accessToken", "token")


def connection_token(params: object) -> str | None:
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


async def authenticate_connection(app: App, params: object) -> TokenClaims | None:
    """The claims of the token of a `connection_init` payload (`{"Authorization": "Bearer …"}`):
    its client is the current client of every operation of the connection, which is closed when
    the token expires (gql_api/ws.py). None without a token: the connection is anonymous, public
    subscriptions (`prices`) only. A bad token raises `Unauthenticated` (the socket closes 4403)."""
    token = connection_token(params)
    return None if token is None else await authenticate_claims(app, token)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None without one."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else ""
