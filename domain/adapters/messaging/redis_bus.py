"""Events on Redis pub/sub: ticks, fills and strategy events travel from the workers (and the API's
own mutations) to every API instance, which fans them out to subscribers.

Channels (under the configured prefix): `<p>:ticks:<SYMBOL>`, `<p>:fills`, `<p>:events`, and
`<p>:orders` (every order a transaction recorded or changed, in its committed state).
Payloads are JSON with decimals as strings.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from redis.asyncio import Redis

from domain.model import Order, StrategyEvent, Trade

log = logging.getLogger("criptoren.bus")


def _default(value: object) -> str:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value))


def dumps(payload: dict[str, Any]) -> str:
    return json.dumps(payload, default=_default, separators=(",", ":"))


def trade_payload(t: Trade) -> dict[str, Any]:
    return {
        "id": t.id, "client_id": t.client_id, "symbol_id": t.symbol_id, "strategy_id": t.strategy_id,
        "position_id": t.position_id, "order_id": t.order_id, "side": t.side.value, "price": t.price,
        "quantity": t.quantity, "quote_amount": t.quote_amount, "fees": t.fees, "fee_asset": t.fee_asset,
        "profit": t.profit, "notes": t.notes, "executed_at": t.executed_at,
    }  # fmt: skip


def order_payload(o: Order) -> dict[str, Any]:
    return {
        "id": o.id, "client_order_id": o.client_order_id, "client_id": o.client_id, "symbol_id": o.symbol_id,
        "strategy_id": o.strategy_id, "position_id": o.position_id, "side": o.side.value, "type": o.type.value,
        "purpose": o.purpose.value, "time_in_force": o.time_in_force.value if o.time_in_force else None,
        "status": o.status.value, "requested_quantity": o.requested_quantity, "requested_quote": o.requested_quote,
        "price": o.price, "filled_quantity": o.filled_quantity, "filled_quote": o.filled_quote,
        "average_price": o.average_price, "fee": o.fee, "fee_asset": o.fee_asset,
        "exchange_order_id": o.exchange_order_id, "error": o.error, "created_at": o.created_at,
        "updated_at": o.updated_at,
    }  # fmt: skip


def event_payload(e: StrategyEvent) -> dict[str, Any]:
    return {
        "id": e.id, "strategy_id": e.strategy_id, "client_id": e.client_id, "position_id": e.position_id,
        "type": e.type, "message": e.message, "data": e.data, "created_at": e.created_at,
    }  # fmt: skip


class RedisEventBus:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix

    def channel(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    def ticks_channel(self, symbol: str) -> str:
        return self.channel(f"ticks:{symbol}")

    async def publish_tick(
        self, symbol: str, price: Decimal, at: datetime, also_set: tuple[str, str] | None = None
    ) -> None:
        """Store and publish a tick; `also_set` (key, value): one more key written in the same round
        trip (the consumer's checkpoint)."""
        payload = dumps({"symbol": symbol, "price": price, "at": at})
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(self.channel(f"price:{symbol}"), payload)
            pipe.publish(self.ticks_channel(symbol), payload)
            if also_set is not None:
                pipe.set(*also_set)
            await pipe.execute()

    async def last_price(self, symbol: str) -> tuple[Decimal, datetime] | None:
        raw = await self.redis.get(self.channel(f"price:{symbol}"))
        if raw is None:
            return None
        data = json.loads(raw)
        return Decimal(data["price"]), datetime.fromisoformat(data["at"])

    async def publish(
        self, events: Sequence[StrategyEvent], trades: Sequence[Trade], orders: Sequence[Order] = ()
    ) -> None:
        """Publish what a committed transaction recorded. Failures are logged: the database stays
        the source of truth, and subscribers can re-read it."""
        if not events and not trades and not orders:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for t in trades:
                    pipe.publish(self.channel("fills"), dumps(trade_payload(t)))
                for e in events:
                    pipe.publish(self.channel("events"), dumps(event_payload(e)))
                for o in orders:
                    pipe.publish(self.channel("orders"), dumps(order_payload(o)))
                await pipe.execute()
        except Exception:  # the commit already happened; never turn it into an error
            log.exception("Could not publish %d events, %d fills and %d orders", len(events), len(trades), len(orders))
