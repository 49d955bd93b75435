"""In-memory fakes of the persistence ports (cosmicpython's `FakeUnitOfWork`), for unit tests.

The implementation is the in-memory unit of work that backtests run on
(`domain.adapters.persistence.memory`): one transactional store, with the semantics of the SQLAlchemy adapters
the services rely on. The names below are the ones the tests have always used.
"""

from __future__ import annotations

from domain.adapters.persistence.memory import (
    LIVE,
    TABLE_OF,
    TABLES,
    MemoryIntegrityError,
    MemoryStore,
    MemoryUnitOfWork,
    MemoryUnitOfWorkFactory,
    MemoryWorld,
    clone,
    row_values,
    seeded_store,
)

FakeIntegrityError = MemoryIntegrityError
FakeStore = MemoryStore
FakeUnitOfWork = MemoryUnitOfWork
FakeUnitOfWorkFactory = MemoryUnitOfWorkFactory
World = MemoryWorld

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
