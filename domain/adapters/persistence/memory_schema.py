"""The schema's constraints and the secondary indexes of the in-memory store (`memory.py`): its
check constraints, unique keys (partial ones with their WHERE) and indexes, by memory table name.
`tests/unit/test_memory_store.py` ties them to the SQLAlchemy tables (`orm`) they mirror."""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable
from typing import Any

from domain.model import AllocationKind, PositionStatus

LIVE = (PositionStatus.OPEN, PositionStatus.SCHEDULED)
CLIENT_ORDER_ID = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")


def _ohlc_consistent(o: Any) -> bool:
    return bool(
        o.low > 0 and o.high >= o.low and o.high >= o.open and o.high >= o.close and o.low <= o.open
        and o.low <= o.close and o.volume >= 0
    )  # fmt: skip


# The schema's check constraints (`orm`), by table and name: a test ties the two sets of names.
CHECKS: dict[str, dict[str, Callable[[Any], bool]]] = {
    "symbols": {
        "filters_positive": lambda o: o.step_size > 0 and o.tick_size > 0 and o.min_qty >= 0 and o.min_notional >= 0,
    },
    "strategies": {
        "base_positive": lambda o: o.base_price > 0,
        "top_above_base": lambda o: o.top_price > o.base_price,
        "capital_percentage_range": lambda o: 0 < o.capital_percentage <= 100,
        "buy_threshold_range": lambda o: 0 <= o.buy_threshold < 100,
        "sell_threshold_range": lambda o: 0 <= o.sell_threshold < 100,
        "min_profit_nonnegative": lambda o: o.min_profit >= 0,
    },
    "positions": {
        "amounts_nonnegative": lambda o: o.quantity >= 0 and o.cost >= 0 and o.dust >= 0,
        "scheduled_has_price": lambda o: o.status is not PositionStatus.SCHEDULED or o.scheduled_exit_price is not None,
        "closed_has_date": lambda o: o.status is not PositionStatus.CLOSED or o.closed_at is not None,
    },
    "orders": {
        "has_amount": lambda o: o.requested_quantity is not None or o.requested_quote is not None,
        "client_order_id_format": lambda o: bool(CLIENT_ORDER_ID.match(o.client_order_id)),
    },
    "trades": {
        "amounts_positive": lambda o: o.price > 0 and o.quantity > 0 and o.quote_amount > 0 and o.fees >= 0,
    },
    "allocations": {
        "amount_nonzero": lambda o: o.amount != 0,
        "profit_flag_matches_kind": lambda o: o.kind.is_profit == o.is_profit,
        "amount_sign_matches_kind": lambda o: (
            o.amount > 0 if o.kind in (AllocationKind.DEPOSIT, AllocationKind.PROFIT) else o.amount < 0
        ),
    },
    "candles": {"ohlc_consistent": _ohlc_consistent},
    "alert_endpoints": {
        "webhook_has_url": lambda o: o.kind != "webhook" or o.url is not None,
        "telegram_has_chat": lambda o: o.kind != "telegram" or o.telegram_chat_id is not None,
    },
    "alert_deliveries": {"attempts_nonnegative": lambda o: o.attempts >= 0},
}

# Unique keys: unique constraints, unique columns and unique indexes of the schema.
UNIQUE: dict[str, tuple[tuple[str, ...], ...]] = {
    "clients": (("api_key",),),
    "symbols": (("symbol",),),
    "strategies": (("client_id", "name"),),
    "orders": (("client_order_id",),),
    "candles": (("symbol_id", "interval", "open_time"),),
    "refresh_tokens": (("token_hash",),),
    "alert_deliveries": (("endpoint_id", "event_id"),),
}
# Partial unique indexes: a row is in the index only when it matches the index's WHERE (orm's
# `postgresql_where`, quoted here so that the test can tie the two).
PARTIAL_UNIQUE: dict[tuple[str, tuple[str, ...]], tuple[str, Callable[[Any], bool]]] = {
    ("strategies", ("client_id", "name")): ("archived_at IS NULL", lambda s: s.archived_at is None),
}


def unique_key(table: str, obj: Any, columns: tuple[str, ...]) -> tuple[Any, ...] | None:
    """The row's key in a unique index; None when it cannot collide (a NULL, or outside a partial
    index's WHERE)."""
    partial = PARTIAL_UNIQUE.get((table, columns))
    if partial is not None and not partial[1](obj):
        return None
    key = tuple(getattr(obj, c) for c in columns)
    return None if any(k is None for k in key) else key  # NULLs never collide


# Secondary indexes over the committed rows: table -> index name -> the row's key (None: not indexed).
INDEXES: dict[str, dict[str, Callable[[Any], Hashable]]] = {
    "strategies": {"symbol": lambda s: s.symbol_id},
    "positions": {
        "live_strategy": lambda p: p.strategy_id if p.status in LIVE else None,
        "live_client": lambda p: p.client_id if p.status in LIVE else None,
    },
    "allocations": {
        "strategy": lambda a: (a.strategy_id, a.is_profit),
        "client": lambda a: a.client_id,
    },
    "orders": {"status": lambda o: o.status},
    "events": {"strategy": lambda e: e.strategy_id},
    "candles": {"series": lambda c: (c.symbol_id, c.interval)},
}
