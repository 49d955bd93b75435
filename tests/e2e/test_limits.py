"""Abuse limits: deep, wide and alias-bomb documents are refused before anything runs; request body
size; per-client rate limiting in Redis; introspection and GraphiQL off in production."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import text

from domain import services
from domain.adapters.bootstrap import App
from domain.adapters.seed import seed_demo
from gql_api.app import create_app
from gql_api.auth import access_tokens
from gql_api.hardening import RATE_WINDOW_SECONDS, RateLimit
from gql_api.schema import MAX_ALIASES, MAX_DEPTH, MAX_TOKENS
from tests.e2e.conftest import GraphQLClient
from tests.e2e.test_errors import snapshot


def with_settings(app: App, **changes: Any) -> App:
    return dataclasses.replace(app, settings=app.settings.model_copy(update=changes))


@pytest.fixture
async def demo(db: App, gql: GraphQLClient) -> GraphQLClient:
    await seed_demo(db.uow, db.exchange)
    await gql.login()
    return gql


async def audit_rows(app: App) -> int:
    async with app.engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM audit_log WHERE mutation <> 'login'"))).scalar_one())


def nested(levels: int) -> str:
    """`strategy { positions { strategy { … { id } } } }`: two levels per round."""
    inner = "id"
    for _ in range(levels // 2):
        inner = f"strategy {{ positions {{ {inner} }} }}"
    return inner


BOMBS = {
    "deep": f'mutation {{ buy(strategyId: "1", quoteAmount: "100") {{ {nested(MAX_DEPTH + 2)} }} }}',
    "alias bomb": "mutation { "
    + " ".join(f'a{i}: allocateCapital(strategyId: "1", amount: "1") {{ id }}' for i in range(MAX_ALIASES + 1))
    + " }",
    "alias bomb in fragments": "mutation { ...A } fragment A on Mutation { "
    + " ".join(f'a{i}: allocateCapital(strategyId: "1", amount: "1") {{ id }}' for i in range(MAX_ALIASES + 1))
    + " }",
    "wide": 'mutation { allocateCapital(strategyId: "1", amount: "1") { ' + "id " * MAX_TOKENS + "} }",
    "wide query": "{ symbols { " + "symbol " * MAX_TOKENS + "} }",
}


@pytest.mark.parametrize("name", list(BOMBS))
async def test_abusive_documents_are_refused_before_execution(
    db: App, demo: GraphQLClient, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    ran: list[str] = []

    def trap(service: str) -> Any:
        async def called(*args: Any, **kwargs: Any) -> None:
            ran.append(service)
            raise AssertionError(f"{service} ran")

        return called

    for service in ("buy", "allocate_capital"):
        monkeypatch.setattr(services, service, trap(service))
    before = await snapshot(db)
    body = await demo.execute(BOMBS[name])
    assert body["data"] is None
    assert [e["extensions"]["code"] for e in body["errors"]][:1] == ["GRAPHQL_VALIDATION_FAILED"], body
    assert ran == []
    assert await snapshot(db) == before and await audit_rows(db) == 0


async def test_the_limits_leave_room_for_real_queries(demo: GraphQLClient) -> None:
    depth_ok = f'{{ position(id: "1") {{ {nested(MAX_DEPTH - 2)} }} }}'
    error = await demo.error(depth_ok)  # valid, and run: there is no position 1
    assert error["extensions"]["code"] == "NOT_FOUND"
    aliases_ok = "{ " + " ".join(f"s{i}: symbols {{ symbol }}" for i in range(MAX_ALIASES)) + " }"
    assert "errors" not in await demo.execute(aliases_ok)


async def test_a_page_size_over_the_maximum_is_refused(demo: GraphQLClient) -> None:
    error = await demo.error("{ positions(first: 101) { nodes { id } } }")
    assert error["extensions"]["code"] == "VALIDATION"


async def test_a_request_body_over_the_limit_is_refused_with_413(db: App, http: httpx.AsyncClient) -> None:
    limit = db.settings.max_body_bytes
    padding = " " * limit
    response = await http.post("/graphql", json={"query": "{ symbols { symbol } }" + padding})
    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"]["code"] == "REQUEST_TOO_LARGE"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while it streams in
        yield b'{"query": "{ symbols { symbol } }'
        for _ in range(limit // 10_000 + 1):
            yield b" " * 10_000
        yield b'"}'

    streamed = await http.post("/graphql", content=chunks(), headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413
    assert streamed.json()["errors"][0]["extensions"]["code"] == "REQUEST_TOO_LARGE"
    lying = await http.post(
        "/graphql", content=b"{}", headers={"Content-Type": "application/json", "Content-Length": "abc"}
    )
    assert lying.status_code in (400, 413)
    superscript = await http.post(  # "²" is a digit to str.isdigit(), not to int()
        "/graphql", content=b"{}", headers={"Content-Type": "application/json", "Content-Length": "²".encode("latin-1")}
    )
    assert superscript.status_code in (400, 413)
    small = await http.post("/graphql", json={"query": "{ symbols { symbol } }" + " " * (limit // 2)})
    assert small.status_code == 200 and "errors" not in small.json()


async def _until_limited(http: httpx.AsyncClient, headers: dict[str, str], limit: int) -> list[httpx.Response]:
    """Requests until one is refused (at most two windows' worth: the test may straddle a minute)."""
    responses = []
    for _ in range(2 * limit + 1):
        response = await http.post("/graphql", json={"query": "{ symbols { symbol } }"}, headers=headers)
        responses.append(response)
        if response.status_code == 429:
            break
    return responses


async def test_requests_over_the_rate_limit_are_refused_per_client(db: App) -> None:
    limit = 3
    limited = with_settings(db, rate_limit_per_minute=limit)
    tokens = access_tokens(db.settings)
    a, b = (f"Bearer {tokens.issue(client)[0]}" for client in (1, 2))
    transport = httpx.ASGITransport(app=create_app(app=limited))
    async with httpx.AsyncClient(transport=transport, base_url="http://criptoren.test") as http:
        responses = await _until_limited(http, {"Authorization": a}, limit)
        refused = responses[-1]
        assert refused.status_code == 429 and len(responses) > limit
        assert refused.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        retry_after = int(refused.headers["Retry-After"])
        assert 1 <= retry_after <= RATE_WINDOW_SECONDS
        assert refused.json()["errors"][0]["extensions"]["retryAfter"] == retry_after
        # Another client has a count of its own; without a (valid) token, the count is per IP.
        other = await http.post("/graphql", json={"query": "{ symbols { symbol } }"}, headers={"Authorization": b})
        assert other.status_code == 200
        anonymous = await _until_limited(http, {"Authorization": "Bearer forged"}, limit)
        assert anonymous[-1].status_code == 429
        # /healthz is not counted.
        assert (await http.get("/healthz")).status_code == 200
    keys = [k async for k in db.redis.scan_iter(match=f"{db.settings.redis_prefix}:ratelimit:*")]
    assert {k.decode().split(":")[-2] for k in keys} >= {"1", "2"}  # client:1, client:2 (and ip:…)
    for key in keys:  # every counter expires by itself
        assert 0 < await db.redis.ttl(key) <= 2 * RATE_WINDOW_SECONDS


async def test_the_rate_limit_counts_in_fixed_windows(db: App) -> None:
    limiter = RateLimit(lambda *a: None, with_settings(db, rate_limit_per_minute=2))  # type: ignore[arg-type, return-value]
    start = 1_000_040.0  # 20 s into a window (1,000,020 is a multiple of 60)
    assert await limiter.retry_after("client:9", now=start) is None
    assert await limiter.retry_after("client:9", now=start + 1) is None
    assert await limiter.retry_after("client:9", now=start + 2) == 38
    assert await limiter.retry_after("client:9", now=start + 40) is None  # the next window


async def test_without_redis_the_api_stays_up(db: App) -> None:
    unreachable = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    broken = dataclasses.replace(with_settings(db, rate_limit_per_minute=1), redis=unreachable)
    transport = httpx.ASGITransport(app=create_app(app=broken))
    async with httpx.AsyncClient(transport=transport, base_url="http://criptoren.test") as http:
        for _ in range(3):
            response = await http.post("/graphql", json={"query": "{ symbols { symbol } }"})
            assert response.status_code == 200
    await unreachable.aclose()


INTROSPECTION = ["{ __schema { types { name } } }", '{ __type(name: "Query") { name } }']


async def test_introspection_and_graphiql_are_off_in_production(db: App, http: httpx.AsyncClient) -> None:
    prod = with_settings(db, criptoren_env="prod")
    transport = httpx.ASGITransport(app=create_app(app=prod))
    async with httpx.AsyncClient(transport=transport, base_url="http://criptoren.test") as prod_http:
        for query in INTROSPECTION:
            body = (await prod_http.post("/graphql", json={"query": query})).json()
            assert body["data"] is None
            assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
            assert "introspection" in body["errors"][0]["message"].lower()
        typename = (await prod_http.post("/graphql", json={"query": "{ __typename }"})).json()
        assert typename == {"data": {"__typename": "Query"}}
        assert (await prod_http.get("/graphql", headers={"Accept": "text/html"})).status_code == 404
    # In development both are on.
    for query in INTROSPECTION:
        assert "errors" not in (await http.post("/graphql", json={"query": query})).json()
    page = await http.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200 and "graphiql" in page.text.lower()


async def test_text_postgresql_cannot_store_is_refused_before_execution(db: App, demo: GraphQLClient) -> None:
    before = await snapshot(db)
    for query, variables in (
        ('{ currentPrice(symbol: "BTC\\u0000") { price } }', {}),
        ('mutation($n: String) { allocateCapital(strategyId: "1", amount: "1", note: $n) { id } }', {"n": "\ud800"}),
        ('mutation($n: String) { allocateCapital(strategyId: "1", amount: "1", note: $n) { id } }', {"n": "a\x00"}),
    ):
        payload = json.dumps({"query": query, "variables": variables})  # ASCII: \ud800 escaped, as a browser may
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {demo.access_token}"}
        body = (await demo.http.post("/graphql", content=payload, headers=headers)).json()
        assert [e["extensions"]["code"] for e in body["errors"]] == ["VALIDATION"], body
    assert await snapshot(db) == before and await audit_rows(db) == 0


async def test_unreadable_bodies_are_a_400(http: httpx.AsyncClient) -> None:
    for body in (b"\x80", b"\x00\x00\x00\x00\x00", b"10", b'"query"', b"null"):
        response = await http.post("/graphql", content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 400, (body, response.text)
    subscription = await http.post(
        "/graphql", json={"query": 'subscription { prices(symbols: ["BTCUSDT"]) { price } }'}
    )
    assert subscription.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    empty = await http.post("/graphql", json={"query": "{ symbols { } }"})
    assert empty.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
