"""SQLAlchemy (async) repositories. They add and load; they never commit (STYLE §2)."""

from __future__ import annotations

import functools
import io
from collections.abc import Collection, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import ColumnElement, and_, bindparam, case, func, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import aggregate_order_by, insert
from sqlalchemy.ext.asyncio import AsyncSession

from domain.adapters.persistence import orm
from domain.model import (
    AllocationKind,
    AuditEntry,
    Candle,
    Client,
    Ledger,
    Order,
    OrderStatus,
    Position,
    PositionStatus,
    RefreshToken,
    Side,
    Strategy,
    StrategyEvent,
    Symbol,
    Trade,
)
from domain.ports import ExportedTrade, Page, TickRow

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

    async def exists(self) -> bool:
        return bool((await self.session.execute(select(select(orm.clients.c.id).exists()))).scalar_one())

    async def get_by_api_key(self, api_key: str) -> Client | None:
        result = await self.session.execute(select(Client).where(orm.clients.c.api_key == api_key))
        return result.scalar_one_or_none()

    async def list_ids(self) -> Sequence[int]:
        return (await self.session.execute(select(orm.clients.c.id).order_by(orm.clients.c.id))).scalars().all()

    async def paused(self, client_ids: Collection[int]) -> dict[int, bool]:
        c = orm.clients
        stmt = select(c.c.id, c.c.trading_sells_held).where(
            c.c.id.in_(list(client_ids)), c.c.trading_paused_at.is_not(None)
        )
        return {row.id: row.trading_sells_held for row in (await self.session.execute(stmt)).all()}


class SqlAlchemySymbolRepository(_Base):
    async def get(self, symbol_id: int) -> Symbol | None:
        return await self.session.get(Symbol, symbol_id)

    async def get_by_name(self, symbol: str) -> Symbol | None:
        result = await self.session.execute(select(Symbol).where(orm.symbols.c.symbol == symbol))
        return result.scalar_one_or_none()

    async def list(self) -> Sequence[Symbol]:
        result = await self.session.execute(select(Symbol).order_by(orm.symbols.c.symbol))
        return result.scalars().all()

    async def watched(self) -> Sequence[Symbol]:
        s, t, p = orm.symbols, orm.strategies, orm.positions
        active = select(t.c.id).where(t.c.symbol_id == s.c.id, t.c.is_active).exists()
        live = select(p.c.id).where(p.c.symbol_id == s.c.id, p.c.status.in_([x.value for x in LIVE])).exists()
        stmt = select(Symbol).where(s.c.is_active, or_(active, live)).order_by(s.c.symbol)
        return (await self.session.execute(stmt)).scalars().all()


def _keyset(stmt, table, page: Page):  # type: ignore[no-untyped-def]
    if page.before_id is not None:
        stmt = stmt.where(table.c.id < page.before_id)
    return stmt.order_by(table.c.id.desc()).limit(page.limit)


def _watched_by_engine() -> ColumnElement[bool]:
    """Strategies the engine looks at: active ones, and paused ones still holding open or scheduled
    positions (their exits and scheduled sells keep working) — never archived ones."""
    t, held = orm.strategies, orm.positions.alias("held")
    holds_live = select(held.c.id).where(held.c.strategy_id == t.c.id, held.c.status.in_([s.value for s in LIVE]))
    return and_(t.c.archived_at.is_(None), or_(t.c.is_active, holds_live.exists()))


@functools.cache
def _tick_lock_statement(by_ids: bool):  # type: ignore[no-untyped-def]
    """Lock the strategies of a symbol that the engine looks at (active, or holding positions), in id
    order; returns their ids. Built once (statement construction costs more than running it)."""
    t = orm.strategies
    stmt = (
        select(t.c.id)
        .where(t.c.symbol_id == bindparam("symbol_id"), _watched_by_engine())
        .order_by(t.c.id)
        .with_for_update(of=t)
    )
    if by_ids:
        stmt = stmt.where(t.c.id.in_(bindparam("ids", expanding=True)))
    return stmt


@functools.cache
def _tick_statement():  # type: ignore[no-untyped-def]
    """The engine's hot query, built once: locked strategies (by id), each with its principal, its
    client's trading pause and live positions. Positions and allocations of a strategy change only
    under its lock."""
    t, p, a, c = orm.strategies, orm.positions, orm.capital_allocations, orm.clients
    live = [s.value for s in LIVE]
    principal = (
        select(_sum(a.c.amount))
        .where(a.c.strategy_id == t.c.id, a.c.is_profit.is_(False))
        .scalar_subquery()
        .label("principal")
    )
    # NULL: not paused; else whether the pause holds automatic sells too (domain.services.trading_pause).
    pause = (
        select(case((c.c.trading_paused_at.is_(None), None), else_=c.c.trading_sells_held))
        .where(c.c.id == t.c.client_id)
        .scalar_subquery()
        .label("trading_pause")
    )
    return (
        select(Strategy, principal, pause, Position)
        .select_from(t)
        .outerjoin(p, and_(p.c.strategy_id == t.c.id, p.c.status.in_(live)))
        .where(t.c.id.in_(bindparam("ids", expanding=True)))
        .order_by(t.c.id, p.c.id)
    )


class SqlAlchemyStrategyRepository(_Base):
    async def get(self, strategy_id: int, *, for_update: bool = False) -> Strategy | None:
        # Locked rows are read afresh: another transaction may have changed them since they were loaded.
        return await self.session.get(
            Strategy, strategy_id, with_for_update=for_update or None, populate_existing=for_update or None
        )

    async def list_by_client(self, client_id: int, page: Page, *, include_archived: bool = False) -> Sequence[Strategy]:
        t = orm.strategies
        stmt = select(Strategy).where(t.c.client_id == client_id)
        if not include_archived:
            stmt = stmt.where(t.c.archived_at.is_(None))
        return (await self.session.execute(_keyset(stmt, t, page))).scalars().all()

    async def lock_for_tick(self, symbol_id: int, strategy_ids: Collection[int] | None = None) -> Sequence[TickRow]:
        """Lock, then read — two statements, not one: a statement that waits for a row lock sees the
        other tables as they were when it started (READ COMMITTED re-reads only the rows it locks), so
        a principal or positions read by the locking statement itself could miss a withdrawal or a buy
        committed while it waited, and an entry would spend principal that is gone."""
        params: dict[str, Any] = {"symbol_id": symbol_id}
        if strategy_ids is not None:
            params["ids"] = list(strategy_ids)
        locked = (await self.session.execute(_tick_lock_statement(strategy_ids is not None), params)).scalars().all()
        if not locked:
            return []
        out: dict[int, TickRow] = {}
        for strategy, amount, pause, position in (
            await self.session.execute(_tick_statement(), {"ids": list(locked)})
        ).all():
            row = out.get(strategy.id)
            if row is None:
                row = out[strategy.id] = TickRow.of(strategy, Decimal(amount), [], pause)
            if position is not None:
                row.live.append(position)
        return list(out.values())

    async def list_by_symbol(self, symbol_id: int, strategy_ids: Collection[int] | None = None) -> Sequence[Strategy]:
        t = orm.strategies
        stmt = select(Strategy).where(t.c.symbol_id == symbol_id, t.c.archived_at.is_(None)).order_by(t.c.id)
        if strategy_ids is not None:
            stmt = stmt.where(t.c.id.in_(list(strategy_ids)))
        return (await self.session.execute(stmt)).scalars().all()

    async def list_active_by_symbol(
        self, symbol_id: int, strategy_ids: Collection[int] | None = None
    ) -> Sequence[Strategy]:
        """Strategies the engine must look at: active ones, and paused ones that still hold positions
        (their exits and scheduled sells keep working). Locked for the transaction."""
        t = orm.strategies
        stmt = (
            select(Strategy).where(t.c.symbol_id == symbol_id, _watched_by_engine()).order_by(t.c.id).with_for_update()
        )
        if strategy_ids is not None:
            stmt = stmt.where(t.c.id.in_(list(strategy_ids)))
        return (await self.session.execute(stmt)).scalars().all()

    async def find(self, client_id: int, name: str) -> Strategy | None:
        t = orm.strategies
        stmt = select(Strategy).where(t.c.client_id == client_id, t.c.name == name, t.c.archived_at.is_(None))
        return (await self.session.execute(stmt)).scalar_one_or_none()


class SqlAlchemyPositionRepository(_Base):
    async def get(self, position_id: int, *, for_update: bool = False) -> Position | None:
        return await self.session.get(
            Position, position_id, with_for_update=for_update or None, populate_existing=for_update or None
        )

    async def list_live_by_strategy(self, strategy_id: int) -> Sequence[Position]:
        t = orm.positions
        stmt = (
            select(Position)
            .where(t.c.strategy_id == strategy_id, t.c.status.in_([s.value for s in LIVE]))
            .order_by(t.c.id)
            .with_for_update()
        )
        return (await self.session.execute(stmt)).scalars().all()

    async def list_live_by_strategies(
        self, strategy_ids: Collection[int], *, for_update: bool = False
    ) -> Sequence[Position]:
        t = orm.positions
        stmt = (
            select(Position)
            .where(t.c.strategy_id.in_(list(strategy_ids)), t.c.status.in_([s.value for s in LIVE]))
            .order_by(t.c.id)
        )
        if for_update:
            stmt = stmt.with_for_update()
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
    async def get_by_client_order_id(self, client_order_id: str, *, for_update: bool = False) -> Order | None:
        stmt = select(Order).where(orm.orders.c.client_order_id == client_order_id)
        if for_update:
            # Locked and read afresh: another transaction may have applied fills since it was loaded.
            stmt = stmt.with_for_update().execution_options(populate_existing=True)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def list_by_status(self, statuses: Sequence[OrderStatus]) -> Sequence[Order]:
        stmt = select(Order).where(orm.orders.c.status.in_([s.value for s in statuses])).order_by(orm.orders.c.id)
        return (await self.session.execute(stmt)).scalars().all()

    async def count_by_status(self) -> dict[str, int]:
        t = orm.orders
        rows = (await self.session.execute(select(t.c.status, func.count()).group_by(t.c.status))).all()
        return {str(status): int(n) for status, n in rows}

    async def list_by_position(
        self, position_id: int, statuses: Sequence[OrderStatus], *, for_update: bool = False
    ) -> Sequence[Order]:
        t = orm.orders
        stmt = (
            select(Order)
            .where(t.c.position_id == position_id, t.c.status.in_([s.value for s in statuses]))
            .order_by(t.c.id)
        )
        if for_update:
            stmt = stmt.with_for_update().execution_options(populate_existing=True)
        return (await self.session.execute(stmt)).scalars().all()

    async def list(
        self,
        page: Page,
        *,
        client_id: int | None = None,
        strategy_id: int | None = None,
        position_id: int | None = None,
        statuses: Sequence[OrderStatus] | None = None,
    ) -> Sequence[Order]:
        t = orm.orders
        stmt = select(Order)
        for column, value in (
            (t.c.client_id, client_id),
            (t.c.strategy_id, strategy_id),
            (t.c.position_id, position_id),
        ):
            if value is not None:
                stmt = stmt.where(column == value)
        if statuses is not None:
            stmt = stmt.where(t.c.status.in_([s.value for s in statuses]))
        return (await self.session.execute(_keyset(stmt, t, page))).scalars().all()


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

    async def export_page(
        self,
        client_id: int,
        after: tuple[datetime, int] | None,
        limit: int,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        strategy_id: int | None = None,
    ) -> Sequence[ExportedTrade]:
        """Plain rows (no entities) from the (client, time, id) index: a page costs what it holds."""
        t, sy, st, o = orm.trades, orm.symbols, orm.strategies, orm.orders
        # In the order of ExportedTrade's fields.
        columns = (
            t.c.id, t.c.executed_at, sy.c.symbol, t.c.side, t.c.price, t.c.quantity, t.c.quote_amount, t.c.fees,
            t.c.fee_asset, t.c.profit, t.c.strategy_id, st.c.name, t.c.position_id, o.c.client_order_id,
        )  # fmt: skip
        stmt = (
            select(*columns)
            .join(sy, sy.c.id == t.c.symbol_id)
            .outerjoin(st, st.c.id == t.c.strategy_id)
            .outerjoin(o, o.c.id == t.c.order_id)
            .where(t.c.client_id == client_id)
            .order_by(t.c.executed_at, t.c.id)
            .limit(limit)
        )
        if after is not None:
            stmt = stmt.where(tuple_(t.c.executed_at, t.c.id) > tuple_(*after))
        if start is not None:
            stmt = stmt.where(t.c.executed_at >= start)
        if end is not None:
            stmt = stmt.where(t.c.executed_at < end)
        if strategy_id is not None:
            stmt = stmt.where(t.c.strategy_id == strategy_id)
        rows = (await self.session.execute(stmt)).all()
        return [ExportedTrade(r[0], r[1], r[2], Side(r[3]), *r[4:]) for r in rows]  # type: ignore[call-arg]


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

    async def principal(self, strategy_id: int) -> Decimal:
        a = orm.capital_allocations
        stmt = select(_sum(a.c.amount)).where(a.c.strategy_id == strategy_id, a.c.is_profit.is_(False))
        return Decimal((await self.session.execute(stmt)).scalar_one())

    async def ledger(self, strategy_id: int) -> Ledger:
        return await self._ledger(
            orm.capital_allocations.c.strategy_id == strategy_id, orm.positions.c.strategy_id == strategy_id
        )

    async def client_ledgers(self, client_id: int) -> dict[str, Ledger]:
        a, p, t, s = orm.capital_allocations, orm.positions, orm.strategies, orm.symbols
        sums = (
            select(
                s.c.quote_asset,
                func.coalesce(func.sum(case((a.c.is_profit.is_(False), a.c.amount))), ZERO),
                func.coalesce(func.sum(case((a.c.is_profit.is_(True), a.c.amount))), ZERO),
            )
            .select_from(a.join(t, t.c.id == a.c.strategy_id).join(s, s.c.id == t.c.symbol_id))
            .where(a.c.client_id == client_id)
            .group_by(s.c.quote_asset)
        )
        committed = (
            select(s.c.quote_asset, func.coalesce(func.sum(p.c.cost), ZERO))
            .select_from(p.join(s, s.c.id == p.c.symbol_id))
            .where(p.c.client_id == client_id, p.c.status.in_([x.value for x in LIVE]))
            .group_by(s.c.quote_asset)
        )
        costs = {asset: Decimal(cost) for asset, cost in (await self.session.execute(committed)).all()}
        out = {
            asset: Ledger(principal=Decimal(principal), committed=costs.pop(asset, ZERO), profit=Decimal(profit))
            for asset, principal, profit in (await self.session.execute(sums)).all()
        }
        for asset, cost in costs.items():
            out[asset] = Ledger(principal=ZERO, committed=cost, profit=ZERO)
        return out


class SqlAlchemyEventRepository(_Base):
    async def list_by_strategy(self, strategy_id: int, limit: int) -> Sequence[StrategyEvent]:
        t = orm.strategy_events
        stmt = select(StrategyEvent).where(t.c.strategy_id == strategy_id).order_by(t.c.id.desc()).limit(limit)
        return (await self.session.execute(stmt)).scalars().all()

    async def list(
        self, page: Page, *, client_id: int | None = None, types: Sequence[str] | None = None
    ) -> Sequence[StrategyEvent]:
        t = orm.strategy_events
        stmt = select(StrategyEvent)
        if client_id is not None:
            stmt = stmt.where(t.c.client_id == client_id)
        if types is not None:
            stmt = stmt.where(t.c.type.in_(list(types)))
        return (await self.session.execute(_keyset(stmt, t, page))).scalars().all()


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

    async def price_csv(
        self,
        symbol_id: int,
        interval: str,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int | None = None,
    ) -> bytes:
        # COPY: PostgreSQL writes the CSV itself, and no row becomes a Python object (600,000
        # candles are ~35 MB of text here, against ~350 MB as rows of Decimals).
        t = orm.historical_prices
        where, args = ["symbol_id = $1", "interval = $2"], [symbol_id, interval]
        if start is not None:
            args.append(start)
            where.append(f"open_time >= ${len(args)}")
        if end is not None:
            args.append(end)
            where.append(f"open_time < ${len(args)}")
        columns = "(extract(epoch FROM open_time) * 1000)::bigint AS open_ms, open, high, low, close"
        query = f"SELECT {columns} FROM {t.name} WHERE {' AND '.join(where)}"  # noqa: S608 - placeholders only
        if limit is not None:
            args.append(limit)
            latest = f"{query} ORDER BY open_time DESC LIMIT ${len(args)}"
            query = f"SELECT * FROM ({latest}) latest ORDER BY open_ms"  # noqa: S608 - placeholders only
        else:
            query += " ORDER BY open_time"
        connection = await (await self.session.connection()).get_raw_connection()
        assert connection.driver_connection is not None
        out = io.BytesIO()
        await connection.driver_connection.copy_from_query(query, *args, output=out, format="csv")
        return out.getvalue()

    async def aggregate(
        self, symbol_id: int, source_interval: str, interval: str, open_time: datetime, close_time: datetime
    ) -> Candle | None:
        t = orm.historical_prices
        stmt = select(
            func.count(),
            func.array_agg(aggregate_order_by(t.c.open, t.c.open_time.asc()))[1],
            func.max(t.c.high),
            func.min(t.c.low),
            func.array_agg(aggregate_order_by(t.c.close, t.c.open_time.desc()))[1],
            func.coalesce(func.sum(t.c.volume), ZERO),
        ).where(
            t.c.symbol_id == symbol_id,
            t.c.interval == source_interval,
            t.c.open_time >= open_time,
            t.c.close_time <= close_time,
        )
        n, o, h, low, c, v = (await self.session.execute(stmt)).one()
        if not n:
            return None
        return Candle(symbol_id, interval, open_time, close_time, o, h, low, c, v)

    async def last_close_time(self, symbol_id: int, interval: str) -> datetime | None:
        t = orm.historical_prices
        stmt = select(func.max(t.c.close_time)).where(t.c.symbol_id == symbol_id, t.c.interval == interval)
        return cast("datetime | None", (await self.session.execute(stmt)).scalar_one())

    async def latest_close(self, symbol_id: int) -> tuple[Decimal, datetime] | None:
        t = orm.historical_prices
        stmt = (
            select(t.c.close, t.c.close_time).where(t.c.symbol_id == symbol_id).order_by(t.c.close_time.desc()).limit(1)
        )
        row = (await self.session.execute(stmt)).first()
        return (row[0], row[1]) if row else None


def _sum(column: Any) -> ColumnElement[Any]:
    return func.coalesce(func.sum(column), ZERO)


class SqlAlchemyReportRepository(_Base):
    async def strategy_profit(self, strategy_id: int) -> dict[str, Any]:
        p, a, t = orm.positions, orm.capital_allocations, orm.trades
        closed = p.c.status == PositionStatus.CLOSED.value
        positions = select(
            _sum(case((closed, p.c.realized_profit))),
            func.count().filter(closed),
            func.count().filter(closed, p.c.realized_profit > 0),
            func.count().filter(closed, p.c.realized_profit < 0),
            func.count().filter(~closed),
        ).where(p.c.strategy_id == strategy_id)
        withdrawn = select(-_sum(a.c.amount)).where(
            a.c.strategy_id == strategy_id, a.c.kind == AllocationKind.PROFIT_WITHDRAWAL.value
        )
        # Fees valued in quote: sell fees are in quote; buy fees in base are valued at the fill price.
        fees = select(
            _sum(case((t.c.fee_asset == orm.symbols.c.quote_asset, t.c.fees), else_=t.c.fees * t.c.price))
        ).where(t.c.strategy_id == strategy_id, t.c.symbol_id == orm.symbols.c.id)
        stmt = select(positions.subquery(), withdrawn.scalar_subquery(), fees.scalar_subquery())
        realized, n_closed, wins, losses, live, withdrawn_v, fees_v = (await self.session.execute(stmt)).one()
        return {
            "realized_profit": Decimal(realized),
            "withdrawn_profit": Decimal(withdrawn_v),
            "closed_positions": n_closed,
            "winning_positions": wins,
            "losing_positions": losses,
            "live_positions": live,
            "fees_paid": Decimal(fees_v),
        }

    async def positions_summary(self, client_id: int | None, since: datetime) -> dict[str, Any]:
        p = orm.positions
        closed_in = and_(p.c.status == PositionStatus.CLOSED.value, p.c.closed_at >= since)
        stmt = select(
            func.count().filter(p.c.status == PositionStatus.OPEN.value),
            func.count().filter(p.c.status == PositionStatus.SCHEDULED.value),
            func.count().filter(closed_in),
            func.count().filter(p.c.created_at >= since),
            _sum(case((closed_in, p.c.realized_profit))),
            _sum(case((p.c.status != PositionStatus.CLOSED.value, p.c.cost))),
        )
        if client_id is not None:
            stmt = stmt.where(p.c.client_id == client_id)
        n_open, n_sched, n_closed, n_opened, realized, committed = (await self.session.execute(stmt)).one()
        return {
            "open": n_open,
            "scheduled": n_sched,
            "closed": n_closed,
            "opened": n_opened,
            "realized_profit": Decimal(realized),
            "committed": Decimal(committed),
        }

    async def trades_summary(self, symbol_id: int, client_id: int | None) -> dict[str, Any]:
        t = orm.trades
        buy, sell = t.c.side == "buy", t.c.side == "sell"
        stmt = select(
            func.count(),
            func.count().filter(buy),
            func.count().filter(sell),
            _sum(case((buy, t.c.quantity))),
            _sum(case((sell, t.c.quantity))),
            _sum(case((buy, t.c.quote_amount))),
            _sum(case((sell, t.c.quote_amount))),
            _sum(t.c.profit),
            func.min(t.c.executed_at),
            func.max(t.c.executed_at),
        ).where(t.c.symbol_id == symbol_id)
        if client_id is not None:
            stmt = stmt.where(t.c.client_id == client_id)
        row = (await self.session.execute(stmt)).one()
        keys = (
            "trades", "buys", "sells", "bought_quantity", "sold_quantity", "quote_spent",
            "quote_received", "realized_profit", "first_trade_at", "last_trade_at",
        )  # fmt: skip
        return dict(zip(keys, row, strict=True))


class SqlAlchemyRefreshTokenRepository(_Base):
    async def get_by_hash(self, token_hash: str, *, for_update: bool = False) -> RefreshToken | None:
        stmt = select(RefreshToken).where(orm.refresh_tokens.c.token_hash == token_hash)
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def _revoke(self, where, at: datetime) -> int:  # type: ignore[no-untyped-def]
        t = orm.refresh_tokens
        stmt = update(t).where(where, t.c.revoked_at.is_(None)).values(revoked_at=at)
        result = await self.session.execute(stmt)
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def revoke_family(self, family_id: str, at: datetime) -> int:
        return await self._revoke(orm.refresh_tokens.c.family_id == family_id, at)

    async def revoke_client(self, client_id: int, at: datetime) -> int:
        return await self._revoke(orm.refresh_tokens.c.client_id == client_id, at)


class SqlAlchemyAuditRepository(_Base):
    async def list_by_client(self, client_id: int, limit: int) -> Sequence[AuditEntry]:
        t = orm.audit_log
        stmt = select(AuditEntry).where(t.c.client_id == client_id).order_by(t.c.id.desc()).limit(limit)
        return (await self.session.execute(stmt)).scalars().all()
