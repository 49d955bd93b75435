"""Login, access tokens, refresh-token rotation (and reuse detection), logout, credentials, audit."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from sqlalchemy import text

from domain import commands as cmds
from domain.adapters.bootstrap import App
from domain.adapters.config import Settings
from domain.adapters.keys import MissingSecretKey, secret_key
from domain.errors import ValidationError
from domain.services import auth
from gql_api.auth import access_tokens
from tests.e2e.conftest import LOGIN, GraphQLClient

ME = "{ me { id name apiKey } }"
REFRESH = "mutation($t: String!) { refreshToken(token: $t) { accessToken refreshToken clientId } }"
LOGOUT = "mutation($t: String!) { logout(refreshToken: $t) }"


async def new_client(db: App, name: str) -> auth.Credentials:
    _, credentials = await auth.create_client(cmds.CreateClientWithCredentials(name), db.uow(), datetime.now(UTC))
    return credentials


def code(body: dict[str, Any]) -> str | None:
    errors = body.get("errors") or []
    return errors[0]["extensions"]["code"] if errors else None


async def login(gql: GraphQLClient, key: str, secret: str) -> dict[str, Any]:
    return (await gql.post(LOGIN, {"k": key, "s": secret})).json()


async def test_login_returns_tokens_that_identify_the_client(db: App, gql: GraphQLClient) -> None:
    credentials = await new_client(db, "Alice")
    body = await login(gql, credentials.api_key, credentials.api_secret)
    session = body["data"]["login"]
    assert session["clientId"] == str(credentials.client_id)
    expires = datetime.fromisoformat(session["accessTokenExpiresAt"])
    assert timedelta(minutes=14) < expires - datetime.now(UTC) <= timedelta(minutes=15)
    claims = jwt.decode(session["accessToken"], options={"verify_signature": False})
    assert claims["sub"] == str(credentials.client_id) and claims["typ"] == "access"
    me = (await gql.post(ME, token=session["accessToken"])).json()
    assert me["data"]["me"] == {"id": str(credentials.client_id), "name": "Alice", "apiKey": credentials.api_key}
    # The header's name and scheme are case-insensitive.
    raw = await gql.http.post(
        "/graphql", json={"query": ME}, headers={"authorization": f"bearer {session['accessToken']}"}
    )
    assert raw.json()["data"]["me"]["name"] == "Alice"


async def test_bad_credentials_fail_alike_whichever_half_is_wrong(db: App, gql: GraphQLClient) -> None:
    credentials = await new_client(db, "Alice")
    wrong_secret = await login(gql, credentials.api_key, credentials.api_secret + "x")
    unknown_key = await login(gql, "ck_nobody", credentials.api_secret)
    empty = await login(gql, "", "")
    huge = await login(gql, "k" * 5000, "s" * 5000)
    for body in (wrong_secret, unknown_key, empty, huge):
        assert body["data"] is None
        assert code(body) == "UNAUTHENTICATED"
        assert body["errors"][0]["message"] == wrong_secret["errors"][0]["message"]


async def test_bad_credentials_take_the_same_time_whether_the_key_exists_or_not(db: App, gql: GraphQLClient) -> None:
    credentials = await new_client(db, "Alice")

    async def timed(key: str) -> float:
        start = time.perf_counter()
        body = await login(gql, key, "cs_wrong-secret")
        assert code(body) == "UNAUTHENTICATED"
        return time.perf_counter() - start

    known, unknown = [], []
    for _ in range(5):
        known.append(await timed(credentials.api_key))
        unknown.append(await timed("ck_unknown-key-0123456789"))
    k, u = statistics.median(known), statistics.median(unknown)
    # Both run one lookup and one scrypt (~70 ms): an unknown key is not answered faster.
    assert u > 0.5 * k and k > 0.5 * u, (known, unknown)
    assert min(unknown) > 0.02, unknown


def test_unknown_key_is_checked_against_a_dummy_hash() -> None:
    stored = auth.hash_secret("s3cret")
    assert auth.verify_secret("s3cret", stored)
    assert not auth.verify_secret("s3cret!", stored)
    assert not auth.verify_secret("s3cret", None)
    assert not auth.verify_secret("s3cret", "not-a-hash")
    start = time.perf_counter()
    auth.verify_secret("s3cret", None)
    assert time.perf_counter() - start > 0.01  # the dummy comparison does the real work
    assert stored.startswith("scrypt$") and "s3cret" not in stored


async def test_secrets_are_stored_hashed_and_tokens_hashed(db: App, gql: GraphQLClient) -> None:
    credentials = await new_client(db, "Alice")
    session = (await login(gql, credentials.api_key, credentials.api_secret))["data"]["login"]
    async with db.engine.connect() as conn:
        client = (await conn.execute(text("SELECT row_to_json(c)::text FROM clients c"))).scalar_one()
        tokens = (await conn.execute(text("SELECT row_to_json(t)::text FROM refresh_tokens t"))).scalars().all()
    assert credentials.api_secret not in client
    assert len(tokens) == 1 and session["refreshToken"] not in tokens[0]
    assert auth.hash_token(session["refreshToken"]) in tokens[0]


async def test_refresh_rotates_and_a_reused_token_revokes_the_whole_family(db: App, gql: GraphQLClient) -> None:
    credentials = await new_client(db, "Alice")
    first = (await login(gql, credentials.api_key, credentials.api_secret))["data"]["login"]
    other_session = (await login(gql, credentials.api_key, credentials.api_secret))["data"]["login"]

    second = (await gql.post(REFRESH, {"t": first["refreshToken"]})).json()["data"]["refreshToken"]
    assert second["refreshToken"] != first["refreshToken"]
    assert (await gql.post(ME, token=second["accessToken"])).json()["data"]["me"]["name"] == "Alice"
    third = (await gql.post(REFRESH, {"t": second["refreshToken"]})).json()["data"]["refreshToken"]

    # The rotated token presented again: refused, and the family's newest token is revoked too.
    reused = (await gql.post(REFRESH, {"t": first["refreshToken"]})).json()
    assert code(reused) == "UNAUTHENTICATED"
    assert code((await gql.post(REFRESH, {"t": third["refreshToken"]})).json()) == "UNAUTHENTICATED"
    # Another login of the same client is another family: untouched.
    assert (await gql.post(REFRESH, {"t": other_session["refreshToken"]})).json()["data"]["refreshToken"]
    async with db.engine.connect() as conn:
        revoked = (
            await conn.execute(text("SELECT count(*) FROM refresh_tokens WHERE revoked_at IS NOT NULL"))
        ).scalar()
    assert revoked == 3


async def test_expired_and_unknown_refresh_tokens_are_refused(db: App, gql: GraphQLClient) -> None:
    credentials = await new_client(db, "Alice")
    session = (await login(gql, credentials.api_key, credentials.api_secret))["data"]["login"]
    for token in ("rt_unknown", "", session["accessToken"], "x" * 10_000):
        assert code((await gql.post(REFRESH, {"t": token})).json()) == "UNAUTHENTICATED"
    async with db.engine.begin() as conn:
        await conn.execute(text("UPDATE refresh_tokens SET expires_at = now() - interval '1 second'"))
    assert code((await gql.post(REFRESH, {"t": session["refreshToken"]})).json()) == "UNAUTHENTICATED"


async def test_logout_ends_the_session_and_only_the_callers_own(db: App, gql: GraphQLClient) -> None:
    alice = await new_client(db, "Alice")
    bob = await new_client(db, "Bob")
    a = (await login(gql, alice.api_key, alice.api_secret))["data"]["login"]
    b = (await login(gql, bob.api_key, bob.api_secret))["data"]["login"]
    # Without a token: refused. With Alice's token on Bob's session: not found, Bob's session lives.
    assert code((await gql.post(LOGOUT, {"t": a["refreshToken"]})).json()) == "UNAUTHENTICATED"
    assert code((await gql.post(LOGOUT, {"t": b["refreshToken"]}, token=a["accessToken"])).json()) == "NOT_FOUND"
    assert (await gql.post(LOGOUT, {"t": a["refreshToken"]}, token=a["accessToken"])).json()["data"]["logout"] is True
    assert code((await gql.post(REFRESH, {"t": a["refreshToken"]})).json()) == "UNAUTHENTICATED"
    assert (await gql.post(REFRESH, {"t": b["refreshToken"]})).json()["data"]["refreshToken"]


async def test_invalid_access_tokens_are_refused(db: App, gql: GraphQLClient) -> None:
    credentials = await new_client(db, "Alice")
    session = (await login(gql, credentials.api_key, credentials.api_secret))["data"]["login"]
    tokens = access_tokens(db.settings)
    expired, _ = tokens.issue(credentials.client_id, now=datetime.now(UTC) - timedelta(minutes=16))
    now = int(time.time())
    claims = {"sub": str(credentials.client_id), "iss": "criptoren", "typ": "access", "iat": now, "exp": now + 600}
    forged = jwt.encode(claims, "another-key-of-32-bytes-or-more-.....", algorithm="HS256")
    unsigned = jwt.encode(claims, key=None, algorithm="none")
    wrong_type = jwt.encode({**claims, "typ": "refresh"}, tokens.key, algorithm="HS256")
    tampered = session["accessToken"][:-2] + ("AA" if not session["accessToken"].endswith("AA") else "BB")
    for token in (expired, forged, unsigned, wrong_type, tampered, session["refreshToken"], "garbage"):
        body = (await gql.post(ME, token=token)).json()
        assert code(body) == "UNAUTHENTICATED", (token, body)
    for header in ("Basic abc", "Bearer", "Bearer  "):
        body = (await gql.http.post("/graphql", json={"query": ME}, headers={"Authorization": header})).json()
        assert code(body) == "UNAUTHENTICATED"


async def test_public_fields_answer_with_or_without_a_token(db: App, gql: GraphQLClient) -> None:
    query = (
        '{ symbols { symbol } currentPrice(symbol: "BTCUSDT") { symbol } priceHistory(symbol: "BTCUSDT") { close } }'
    )
    for token in (None, "garbage"):
        body = (await gql.post(query, token=token)).json()
        assert "errors" not in body, body
        assert {s["symbol"] for s in body["data"]["symbols"]} == {"BTCUSDT", "ETHUSDT"}


async def test_new_credentials_replace_the_old_ones_and_end_every_session(db: App, gql: GraphQLClient) -> None:
    old = await new_client(db, "Alice")
    session = (await login(gql, old.api_key, old.api_secret))["data"]["login"]
    new = await auth.issue_credentials(cmds.IssueCredentials(old.client_id), db.uow(), datetime.now(UTC))
    assert code(await login(gql, old.api_key, old.api_secret)) == "UNAUTHENTICATED"
    assert code((await gql.post(REFRESH, {"t": session["refreshToken"]})).json()) == "UNAUTHENTICATED"
    assert (await login(gql, new.api_key, new.api_secret))["data"]["login"]["clientId"] == str(old.client_id)


async def test_client_names_are_unique(db: App) -> None:
    await new_client(db, "Alice")
    with pytest.raises(ValidationError):
        await new_client(db, " Alice ")


async def test_the_cli_creates_a_client_and_prints_its_credentials_once(
    db: App, gql: GraphQLClient, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from gql_api import cli

    settings = db.settings
    for name, value in {
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "REDIS_PREFIX": settings.redis_prefix,
        "CRIPTOREN_SECRET_KEY": settings.criptoren_secret_key,
    }.items():
        monkeypatch.setenv(name, str(value))
    await asyncio.to_thread(cli.main, ["client", "create", "--name", "Carol"])
    out = capsys.readouterr().out
    key = out.split("API key:")[1].split()[0]
    secret = out.split("API secret:")[1].split()[0]
    assert (await login(gql, key, secret))["data"]["login"]["clientId"]
    await asyncio.to_thread(cli.main, ["client", "rotate", "--name", "Carol"])
    new_secret = capsys.readouterr().out.split("API secret:")[1].split()[0]
    assert new_secret != secret
    with pytest.raises(SystemExit):
        await asyncio.to_thread(cli.main, ["client", "create", "--name", "Carol"])


async def test_mutations_are_audited_with_secrets_redacted(db: App, gql: GraphQLClient) -> None:
    from decimal import Decimal

    from domain.adapters.seed import seed_demo

    await seed_demo(db.uow, db.exchange)
    await gql.login()
    await gql.data('mutation { allocateCapital(strategyId: "1", amount: "50", note: "top-up") { id } }')
    failed = await gql.error('mutation { withdrawProfit(strategyId: "1", amount: "1") { id } }')
    assert failed["extensions"]["code"] == "INSUFFICIENT_CAPITAL"
    await gql.error('mutation { buy(strategyId: "999", quoteAmount: "10") { id } }')
    await gql.post(REFRESH, {"t": gql.refresh_token})
    async with db.engine.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT client_id, mutation, arguments, result, error_code, created_at FROM audit_log ORDER BY id")
            )
        ).all()
    entries = [(r.client_id, r.mutation, r.arguments, r.result, r.error_code) for r in rows]
    assert entries[0][:2] == (1, "login") and entries[0][2]["apiSecret"] == "[redacted]"
    assert entries[0][3] == {"type": "AuthPayload", "clientId": "1"}
    assert entries[1] == (
        1,
        "allocateCapital",
        {"strategyId": "1", "amount": "50", "note": "top-up"},
        {"type": "CapitalAllocation", "id": "2"},
        None,
    )
    assert entries[2] == (1, "withdrawProfit", {"strategyId": "1", "amount": "1"}, None, "INSUFFICIENT_CAPITAL")
    assert entries[3][1:] == ("buy", {"strategyId": "999", "quoteAmount": "10", "quantity": None}, None, "NOT_FOUND")
    assert entries[4][1] == "refreshToken" and entries[4][2] == {"token": "[redacted]"}
    assert all(r.created_at is not None for r in rows)
    # No token, secret or hash anywhere in the log.
    async with db.engine.connect() as conn:
        dump = (await conn.execute(text("SELECT json_agg(a)::text FROM audit_log a"))).scalar_one()
    assert gql.refresh_token not in dump and str(gql.access_token) not in dump and "scrypt$" not in dump
    assert Decimal(entries[1][2]["amount"]) == 50


def test_the_development_key_is_generated_once_and_kept(tmp_path: os.PathLike[str]) -> None:
    settings = Settings(criptoren_secret_key=None, criptoren_data_dir=tmp_path, criptoren_env="dev")
    first = secret_key(settings)
    assert len(first) >= 40 and secret_key(settings) == first
    path = settings.criptoren_data_dir / "secret_key"
    assert path.stat().st_mode & 0o777 == 0o600
    # The same key after a "restart": tokens stay valid.
    token, _ = access_tokens(settings).issue(7)
    again = Settings(criptoren_secret_key=None, criptoren_data_dir=tmp_path, criptoren_env="dev")
    assert access_tokens(again).verify(token) == 7


def test_production_needs_a_secret_key(tmp_path: os.PathLike[str]) -> None:
    settings = Settings(criptoren_secret_key=None, criptoren_data_dir=tmp_path, criptoren_env="prod")
    with pytest.raises(MissingSecretKey):
        secret_key(settings)
    assert not (settings.criptoren_data_dir / "secret_key").exists()


def test_the_websocket_token_is_read_where_clients_put_it() -> None:
    from gql_api.auth import connection_token

    assert connection_token({"Authorization": "Bearer t"}) == "Bearer t"  # GraphiQL's headers pane
    assert connection_token({"headers": {"authorization": "Bearer t"}}) == "Bearer t"
    assert connection_token({"token": "t"}) == "t"
    for params in ({}, None, [], {"Authorization": 5}, {"headers": "x"}):
        assert connection_token(params) is None
