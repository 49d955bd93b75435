"""In-memory fakes of the persistence ports (cosmicpython's `FakeUnitOfWork`), for unit tests.

The implementation is the in-memory unit of work that backtests run on
(`domain.adapters.persistence.memory`): one transactional store, with the semantics of the SQLAlchemy adapters
the services rely on. The names below are the ones the tests have always used.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from domain.adapters.exchanges.paper import PaperExchange
from domain.adapters.market.prices import MemoryPriceBook
from domain.adapters.persistence.memory import (
    LIVE,
    TABLE_OF,
    TABLES,
    MemoryIntegrityError,
    MemoryStore,
    MemoryUnitOfWork,
    MemoryUnitOfWorkFactory,
    clone,
    row_values,
    seeded_store,
)

FakeIntegrityError = MemoryIntegrityError
FakeStore = MemoryStore
FakeUnitOfWork = MemoryUnitOfWork
FakeUnitOfWorkFactory = MemoryUnitOfWorkFactory


@dataclass
class World:
    """The in-memory database, a price book and the real paper exchange on it."""

    store: MemoryStore
    uow: MemoryUnitOfWorkFactory
    book: MemoryPriceBook
    exchange: PaperExchange

    @classmethod
    def make(cls, fee_rate: Decimal = Decimal("0.001")) -> World:
        store = seeded_store()
        book = MemoryPriceBook()
        return cls(store, MemoryUnitOfWorkFactory(store), book, PaperExchange(book, fee_rate))


__all__ = [
    "LIVE",
    "TABLES",
    "TABLE_OF",
    "FakeIntegrityError",
    "FakeStore",
    "FakeUnitOfWork",
    "FakeUnitOfWorkFactory",
    "World",
    "clone",
    "row_values",
    "seeded_store",
]
