"""The README's tour through the API: create, allocate, buy, sell, schedule, read — on PostgreSQL."""

from __future__ import annotations

from decimal import Decimal

from domain.adapters.bootstrap import App
from domain.adapters.seed import seed_demo
from tests.e2e.conftest import GraphQLClient

CREATE = """
mutation($input: CreateStrategyInput!) {
  createStrategy(input: $input) { id name state levels { base entry exit top } symbol { symbol } }
}
"""


async def test_tour(db: App, gql: GraphQLClient) -> None:
    await seed_demo(db.uow, db.exchange)  # `gql` logs in as its client (1) at the first request
    created = await gql.data(
        CREATE,
        input={"symbol": "ETHUSDT", "name": "ETH channel", "basePrice": "2400", "topPrice": "2800"},
    )
    strategy = created["createStrategy"]
    assert strategy["state"] == "ARMED"
    assert strategy["levels"] == {"base": "2400", "entry": "2448", "exit": "2744", "top": "2800"}
    sid = strategy["id"]
    alloc = await gql.data(
        'mutation($s: ID!) { allocateCapital(strategyId: $s, amount: "1000") { amount kind isProfit warnings } }',
        s=sid,
    )
    assert alloc["allocateCapital"] == {"amount": "1000", "kind": "deposit", "isProfit": False, "warnings": []}

    db.price_book.set("ETHUSDT", Decimal("2450"))
    bought = await gql.data(
        'mutation($s: ID!) { buy(strategyId: $s, quoteAmount: "200") { id status quantity cost minSellPrice } }',
        s=sid,
    )
    position = bought["buy"]
    assert position["status"] == "OPEN"
    assert position["quantity"] == "0.0815"  # 200/2450 = 0.08163 -> 0.0816 gross, minus 0.1% fee -> 0.0815
    assert position["cost"] == "199.92"

    # Below min_sell: refused, nothing changes.
    err = await gql.error("mutation($p: ID!) { sell(positionId: $p) { id } }", p=position["id"])
    assert err["extensions"]["code"] == "WOULD_SELL_AT_LOSS"

    scheduled = await gql.data(
        'mutation($p: ID!) { scheduleSell(positionId: $p, minProfit: "1") { status scheduledExitPrice } }',
        p=position["id"],
    )
    assert scheduled["scheduleSell"]["status"] == "SCHEDULED"
    listed = await gql.data("{ scheduledSells { nodes { id } } }")
    assert listed["scheduledSells"]["nodes"] == [{"id": position["id"]}]
    cancelled = await gql.data("mutation($p: ID!) { cancelScheduledSell(id: $p) { status } }", p=position["id"])
    assert cancelled["cancelScheduledSell"]["status"] == "OPEN"

    db.price_book.set("ETHUSDT", Decimal("2600"))
    sold = await gql.data(
        "mutation($p: ID!) { sell(positionId: $p) { status exitPrice realizedProfit } }", p=position["id"]
    )
    assert sold["sell"]["status"] == "CLOSED"
    assert Decimal(sold["sell"]["realizedProfit"]) > 0

    data = await gql.data(
        """
        query($s: ID!) {
          positions(strategyId: $s) { nodes { id status trades { side price } strategy { name } symbol { symbol } } }
          trades(symbol: "ETHUSDT") { nodes { side } }
          capitalBalance { principal committed free profit total }
          profitReport(strategyId: $s) { realizedProfit closedPositions winningPositions balance { profit } }
          positionsReport(days: 7) { closed opened }
          tradesReport(symbol: "ETHUSDT") { trades buys sells }
          priceHistory(symbol: "BTCUSDT", limit: 5) { close }
          currentPrice(symbol: "ETHUSDT") { price }
        }
        """,
        s=sid,
    )
    assert data["positions"]["nodes"][0]["trades"] == [
        {"side": "BUY", "price": "2450"},
        {"side": "SELL", "price": "2600"},
    ]
    profit = Decimal(data["profitReport"]["realizedProfit"])
    assert data["capitalBalance"]["principal"] == "3000"  # demo 2000 + 1000
    assert Decimal(data["capitalBalance"]["profit"]) == profit
    assert data["profitReport"]["closedPositions"] == 1
    assert data["tradesReport"] == {"trades": 2, "buys": 1, "sells": 1}
    assert len(data["priceHistory"]) == 5
    assert data["currentPrice"]["price"] == "2600"


async def test_an_allocation_that_makes_entries_unworkable_succeeds_with_a_warning(db: App, gql: GraphQLClient) -> None:
    """SPEC §4 rule 11: between the formula's top (105,324.09 for the demo base) and the one that
    works once lots are rounded (105,489.26 for 400 entries), 2,000 allocated makes every exit a
    scheduled sell: the allocation stands, and says so in its result and as an event."""
    await seed_demo(db.uow, db.exchange)
    created = await gql.data(
        CREATE, input={"symbol": "BTCUSDT", "name": "tight", "basePrice": "100489", "topPrice": "105400"}
    )
    sid = created["createStrategy"]["id"]
    alloc = await gql.data(
        'mutation($s: ID!) { allocateCapital(strategyId: $s, amount: "2000") { amount warnings } }', s=sid
    )
    (warning,) = alloc["allocateCapital"]["warnings"]
    assert alloc["allocateCapital"]["amount"] == "2000"
    assert "every exit would become a scheduled sell" in warning and "105489.26" in warning
    data = await gql.data(
        "query($s: ID!) { strategy(id: $s) { balance { principal } events { type message } } }", s=sid
    )
    assert data["strategy"]["balance"]["principal"] == "2000"
    assert {"type": "entries_too_small", "message": warning} in data["strategy"]["events"]
