"""Orders through the API (issue 20): `orders(strategyId, positionId, status, first, after)`,
`Position.orders` and `Trade.order`, with the statuses a trader must see — a resting limit sell
(OPEN), an order the exchange refused (REJECTED, with its reason), one it could not confirm
(UNKNOWN, awaiting reconciliation) — on paper and on the local Binance (python-binance's real code
path); and every change of an order on the `positionEvents(includeOrders: true)` subscription, to
its own client only."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from domain import commands as cmds
from domain import services
from domain.adapters.bootstrap import App
from domain.adapters.exchanges.paper import PaperExchange
from domain.adapters.seed import seed_demo
from domain.channel import Channel
from domain.errors import OrderOutcomeUnknown, PermanentExchangeError, TemporaryExchangeError
from domain.model import Symbol
from domain.ports import Execution
from gql_api.auth import access_tokens
from tests.binance_local import LocalBinance
from tests.e2e import servers, ws_client
from tests.e2e.conftest import GraphQLClient
from tests.integration.test_resting_orders import ENTRY, binance, bought, scheduled, unconfirmed

pytest_plugins = ["tests.binance_local.fixtures"]  # local_binance
__all__ = ["binance"]  # the fixture, imported for this module's tests

ORDERS = """
query($s: ID, $p: ID, $status: OrderStatus, $first: Int!, $after: String) {
  orders(strategyId: $s, positionId: $p, status: $status, first: $first, after: $after) {
    nodes { id clientOrderId side type timeInForce purpose status reason price requestedQuote requestedQuantity
            filledQuantity averagePrice fee feeAsset exchangeOrderId strategyId positionId
            strategy { id } position { id } symbol { symbol } }
    pageInfo { hasNextPage endCursor }
  }
}
"""
E = Decimal("102498.78")  # the demo channel's entry level


def summary(nodes: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(purpose, status, type) of each order, oldest first."""
    return [(n["purpose"], n["status"], n["type"]) for n in reversed(nodes)]


async def entry_tick(db: App) -> None:
    """A rise through the demo channel's entry level: the engine enters (rule 1)."""
    db.price_book.set("BTCUSDT", E + 1)
    await services.process_price_move(
        cmds.ProcessPriceMove(1, E - 100, E + 1, datetime.now(UTC)), db.uow(), db.exchange
    )


# ---------------------------------------------------------------- paper


class FaultyPaper(PaperExchange):
    """Paper, with the exchange's refusals and silences of Binance, one order at a time."""

    refuse_next = False
    silent_next = False

    async def market_buy(self, symbol: Symbol, client_order_id: str, **kw: Any) -> Execution:
        if self.refuse_next:
            self.refuse_next = False
            raise PermanentExchangeError("Account has insufficient balance for requested action.", code=-2010)
        if self.silent_next:
            self.silent_next = False
            raise TemporaryExchangeError("Timeout waiting for the exchange.")
        return await super().market_buy(symbol, client_order_id, **kw)


async def test_orders_on_paper_filled_refused_and_unknown(db: App, gql: GraphQLClient) -> None:
    await seed_demo(db.uow, db.exchange)
    paper = db.exchange = FaultyPaper(db.prices, db.settings.fee_rate)
    db.price_book.set("BTCUSDT", Decimal(102500))
    position = await services.buy(cmds.Buy(1, quote_amount=Decimal(400)), db.uow(), db.exchange, db.prices)
    paper.refuse_next = True
    await entry_tick(db)  # the entry is refused by the exchange: skipped, the order kept REJECTED
    paper.silent_next = True
    with pytest.raises(OrderOutcomeUnknown):
        await services.buy(cmds.Buy(1, quote_amount=Decimal(100)), db.uow(), db.exchange, db.prices)

    nodes = (await gql.data(ORDERS, first=10))["orders"]["nodes"]
    assert summary(nodes) == [
        ("MANUAL_BUY", "FILLED", "MARKET"),
        ("ENTRY", "REJECTED", "MARKET"),
        ("MANUAL_BUY", "UNKNOWN", "MARKET"),
    ]
    unknown, rejected, filled = nodes
    assert rejected["reason"] == "Account has insufficient balance for requested action."
    assert unknown["reason"] == "Timeout waiting for the exchange." and unknown["filledQuantity"] == "0"
    assert (rejected["clientOrderId"], rejected["requestedQuote"]) == ("cr-e1-2", "400")
    assert filled["positionId"] == str(position.id) == filled["position"]["id"]
    assert filled["averagePrice"] == "102500" and filled["feeAsset"] == "BTC" and filled["exchangeOrderId"]
    assert {n["strategy"]["id"] for n in nodes} == {"1"} and {n["symbol"]["symbol"] for n in nodes} == {"BTCUSDT"}

    # Filters and pages.
    only = await gql.data(ORDERS, status="REJECTED", first=10)
    assert [n["id"] for n in only["orders"]["nodes"]] == [rejected["id"]]
    of_position = await gql.data(ORDERS, p=str(position.id), first=10)
    assert [n["id"] for n in of_position["orders"]["nodes"]] == [filled["id"]]
    first = (await gql.data(ORDERS, s="1", first=2))["orders"]
    assert [n["id"] for n in first["nodes"]] == [unknown["id"], rejected["id"]] and first["pageInfo"]["hasNextPage"]
    rest = (await gql.data(ORDERS, s="1", first=2, after=first["pageInfo"]["endCursor"]))["orders"]
    assert [n["id"] for n in rest["nodes"]] == [filled["id"]] and not rest["pageInfo"]["hasNextPage"]
    too_many = await gql.error(ORDERS, first=101)
    assert too_many["extensions"]["code"] == "VALIDATION"

    # The position's orders and the trade's order, through the loaders.
    data = await gql.data(
        "query($p: ID!) { position(id: $p) { orders { id status } trades { order { id clientOrderId } } } }",
        p=str(position.id),
    )
    assert data["position"]["orders"] == [{"id": filled["id"], "status": "FILLED"}]
    assert data["position"]["trades"] == [{"order": {"id": filled["id"], "clientOrderId": filled["clientOrderId"]}}]


# ---------------------------------------------------------------- the local Binance


async def test_orders_on_binance_resting_refused_and_unknown(
    db: App, binance: LocalBinance, gql: GraphQLClient
) -> None:
    position = await scheduled(db, binance)  # a manual buy, then its LIMIT GTC sell resting on Binance
    # (An entry the balance cannot cover is no longer sent to be refused: it is skipped before
    # sending — issue 11 item 6. A refusal by Binance itself, kept with its reason, is the next test's.)
    with pytest.raises(OrderOutcomeUnknown):
        await unconfirmed(
            binance, services.buy(cmds.Buy(1, quote_amount=Decimal(100)), db.uow(), db.exchange, db.prices), 2
        )

    nodes = (await gql.data(ORDERS, first=10))["orders"]["nodes"]
    assert summary(nodes) == [
        ("MANUAL_BUY", "FILLED", "MARKET"),
        ("SCHEDULED_EXIT", "OPEN", "LIMIT"),
        ("MANUAL_BUY", "UNKNOWN", "MARKET"),
    ]
    unknown, resting, filled = nodes
    assert (resting["timeInForce"], resting["price"], resting["requestedQuantity"]) == ("GTC", "103380.7", "0.00389")
    assert resting["positionId"] == str(position.id) and resting["filledQuantity"] == "0" and resting["exchangeOrderId"]
    assert unknown["reason"] and unknown["exchangeOrderId"] is None
    assert filled["averagePrice"] == str(ENTRY)

    # The position shows its buy and its resting sell; once reconciled, the unknown buy is filled.
    data = await gql.data("query($p: ID!) { position(id: $p) { orders { status purpose } } }", p=str(position.id))
    assert data["position"]["orders"] == [
        {"status": "FILLED", "purpose": "MANUAL_BUY"},
        {"status": "OPEN", "purpose": "SCHEDULED_EXIT"},
    ]
    assert await services.reconcile_orders(db.uow(), db.exchange) >= 1
    reconciled = await gql.data(ORDERS, status="UNKNOWN", first=10)
    assert reconciled["orders"]["nodes"] == []
    assert (await gql.data(ORDERS, first=1))["orders"]["nodes"][0]["status"] == "FILLED"


async def test_a_refused_order_of_the_engine_names_the_exchanges_reason_on_binance(
    db: App, binance: LocalBinance, gql: GraphQLClient
) -> None:
    """The same refusal seen from the position side: a bought position whose resting sell Binance
    refused keeps the refused order with the reason, and the events list says so too."""
    position = await bought(db, binance)
    binance.set_balance("BTC", Decimal(0))  # the sell cannot be covered
    assert position.id is not None
    await services.process_candle_close(
        cmds.ProcessCandleClose(1, "4h", Decimal(100000), datetime.now(UTC)), db.uow(), db.exchange
    )  # a channel break: the position is scheduled, its resting sell refused
    data = await gql.data("query($p: ID!) { position(id: $p) { status orders { status reason purpose } } }",
                          p=str(position.id))  # fmt: skip
    assert data["position"]["status"] == "SCHEDULED"
    assert [o["status"] for o in data["position"]["orders"]] == ["FILLED", "REJECTED"]
    assert "insufficient balance" in data["position"]["orders"][1]["reason"].lower()
    events = await gql.data('{ events(types: ["order_refused"]) { nodes { type positionId } } }')
    assert events["events"]["nodes"] == [{"type": "order_refused", "positionId": str(position.id)}]


# ---------------------------------------------------------------- live


async def test_order_changes_reach_the_owners_position_events_only(db: App) -> None:
    await seed_demo(db.uow, db.exchange)
    bob = await services.create_client(cmds.CreateClient("Bob"), db.uow())
    assert bob.id is not None
    other = await services.create_strategy(
        cmds.CreateStrategy(bob.id, "BTCUSDT", "Bob BTC", Channel(Decimal(100489), Decimal(110626))),
        db.uow(), db.exchange,
    )  # fmt: skip
    assert other.id is not None
    await services.allocate_capital(cmds.AllocateCapital(other.id, Decimal(1000)), db.uow(), db.exchange)
    db.price_book.set("BTCUSDT", Decimal(102500))
    token, _ = access_tokens(db.settings).issue(1)
    query = """subscription { positionEvents(includeOrders: true) {
        id type strategyId positionId message order { clientOrderId status side purpose filledQuantity } } }"""
    async with (
        servers.api_server(db) as host,
        ws_client.connect(f"ws://{host}/graphql", {"Authorization": f"Bearer {token}"}) as subs,
    ):
        plain = await subs.subscribe("subscription { positionEvents { type } }")
        events = await subs.subscribe(query)
        # Both registered: a harmless event (a capital allocation) reaches both.
        for _ in range(100):
            await services.allocate_capital(cmds.AllocateCapital(1, Decimal(1)), db.uow(), db.exchange)
            if subs.received[plain] and subs.received[events]:
                break
            await asyncio.sleep(0.1)
        await services.buy(cmds.Buy(other.id, quote_amount=Decimal(50)), db.uow(), db.exchange, db.prices)  # Bob's
        mine = await services.buy(cmds.Buy(1, quote_amount=Decimal(50)), db.uow(), db.exchange, db.prices)

        def types(op_id: str) -> list[str]:
            return [m["data"]["positionEvents"]["type"] for m in subs.received[op_id]]

        async with asyncio.timeout(10):
            while "position_opened" not in types(plain) or types(events).count("order_updated") < 1:
                await asyncio.sleep(0.05)
        received = [m["data"]["positionEvents"] for m in subs.received[events]]
    orders = [e for e in received if e["type"] == "order_updated"]
    assert {e["strategyId"] for e in received} == {"1"}  # never Bob's order nor his events
    assert [o["order"] for o in orders] == [
        {"clientOrderId": "cr-b1-1", "status": "FILLED", "side": "BUY", "purpose": "MANUAL_BUY",
         "filledQuantity": "0.00048"},
    ]  # fmt: skip
    assert orders[0]["positionId"] == str(mine.id) and "filled" in orders[0]["message"]
    assert all(e["order"] is None for e in received if e["type"] != "order_updated")
    assert "order_updated" not in types(plain)  # only with includeOrders
