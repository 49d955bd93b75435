"""Prometheus metrics (prometheus-client), one registry per process.

Each process exposes what it measures itself: the API on its `/metrics` route, a worker on its own
port (`METRICS_PORT`; off when 0). Prometheus adds the series of every process up (README, "Deploy").

- worker, in memory on the hot path (a counter increment or a histogram observation per tick, no
  I/O): ticks, engine time per tick, tick-to-order latency, decisions, last tick time, stream
  reconnects;
- any process that talks to the exchange: exchange errors by code, orders refused before sending by
  reason (an insufficient balance, a filter);
- the API, read at scrape time from the database and Redis (the source of truth, whichever process
  acted): orders by status, job queue depth, the market streams' heartbeats; and its WebSocket
  subscribers.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Latencies of the engine: microseconds to a second.
FAST_BUCKETS = (
    0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip

TICKS = Counter("criptoren_ticks", "Market ticks processed by the strategy engine.", ["symbol"])
ENGINE_SECONDS = Histogram(
    "criptoren_engine_seconds",
    "Engine time per tick: index lookups, and the decisions the tick caused (their transactions included).",
    ["symbol"],
    buckets=FAST_BUCKETS,
)
TICK_TO_ORDER_SECONDS = Histogram(
    "criptoren_tick_to_order_seconds",
    "From a tick's arrival to the start of the decision it triggers (the order request follows in it).",
    ["symbol"],
    buckets=FAST_BUCKETS,
)
DECISIONS = Counter("criptoren_decisions", "Decisions (one transaction each) taken by the engine.", ["symbol"])
LAST_TICK = Gauge(
    "criptoren_stream_last_tick_timestamp_seconds", "Wall-clock time of the last tick processed.", ["symbol"]
)
STREAM_RECONNECTS = Counter(
    "criptoren_stream_reconnects", "Market stream reconnections after a drop (Binance streams).", ["symbol"]
)
EXCHANGE_ERRORS = Counter(
    "criptoren_exchange_errors",
    "Errors answered by the exchange (Binance error code, or http_<status>, or transport).",
    ["code"],
)
ORDERS_NOT_SENT = Counter(
    "criptoren_orders_not_sent",
    "Orders refused before sending, by reason: INSUFFICIENT_BALANCE (the account's free balance) or the "
    "exchange filter (LOT_SIZE, MARKET_LOT_SIZE, NOTIONAL, PERCENT_PRICE_BY_SIDE, MAX_NUM_ORDERS, …).",
    ["reason"],
)

ORDERS = Gauge("criptoren_orders", "Orders by status, read from the database at scrape time.", ["status"])
JOB_QUEUE_DEPTH = Gauge("criptoren_job_queue_depth", "Jobs waiting in the arq queue, read from Redis at scrape time.")
WS_SUBSCRIBERS = Gauge("criptoren_ws_subscribers", "GraphQL subscriptions open on this API process.")
WS_CONNECTIONS = Gauge("criptoren_ws_connections", "WebSocket connections open on this API process.")
WS_SLOW_CONSUMERS = Counter(
    "criptoren_ws_slow_consumers",
    "WebSockets closed (1013) because their client let WS_QUEUE_DEPTH messages pile up unread.",
)
BACKTESTS_BUSY = Counter("criptoren_backtests_busy", "Backtests refused with BUSY (pool full, or one per client).")
STREAM_UP = Gauge(
    "criptoren_stream_up",
    "1 when a worker reports the symbol's market stream alive and ticking (its Redis heartbeat), else 0.",
    ["symbol"],
)


def exchange_error(code: object) -> None:
    """Count an exchange error by its code."""
    EXCHANGE_ERRORS.labels(code=str(code)).inc()


ALERT_ATTEMPTS = Counter(
    "criptoren_alert_attempts",
    "Alert delivery attempts (webhooks and Telegram) by outcome: ok (2xx), gone (410: endpoint disabled), error.",
    ["outcome"],
)
ALERT_DELIVERIES = Counter(
    "criptoren_alert_deliveries",
    "Alert deliveries finished, by outcome: delivered, failed (out of retries or 410), abandoned (endpoint disabled).",
    ["outcome"],
)
ALERT_LOG = Gauge(
    "criptoren_alert_deliveries_by_status",
    "Alert deliveries in the log by status (pending, delivered, failed, abandoned), read from the database at "
    "scrape time.",
    ["status"],
)
