"""The API's reads on PostgreSQL (`domain.ports.BatchReader`): one statement per DataLoader batch or
page, whatever its size. Strategies, symbols, positions and trades are selected column by column
into plain rows (`domain.rows`): no ORM hydration for data that is only read and written out. Their
statements are built once (building one costs more than running it) and take their values as
bound parameters."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BindParameter, ColumnElement, Integer, Select, bindparam, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.adapters.persistence import orm
from domain.model import Ledger, Order, PositionStatus, StrategyEvent
from domain.ports import Page
from domain.rows import PositionRow, StrategyRow, SymbolRow, TradeRow, columns

LIVE = (PositionStatus.OPEN.value, PositionStatus.SCHEDULED.value)
ZERO = Decimal(0)
TABLES: dict[type, Any] = {
    StrategyRow: orm.strategies,
    SymbolRow: orm.symbols,
    PositionRow: orm.positions,
    TradeRow: orm.trades,
}


def _sum(column: Any) -> ColumnElement[Any]:
    return func.coalesce(func.sum(column), ZERO)


def _columns_of(cls: type) -> Select[Any]:
    table = TABLES[cls]
    return select(*(table.c[name] for name in columns(cls)))


@functools.cache
def _by_ids(cls: type) -> Select[Any]:
    return _columns_of(cls).where(TABLES[cls].c.id.in_(bindparam("ids", expanding=True)))


@functools.cache
def _trades_by_position() -> Select[Any]:
    t = orm.trades
    return _columns_of(TradeRow).where(t.c.position_id.in_(bindparam("ids", expanding=True))).order_by(t.c.id)


@functools.cache
def _positions_by_strategy(by_status: bool) -> Select[Any]:
    """The newest `per_strategy` positions of each strategy, in one statement (a window)."""
    p = orm.positions
    rank = func.row_number().over(partition_by=p.c.strategy_id, order_by=p.c.id.desc()).label("rank")
    inner = select(p.c.id, rank).where(p.c.strategy_id.in_(bindparam("ids", expanding=True)))
    if by_status:
        inner = inner.where(p.c.status == bindparam("status"))
    ranked = inner.subquery()
    return (
        _columns_of(PositionRow)
        .join(ranked, ranked.c.id == p.c.id)
        .where(ranked.c.rank <= bindparam("per_strategy", type_=Integer))
        .order_by(p.c.id.desc())
    )


@functools.cache
def _page(cls: type, filters: tuple[str, ...], before: bool, extra: str | None = None) -> Select[Any]:
    """Newest first, at most `limit` rows, below `before_id` when given; `filters` are columns that
    must equal the parameters of the same names."""
    table = TABLES[cls]
    stmt = _columns_of(cls)
    for name in filters:
        stmt = stmt.where(table.c[name] == bindparam(name))
    if before:
        stmt = stmt.where(table.c.id < bindparam("before_id"))
    if extra == "since":  # positions live now, or opened or closed since then
        p = orm.positions
        since: BindParameter[datetime] = bindparam("since")
        stmt = stmt.where(or_(p.c.created_at >= since, p.c.closed_at >= since, p.c.status != "closed"))
    elif extra == "active":  # strategies not archived
        stmt = stmt.where(orm.strategies.c.archived_at.is_(None))
    return stmt.order_by(table.c.id.desc()).limit(bindparam("limit", type_=Integer))


class SqlAlchemyBatchReader:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def _rows(self, cls: type, stmt: Any, params: dict[str, Any]) -> list[Any]:
        return [cls(*row) for row in await self.session.execute(stmt, params)]

    async def _by_ids(self, cls: type, ids: Sequence[int]) -> list[Any]:
        return await self._rows(cls, _by_ids(cls), {"ids": list(ids)}) if ids else []

    async def _paged(self, cls: type, page: Page, extra: str | None = None, **values: Any) -> list[Any]:
        params = {k: v for k, v in values.items() if v is not None}
        filters = tuple(sorted(k for k in params if k != "since"))
        if page.before_id is not None:
            params["before_id"] = page.before_id
        params["limit"] = page.limit
        return await self._rows(cls, _page(cls, filters, page.before_id is not None, extra), params)

    async def strategies(self, ids: Sequence[int]) -> Sequence[StrategyRow]:
        return await self._by_ids(StrategyRow, ids)

    async def symbols(self, ids: Sequence[int]) -> Sequence[SymbolRow]:
        return await self._by_ids(SymbolRow, ids)

    async def positions(self, ids: Sequence[int]) -> Sequence[PositionRow]:
        return await self._by_ids(PositionRow, ids)

    async def trades_by_position(self, position_ids: Sequence[int]) -> Sequence[TradeRow]:
        if not position_ids:
            return []
        return await self._rows(TradeRow, _trades_by_position(), {"ids": list(position_ids)})

    async def positions_by_strategy(
        self, strategy_ids: Sequence[int], status: PositionStatus | None, per_strategy: int
    ) -> Sequence[PositionRow]:
        params: dict[str, Any] = {"ids": list(strategy_ids), "per_strategy": per_strategy}
        if status is not None:
            params["status"] = status
        return await self._rows(PositionRow, _positions_by_strategy(status is not None), params)

    async def strategies_page(
        self, client_id: int, page: Page, *, include_archived: bool = False
    ) -> Sequence[StrategyRow]:
        return await self._paged(StrategyRow, page, None if include_archived else "active", client_id=client_id)

    async def positions_page(
        self,
        page: Page,
        *,
        client_id: int | None = None,
        status: PositionStatus | None = None,
        strategy_id: int | None = None,
        since: datetime | None = None,
    ) -> Sequence[PositionRow]:
        return await self._paged(
            PositionRow, page, "since" if since is not None else None,
            client_id=client_id, status=status, strategy_id=strategy_id, since=since,
        )  # fmt: skip

    async def trades_page(
        self,
        page: Page,
        *,
        client_id: int | None = None,
        symbol_id: int | None = None,
        strategy_id: int | None = None,
        position_id: int | None = None,
    ) -> Sequence[TradeRow]:
        return await self._paged(
            TradeRow, page, client_id=client_id, symbol_id=symbol_id, strategy_id=strategy_id, position_id=position_id
        )

    async def ledgers(self, strategy_ids: Sequence[int]) -> dict[int, Ledger]:
        a, p = orm.capital_allocations, orm.positions
        alloc = (
            select(
                a.c.strategy_id.label("sid"),
                _sum(case((a.c.is_profit.is_(False), a.c.amount))).label("principal"),
                _sum(case((a.c.is_profit.is_(True), a.c.amount))).label("profit"),
            )
            .where(a.c.strategy_id.in_(strategy_ids))
            .group_by(a.c.strategy_id)
            .subquery()
        )
        cost = (
            select(p.c.strategy_id.label("sid"), _sum(p.c.cost).label("committed"))
            .where(p.c.strategy_id.in_(strategy_ids), p.c.status.in_(LIVE))
            .group_by(p.c.strategy_id)
            .subquery()
        )
        s = orm.strategies
        stmt = (
            select(s.c.id, alloc.c.principal, alloc.c.profit, cost.c.committed)
            .outerjoin(alloc, alloc.c.sid == s.c.id)
            .outerjoin(cost, cost.c.sid == s.c.id)
            .where(s.c.id.in_(strategy_ids))
        )
        return {
            sid: Ledger(principal=principal or ZERO, committed=committed or ZERO, profit=profit or ZERO)
            for sid, principal, profit, committed in (await self.session.execute(stmt)).all()
        }

    async def events_by_strategy(
        self,
        strategy_ids: Sequence[int],
        per_strategy: int,
        *,
        before_id: int | None = None,
        types: Sequence[str] | None = None,
    ) -> Sequence[StrategyEvent]:
        e = orm.strategy_events
        rank = func.row_number().over(partition_by=e.c.strategy_id, order_by=e.c.id.desc()).label("rank")
        inner = select(e.c.id, rank).where(e.c.strategy_id.in_(strategy_ids))
        if before_id is not None:
            inner = inner.where(e.c.id < before_id)
        if types is not None:
            inner = inner.where(e.c.type.in_(list(types)))
        ranked = inner.subquery()
        stmt = (
            select(StrategyEvent)
            .join(ranked, ranked.c.id == e.c.id)
            .where(ranked.c.rank <= per_strategy)
            .order_by(e.c.id.desc())
        )
        return (await self.session.execute(stmt)).scalars().all()

    async def orders(self, ids: Sequence[int]) -> Sequence[Order]:
        if not ids:
            return []
        return (await self.session.execute(select(Order).where(orm.orders.c.id.in_(ids)))).scalars().all()

    async def orders_by_position(self, position_ids: Sequence[int]) -> Sequence[Order]:
        o = orm.orders
        stmt = select(Order).where(o.c.position_id.in_(position_ids)).order_by(o.c.id)
        return (await self.session.execute(stmt)).scalars().all()
