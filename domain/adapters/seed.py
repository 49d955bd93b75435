"""Seed data: the exchange's symbols and the plan's demo (SPEC §7). Idempotent: running it again
changes nothing."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from domain import channel as ch
from domain import commands as cmds
from domain import services
from domain.adapters.exchanges.paper import SEED_SYMBOLS
from domain.channel import Channel
from domain.model import Candle, Symbol
from domain.ports import Exchange, UnitOfWorkFactory

DEMO_CLIENT = "TradeBot XYZ"
DEMO_STRATEGY = "Canal H4 BTC/USDT"
DEMO_ALLOCATION = Decimal("2000")
DEMO_CANDLES = 540  # 90 days of H4 candles
# Generated (not downloaded) candles: a seeded walk in integer cents around each demo channel.
DEMO_WALK = {"BTCUSDT": (104_500_00, 100_000_00, 111_500_00), "ETHUSDT": (2_600_00, 2_300_00, 2_900_00)}


async def seed_symbols(uow_factory: UnitOfWorkFactory) -> list[Symbol]:
    """Insert BTCUSDT and ETHUSDT with their Binance filters when missing."""
    added = []
    async with uow_factory() as uow:
        for row in SEED_SYMBOLS:
            if await uow.symbols.get_by_name(row["symbol"]) is None:
                symbol = Symbol(**row)
                uow.symbols.add(symbol)
                added.append(symbol)
        await uow.commit()
    return added


def demo_candles(symbol_id: int, symbol: str, end: datetime, count: int = DEMO_CANDLES) -> list[Candle]:
    """`count` H4 candles ending with the last closed one before `end`, from a seeded random walk."""
    start_cents, low_bound, high_bound = DEMO_WALK[symbol]
    rng = random.Random(f"criptoren-demo-{symbol}")  # noqa: S311 - demo prices, not security
    step = timedelta(hours=4)
    last_open = ch.candle_open_time(end, "4h") - step
    first_open = last_open - (count - 1) * step
    cents = start_cents
    spread = start_cents // 100  # about 1% per candle
    candles = []
    for i in range(count):
        o = cents
        c = min(max(o + rng.randint(-spread, spread), low_bound), high_bound)
        h = max(o, c) + rng.randint(0, spread // 2)
        low = min(o, c) - rng.randint(0, spread // 2)
        cents = c
        open_time = first_open + i * step
        candles.append(
            Candle(
                symbol_id=symbol_id,
                interval="4h",
                open_time=open_time,
                close_time=open_time + step,
                open=Decimal(o) / 100,
                high=Decimal(h) / 100,
                low=Decimal(low) / 100,
                close=Decimal(c) / 100,
                volume=Decimal(rng.randint(100, 5000)),
            )
        )
    return candles


async def seed_demo(uow_factory: UnitOfWorkFactory, exchange: Exchange, now: datetime | None = None) -> bool:
    """Load the plan's example (SPEC §7). Returns False when it was already there."""
    await seed_symbols(uow_factory)
    now = now or datetime.now(UTC)
    async with uow_factory() as uow:
        client = await uow.clients.get_by_name(DEMO_CLIENT)
        symbols = {s.symbol: s for s in await uow.symbols.list()}
        for name in DEMO_WALK:
            symbol = symbols[name]
            assert symbol.id is not None
            if not await uow.candles.history(symbol.id, "4h", 1):
                await uow.candles.upsert(demo_candles(symbol.id, name, now))
        await uow.commit()
    if client is None:
        client = await services.create_client(cmds.CreateClient(DEMO_CLIENT), uow_factory())
    assert client.id is not None
    async with uow_factory() as uow:
        existing = await uow.strategies.find(client.id, DEMO_STRATEGY)
    if existing is not None:
        return False
    strategy = await services.create_strategy(
        cmds.CreateStrategy(
            client_id=client.id,
            symbol="BTCUSDT",
            name=DEMO_STRATEGY,
            # The plan's demo channel: p 20%, b and s 2%, m 0.5%, 4h — the channel's defaults.
            channel=Channel(Decimal("100489"), Decimal("110626")),
        ),
        uow_factory(),
        exchange,
    )
    assert strategy.id is not None
    await services.allocate_capital(
        cmds.AllocateCapital(strategy.id, DEMO_ALLOCATION, note="demo allocation"), uow_factory(), exchange
    )
    return True
