"""The live loop: market stream -> strategy engine -> orders, one consumer per symbol.

`MarketWorker` watches every symbol with an active strategy (or live positions), takes a Redis lease
per symbol, and runs a `SymbolConsumer` for each symbol it holds. A consumer:

- keeps the symbol's strategies in a `SymbolIndex` (domain/engine.py), refreshed from the
  database when a strategy or position changes (events on Redis) and after every decision;
- on each tick, asks the index which strategies the move concerns (O(log n + k)) and applies the
  rules to those only, through `services.process_price_move` — one transaction per decision. With a
  replayed or synthetic market a move inside a candle is cut at each level it crosses, so fills
  happen at the level, and the jump to a candle's open is one tick filled at the open (SPEC §4
  rule 10);
- stores closed candles, builds each timeframe's candle from finer ones when it closes, and applies
  the channel-break rule to it (rule 5);
- publishes the tick and keeps a checkpoint (last seq and price) in Redis after each tick, so a
  worker that takes over resumes where this one stopped. Re-applying the last tick is harmless:
  every rule is re-checked against the database (a disarmed strategy does not buy, a closed
  position does not sell), and every order has a deterministic client order id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from domain import channel as ch
from domain import services
from domain.adapters.bootstrap import App, metrics, stream_health
from domain.errors import ValidationError
from domain.logctx import log_fields
from domain.market import CandleSpacing, ClosedCandle, MarketSource, Tick
from domain.model import Candle, Symbol
from domain.services import candles
from domain.symbol_engine import SymbolEngine
from workers.lease import RedisLease

log = logging.getLogger("criptoren.market")

# Timeframes always built from finer candles (for priceHistory), besides the strategies' own.
HISTORY_TIMEFRAMES = ("1h", "4h", "1d")


def worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass
class ConsumerStats:
    ticks: int = 0
    decisions: int = 0
    candles: int = 0
    engine_seconds: float = 0.0
    tick_to_order: list[float] = field(default_factory=list)


async def check_candle_spacing(app: App, source: MarketSource) -> None:
    """Rule 5 for a replay: candles coarser than an active strategy's timeframe would never show
    its closes, so its channel would never break. A trader replaying a file expects the run to be
    faithful or refused — so the worker refuses to start, naming each such strategy and the
    coarsest candle interval that works (`ValidationError`). Sources whose candles are 1-minute
    (Binance, synthetic) judge every timeframe."""
    if not isinstance(source, CandleSpacing):
        return
    problems = await candles.strategies_unjudged(app.uow(), source.candle_steps())
    if problems:
        raise ValidationError(
            "The replayed candles are coarser than these strategies' timeframes (SPEC §4 rule 5): "
            + "; ".join(problems)
            + " Replay a finer candle file, or change or pause those strategies.",
            field="REPLAY_FILE",
        )


class SymbolConsumer:
    def __init__(self, app: App, source: MarketSource, symbol: Symbol, *, checkpoint_every: int = 1) -> None:
        assert symbol.id is not None
        self.app = app
        self.source = source
        self.symbol = symbol
        self.symbol_id: int = symbol.id
        # The engine shared with the backtest: index lookups -> services -> index refresh.
        self.engine = SymbolEngine(
            app.uow, app.exchange, symbol, self._set_price, fills_at_levels=source.fills_at_levels
        )
        self.engine.before_decision = self._before_decision
        self.engine.on_decision = self._decided
        self.index = self.engine.index
        self._received = 0.0
        self.prev: Decimal | None = None
        self.seq: int | None = None
        self.dirty: set[int] = set()
        self._unjudged: set[str] = set()
        self.stats = ConsumerStats()
        self.checkpoint_every = checkpoint_every
        self.on_decision: Callable[[services.TickOutcome], None] | None = None
        # Graceful shutdown: `busy` while an event (and the decisions it causes) is handled; once
        # `stopping`, the consumer returns after the event in hand (MarketWorker.stop_consumers).
        self.busy = False
        self.stopping = False
        self.last_tick_wall: float | None = None
        # Metrics, bound once: per tick only in-memory increments and observations.
        name = symbol.symbol
        self._m_ticks = metrics.TICKS.labels(name)
        self._m_engine = metrics.ENGINE_SECONDS.labels(name)
        self._m_tick_to_order = metrics.TICK_TO_ORDER_SECONDS.labels(name)
        self._m_decisions = metrics.DECISIONS.labels(name)
        self._m_last_tick = metrics.LAST_TICK.labels(name)

    # ------------------------------------------------------------ checkpoint

    @property
    def _cursor_key(self) -> str:
        return self.app.bus.channel(f"cursor:{self.source.name}:{self.symbol.symbol}")

    async def load_checkpoint(self) -> None:
        raw = await self.app.redis.get(self._cursor_key)
        if raw:
            data = json.loads(raw)
            self.seq, self.prev = data["seq"], Decimal(data["price"])

    async def save_checkpoint(self) -> None:
        if self.prev is not None:
            await self.app.redis.set(self._cursor_key, json.dumps({"seq": self.seq, "price": str(self.prev)}))

    # ------------------------------------------------------------ index

    async def reload(self, strategy_ids: set[int] | None = None) -> None:
        await self.engine.reload(strategy_ids)
        self._check_spacing()

    def _check_spacing(self) -> None:
        """A strategy created or changed after the start whose timeframe this replay's candles cannot
        judge (rule 5): said loudly, once per timeframe — its channel breaks go unseen."""
        if not isinstance(self.source, CandleSpacing):
            return
        step = self.source.candle_steps().get(self.symbol.symbol)
        for timeframe in self.index.timeframes() - self._unjudged:
            if step is not None and not ch.judges_timeframe(step, timeframe):
                self._unjudged.add(timeframe)
                log.error(
                    "The replay of %s has %s candles: they cannot judge the %s timeframe of its strategies, "
                    "whose channel breaks (SPEC §4 rule 5) go unseen. Replay candles of %s or finer.",
                    self.symbol.symbol, ch.interval_name(step), timeframe, timeframe,
                )  # fmt: skip

    def mark_dirty(self, strategy_id: int) -> None:
        self.dirty.add(strategy_id)

    async def _refresh_dirty(self) -> None:
        if self.dirty:
            ids, self.dirty = self.dirty, set()
            await self.reload(ids)

    # ------------------------------------------------------------ events

    async def run(self) -> None:
        await self.reload()
        await self.load_checkpoint()
        log.info(
            "Consuming %s from %s (%d strategies, resuming after seq %s)",
            self.symbol.symbol, self.source.name, len(self.index), self.seq,
        )  # fmt: skip
        async for event in self.source.stream(self.symbol.symbol, after_seq=self.seq):
            self.busy = True
            try:
                if isinstance(event, Tick):
                    await self.on_tick(event)
                else:
                    await self.on_candle(event)
            finally:
                self.busy = False
            if self.stopping:
                return

    async def on_tick(self, tick: Tick) -> None:
        received = time.perf_counter()
        await self._refresh_dirty()
        prev, cur = self.prev, tick.price
        self.stats.ticks += 1
        if prev is not None and prev != cur:
            self._received = received
            await self.engine.price_moved(prev, cur, tick.at, jump=tick.jump)
        elapsed = time.perf_counter() - received
        self.stats.engine_seconds += elapsed
        self._m_ticks.inc()
        self._m_engine.observe(elapsed)
        self.last_tick_wall = time.time()
        self._m_last_tick.set(self.last_tick_wall)
        self.app.price_book.set(self.symbol.symbol, cur, tick.at)
        self.prev, self.seq = cur, tick.seq
        await self.app.bus.publish_tick(self.symbol.symbol, cur, tick.at)
        if self.stats.ticks % self.checkpoint_every == 0:
            await self.save_checkpoint()

    def _set_price(self, price: Decimal, at: datetime) -> None:
        self.app.price_book.set(self.symbol.symbol, price, at)

    def _before_decision(self) -> None:
        latency = time.perf_counter() - self._received
        self.stats.tick_to_order.append(latency)
        self._m_tick_to_order.observe(latency)

    def _decided(self, outcome: services.TickOutcome) -> None:
        self.stats.decisions += 1
        self._m_decisions.inc()
        if self.on_decision is not None:
            self.on_decision(outcome)

    async def on_candle(self, candle: ClosedCandle) -> None:
        self.stats.candles += 1
        stored = Candle(
            self.symbol_id, candle.interval, candle.open_time, candle.close_time, candle.open, candle.high,
            candle.low, candle.close, candle.volume,
        )  # fmt: skip
        closing = self.engine.closing_timeframes(candle.interval, candle.close_time, HISTORY_TIMEFRAMES)
        closed = await candles.store_closed_candle(stored, closing, self.app.uow())
        for c in closed:
            await self._check_break(c)

    async def _check_break(self, candle: Candle) -> None:
        await self.engine.candle_closed(candle.interval, candle.close, candle.close_time)


class MarketWorker:
    """Takes a lease per watched symbol and runs its consumer while the lease holds."""

    def __init__(
        self,
        app: App,
        source: MarketSource,
        *,
        owner: str | None = None,
        lease_ttl: float = 5.0,
        poll_seconds: float = 1.0,
        shutdown_grace: float = 10.0,
    ) -> None:
        self.app = app
        self.source = source
        self.owner = owner or worker_id()
        self.lease_ttl = lease_ttl
        self.poll_seconds = poll_seconds
        # On stop, a decision in flight gets this long to finish before it is abandoned (rolled back).
        self.shutdown_grace = shutdown_grace
        self.consumers: dict[str, tuple[SymbolConsumer, RedisLease, asyncio.Task[None]]] = {}
        self.finished: dict[str, SymbolConsumer] = {}
        self._stop = asyncio.Event()

    def lease(self, symbol: str) -> RedisLease:
        return RedisLease(self.app.redis, self.app.bus.channel(f"lease:{symbol}"), self.owner, self.lease_ttl)

    async def watched_symbols(self) -> list[Symbol]:
        async with self.app.uow() as uow:
            return list(await uow.symbols.watched())

    async def run(self) -> None:
        events = asyncio.create_task(self._listen_for_changes())
        try:
            while not self._stop.is_set():
                await self._tick_supervisor()
                try:
                    await asyncio.wait_for(self._stop.wait(), self.poll_seconds)
                except TimeoutError:
                    pass
        finally:
            events.cancel()
            await self.stop_consumers()

    async def _tick_supervisor(self) -> None:
        for name, (consumer, lease, task) in list(self.consumers.items()):
            if task.done():
                del self.consumers[name]
                error = None if task.cancelled() else task.exception()
                if error is None:
                    self.finished[name] = consumer  # its stream ended (a replay played out)
                else:
                    # A failed decision (the database or the exchange unreachable, …) rolled back:
                    # the consumer restarts from its checkpoint on a later round, the failed tick
                    # included; deterministic order ids make the retry safe.
                    log.error("Consumer of %s failed; restarting it", name, exc_info=error)
                    await consumer.save_checkpoint()
                await lease.release()
            elif not await lease.renew():
                log.warning("Lost the lease of %s: stopping its consumer", name)
                task.cancel()
                del self.consumers[name]
        for symbol in await self.watched_symbols():
            if symbol.symbol in self.consumers or symbol.symbol in self.finished:
                continue
            lease = self.lease(symbol.symbol)
            if await lease.acquire():
                consumer = SymbolConsumer(self.app, self.source, symbol)
                with log_fields(symbol=symbol.symbol):  # on every log line of the consumer's task
                    task = asyncio.create_task(consumer.run(), name=f"consume-{symbol.symbol}")
                self.consumers[symbol.symbol] = (consumer, lease, task)
        await self.report_streams()

    async def report_streams(self) -> None:
        """The state of the streams this worker consumes, for the API's /readyz (a failure to report
        is logged: the heartbeat expires and readiness says so)."""
        now = stream_health.now()
        states = [(c, "starting" if c.last_tick_wall is None else "streaming") for c, _, _ in self.consumers.values()]
        states += [(c, "finished") for c in self.finished.values()]
        reports = [
            stream_health.StreamReport(
                c.symbol.symbol, self.owner, self.source.name, state, c.last_tick_wall, c.stats.ticks, now
            )
            for c, state in states
        ]
        if not reports:
            return
        try:
            await stream_health.report(self.app.redis, self.app.bus, reports, ttl=max(3 * self.lease_ttl, 10.0))
        except Exception:
            log.exception("Could not report the market streams' state to Redis")

    async def _listen_for_changes(self) -> None:
        """Strategy and position changes made elsewhere (API, other workers) mark the index dirty."""
        pubsub = self.app.redis.pubsub()
        await pubsub.subscribe(self.app.bus.channel("events"))
        try:
            async for message in pubsub.listen():
                if message.get("type") != "message":
                    continue
                strategy_id = json.loads(message["data"]).get("strategy_id")
                for consumer, _, _ in self.consumers.values():
                    consumer.mark_dirty(strategy_id)
        finally:
            await pubsub.aclose()

    def stop(self) -> None:
        self._stop.set()

    async def stop_consumers(self) -> None:
        """Graceful stop: a consumer between events stops at once; one handling an event finishes it
        (its decision commits) within `shutdown_grace`, else it is abandoned — cancelled, its
        transaction rolled back, and the event replayed from the checkpoint at the next start (every
        order id is deterministic and looked up on the exchange first, so nothing is doubled)."""
        for consumer, _, task in self.consumers.values():
            consumer.stopping = True
            if not consumer.busy:
                task.cancel()
        tasks = [task for _, _, task in self.consumers.values()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.shutdown_grace)
            for task in pending:
                log.warning("Abandoning %s after %.0f s: its decision rolls back", task.get_name(), self.shutdown_grace)
                task.cancel()
        for consumer, lease, task in self.consumers.values():
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: S110 - stopping: its error is logged by the task
                pass
            await consumer.save_checkpoint()
            # Its heartbeat goes before its lease: /readyz stops counting on this worker at once.
            with contextlib.suppress(Exception):
                await self.app.redis.delete(stream_health.stream_key(self.app.bus, consumer.symbol.symbol))
            await lease.release()
        self.consumers.clear()
