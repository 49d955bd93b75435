"""Use cases. Each service owns its transaction: `async with uow: ...; await uow.commit()`.

Services apply the rules of `domain.channel` (SPEC §4) to entities loaded through the unit of
work and send orders through the `Exchange` port — on the account of the client concerned
(`exchange.for_client`): paper, or the client's own Binance account. A raised error leaves the
database unchanged, except where the exchange already acted and that must not be forgotten: an
order whose outcome it could not confirm is kept as UNKNOWN (`OrderOutcomeUnknown`), and a fill
found while cancelling a resting sell is recorded before the cancel is refused (`InvalidState`).

Where orders rest on the exchange (Binance, rule 6), a scheduled position has a LIMIT GTC sell
there; its later fills are applied by `apply_order_update` (user data stream) and
`reconcile_orders` (polling the exchange), both idempotent.

Modules, by concern:
- `strategies`, `capital`: clients, channels, activation, archiving; principal in and out, profit out;
- `orders`: manual buys and sells, scheduled sells (what a user asks for);
- `engine_rules`: what a price move or a timeframe close triggers (what the market asks for);
- `reconciliation`: what the exchange reports of orders, applied once;
- `execution`, `common`: the order machinery and helpers the others share;
- `auth`, `exchange_keys`, `trading_pause`: use cases beside the trading rules (logins, stored
  exchange keys, the emergency stop).

The rule use cases are re-exported here: `services.buy(...)`, `services.process_price_move(...)`.
"""

from domain.services.capital import Allocated, allocate_capital, withdraw_capital, withdraw_profit
from domain.services.common import client_order_id, utcnow
from domain.services.engine_rules import (
    TickOutcome,
    engine_snapshots,
    process_candle_close,
    process_price_move,
    snapshot,
)
from domain.services.execution import ABSENT, ABSENT_AFTER, BuyPlan, plan_entry
from domain.services.orders import buy, cancel_scheduled_sell, schedule_sell, sell
from domain.services.reconciliation import (
    apply_order_update,
    reconcile_orders,
    rest_scheduled_positions,
    resting_orders,
)
from domain.services.strategies import (
    archive_strategy,
    create_client,
    create_strategy,
    set_strategy_active,
    update_strategy,
)

__all__ = [
    "ABSENT",
    "ABSENT_AFTER",
    "Allocated",
    "BuyPlan",
    "TickOutcome",
    "allocate_capital",
    "apply_order_update",
    "archive_strategy",
    "buy",
    "cancel_scheduled_sell",
    "client_order_id",
    "create_client",
    "create_strategy",
    "engine_snapshots",
    "plan_entry",
    "process_candle_close",
    "process_price_move",
    "reconcile_orders",
    "rest_scheduled_positions",
    "resting_orders",
    "schedule_sell",
    "sell",
    "set_strategy_active",
    "snapshot",
    "update_strategy",
    "utcnow",
    "withdraw_capital",
    "withdraw_profit",
]
