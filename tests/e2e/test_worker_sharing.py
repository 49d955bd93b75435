"""Workers share the symbols (issue 12, item 5).

Six hand-added symbols, each with a channel strategy, on a replayed market that bounces across the
channels (a buy and a sell per cycle of 20 one-minute candles), consumed by `criptoren worker`
PROCESSES that come and go: two start, a third joins, one is SIGKILLed, a fourth joins, one stops
cleanly. After each change, within a few lease periods, every symbol is held by exactly one live
worker and the spread is even (3/3, then 2/2/2). At the end, the trades are exactly what the rules
allow for the part of the market each symbol has been consumed to (read from its checkpoint):
nothing skipped during a hand-over, nothing doubled, every client order id unique.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

from sqlalchemy import text

from domain import commands as cmds
from domain import services
from domain.adapters.bootstrap import App
from domain.channel import Channel
from domain.services import symbols
from tests.e2e import servers
from tests.markets import bouncing_market

D = Decimal
LEASE_SECONDS = 3.0
NAMES = [f"COIN{letter}USDT" for letter in "ABCDEF"]
CYCLE = 20  # candles per bounce (tests.markets.bouncing_market)
POINTS = 5  # seq numbers per candle (domain.adapters.market.replay.POINTS_PER_CANDLE)


async def holders(db: App) -> dict[str, str | None]:
    values = await db.redis.mget([db.bus.channel(f"lease:{name}") for name in NAMES])
    return {n: v.decode() if isinstance(v, bytes) else v for n, v in zip(NAMES, values, strict=True)}


def pid_of(owner: str) -> int:
    return int(owner.split("-")[-2])  # workers.market.worker_id: <host>-<pid>-<random>


async def wait_for_spread(db: App, workers: list[subprocess.Popen[bytes]], each: int, timeout: float) -> float:
    """Wait until every symbol is held by one of `workers`, `each` symbols apiece; return how long it took."""
    started = time.monotonic()
    pids = {w.pid for w in workers}
    while True:
        held = await holders(db)
        per_pid = Counter(pid_of(h) for h in held.values() if h is not None)
        if None not in held.values() and set(per_pid) == pids and set(per_pid.values()) == {each}:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"after {timeout} s the symbols are held as {per_pid} (pids {pids}): {held}")
        assert all(w.poll() is None for w in workers), "a worker process died"
        await asyncio.sleep(0.2)


async def trades_by_strategy(db: App) -> dict[int, list[tuple[int, str]]]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(text("SELECT strategy_id, position_id, side FROM trades ORDER BY id"))
        found: dict[int, list[tuple[int, str]]] = {}
        for strategy_id, position_id, side in rows:
            found.setdefault(strategy_id, []).append((position_id, side))
        return found


def allowed(last_seq: int, candle: int) -> range:
    """How many times the move of candle `candle` of the cycle (1: the rise through E that buys, 2:
    the fall through X that sells) can have been consumed up to `last_seq`: at least the cycles
    whose candle closed, at most those whose candle began."""
    closed = sum(1 for k in range(last_seq // (CYCLE * POINTS) + 2) if (CYCLE * k + candle) * POINTS + 4 <= last_seq)
    begun = sum(1 for k in range(last_seq // (CYCLE * POINTS) + 2) if (CYCLE * k + candle) * POINTS <= last_seq)
    return range(closed, begun + 1)


async def test_workers_share_the_symbols_evenly_and_hand_them_over_cleanly(db: App, tmp_path: Path) -> None:
    client = await services.create_client(cmds.CreateClient("many symbols"), db.uow())
    assert client.id is not None
    strategy_of: dict[str, int] = {}
    for name in NAMES:
        base = name.removesuffix("USDT")
        await symbols.add_symbol(cmds.AddSymbol(name, base, "USDT", D("0.01"), D("0.00001"), D(5)), db.uow())
        strategy = await services.create_strategy(
            cmds.CreateStrategy(client.id, name, f"{base} channel", Channel(D(100000), D(110000), timeframe="1d")),
            db.uow(),
            db.exchange,
        )
        assert strategy.id is not None
        await services.allocate_capital(cmds.AllocateCapital(strategy.id, D(1000)), db.uow(), db.exchange)
        strategy_of[name] = strategy.id
    market = bouncing_market(tmp_path / "bounce-1m.csv")
    env = {
        "MARKET_SOURCE": "replay",
        "REPLAY_FILE": ",".join(f"{name}={market}" for name in NAMES),
        "REPLAY_SPEED": "300",  # a 1m candle every 0.2 s: a bounce every 4 s
        "LEASE_SECONDS": str(LEASE_SECONDS),
    }
    workers: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        workers.append(servers.start_worker(db, **env))
        return workers[-1]

    try:
        first, second = start(), start()
        await wait_for_spread(db, [first, second], 3, timeout=90)
        third = start()  # joins: takes its share from the two others
        await wait_for_spread(db, [first, second, third], 2, timeout=60)

        servers.stop(first, kill=True)  # dies: its leases expire, the two others take its symbols
        await wait_for_spread(db, [second, third], 3, timeout=6 * LEASE_SECONDS)
        fourth = start()
        await wait_for_spread(db, [second, third, fourth], 2, timeout=60)
        servers.stop(second)  # stops cleanly: releases its symbols at once
        await wait_for_spread(db, [third, fourth], 3, timeout=3 * LEASE_SECONDS)
        await asyncio.sleep(4)  # a bounce more on the new holders
    finally:
        for worker in workers:
            servers.stop(worker)
    assert all(w.returncode in (0, -9) for w in workers), [w.returncode for w in workers]

    trades = await trades_by_strategy(db)
    for name in NAMES:
        raw = await db.redis.get(db.bus.channel(f"cursor:replay:{name}"))
        last_seq = json.loads(raw)["seq"]
        sides = [side for _, side in trades.get(strategy_of[name], [])]
        assert sides == ["buy", "sell"] * (len(sides) // 2) + ["buy"] * (len(sides) % 2), (name, sides)
        buys, sells = sides.count("buy"), sides.count("sell")
        assert buys in allowed(last_seq, 1), (name, last_seq, buys)
        assert sells in allowed(last_seq, 2), (name, last_seq, sells)
        assert buys >= 3, (name, buys)  # traded across the hand-overs
    async with db.engine.connect() as conn:
        orders = (await conn.execute(text("SELECT count(*), count(DISTINCT client_order_id) FROM orders"))).one()
    assert orders[0] == orders[1] == sum(len(t) for t in trades.values())
