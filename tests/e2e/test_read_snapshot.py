"""One read snapshot per request (SPEC §9; domain.ports.ReadSnapshot): the loaders and the queries
of a response read in one read-only REPEATABLE READ transaction, on one connection, closed with the
response. A write committed between two loader batches of one request is not half-visible; a
mutation's payload is read after its own commit; nothing stays checked out after a response, with
or without errors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest
from sqlalchemy import event, text

from domain import commands as cmds
from domain import services
from domain.adapters.bootstrap import App
from domain.adapters.persistence.reads import SqlAlchemyBatchReader
from domain.adapters.persistence.snapshot import SnapshotRefusesWrites, SqlAlchemyReadSnapshot
from domain.model import PositionStatus
from domain.ports import Page
from domain.rows import TradeRow
from tests.e2e.conftest import GraphQLClient
from tests.e2e.test_dataloaders import _positions
from tests.e2e.ws_client import connect

QUERY = """
{
  positions(first: 50) {
    nodes { id status quantity trades { side } strategy { id name balance { committed } } }
  }
}
"""


async def _open_positions(db: App) -> list[int]:
    async with db.uow() as uow:
        found = await uow.positions.list(Page(50), status=PositionStatus.OPEN)
    return [p.id for p in found if p.id is not None]


def _write_before_the_trades_are_read(
    db: App, monkeypatch: pytest.MonkeyPatch, write: Callable[[], Awaitable[None]]
) -> None:
    """Commit `write` (in transactions of its own) just before the request's trades batch reads,
    after its positions page was read."""
    original = SqlAlchemyBatchReader.trades_by_position
    done: list[bool] = []

    async def trades_by_position(self: SqlAlchemyBatchReader, ids: Sequence[int]) -> Sequence[TradeRow]:
        if not done:
            done.append(True)
            await write()
        return await original(self, ids)

    monkeypatch.setattr(SqlAlchemyBatchReader, "trades_by_position", trades_by_position)


async def _sell_and_rename(db: App, position_id: int) -> None:
    await services.sell(cmds.Sell(position_id, accept_loss=True), db.uow(), db.exchange, db.prices)
    async with db.engine.begin() as conn:
        await conn.execute(text("UPDATE strategies SET name = name || ' (renamed)'"))


async def _node(db: App, gql: GraphQLClient, monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, Any], int]:
    await _positions(db, 6)
    await gql.login()
    target = (await _open_positions(db))[0]
    _write_before_the_trades_are_read(db, monkeypatch, lambda: _sell_and_rename(db, target))
    data = await gql.data(QUERY)
    monkeypatch.undo()
    return next(n for n in data["positions"]["nodes"] if n["id"] == str(target)), target


async def test_a_write_between_two_loader_batches_is_not_half_visible(
    db: App, gql: GraphQLClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    node, target = await _node(db, gql, monkeypatch)
    # The page said OPEN; the trades, the strategy and its balance, read after the sale committed,
    # agree with it: no sell, the old name, the position's cost still committed.
    assert node["status"] == "OPEN"
    assert [t["side"] for t in node["trades"]] == ["BUY"]
    assert not node["strategy"]["name"].endswith("(renamed)")
    assert node["strategy"]["balance"]["committed"] != "0"
    # The write did commit: the next request sees all of it.
    after = next(n for n in (await gql.data(QUERY))["positions"]["nodes"] if n["id"] == str(target))
    assert after["status"] == "CLOSED" and [t["side"] for t in after["trades"]] == ["BUY", "SELL"]
    assert after["strategy"]["name"].endswith("(renamed)")


async def test_without_the_snapshot_the_same_write_is_half_visible(
    db: App, gql: GraphQLClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: with each batch in a transaction of its own (as before), the test above fails."""
    monkeypatch.setattr(SqlAlchemyReadSnapshot, "unit", lambda self: self._factory())
    node, _ = await _node(db, gql, monkeypatch)
    assert node["status"] == "OPEN" and [t["side"] for t in node["trades"]] == ["BUY", "SELL"]


async def test_a_request_reads_on_one_connection_in_a_read_only_repeatable_read_transaction(
    db: App, gql: GraphQLClient
) -> None:
    await _positions(db, 6)
    await gql.login()
    checkouts: list[object] = []

    def checkout(*args: object) -> None:
        checkouts.append(args)

    event.listen(db.engine.sync_engine.pool, "checkout", checkout)
    try:
        await gql.data(QUERY)
    finally:
        event.remove(db.engine.sync_engine.pool, "checkout", checkout)
    assert len(checkouts) == 1
    assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]

    snapshot = db.uow.snapshot()
    async with snapshot.unit() as uow:
        isolation = (await uow.session.execute(text("SHOW transaction_isolation"))).scalar_one()
        read_only = (await uow.session.execute(text("SHOW transaction_read_only"))).scalar_one()
        with pytest.raises(SnapshotRefusesWrites):
            await uow.commit()
    await snapshot.close()
    assert (isolation, read_only) == ("repeatable read", "on")
    assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_the_snapshot_is_closed_when_the_response_has_errors(db: App, gql: GraphQLClient) -> None:
    await _positions(db, 3)
    body = await gql.execute('{ positions(first: 5) { nodes { id } } position(id: "999999") { id } }')
    assert [e["extensions"]["code"] for e in body["errors"]] == ["NOT_FOUND"]
    body = await gql.execute('{ positions(first: 5, after: "not a cursor") { nodes { id } } }')
    assert [e["extensions"]["code"] for e in body["errors"]] == ["VALIDATION"]
    assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_each_mutation_of_a_document_reads_its_own_commit(db: App, gql: GraphQLClient) -> None:
    await _positions(db, 6)
    first, second = (await _open_positions(db))[:2]
    data = await gql.data(
        f"""mutation {{
          a: sell(positionId: "{first}", acceptLoss: true) {{ status trades {{ side }} strategy {{ name }} }}
          b: sell(positionId: "{second}", acceptLoss: true) {{ status trades {{ side }} }}
        }}"""
    )
    for name in ("a", "b"):
        assert data[name]["status"] == "CLOSED" and [t["side"] for t in data[name]["trades"]] == ["BUY", "SELL"]
    assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_a_websocket_operation_reads_in_a_snapshot_of_its_own(db: App, gql: GraphQLClient) -> None:
    from tests.e2e import servers

    await _positions(db, 6)
    await gql.login()
    async with servers.api_server(db) as host:
        async with connect(f"ws://{host}/graphql", {"Authorization": f"Bearer {gql.access_token}"}) as ws:
            first = await ws.subscribe(QUERY)
            [page] = await ws.wait_for(first, 1)
            target = (await _open_positions(db))[0]
            await services.sell(cmds.Sell(target, accept_loss=True), db.uow(), db.exchange, db.prices)
            second = await ws.subscribe(QUERY)
            [again] = await ws.wait_for(second, 1)
    before = next(n for n in page["data"]["positions"]["nodes"] if n["id"] == str(target))
    after = next(n for n in again["data"]["positions"]["nodes"] if n["id"] == str(target))
    assert before["status"] == "OPEN" and after["status"] == "CLOSED"  # nothing kept from the first
    assert [t["side"] for t in after["trades"]] == ["BUY", "SELL"]
    assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
