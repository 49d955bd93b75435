"""One symbol's strategy engine: price moves and timeframe closes in, the services applied to the
strategies they concern.

The live loop (`workers.market.SymbolConsumer`) and the backtest (`domain.backtest`) both drive
this class, so both apply SPEC §4 through the very same code: the index (`domain.engine`) tells which
strategies a move concerns in O(log n + k), `services.process_price_move` and
`services.process_candle_close` decide and trade inside a unit of work, and the index is refreshed
from what the services report after each decision.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from decimal import Decimal

from domain import channel as ch
from domain import commands as cmds
from domain import services
from domain.engine import SymbolIndex
from domain.model import Symbol
from domain.ports import Exchange, UnitOfWorkFactory


class SymbolEngine:
    """Applies one symbol's price moves and candle closes to its strategies (SPEC §4 rules 1 and
    4–6), through the services, in one transaction per decision.

    `set_price(price, at)` records the price an order executes at (the paper exchange reads it);
    `fills_at_levels` cuts each move inside a candle at the levels it crosses, so that a replayed or
    simulated fill happens at the level; a jump between candles is never cut (rule 10)."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        exchange: Exchange,
        symbol: Symbol,
        set_price: Callable[[Decimal, datetime], None],
        *,
        fills_at_levels: bool,
    ) -> None:
        assert symbol.id is not None
        self.uow = uow
        self.exchange = exchange
        self.symbol = symbol
        self.symbol_id: int = symbol.id
        self.set_price = set_price
        self.fills_at_levels = fills_at_levels
        self.index = SymbolIndex(watch_scheduled=not exchange.rests_limit_orders)
        # Hooks: called just before a decision is taken, and with its outcome once the index is fresh.
        self.before_decision: Callable[[], None] | None = None
        self.on_decision: Callable[[services.TickOutcome], None] | None = None

    async def reload(self, strategy_ids: set[int] | None = None) -> None:
        """Re-read the strategies (all, or some) into the index."""
        snapshots = await services.engine_snapshots(self.uow(), self.symbol_id, strategy_ids)
        if strategy_ids is None:
            self.index.replace_all(snapshots)
            return
        for sid in strategy_ids:
            self.index.remove(sid)
        for s in snapshots:
            self.index.put(s)

    async def price_moved(self, prev: Decimal, cur: Decimal, at: datetime, *, jump: bool = False) -> None:
        """A price move `prev -> cur`: rules 1 (re-arm, entry), 4 (exit) and 6 (scheduled sells).

        Rule 10: with fills at levels, a move inside a candle is continuous — cut at every level it
        crosses, each rule firing (and filling) at its level. A `jump` (a candle's close to the next
        open) is not: no price between traded, so it is one tick `prev -> cur`, judged as a live
        tick (`cur < X` for an entry included) and filled at `cur` (a scheduled sell at its limit)."""
        if prev == cur:
            return
        points = self.index.path_points(prev, cur) if self.fills_at_levels and not jump else [cur]
        a = prev
        for b in points:
            await self._step(a, b, at)
            a = b

    async def _step(self, a: Decimal, b: Decimal, at: datetime) -> None:
        ids = self.index.triggered(a, b)
        if not ids:
            return
        # A paper fill of a level-triggered order happens at the level (rule 10).
        self.set_price(b, at)
        if self.before_decision is not None:
            self.before_decision()
        outcome = await services.process_price_move(
            cmds.ProcessPriceMove(self.symbol_id, a, b, at, frozenset(ids)), self.uow(), self.exchange, self.symbol
        )
        seen = {s.strategy_id for s in outcome.snapshots}
        for snap in outcome.snapshots:
            self.index.put(snap)
        if ids - seen:  # paused strategies without positions, deleted ones: re-read
            await self.reload(ids - seen)
        if self.on_decision is not None:
            self.on_decision(outcome)

    def closing_timeframes(self, interval: str, close_time: datetime, extra: Iterable[str] = ()) -> list[str]:
        """The timeframes coarser than `interval` — the strategies' own, and `extra` — whose candle
        closes at `close_time` (multiples of the timeframe since the epoch, rule 10), finest first."""
        base = ch.timeframe_delta(interval)
        closing = []
        for tf in sorted(self.index.timeframes() | set(extra), key=ch.timeframe_delta):
            delta = ch.timeframe_delta(tf)
            if delta > base and not (close_time - ch.EPOCH) % delta:
                closing.append(tf)
        return closing

    async def candle_closed(self, interval: str, close: Decimal, close_time: datetime) -> list[int]:
        """Rule 5 on a closed candle of `interval`: the strategies of that timeframe whose base is
        above the close break. Returns their ids."""
        ids = self.index.broken_by_close(interval, close)
        if not ids:
            return []
        if self.fills_at_levels:
            # A scheduled sell placed now meets the close (rule 6: at or below it, it fills at once).
            self.set_price(close, close_time)
        await services.process_candle_close(
            cmds.ProcessCandleClose(self.symbol_id, interval, close, close_time, frozenset(ids)),
            self.uow(),
            self.exchange,
        )
        await self.reload(set(ids))
        return ids
