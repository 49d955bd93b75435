"""Per-request DataLoaders (aiodataloader). Each batch runs one SQL statement, whatever its size,
so a list query costs a fixed number of statements. Created per request in `get_context`: a
loader shared across requests would cache one client's rows for another."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Coroutine, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aiodataloader import DataLoader

from domain.model import Ledger, Position, PositionStatus, Strategy, StrategyEvent, Symbol, Trade
from domain.ports import BatchReader, UnitOfWorkFactory

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

NESTED_LIMIT = 100  # newest nested positions/events per strategy


def _loader(
    uow_factory: UnitOfWorkFactory,
    fetch: Callable[[BatchReader, list[Any]], Coroutine[Any, Any, Any]],
    arrange: Callable[[list[Any], Any], list[Any]],
) -> DataLoader:
    async def batch(keys: list[Any]) -> list[Any]:
        async with uow_factory() as uow:
            return arrange(keys, await fetch(uow.batch, keys))

    return DataLoader(batch_load_fn=batch)


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
    strategy: DataLoader  # id -> Strategy | None
    symbol: DataLoader  # id -> Symbol | None
    position: DataLoader  # id -> Position | None
    trades_by_position: DataLoader  # position id -> [Trade]
    positions_by_strategy: dict[PositionStatus | None, DataLoader]  # strategy id -> [Position]
    ledger: DataLoader  # strategy id -> Ledger
    events_by_strategy: DataLoader  # strategy id -> [StrategyEvent]

    def positions_of(self, status: PositionStatus | None) -> DataLoader:
        return self.positions_by_strategy[status]


def make_loaders(uow_factory: UnitOfWorkFactory) -> Loaders:
    def positions_loader(status: PositionStatus | None) -> DataLoader:
        return _loader(
            uow_factory,
            lambda b, keys: b.positions_by_strategy(keys, status, NESTED_LIMIT),
            _grouped("strategy_id"),
        )

    return Loaders(
        strategy=_loader(uow_factory, lambda b, keys: b.strategies(keys), _by_id),
        symbol=_loader(uow_factory, lambda b, keys: b.symbols(keys), _by_id),
        position=_loader(uow_factory, lambda b, keys: b.positions(keys), _by_id),
        trades_by_position=_loader(uow_factory, lambda b, keys: b.trades_by_position(keys), _grouped("position_id")),
        positions_by_strategy={s: positions_loader(s) for s in (None, *PositionStatus)},
        ledger=_loader(
            uow_factory,
            lambda b, keys: b.ledgers(keys),
            lambda keys, found: [found.get(k, Ledger(0, 0, 0)) for k in keys],  # type: ignore[arg-type]
        ),
        events_by_strategy=_loader(
            uow_factory, lambda b, keys: b.events_by_strategy(keys, NESTED_LIMIT), _grouped("strategy_id")
        ),
    )


__all__ = ["Loaders", "Position", "Strategy", "StrategyEvent", "Symbol", "Trade", "make_loaders"]
