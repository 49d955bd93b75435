"""An in-memory unit of work (cosmicpython's `FakeUnitOfWork`, made fast): backtests run the
services on it, and unit tests use it as their database.

`MemoryStore` holds the *committed* rows. A `MemoryUnitOfWork` is one transaction over it, with the
semantics of the SQLAlchemy adapters that the services rely on:

- an identity map: within one transaction a row is one object; a row is cloned from the store the
  first time it is read, so changes made in a transaction are invisible to the store until
  `commit()` and vanish on `rollback()` or on leaving `async with` uncommitted;
- ids (and `created_at`/`updated_at` server defaults) are assigned on `flush()`/`commit()`, and
  every query flushes first (SQLAlchemy's autoflush), so queries see the transaction's own changes;
- commit publishes only the rows that changed (an UPDATE of dirty rows), as clones: an object held
  by the caller after the commit reflects the committed state but is not the store's row;
- the tables' unique and check constraints (`domain.adapters.persistence.orm`, mirrored in
  `memory_schema`) are enforced at flush and raise `MemoryIntegrityError`; id sequences are not
  rolled back, as in PostgreSQL.

Speed (a backtest runs thousands of transactions over a growing store): a transaction copies only
the rows it touches (copy on write), and the queries of the engine's hot path — a symbol's
strategies, a strategy's live positions and principal, unique keys — go through secondary indexes
kept on the committed rows, so their cost follows the rows they return, not the size of the store.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Iterable, Iterator, Sequence
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from operator import attrgetter
from typing import Any, Self, cast

from domain.adapters.exchanges.paper import SEED_SYMBOLS
from domain.adapters.persistence.memory_schema import CHECKS, INDEXES, LIVE, UNIQUE, unique_key
from domain.channel import EPOCH
from domain.model import (
    AlertDelivery,
    AlertEndpoint,
    AuditEntry,
    Candle,
    CapitalAllocation,
    Client,
    Ledger,
    Order,
    OrderStatus,
    Position,
    PositionStatus,
    RefreshToken,
    Strategy,
    StrategyEvent,
    Symbol,
    Trade,
)
from domain.ports import BatchReader, Page, ReadSnapshot, TickRow

ZERO = Decimal(0)

TABLES: dict[str, type] = {
    "clients": Client,
    "symbols": Symbol,
    "strategies": Strategy,
    "positions": Position,
    "orders": Order,
    "trades": Trade,
    "allocations": CapitalAllocation,
    "events": StrategyEvent,
    "candles": Candle,
    "refresh_tokens": RefreshToken,
    "audit": AuditEntry,
    # Mirrored for the schema's sake; the alerts' use cases run on PostgreSQL only (SKIP LOCKED).
    "alert_endpoints": AlertEndpoint,
    "alert_deliveries": AlertDelivery,
}
TABLE_OF: dict[type, str] = {cls: name for name, cls in TABLES.items()}
# Tables with a `created_at` / `updated_at` server default (and the `updated_at` trigger).
WITH_CREATED_AT = (
    "clients",
    "symbols",
    "strategies",
    "positions",
    "orders",
    "allocations",
    "events",
    "refresh_tokens",
    "audit",
    "alert_endpoints",
    "alert_deliveries",
)
WITH_UPDATED_AT = ("clients", "symbols", "strategies", "positions", "orders", "alert_endpoints", "alert_deliveries")


class MemoryIntegrityError(Exception):
    """A unique or check constraint of the schema was violated (asyncpg would raise IntegrityError)."""


# ---------------------------------------------------------------- row values


class _Columns:
    """An entity class's column names, and fast readers of their values."""

    def __init__(self, cls: type) -> None:
        columns = fields(cls)
        self.names: tuple[str, ...] = tuple(f.name for f in columns)
        self.read = attrgetter(*self.names)
        # Every column but `updated_at` (set by the trigger, so not a change of its own).
        compared = tuple(n for n in self.names if n != "updated_at")
        self.read_compared = attrgetter(*compared)
        # Columns that may hold a dict or a list (JSON): copied, so that in-place changes show.
        mutable = {f.name for f in columns if any(t in str(f.type) for t in ("dict", "list", "Any"))}
        self.mutable = tuple(i for i, n in enumerate(self.names) if n in mutable)
        self.mutable_compared = tuple(i for i, n in enumerate(compared) if n in mutable)


_COLUMNS: dict[type, _Columns] = {}


def _columns(cls: type) -> _Columns:
    found = _COLUMNS.get(cls)
    if found is None:
        found = _COLUMNS[cls] = _Columns(cls)
    return found


def _copy_value(value: Any) -> Any:
    """A copy of a JSON-like value (dicts and lists copied, down to their leaves)."""
    if isinstance(value, dict):
        return {k: _copy_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_value(v) for v in value]
    return value


def row_values(obj: object) -> dict[str, Any]:
    """The column values of an entity, mutable values copied."""
    cols = _columns(type(obj))
    values = dict(zip(cols.names, cols.read(obj), strict=True))
    for i in cols.mutable:
        name = cols.names[i]
        values[name] = _copy_value(values[name])
    return values


def clone(obj: Any) -> Any:
    """A fresh entity with the same column values (works whether or not the ORM mapped the class)."""
    return type(obj)(**row_values(obj))


def _compared(obj: object) -> tuple[Any, ...]:
    """The values a dirty check compares (mutable values copied, so in-place changes show)."""
    cols = _columns(type(obj))
    values: tuple[Any, ...] = cols.read_compared(obj)
    if not cols.mutable_compared:
        return values
    copied = list(values)
    for i in cols.mutable_compared:
        copied[i] = _copy_value(copied[i])
    return tuple(copied)


def _now() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------- constraints (memory_schema)


def _check(table: str, o: Any) -> None:
    for name, ok in CHECKS.get(table, {}).items():
        if not ok(o):
            raise MemoryIntegrityError(f"{table}: check constraint {name!r} violated by {row_values(o)!r}")


# ---------------------------------------------------------------- the store


class MemoryStore:
    """Committed state shared by all units of work (the database), with its indexes."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[int, Any]] = {table: {} for table in TABLES}
        self._sequences: dict[str, int] = dict.fromkeys(TABLES, 0)
        self.commits = 0
        # table -> index -> key -> ids; and the keys each committed row is filed under
        self._index: dict[str, dict[str, dict[Hashable, set[int]]]] = {
            table: {name: {} for name in INDEXES.get(table, {})} for table in TABLES
        }
        self._unique: dict[str, dict[tuple[str, ...], dict[tuple[Any, ...], int]]] = {
            table: {columns: {} for columns in UNIQUE.get(table, ())} for table in TABLES
        }
        self._filed: dict[str, dict[int, tuple[list[Hashable], list[tuple[Any, ...] | None]]]] = {
            table: {} for table in TABLES
        }

    def next_id(self, table: str) -> int:
        self._sequences[table] += 1
        return self._sequences[table]

    def put(self, table: str, row: Any) -> None:
        """Commit a row (insert or update): store it and re-file it in the indexes."""
        row_id = row.id
        self.rows[table][row_id] = row
        indexes = INDEXES.get(table, {})
        keys = [key_of(row) for key_of in indexes.values()]
        uniques = [unique_key(table, row, columns) for columns in UNIQUE.get(table, ())]
        old = self._filed[table].get(row_id)
        if old is not None and old == (keys, uniques):
            return
        for (name, _), key, old_key in zip(indexes.items(), keys, old[0] if old else [None] * len(keys), strict=True):
            if key == old_key:
                continue
            by_key = self._index[table][name]
            if old_key is not None:
                by_key[old_key].discard(row_id)
            if key is not None:
                by_key.setdefault(key, set()).add(row_id)
        for columns, key, old_key in zip(
            UNIQUE.get(table, ()), uniques, old[1] if old else [None] * len(uniques), strict=True
        ):
            owners = self._unique[table][columns]
            if old_key is not None and old_key != key and owners.get(old_key) == row_id:
                del owners[old_key]
            if key is not None:
                owners[key] = row_id
        self._filed[table][row_id] = (keys, uniques)

    def ids(self, table: str, index: str, key: Hashable) -> set[int] | frozenset[int]:
        """Ids of the committed rows filed under `key` in an index."""
        return self._index[table][index].get(key) or frozenset()

    def unique_owner(self, table: str, columns: tuple[str, ...], key: tuple[Any, ...]) -> int | None:
        return self._unique[table][columns].get(key)

    def copy(self) -> MemoryStore:
        """The committed state as it is now, apart (committed rows are replaced, never changed)."""
        other = MemoryStore()
        other.rows = {table: dict(rows) for table, rows in self.rows.items()}
        other._sequences = dict(self._sequences)
        other._index = {t: {n: {k: set(v) for k, v in i.items()} for n, i in x.items()} for t, x in self._index.items()}
        other._unique = {t: {c: dict(o) for c, o in x.items()} for t, x in self._unique.items()}
        other._filed = {table: dict(filed) for table, filed in self._filed.items()}
        return other

    def snapshot(self) -> dict[str, dict[int, dict[str, Any]]]:
        """Every committed row's values: compare two snapshots to assert that nothing changed."""
        return {table: {i: row_values(o) for i, o in rows.items()} for table, rows in self.rows.items()}

    def all(self, cls: type) -> list[Any]:
        """Clones of the committed rows of an entity class, by id (read-only views for assertions)."""
        rows = self.rows[TABLE_OF[cls]]
        return [clone(rows[i]) for i in sorted(rows)]

    def get(self, cls: type, row_id: int) -> Any:
        row = self.rows[TABLE_OF[cls]].get(row_id)
        return None if row is None else clone(row)

    def add_committed(self, obj: Any) -> Any:
        """Insert a row directly (set-up), assigning its id."""
        table = TABLE_OF[type(obj)]
        obj.id = self.next_id(table)
        if table in WITH_CREATED_AT and getattr(obj, "created_at", None) is None:
            obj.created_at = _now()
        self.put(table, clone(obj))
        return obj


def seeded_store() -> MemoryStore:
    """A store holding the seeded symbols BTCUSDT (id 1) and ETHUSDT (id 2) with their filters."""
    store = MemoryStore()
    for row in SEED_SYMBOLS:
        store.add_committed(Symbol(**row))  # type: ignore[arg-type]
    return store


# ---------------------------------------------------------------- the unit of work


class MemoryUnitOfWork:
    """One transaction over a `MemoryStore`; implements `domain.ports.UnitOfWork`."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.commits = 0
        self._active = False
        # table -> id -> (object of this transaction, its compared values when loaded; None when inserted here)
        self._loaded: dict[str, dict[int, tuple[Any, tuple[Any, ...] | None]]] = {}
        self._pending: list[tuple[str, Any]] = []
        self.clients = MemoryClientRepository(self, "clients")
        self.symbols = MemorySymbolRepository(self, "symbols")
        self.strategies = MemoryStrategyRepository(self, "strategies")
        self.positions = MemoryPositionRepository(self, "positions")
        self.orders = MemoryOrderRepository(self, "orders")
        self.trades = MemoryTradeRepository(self, "trades")
        self.allocations = MemoryAllocationRepository(self, "allocations")
        self.events = MemoryEventRepository(self, "events")
        self.candles = MemoryCandleRepository(self, "candles")
        self.refresh_tokens = MemoryRefreshTokenRepository(self, "refresh_tokens")
        self.audit = MemoryAuditRepository(self, "audit")
        # Not here: `reports` (SQL aggregates, used by the API only).

    @property
    def batch(self) -> BatchReader:
        """The API's batched reads (domain.adapters.persistence.memory_reads)."""
        from domain.adapters.persistence.memory_reads import MemoryBatchReader

        return MemoryBatchReader(self)

    async def __aenter__(self) -> Self:
        self._begin()
        return self

    async def __aexit__(self, *args: object) -> None:
        # Like the SQLAlchemy unit of work: whatever was not committed is rolled back.
        self._discard()
        self._active = False

    async def commit(self) -> None:
        self._require_active()
        self._flush()
        for table, rows in self._loaded.items():
            for row_id, (obj, original) in rows.items():
                if original is None or self._dirty(obj, original):
                    self.store.put(table, clone(obj))
                    rows[row_id] = (obj, _compared(obj))
        self.store.commits += 1
        self.commits += 1

    async def rollback(self) -> None:
        self._require_active()
        self._discard()

    async def flush(self) -> None:
        self._require_active()
        self._flush()

    # -------------------------------------------------------------- internals used by repositories

    def _flush(self) -> None:
        now: datetime | None = None
        # Rows changed in this transaction (an UPDATE): the updated_at trigger, then the checks.
        for table, rows in self._loaded.items():
            for obj, original in rows.values():
                if original is not None and self._dirty(obj, original):
                    if table in WITH_UPDATED_AT:
                        obj.updated_at = now = now or _now()
                    _check(table, obj)
                    self._check_unique(table, obj)
        if not self._pending:
            return
        now = now or _now()
        pending, self._pending = self._pending, []
        for table, obj in pending:
            if table in WITH_CREATED_AT and obj.created_at is None:
                obj.created_at = now
            if table in WITH_UPDATED_AT and obj.updated_at is None:
                obj.updated_at = now
            _check(table, obj)
            self._check_unique(table, obj)
            obj.id = self.store.next_id(table)
            self._loaded[table][obj.id] = (obj, None)

    def _begin(self) -> None:
        self._active = True
        self._discard()

    def _discard(self) -> None:
        self._loaded = {table: {} for table in TABLES}
        self._pending = []

    def _require_active(self) -> None:
        if not self._active:
            raise RuntimeError("The unit of work is used outside `async with uow:`.")

    @staticmethod
    def _dirty(obj: Any, original: tuple[Any, ...]) -> bool:
        values: tuple[Any, ...] = _columns(type(obj)).read_compared(obj)
        return values != original

    def _check_unique(self, table: str, obj: Any) -> None:
        for columns in UNIQUE.get(table, ()):
            key = unique_key(table, obj, columns)
            if key is None:
                continue
            loaded = self._loaded[table]
            owner = self.store.unique_owner(table, columns, key)
            if owner is not None and owner != obj.id:
                # The committed owner collides unless this transaction changed its key.
                mine = loaded.get(owner)
                if mine is None or unique_key(table, mine[0], columns) == key:
                    raise MemoryIntegrityError(f"{table}: duplicate key {dict(zip(columns, key, strict=True))}")
            for other, _ in loaded.values():
                if other is not obj and unique_key(table, other, columns) == key:
                    raise MemoryIntegrityError(f"{table}: duplicate key {dict(zip(columns, key, strict=True))}")

    def _add(self, table: str, obj: Any) -> None:
        self._require_active()
        if obj.id is not None:
            raise ValueError(f"{type(obj).__name__} already has id {obj.id}")
        if any(o is obj for _, o in self._pending):
            return
        self._pending.append((table, obj))

    def _autoflush(self) -> None:
        self._require_active()
        self._flush()

    def _load(self, table: str, row_id: int) -> Any:
        """This transaction's object for a row (cloned from the store on first access)."""
        rows = self._loaded[table]
        if row_id in rows:
            return rows[row_id][0]
        committed = self.store.rows[table].get(row_id)
        if committed is None:
            return None
        obj = clone(committed)
        rows[row_id] = (obj, _compared(obj))
        return obj

    def _view(self, table: str) -> Iterator[Any]:
        """Every row as this transaction sees it (loaded objects first, else committed rows)."""
        loaded = self._loaded[table]
        for row_id, committed in self.store.rows[table].items():
            yield loaded[row_id][0] if row_id in loaded else committed
        for row_id, (obj, _) in loaded.items():
            if row_id not in self.store.rows[table]:
                yield obj

    def _view_of(self, table: str, candidates: Iterable[int]) -> Iterator[Any]:
        """The rows among `candidates` and those this transaction touched, as it sees them: an
        indexed query (the index covers committed rows; touched rows may have changed their key)."""
        loaded = self._loaded[table]
        committed = self.store.rows[table]
        ids = set(candidates)
        ids.update(loaded)
        for row_id in ids:
            if row_id in loaded:
                yield loaded[row_id][0]
            else:
                row = committed.get(row_id)
                if row is not None:
                    yield row

    def _select(self, table: str, where: Callable[[Any], bool], candidates: Iterable[int] | None = None) -> list[Any]:
        """Loaded objects of the rows matching `where`, by id (among `candidates` when given)."""
        self._autoflush()
        view = self._view(table) if candidates is None else self._view_of(table, candidates)
        ids = sorted(o.id for o in view if where(o))
        return [self._load(table, i) for i in ids]

    def _unique(self, table: str, columns: tuple[str, ...], key: tuple[Any, ...]) -> Any:
        """The row with a unique key, or None."""
        owner = self.store.unique_owner(table, columns, key)
        rows = self._select(
            table, lambda o: unique_key(table, o, columns) == key, candidates=() if owner is None else (owner,)
        )
        return rows[0] if rows else None

    def _page(self, table: str, page: Page, where: Callable[[Any], bool]) -> list[Any]:
        """Keyset page: ids below `before_id`, newest first, at most `limit`."""
        rows = self._select(table, lambda o: where(o) and (page.before_id is None or o.id < page.before_id))
        return list(reversed(rows))[: page.limit]

    def _has_live_positions(self, strategy_id: int) -> bool:
        candidates = self.store.ids("positions", "live_strategy", strategy_id)
        return any(p.strategy_id == strategy_id and p.status in LIVE for p in self._view_of("positions", candidates))


class _Repository:
    def __init__(self, uow: MemoryUnitOfWork, table: str) -> None:
        self.uow = uow
        self.table = table

    def add(self, obj: Any) -> None:
        self.uow._add(self.table, obj)

    def _get(self, row_id: int) -> Any:
        self.uow._autoflush()
        return self.uow._load(self.table, row_id)

    def _first(self, where: Callable[[Any], bool]) -> Any:
        rows = self.uow._select(self.table, where)
        return rows[0] if rows else None


class MemoryClientRepository(_Repository):
    async def get(self, client_id: int) -> Client | None:
        return cast("Client | None", self._get(client_id))

    async def get_by_name(self, name: str) -> Client | None:
        return cast("Client | None", self._first(lambda c: c.name == name))

    async def get_by_api_key(self, api_key: str) -> Client | None:
        return cast("Client | None", self.uow._unique(self.table, ("api_key",), (api_key,)))

    async def exists(self) -> bool:
        self.uow._autoflush()
        return any(True for _ in self.uow._view(self.table))

    async def list_ids(self) -> Sequence[int]:
        self.uow._autoflush()
        return sorted(c.id for c in self.uow._view(self.table))

    async def paused(self, client_ids: Collection[int]) -> dict[int, bool]:
        self.uow._autoflush()
        wanted = set(client_ids)
        return {
            c.id: c.trading_sells_held
            for c in self.uow._view(self.table)
            if c.id in wanted and c.trading_paused_at is not None
        }


class MemorySymbolRepository(_Repository):
    async def get(self, symbol_id: int) -> Symbol | None:
        return cast("Symbol | None", self._get(symbol_id))

    async def get_by_name(self, symbol: str) -> Symbol | None:
        return cast("Symbol | None", self.uow._unique(self.table, ("symbol",), (symbol,)))

    async def list(self) -> Sequence[Symbol]:
        return sorted(self.uow._select(self.table, lambda s: True), key=lambda s: s.symbol)

    async def watched(self) -> Sequence[Symbol]:
        """Active symbols with an active strategy or live positions, by name."""
        self.uow._autoflush()
        used = {t.symbol_id for t in self.uow._view("strategies") if t.is_active}
        used |= {p.symbol_id for p in self.uow._view("positions") if p.status in LIVE}
        rows = self.uow._select(self.table, lambda s: s.is_active and s.id in used)
        return sorted(rows, key=lambda s: s.symbol)


class MemoryStrategyRepository(_Repository):
    async def get(self, strategy_id: int, *, for_update: bool = False) -> Strategy | None:
        return cast("Strategy | None", self._get(strategy_id))

    async def list_by_client(self, client_id: int, page: Page, *, include_archived: bool = False) -> Sequence[Strategy]:
        return self.uow._page(
            self.table, page, lambda s: s.client_id == client_id and (include_archived or s.archived_at is None)
        )

    def _candidates(self, symbol_id: int, strategy_ids: Collection[int] | None) -> Collection[int]:
        return self.uow.store.ids(self.table, "symbol", symbol_id) if strategy_ids is None else strategy_ids

    async def list_active_by_symbol(
        self, symbol_id: int, strategy_ids: Collection[int] | None = None
    ) -> Sequence[Strategy]:
        """Active strategies of the symbol, and paused ones that still hold live positions, by id."""
        self.uow._autoflush()
        wanted = None if strategy_ids is None else set(strategy_ids)
        return self.uow._select(
            self.table,
            lambda s: (
                s.symbol_id == symbol_id
                and (wanted is None or s.id in wanted)
                and s.archived_at is None
                and (s.is_active or self.uow._has_live_positions(s.id))
            ),
            candidates=self._candidates(symbol_id, strategy_ids),
        )

    async def lock_for_tick(self, symbol_id: int, strategy_ids: Collection[int] | None = None) -> Sequence[TickRow]:
        """The engine's strategies (as `list_active_by_symbol`), each with its principal, its live
        positions, oldest first, and its client's trading pause."""
        out = []
        pauses: dict[int, dict[int, bool]] = {}
        for strategy in await self.list_active_by_symbol(symbol_id, strategy_ids):
            assert strategy.id is not None
            principal = await self.uow.allocations.principal(strategy.id)
            live = list(await self.uow.positions.list_live_by_strategy(strategy.id))
            if strategy.client_id not in pauses:
                pauses[strategy.client_id] = await self.uow.clients.paused([strategy.client_id])
            out.append(TickRow.of(strategy, principal, live, pauses[strategy.client_id].get(strategy.client_id)))
        return out

    async def list_by_symbol(self, symbol_id: int, strategy_ids: Collection[int] | None = None) -> Sequence[Strategy]:
        wanted = None if strategy_ids is None else set(strategy_ids)
        return self.uow._select(
            self.table,
            lambda s: s.symbol_id == symbol_id and s.archived_at is None and (wanted is None or s.id in wanted),
            candidates=self._candidates(symbol_id, strategy_ids),
        )

    async def find(self, client_id: int, name: str) -> Strategy | None:
        return cast("Strategy | None", self.uow._unique(self.table, ("client_id", "name"), (client_id, name)))


class MemoryPositionRepository(_Repository):
    async def get(self, position_id: int, *, for_update: bool = False) -> Position | None:
        return cast("Position | None", self._get(position_id))

    async def list_live_by_strategy(self, strategy_id: int) -> Sequence[Position]:
        """Open and scheduled positions of a strategy, oldest first."""
        return self.uow._select(
            self.table,
            lambda p: p.strategy_id == strategy_id and p.status in LIVE,
            candidates=self.uow.store.ids(self.table, "live_strategy", strategy_id),
        )

    async def list_live_by_strategies(
        self, strategy_ids: Collection[int], *, for_update: bool = False
    ) -> Sequence[Position]:
        wanted = set(strategy_ids)
        candidates: set[int] = set()
        for sid in wanted:
            candidates.update(self.uow.store.ids(self.table, "live_strategy", sid))
        return self.uow._select(self.table, lambda p: p.strategy_id in wanted and p.status in LIVE, candidates)

    async def list(
        self,
        page: Page,
        *,
        client_id: int | None = None,
        status: PositionStatus | None = None,
        strategy_id: int | None = None,
        since: datetime | None = None,
    ) -> Sequence[Position]:
        def where(p: Position) -> bool:
            return (
                (client_id is None or p.client_id == client_id)
                and (status is None or p.status is status)
                and (strategy_id is None or p.strategy_id == strategy_id)
                and (
                    since is None
                    or (p.created_at is not None and p.created_at >= since)
                    or (p.closed_at is not None and p.closed_at >= since)
                    or p.status is not PositionStatus.CLOSED
                )
            )

        return self.uow._page(self.table, page, where)


class MemoryOrderRepository(_Repository):
    async def get_by_client_order_id(self, client_order_id: str, *, for_update: bool = False) -> Order | None:
        return cast("Order | None", self.uow._unique(self.table, ("client_order_id",), (client_order_id,)))

    async def list_by_status(self, statuses: Sequence[OrderStatus]) -> Sequence[Order]:
        wanted = set(statuses)
        candidates: set[int] = set()
        for status in wanted:
            candidates.update(self.uow.store.ids(self.table, "status", status))
        return self.uow._select(self.table, lambda o: o.status in wanted, candidates)

    async def count_by_status(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for o in self.uow._select(self.table, lambda o: True):
            counts[o.status.value] = counts.get(o.status.value, 0) + 1
        return counts

    async def list_by_position(
        self, position_id: int, statuses: Sequence[OrderStatus], *, for_update: bool = False
    ) -> Sequence[Order]:
        wanted = set(statuses)
        candidates: set[int] = set()
        for status in wanted:
            candidates.update(self.uow.store.ids(self.table, "status", status))
        return self.uow._select(self.table, lambda o: o.position_id == position_id and o.status in wanted, candidates)

    async def list(
        self,
        page: Page,
        *,
        client_id: int | None = None,
        strategy_id: int | None = None,
        position_id: int | None = None,
        statuses: Sequence[OrderStatus] | None = None,
    ) -> Sequence[Order]:
        wanted = {"client_id": client_id, "strategy_id": strategy_id, "position_id": position_id}
        filters = {k: v for k, v in wanted.items() if v is not None}

        def where(o: Order) -> bool:
            return (statuses is None or o.status in statuses) and all(getattr(o, k) == v for k, v in filters.items())

        return self.uow._page(self.table, page, where)


class MemoryTradeRepository(_Repository):
    async def list(
        self,
        page: Page,
        *,
        client_id: int | None = None,
        symbol_id: int | None = None,
        strategy_id: int | None = None,
        position_id: int | None = None,
    ) -> Sequence[Trade]:
        wanted = {
            "client_id": client_id,
            "symbol_id": symbol_id,
            "strategy_id": strategy_id,
            "position_id": position_id,
        }
        filters = {k: v for k, v in wanted.items() if v is not None}
        return self.uow._page(self.table, page, lambda t: all(getattr(t, k) == v for k, v in filters.items()))


class MemoryAllocationRepository(_Repository):
    def _sum(self, candidates: Iterable[int], where: Callable[[CapitalAllocation], bool]) -> Decimal:
        return sum((a.amount for a in self.uow._view_of("allocations", candidates) if where(a)), ZERO)

    def _committed(self, candidates: Iterable[int], where: Callable[[Position], bool]) -> Decimal:
        return sum((p.cost for p in self.uow._view_of("positions", candidates) if p.status in LIVE and where(p)), ZERO)

    def _principal(self, strategy_id: int) -> Decimal:
        ids = self.uow.store.ids("allocations", "strategy", (strategy_id, False))
        return self._sum(ids, lambda a: a.strategy_id == strategy_id and not a.is_profit)

    async def ledger(self, strategy_id: int) -> Ledger:
        self.uow._autoflush()
        store = self.uow.store
        profit_ids = store.ids("allocations", "strategy", (strategy_id, True))
        return Ledger(
            principal=self._principal(strategy_id),
            committed=self._committed(
                store.ids("positions", "live_strategy", strategy_id), lambda p: p.strategy_id == strategy_id
            ),
            profit=self._sum(profit_ids, lambda a: a.strategy_id == strategy_id and a.is_profit),
        )

    async def principal(self, strategy_id: int) -> Decimal:
        """The bankroll: the sum of the strategy's non-profit allocations."""
        self.uow._autoflush()
        return self._principal(strategy_id)

    async def client_ledgers(self, client_id: int) -> dict[str, Ledger]:
        self.uow._autoflush()
        store = self.uow.store
        quote_of_symbol = {s.id: s.quote_asset for s in self.uow._select("symbols", lambda s: True)}
        quote_of_strategy = {s.id: quote_of_symbol[s.symbol_id] for s in self.uow._select("strategies", lambda s: True)}
        allocations = [
            a for a in self.uow._view_of("allocations", store.ids("allocations", "client", client_id))
            if a.client_id == client_id
        ]  # fmt: skip
        live = [
            p for p in self.uow._view_of("positions", store.ids("positions", "live_client", client_id))
            if p.client_id == client_id and p.status in LIVE
        ]  # fmt: skip
        assets = {quote_of_strategy[a.strategy_id] for a in allocations} | {quote_of_symbol[p.symbol_id] for p in live}
        return {
            asset: Ledger(
                principal=sum(
                    (a.amount for a in allocations if not a.is_profit and quote_of_strategy[a.strategy_id] == asset),
                    ZERO,
                ),
                committed=sum((p.cost for p in live if quote_of_symbol[p.symbol_id] == asset), ZERO),
                profit=sum(
                    (a.amount for a in allocations if a.is_profit and quote_of_strategy[a.strategy_id] == asset), ZERO
                ),
            )
            for asset in sorted(assets)
        }


class MemoryEventRepository(_Repository):
    async def list_by_strategy(self, strategy_id: int, limit: int) -> Sequence[StrategyEvent]:
        rows = self.uow._select(
            self.table,
            lambda e: e.strategy_id == strategy_id,
            candidates=self.uow.store.ids(self.table, "strategy", strategy_id),
        )
        return list(reversed(rows))[:limit]


class MemoryCandleRepository(_Repository):
    def _series(self, symbol_id: int, interval: str, where: Callable[[Candle], bool]) -> list[Candle]:
        return self.uow._select(
            self.table,
            lambda c: c.symbol_id == symbol_id and c.interval == interval and where(c),
            candidates=self.uow.store.ids(self.table, "series", (symbol_id, interval)),
        )

    async def upsert(self, candles: Sequence[Candle]) -> int:
        """Insert or update on (symbol, interval, open_time); executed at once, like the statement."""
        self.uow._autoflush()
        for c in candles:
            existing = self.uow._unique(self.table, ("symbol_id", "interval", "open_time"),
                                        (c.symbol_id, c.interval, c.open_time))  # fmt: skip
            if existing is None:
                self.uow._add(self.table, clone(c))
            else:
                for name in ("close_time", "open", "high", "low", "close", "volume"):
                    setattr(existing, name, getattr(c, name))
            self.uow._autoflush()
        return len(candles)

    async def history(self, symbol_id: int, interval: str, limit: int) -> Sequence[Candle]:
        """The latest `limit` candles, oldest first."""
        rows = self._series(symbol_id, interval, lambda c: True)
        rows.sort(key=lambda c: c.open_time)
        return rows[-limit:] if limit > 0 else []

    async def price_csv(
        self,
        symbol_id: int,
        interval: str,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int | None = None,
    ) -> bytes:
        rows = self._series(
            symbol_id,
            interval,
            lambda c: (start is None or c.open_time >= start) and (end is None or c.open_time < end),
        )
        rows.sort(key=lambda c: c.open_time)
        if limit is not None:
            rows = rows[-limit:] if limit > 0 else []
        ms = timedelta(milliseconds=1)
        lines = (f"{(c.open_time - EPOCH) // ms},{c.open},{c.high},{c.low},{c.close}\n" for c in rows)
        return "".join(lines).encode()

    async def aggregate(
        self, symbol_id: int, source_interval: str, interval: str, open_time: datetime, close_time: datetime
    ) -> Candle | None:
        """One candle of `interval` from the finer `source_interval` candles inside [open, close]."""
        rows = self._series(
            symbol_id, source_interval, lambda c: c.open_time >= open_time and c.close_time <= close_time
        )
        if not rows:
            return None
        rows.sort(key=lambda c: c.open_time)
        return Candle(
            symbol_id,
            interval,
            open_time,
            close_time,
            rows[0].open,
            max(c.high for c in rows),
            min(c.low for c in rows),
            rows[-1].close,
            sum((c.volume for c in rows), ZERO),
        )

    async def last_close_time(self, symbol_id: int, interval: str) -> datetime | None:
        rows = self._series(symbol_id, interval, lambda c: True)
        return max((c.close_time for c in rows), default=None)

    async def latest_close(self, symbol_id: int) -> tuple[Decimal, datetime] | None:
        rows = self.uow._select(self.table, lambda c: c.symbol_id == symbol_id)
        if not rows:
            return None
        latest = max(rows, key=lambda c: c.close_time)
        return latest.close, latest.close_time


class MemoryRefreshTokenRepository(_Repository):
    async def get_by_hash(self, token_hash: str, *, for_update: bool = False) -> RefreshToken | None:
        return cast("RefreshToken | None", self.uow._unique(self.table, ("token_hash",), (token_hash,)))

    def _revoke(self, where: Callable[[RefreshToken], bool], at: datetime) -> int:
        tokens = self.uow._select(self.table, lambda t: where(t) and t.revoked_at is None)
        for token in tokens:
            token.revoked_at = at
        return len(tokens)

    async def revoke_family(self, family_id: str, at: datetime) -> int:
        return self._revoke(lambda t: t.family_id == family_id, at)

    async def revoke_client(self, client_id: int, at: datetime) -> int:
        return self._revoke(lambda t: t.client_id == client_id, at)


class MemoryAuditRepository(_Repository):
    async def list_by_client(self, client_id: int, limit: int) -> Sequence[AuditEntry]:
        rows = self.uow._select(self.table, lambda e: e.client_id == client_id)
        return list(reversed(rows))[:limit]


class MemoryUnitOfWorkFactory:
    """Makes units of work sharing one store (implements `domain.ports.UnitOfWorkFactory`)."""

    def __init__(self, store: MemoryStore | None = None) -> None:
        self.store = store if store is not None else seeded_store()

    def __call__(self) -> MemoryUnitOfWork:
        return MemoryUnitOfWork(self.store)

    def snapshot(self) -> ReadSnapshot:
        from domain.adapters.persistence.memory_reads import MemoryReadSnapshot

        return MemoryReadSnapshot(self)
