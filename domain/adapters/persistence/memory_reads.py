"""The API's reads on the in-memory store, answering the same ports as PostgreSQL's
(`domain.adapters.persistence.reads`, `.snapshot`): `MemoryBatchReader` (`domain.ports.BatchReader`)
and `MemoryReadSnapshot` (`domain.ports.ReadSnapshot`), whose reads all see the store as it was
committed at the first of them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Self

from domain.adapters.persistence.memory import MemoryStore, MemoryUnitOfWork
from domain.model import Ledger, Order, PositionStatus, StrategyEvent
from domain.ports import Page
from domain.rows import PositionRow, StrategyRow, SymbolRow, TradeRow, row_of

if TYPE_CHECKING:
    from domain.adapters.persistence.memory import MemoryUnitOfWorkFactory
    from domain.ports import UnitOfWork


def _newest_per(rows: list[Any], key: Callable[[Any], int], per: int) -> list[Any]:
    """The newest `per` rows of each key, newest first (rows come oldest first)."""
    kept: dict[int, int] = defaultdict(int)
    out = []
    for row in reversed(rows):
        if kept[key(row)] < per:
            kept[key(row)] += 1
            out.append(row)
    return out


class MemoryBatchReader:
    def __init__(self, uow: MemoryUnitOfWork) -> None:
        self.uow = uow

    def _by_ids(self, table: str, ids: Sequence[int]) -> list[Any]:
        wanted = set(ids)
        return self.uow._select(table, lambda o: o.id in wanted, candidates=wanted)

    async def strategies(self, ids: Sequence[int]) -> Sequence[StrategyRow]:
        return [row_of(StrategyRow, s) for s in self._by_ids("strategies", ids)]

    async def symbols(self, ids: Sequence[int]) -> Sequence[SymbolRow]:
        return [row_of(SymbolRow, s) for s in self._by_ids("symbols", ids)]

    async def positions(self, ids: Sequence[int]) -> Sequence[PositionRow]:
        return [row_of(PositionRow, p) for p in self._by_ids("positions", ids)]

    async def trades_by_position(self, position_ids: Sequence[int]) -> Sequence[TradeRow]:
        wanted = set(position_ids)
        return [row_of(TradeRow, t) for t in self.uow._select("trades", lambda t: t.position_id in wanted)]

    async def positions_by_strategy(
        self, strategy_ids: Sequence[int], status: PositionStatus | None, per_strategy: int
    ) -> Sequence[PositionRow]:
        wanted = set(strategy_ids)
        rows = self.uow._select(
            "positions", lambda p: p.strategy_id in wanted and (status is None or p.status is status)
        )
        return [row_of(PositionRow, p) for p in _newest_per(rows, lambda p: p.strategy_id, per_strategy)]

    async def strategies_page(
        self, client_id: int, page: Page, *, include_archived: bool = False
    ) -> Sequence[StrategyRow]:
        rows = self.uow._page(
            "strategies", page, lambda s: s.client_id == client_id and (include_archived or s.archived_at is None)
        )
        return [row_of(StrategyRow, s) for s in rows]

    async def positions_page(
        self,
        page: Page,
        *,
        client_id: int | None = None,
        status: PositionStatus | None = None,
        strategy_id: int | None = None,
        since: datetime | None = None,
    ) -> Sequence[PositionRow]:
        rows = await self.uow.positions.list(
            page, client_id=client_id, status=status, strategy_id=strategy_id, since=since
        )
        return [row_of(PositionRow, p) for p in rows]

    async def trades_page(
        self,
        page: Page,
        *,
        client_id: int | None = None,
        symbol_id: int | None = None,
        strategy_id: int | None = None,
        position_id: int | None = None,
    ) -> Sequence[TradeRow]:
        rows = await self.uow.trades.list(
            page, client_id=client_id, symbol_id=symbol_id, strategy_id=strategy_id, position_id=position_id
        )
        return [row_of(TradeRow, t) for t in rows]

    async def ledgers(self, strategy_ids: Sequence[int]) -> dict[int, Ledger]:
        found = self._by_ids("strategies", strategy_ids)
        return {s.id: await self.uow.allocations.ledger(s.id) for s in found}

    async def events_by_strategy(
        self,
        strategy_ids: Sequence[int],
        per_strategy: int,
        *,
        before_id: int | None = None,
        types: Sequence[str] | None = None,
    ) -> Sequence[StrategyEvent]:
        wanted = set(strategy_ids)

        def where(e: StrategyEvent) -> bool:
            return (
                e.strategy_id in wanted
                and (before_id is None or (e.id is not None and e.id < before_id))
                and (types is None or e.type in types)
            )

        return _newest_per(self.uow._select("events", where), lambda e: e.strategy_id, per_strategy)

    async def orders(self, ids: Sequence[int]) -> Sequence[Order]:
        return self._by_ids("orders", ids)

    async def orders_by_position(self, position_ids: Sequence[int]) -> Sequence[Order]:
        wanted = set(position_ids)
        return self.uow._select("orders", lambda o: o.position_id in wanted)


class _SnapshotUnit(MemoryUnitOfWork):
    """One transaction over a copy of the store taken at the first read; never commits."""

    def __init__(self, store: MemoryStore) -> None:
        super().__init__(store)
        self._begin()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *args: object) -> None:
        pass

    async def commit(self) -> None:
        raise RuntimeError("A read snapshot does not commit: use a unit of work of the services.")


class MemoryReadSnapshot:
    def __init__(self, factory: MemoryUnitOfWorkFactory) -> None:
        self._factory = factory
        self._isolated = False
        self._unit: _SnapshotUnit | None = None

    def unit(self) -> UnitOfWork:
        if self._isolated:
            return self._factory()  # type: ignore[return-value]  # no alerts nor reports in memory
        if self._unit is None:
            self._unit = _SnapshotUnit(self._factory.store.copy())
        return self._unit  # type: ignore[return-value]

    def isolate(self) -> None:
        self._isolated = True

    async def close(self) -> None:
        self._unit = None
