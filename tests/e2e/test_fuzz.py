"""A bounded fuzzing run against the app (over HTTP, through the ASGI transport): documents generated
from the schema itself (every root field, nested selections, aliases, random and wrong-typed
arguments, variables of any JSON type), raw junk, and junk headers — as a logged-in client, as
nobody, and with a forged token. No answer may be a 5xx or an INTERNAL error, and every error must
carry a code."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import httpx
from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    get_named_type,
    is_leaf_type,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.adapters.bootstrap import App
from domain.adapters.seed import seed_demo
from gql_api.schema import schema
from tests.e2e.conftest import GraphQLClient

GRAPHQL = schema._schema
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "250"))  # raise it for a longer run
IDS = st.sampled_from(["1", "2", "3", "0", "-1", "2147483648", "abc", "", "1.5", "99999999999999999999"])
DECIMALS = st.one_of(
    st.sampled_from(["1", "0", "-5", "0.00000001", "100", "2450", "1e400", "-1e-400", "NaN", "Infinity", "1e", ""]),
    st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=-(10**20), max_value=10**20).map(str),
)
STRINGS = st.one_of(
    st.sampled_from(["BTCUSDT", "ETHUSDT", "btcusdt", "4h", "1m", "x" * 300, "'; DROP TABLE clients; --", "\u0000"]),
    st.text(max_size=30),
)


def literal(value: Any) -> str:
    """A GraphQL literal for a Python value (strings JSON-quoted, which GraphQL accepts)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    return json.dumps(value)


def value_of(gtype: GraphQLInputType, depth: int = 0) -> st.SearchStrategy[Any]:
    """A value for an input type: mostly well-typed, sometimes null or of another type."""
    if isinstance(gtype, GraphQLNonNull):
        inner = value_of(gtype.of_type, depth)
        return st.one_of(inner, inner, inner, st.none()) if depth == 0 else inner
    if isinstance(gtype, GraphQLList):
        return st.lists(value_of(gtype.of_type, depth + 1), max_size=3)
    if isinstance(gtype, GraphQLEnumType):
        return st.sampled_from(list(gtype.values))
    if isinstance(gtype, GraphQLInputObjectType):
        fields = {name: value_of(f.type, depth + 1) for name, f in gtype.fields.items()}
        return st.fixed_dictionaries(
            {n: s for n, s in fields.items() if isinstance(gtype.fields[n].type, GraphQLNonNull)},
            optional={n: s for n, s in fields.items() if not isinstance(gtype.fields[n].type, GraphQLNonNull)},
        )
    assert isinstance(gtype, GraphQLScalarType)
    well_typed = {
        "Int": st.one_of(st.integers(-5, 200), st.integers(-(2**31), 2**31 - 1)),
        "Boolean": st.booleans(),
        "ID": IDS,
        "String": STRINGS,
        "Decimal": DECIMALS,
        "DateTime": st.sampled_from(["2026-01-01T00:00:00Z", "yesterday"]),
    }.get(gtype.name, STRINGS)
    junk = st.one_of(st.integers(), st.booleans(), STRINGS, st.floats(allow_nan=False, allow_infinity=False))
    return st.one_of(well_typed, well_typed, well_typed, junk)


def arguments(field: GraphQLField) -> st.SearchStrategy[str]:
    required = {n: value_of(a.type) for n, a in field.args.items() if isinstance(a.type, GraphQLNonNull)}
    optional = {n: value_of(a.type) for n, a in field.args.items() if not isinstance(a.type, GraphQLNonNull)}
    chosen = st.fixed_dictionaries(required, optional=optional)
    return chosen.map(lambda args: "(" + ", ".join(f"{k}: {literal(v)}" for k, v in args.items()) + ")" if args else "")


def selection(gtype: Any, depth: int) -> st.SearchStrategy[str]:
    named = get_named_type(gtype)
    if is_leaf_type(named):
        return st.just("")
    if depth <= 0 or not isinstance(named, GraphQLObjectType):
        return st.just("{ __typename }")
    fields = sorted(named.fields.items())

    def one(item: tuple[str, GraphQLField]) -> st.SearchStrategy[str]:
        name, field = item
        alias = st.one_of(st.just(""), st.sampled_from(["a: ", "b: ", "x1: "]))
        return st.tuples(alias, arguments(field), selection(field.type, depth - 1)).map(
            lambda parts: f"{parts[0]}{name}{parts[1]} {parts[2]}"
        )

    return st.lists(st.sampled_from(fields).flatmap(one), min_size=1, max_size=3).map(
        lambda parts: "{ " + " ".join(parts) + " }"
    )


def operation(kind: str) -> st.SearchStrategy[str]:
    root = GRAPHQL.query_type if kind == "query" else GRAPHQL.mutation_type
    assert root is not None
    return selection(root, 4).map(lambda body: f"{kind} {body}")


DOCUMENTS = st.one_of(
    operation("query"),
    operation("query"),
    operation("mutation"),
    operation("mutation"),
    st.text(max_size=200),  # junk
    st.sampled_from(["{", "}", "query {", "{ __schema { types { name } } }", "subscription { fills { id } }", "#"]),
)
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), STRINGS),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(STRINGS, inner, max_size=3)),
    max_leaves=6,
)
WITH_VARIABLES = st.tuples(
    st.sampled_from(
        [
            "query($x: ID!) { strategy(id: $x) { id } }",
            "query($x: Int!) { positions(first: $x) { nodes { id } } }",
            "mutation($x: Decimal!) { allocateCapital(strategyId: 1, amount: $x) { id } }",
            "mutation($x: CreateStrategyInput!) { createStrategy(input: $x) { id } }",
            "mutation($x: String!) { refreshToken(token: $x) { accessToken } }",
            "query($x: PositionStatus) { positions(status: $x) { nodes { id } } }",
        ]
    ),
    JSON_VALUES,
)


async def test_fuzzing_finds_no_server_error(db: App, gql: GraphQLClient) -> None:
    await seed_demo(db.uow, db.exchange)
    await gql.login()
    loop = asyncio.get_running_loop()
    identities = {
        "client": {"Authorization": f"Bearer {gql.access_token}"},
        "nobody": {},
        "forged": {"Authorization": "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0."},
        "junk": {"Authorization": "\u00e9\u00e9 x y z".encode()},
    }
    seen = {"requests": 0, "errors": 0}

    def post(**kwargs: Any) -> httpx.Response:
        # Hypothesis runs in a worker thread; the app runs on the test's event loop.
        future = asyncio.run_coroutine_threadsafe(gql.http.post("/graphql", **kwargs), loop)
        return future.result(timeout=30)

    def check(response: httpx.Response) -> None:
        seen["requests"] += 1
        assert response.status_code < 500, response.text
        if response.headers.get("content-type", "").startswith("application/json"):
            body = response.json()
            for error in body.get("errors") or []:
                seen["errors"] += 1
                assert "code" in error.get("extensions", {}), body
                assert error["extensions"]["code"] != "INTERNAL", body

    common = settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )

    @common
    @given(document=DOCUMENTS, who=st.sampled_from(sorted(identities)))
    def documents(document: str, who: str) -> None:
        check(post(json={"query": document}, headers=identities[who]))

    @settings(common, max_examples=EXAMPLES // 2)
    @given(case=WITH_VARIABLES, who=st.sampled_from(sorted(identities)))
    def variables(case: tuple[str, Any], who: str) -> None:
        query, value = case
        check(post(json={"query": query, "variables": {"x": value}}, headers=identities[who]))

    @settings(common, max_examples=EXAMPLES // 4)
    @given(body=st.one_of(JSON_VALUES.map(json.dumps), st.binary(max_size=200).map(bytes.hex), st.binary(max_size=64)))
    def raw_bodies(body: str | bytes) -> None:
        check(post(content=body, headers={"Content-Type": "application/json", **identities["client"]}))

    for run in (documents, variables, raw_bodies):
        await asyncio.to_thread(run)
    assert seen["requests"] >= EXAMPLES and seen["errors"] > 0
