"""The SQLAlchemy unit of work: one session, one transaction, rolled back unless committed."""

from __future__ import annotations

from typing import Self

from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from domain.adapters import orm
from domain.adapters.repositories import (
    SqlAlchemyAllocationRepository,
    SqlAlchemyBatchReader,
    SqlAlchemyCandleRepository,
    SqlAlchemyClientRepository,
    SqlAlchemyEventRepository,
    SqlAlchemyOrderRepository,
    SqlAlchemyPositionRepository,
    SqlAlchemyReportRepository,
    SqlAlchemyStrategyRepository,
    SqlAlchemySymbolRepository,
    SqlAlchemyTradeRepository,
)


def make_engine(url: str, **kw: object) -> AsyncEngine:
    orm.start_mappers()
    return create_async_engine(url, pool_pre_ping=True, **kw)  # type: ignore[arg-type]


def make_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # Objects stay readable after commit: services return them to the API.
    return async_sessionmaker(engine, expire_on_commit=False)


class SqlAlchemyUnitOfWork:
    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self.session_factory = session_factory

    async def __aenter__(self) -> Self:
        self.session = self.session_factory()
        self.clients = SqlAlchemyClientRepository(self.session)
        self.symbols = SqlAlchemySymbolRepository(self.session)
        self.strategies = SqlAlchemyStrategyRepository(self.session)
        self.positions = SqlAlchemyPositionRepository(self.session)
        self.orders = SqlAlchemyOrderRepository(self.session)
        self.trades = SqlAlchemyTradeRepository(self.session)
        self.allocations = SqlAlchemyAllocationRepository(self.session)
        self.events = SqlAlchemyEventRepository(self.session)
        self.candles = SqlAlchemyCandleRepository(self.session)
        self.reports = SqlAlchemyReportRepository(self.session)
        self.batch = SqlAlchemyBatchReader(self.session)
        return self

    async def __aexit__(self, *args: object) -> None:
        # close() rolls back whatever was not committed, and (unlike rollback()) leaves loaded
        # objects readable for the caller.
        await self.session.close()

    async def commit(self) -> None:
        await self.session.commit()

    async def rollback(self) -> None:
        await self.session.rollback()

    async def flush(self) -> None:
        await self.session.flush()


class SqlAlchemyUnitOfWorkFactory:
    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self.session_factory = session_factory

    def __call__(self) -> SqlAlchemyUnitOfWork:
        return SqlAlchemyUnitOfWork(self.session_factory)
