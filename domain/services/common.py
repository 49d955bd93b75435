"""What the use cases share: loading entities under their locks, events, ids and formatting."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from domain.errors import (
    InvalidState,
    NoPrice,
    NotFound,
)
from domain.events import EventType
from domain.model import (
    Order,
    OrderPurpose,
    Position,
    PositionStatus,
    Strategy,
    StrategyEvent,
    Symbol,
)
from domain.numbers import AMOUNT, plain
from domain.ports import PriceSource, UnitOfWork


def utcnow() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------- helpers


def check_amount(name: str, value: Decimal) -> None:
    """A user's amount of money or quantity: positive, at most `domain.numbers.MAX_AMOUNT`, and kept exactly by
    the money columns (18 decimals): refused (`VALIDATION`), never rounded."""
    AMOUNT.check(name, value)


async def get_strategy(uow: UnitOfWork, strategy_id: int, client_id: int | None, *, lock: bool = False) -> Strategy:
    strategy = await uow.strategies.get(strategy_id, for_update=lock)
    if strategy is None or (client_id is not None and strategy.client_id != client_id):
        raise NotFound(f"Strategy {strategy_id} not found.", entity="Strategy", id=strategy_id)
    return strategy


def check_not_archived(strategy: Strategy) -> None:
    """An archived strategy keeps its history but takes no new trades, money or changes (only its
    principal and profit can still be taken back)."""
    if strategy.is_archived:
        raise InvalidState(f"Strategy {strategy.id} is archived.", status="archived")


async def get_position(uow: UnitOfWork, position_id: int, client_id: int | None) -> tuple[Position, Strategy]:
    position = await uow.positions.get(position_id)
    if position is None or (client_id is not None and position.client_id != client_id):
        raise NotFound(f"Position {position_id} not found.", entity="Position", id=position_id)
    # Lock order: strategy, then position (every money-moving service takes the strategy lock).
    strategy = await get_strategy(uow, position.strategy_id, None, lock=True)
    locked = await uow.positions.get(position_id, for_update=True)
    assert locked is not None
    return locked, strategy


def require_trading(symbol: Symbol) -> None:
    """SPEC §4b: no order is sent for a symbol the exchange halted or delisted."""
    if not symbol.is_active:
        raise InvalidState(
            f"{symbol.symbol} is not trading on the exchange ({symbol.status}): no order can be sent.",
            reason="symbol_not_trading",
            status=symbol.status,
        )


async def get_symbol(uow: UnitOfWork, symbol_id: int) -> Symbol:
    symbol = await uow.symbols.get(symbol_id)
    if symbol is None:
        raise NotFound(f"Symbol {symbol_id} not found.", entity="Symbol", id=symbol_id)
    return symbol


async def market_price(prices: PriceSource, symbol: Symbol) -> Decimal:
    quote = await prices.current_price(symbol)
    if quote is None:
        raise NoPrice(f"No market price is known for {symbol.symbol} yet.", symbol=symbol.symbol)
    return quote[0]


def record_event(
    uow: UnitOfWork,
    strategy: Strategy,
    type_: EventType,
    message: str,
    position: Position | None = None,
    **data: object,
) -> StrategyEvent:
    assert strategy.id is not None
    event = StrategyEvent(
        strategy_id=strategy.id,
        client_id=strategy.client_id,
        type=type_.value,
        message=message,
        position_id=position.id if position else None,
        data={k: (plain(v) if isinstance(v, Decimal) else v) for k, v in data.items()},
        created_at=utcnow(),
    )
    uow.events.add(event)
    return event


def fmt(value: Decimal) -> str:
    """A number in a message: the API's one written form (`domain.numbers.plain`)."""
    return plain(value)


def client_order_id(purpose: OrderPurpose, owner_id: int, seq: int) -> str:
    """Deterministic client order id: `cr-<purpose letter><strategy or position id>-<seq>`.

    At most 36 characters of `[.A-Z:/a-z0-9_-]` (Binance's `newClientOrderId`): a retried job
    rebuilds the same id, so the exchange and the `orders` table can refuse a second order.
    """
    letter = {
        OrderPurpose.ENTRY: "e",
        OrderPurpose.MANUAL_BUY: "b",
        OrderPurpose.EXIT: "x",
        OrderPurpose.SCHEDULED_EXIT: "s",
        OrderPurpose.MANUAL_SELL: "m",
        OrderPurpose.LOSS_EXIT: "l",
    }[purpose]
    return f"cr-{letter}{owner_id}-{seq}"


async def lock_order(uow: UnitOfWork, client_order_id: str) -> tuple[Order, Position | None, Strategy | None] | None:
    """An order with its position and strategy, locked in the services' order (strategy, position,
    then the order) and read afresh. None when no order has that client order id."""
    order = await uow.orders.get_by_client_order_id(client_order_id)
    if order is None:
        return None
    position: Position | None = None
    strategy: Strategy | None = None
    if order.position_id is not None:
        position, strategy = await get_position(uow, order.position_id, None)
    elif order.strategy_id is not None:
        strategy = await get_strategy(uow, order.strategy_id, None, lock=True)
    locked = await uow.orders.get_by_client_order_id(client_order_id, for_update=True)
    assert locked is not None
    return locked, position, strategy


def is_closed(position: Position) -> bool:
    return position.status is PositionStatus.CLOSED
