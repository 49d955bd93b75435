"""Through the API (issue 20): taking principal back (`withdrawCapital`, audited), retiring a strategy
(`archiveStrategy`: refused while it holds positions, its history kept, its name freed in PostgreSQL's
partial unique index), and events as a list (`events`, `strategy.events` with pages and types)."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import text

from domain import commands as cmds
from domain import services
from domain.adapters.bootstrap import App
from domain.adapters.seed import seed_demo
from domain.channel import Channel
from tests.e2e.conftest import GraphQLClient
from tests.e2e.test_errors import snapshot

WITHDRAW = "mutation($s: ID!, $a: Decimal!) { withdrawCapital(strategyId: $s, amount: $a) { id amount kind isProfit } }"
ARCHIVE = "mutation($s: ID!) { archiveStrategy(id: $s) { id state archivedAt isActive } }"


async def audit_rows(db: App, mutation: str) -> list[tuple[str | None, str | None]]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT error_code, result->>'type' FROM audit_log WHERE mutation = :m ORDER BY id"), {"m": mutation}
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


async def test_withdraw_capital_over_the_api(db: App, gql: GraphQLClient) -> None:
    await seed_demo(db.uow, db.exchange)  # 2,000 USDT on the demo strategy
    db.price_book.set("BTCUSDT", Decimal(102500))
    await services.buy(cmds.Buy(1, quote_amount=Decimal(400)), db.uow(), db.exchange, db.prices)
    await gql.login()
    before = await snapshot(db)
    refused = await gql.error(WITHDRAW, s="1", a="1600.26")  # free: 2000 - 399.75 = 1600.25
    assert refused["extensions"]["code"] == "INSUFFICIENT_CAPITAL"
    assert refused["extensions"]["details"]["available"] == "1600.25"
    assert "free principal is 1600.25" in refused["message"]
    assert (await gql.error(WITHDRAW, s="1", a="-1"))["extensions"]["code"] == "VALIDATION"
    assert await snapshot(db) == before  # refused: nothing changed (but the audit log)

    done = (await gql.data(WITHDRAW, s="1", a="1600.25"))["withdrawCapital"]
    assert (done["amount"], done["kind"], done["isProfit"]) == ("-1600.25", "withdrawal", False)
    data = await gql.data('{ strategy(id: "1") { balance { principal committed free } } }')
    assert data["strategy"]["balance"] == {"principal": "399.75", "committed": "399.75", "free": "0"}
    assert await audit_rows(db, "withdrawCapital") == [
        ("INSUFFICIENT_CAPITAL", None),
        ("VALIDATION", None),
        (None, "CapitalAllocation"),
    ]


async def test_a_withdrawal_that_makes_entries_unworkable_succeeds_with_a_warning(db: App, gql: GraphQLClient) -> None:
    """SPEC §4 rule 11, as for allocateCapital: 1,900 of the demo's 2,000 taken back leaves entries of
    20 USDT, which keep 0.00018 BTC after lot rounding — min_sell 108,842.97, above X = 108,413.48,
    so every exit would become a scheduled sell. The withdrawal stands and says so in `warnings` and
    as an `entries_too_small` event; one that leaves workable entries has no warning."""
    await seed_demo(db.uow, db.exchange)
    await gql.login()
    query = "mutation($s: ID!, $a: Decimal!) { withdrawCapital(strategyId: $s, amount: $a) { amount kind warnings } }"
    fine = (await gql.data(query, s="1", a="1000"))["withdrawCapital"]
    assert fine == {"amount": "-1000", "kind": "withdrawal", "warnings": []}
    done = (await gql.data(query, s="1", a="900"))["withdrawCapital"]
    (warning,) = done["warnings"]
    assert (done["amount"], done["kind"]) == ("-900", "withdrawal")
    assert "108842.97" in warning and "every exit would become a scheduled sell" in warning
    assert "raise topPrice to at least 111064.26" in warning
    data = await gql.data(
        '{ strategy(id: "1") { balance { principal } events(first: 20) { nodes { type message } } } }'
    )
    assert data["strategy"]["balance"]["principal"] == "100"
    nodes = data["strategy"]["events"]["nodes"]
    assert [n for n in nodes if n["type"] == "entries_too_small"] == [{"type": "entries_too_small", "message": warning}]
    assert await audit_rows(db, "withdrawCapital") == [(None, "CapitalAllocation"), (None, "CapitalAllocation")]


async def test_archive_strategy_over_the_api(db: App, gql: GraphQLClient) -> None:
    await seed_demo(db.uow, db.exchange)
    db.price_book.set("BTCUSDT", Decimal(102500))
    position = await services.buy(cmds.Buy(1, quote_amount=Decimal(400)), db.uow(), db.exchange, db.prices)
    assert position.id is not None

    refused = await gql.error(ARCHIVE, s="1")
    assert refused["extensions"]["code"] == "INVALID_STATE"
    assert refused["extensions"]["details"]["positions"] == str(position.id)
    assert f"{position.id} (open)" in refused["message"]

    db.price_book.set("BTCUSDT", Decimal(110000))
    await services.sell(cmds.Sell(position.id), db.uow(), db.exchange, db.prices)  # sold at a profit
    archived = (await gql.data(ARCHIVE, s="1"))["archiveStrategy"]
    assert archived["state"] == "ARCHIVED" and archived["archivedAt"] and not archived["isActive"]
    assert await audit_rows(db, "archiveStrategy") == [("INVALID_STATE", None), (None, "Strategy")]

    # Out of the list by default; still readable with its whole history.
    listed = await gql.data("{ strategies { nodes { id } } all: strategies(includeArchived: true) { nodes { id } } }")
    assert listed["strategies"]["nodes"] == [] and listed["all"]["nodes"] == [{"id": "1"}]
    history = await gql.data(
        """{ strategy(id: "1") { name state positions { id status } balance { principal profit }
                                 events(types: ["strategy_archived"]) { nodes { type } } }
             trades(strategyId: "1") { nodes { side } } orders(strategyId: "1") { nodes { status } } }"""
    )
    strategy = history["strategy"]
    assert strategy["positions"] == [{"id": str(position.id), "status": "CLOSED"}]
    assert strategy["balance"]["principal"] == "2000" and Decimal(strategy["balance"]["profit"]) > 0
    assert strategy["events"]["nodes"] == [{"type": "strategy_archived"}]
    assert [t["side"] for t in history["trades"]["nodes"]] == ["SELL", "BUY"]
    assert [o["status"] for o in history["orders"]["nodes"]] == ["FILLED", "FILLED"]

    # It no longer trades, and its name is free (PostgreSQL's partial unique index).
    buy = await gql.error('mutation { buy(strategyId: "1", quoteAmount: "100") { id } }')
    assert buy["extensions"]["code"] == "INVALID_STATE"
    again = await gql.data(
        """mutation { createStrategy(input: {symbol: "BTCUSDT", name: "Canal H4 BTC/USDT", basePrice: "100489",
                                             topPrice: "110626"}) { id name state } }"""
    )
    assert again["createStrategy"]["name"] == strategy["name"] and again["createStrategy"]["id"] != "1"
    taken = await gql.error(
        """mutation { createStrategy(input: {symbol: "BTCUSDT", name: "Canal H4 BTC/USDT", basePrice: "100489",
                                             topPrice: "110626"}) { id } }"""
    )
    assert taken["extensions"]["code"] == "VALIDATION"
    # Its principal and profit can still be taken back.
    await gql.data(WITHDRAW, s="1", a="2000")
    # The engine no longer looks at it.
    async with db.uow() as uow:
        assert [s.id for s in await uow.strategies.list_by_symbol(1)] == [int(again["createStrategy"]["id"])]


EVENTS = """query($types: [String!], $first: Int!, $after: String) {
  events(types: $types, first: $first, after: $after) {
    nodes { id type strategyId } pageInfo { hasNextPage endCursor } }
}"""


async def test_events_as_lists_with_pages_and_types(db: App, gql: GraphQLClient) -> None:
    await seed_demo(db.uow, db.exchange)  # strategy_created, capital_allocated
    strategy = await services.create_strategy(
        cmds.CreateStrategy(1, "ETHUSDT", "ETH", Channel(Decimal(2400), Decimal(2800))), db.uow(), db.exchange
    )
    for _ in range(3):  # enough for workable entries (a smaller one would add an entries_too_small event)
        await services.allocate_capital(cmds.AllocateCapital(strategy.id or 0, Decimal(1000)), db.uow(), db.exchange)

    everything = (await gql.data(EVENTS, first=100))["events"]["nodes"]
    assert [(e["type"], e["strategyId"]) for e in everything] == [
        ("capital_allocated", "2"), ("capital_allocated", "2"), ("capital_allocated", "2"),
        ("strategy_created", "2"), ("capital_allocated", "1"), ("strategy_created", "1"),
    ]  # fmt: skip
    first = (await gql.data(EVENTS, types=["capital_allocated"], first=3))["events"]
    assert [e["id"] for e in first["nodes"]] == [e["id"] for e in everything[:3]] and first["pageInfo"]["hasNextPage"]
    rest = await gql.data(EVENTS, types=["capital_allocated"], first=3, after=first["pageInfo"]["endCursor"])
    assert [e["id"] for e in rest["events"]["nodes"]] == [everything[4]["id"]]
    assert not rest["events"]["pageInfo"]["hasNextPage"]

    unknown = await gql.error(EVENTS, types=["capital_alocated"], first=5)
    assert unknown["extensions"]["code"] == "VALIDATION" and "capital_alocated" in unknown["message"]

    # Each strategy's own events, paged the same way, in one statement per page asked for.
    nested = await gql.data(
        """{ strategies { nodes { id
               last: events(first: 1) { nodes { type } pageInfo { hasNextPage } }
               created: events(types: ["strategy_created"]) { nodes { type } } } } }"""
    )
    by_id = {n["id"]: n for n in nested["strategies"]["nodes"]}
    assert by_id["2"]["last"] == {"nodes": [{"type": "capital_allocated"}], "pageInfo": {"hasNextPage": True}}
    assert by_id["1"]["last"]["nodes"] == [{"type": "capital_allocated"}]
    assert by_id["1"]["created"]["nodes"] == by_id["2"]["created"]["nodes"] == [{"type": "strategy_created"}]
