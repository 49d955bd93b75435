"""Subscriptions over graphql-transport-ws: live prices, fills and position events (with the orders'
changes, on request).

Events travel on Redis pub/sub (published by the workers and by this API's own mutations), so any
API instance serves any subscriber. Fills, events and orders are scoped to the current client.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

import strawberry

from domain import model, views
from domain.errors import ValidationError
from domain.events import EventType
from gql_api.context import Info
from gql_api.permissions import IsAuthenticated
from gql_api.types import StrategyEvent, Trade, parse_id

MAX_SYMBOLS = 20


@strawberry.type(description="A live price update.")
class PriceTick:
    symbol: str = strawberry.field(description="Symbol, e.g. BTCUSDT.")
    price: Decimal = strawberry.field(description="Last traded price.")
    at: datetime = strawberry.field(description="When it traded (UTC).")


def _trade(p: dict[str, Any]) -> Trade:
    dec = Decimal
    return Trade.from_domain(
        model.Trade(
            id=p["id"], client_id=p["client_id"], symbol_id=p["symbol_id"], strategy_id=p["strategy_id"],
            position_id=p["position_id"], order_id=p["order_id"], side=model.Side(p["side"]), price=dec(p["price"]),
            quantity=dec(p["quantity"]), quote_amount=dec(p["quote_amount"]), fees=dec(p["fees"]),
            fee_asset=p["fee_asset"], profit=dec(p["profit"]) if p["profit"] is not None else None,
            notes=p["notes"], executed_at=datetime.fromisoformat(p["executed_at"]),
        )
    )  # fmt: skip


def _event(p: dict[str, Any]) -> StrategyEvent:
    return StrategyEvent.from_domain(
        model.StrategyEvent(
            id=p["id"], strategy_id=p["strategy_id"], client_id=p["client_id"], position_id=p["position_id"],
            type=p["type"], message=p["message"], data=p["data"], created_at=datetime.fromisoformat(p["created_at"]),
        )
    )  # fmt: skip


def _decimal(value: str | None) -> Decimal | None:
    return Decimal(value) if value is not None else None


def _order(p: dict[str, Any]) -> model.Order:
    dec = Decimal
    return model.Order(
        id=p["id"], client_order_id=p["client_order_id"], client_id=p["client_id"], symbol_id=p["symbol_id"],
        strategy_id=p["strategy_id"], position_id=p["position_id"], side=model.Side(p["side"]),
        type=model.OrderType(p["type"]), purpose=model.OrderPurpose(p["purpose"]),
        time_in_force=model.TimeInForce(p["time_in_force"]) if p["time_in_force"] else None,
        status=model.OrderStatus(p["status"]), requested_quantity=_decimal(p["requested_quantity"]),
        requested_quote=_decimal(p["requested_quote"]), price=_decimal(p["price"]),
        filled_quantity=dec(p["filled_quantity"]), filled_quote=dec(p["filled_quote"]),
        average_price=_decimal(p["average_price"]), fee=dec(p["fee"]), fee_asset=p["fee_asset"],
        exchange_order_id=p["exchange_order_id"], error=p["error"],
        created_at=datetime.fromisoformat(p["created_at"]) if p["created_at"] else None,
        updated_at=datetime.fromisoformat(p["updated_at"]) if p["updated_at"] else None,
    )  # fmt: skip


def _order_event(p: dict[str, Any]) -> StrategyEvent:
    """An order's change as an event of its strategy (`order_updated`), the order attached. Not stored:
    its id names the order and the time of the change."""
    order = _order(p)
    at = order.updated_at or order.created_at or datetime.now(UTC)
    what = f"{order.purpose.value.replace('_', ' ')} {order.side.value} ({order.type.value})"
    message = f"Order {order.client_order_id}, {what}: {order.status.value.replace('_', ' ')}"
    if order.filled_quantity > 0 and order.average_price is not None:
        message += f", {order.filled_quantity.normalize():f} filled at {order.average_price.normalize():f}"
    if order.error:
        message += f" ({order.error})"
    event = StrategyEvent.from_domain(
        model.StrategyEvent(
            strategy_id=order.strategy_id or 0, client_id=order.client_id, type=EventType.ORDER_UPDATED.value,
            message=message + ".", position_id=order.position_id, created_at=at,
            data={"client_order_id": order.client_order_id, "status": order.status.value, "reason": order.error},
        ),
        order,
    )  # fmt: skip
    event.id = strawberry.ID(f"order-{order.id}-{int(at.timestamp() * 1_000_000)}")
    return event


async def _scope(info: Info, strategy_id: strawberry.ID | None) -> int | None:
    """The strategy to filter on (checked to belong to the current client), or None for all."""
    if strategy_id is None:
        return None
    sid = parse_id(strategy_id, "Strategy")
    async with info.context.app.uow() as uow:
        await views.strategy(uow, sid, info.context.client_id)
    return sid


def _visible(info: Info, payload: dict[str, Any], strategy_id: int | None) -> bool:
    client_id = info.context.client_id
    if client_id is not None and payload["client_id"] != client_id:
        return False
    return strategy_id is None or payload["strategy_id"] == strategy_id


StrategyFilter = Annotated[
    strawberry.ID | None, strawberry.argument(description="Only this strategy's (default: all of yours).")
]


@strawberry.type(description="Live updates over WebSocket (graphql-transport-ws).")
class Subscription:
    @strawberry.subscription(description="Live prices of the given symbols.")
    async def prices(
        self,
        info: Info,
        symbols: Annotated[list[str], strawberry.argument(description='Symbols, e.g. ["BTCUSDT"] (at most 20).')],
    ) -> AsyncGenerator[PriceTick, None]:
        if not 1 <= len(symbols) <= MAX_SYMBOLS:
            raise ValidationError(f"Give 1 to {MAX_SYMBOLS} symbols.", field="symbols")
        app = info.context.app
        async with app.uow() as uow:
            names = [(await views.symbol(uow, s)).symbol for s in symbols]
        channels = [app.bus.ticks_channel(name) for name in names]
        async for p in info.context.broadcaster.subscribe(channels):
            yield PriceTick(symbol=p["symbol"], price=Decimal(p["price"]), at=datetime.fromisoformat(p["at"]))

    @strawberry.subscription(
        permission_classes=[IsAuthenticated], description="Every executed trade (buys and sells), as it happens."
    )
    async def fills(self, info: Info, strategy_id: StrategyFilter = None) -> AsyncGenerator[Trade, None]:
        sid = await _scope(info, strategy_id)
        async for p in info.context.broadcaster.subscribe([info.context.app.bus.channel("fills")]):
            if _visible(info, p, sid):
                yield _trade(p)

    @strawberry.subscription(
        permission_classes=[IsAuthenticated],
        description="What happens to positions and strategies: opened, scheduled, closed, channel broken, entry "
        "skipped (with its reason), … and, with includeOrders, every change of an order.",
    )
    async def position_events(
        self,
        info: Info,
        strategy_id: StrategyFilter = None,
        include_orders: Annotated[
            bool,
            strawberry.argument(
                description="Also every change of your orders (placed, resting, filled, rejected with the exchange's "
                "reason, unknown, cancelled) as `order_updated` events carrying the order."
            ),
        ] = False,
    ) -> AsyncGenerator[StrategyEvent, None]:
        sid = await _scope(info, strategy_id)
        bus = info.context.app.bus
        channels = [bus.channel("events"), *([bus.channel("orders")] if include_orders else [])]
        async for p in info.context.broadcaster.subscribe(channels):
            if not _visible(info, p, sid) or p.get("strategy_id") is None:
                continue
            # Payloads of the orders channel are orders (they carry a client order id), not events.
            yield _order_event(p) if "client_order_id" in p else _event(p)
