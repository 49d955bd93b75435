"""What the API accepts is what it stores, to the last digit (issue 17, item 5): read back through
GraphQL and from PostgreSQL, compared as Decimals. And the consequence that made it matter: a
buy threshold stored as 0 put E on B, and one bounce bought again and again (SPEC §4 rule 1)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text

from domain import commands as cmds
from domain import services
from domain.adapters.bootstrap import App
from domain.adapters.seed import seed_demo
from tests.e2e.conftest import GraphQLClient

CREATE = """
mutation($i: CreateStrategyInput!) {
  createStrategy(input: $i) { id basePrice topPrice capitalPercentage buyThreshold sellThreshold minProfit }
}
"""
ALLOCATE = "mutation($s: ID!, $a: Decimal!) { allocateCapital(strategyId: $s, amount: $a) { id amount } }"
FIELDS = {
    "basePrice": "base_price",
    "topPrice": "top_price",
    "capitalPercentage": "capital_percentage",
    "buyThreshold": "buy_threshold",
    "sellThreshold": "sell_threshold",
    "minProfit": "min_profit",
}


async def stored(app: App, table: str, row_id: str, columns: list[str]) -> dict[str, Any]:
    async with app.engine.connect() as conn:
        row = (
            await conn.execute(text(f"SELECT {', '.join(columns)} FROM {table} WHERE id = :id"), {"id": int(row_id)})
        ).one()
    return dict(zip(columns, row, strict=True))


async def test_edge_values_are_stored_and_read_back_exactly(db: App, gql: GraphQLClient) -> None:
    await seed_demo(db.uow, db.exchange)
    inputs = [
        {"basePrice": "1999.123456789012345678", "topPrice": "2600.000000000000000001", "buyThreshold": "0.0001",
         "capitalPercentage": "12.3456", "sellThreshold": "1.2345", "minProfit": "0.0001"},
        {"basePrice": "2000", "topPrice": "30000", "capitalPercentage": "100", "minProfit": "999.9999"},
        {"basePrice": "0.000000000000000001", "topPrice": "1", "capitalPercentage": "0.0001", "sellThreshold": "0"},
    ]  # fmt: skip
    for n, given in enumerate(inputs):
        data = await gql.data(CREATE, i={"symbol": "ETHUSDT", "name": f"edge {n}", **given})
        echoed = data["createStrategy"]
        row = await stored(db, "strategies", echoed["id"], list(FIELDS.values()))
        for field, value in given.items():
            assert row[FIELDS[field]] == Decimal(value), (field, value, row)
            assert Decimal(echoed[field]) == Decimal(value) and echoed[field] == format(Decimal(value).normalize(), "f")
    sid = echoed["id"]
    for amount in ("9999999999.999999999999999999", "0.000000000000000001", "1000000000000000"):
        allocation = (await gql.data(ALLOCATE, s=sid, a=amount))["allocateCapital"]
        assert Decimal(allocation["amount"]) == Decimal(amount)
        assert (await stored(db, "capital_allocations", allocation["id"], ["amount"]))["amount"] == Decimal(amount)
    # A number literal in the document is read as written, not through a float (1234.5678901234568).
    literal = f'mutation {{ allocateCapital(strategyId: "{sid}", amount: 1234.56789012345678) {{ id amount }} }}'
    allocation = (await gql.data(literal))["allocateCapital"]
    assert allocation["amount"] == "1234.56789012345678"
    stored_amount = (await stored(db, "capital_allocations", allocation["id"], ["amount"]))["amount"]
    assert stored_amount == Decimal("1234.56789012345678")


async def test_a_buy_threshold_under_its_precision_cannot_stack_entries(db: App, gql: GraphQLClient) -> None:
    """b = 0.00001 was echoed back but stored as 0, so E = B: the tick that entered also re-armed
    (price <= B) and one bounce bought three times. It is refused now; the smallest b that is kept
    (0.0001) puts E above B, and the same prices buy once per bounce."""
    await seed_demo(db.uow, db.exchange)
    channel = {"symbol": "ETHUSDT", "basePrice": "2000", "topPrice": "2600"}
    refused = await gql.error(CREATE, i={**channel, "name": "too fine", "buyThreshold": "0.00001"})
    assert refused["extensions"]["code"] == "VALIDATION"
    assert refused["extensions"]["details"] == {
        "field": "buyThreshold", "minimum": "0", "maximum": "100", "decimal_places": 4,
    }  # fmt: skip
    assert "at most 4 decimal places" in refused["message"]

    created = (await gql.data(CREATE, i={**channel, "name": "finest", "buyThreshold": "0.0001"}))["createStrategy"]
    assert (await stored(db, "strategies", created["id"], ["buy_threshold"]))["buy_threshold"] == Decimal("0.0001")
    await gql.data(ALLOCATE, s=created["id"], a="1000")
    async with db.uow() as uow:
        symbol = await uow.symbols.get_by_name("ETHUSDT")
    assert symbol is not None and symbol.id is not None
    at = datetime(2026, 1, 1, tzinfo=UTC)
    opened = []
    # The path that bought at every return to 2000 while E was 2000, then a bounce through
    # E = 2000.0020 with noise around it that never touches B.
    path = ["2100", "1999.99", "2000", "1999.99", "2000", "1999.99", "2000", "2000.01", "2000.001", "2000.01",
            "2000.001", "2000.01"]  # fmt: skip
    for prev, cur in itertools.pairwise(path):
        db.price_book.set("ETHUSDT", Decimal(cur))
        move = cmds.ProcessPriceMove(symbol.id, Decimal(prev), Decimal(cur), at)
        opened += (await services.process_price_move(move, db.uow(), db.exchange)).opened
    assert [p.entry_price for p in opened] == [Decimal("2000.01")]
