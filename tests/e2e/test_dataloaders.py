"""Nested fields go through per-request DataLoaders: listing positions with their strategy, symbol
and trades costs a fixed number of SQL statements, whatever the length of the list."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

from sqlalchemy import event

from domain import commands as cmds
from domain import services
from domain.adapters.bootstrap import App
from domain.adapters.seed import seed_demo
from domain.channel import Channel
from tests.e2e.conftest import GraphQLClient

QUERY = """
query($first: Int!) {
  positions(first: $first) {
    nodes {
      id status quantity
      strategy { name symbol { symbol } balance { free } }
      symbol { symbol tickSize }
      trades { side price quantity symbol { symbol } }
    }
    pageInfo { hasNextPage endCursor }
  }
}
"""


@contextmanager
def count_statements(app: App) -> Iterator[list[str]]:
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        statements.append(statement)

    event.listen(app.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(app.engine.sync_engine, "before_cursor_execute", record)


async def _positions(db: App, n: int) -> None:
    await seed_demo(db.uow, db.exchange)
    strategies = []
    for symbol, base, top in (("ETHUSDT", "2400", "2800"), ("BTCUSDT", "90000", "120000")):
        s = await services.create_strategy(
            cmds.CreateStrategy(client_id=1, symbol=symbol, name=f"{symbol} loader test", channel=Channel(Decimal(base),
                                Decimal(top), capital_percentage=Decimal("1"))),
            db.uow(), db.exchange,
        )  # fmt: skip
        assert s.id is not None
        await services.allocate_capital(cmds.AllocateCapital(s.id, Decimal("100000")), db.uow(), db.exchange)
        strategies.append(s.id)
    db.price_book.set("ETHUSDT", Decimal("2450"))
    db.price_book.set("BTCUSDT", Decimal("100000"))
    for i in range(n):
        position = await services.buy(
            cmds.Buy(strategies[i % 2], quote_amount=Decimal("50")), db.uow(), db.exchange, db.prices
        )
        if i % 3 == 0:
            assert position.id is not None
            await services.sell(cmds.Sell(position.id, accept_loss=True), db.uow(), db.exchange, db.prices)


async def test_positions_with_nested_fields_cost_a_fixed_number_of_statements(db: App, gql: GraphQLClient) -> None:
    await _positions(db, 60)
    await gql.login()  # before counting: an authenticated request itself costs no statement
    counts = {}
    for first in (2, 10, 50):
        with count_statements(db) as statements:
            data = await gql.data(QUERY, first=first)
        nodes = data["positions"]["nodes"]
        assert len(nodes) == first
        assert all(node["trades"] for node in nodes)
        counts[first] = len(statements)
    # positions page, strategies, symbols, trades, ledgers: one statement each.
    assert counts[2] == counts[10] == counts[50], counts
    assert counts[50] <= 6, counts


async def test_loaders_return_results_in_key_order_with_none_for_misses(db: App) -> None:
    from gql_api.dataloaders import make_loaders

    await seed_demo(db.uow, db.exchange)
    snapshot = db.uow.snapshot()
    loaders = make_loaders(snapshot)
    symbols = await loaders.symbol.load_many([2, 999, 1])
    await snapshot.close()
    assert [s.symbol if s else None for s in symbols] == ["ETHUSDT", None, "BTCUSDT"]


ORDERS_AND_EVENTS = """
query($first: Int!) {
  positions(first: $first) {
    nodes {
      id orders { id status } trades { order { clientOrderId } }
      strategy { events(first: 3) { nodes { type } } }
    }
  }
  orders(first: $first) { nodes { id position { id } strategy { name } symbol { symbol } } }
}
"""


async def test_orders_and_events_of_a_list_cost_a_fixed_number_of_statements(db: App, gql: GraphQLClient) -> None:
    """Position.orders, Trade.order, Order.position/strategy/symbol and Strategy.events are loaded in
    batches: one statement per kind, whatever the length of the list."""
    await _positions(db, 60)
    await gql.login()
    counts = {}
    for first in (2, 50):
        with count_statements(db) as statements:
            data = await gql.data(ORDERS_AND_EVENTS, first=first)
        nodes = data["positions"]["nodes"]
        assert len(nodes) == first and all(n["orders"] and n["strategy"]["events"]["nodes"] for n in nodes)
        assert all(t["order"]["clientOrderId"] for n in nodes for t in n["trades"])
        assert len(data["orders"]["nodes"]) == first
        counts[first] = len(statements)
    assert counts[2] == counts[50], counts
    assert counts[50] <= 10, counts
