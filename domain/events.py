"""Event types: what happened, in the past tense. Stored as `StrategyEvent` rows and published by
the live loop."""

from __future__ import annotations

import enum


class EventType(enum.StrEnum):
    STRATEGY_CREATED = "strategy_created"
    STRATEGY_UPDATED = "strategy_updated"
    STRATEGY_ACTIVATED = "strategy_activated"
    STRATEGY_DEACTIVATED = "strategy_deactivated"
    STRATEGY_REARMED = "strategy_rearmed"
    CHANNEL_BROKEN = "channel_broken"
    ENTRY_SKIPPED = "entry_skipped"
    POSITION_OPENED = "position_opened"
    POSITION_SCHEDULED = "position_scheduled"
    SCHEDULE_CANCELLED = "schedule_cancelled"
    POSITION_CLOSED = "position_closed"
    POSITION_PARTIALLY_SOLD = "position_partially_sold"
    # An order the exchange could not confirm (recorded UNKNOWN), or a resting sell it refused.
    ORDER_UNKNOWN = "order_unknown"
    ORDER_REFUSED = "order_refused"
    # A scheduled position's resting sell that the exchange's filters do not allow yet (its price is
    # too far above the average price, or too many orders are open): placed as soon as they do.
    SELL_WAITING = "sell_waiting"
    CAPITAL_ALLOCATED = "capital_allocated"
    CAPITAL_WITHDRAWN = "capital_withdrawn"
    # Rule 11: entries sized for the principal would be skipped, or every exit scheduled (lot rounding).
    ENTRIES_TOO_SMALL = "entries_too_small"
    PROFIT_WITHDRAWN = "profit_withdrawn"
    # The exchange halted or delisted the strategy's symbol: the strategy was paused, no order is sent.
    SYMBOL_HALTED = "symbol_halted"
    SYMBOL_TRADING = "symbol_trading"  # ... and it trades again (the strategy stays paused until activated)
    STRATEGY_ARCHIVED = "strategy_archived"
    # The client's emergency stop (`domain.services.trading_pause`), recorded on each of its strategies.
    TRADING_PAUSED = "trading_paused"
    TRADING_RESUMED = "trading_resumed"
    # The worker lost the market stream of the strategy's symbol for longer than a short grace (no
    # price reaches the strategy), and got it back (`domain.services.market_streams`, SPEC §4b).
    MARKET_STREAM_DOWN = "market_stream_down"
    MARKET_STREAM_UP = "market_stream_up"
    # An alert endpoint the server disabled (a 410, or failing for a day), recorded on the strategy
    # whose alert it was sending (`domain.services.alerts`).
    ALERT_ENDPOINT_DISABLED = "alert_endpoint_disabled"
    # An order recorded or changed (placed, filled, rejected, cancelled, …): published live to the
    # `positionEvents(includeOrders: true)` subscribers, not stored (the order itself is).
    ORDER_UPDATED = "order_updated"


class SkipReason(enum.StrEnum):
    INSUFFICIENT_CAPITAL = "insufficient_capital"
    INSUFFICIENT_BALANCE = "insufficient_balance"  # the exchange account's free balance (SPEC §4b)
    NO_CAPITAL = "no_capital"
    MAX_POSITIONS = "max_positions"
    FILTER_FAILURE = "filter_failure"
    ALLOCATION_PRECISION = "allocation_precision"
    EXCHANGE_REJECTED = "exchange_rejected"
    ORDER_UNKNOWN = "order_unknown"
    TRADING_PAUSED = "trading_paused"  # the client's emergency stop (`domain.services.trading_pause`)
