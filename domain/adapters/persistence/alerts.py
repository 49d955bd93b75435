"""The alerts' repository on PostgreSQL: endpoints, the delivery log, and the events' outbox."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import and_, delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.adapters.persistence import orm
from domain.adapters.persistence.orm import STREAM_EVENTS_PREDICATE
from domain.model import AlertDelivery, AlertEndpoint, DeliveryStatus, StrategyEvent
from domain.ports import Page


class SqlAlchemyAlertRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, obj: AlertEndpoint | AlertDelivery) -> None:
        self.session.add(obj)

    async def endpoint(self, endpoint_id: int, *, for_update: bool = False) -> AlertEndpoint | None:
        stmt = select(AlertEndpoint).where(orm.alert_endpoints.c.id == endpoint_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def endpoints(self, client_id: int) -> Sequence[AlertEndpoint]:
        t = orm.alert_endpoints
        stmt = select(AlertEndpoint).where(t.c.client_id == client_id).order_by(t.c.id)
        return (await self.session.execute(stmt)).scalars().all()

    async def active_endpoints(self, client_ids: Collection[int]) -> Sequence[AlertEndpoint]:
        t = orm.alert_endpoints
        stmt = select(AlertEndpoint).where(t.c.client_id.in_(list(client_ids)), t.c.is_active).order_by(t.c.id)
        return (await self.session.execute(stmt)).scalars().all()

    async def delete_endpoint(self, endpoint_id: int) -> None:
        await self.session.execute(delete(orm.alert_endpoints).where(orm.alert_endpoints.c.id == endpoint_id))

    async def delivery(self, delivery_id: int, *, for_update: bool = False) -> AlertDelivery | None:
        stmt = select(AlertDelivery).where(orm.alert_deliveries.c.id == delivery_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def deliveries(self, endpoint_id: int, page: Page) -> Sequence[AlertDelivery]:
        t = orm.alert_deliveries
        stmt = select(AlertDelivery).where(t.c.endpoint_id == endpoint_id)
        if page.before_id is not None:
            stmt = stmt.where(t.c.id < page.before_id)
        return (await self.session.execute(stmt.order_by(t.c.id.desc()).limit(page.limit))).scalars().all()

    async def event(self, event_id: int) -> StrategyEvent | None:
        stmt = select(StrategyEvent).where(orm.strategy_events.c.id == event_id)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def undispatched_events(self, limit: int) -> Sequence[StrategyEvent]:
        """The outbox's head, locked; SKIP LOCKED lets two dispatchers share it without waiting."""
        t = orm.strategy_events
        stmt = (
            select(StrategyEvent)
            .where(t.c.dispatched_at.is_(None))
            .order_by(t.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True, of=t)
        )
        return (await self.session.execute(stmt)).scalars().all()

    async def due_deliveries(self, now: datetime, limit: int) -> Sequence[AlertDelivery]:
        t = orm.alert_deliveries
        stmt = (
            select(AlertDelivery)
            .where(t.c.status == DeliveryStatus.PENDING.value, t.c.next_attempt_at <= now)
            .order_by(t.c.next_attempt_at, t.c.id)
            .limit(limit)
        )
        return (await self.session.execute(stmt)).scalars().all()

    async def earlier_pending(self, delivery: AlertDelivery, event: StrategyEvent) -> bool:
        """Whether an earlier event of the same position (of the same strategy, for an event of no
        position) waits for the same endpoint: they are delivered in order."""
        d, e = orm.alert_deliveries, orm.strategy_events
        same = (
            e.c.position_id == event.position_id
            if event.position_id is not None
            else and_(e.c.strategy_id == event.strategy_id, e.c.position_id.is_(None))
        )
        stmt = (
            select(d.c.id)
            .join(e, e.c.id == d.c.event_id)
            .where(
                d.c.endpoint_id == delivery.endpoint_id,
                d.c.status == DeliveryStatus.PENDING.value,
                d.c.event_id < delivery.event_id,
                same,
            )
            .limit(1)
        )
        return (await self.session.execute(stmt)).first() is not None

    async def count_by_status(self) -> dict[str, int]:
        t = orm.alert_deliveries
        rows = await self.session.execute(select(t.c.status, func.count()).group_by(t.c.status))
        return {str(getattr(status, "value", status)): n for status, n in rows.all()}

    async def last_stream_events(self, strategy_ids: Collection[int]) -> dict[int, StrategyEvent]:
        if not strategy_ids:
            return {}
        t = orm.strategy_events
        latest = (
            select(func.max(t.c.id))
            # Written out (not bound) so that the partial index ix_strategy_events_stream applies.
            .where(t.c.strategy_id.in_(list(strategy_ids)), text(STREAM_EVENTS_PREDICATE))
            .group_by(t.c.strategy_id)
        )
        stmt = select(StrategyEvent).where(t.c.id.in_(latest))
        return {e.strategy_id: e for e in (await self.session.execute(stmt)).scalars().all()}
