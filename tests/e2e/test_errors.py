"""Bad input gets a clear error with a stable `extensions.code`, and changes nothing."""

from __future__ import annotations

import base64
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text

from domain import commands as cmds
from domain import services
from domain.adapters.bootstrap import App
from domain.adapters.persistence import orm
from domain.adapters.seed import seed_demo
from domain.channel import Channel
from tests.e2e.conftest import GraphQLClient

# A failed mutation is still audited, and logging in opens a session: not "changes" of the data.
NOT_DATA = {"audit_log", "refresh_tokens"}


async def snapshot(app: App) -> dict[str, list[Any]]:
    """Every row of every data table: a failed mutation must leave it identical."""
    tables: dict[str, list[Any]] = {}
    async with app.engine.connect() as conn:
        for table in orm.metadata.sorted_tables:
            if table.name in NOT_DATA:
                continue
            rows = await conn.execute(text(f"SELECT row_to_json(t)::text FROM {table.name} t ORDER BY id"))
            tables[table.name] = [r[0] for r in rows]
    return tables


@pytest.fixture
async def world(db: App) -> dict[str, str]:
    """The demo, an ETH strategy with 1000 USDT, one open position and one closed one."""
    await seed_demo(db.uow, db.exchange)
    s = await services.create_strategy(
        cmds.CreateStrategy(1, "ETHUSDT", "ETH", Channel(Decimal("2400"), Decimal("2800"))), db.uow(), db.exchange
    )
    assert s.id is not None
    await services.allocate_capital(cmds.AllocateCapital(s.id, Decimal("1000")), db.uow(), db.exchange)
    db.price_book.set("ETHUSDT", Decimal("2450"))
    open_p = await services.buy(cmds.Buy(s.id, quote_amount=Decimal("100")), db.uow(), db.exchange, db.prices)
    closed_p = await services.buy(cmds.Buy(s.id, quote_amount=Decimal("100")), db.uow(), db.exchange, db.prices)
    assert closed_p.id is not None
    await services.sell(cmds.Sell(closed_p.id, accept_loss=True), db.uow(), db.exchange, db.prices)
    ids = {"strategy": str(s.id), "open": str(open_p.id), "closed": str(closed_p.id)}
    # The strategy's id in other scripts' digits: int() reads them, the API must not.
    ids["strategy_arabic"] = ids["strategy"].translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    ids["strategy_fullwidth"] = ids["strategy"].translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    return ids


CREATE = "mutation($i: CreateStrategyInput!) { createStrategy(input: $i) { id } }"


def strategy_input(**changes: Any) -> dict[str, Any]:
    base = {"clientId": "1", "symbol": "ETHUSDT", "name": "new", "basePrice": "2000", "topPrice": "2600"}
    return {**base, **changes}


CASES: list[tuple[str, str, dict[str, Any], str]] = [
    ("top below base", CREATE, {"i": strategy_input(topPrice="1900")}, "VALIDATION"),
    ("top equal base", CREATE, {"i": strategy_input(topPrice="2000")}, "VALIDATION"),
    ("negative base", CREATE, {"i": strategy_input(basePrice="-5")}, "VALIDATION"),
    ("non-numeric base", CREATE, {"i": strategy_input(basePrice="abc")}, "VALIDATION"),
    ("NaN base", CREATE, {"i": strategy_input(basePrice="NaN")}, "VALIDATION"),
    ("float-looking junk", CREATE, {"i": strategy_input(topPrice="1e")}, "VALIDATION"),
    ("capital 0", CREATE, {"i": strategy_input(capitalPercentage="0")}, "VALIDATION"),
    ("capital over 100", CREATE, {"i": strategy_input(capitalPercentage="100.01")}, "VALIDATION"),
    ("bad timeframe", CREATE, {"i": strategy_input(timeframe="3h")}, "VALIDATION"),
    ("narrow channel", CREATE, {"i": strategy_input(topPrice="2090")}, "VALIDATION"),
    ("empty name", CREATE, {"i": strategy_input(name="  ")}, "VALIDATION"),
    ("duplicate name", CREATE, {"i": strategy_input(name="ETH")}, "VALIDATION"),
    ("unknown symbol", CREATE, {"i": strategy_input(symbol="DOGEUSDT")}, "NOT_FOUND"),
    ("unknown client", CREATE, {"i": strategy_input(clientId="999")}, "NOT_FOUND"),
    ("malformed client id", CREATE, {"i": strategy_input(clientId="x1")}, "NOT_FOUND"),
    (
        "negative allocation",
        'mutation($s: ID!) { allocateCapital(strategyId: $s, amount: "-10") { id } }',
        {"s": "{strategy}"},
        "VALIDATION",
    ),
    (
        "zero allocation",
        'mutation($s: ID!) { allocateCapital(strategyId: $s, amount: "0") { id } }',
        {"s": "{strategy}"},
        "VALIDATION",
    ),
    (
        "allocation to unknown strategy",
        'mutation { allocateCapital(strategyId: "999", amount: "10") { id } }',
        {},
        "NOT_FOUND",
    ),
    (
        "allocation with a float",
        "mutation($s: ID!) { allocateCapital(strategyId: $s, amount: true) { id } }",
        {"s": "{strategy}"},
        "VALIDATION",
    ),
    (
        "buy with both amounts",
        'mutation($s: ID!) { buy(strategyId: $s, quoteAmount: "10", quantity: "1") { id } }',
        {"s": "{strategy}"},
        "VALIDATION",
    ),
    ("buy with no amount", "mutation($s: ID!) { buy(strategyId: $s) { id } }", {"s": "{strategy}"}, "VALIDATION"),
    (
        "buy with a negative amount",
        'mutation($s: ID!) { buy(strategyId: $s, quoteAmount: "-100") { id } }',
        {"s": "{strategy}"},
        "VALIDATION",
    ),
    (
        "buy over free principal",
        'mutation($s: ID!) { buy(strategyId: $s, quoteAmount: "5000") { id } }',
        {"s": "{strategy}"},
        "INSUFFICIENT_CAPITAL",
    ),
    (
        "buy under min notional",
        'mutation($s: ID!) { buy(strategyId: $s, quoteAmount: "1") { id } }',
        {"s": "{strategy}"},
        "FILTER_FAILURE",
    ),
    (
        "buy off the lot step",
        'mutation($s: ID!) { buy(strategyId: $s, quantity: "0.012345") { id } }',
        {"s": "{strategy}"},
        "FILTER_FAILURE",
    ),
    ("sell below min_sell", "mutation($p: ID!) { sell(positionId: $p) { id } }", {"p": "{open}"}, "WOULD_SELL_AT_LOSS"),
    ("sell a closed position", "mutation($p: ID!) { sell(positionId: $p) { id } }", {"p": "{closed}"}, "INVALID_STATE"),
    ("sell an unknown position", 'mutation { sell(positionId: "12345") { id } }', {}, "NOT_FOUND"),
    (
        "schedule with negative profit",
        'mutation($p: ID!) { scheduleSell(positionId: $p, minProfit: "-1") { id } }',
        {"p": "{open}"},
        "VALIDATION",
    ),
    (
        "cancel a schedule that does not exist",
        "mutation($p: ID!) { cancelScheduledSell(id: $p) { id } }",
        {"p": "{open}"},
        "INVALID_STATE",
    ),
    (
        "withdraw more profit than there is",
        'mutation($s: ID!) { withdrawProfit(strategyId: $s, amount: "1") { id } }',
        {"s": "{strategy}"},
        "INSUFFICIENT_CAPITAL",
    ),
    (
        "update into a narrow channel",
        'mutation($s: ID!) { updateStrategy(id: $s, input: {topPrice: "2450"}) { id } }',
        {"s": "{strategy}"},
        "VALIDATION",
    ),
    ("page too large", "{ positions(first: 1000) { nodes { id } } }", {}, "VALIDATION"),
    ("page size zero", "{ positions(first: 0) { nodes { id } } }", {}, "VALIDATION"),
    ("forged cursor", '{ positions(after: "bm9wZQ==") { nodes { id } } }', {}, "VALIDATION"),
    ("unknown field", "{ positions { nodes { nope } } }", {}, "GRAPHQL_VALIDATION_FAILED"),
    ("bad interval", '{ priceHistory(symbol: "BTCUSDT", interval: "7m") { close } }', {}, "VALIDATION"),
    ("history too long", '{ priceHistory(symbol: "BTCUSDT", limit: 100000) { close } }', {}, "VALIDATION"),
    ("unknown symbol price", '{ currentPrice(symbol: "NOPE") { price } }', {}, "NOT_FOUND"),
    ("report over a bad period", "{ positionsReport(days: 0) { open } }", {}, "VALIDATION"),
]

ALLOCATE = "mutation($s: ID!, $a: Decimal!) { allocateCapital(strategyId: $s, amount: $a) { id } }"
BUY_QUOTE = "mutation($s: ID!, $a: Decimal!) { buy(strategyId: $s, quoteAmount: $a) { id } }"
BUY_QTY = "mutation($s: ID!, $a: Decimal!) { buy(strategyId: $s, quantity: $a) { id } }"
WITHDRAW = "mutation($s: ID!, $a: Decimal!) { withdrawProfit(strategyId: $s, amount: $a) { id } }"
SCHEDULE = "mutation($p: ID!, $m: Decimal!) { scheduleSell(positionId: $p, minProfit: $m) { id } }"
UPDATE = "mutation($s: ID!, $i: UpdateStrategyInput!) { updateStrategy(id: $s, input: $i) { id } }"
POSITIONS_AFTER = "query($c: String!) { positions(after: $c) { nodes { id } } }"
BACKTEST = """query($s: ID!, $f: Decimal!) {
  backtest(input: {strategyId: $s, feeRate: $f, interval: "4h"}) { summary { entries } }
}"""


def cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


# Values the API used to accept and store rounded (or fail on with INTERNAL): each must be refused
# with VALIDATION naming the precision and range allowed, and change nothing (issue 17, items 5-6).
PRECISION_CASES: list[tuple[str, str, dict[str, Any], str]] = [
    ("buyThreshold under its scale", CREATE, {"i": strategy_input(buyThreshold="0.00001")}, "VALIDATION"),
    ("minProfit under its scale", CREATE, {"i": strategy_input(minProfit="0.00001")}, "VALIDATION"),
    (
        "minProfit rounding up to its limit",
        CREATE,
        {"i": strategy_input(minProfit="999.99999", topPrice="100000")},
        "VALIDATION",
    ),
    ("capitalPercentage with 5 decimals", CREATE, {"i": strategy_input(capitalPercentage="20.12345")}, "VALIDATION"),
    ("capitalPercentage rounding to 0", CREATE, {"i": strategy_input(capitalPercentage="0.00001")}, "VALIDATION"),
    ("capitalPercentage rounding to 100", CREATE, {"i": strategy_input(capitalPercentage="99.99999")}, "VALIDATION"),
    (
        "buyThreshold rounding to 100",
        CREATE,
        {"i": strategy_input(buyThreshold="99.99999", topPrice="10000")},
        "VALIDATION",
    ),
    (
        "sellThreshold rounding to 100",
        CREATE,
        {"i": strategy_input(sellThreshold="99.99999", topPrice="1000000000000")},
        "VALIDATION",
    ),
    ("base 1e25", CREATE, {"i": strategy_input(basePrice="1e25", topPrice="2e25")}, "VALIDATION"),
    ("base 1e-19", CREATE, {"i": strategy_input(basePrice="1e-19")}, "VALIDATION"),
    ("base with 19 decimals", CREATE, {"i": strategy_input(basePrice="2000.0000000000000000001")}, "VALIDATION"),
    ("top over the column", CREATE, {"i": strategy_input(topPrice="100000000000000000000")}, "VALIDATION"),
    (
        "update buyThreshold under its scale",
        UPDATE,
        {"s": "{strategy}", "i": {"buyThreshold": "0.00001"}},
        "VALIDATION",
    ),
    ("allocation of 1e-19", ALLOCATE, {"s": "{strategy}", "a": "1e-19"}, "VALIDATION"),
    ("allocation rounding up", ALLOCATE, {"s": "{strategy}", "a": "0.0000000000000000015"}, "VALIDATION"),
    ("allocation of 29 digits", ALLOCATE, {"s": "{strategy}", "a": "12345678901.123456789012345678"}, "VALIDATION"),
    ("allocation in arabic digits", ALLOCATE, {"s": "{strategy}", "a": "١٢٣"}, "VALIDATION"),
    ("allocation in full-width digits", ALLOCATE, {"s": "{strategy}", "a": "１２３"}, "VALIDATION"),
    ("allocation with an underscore", ALLOCATE, {"s": "{strategy}", "a": "1_000"}, "VALIDATION"),
    # a JSON float has lost digits before the API sees it: 1234.5678901234568 would be stored
    ("allocation as a JSON float", ALLOCATE, {"s": "{strategy}", "a": 1234.56789012345678}, "VALIDATION"),
    ("allocation to an arabic-digit id", ALLOCATE, {"s": "{strategy_arabic}", "a": "10"}, "NOT_FOUND"),
    ("allocation to a full-width id", ALLOCATE, {"s": "{strategy_fullwidth}", "a": "10"}, "NOT_FOUND"),
    ("allocation to a zero-padded id", ALLOCATE, {"s": "0{strategy}", "a": "10"}, "NOT_FOUND"),
    ("buy of a sub-precision quote", BUY_QUOTE, {"s": "{strategy}", "a": "100.0000000000000000001"}, "VALIDATION"),
    ("buy of a sub-precision quantity", BUY_QTY, {"s": "{strategy}", "a": "0.0000000000000000001"}, "VALIDATION"),
    ("withdrawal of 1e-19", WITHDRAW, {"s": "{strategy}", "a": "1e-19"}, "VALIDATION"),
    ("schedule minProfit under its scale", SCHEDULE, {"p": "{open}", "m": "0.00001"}, "VALIDATION"),
    ("schedule minProfit rounding to 1000", SCHEDULE, {"p": "{open}", "m": "999.99999"}, "VALIDATION"),
    ("cursor of 2^31", POSITIONS_AFTER, {"c": cursor(f"cursor:{2**31}")}, "VALIDATION"),
    ("cursor of 2^63", POSITIONS_AFTER, {"c": cursor(f"cursor:{2**63}")}, "VALIDATION"),
    ("cursor of 1e20", POSITIONS_AFTER, {"c": cursor(f"cursor:{10**20}")}, "VALIDATION"),
    ("cursor in arabic digits", POSITIONS_AFTER, {"c": cursor("cursor:١٢٣")}, "VALIDATION"),
    ("backtest with a fee rate of 1", BACKTEST, {"s": "{strategy}", "f": "1"}, "VALIDATION"),
    ("backtest with a negative fee rate", BACKTEST, {"s": "{strategy}", "f": "-5"}, "VALIDATION"),
    # What the schema fuzz could reach with its first generators (updateStrategy of the demo's "1"):
    ("update capitalPercentage to 1e-8", UPDATE, {"s": "1", "i": {"capitalPercentage": "0.00000001"}}, "VALIDATION"),
    ("update topPrice to 1e400", UPDATE, {"s": "1", "i": {"topPrice": "1e400"}}, "VALIDATION"),
    ("update topPrice to 1e20", UPDATE, {"s": "1", "i": {"topPrice": "100000000000000000000.0000"}}, "VALIDATION"),
]


def _fill(value: Any, world: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**world)
    if isinstance(value, dict):
        return {k: _fill(v, world) for k, v in value.items()}
    return value


@pytest.mark.parametrize(
    ("name", "query", "variables", "code"), CASES + PRECISION_CASES, ids=[c[0] for c in CASES + PRECISION_CASES]
)
async def test_bad_input_is_refused_with_a_code_and_changes_nothing(
    db: App, gql: GraphQLClient, world: dict[str, str], name: str, query: str, variables: dict[str, Any], code: str
) -> None:
    variables = _fill(variables, world)
    await gql.login()
    before = await snapshot(db)
    error = await gql.error(query, **variables)
    assert error["extensions"]["code"] == code, error
    assert error["message"] and "Traceback" not in error["message"]
    assert await snapshot(db) == before


async def test_narrow_channel_error_names_the_smallest_workable_top(db: App, gql: GraphQLClient) -> None:
    await seed_demo(db.uow, db.exchange)
    error = await gql.error(CREATE, i=strategy_input(topPrice="2090"))
    smallest = error["extensions"]["details"]["smallest_workable_top"]
    assert smallest in error["message"]
    ok = await gql.data(CREATE, i=strategy_input(topPrice=smallest))
    assert ok["createStrategy"]["id"]


async def test_unexpected_errors_are_masked(db: App, gql: GraphQLClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from domain import views

    await services.create_client(cmds.CreateClient("masked"), db.uow())

    async def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(views, "strategy", boom)
    error = await gql.error('{ strategy(id: "1") { id } }')
    assert error["extensions"]["code"] == "INTERNAL"
    assert "secret" not in error["message"]


async def test_buy_without_a_known_price_is_refused(db: App, gql: GraphQLClient) -> None:
    client = await services.create_client(cmds.CreateClient("no prices"), db.uow())
    assert client.id is not None
    s = await services.create_strategy(
        cmds.CreateStrategy(client.id, "ETHUSDT", "ETH", Channel(Decimal("2400"), Decimal("2800"))),
        db.uow(),
        db.exchange,
    )
    await services.allocate_capital(cmds.AllocateCapital(s.id, Decimal("1000")), db.uow(), db.exchange)  # type: ignore[arg-type]
    await gql.login()
    before = await snapshot(db)
    error = await gql.error('mutation($s: ID!) { buy(strategyId: $s, quoteAmount: "100") { id } }', s=str(s.id))
    assert error["extensions"]["code"] == "NO_PRICE"
    assert await snapshot(db) == before


PLAIN = r"-?(0|[1-9][0-9]*)(\.[0-9]*[1-9])?"


async def test_numbers_in_errors_have_one_form(db: App, gql: GraphQLClient, world: dict[str, str]) -> None:
    """A number reads the same in an error's message, its details and the API's Decimal fields:
    plain notation, no exponent, no trailing zeros (issue 14, item 4)."""
    import re

    await gql.login()
    loss = await gql.error("mutation($p: ID!) { sell(positionId: $p) { id } }", p=world["open"])
    assert loss["extensions"]["code"] == "WOULD_SELL_AT_LOSS"
    details = loss["extensions"]["details"]
    position = await gql.data("query($p: ID!) { position(id: $p) { minSellPrice } }", p=world["open"])
    assert details["min_sell_price"] == position["position"]["minSellPrice"]
    for key in ("min_sell_price", "price"):
        assert re.fullmatch(PLAIN, details[key]), details
        assert details[key] in loss["message"]
    short = await gql.error(BUY_QUOTE, s=world["strategy"], a="5000")
    assert short["extensions"]["code"] == "INSUFFICIENT_CAPITAL"
    for key in ("needed", "available"):
        value = short["extensions"]["details"][key]
        assert re.fullmatch(PLAIN, value) and value in short["message"], short
