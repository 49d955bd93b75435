"""The strategy engine's index: which strategies a price move concerns, in O(log n + k).

For n strategies on a symbol and k of them triggered, a tick costs a few binary searches over
sorted levels — never a loop over all strategies. The index is a filter: the services re-check
every rule of SPEC §4 in the database before acting, so a stale index can cost a wasted look, never
a wrong trade.

Kept per symbol:
- entry levels E of active, armed, unbroken strategies (rule 1: `prev < E <= cur`);
- exit levels X of strategies holding open positions (rule 4: `cur <= X < prev`);
- base levels B of active, disarmed, unbroken strategies (rule 1 re-arm: `cur <= B`);
- scheduled exit prices of scheduled positions (rule 6, paper: `cur >= price`);
- base levels B per timeframe of unbroken strategies, active or holding open positions (rule 5: a
  close below B).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from domain import channel as ch


@dataclass(frozen=True)
class StrategySnapshot:
    """What the index needs to know of a strategy."""

    strategy_id: int
    base: Decimal
    entry: Decimal
    exit: Decimal
    timeframe: str
    is_active: bool
    is_armed: bool
    is_broken: bool
    has_open_positions: bool
    # (position id, scheduled exit price) of its scheduled positions
    scheduled: tuple[tuple[int, Decimal], ...] = ()

    @classmethod
    def of(
        cls,
        strategy_id: int,
        levels: ch.Levels,
        timeframe: str,
        is_active: bool,
        is_armed: bool,
        is_broken: bool,
        has_open_positions: bool,
        scheduled: Iterable[tuple[int, Decimal]] = (),
    ) -> StrategySnapshot:
        return cls(
            strategy_id, levels.base, levels.entry, levels.exit, timeframe, is_active, is_armed, is_broken,
            has_open_positions, tuple(scheduled),
        )  # fmt: skip


class SortedLevels:
    """(level, key) pairs kept sorted; range queries by binary search."""

    def __init__(self) -> None:
        self._items: list[tuple[Decimal, int]] = []
        self._level_of: dict[int, Decimal] = {}

    def __len__(self) -> int:
        return len(self._items)

    def add(self, key: int, level: Decimal) -> None:
        self.discard(key)
        bisect.insort(self._items, (level, key))
        self._level_of[key] = level

    def discard(self, key: int) -> None:
        level = self._level_of.pop(key, None)
        if level is not None:
            i = bisect.bisect_left(self._items, (level, key))
            del self._items[i]

    def _keys(self, lo: int, hi: int) -> list[int]:
        return [key for _, key in self._items[lo:hi]]

    def crossed_up(self, prev: Decimal, cur: Decimal) -> list[int]:
        """Keys with `prev < level <= cur`."""
        if cur <= prev:
            return []
        lo = bisect.bisect_right(self._items, (prev, _MAX_KEY))
        hi = bisect.bisect_right(self._items, (cur, _MAX_KEY))
        return self._keys(lo, hi)

    def crossed_down(self, prev: Decimal, cur: Decimal) -> list[int]:
        """Keys with `cur <= level < prev`."""
        if cur >= prev:
            return []
        lo = bisect.bisect_left(self._items, (cur, _MIN_KEY))
        hi = bisect.bisect_left(self._items, (prev, _MIN_KEY))
        return self._keys(lo, hi)

    def levels_in(self, lo: Decimal, hi: Decimal) -> list[Decimal]:
        """Distinct levels with `lo < level <= hi`."""
        i = bisect.bisect_right(self._items, (lo, _MAX_KEY))
        j = bisect.bisect_right(self._items, (hi, _MAX_KEY))
        return sorted({level for level, _ in self._items[i:j]})

    def at_or_above(self, price: Decimal) -> list[int]:
        return self._keys(bisect.bisect_left(self._items, (price, _MIN_KEY)), len(self._items))

    def above(self, price: Decimal) -> list[int]:
        return self._keys(bisect.bisect_right(self._items, (price, _MAX_KEY)), len(self._items))

    def at_or_below(self, price: Decimal) -> list[int]:
        return self._keys(0, bisect.bisect_right(self._items, (price, _MAX_KEY)))


_MIN_KEY = -(2**63)
_MAX_KEY = 2**63


@dataclass
class SymbolIndex:
    """The index of one symbol's strategies (see the module docstring)."""

    watch_scheduled: bool = True  # paper: scheduled sells fire on ticks; Binance: resting orders do
    entries: SortedLevels = field(default_factory=SortedLevels)
    exits: SortedLevels = field(default_factory=SortedLevels)
    rearms: SortedLevels = field(default_factory=SortedLevels)
    scheduled: SortedLevels = field(default_factory=SortedLevels)
    breaks: dict[str, SortedLevels] = field(default_factory=dict)
    snapshots: dict[int, StrategySnapshot] = field(default_factory=dict)
    position_strategy: dict[int, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.snapshots)

    def remove(self, strategy_id: int) -> None:
        old = self.snapshots.pop(strategy_id, None)
        if old is None:
            return
        self.entries.discard(strategy_id)
        self.exits.discard(strategy_id)
        self.rearms.discard(strategy_id)
        if old.timeframe in self.breaks:
            self.breaks[old.timeframe].discard(strategy_id)
        for position_id, _ in old.scheduled:
            self.scheduled.discard(position_id)
            self.position_strategy.pop(position_id, None)

    def put(self, s: StrategySnapshot) -> None:
        self.remove(s.strategy_id)
        self.snapshots[s.strategy_id] = s
        sid = s.strategy_id
        watching = s.is_active and not s.is_broken
        if watching and s.is_armed:
            self.entries.add(sid, s.entry)
        if watching and not s.is_armed:
            self.rearms.add(sid, s.base)
        if s.has_open_positions:
            self.exits.add(sid, s.exit)
        # Rule 5 also parks the open positions of a paused strategy.
        if not s.is_broken and (s.is_active or s.has_open_positions):
            self.breaks.setdefault(s.timeframe, SortedLevels()).add(sid, s.base)
        if self.watch_scheduled:
            for position_id, price in s.scheduled:
                self.scheduled.add(position_id, price)
                self.position_strategy[position_id] = sid

    def replace_all(self, snapshots: Iterable[StrategySnapshot]) -> None:
        for sid in list(self.snapshots):
            self.remove(sid)
        for s in snapshots:
            self.put(s)

    def triggered(self, prev: Decimal, cur: Decimal) -> set[int]:
        """Strategies a move `prev -> cur` may trigger (entry, exit, re-arm, scheduled sell)."""
        hits = set(self.entries.crossed_up(prev, cur))
        hits.update(self.exits.crossed_down(prev, cur))
        hits.update(self.rearms.at_or_above(cur))
        for position_id in self.scheduled.at_or_below(cur):
            hits.add(self.position_strategy[position_id])
        return hits

    def path_points(self, prev: Decimal, cur: Decimal) -> list[Decimal]:
        """The move `prev -> cur` cut at every level it crosses, in the order it crosses them, ending
        at `cur` — so that a rule fires exactly at its level (SPEC §4 rule 10, replay and paper)."""
        if cur > prev:
            levels = set(self.entries.levels_in(prev, cur)) | set(self.scheduled.levels_in(prev, cur))
            points = sorted(levels)
        elif cur < prev:
            # Going down a level L is crossed when cur <= L < prev; L == cur is the end point anyway.
            below = set(self.exits.levels_in(cur, prev)) | set(self.rearms.levels_in(cur, prev))
            below.discard(prev)
            points = sorted(below, reverse=True)
        else:
            return []
        if not points or points[-1] != cur:
            points.append(cur)
        return points

    def broken_by_close(self, timeframe: str, close: Decimal) -> list[int]:
        """Strategies of `timeframe` whose base is above a candle close (rule 5)."""
        levels = self.breaks.get(timeframe)
        return levels.above(close) if levels else []

    def timeframes(self) -> set[str]:
        return {tf for tf, levels in self.breaks.items() if len(levels)}
