"""The live loop: market stream -> strategy engine -> orders, one consumer per symbol.

`MarketWorker` watches every symbol with an active strategy (or live positions), takes a Redis lease
per symbol (`workers.lease`), and runs a `SymbolConsumer` for each symbol it holds. A consumer:

- keeps the symbol's strategies in a `SymbolIndex` (domain/engine.py), refreshed from the
  database when a strategy or position changes (events on Redis) and after every decision, and
  reloaded in full after every reconnection of the listener of those events and at least every
  `ENGINE_RELOAD_SECONDS`, so a change whose event was lost is missed for that long at most;
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

Outages (issue 17). Each held symbol has a keeper task that renews its lease every `lease_ttl / 5`
and runs its consumer. When Redis cannot be reached the consumer goes on trading (PostgreSQL is the
source of truth; the tick is not published and the checkpoint not saved meanwhile) for as long as
the lease is certainly still its own, and stops `lease_ttl / 5` before the lease could expire for
another worker — so a symbol is never consumed by two workers at once. When Redis answers again the
worker takes the lease again and the consumer resumes from the checkpoint, with a full reload. A
consumer that fails (a decision that could not commit: PostgreSQL or the exchange unreachable) is
restarted from its checkpoint with backoff; the supervisor's own rounds, the listener and the
stream heartbeats retry with backoff too (`workers.supervision`). Nothing here ends the worker.
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

from redis.exceptions import RedisError

from domain import channel as ch
from domain import services
from domain.adapters.bootstrap import App, metrics, stream_health
from domain.errors import ValidationError
from domain.logctx import log_fields
from domain.market import CandleSpacing, ClosedCandle, MarketSource, Tick
from domain.model import Candle, Symbol
from domain.services import candles
from domain.symbol_engine import SymbolEngine
from workers.balance import WorkerRegistry, plan
from workers.lease import RedisLease
from workers.stream_alerts import StreamAlerts
from workers.supervision import Backoff, describe, supervise, wait_or_stop

log = logging.getLogger("criptoren.market")

# Timeframes always built from finer candles (for priceHistory), besides the strategies' own.
HISTORY_TIMEFRAMES = ("1h", "4h", "1d")
# A consumer that ran this long without failing has recovered: its next failure backs off from the start.
HEALTHY_AFTER = 30.0


class LeaseExpiring(Exception):
    """The consumer's lease could not be renewed and may soon expire for other workers."""


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
    def __init__(
        self,
        app: App,
        source: MarketSource,
        symbol: Symbol,
        *,
        checkpoint_every: int = 1,
        lease: RedisLease | None = None,
        fence: float = 1.0,
        reload_seconds: float = 30.0,
        applied: dict[str, tuple[int, Decimal]] | None = None,
    ) -> None:
        assert symbol.id is not None
        self.app = app
        # The last tick this worker applied, per cursor, kept by the worker across its consumers: the
        # floor of a resume, since the checkpoint in Redis is not saved while Redis is down (or is
        # lost with a Redis that keeps nothing) and ticks applied meanwhile must not be applied again
        # — a replayed dip to B and rise through E would re-arm and buy twice in one bounce (rule 1).
        self.applied = applied if applied is not None else {}
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
        # The lease it consumes under (None: no lease, as in the benchmarks): it takes no new event
        # once fewer than `fence` seconds of the lease are certain (see workers.lease).
        self.lease = lease
        self.fence = fence
        # Full reloads of the index: requested after the listener of changes reconnected, due every
        # `reload_seconds` anyway.
        self.reload_seconds = reload_seconds
        self._full_reload_due = 0.0
        self._full_reload_requested = False
        self._redis_failing = False
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
        mine = self.applied.get(self._cursor_key)
        if mine is not None and (self.seq is None or mine[0] > self.seq):
            self.seq, self.prev = mine

    def _checkpoint(self) -> str:
        return json.dumps({"seq": self.seq, "price": str(self.prev)})

    async def save_checkpoint(self) -> None:
        if self.prev is not None:
            await self.app.redis.set(self._cursor_key, self._checkpoint())

    # ------------------------------------------------------------ index

    async def reload(self, strategy_ids: set[int] | None = None) -> None:
        """Re-read some strategies into the index, or all of them (None)."""
        if strategy_ids is None:
            # Taken before the read: a change signalled while it runs is applied at the next tick.
            self.dirty, self._full_reload_requested = set(), False
            self._full_reload_due = time.monotonic() + self.reload_seconds
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

    def request_full_reload(self) -> None:
        """Events may have been missed (the listener reconnected): reload everything before the next tick."""
        self._full_reload_requested = True

    async def _refresh(self) -> None:
        if self._full_reload_requested or time.monotonic() >= self._full_reload_due:
            await self.reload()
        elif self.dirty:
            ids, self.dirty = self.dirty, set()
            await self.reload(ids)

    def may_continue(self) -> bool:
        """Whether the lease is certainly still this worker's for long enough to handle an event."""
        return self.lease is None or self.lease.remaining() > self.fence

    # ------------------------------------------------------------ events

    async def run(self) -> None:
        await self.reload()
        await self.load_checkpoint()
        log.info(
            "Consuming %s from %s (%d strategies, resuming after seq %s)",
            self.symbol.symbol, self.source.name, len(self.index), self.seq,
        )  # fmt: skip
        async for event in self.source.stream(self.symbol.symbol, after_seq=self.seq):
            if not self.may_continue():
                raise LeaseExpiring(self.symbol.symbol)
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
        await self._refresh()
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
        self.applied[self._cursor_key] = (tick.seq, cur)
        await self._publish(cur, tick.at)

    async def _publish(self, price: Decimal, at: datetime) -> None:
        """Publish the tick and save the checkpoint. Without Redis, neither is essential: subscribers
        miss a price, a worker that takes over replays a few more ticks (harmless, see above); the
        consumer goes on while its lease holds (`may_continue`)."""
        try:
            # One round trip: the tick and, when due, the checkpoint.
            due = self.stats.ticks % self.checkpoint_every == 0
            checkpoint = (self._cursor_key, self._checkpoint()) if due else None
            await self.app.bus.publish_tick(self.symbol.symbol, price, at, also_set=checkpoint)
        except (RedisError, OSError, TimeoutError) as e:
            if not self._redis_failing:
                self._redis_failing = True
                log.warning(
                    "Redis unreachable (%s): %s ticks are not published nor checkpointed until it answers",
                    describe(e), self.symbol.symbol,
                )  # fmt: skip
            return
        if self._redis_failing:
            self._redis_failing = False
            log.info("Redis answers again: %s ticks are published and checkpointed", self.symbol.symbol)

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


@dataclass
class HeldSymbol:
    """A symbol this worker holds the lease of: its consumer, and the keeper task that renews the
    lease and runs the consumer while the lease holds (`MarketWorker._keep`)."""

    consumer: SymbolConsumer
    lease: RedisLease
    keeper: asyncio.Task[str] | None = None
    consumer_task: asyncio.Task[None] | None = None
    started: float = field(default_factory=time.monotonic)
    releasing: bool = False  # handed over to another worker: its keeper is stopping it


class MarketWorker:
    """Takes a lease per watched symbol and runs its consumer while the lease holds.

    Rounds every `poll_seconds`: collect the keepers that ended (a finished replay, a failed consumer
    — retried after a backoff —, a lease lost or expiring), take the lease of every watched symbol
    not held yet, record a market stream lost beyond a grace, or back (`workers.stream_alerts`: events,
    so alerts), report the streams' state for /readyz. A round that fails (PostgreSQL or Redis
    unreachable) is retried with backoff; the keepers go on meanwhile.

    Each held symbol is a `HeldSymbol` in `held`, run by its keeper (`_keep`), which alone renews
    and releases the lease. To hand a symbol over to another worker (issue 12), mark its consumer
    `stopping` and cancel its consumer task unless `busy`: the keeper then saves the checkpoint,
    removes the heartbeat and releases the lease, as on a graceful stop (`stop_consumers`).

    Several workers share the symbols evenly (`workers.balance`): each round renews this worker's
    heartbeat, reads who holds each watched symbol from the leases, takes free symbols up to the fair
    share and hands its surplus over to workers under theirs (`_balance`). A symbol left free for
    `2 × lease_ttl` is taken whatever the shares say: a symbol consumed by a worker over its share
    is better than one consumed by nobody.
    """

    def __init__(
        self,
        app: App,
        source: MarketSource,
        *,
        owner: str | None = None,
        lease_ttl: float = 5.0,
        poll_seconds: float = 1.0,
        shutdown_grace: float = 10.0,
        reload_seconds: float = 30.0,
        stream_alert_seconds: float = 20.0,
    ) -> None:
        self.app = app
        self.source = source
        self.owner = owner or worker_id()
        self.lease_ttl = lease_ttl
        self.poll_seconds = poll_seconds
        # The lease is renewed every `renew_every`; a consumer stops `fence` seconds before its
        # lease could expire when it cannot be renewed (a renewal waits at most `fence / 2`).
        self.renew_every = lease_ttl / 5
        self.fence = lease_ttl / 5
        self.reload_seconds = reload_seconds
        # On stop, a decision in flight gets this long to finish before it is abandoned (rolled back).
        self.shutdown_grace = shutdown_grace
        self.held: dict[str, HeldSymbol] = {}
        self._applied: dict[str, tuple[int, Decimal]] = {}  # SymbolConsumer.applied, shared by its consumers
        self.finished: dict[str, SymbolConsumer] = {}
        self._retry_at: dict[str, float] = {}
        self._backoffs: dict[str, Backoff] = {}
        self._stop = asyncio.Event()
        self._reporting_failed = False
        self.registry = WorkerRegistry(
            app.redis, app.bus.channel("workers:"), self.owner, ttl=max(lease_ttl, 3 * poll_seconds)
        )
        self._free_since: dict[str, float] = {}
        self._strategy_symbols: dict[int, int] = {}  # strategy id -> symbol id (`_symbol_of`)
        # A stream lost longer than `stream_alert_seconds`, and its return, become events (alerts).
        self.stream_alerts = StreamAlerts(app, source, stream_alert_seconds)

    def lease(self, symbol: str) -> RedisLease:
        return RedisLease(
            self.app.redis, self.app.bus.channel(f"lease:{symbol}"), self.owner, self.lease_ttl, timeout=self.fence / 2
        )

    async def watched_symbols(self) -> list[Symbol]:
        async with self.app.uow() as uow:
            return list(await uow.symbols.watched())

    async def run(self) -> None:
        listen = supervise(
            "Listener of strategy changes", self._listen_for_changes, stop=self._stop, restart_on_return=True
        )
        listener = asyncio.create_task(listen, name="strategy-changes")
        backoff = Backoff(initial=self.poll_seconds, maximum=max(self.poll_seconds, 10.0))
        try:
            while not self._stop.is_set():
                delay = self.poll_seconds
                try:
                    await self._round()
                    backoff.reset()
                except Exception as e:
                    delay = backoff.next_delay()
                    if backoff.failures == 1:
                        log.warning("Market supervisor round failed; retrying in %.1f s", delay, exc_info=True)
                    else:
                        log.warning("Market supervisor round failed again (%s); retrying in %.1f s", describe(e), delay)
                await wait_or_stop(self._stop, delay)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            try:
                # The others count without this worker at once, rather than when its heartbeat
                # expires: they take its symbols as soon as its consumers release them.
                await asyncio.wait_for(self.registry.leave(), self.fence)
            except Exception as e:
                log.warning("Could not remove the heartbeat of worker %s (%s)", self.owner, describe(e))
            await self.stop_consumers()

    async def _round(self) -> None:
        self._collect_ended()
        try:
            await self._balance()
            consumed = {n: h.consumer.symbol_id for n, h in self.held.items() if not h.releasing}
            await self.stream_alerts.check(consumed)
        finally:
            await self.report_streams()

    def _collect_ended(self) -> None:
        now = time.monotonic()
        for name, held in list(self.held.items()):
            if held.keeper is None or not held.keeper.done():
                continue
            del self.held[name]
            outcome = "stopped" if held.keeper.cancelled() else held.keeper.result()
            backoff = self._backoffs.setdefault(name, Backoff())
            if now - held.started >= HEALTHY_AFTER:
                backoff.reset()
            if outcome == "finished":
                self.finished[name] = held.consumer  # its stream ended (a replay played out)
            elif outcome == "failed":
                # A failed decision (the database or the exchange unreachable, …) rolled back: the
                # consumer restarts from its checkpoint after the delay, the failed tick included;
                # deterministic order ids make the retry safe.
                delay = backoff.next_delay()
                self._retry_at[name] = now + delay
                task = held.consumer_task
                error = task.exception() if task is not None and task.done() and not task.cancelled() else None
                if backoff.failures == 1:
                    message = "Consumer of %s failed; restarting it from its checkpoint in %.1f s"
                    log.error(message, name, delay, exc_info=error)
                else:
                    message = "Consumer of %s failed again (%s); restarting it in %.1f s"
                    log.error(message, name, describe(error) if error else "?", delay)

    async def _balance(self) -> None:
        """Renew the heartbeat, then take free symbols up to the fair share and hand the surplus over
        to the workers under theirs (`workers.balance.plan`)."""
        symbols = await self.watched_symbols()
        await self.registry.beat()
        live = await self.registry.live()
        names = [s.symbol for s in symbols]
        values = await self.app.redis.mget([self.lease(n).key for n in names]) if names else []
        holders: dict[str, str | None] = {
            n: v.decode() if isinstance(v, bytes) else v for n, v in zip(names, values, strict=True)
        }
        for name, held in self.held.items():
            if held.releasing and name in holders:
                holders[name] = None  # on its way to another worker: no longer counted as ours
        todo = plan(holders, live, self.owner)
        if todo.release:
            self._release(todo.release)
        now = time.monotonic()
        for name in list(self._free_since):
            if holders.get(name) is not None:
                del self._free_since[name]
        taken = 0
        # A lease still ours (a release that failed during an outage) first: `acquire` is re-entrant.
        for symbol in sorted(symbols, key=lambda s: holders[s.symbol] != self.owner):
            name = symbol.symbol
            if holders[name] not in (None, self.owner):
                continue
            free_since = self._free_since.setdefault(name, now)
            if name in self.held or name in self.finished or self._retry_at.get(name, 0.0) > now:
                continue
            if taken >= todo.take and now - free_since < 2 * self.lease_ttl:
                continue
            lease = self.lease(name)
            if await lease.acquire():
                self._free_since.pop(name, None)
                self._hold(symbol, lease)
                taken += 1

    def _release(self, count: int) -> None:
        """Hand `count` symbols over: the most recently taken first (the longest-held stay put). Each
        consumer finishes the event in hand; its keeper then saves the checkpoint and releases the lease."""
        candidates = [h for h in self.held.values() if not h.releasing and h.keeper is not None]
        for held in sorted(candidates, key=lambda h: h.started, reverse=True)[:count]:
            held.releasing = True
            log.info("Handing %s over to another worker (more than the fair share here)", held.consumer.symbol.symbol)
            held.consumer.stopping = True
            if not held.consumer.busy and held.consumer_task is not None:
                held.consumer_task.cancel()

    def _hold(self, symbol: Symbol, lease: RedisLease) -> None:
        consumer = SymbolConsumer(
            self.app, self.source, symbol, lease=lease, fence=self.fence, reload_seconds=self.reload_seconds,
            applied=self._applied,
        )  # fmt: skip
        held = HeldSymbol(consumer, lease)
        with log_fields(symbol=symbol.symbol):  # on every log line of the keeper and consumer
            held.keeper = asyncio.create_task(self._keep(held), name=f"keep-{symbol.symbol}")
        self.held[symbol.symbol] = held

    async def _keep(self, held: HeldSymbol) -> str:
        """Run the consumer while the lease holds; renew the lease every `renew_every`. Returns why it
        ended: "finished" (the stream ended), "failed" (the consumer raised: retried from its
        checkpoint after a backoff), "stopped" (the worker stops), "lost" (the lease is another's) or
        "expiring" (it could not be renewed: the consumer was stopped before it could expire)."""
        consumer, lease, name = held.consumer, held.lease, held.consumer.symbol.symbol
        task = held.consumer_task = asyncio.create_task(consumer.run(), name=f"consume-{name}")
        outcome: str | None = None
        renew_failing = False
        try:
            while outcome is None:
                await asyncio.wait({task}, timeout=max(0.0, min(self.renew_every, lease.remaining() - self.fence)))
                if task.done():
                    break
                try:
                    if not await lease.renew():
                        log.warning("Lost the lease of %s: stopping its consumer", name)
                        outcome = "lost"
                    elif renew_failing:
                        renew_failing = False
                        log.info("Renewed the lease of %s again", name)
                except Exception as e:
                    if not renew_failing:
                        renew_failing = True
                        log.warning(
                            "Cannot renew the lease of %s (%s); its consumer stops in %.1f s unless a renewal succeeds",
                            name, describe(e), max(0.0, lease.remaining() - self.fence),
                        )  # fmt: skip
                if outcome is None and lease.remaining() <= self.fence:
                    log.warning("Stopping the consumer of %s before its lease can expire for another worker", name)
                    outcome = "expiring"
        finally:
            if not task.done():
                # A decision in flight rolls back; it is replayed from the checkpoint by the next holder.
                task.cancel()
            await asyncio.wait({task}, timeout=self.fence / 2)
        if outcome is not None and task.done() and not task.cancelled():
            task.exception()  # retrieved: the outcome decided above says why it ended (no asyncio noise)
        if outcome is None:
            outcome = self._consumer_outcome(consumer, task, name)
        if outcome in ("lost", "expiring"):
            # Not ours (or not certainly ours) any more: write nothing, the next holder owns the
            # checkpoint and the heartbeat.
            return outcome
        try:
            await asyncio.wait_for(consumer.save_checkpoint(), self.fence)
            if outcome == "stopped":
                # Its heartbeat goes before its lease: /readyz stops counting on this worker at once.
                await asyncio.wait_for(self.app.redis.delete(stream_health.stream_key(self.app.bus, name)), self.fence)
            await lease.release()
        except Exception as e:
            # Redis is down: the lease expires by itself, the heartbeat too, and the next holder
            # resumes from an older checkpoint (replaying a tick is harmless).
            log.warning("Could not hand %s over cleanly (%s)", name, describe(e))
        return outcome

    @staticmethod
    def _consumer_outcome(consumer: SymbolConsumer, task: asyncio.Task[None], name: str) -> str:
        if task.cancelled() or consumer.stopping:
            return "stopped"
        if not task.done():
            log.warning("The consumer of %s did not stop in time", name)
            return "stopped"
        error = task.exception()
        if error is None:
            return "finished"
        if isinstance(error, LeaseExpiring):
            log.warning("The consumer of %s stopped: its lease could not be renewed", name)
            return "expiring"
        return "failed"  # logged by _collect_ended, which knows the backoff

    async def report_streams(self) -> None:
        """The state of the streams this worker consumes, for the API's /readyz (a failure to report
        is logged once until it works again: the heartbeats expire and readiness says so)."""
        now = stream_health.now()
        consumers = [h.consumer for h in self.held.values()]
        states = [(c, "starting" if c.last_tick_wall is None else "streaming") for c in consumers]
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
            await asyncio.wait_for(
                stream_health.report(self.app.redis, self.app.bus, reports, ttl=max(3 * self.lease_ttl, 10.0)),
                max(self.poll_seconds, 1.0),
            )
        except Exception as e:
            if not self._reporting_failed:
                self._reporting_failed = True
                log.warning("Cannot report the market streams' state to Redis (%s)", describe(e))
            return
        if self._reporting_failed:
            self._reporting_failed = False
            log.info("Reporting the market streams' state to Redis again")

    async def _listen_for_changes(self) -> None:
        """Strategy and position changes made elsewhere (API, other workers) mark the index dirty.
        Supervised: restarted with backoff when the connection drops; every (re)subscription asks the
        consumers for a full reload, since the changes made while it was down were not heard."""
        pubsub = self.app.redis.pubsub()
        try:
            await pubsub.subscribe(self.app.bus.channel("events"))
            for held in self.held.values():
                held.consumer.request_full_reload()
            async for message in pubsub.listen():
                if message.get("type") != "message":
                    continue
                strategy_id = json.loads(message["data"]).get("strategy_id")
                if not isinstance(strategy_id, int):
                    continue
                symbol_id = await self._symbol_of(strategy_id)
                for held in self.held.values():
                    if symbol_id is None or held.consumer.symbol_id == symbol_id:
                        held.consumer.mark_dirty(strategy_id)
        finally:
            with contextlib.suppress(Exception):  # the connection is gone already
                await pubsub.aclose()  # type: ignore[no-untyped-call]  # unannotated in redis-py 5

    async def _symbol_of(self, strategy_id: int) -> int | None:
        """The symbol of a strategy (it never changes: cached), so that a change reloads only its
        symbol's consumer — not every consumer of the worker, which with many symbols would read the
        database once per consumer per decision anywhere. None when it cannot be read: every consumer
        then reloads it."""
        if strategy_id not in self._strategy_symbols:
            try:
                async with self.app.uow() as uow:
                    strategy = await uow.strategies.get(strategy_id)
            except Exception as e:
                log.debug("Cannot read the symbol of strategy %s (%s)", strategy_id, describe(e))
                return None
            if strategy is None:
                return None
            self._strategy_symbols[strategy_id] = strategy.symbol_id
        return self._strategy_symbols[strategy_id]

    def stop(self) -> None:
        self._stop.set()

    async def stop_consumers(self) -> None:
        """Graceful stop: a consumer between events stops at once; one handling an event finishes it
        (its decision commits) within `shutdown_grace` — its keeper renews the lease meanwhile —, else
        it is abandoned: cancelled, its transaction rolled back, and the event replayed from the
        checkpoint at the next start (every order id is deterministic and looked up on the exchange
        first, so nothing is doubled). The keepers then save the checkpoints, remove the heartbeats
        and release the leases."""
        for held in self.held.values():
            held.consumer.stopping = True
            if not held.consumer.busy and held.consumer_task is not None:
                held.consumer_task.cancel()
        keepers = {h.keeper for h in self.held.values() if h.keeper is not None}
        if keepers:
            _, pending = await asyncio.wait(keepers, timeout=self.shutdown_grace)
            for held in self.held.values():
                if held.keeper in pending and held.consumer_task is not None:
                    log.warning(
                        "Abandoning %s after %.0f s: its decision rolls back",
                        held.consumer_task.get_name(), self.shutdown_grace,
                    )  # fmt: skip
                    held.consumer_task.cancel()
            await asyncio.wait(keepers, timeout=self.fence + 5)
        self.held.clear()
