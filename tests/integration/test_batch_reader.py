"""The API's reads answer alike on PostgreSQL and on the in-memory store (domain.ports.BatchReader,
ReadSnapshot): the same history, built by the services on both, reads back as the same rows —
exact Decimals, the same order, the same pages — and a snapshot sees the data as of its first read
on both."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from decimal import Decimal
from typing import Any

import pytest

from domain import commands as cmds
from domain import services
from domain.adapters.bootstrap import App
from domain.channel import Channel
from domain.model import PositionStatus
from domain.ports import BatchReader, Exchange, Page, PriceSource, ReadSnapshot
from tests.unit.fakes import World

D = Decimal
TIMES = {"created_at", "updated_at", "closed_at", "executed_at", "channel_broken_at", "archived_at"}


async def _history(uow: Any, exchange: Exchange, book: Any, prices: PriceSource) -> None:
    """A client, two strategies with capital, six positions of which two sold."""
    client = await services.create_client(cmds.CreateClient("Reader"), uow())
    assert client.id is not None
    ids = []
    for symbol, base, top in (("BTCUSDT", "90000", "120000"), ("ETHUSDT", "2400", "2800")):
        channel = Channel(D(base), D(top), capital_percentage=D(1))
        strategy = await services.create_strategy(
            cmds.CreateStrategy(client.id, symbol, f"{symbol} reads", channel), uow(), exchange
        )
        assert strategy.id is not None
        await services.allocate_capital(cmds.AllocateCapital(strategy.id, D(100000)), uow(), exchange)
        ids.append(strategy.id)
    book.set("BTCUSDT", D("100000"))
    book.set("ETHUSDT", D("2450"))
    for i in range(6):
        position = await services.buy(cmds.Buy(ids[i % 2], quote_amount=D("50")), uow(), exchange, prices)
        if i in (1, 4):
            assert position.id is not None
            await services.sell(cmds.Sell(position.id, accept_loss=True), uow(), exchange, prices)


def _plain(rows: Sequence[Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in asdict(r).items() if k not in TIMES} for r in rows]


async def _reads(batch: BatchReader) -> dict[str, Any]:
    return {
        "strategies": _plain(sorted(await batch.strategies([2, 1, 99]), key=lambda r: r.id)),
        "symbols": _plain(sorted(await batch.symbols([1, 2]), key=lambda r: r.id)),
        "positions": _plain(sorted(await batch.positions([6, 1, 3]), key=lambda r: r.id)),
        "trades": _plain(await batch.trades_by_position([1, 2, 5])),
        "newest per strategy": _plain(await batch.positions_by_strategy([1, 2], None, 2)),
        "open per strategy": _plain(await batch.positions_by_strategy([1, 2], PositionStatus.OPEN, 5)),
        "strategies page": _plain(await batch.strategies_page(1, Page(10))),
        "positions page": _plain(await batch.positions_page(Page(3, before_id=6), client_id=1)),
        "closed positions": _plain(await batch.positions_page(Page(10), status=PositionStatus.CLOSED)),
        "positions of a strategy": _plain(await batch.positions_page(Page(10), strategy_id=2)),
        "trades page": _plain(await batch.trades_page(Page(4), client_id=1)),
        "trades of a position": _plain(await batch.trades_page(Page(4), position_id=2)),
        "trades of a symbol": _plain(await batch.trades_page(Page(10), symbol_id=2)),
        "ledgers": await batch.ledgers([1, 2, 99]),
        "orders": sorted((o.id, o.status, o.filled_quantity) for o in await batch.orders([1, 2, 3])),
        "orders of positions": [(o.id, o.position_id) for o in await batch.orders_by_position([1, 2])],
    }


async def _read_all(snapshot: ReadSnapshot) -> dict[str, Any]:
    try:
        async with snapshot.unit() as uow:
            return await _reads(uow.batch)
    finally:
        await snapshot.close()


async def test_postgresql_and_the_memory_store_read_the_same_rows(db: App) -> None:
    world = World.make(fee_rate=db.settings.fee_rate)
    await _history(world.uow, world.exchange, world.book, world.book)
    await _history(db.uow, db.exchange, db.price_book, db.prices)
    in_memory, in_postgresql = await _read_all(world.uow.snapshot()), await _read_all(db.uow.snapshot())
    assert in_postgresql["positions"] and in_postgresql["trades"] and in_postgresql["ledgers"]
    for name in in_postgresql:
        assert in_memory[name] == in_postgresql[name], name
    price = in_postgresql["positions"][0]["entry_price"]
    assert isinstance(price, Decimal) and price == D("100000")


@pytest.mark.parametrize("store", ["postgresql", "memory"])
async def test_a_snapshot_reads_as_of_its_first_read(db: App, store: str) -> None:
    world = World.make(fee_rate=db.settings.fee_rate)
    uow, exchange, prices = (db.uow, db.exchange, db.prices) if store == "postgresql" else (
        world.uow, world.exchange, world.book)  # fmt: skip
    await _history(uow, exchange, db.price_book if store == "postgresql" else world.book, prices)
    snapshot = uow.snapshot()
    async with snapshot.unit() as reads:
        before = await reads.batch.positions_page(Page(10), status=PositionStatus.OPEN)
    await services.sell(cmds.Sell(before[0].id, accept_loss=True), uow(), exchange, prices)
    async with snapshot.unit() as reads:
        again = await reads.batch.positions_page(Page(10), status=PositionStatus.OPEN)
        trades = await reads.batch.trades_by_position([before[0].id])
        with pytest.raises(Exception, match="does not commit"):
            await reads.commit()
    await snapshot.close()
    assert [p.id for p in again] == [p.id for p in before] and len(trades) == 1
    fresh = uow.snapshot()
    fresh.isolate()  # each read a transaction of its own: sees the sale
    async with fresh.unit() as reads:
        after = await reads.batch.positions_page(Page(10), status=PositionStatus.OPEN)
    await fresh.close()
    assert [p.id for p in after] == [p.id for p in before][1:]
