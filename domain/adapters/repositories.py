"""SQLAlchemy (async) repositories. They add and load; they never commit (STYLE §2)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from domain.adapters import orm
from domain.model import (
    Candle,
    Client,
    Ledger,
    Order,
    OrderStatus,
    Position,
    PositionStatus,
    Strategy,
    StrategyEvent,
    Symbol,
    Trade,
)
from domain.ports import Page

LIVE = (PositionStatus.OPEN, PositionStatus.SCHEDULED)
ZERO = Decimal(0)


class _Base:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, obj: object) -> None:
        self.session.add(obj)


class SqlAlchemyClientRepository(_Base):
    async def get(self, client_id: int) -> Client | None:
        return await self.session.get(Client, client_id)

    async def get_by_name(self, name: str) -> Client | None:
        result = await self.session.execute(select(Client).where(orm.clients.c.name == name).limit(1))
        return result.scalar_one_or_none()


class SqlAlchemySymbolRepository(_Base):
    async def get(self, symbol_id: int) -> Symbol | None:
        return await self.session.get(Symbol, symbol_id)

    async def get_by_name(self, symbol: str) -> Symbol | None:
        result = await self.session.execute(select(Symbol).where(orm.symbols.c.symbol == symbol))
        return result.scalar_one_or_none()

    async def list(self) -> Sequence[Symbol]:
        result = await self.session.execute(select(Symbol).order_by(orm.symbols.c.symbol))
        return result.scalars().all()


def _keyset(stmt, table, page: Page):  # type: ignore[no-untyped-def]
    if page.before_id is not None:
        stmt = stmt.where(table.c.id < page.before_id)
    return stmt.order_by(table.c.id.desc()).limit(page.limit)


class SqlAlchemyStrategyRepository(_Base):
    async def get(self, strategy_id: int, *, for_update: bool = False) -> Strategy | None:
        return await self.session.get(Strategy, strategy_id, with_for_update=for_update or None)

    async def list_by_client(self, client_id: int, page: Page) -> Sequence[Strategy]:
        t = orm.strategies
        stmt = _keyset(select(Strategy).where(t.c.client_id == client_id), t, page)
        return (await self.session.execute(stmt)).scalars().all()

    async def list_active_by_symbol(self, symbol_id: int) -> Sequence[Strategy]:
        """Strategies the engine must look at: active ones, and paused ones that still hold positions
        (their exits and scheduled sells keep working). Locked for the transaction."""
        t, p = orm.strategies, orm.positions
        has_live = select(p.c.id).where(p.c.strategy_id == t.c.id, p.c.status.in_([s.value for s in LIVE])).exists()
        stmt = (
            select(Strategy)
            .where(t.c.symbol_id == symbol_id, or_(t.c.is_active, has_live))
            .order_by(t.c.id)
            .with_for_update()
        )
        return (await self.session.execute(stmt)).scalars().all()

    async def find(self, client_id: int, name: str) -> Strategy | None:
        t = orm.strategies
        stmt = select(Strategy).where(t.c.client_id == client_id, t.c.name == name)
        return (await self.session.execute(stmt)).scalar_one_or_none()


class SqlAlchemyPositionRepository(_Base):
    async def get(self, position_id: int, *, for_update: bool = False) -> Position | None:
        return await self.session.get(Position, position_id, with_for_update=for_update or None)

    async def list_live_by_strategy(self, strategy_id: int) -> Sequence[Position]:
        t = orm.positions
        stmt = (
            select(Position)
            .where(t.c.strategy_id == strategy_id, t.c.status.in_([s.value for s in LIVE]))
            .order_by(t.c.id)
            .with_for_update()
        )
        return (await self.session.execute(stmt)).scalars().all()

    async def list(
        self,
        page: Page,
        *,
        client_id: int | None = None,
        status: PositionStatus | None = None,
        strategy_id: int | None = None,
        since: datetime | None = None,
    ) -> Sequence[Position]:
        t = orm.positions
        stmt = select(Position)
        if client_id is not None:
            stmt = stmt.where(t.c.client_id == client_id)
        if status is not None:
            stmt = stmt.where(t.c.status == status.value)
        if strategy_id is not None:
            stmt = stmt.where(t.c.strategy_id == strategy_id)
        if since is not None:
            stmt = stmt.where(or_(t.c.created_at >= since, t.c.closed_at >= since, t.c.status != "closed"))
        return (await self.session.execute(_keyset(stmt, t, page))).scalars().all()


class SqlAlchemyOrderRepository(_Base):
    async def get_by_client_order_id(self, client_order_id: str) -> Order | None:
        stmt = select(Order).where(orm.orders.c.client_order_id == client_order_id)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def list_by_status(self, statuses: Sequence[OrderStatus]) -> Sequence[Order]:
        stmt = select(Order).where(orm.orders.c.status.in_([s.value for s in statuses])).order_by(orm.orders.c.id)
        return (await self.session.execute(stmt)).scalars().all()


class SqlAlchemyTradeRepository(_Base):
    async def list(
        self,
        page: Page,
        *,
        client_id: int | None = None,
        symbol_id: int | None = None,
        strategy_id: int | None = None,
        position_id: int | None = None,
    ) -> Sequence[Trade]:
        t = orm.trades
        stmt = select(Trade)
        for column, value in (
            (t.c.client_id, client_id),
            (t.c.symbol_id, symbol_id),
            (t.c.strategy_id, strategy_id),
            (t.c.position_id, position_id),
        ):
            if value is not None:
                stmt = stmt.where(column == value)
        return (await self.session.execute(_keyset(stmt, t, page))).scalars().all()


class SqlAlchemyAllocationRepository(_Base):
    async def _ledger(self, alloc_filter, pos_filter) -> Ledger:  # type: ignore[no-untyped-def]
        a, p = orm.capital_allocations, orm.positions
        sums = select(
            func.coalesce(func.sum(case((a.c.is_profit.is_(False), a.c.amount))), ZERO),
            func.coalesce(func.sum(case((a.c.is_profit.is_(True), a.c.amount))), ZERO),
        ).where(alloc_filter)
        committed = select(func.coalesce(func.sum(p.c.cost), ZERO)).where(
            and_(pos_filter, p.c.status.in_([s.value for s in LIVE]))
        )
        principal, profit = (await self.session.execute(sums)).one()
        cost = (await self.session.execute(committed)).scalar_one()
        return Ledger(principal=Decimal(principal), committed=Decimal(cost), profit=Decimal(profit))

    async def ledger(self, strategy_id: int) -> Ledger:
        return await self._ledger(
            orm.capital_allocations.c.strategy_id == strategy_id, orm.positions.c.strategy_id == strategy_id
        )

    async def client_ledger(self, client_id: int) -> Ledger:
        return await self._ledger(
            orm.capital_allocations.c.client_id == client_id, orm.positions.c.client_id == client_id
        )


class SqlAlchemyEventRepository(_Base):
    async def list_by_strategy(self, strategy_id: int, limit: int) -> Sequence[StrategyEvent]:
        t = orm.strategy_events
        stmt = select(StrategyEvent).where(t.c.strategy_id == strategy_id).order_by(t.c.id.desc()).limit(limit)
        return (await self.session.execute(stmt)).scalars().all()


class SqlAlchemyCandleRepository(_Base):
    async def upsert(self, candles: Sequence[Candle]) -> int:
        """Insert or update candles on (symbol, interval, open_time): no duplicates."""
        if not candles:
            return 0
        t = orm.historical_prices
        rows = [
            {
                "symbol_id": c.symbol_id,
                "interval": c.interval,
                "open_time": c.open_time,
                "close_time": c.close_time,
                "open": c.open,
                "high": c.high,
                "low": c.low,
                "close": c.close,
                "volume": c.volume,
            }
            for c in candles
        ]
        stmt = insert(t).values(rows)
        stmt = stmt.on_conflict_do_update(
            constraint="uq_historical_prices_symbol_interval_open",
            set_={k: stmt.excluded[k] for k in ("close_time", "open", "high", "low", "close", "volume")},
        )
        await self.session.execute(stmt)
        return len(rows)

    async def history(self, symbol_id: int, interval: str, limit: int) -> Sequence[Candle]:
        t = orm.historical_prices
        stmt = (
            select(Candle)
            .where(t.c.symbol_id == symbol_id, t.c.interval == interval)
            .order_by(t.c.open_time.desc())
            .limit(limit)
        )
        rows = (await self.session.execute(stmt)).scalars().all()
        return list(reversed(rows))

    async def latest_close(self, symbol_id: int) -> tuple[Decimal, datetime] | None:
        t = orm.historical_prices
        stmt = (
            select(t.c.close, t.c.close_time).where(t.c.symbol_id == symbol_id).order_by(t.c.close_time.desc()).limit(1)
        )
        row = (await self.session.execute(stmt)).first()
        return (row[0], row[1]) if row else None
