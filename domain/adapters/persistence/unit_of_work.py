"""The SQLAlchemy unit of work: one session, one transaction, rolled back unless committed."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from typing import TYPE_CHECKING, Any, Protocol, Self

from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session

from domain.adapters.persistence import orm
from domain.adapters.persistence.alerts import SqlAlchemyAlertRepository
from domain.adapters.persistence.reads import SqlAlchemyBatchReader
from domain.adapters.persistence.repositories import (
    SqlAlchemyAllocationRepository,
    SqlAlchemyAuditRepository,
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
from domain.model import Order, StrategyEvent, Trade

if TYPE_CHECKING:
    from domain.adapters.persistence.snapshot import SqlAlchemyReadSnapshot


def make_engine(url: str, **kw: object) -> AsyncEngine:
    orm.start_mappers()
    return create_async_engine(url, pool_pre_ping=True, **kw)  # type: ignore[arg-type]


class CriptorenSession(Session):
    """A session that remembers the orders its flushes inserted or changed (`changed_orders`), so
    that the unit of work publishes them once the transaction has committed."""


@event.listens_for(CriptorenSession, "after_flush")
def _remember_changed_orders(session: Session, _flush_context: object) -> None:
    # After a flush, `new` and `dirty` still hold what it wrote (SQLAlchemy's documented state).
    changed: dict[int, Order] = session.info.setdefault("changed_orders", {})
    for obj in chain(session.new, session.dirty):
        if isinstance(obj, Order) and (obj in session.new or session.is_modified(obj)):
            changed[id(obj)] = obj


def make_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # Objects stay readable after commit: services return them to the API.
    return async_sessionmaker(engine, expire_on_commit=False, sync_session_class=CriptorenSession)


class Publisher(Protocol):
    async def publish(
        self, events: Sequence[StrategyEvent], trades: Sequence[Trade], orders: Sequence[Order] = ()
    ) -> None: ...


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
        self._bind(self.session_factory())
        return self

    def _bind(self, session: Any) -> None:
        """The repositories, on `session`."""
        self.session = session
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
        self.alerts = SqlAlchemyAlertRepository(self.session)

    async def __aexit__(self, *args: object) -> None:
        # close() rolls back whatever was not committed, and (unlike rollback()) leaves loaded
        # objects readable for the caller.
        await self.session.close()

    async def commit(self) -> None:
        await self.session.commit()
        events, trades = self.new_events[:], self.new_trades[:]
        orders = list(self.session.info.pop("changed_orders", {}).values())
        self.new_events.clear()
        self.new_trades.clear()
        if self.publisher is not None:
            await self.publisher.publish(events, trades, orders)

    async def rollback(self) -> None:
        await self.session.rollback()
        self.new_events.clear()
        self.new_trades.clear()
        self.session.info.pop("changed_orders", None)

    async def flush(self) -> None:
        await self.session.flush()


class SqlAlchemyUnitOfWorkFactory:
    def __init__(self, session_factory: async_sessionmaker[AsyncSession], publisher: Publisher | None = None) -> None:
        self.session_factory = session_factory
        self.publisher = publisher

    def __call__(self) -> SqlAlchemyUnitOfWork:
        return SqlAlchemyUnitOfWork(self.session_factory, self.publisher)

    def snapshot(self) -> SqlAlchemyReadSnapshot:
        """The read snapshot of one API request (`domain.ports.ReadSnapshot`)."""
        from domain.adapters.persistence.snapshot import SqlAlchemyReadSnapshot

        return SqlAlchemyReadSnapshot(self)
