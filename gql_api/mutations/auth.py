"""Session mutations: log in with an API key and secret (throttled after failures,
gql_api/login_throttle.py), rotate the refresh token, log out (the session's access tokens stop at
once: gql_api/auth.py `revoke_session`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import strawberry
from graphql import GraphQLError

from domain import commands as cmds
from domain.errors import SessionRevoked, Unauthenticated
from domain.services import auth
from gql_api.audit import Audited
from gql_api.auth import access_tokens, revoke_session
from gql_api.context import Info
from gql_api.login_throttle import LoginThrottle
from gql_api.permissions import IsAuthenticated


@strawberry.type(
    description="A session's tokens. Send the access token as `Authorization: Bearer <accessToken>`; before it "
    "expires, trade the refresh token for new tokens with `refreshToken` (each refresh token works once)."
)
class AuthPayload:
    access_token: str = strawberry.field(description="Short-lived JWT for the `Authorization: Bearer` header.")
    access_token_expires_at: datetime = strawberry.field(description="When the access token expires (UTC).")
    refresh_token: str = strawberry.field(description="Single-use token for `refreshToken`; keep it secret.")
    refresh_token_expires_at: datetime = strawberry.field(description="When the refresh token expires (UTC).")
    token_type: str = strawberry.field(description='Always "Bearer".')
    client_id: strawberry.ID = strawberry.field(description="The client the session acts for.")


def _payload(info: Info, session: auth.Session) -> AuthPayload:
    access, expires = access_tokens(info.context.app.settings).issue(session.client_id, session_id=session.session_id)
    return AuthPayload(
        access_token=access,
        access_token_expires_at=expires,
        refresh_token=session.refresh_token,
        refresh_token_expires_at=session.refresh_expires_at,
        token_type="Bearer",  # noqa: S106 - the scheme's name
        client_id=strawberry.ID(str(session.client_id)),
    )


def _refresh_ttl(info: Info) -> timedelta:
    return timedelta(days=info.context.app.settings.refresh_token_days)


def _address(info: Info) -> str | None:
    """The caller's IP address (HTTP request or WebSocket alike)."""
    client: Any = getattr(info.context.request, "client", None)
    return getattr(client, "host", None)


@strawberry.type
class AuthMutations:
    @strawberry.mutation(
        description="Log in with the client's API key and secret (from `criptoren client create`). Wrong "
        "credentials are UNAUTHENTICATED, whichever half is wrong.",
        extensions=[Audited()],
    )
    async def login(
        self,
        info: Info,
        api_key: Annotated[str, strawberry.argument(description="The client's API key.")],
        api_secret: Annotated[str, strawberry.argument(description="The client's API secret.")],
    ) -> AuthPayload:
        throttle, address = LoginThrottle(info.context.app), _address(info)
        wait = await throttle.attempt(api_key, address)
        if wait is not None:
            raise GraphQLError(
                f"Too many failed logins: retry in {wait} s.", extensions={"code": "RATE_LIMITED", "retryAfter": wait}
            )
        # A failure stays counted (the next wait grows); a success clears the key's count.
        session = await auth.login(
            cmds.Login(api_key, api_secret), info.context.app.uow(), datetime.now(UTC), _refresh_ttl(info)
        )
        await throttle.succeeded(api_key, address)
        return _payload(info, session)

    @strawberry.mutation(
        description="Trade a refresh token for new tokens. The token given stops working; presenting it again "
        "ends the whole session (every token of that login): log in again then.",
        extensions=[Audited()],
    )
    async def refresh_token(
        self, info: Info, token: Annotated[str, strawberry.argument(description="The current refresh token.")]
    ) -> AuthPayload:
        try:
            session = await auth.refresh_session(
                cmds.RefreshSession(token), info.context.app.uow(), datetime.now(UTC), _refresh_ttl(info)
            )
        except SessionRevoked as e:
            # A leaked refresh token: the thief's and the owner's access tokens end now too.
            await revoke_session(info.context.app, e.session_id)
            raise Unauthenticated(e.message) from None
        return _payload(info, session)

    @strawberry.mutation(
        description="End a session: its refresh tokens and its access tokens stop working at once (open "
        "WebSockets of the session close with 4403).",
        permission_classes=[IsAuthenticated],
        extensions=[Audited()],
    )
    async def logout(
        self,
        info: Info,
        refresh_token: Annotated[str, strawberry.argument(description="The session's current refresh token.")],
    ) -> bool:
        cmd = cmds.Logout(refresh_token, info.context.client_id)
        session_id = await auth.logout(cmd, info.context.app.uow(), datetime.now(UTC))
        await revoke_session(info.context.app, session_id)
        return True
