"""The SQLAlchemy unit of work: one session, one transaction, rolled back unless committed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, Self

from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from domain.adapters.persistence import orm
from domain.adapters.persistence.repositories import (
    SqlAlchemyAllocationRepository,
    SqlAlchemyAuditRepository,
    SqlAlchemyBatchReader,
    SqlAlchemyCandleRepository,
    SqlAlchemyClientRepository,
    SqlAlchemyEventRepository,
    SqlAlchemyOrderRepository,
    SqlAlchemyPositionRepository,
    SqlAlchemyRefreshTokenRepository,
    SqlAlchemyReportRepository,
    SqlAlchemyStrategyRepository,
    SqlAlchemySymbolRepository,
    SqlAlchemyTradeRepository,
)
from domain.model import StrategyEvent, Trade


def make_engine(url: str, **kw: object) -> AsyncEngine:
    orm.start_mappers()
    return create_async_engine(url, pool_pre_ping=True, **kw)  # type: ignore[arg-type]


def make_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # Objects stay readable after commit: services return them to the API.
    return async_sessionmaker(engine, expire_on_commit=False)


class Publisher(Protocol):
    async def publish(self, events: Sequence[StrategyEvent], trades: Sequence[Trade]) -> None: ...


class _Recording:
    """Wraps a repository's `add` to remember what a transaction recorded (to publish it after commit)."""

    def __init__(self, repository: Any, sink: list[Any]) -> None:
        self._repository = repository
        self._sink = sink

    def add(self, obj: Any) -> None:
        self._repository.add(obj)
        self._sink.append(obj)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._repository, name)


class SqlAlchemyUnitOfWork:
    def __init__(self, session_factory: async_sessionmaker[AsyncSession], publisher: Publisher | None = None) -> None:
        self.session_factory = session_factory
        self.publisher = publisher
        self.new_events: list[StrategyEvent] = []
        self.new_trades: list[Trade] = []

    async def __aenter__(self) -> Self:
        self.session = self.session_factory()
        self.clients = SqlAlchemyClientRepository(self.session)
        self.symbols = SqlAlchemySymbolRepository(self.session)
        self.strategies = SqlAlchemyStrategyRepository(self.session)
        self.positions = SqlAlchemyPositionRepository(self.session)
        self.orders = SqlAlchemyOrderRepository(self.session)
        self.trades = _Recording(SqlAlchemyTradeRepository(self.session), self.new_trades)
        self.allocations = SqlAlchemyAllocationRepository(self.session)
        self.events = _Recording(SqlAlchemyEventRepository(self.session), self.new_events)
        self.candles = SqlAlchemyCandleRepository(self.session)
        self.reports = SqlAlchemyReportRepository(self.session)
        self.batch = SqlAlchemyBatchReader(self.session)
        self.refresh_tokens = SqlAlchemyRefreshTokenRepository(self.session)
        self.audit = SqlAlchemyAuditRepository(self.session)
        return self

    async def __aexit__(self, *args: object) -> None:
        # close() rolls back whatever was not committed, and (unlike rollback()) leaves loaded
        # objects readable for the caller.
        await self.session.close()

    async def commit(self) -> None:
        await self.session.commit()
        events, trades = self.new_events[:], self.new_trades[:]
        self.new_events.clear()
        self.new_trades.clear()
        if self.publisher is not None:
            await self.publisher.publish(events, trades)

    async def rollback(self) -> None:
        await self.session.rollback()
        self.new_events.clear()
        self.new_trades.clear()

    async def flush(self) -> None:
        await self.session.flush()


class SqlAlchemyUnitOfWorkFactory:
    def __init__(self, session_factory: async_sessionmaker[AsyncSession], publisher: Publisher | None = None) -> None:
        self.session_factory = session_factory
        self.publisher = publisher

    def __call__(self) -> SqlAlchemyUnitOfWork:
        return SqlAlchemyUnitOfWork(self.session_factory, self.publisher)
