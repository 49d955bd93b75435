"""The README's tour through the API: create, allocate, buy, sell, schedule, read — on PostgreSQL."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from domain import commands as cmds
from domain import services
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

    # Step 4: orders, events, principal back, retiring the strategy (the README's queries).
    step4 = await gql.data(
        """
        query($s: ID!, $p: ID!) {
          orders(strategyId: $s, first: 20) {
            nodes { clientOrderId purpose side type status reason price filledQuantity averagePrice fee feeAsset
                    position { id } }
          }
          position(id: $p) { orders { status purpose } trades { price order { clientOrderId } } }
          events(types: ["entry_skipped", "order_refused"], first: 20) { nodes { type message strategyId createdAt } }
          strategy(id: $s) { events(first: 10) { nodes { type message } pageInfo { hasNextPage endCursor } } }
        }
        """,
        s=sid,
        p=position["id"],
    )
    assert [(o["purpose"], o["status"], o["type"]) for o in step4["orders"]["nodes"]] == [
        ("MANUAL_SELL", "FILLED", "LIMIT"),  # never below the minimum sell price
        ("MANUAL_BUY", "FILLED", "MARKET"),
    ]
    assert [o["status"] for o in step4["position"]["orders"]] == ["FILLED", "FILLED"]
    assert step4["events"]["nodes"] == []
    assert step4["strategy"]["events"]["nodes"][0]["type"] == "position_closed"
    withdrawn = await gql.data(
        'mutation($s: ID!) { withdrawCapital(strategyId: $s, amount: "300") { amount kind } }', s=sid
    )
    assert withdrawn["withdrawCapital"] == {"amount": "-300", "kind": "withdrawal"}
    archived = await gql.data("mutation($s: ID!) { archiveStrategy(id: $s) { state archivedAt } }", s=sid)
    assert archived["archiveStrategy"]["state"] == "ARCHIVED"
    listed = await gql.data("{ strategies(includeArchived: true) { nodes { id name state } } }")
    assert {n["state"] for n in listed["strategies"]["nodes"]} == {"ARMED", "ARCHIVED"}


# ---------------------------------------------------------------- the README's tour, as written

README = Path(__file__).resolve().parents[2] / "README.md"


def tour_documents() -> list[str]:
    """The GraphQL documents of the README's tour, in order."""
    text = README.read_text()
    section = text[text.index("## A short GraphQL tour") :]
    section = section[: section.index("\n## ", 5)]
    return re.findall(r"```graphql\n(.*?)```", section, re.S)


def declared(document: str) -> list[str]:
    return re.findall(r"\$(\w+)\s*:", document.split("{", 1)[0])


async def trade_the_demo_for_a_while(db: App) -> None:
    """What the worker did before the reader arrived: the demo strategy bought at E and sold at X, so
    positions 1 and up exist (issue 14: the tour must not assume position 1 is the reader's)."""
    moves = [("100000", "102600"), ("102600", "109000"), ("109000", "108000"), ("108000", "100400")]
    for prev, cur in moves:
        db.price_book.set("BTCUSDT", Decimal(cur))
        await services.process_price_move(
            cmds.ProcessPriceMove(1, Decimal(prev), Decimal(cur), datetime.now(UTC)), db.uow(), db.exchange
        )


async def test_the_readme_tour_runs_as_written_on_a_demo_that_has_traded(db: App, gql: GraphQLClient) -> None:
    await seed_demo(db.uow, db.exchange)
    await trade_the_demo_for_a_while(db)
    db.price_book.set("ETHUSDT", Decimal("2450"))
    documents = tour_documents()
    assert len(documents) == 12
    variables: dict[str, str] = {}
    answers: list[dict[str, Any]] = []
    for document in documents:
        body = await gql.execute(document, **{name: variables[name] for name in declared(document)})
        if "sell(positionId" in document and body.get("errors"):
            # Documented: below minSellPrice the sell is refused with WOULD_SELL_AT_LOSS, and nothing changes.
            assert body["errors"][0]["extensions"]["code"] == "WOULD_SELL_AT_LOSS", body
            db.price_book.set("ETHUSDT", Decimal("2600"))  # the market rises; the same document sells
            body = await gql.execute(document, **{name: variables[name] for name in declared(document)})
        assert "errors" not in body, (document, body)
        data = body["data"]
        answers.append(data)
        if "createStrategy" in data:
            variables["strategy"] = data["createStrategy"]["id"]
        if "buy" in data:
            variables["position"] = data["buy"]["id"]
    assert variables["position"] != "1"  # the demo's own trades came first
    assert answers[0]["strategies"]["nodes"][0]["name"] == "Canal H4 BTC/USDT"
    assert answers[6]["sell"]["status"] == "CLOSED" and Decimal(answers[6]["sell"]["realizedProfit"]) > 0
    results = answers[7]
    assert [t["side"] for t in results["positions"]["nodes"][0]["trades"]] == ["BUY", "SELL"]
    assert results["tradesReport"]["trades"] == 2
    history = answers[8]
    assert [o["purpose"] for o in history["orders"]["nodes"]] == ["MANUAL_SELL", "MANUAL_BUY"]
    assert answers[9]["withdrawCapital"] == {"amount": "-300", "kind": "withdrawal"}
    assert answers[10]["archiveStrategy"]["state"] == "ARCHIVED"
    assert {n["state"] for n in answers[11]["strategies"]["nodes"]} == {"ARMED", "ARCHIVED"}


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
        "query($s: ID!) { strategy(id: $s) { balance { principal } events(first: 20) { nodes { type message } } } }",
        s=sid,
    )
    assert data["strategy"]["balance"]["principal"] == "2000"
    assert {"type": "entries_too_small", "message": warning} in data["strategy"]["events"]["nodes"]
