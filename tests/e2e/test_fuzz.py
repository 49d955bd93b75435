"""A bounded fuzzing run against the app (over HTTP, through the ASGI transport): documents generated
from the schema itself (every root field, nested selections, aliases, random and wrong-typed
arguments, variables of any JSON type), raw junk, and junk headers — as a logged-in client, as
nobody, and with a forged token. No answer may be a 5xx or an INTERNAL error, and every error must
carry a code."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
from dataclasses import dataclass
from decimal import Decimal, localcontext
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
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from domain import commands as cmds
from domain import services
from domain.adapters.bootstrap import App
from domain.adapters.seed import seed_demo
from domain.channel import Channel
from gql_api.schema import schema
from gql_api.types import encode_cursor
from tests.e2e.conftest import GraphQLClient
from tests.e2e.test_errors import snapshot

GRAPHQL = schema._schema
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "250"))  # raise it for a longer run
# Python's int() and Decimal() read other scripts' digits and underscores: the API must not.
ARABIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
UNICODE_DIGITS = st.one_of(
    st.sampled_from(["١٢٣", "１２３", "1_000", "٣.٥", "1e١", "²", "1\u00a0000", "１.５"]),
    st.integers(0, 10**6).map(str).flatmap(lambda n: st.sampled_from([n.translate(ARABIC), n.translate(FULL_WIDTH)])),
)
IDS = st.one_of(
    st.sampled_from(["1", "2", "3", "0", "-1", "2147483648", "abc", "", "1.5", "99999999999999999999"]),
    st.sampled_from(["01", "+1", "1_0", " 1", "2147483647", "9223372036854775808"]),
    UNICODE_DIGITS,
)


def cursor_of(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


# `after` cursors: ours, and ones encoding ids past the id columns (2^31, 2^63, 1e20), in other
# digits, or not cursors at all.
CURSORS = st.one_of(
    st.integers(1, 20).map(encode_cursor),
    st.sampled_from([2**31 - 1, 2**31, 2**63, 10**20, 0, -1]).map(encode_cursor),
    st.integers(-(2**70), 2**70).map(encode_cursor),
    UNICODE_DIGITS.map(lambda d: cursor_of(f"cursor:{d}")),
    st.text(max_size=12).map(cursor_of),
)


def _scaled(mantissa: int, places: int) -> str:
    return f"{Decimal(mantissa).scaleb(-places):f}"


# Around each column's last decimal (percent: 4, money: 18), and exponents far outside them.
PRECISION_EDGES = st.one_of(
    st.builds(_scaled, st.integers(-(10**12), 10**12), st.sampled_from([0, 2, 3, 4, 5, 8, 17, 18, 19, 20, 24])),
    st.builds(lambda m, e: f"{m}e{e}", st.integers(-999, 999), st.integers(-60, 60)),
    st.sampled_from(
        ["1e-18", "1e-19", "0.0000000000000000015", "99.9999", "99.99999", "999.9999", "999.99999", "100.0001",
         "0.0001", "0.00001", "1e15", "1000000000000000.000000000000000001", "1e20", "1e25", "-0", "0e-30",
         "9999999999.999999999999999999", "12345678901.123456789012345678", "1e999999", "1e-999999"]
    ),
)  # fmt: skip
DECIMALS = st.one_of(
    st.sampled_from(["1", "0", "-5", "0.00000001", "100", "2450", "1e400", "-1e-400", "NaN", "Infinity", "1e", ""]),
    st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=-(10**20), max_value=10**20).map(str),
    PRECISION_EDGES,
    UNICODE_DIGITS,
)
STRINGS = st.one_of(
    st.sampled_from(["BTCUSDT", "ETHUSDT", "btcusdt", "4h", "1m", "x" * 300, "'; DROP TABLE clients; --", "\u0000"]),
    st.text(max_size=30),
    CURSORS,
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


# ---------------------------------------------------------------- what is accepted is what is stored

ASCII_DECIMAL = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
PLAIN = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]*[1-9])?")


@dataclass(frozen=True)
class Column:
    """An oracle written apart from the API's checks: the range of a parameter and the decimals
    of its NUMERIC column; the domain's arithmetic keeps 28 significant digits."""

    places: int
    low: Decimal
    high: Decimal
    low_included: bool = False
    high_included: bool = True

    def keeps(self, text: str) -> bool:
        if not ASCII_DECIMAL.fullmatch(text):
            return False
        value = Decimal(text)
        above = value >= self.low if self.low_included else value > self.low
        below = value <= self.high if self.high_included else value < self.high
        if not (above and below):
            return False
        with localcontext() as exact:
            exact.prec = 100
            return (
                value.quantize(Decimal(1).scaleb(-self.places)) == value
                and len(value.normalize().as_tuple().digits) <= 28
            )


AMOUNT = Column(18, Decimal(0), Decimal("1e15"))
COLUMNS = {
    "basePrice": ("base_price", AMOUNT),
    "topPrice": ("top_price", AMOUNT),
    "capitalPercentage": ("capital_percentage", Column(4, Decimal(0), Decimal(100))),
    "buyThreshold": ("buy_threshold", Column(4, Decimal(0), Decimal(100), high_included=False)),
    "sellThreshold": ("sell_threshold", Column(4, Decimal(0), Decimal(100), True, False)),
    "minProfit": ("min_profit", Column(4, Decimal(0), Decimal(1000), True, False)),
}


def decimal_text(low: int, high: int, max_places: int) -> st.SearchStrategy[str]:
    """Numbers in [low, high] with 0 to `max_places` decimals (trailing zeros included)."""
    return st.integers(0, max_places).flatmap(
        lambda places: st.integers(low * 10**places, high * 10**places).map(lambda m: _scaled(m, places))
    )


def money(low: int, high: int) -> st.SearchStrategy[str]:
    return st.one_of(*[decimal_text(low, high, 21)] * 3, PRECISION_EDGES, UNICODE_DIGITS)


def percent(low: int, high: int) -> st.SearchStrategy[str]:
    return st.one_of(*[decimal_text(low, high, 6)] * 3, PRECISION_EDGES, UNICODE_DIGITS)


CHANNEL = {
    "capitalPercentage": percent(0, 100),
    "buyThreshold": percent(0, 5),
    "sellThreshold": percent(0, 5),
    "minProfit": percent(0, 3),
}
MUTATIONS = st.one_of(
    st.tuples(
        st.just("create"),
        st.fixed_dictionaries({"basePrice": money(1000, 2200), "topPrice": money(2700, 9000)}, optional=CHANNEL),
    ),
    st.tuples(
        st.just("update"),
        st.fixed_dictionaries({}, optional={"basePrice": money(1000, 2200), "topPrice": money(2700, 9000), **CHANNEL}),
    ),
    st.tuples(st.just("allocate"), money(0, 10**6)),
    st.tuples(st.just("withdraw"), money(0, 1)),
    st.tuples(st.just("schedule"), percent(0, 1000)),
    st.tuples(st.just("quote"), money(5, 300)),
    st.tuples(st.just("quantity"), money(0, 1)),
    st.tuples(st.just("cursor"), st.one_of(st.integers(1, 50), st.integers(-(2**70), 2**70))),
    st.tuples(st.just("foreign id"), st.sampled_from([ARABIC, FULL_WIDTH])),
)
ECHO = "id basePrice topPrice capitalPercentage buyThreshold sellThreshold minProfit"
MUTATION_OF = {
    "create": f"mutation($i: CreateStrategyInput!) {{ createStrategy(input: $i) {{ {ECHO} }} }}",
    "update": f"mutation($s: ID!, $i: UpdateStrategyInput!) {{ updateStrategy(id: $s, input: $i) {{ {ECHO} }} }}",
    "allocate": "mutation($s: ID!, $a: Decimal!) { allocateCapital(strategyId: $s, amount: $a) { id amount } }",
    "withdraw": "mutation($s: ID!, $a: Decimal!) { withdrawProfit(strategyId: $s, amount: $a) { id amount } }",
    "schedule": "mutation($p: ID!, $a: Decimal!) { scheduleSell(positionId: $p, minProfit: $a) { id minProfit } }",
    "quote": "mutation($s: ID!, $a: Decimal!) { buy(strategyId: $s, quoteAmount: $a) { id } }",
    "quantity": "mutation($s: ID!, $a: Decimal!) { buy(strategyId: $s, quantity: $a) { id } }",
    "cursor": "query($a: String!) { positions(first: 2, after: $a) { nodes { id } } }",
    "foreign id": 'mutation($s: ID!) { allocateCapital(strategyId: $s, amount: "1") { id } }',
}
# Where an accepted value is stored: (table, column, the field echoing it back), and its oracle.
STORED_IN = {
    "allocate": ("capital_allocations", "amount", "amount", AMOUNT),
    "withdraw": ("capital_allocations", "amount", "amount", AMOUNT),  # stored negative
    "schedule": ("positions", "min_profit", "minProfit", COLUMNS["minProfit"][1]),
    "quote": ("orders", "requested_quote", "", AMOUNT),
    "quantity": ("orders", "requested_quantity", "", AMOUNT),
    "cursor": ("", "", "", Column(0, Decimal(0), Decimal(2**31 - 1))),  # a page, nothing stored
}


@dataclass(frozen=True)
class Expected:
    """What an accepted answer must have stored: `given` in `table`.`column`, echoed in `field`."""

    table: str
    column: str
    field: str
    oracle: Column
    given: str


def expectations(kind: str, value: Any) -> list[Expected]:
    if kind in ("create", "update"):
        return [Expected("strategies", COLUMNS[f][0], f, COLUMNS[f][1], v) for f, v in value.items()]
    if kind in STORED_IN:
        return [Expected(*STORED_IN[kind], given=str(value))]
    return []


async def test_accepted_inputs_are_stored_exactly(db: App, gql: GraphQLClient) -> None:
    """Precision edges, huge and tiny exponents, other scripts' digits, cursors past the id columns:
    every accepted value is stored exactly as given (compared as Decimals, read from PostgreSQL),
    every value a column would round is refused with VALIDATION, and a refusal changes nothing."""
    await seed_demo(db.uow, db.exchange)
    channel = Channel(Decimal(2400), Decimal(2800))
    strategy = await services.create_strategy(cmds.CreateStrategy(1, "ETHUSDT", "ETH", channel), db.uow(), db.exchange)
    edited = await services.create_strategy(cmds.CreateStrategy(1, "ETHUSDT", "U", channel), db.uow(), db.exchange)
    assert strategy.id is not None and edited.id is not None
    await services.allocate_capital(cmds.AllocateCapital(strategy.id, Decimal(100_000)), db.uow(), db.exchange)
    db.price_book.set("ETHUSDT", Decimal(2450))
    buy = cmds.Buy(strategy.id, quote_amount=Decimal(100))
    held = await services.buy(buy, db.uow(), db.exchange, db.prices)
    sold = await services.buy(buy, db.uow(), db.exchange, db.prices)
    assert held.id is not None and sold.id is not None
    db.price_book.set("ETHUSDT", Decimal(2800))
    await services.sell(cmds.Sell(sold.id), db.uow(), db.exchange, db.prices)  # some profit to withdraw
    db.price_book.set("ETHUSDT", Decimal(2450))
    await gql.login()
    loop = asyncio.get_running_loop()
    seen: dict[str, int] = {}
    names = iter(range(10**9))

    def run(coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=30)

    def variables(kind: str, value: Any) -> dict[str, Any]:
        if kind == "create":
            return {"i": {"symbol": "ETHUSDT", "name": f"fuzz {next(names)}", **value}}
        if kind == "update":
            return {"s": str(edited.id), "i": value}
        if kind == "cursor":
            return {"a": encode_cursor(value)}
        if kind == "foreign id":
            return {"s": str(strategy.id).translate(value)}
        return {"s": str(strategy.id), "p": str(held.id), "a": value}

    async def stored(expected: Expected, answer: dict[str, Any]) -> Decimal:
        async with db.engine.connect() as conn:
            if expected.table == "orders":  # the buy's order
                query = text(f"SELECT {expected.column} FROM orders WHERE position_id = :id AND side = 'buy'")
            else:
                query = text(f"SELECT {expected.column} FROM {expected.table} WHERE id = :id")
            return (await conn.execute(query, {"id": int(answer["id"])})).scalar_one()

    @settings(max_examples=EXAMPLES // 2, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=MUTATIONS)
    @example(case=("create", {"basePrice": "1999.123456789012345678", "topPrice": "2800", "buyThreshold": "0.0001"}))
    @example(case=("create", {"basePrice": "2000", "topPrice": "2800", "buyThreshold": "0.00001"}))
    @example(case=("update", {"minProfit": "0.1234", "topPrice": "2800.000000000000000001"}))
    @example(case=("update", {"capitalPercentage": "20.12345"}))
    @example(case=("allocate", "0.000000000000000001"))
    @example(case=("allocate", "1e-19"))
    @example(case=("withdraw", "0.000000000000000001"))
    @example(case=("withdraw", "1e-19"))
    @example(case=("schedule", "999.9999"))
    @example(case=("schedule", "999.99999"))
    @example(case=("quote", "100.000000000000000001"))
    @example(case=("quote", "100.0000000000000000001"))
    @example(case=("quantity", "0.01"))
    @example(case=("quantity", "1e-20"))
    @example(case=("cursor", 1))
    @example(case=("cursor", 2**31))
    @example(case=("foreign id", ARABIC))
    def mutations(case: tuple[str, Any]) -> None:
        kind, value = case
        before = run(snapshot(db))
        body = run(gql.execute(MUTATION_OF[kind], **variables(kind, value)))
        expected = expectations(kind, value)
        kept = all(e.oracle.keeps(e.given) for e in expected)
        errors = body.get("errors") or []
        outcome = f"{kind} {'refused' if errors else 'accepted'}"
        seen[outcome] = seen.get(outcome, 0) + 1
        if errors:
            code, details = errors[0]["extensions"].get("code"), errors[0]["extensions"].get("details", {})
            assert code not in ("INTERNAL", None), (case, body)
            if kind == "foreign id":
                assert code == "NOT_FOUND", (case, body)
            elif not kept:
                assert code == "VALIDATION", (case, body)
            else:  # what its column keeps is never refused for its precision or range
                assert "decimal_places" not in details and kind != "allocate", (case, body)
            assert run(snapshot(db)) == before, case
            return
        assert kept and kind != "foreign id", (case, body)
        (answer,) = body["data"].values()
        for e in expected:
            if e.table:  # compared as Decimals: exactly the number given (a withdrawal is negative)
                assert run(stored(e, answer)).copy_abs() == Decimal(e.given).copy_abs(), (case, e)
            if e.field:
                echoed = answer[e.field]
                assert PLAIN.fullmatch(echoed) and Decimal(echoed).copy_abs() == Decimal(e.given).copy_abs(), answer

    await asyncio.to_thread(mutations)
    for kind in ("create", "update", "allocate", "withdraw", "schedule", "quote", "quantity", "cursor"):
        assert seen.get(f"{kind} accepted") and seen.get(f"{kind} refused"), seen
