"""Client credentials and sessions: API key and secret, login, refresh-token rotation, logout.

- A client's API secret is random (256 bits), shown once, and stored only as an scrypt hash.
  Login compares in constant time, and against a dummy hash when the key is unknown, so a wrong
  key and a wrong secret fail with the same error after the same work.
- A login opens a session: a *family* of refresh tokens. Each refresh rotates the token; a
  rotated (already used) token presented again means it leaked, and the whole family is revoked.
  Refresh tokens are random and stored as their SHA-256 (they are not guessable, so a fast hash
  suffices); the token itself exists only in the client's hands.

Access tokens (short-lived JWTs) are the API's business: this module only says which client a
session belongs to.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from domain import commands as cmds
from domain.errors import NotFound, SessionRevoked, Unauthenticated, ValidationError
from domain.model import Client, RefreshToken
from domain.ports import UnitOfWork

# scrypt cost: about 70 ms and 16 MiB per hash on a 2-core machine.
SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_DKLEN = 2**14, 8, 1, 32
SCRYPT_MAXMEM = 64 * 2**20
MAX_CREDENTIAL_LENGTH = 200
DEFAULT_REFRESH_TTL = timedelta(days=30)

BAD_CREDENTIALS = "Invalid API key or secret."
BAD_REFRESH_TOKEN = "The refresh token is invalid, expired or revoked: log in again."  # noqa: S105 - a message


@dataclass(frozen=True)
class Credentials:
    """A client's API key and secret, as given out once."""

    client_id: int
    api_key: str
    api_secret: str


@dataclass(frozen=True)
class Session:
    """The outcome of a login or a refresh: whose session (its id is the refresh-token family's,
    which the API writes into the session's access tokens), and its new refresh token."""

    client_id: int
    refresh_token: str
    refresh_expires_at: datetime
    session_id: str


# ---------------------------------------------------------------- hashing


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, dklen=SCRYPT_DKLEN, maxmem=SCRYPT_MAXMEM)


def hash_secret(secret: str) -> str:
    """`scrypt$n$r$p$salt$hash`: the parameters travel with the hash, so they can be raised later."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(secret, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


@cache
def _dummy_hash() -> str:
    # Verified against when the API key is unknown: the same work as for a real client.
    return hash_secret(secrets.token_urlsafe(32))


def verify_secret(secret: str, stored: str | None) -> bool:
    """Constant-time check of `secret` against a `hash_secret` value. With `stored` None (unknown
    key, or a client without credentials) it does the same work against a dummy hash and fails."""
    genuine = stored is not None
    try:
        scheme, n, r, p, salt, digest = (stored or _dummy_hash()).split("$")
        if scheme != "scrypt":
            raise ValueError(scheme)
        expected = _unb64(digest)
        computed = _scrypt(secret[:MAX_CREDENTIAL_LENGTH], _unb64(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(computed, expected) and genuine and len(secret) <= MAX_CREDENTIAL_LENGTH


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_api_key_and_secret() -> tuple[str, str]:
    return "ck_" + secrets.token_urlsafe(18), "cs_" + secrets.token_urlsafe(32)


def new_refresh_token() -> str:
    return "rt_" + secrets.token_urlsafe(32)


# ---------------------------------------------------------------- clients and credentials


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 100:
        raise ValidationError("name must have 1 to 100 characters.", field="name")
    return name


async def _new_secret() -> tuple[str, str, str]:
    """A new API key, secret and secret hash (hashed off the event loop, outside any transaction)."""
    api_key, api_secret = new_api_key_and_secret()
    return api_key, api_secret, await asyncio.to_thread(hash_secret, api_secret)


async def create_client(
    cmd: cmds.CreateClientWithCredentials, uow: UnitOfWork, now: datetime
) -> tuple[Client, Credentials]:
    """A new client, unique by name, with fresh credentials (the secret is returned once)."""
    name = _check_name(cmd.name)
    api_key, api_secret, secret_hash = await _new_secret()
    async with uow:
        if await uow.clients.get_by_name(name) is not None:
            raise ValidationError(f"A client named {name!r} already exists.", field="name")
        client = Client(name=name, api_key=api_key, api_secret_hash=secret_hash, created_at=now)
        uow.clients.add(client)
        await uow.flush()
        await uow.commit()
    assert client.id is not None
    return client, Credentials(client.id, api_key, api_secret)


async def issue_credentials(cmd: cmds.IssueCredentials, uow: UnitOfWork, now: datetime) -> Credentials:
    """Replace a client's API key and secret. The old ones stop working and every session ends."""
    api_key, api_secret, secret_hash = await _new_secret()
    async with uow:
        client = await uow.clients.get(cmd.client_id)
        if client is None:
            raise NotFound(f"Client {cmd.client_id} not found.", entity="Client", id=cmd.client_id)
        client.api_key, client.api_secret_hash = api_key, secret_hash
        await uow.refresh_tokens.revoke_client(cmd.client_id, now)
        await uow.commit()
    return Credentials(cmd.client_id, api_key, api_secret)


async def find_client(uow: UnitOfWork, name: str) -> Client:
    async with uow:
        client = await uow.clients.get_by_name(name.strip())
    if client is None:
        raise NotFound(f"Client {name!r} not found.", entity="Client", id=name)
    return client


async def current_client(uow: UnitOfWork, client_id: int) -> Client:
    async with uow:
        client = await uow.clients.get(client_id)
    if client is None:
        raise NotFound(f"Client {client_id} not found.", entity="Client", id=client_id)
    return client


# ---------------------------------------------------------------- sessions


def _open(uow: UnitOfWork, client_id: int, family_id: str, now: datetime, ttl: timedelta) -> Session:
    token = new_refresh_token()
    uow.refresh_tokens.add(
        RefreshToken(
            client_id=client_id, family_id=family_id, token_hash=hash_token(token), expires_at=now + ttl, created_at=now
        )
    )
    return Session(client_id=client_id, refresh_token=token, refresh_expires_at=now + ttl, session_id=family_id)


async def login(
    cmd: cmds.Login, uow: UnitOfWork, now: datetime, refresh_ttl: timedelta = DEFAULT_REFRESH_TTL
) -> Session:
    """Check an API key and secret and open a session. Any mismatch is the same `Unauthenticated`,
    after the same work (one lookup, one scrypt), whether the key exists or not."""
    async with uow:
        client = await uow.clients.get_by_api_key(cmd.api_key[:MAX_CREDENTIAL_LENGTH])
    stored = client.api_secret_hash if client is not None else None
    # Off the event loop and outside the transaction: no connection is held during the ~70 ms.
    ok = await asyncio.to_thread(verify_secret, cmd.api_secret, stored)
    if client is None or client.id is None or not ok:
        raise Unauthenticated(BAD_CREDENTIALS)
    async with uow:
        session = _open(uow, client.id, uuid.uuid4().hex, now, refresh_ttl)
        await uow.commit()
    return session


async def refresh_session(
    cmd: cmds.RefreshSession, uow: UnitOfWork, now: datetime, refresh_ttl: timedelta = DEFAULT_REFRESH_TTL
) -> Session:
    """Rotate a refresh token: the presented one stops working and a new one of the same family is
    returned. A token presented after it was rotated has leaked (or is replayed): the whole family
    is revoked, so the thief's and the owner's tokens both stop working (`SessionRevoked`, which
    names the session so that its access tokens can be ended too)."""
    async with uow:
        token = await uow.refresh_tokens.get_by_hash(
            hash_token(cmd.refresh_token[:MAX_CREDENTIAL_LENGTH]), for_update=True
        )
        if token is None or token.revoked_at is not None or token.expires_at <= now:
            raise Unauthenticated(BAD_REFRESH_TOKEN)
        if token.rotated_at is not None:
            await uow.refresh_tokens.revoke_family(token.family_id, now)
            await uow.commit()
            raise SessionRevoked(BAD_REFRESH_TOKEN, token.family_id)
        token.rotated_at = now
        session = _open(uow, token.client_id, token.family_id, now, refresh_ttl)
        await uow.commit()
    return session


async def logout(cmd: cmds.Logout, uow: UnitOfWork, now: datetime) -> str:
    """End the session (token family) of a refresh token; its id is returned (the API ends the
    session's access tokens with it). Another client's token, or an unknown one, is `NotFound`."""
    async with uow:
        token = await uow.refresh_tokens.get_by_hash(
            hash_token(cmd.refresh_token[:MAX_CREDENTIAL_LENGTH]), for_update=True
        )
        if token is None or (cmd.client_id is not None and token.client_id != cmd.client_id):
            raise NotFound("Session not found.", entity="Session")
        await uow.refresh_tokens.revoke_family(token.family_id, now)
        await uow.commit()
    return token.family_id
