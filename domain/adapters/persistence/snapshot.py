"""One read snapshot per API request (`domain.ports.ReadSnapshot`) on PostgreSQL: one session, one
connection, one `BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY` — opened at the first read,
rolled back by `close()`. Before it, each DataLoader batch of a request opened its own unit of work:
a session, a connection checkout (and its pre-ping), BEGIN, the query, ROLLBACK, several per
request, each seeing the database at a different moment."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Self

from sqlalchemy.ext.asyncio import AsyncSession

from domain.adapters.persistence.unit_of_work import SqlAlchemyUnitOfWork

if TYPE_CHECKING:
    from domain.adapters.persistence.unit_of_work import SqlAlchemyUnitOfWorkFactory
    from domain.ports import UnitOfWork

SNAPSHOT_OPTIONS = {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}


class SnapshotRefusesWrites(RuntimeError):
    """A read snapshot was asked to write or commit (a programming error)."""


class _TakingTurns:
    """The snapshot's session for concurrent readers: one statement at a time (an `AsyncSession`,
    like its connection, runs one statement at a time), the transaction begun before the first."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session
        self._lock = asyncio.Lock()
        self._begun = False

    async def _begin(self) -> None:
        if not self._begun:
            await self._session.connection(execution_options=SNAPSHOT_OPTIONS)
            self._begun = True

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        async with self._lock:
            await self._begin()
            return await self._session.execute(*args, **kwargs)

    async def get(self, *args: Any, **kwargs: Any) -> Any:
        async with self._lock:
            await self._begin()
            return await self._session.get(*args, **kwargs)

    async def connection(self, *args: Any, **kwargs: Any) -> Any:
        async with self._lock:
            await self._begin()
            return await self._session.connection()

    def add(self, obj: object) -> None:
        raise SnapshotRefusesWrites("A read snapshot does not write.")

    async def close(self) -> None:
        async with self._lock:
            await self._session.close()


class _SnapshotUnit(SqlAlchemyUnitOfWork):
    """The repositories on the snapshot's session; `async with` leaves it open, commit refuses."""

    def __init__(self, session: _TakingTurns) -> None:
        super().__init__(None)  # type: ignore[arg-type]
        self._bind(session)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *args: object) -> None:
        pass

    async def commit(self) -> None:
        raise SnapshotRefusesWrites("A read snapshot does not commit: use a unit of work of the services.")

    async def rollback(self) -> None:
        pass

    async def flush(self) -> None:
        pass


class SqlAlchemyReadSnapshot:
    def __init__(self, factory: SqlAlchemyUnitOfWorkFactory) -> None:
        self._factory = factory
        self._isolated = False
        self._session: _TakingTurns | None = None
        self._unit: _SnapshotUnit | None = None

    @property
    def is_open(self) -> bool:
        return self._session is not None

    def unit(self) -> UnitOfWork:
        if self._isolated:
            return self._factory()
        if self._unit is None:
            self._session = _TakingTurns(self._factory.session_factory())
            self._unit = _SnapshotUnit(self._session)
        return self._unit

    def isolate(self) -> None:
        self._isolated = True

    async def close(self) -> None:
        session, self._session, self._unit = self._session, None, None
        if session is not None:
            await session.close()
