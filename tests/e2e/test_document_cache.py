"""Each distinct document is parsed and checked once (gql_api/documents.py), and the cache cannot be
used to get past a limit: a document over the depth, alias or token limit is refused the first and
the hundredth time; a cached document still meets the rules of each request (introspection in
production, subscriptions over HTTP); string literals and variables are checked on every request."""

from __future__ import annotations

import dataclasses
import json
import uuid
from typing import Any

import httpx
import pytest

from domain.adapters.bootstrap import App
from gql_api import documents
from gql_api.app import create_app
from gql_api.documents import DocumentCache
from gql_api.hardening import DOCUMENTS, MAX_ALIASES, MAX_DEPTH, MAX_TOKENS
from tests.e2e import servers
from tests.e2e.test_websocket_protocol import open_socket

pytestmark = pytest.mark.usefixtures("db")


def fresh(query: str) -> str:
    """The same document under a text no earlier test sent (a comment differs): not cached yet."""
    return f"{query} # {uuid.uuid4().hex}"


def nested(levels: int) -> str:
    inner = "id"
    for _ in range(levels // 2):
        inner = f"strategy {{ positions {{ {inner} }} }}"
    return inner


OVER_THE_LIMITS = {
    "depth": f'{{ position(id: "1") {{ {nested(MAX_DEPTH + 2)} }} }}',
    "aliases": "{ " + " ".join(f"s{i}: symbols {{ symbol }}" for i in range(MAX_ALIASES + 1)) + " }",
    "tokens": "{ symbols { " + "symbol " * MAX_TOKENS + "} }",
}


async def post(http: httpx.AsyncClient, query: str, **variables: Any) -> dict[str, Any]:
    response = await http.post("/graphql", json={"query": query, "variables": variables})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize("limit", list(OVER_THE_LIMITS))
async def test_a_document_over_a_limit_is_refused_the_first_and_the_hundredth_time(
    http: httpx.AsyncClient, limit: str
) -> None:
    query = fresh(OVER_THE_LIMITS[limit])
    answers = [await post(http, query) for _ in range(100)]
    first = answers[0]
    assert first["data"] is None and first["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert all(a == first for a in answers), "every refusal is the first one"
    if limit == "tokens":
        assert "tokens" in first["errors"][0]["message"]
        assert query not in DOCUMENTS  # it never parsed: nothing to keep
    else:
        assert query in DOCUMENTS  # refused from the cache the 99 later times: still refused


async def test_each_distinct_document_is_parsed_and_validated_once(
    http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"parse": 0, "validate": 0}

    def counting(name: str, function: Any) -> Any:
        def counted(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return function(*args, **kwargs)

        return counted

    monkeypatch.setattr(documents, "parse", counting("parse", documents.parse))
    monkeypatch.setattr(documents, "validate_document", counting("validate", documents.validate_document))
    query = fresh("{ symbols { symbol tickSize } }")
    for _ in range(20):
        body = await post(http, query)
        assert "errors" not in body and {"symbol": "BTCUSDT", "tickSize": "0.01"} in body["data"]["symbols"]
    assert calls == {"parse": 1, "validate": 1}
    await post(http, fresh("{ symbols { symbol tickSize } }"))  # another text: checked in full
    assert calls == {"parse": 2, "validate": 2}


async def test_a_cached_document_meets_the_rules_of_each_request(db: App, http: httpx.AsyncClient) -> None:
    introspection = fresh("{ __schema { queryType { name } } }")
    assert (await post(http, introspection))["data"] == {"__schema": {"queryType": {"name": "Query"}}}
    assert introspection in DOCUMENTS
    prod = dataclasses.replace(db, settings=db.settings.model_copy(update={"criptoren_env": "prod"}))
    transport = httpx.ASGITransport(app=create_app(app=prod))
    async with httpx.AsyncClient(transport=transport, base_url="http://criptoren.test") as prod_http:
        for _ in range(3):
            refused = await post(prod_http, introspection)
            assert refused["data"] is None and "introspection" in refused["errors"][0]["message"].lower()
    assert "errors" not in await post(http, introspection)  # and allowed again where it is

    # A subscription checked (and cached) over WebSocket is still refused over HTTP.
    subscription = fresh('subscription { prices(symbols: ["BTCUSDT"]) { price } }')
    async with servers.api_server(db) as host:
        ws = await open_socket(host)
        await ws.send(json.dumps({"id": "s", "type": "subscribe", "payload": {"query": subscription}}))
        await ws.send(json.dumps({"type": "ping"}))  # answered once the subscription has started
        assert json.loads(await ws.recv()) == {"type": "pong"}
        await ws.close()
    checked = DOCUMENTS.check(subscription)
    assert checked.validations() == [[]]  # validated once, under the socket's rules: valid
    for _ in range(3):
        body = await post(http, subscription)
        assert body["data"] is None and body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
        assert "WebSocket" in body["errors"][0]["message"]


async def test_string_literals_and_variables_are_checked_on_every_request(http: httpx.AsyncClient) -> None:
    literal = fresh('{ priceHistory(symbol: "BTC\\u0000USDT", limit: 1) { close } }')
    for _ in range(3):
        body = await post(http, literal)
        assert body["data"] is None and body["errors"][0]["extensions"]["code"] == "VALIDATION"
    with_variable = fresh("query($s: String!) { priceHistory(symbol: $s, limit: 1) { close } }")
    for _ in range(3):
        assert (await post(http, with_variable, s="BTCUSDT"))["data"] == {"priceHistory": []}
        refused = await post(http, with_variable, s="x" * 10_001)
        assert refused["data"] is None and refused["errors"][0]["extensions"]["code"] == "VALIDATION"


def test_the_cache_is_bounded() -> None:
    cache = DocumentCache(MAX_TOKENS, size=2, max_chars=100)
    a, b, c = "{ a }", "{ b }", "{ c }"
    assert cache.check(a) is cache.check(a)
    cache.check(b)
    cache.check(a)  # a is used again: b is now the oldest
    cache.check(c)
    assert a in cache and c in cache and b not in cache and len(cache) == 2
    long = "{ " + "x " * 100 + "}"
    assert cache.check(long).document.definitions  # checked, and answered
    assert long not in cache and len(cache) == 2
