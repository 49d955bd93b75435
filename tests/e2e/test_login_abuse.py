"""Logins under attack (issue 17, item 12): failed logins are throttled per API key and per IP
with growing waits (100 wrong logins went through in 3.8 s), and a logout ends the session's
access tokens at once — over HTTP and over WebSocket (they stayed valid until their expiry)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
import websockets
from sqlalchemy import text

from domain import commands as cmds
from domain.adapters.bootstrap import App
from domain.services import auth
from gql_api import login_throttle
from gql_api.auth import SESSION_ENDED
from gql_api.login_throttle import LoginThrottle
from tests.e2e import servers
from tests.e2e.conftest import LOGIN, GraphQLClient
from tests.e2e.test_hostile_clients import answer, subscribe
from tests.e2e.test_websocket_protocol import closed_with, open_socket

ME = "{ me { id } }"
LOGOUT = "mutation($t: String!) { logout(refreshToken: $t) }"
REFRESH = "mutation($t: String!) { refreshToken(token: $t) { accessToken refreshToken } }"


def code(body: dict[str, Any]) -> str | None:
    errors = body.get("errors") or []
    return errors[0]["extensions"]["code"] if errors else None


async def new_client(db: App, name: str) -> auth.Credentials:
    _, credentials = await auth.create_client(cmds.CreateClientWithCredentials(name), db.uow(), datetime.now(UTC))
    return credentials


class Clock:
    """The throttle's clock, moved by hand: the test never depends on how fast logins run."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 1_000_000.0
        monkeypatch.setattr(login_throttle, "clock", lambda: self.now)


async def test_wrong_logins_are_throttled_per_key_with_growing_waits(
    db: App, gql: GraphQLClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(monkeypatch)
    alice = await new_client(db, "Alice")
    free = db.settings.login_failures_per_key

    async def login(key: str, secret: str) -> dict[str, Any]:
        return (await gql.post(LOGIN, {"k": key, "s": secret})).json()

    # The finding: 100 wrong logins in 3.8 s. Now the secret is checked `free` + 1 times, then
    # every further attempt waits: refused at once, without checking, and the wait does not grow.
    answers = [await login(alice.api_key, "cs_wrong") for _ in range(20)]
    assert [code(a) for a in answers] == ["UNAUTHENTICATED"] * (free + 1) + ["RATE_LIMITED"] * (19 - free)
    refused = answers[-1]["errors"][0]
    assert refused["extensions"]["retryAfter"] == 1 and "retry in 1 s" in refused["message"]
    # Even the right secret waits; another key from this address does not.
    assert code(await login(alice.api_key, alice.api_secret)) == "RATE_LIMITED"
    bob = await new_client(db, "Bob")
    assert (await login(bob.api_key, bob.api_secret))["data"]["login"]
    # After the wait, one more failure doubles it: 2 s, then 4 s.
    clock.now += 1
    assert code(await login(alice.api_key, "cs_wrong")) == "UNAUTHENTICATED"
    assert (await login(alice.api_key, "cs_wrong"))["errors"][0]["extensions"]["retryAfter"] == 2
    clock.now += 2
    assert code(await login(alice.api_key, "cs_wrong")) == "UNAUTHENTICATED"
    assert (await login(alice.api_key, "cs_wrong"))["errors"][0]["extensions"]["retryAfter"] == 4
    # Once the wait is over, the right secret logs in and clears the key's count.
    clock.now += 4
    assert (await login(alice.api_key, alice.api_secret))["data"]["login"]
    assert code(await login(alice.api_key, "cs_wrong")) == "UNAUTHENTICATED"
    assert code(await login(alice.api_key, "cs_wrong")) == "UNAUTHENTICATED"
    # Throttled attempts are audited with their code.
    async with db.engine.connect() as conn:
        logged = (await conn.execute(text("SELECT count(*) FROM audit_log WHERE error_code = 'RATE_LIMITED'"))).scalar()
    assert logged == 19 - free + 3


async def test_wrong_logins_are_throttled_per_address(
    db: App, gql: GraphQLClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    Clock(monkeypatch)
    free = db.settings.login_failures_per_ip
    # A different unknown key each time: only the address's count can stop them.
    answers = [(await gql.post(LOGIN, {"k": f"ck_guess{i}", "s": "cs_x"})).json() for i in range(free + 5)]
    assert [code(a) for a in answers] == ["UNAUTHENTICATED"] * (free + 1) + ["RATE_LIMITED"] * 4
    # A client that logs in from the same address is held too: the address is under attack.
    alice = await new_client(db, "Alice")
    assert code((await gql.post(LOGIN, {"k": alice.api_key, "s": alice.api_secret})).json()) == "RATE_LIMITED"


async def test_the_waits_grow_to_the_maximum_and_are_forgotten(db: App) -> None:
    throttle = LoginThrottle(db)
    free, longest = db.settings.login_failures_per_key, db.settings.login_max_delay_seconds
    now = 2_000_000.0
    waits = []
    for _ in range(free + 12):
        wait = await throttle.attempt("ck_target", f"10.0.0.{len(waits)}", now=now)  # many addresses
        assert wait is None  # each attempt comes after the previous wait
        ttl = await db.redis.ttl(throttle._keys("ck_target", None)[0])
        key = await db.redis.hgetall(throttle._keys("ck_target", None)[0])
        waits.append(float(key.get(b"until", now)) - now)
        now += waits[-1]
    assert waits[: free + 1] == [0.0] * free + [1.0]
    assert waits[free : free + 9] == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert waits[-1] == longest and 0 < ttl <= login_throttle.FORGET_SECONDS


async def test_a_logout_ends_the_access_tokens_of_its_session(db: App, gql: GraphQLClient) -> None:
    alice = await new_client(db, "Alice")
    first = (await gql.post(LOGIN, {"k": alice.api_key, "s": alice.api_secret})).json()["data"]["login"]
    other = (await gql.post(LOGIN, {"k": alice.api_key, "s": alice.api_secret})).json()["data"]["login"]
    async with servers.api_server(db) as host:
        url = f"ws://{host}/graphql"
        open_ws = await open_socket(host, {"Authorization": f"Bearer {first['accessToken']}"})
        other_ws = await open_socket(host, {"Authorization": f"Bearer {other['accessToken']}"})
        assert (await gql.post(LOGOUT, {"t": first["refreshToken"]}, token=first["accessToken"])).json()["data"]
        # The finding: the access token stayed valid until its expiry. Now: refused at once ...
        body = (await gql.post(ME, token=first["accessToken"])).json()
        assert code(body) == "UNAUTHENTICATED" and body["errors"][0]["message"] == SESSION_ENDED
        # ... by a new WebSocket, and the session's open one is closed (4403: the client refreshes).
        async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {"token": first["accessToken"]}}))
            assert await closed_with(ws) == 4403 and ws.close_reason == SESSION_ENDED
        assert await closed_with(open_ws) == 4403
        # The other session of the same client goes on, over HTTP and WebSocket.
        assert (await gql.post(ME, token=other["accessToken"])).json()["data"]["me"]["id"] == str(alice.client_id)
        await other_ws.send(subscribe("me", ME))
        assert (await answer(other_ws, "me"))["payload"]["data"]["me"]["id"] == str(alice.client_id)
        await other_ws.close()
    revoked = [k async for k in db.redis.scan_iter(match=f"{db.settings.redis_prefix}:revoked-session:*")]
    assert len(revoked) == 1
    assert 0 < await db.redis.ttl(revoked[0]) <= db.settings.access_token_minutes * 60 + 60


async def test_a_reused_refresh_token_ends_the_access_tokens_too(db: App, gql: GraphQLClient) -> None:
    alice = await new_client(db, "Alice")
    first = (await gql.post(LOGIN, {"k": alice.api_key, "s": alice.api_secret})).json()["data"]["login"]
    second = (await gql.post(REFRESH, {"t": first["refreshToken"]})).json()["data"]["refreshToken"]
    assert (await gql.post(ME, token=second["accessToken"])).json()["data"]["me"]
    # The first refresh token presented again (it leaked): every token of the session ends now,
    # the thief's and the owner's access tokens included.
    assert code((await gql.post(REFRESH, {"t": first["refreshToken"]})).json()) == "UNAUTHENTICATED"
    for token in (first["accessToken"], second["accessToken"]):
        assert code((await gql.post(ME, token=token)).json()) == "UNAUTHENTICATED"


async def test_logins_over_websocket_are_throttled_too(db: App, monkeypatch: pytest.MonkeyPatch) -> None:
    Clock(monkeypatch)
    free = db.settings.login_failures_per_key
    login = 'mutation { login(apiKey: "ck_someone", apiSecret: "cs_wrong") { accessToken } }'
    async with servers.api_server(db) as host:
        ws = await open_socket(host)
        results = []
        for i in range(free + 3):
            await ws.send(subscribe(f"l{i}", login))
            message = await answer(ws, f"l{i}")
            results.append(message["payload"]["errors"][0]["extensions"]["code"])
        assert results == ["UNAUTHENTICATED"] * (free + 1) + ["RATE_LIMITED"] * 2
        await ws.close()
