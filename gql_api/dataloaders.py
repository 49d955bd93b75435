"""Per-request DataLoaders (aiodataloader). Each batch runs one SQL statement, whatever its size,
so a list query costs a fixed number of statements, all in the request's read snapshot
(`domain.ports.ReadSnapshot`: one transaction, one connection). Created per request in
`get_context`: a loader shared across requests would cache one client's rows for another."""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Coroutine, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aiodataloader import DataLoader

from domain.model import Ledger, Order, Position, PositionStatus, Strategy, StrategyEvent, Symbol, Trade
from domain.ports import BatchReader, ReadSnapshot

K = TypeVar("K", bound=Hashable)
Loader = DataLoader[Any, Any]
V = TypeVar("V")

NESTED_LIMIT = 100  # newest nested positions per strategy


def _loader(
    snapshot: ReadSnapshot,
    fetch: Callable[[BatchReader, list[Any]], Coroutine[Any, Any, Any]],
    arrange: Callable[[list[Any], Any], list[Any]],
    cache: bool = True,
) -> Loader:
    async def batch(keys: list[Any]) -> list[Any]:
        async with snapshot.unit() as uow:
            return arrange(keys, await fetch(uow.batch, keys))

    return Loader(batch_load_fn=batch, cache=cache)


def _by_id(keys: list[int], rows: Sequence[Any]) -> list[Any]:
    """Results in key order, None for misses (STYLE §4)."""
    found = {row.id: row for row in rows}
    return [found.get(k) for k in keys]


def _grouped(attr: str) -> Callable[[list[int], Sequence[Any]], list[list[Any]]]:
    def arrange(keys: list[int], rows: Sequence[Any]) -> list[list[Any]]:
        groups: dict[int, list[Any]] = defaultdict(list)
        for row in rows:
            groups[getattr(row, attr)].append(row)
        return [groups.get(k, []) for k in keys]

    return arrange


@dataclass
class Loaders:
    strategy: Loader  # id -> StrategyRow | None
    symbol: Loader  # id -> SymbolRow | None
    position: Loader  # id -> PositionRow | None
    trades_by_position: Loader  # position id -> [TradeRow]
    positions_by_strategy: dict[PositionStatus | None, Loader]  # strategy id -> [PositionRow]
    ledger: Loader  # strategy id -> Ledger
    # (page size + 1, before id, types) -> a loader: strategy id -> [StrategyEvent], one per page asked for
    events_by_strategy: Callable[[int, int | None, tuple[str, ...] | None], Loader]
    order: Loader  # id -> Order | None
    orders_by_position: Loader  # position id -> [Order], oldest first

    def positions_of(self, status: PositionStatus | None) -> Loader:
        return self.positions_by_strategy[status]

    def events_of(self, limit: int, before_id: int | None, types: tuple[str, ...] | None) -> Loader:
        return self.events_by_strategy(limit, before_id, types)


def make_loaders(snapshot: ReadSnapshot, *, cache: bool = True) -> Loaders:
    """The loaders of one request, reading in `snapshot`. `cache=False`: each load reads afresh
    (batched still), for a context that outlives one response (a subscription's)."""

    def loader(
        fetch: Callable[[BatchReader, list[Any]], Coroutine[Any, Any, Any]],
        arrange: Callable[[list[Any], Any], list[Any]],
    ) -> Loader:
        return _loader(snapshot, fetch, arrange, cache)

    def positions_loader(status: PositionStatus | None) -> Loader:
        return loader(lambda b, keys: b.positions_by_strategy(keys, status, NESTED_LIMIT), _grouped("strategy_id"))

    @functools.cache  # this request's loaders, one per page of events asked for
    def events_loader(limit: int, before_id: int | None, types: tuple[str, ...] | None) -> Loader:
        return loader(
            lambda b, keys: b.events_by_strategy(keys, limit, before_id=before_id, types=types),
            _grouped("strategy_id"),
        )

    return Loaders(
        strategy=loader(lambda b, keys: b.strategies(keys), _by_id),
        symbol=loader(lambda b, keys: b.symbols(keys), _by_id),
        position=loader(lambda b, keys: b.positions(keys), _by_id),
        trades_by_position=loader(lambda b, keys: b.trades_by_position(keys), _grouped("position_id")),
        positions_by_strategy={s: positions_loader(s) for s in (None, *PositionStatus)},
        ledger=loader(
            lambda b, keys: b.ledgers(keys),
            lambda keys, found: [found.get(k, Ledger(0, 0, 0)) for k in keys],  # type: ignore[arg-type]
        ),
        events_by_strategy=events_loader,
        order=loader(lambda b, keys: b.orders(keys), _by_id),
        orders_by_position=loader(lambda b, keys: b.orders_by_position(keys), _grouped("position_id")),
    )


__all__ = ["Loaders", "Order", "Position", "Strategy", "StrategyEvent", "Symbol", "Trade", "make_loaders"]
