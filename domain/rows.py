"""What the API's list queries and DataLoaders read: plain copies of rows, with exactly the
columns the API shows (amounts as exact `Decimal`s, as stored).

The entities of `domain.model` are mapped by the ORM: loading one registers it in the session's
identity map with its instrumented state, which is work wasted on data that is only read and
written out. The read path (`domain.ports.BatchReader`) selects columns and fills these instead.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from operator import attrgetter
from typing import Any, TypeVar

from domain import channel as ch
from domain.model import PositionStatus, Side

R = TypeVar("R")


@dataclass(slots=True)
class SymbolRow:
    id: int
    symbol: str
    base_asset: str
    quote_asset: str
    step_size: Decimal
    min_qty: Decimal
    tick_size: Decimal
    min_notional: Decimal


@dataclass(slots=True)
class StrategyRow:
    id: int
    client_id: int
    symbol_id: int
    name: str
    base_price: Decimal
    top_price: Decimal
    capital_percentage: Decimal
    buy_threshold: Decimal
    sell_threshold: Decimal
    min_profit: Decimal
    timeframe: str
    is_active: bool
    is_armed: bool
    channel_broken_at: datetime | None
    created_at: datetime | None
    updated_at: datetime | None
    archived_at: datetime | None

    @property
    def channel(self) -> ch.Channel:
        return ch.Channel(
            self.base_price, self.top_price, self.capital_percentage, self.buy_threshold, self.sell_threshold,
            self.min_profit, self.timeframe,
        )  # fmt: skip


@dataclass(slots=True)
class PositionRow:
    id: int
    strategy_id: int
    symbol_id: int
    client_id: int
    status: PositionStatus
    entry_price: Decimal
    quantity: Decimal
    cost: Decimal
    fees: Decimal
    dust: Decimal
    min_profit: Decimal
    min_sell_price: Decimal
    scheduled_exit_price: Decimal | None
    exit_price: Decimal | None
    channel_exit_date: datetime | None
    proceeds: Decimal | None
    realized_profit: Decimal | None
    created_at: datetime | None
    closed_at: datetime | None


@dataclass(slots=True)
class TradeRow:
    id: int
    client_id: int
    symbol_id: int
    strategy_id: int | None
    position_id: int | None
    order_id: int | None
    side: Side
    price: Decimal
    quantity: Decimal
    quote_amount: Decimal
    fees: Decimal
    fee_asset: str
    profit: Decimal | None
    notes: str | None
    executed_at: datetime


def columns(cls: type) -> tuple[str, ...]:
    """The column names of a row class, in the order its constructor takes them."""
    return tuple(f.name for f in fields(cls))


_READERS: dict[type, Any] = {}


def row_of(cls: type[R], entity: object) -> R:
    """The row of an entity (`domain.model`): its columns copied."""
    read = _READERS.get(cls)
    if read is None:
        read = _READERS[cls] = attrgetter(*columns(cls))
    return cls(*read(entity))
