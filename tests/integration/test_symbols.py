"""Any Binance spot symbol (issue 12, SPEC §4b): symbols synced from exchangeInfo through python-
binance against the local Binance (new, changed, halted, delisted), added by hand offline, a pair
quoted in BTC end to end with capital kept per asset, and a hand-added symbol trading on the
synthetic market."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from domain import commands as cmds
from domain import services, views
from domain.adapters.bootstrap import App
from domain.adapters.exchanges.binance_symbols import BinanceSymbolDirectory
from domain.adapters.market.synthetic import SyntheticMarket
from domain.adapters.seed import seed_demo
from domain.channel import Channel
from domain.errors import InvalidState, ValidationError
from domain.events import EventType
from domain.model import PositionStatus
from domain.ports import Page
from domain.services import symbols
from tests.binance_local.server import LocalBinance, SymbolSpec
from workers.market import MarketWorker

pytest_plugins = ["tests.binance_local.fixtures"]

D = Decimal
ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)


def directory(server: LocalBinance) -> BinanceSymbolDirectory:
    return BinanceSymbolDirectory(api_url=server.api_url, timeout=5.0)


async def events_of(db: App, strategy_id: int) -> list[str]:
    async with db.uow() as uow:
        return [e.type for e in await uow.events.list_by_strategy(strategy_id, 50)]


async def test_sync_from_the_local_binance_adds_changes_and_halts(db: App, local_binance: LocalBinance) -> None:
    await seed_demo(db.uow, db.exchange)  # BTCUSDT strategy 1, 2,000 USDT
    local_binance.symbols["ETHBTC"] = SymbolSpec(
        "ETHBTC", "ETH", "BTC", D("0.00001"), D("0.0001"), D("0.0001"), D("0.0001"), min_price=D("0.00001")
    )
    local_binance.symbols["OLDUSDT"] = SymbolSpec("OLDUSDT", "OLD", "USDT", D("0.001"), D("0.1"), D("0.1"), D(5),
                                                  status="HALT")  # fmt: skip

    report = await symbols.sync_symbols(await directory(local_binance).exchange_symbols(), db.uow())
    assert sorted(report.added) == ["BNBUSDT", "ETHBTC", "OLDUSDT"]
    assert report.halted == [] and report.paused_strategies == []
    async with db.uow() as uow:
        ethbtc = await uow.symbols.get_by_name("ETHBTC")
        old = await uow.symbols.get_by_name("OLDUSDT")
    assert ethbtc is not None and (ethbtc.quote_asset, ethbtc.tick_size, ethbtc.step_size) == (
        "BTC",
        D("0.00001"),
        D("0.0001"),
    )
    assert ethbtc.min_notional == D("0.0001") and ethbtc.max_qty == D(9000) and ethbtc.quote_order_qty_allowed
    assert old is not None and old.status == "HALT" and not old.is_active

    # A changed filter is stored (it applies from the next order); BTCUSDT halts: its strategy pauses.
    local_binance.symbols["ETHUSDT"].step_size = D("0.001")
    local_binance.symbols["BTCUSDT"].status = "BREAK"
    report = await symbols.sync_symbols(await directory(local_binance).exchange_symbols(), db.uow())
    assert report.changed == ["ETHUSDT"] and report.halted == ["BTCUSDT"] and report.paused_strategies == [1]
    async with db.uow() as uow:
        eth = await uow.symbols.get_by_name("ETHUSDT")
        strategy = await uow.strategies.get(1)
    assert eth is not None and eth.step_size == D("0.001")
    assert strategy is not None and not strategy.is_active
    assert EventType.SYMBOL_HALTED.value in await events_of(db, 1)

    # Nothing is sent for a symbol that is not trading: no entry on a rise through E, no manual buy.
    db.price_book.set("BTCUSDT", D(102600))
    await services.set_strategy_active(cmds.SetStrategyActive(1, True), db.uow())
    outcome = await services.process_price_move(
        cmds.ProcessPriceMove(1, D(102000), D(102600), NOW), db.uow(), db.exchange
    )
    assert outcome.opened == []
    with pytest.raises(InvalidState) as refused:
        await services.buy(cmds.Buy(1, quote_amount=D(100)), db.uow(), db.exchange, db.prices)
    assert refused.value.details["reason"] == "symbol_not_trading"
    await services.set_strategy_active(cmds.SetStrategyActive(1, False), db.uow())

    # Trading again: an event; the strategy stays paused until its owner activates it.
    local_binance.symbols["BTCUSDT"].status = "TRADING"
    del local_binance.symbols["OLDUSDT"]  # delisted: gone from exchangeInfo (it was not trading anyway)
    report = await symbols.sync_symbols(await directory(local_binance).exchange_symbols(), db.uow())
    assert report.resumed == ["BTCUSDT"] and report.halted == []
    async with db.uow() as uow:
        strategy = await uow.strategies.get(1)
        assert [s.symbol for s in await uow.symbols.list()] == ["BNBUSDT", "BTCUSDT", "ETHBTC", "ETHUSDT", "OLDUSDT"]
    assert strategy is not None and not strategy.is_active
    assert EventType.SYMBOL_TRADING.value in await events_of(db, 1)


async def test_a_symbol_missing_from_the_list_is_delisted(db: App, local_binance: LocalBinance) -> None:
    await seed_demo(db.uow, db.exchange)
    del local_binance.symbols["BTCUSDT"]
    report = await symbols.sync_symbols(await directory(local_binance).exchange_symbols(), db.uow())
    assert report.halted == ["BTCUSDT"] and report.paused_strategies == [1]
    async with db.uow() as uow:
        btc = await uow.symbols.get_by_name("BTCUSDT")
        assert btc is not None and btc.status == "DELISTED" and not btc.is_active
        assert await uow.trades.list(Page(10)) == []  # its history is kept (none here), the row too


async def test_an_unreachable_binance_is_a_temporary_error() -> None:
    from domain.errors import TemporaryExchangeError

    with pytest.raises(TemporaryExchangeError):
        await BinanceSymbolDirectory(api_url="http://127.0.0.1:9/api", timeout=1.0).exchange_symbols()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"symbol": "sol-usdt"}, "symbol"),
        ({"symbol": "SOLBTC"}, "symbol"),  # not base + quote
        ({"base_asset": "SÖL", "symbol": "SÖLUSDT"}, "symbol"),
        ({"tick_size": D(0)}, "tickSize"),
        ({"step_size": D("-0.001")}, "stepSize"),
        ({"min_notional": D("1e-19")}, "minNotional"),
        ({"tick_size": D("0.0000000000000000001")}, "tickSize"),
        ({"max_qty": D("0.0001"), "min_qty": D(1)}, "maxQty"),
    ],
)
async def test_add_symbol_refuses_bad_values_and_changes_nothing(db: App, changes: dict, field: str) -> None:
    given = {"symbol": "SOLUSDT", "base_asset": "SOL", "quote_asset": "USDT", "tick_size": D("0.01"),
             "step_size": D("0.001"), "min_notional": D(5)} | changes  # fmt: skip
    with pytest.raises(ValidationError) as refused:
        await symbols.add_symbol(cmds.AddSymbol(**given), db.uow())
    assert refused.value.details["field"] == field
    async with db.uow() as uow:
        assert [s.symbol for s in await uow.symbols.list()] == ["BTCUSDT", "ETHUSDT"]


def cli(db: App, *args: str) -> subprocess.CompletedProcess[str]:
    return cli_command(db, "symbols", *args)


def cli_command(db: App, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": str(db.settings.database_url), "REDIS_URL": str(db.settings.redis_url),
           "REDIS_PREFIX": db.settings.redis_prefix, "SYMBOL_SYNC": "off"}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "gql_api.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip


async def test_symbols_add_then_a_strategy_trades_it_on_the_synthetic_market(db: App) -> None:
    added = await asyncio.to_thread(
        cli, db, "add", "SOLUSDT", "--base-asset", "SOL", "--quote-asset", "USDT", "--tick-size", "0.01",
        "--step-size", "0.001", "--min-notional", "5", "--price", "150",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "Added SOLUSDT" in added.stdout
    listed = await asyncio.to_thread(cli, db, "list")
    assert listed.returncode == 0 and "SOLUSDT" in listed.stdout and "0.001" in listed.stdout
    again = await asyncio.to_thread(
        cli, db, "add", "SOLUSDT", "--base-asset", "SOL", "--quote-asset", "USDT", "--tick-size", "0.01",
        "--step-size", "0.001", "--min-notional", "5",
    )  # fmt: skip
    assert again.returncode == 1 and "already known" in again.stderr
    bad = await asyncio.to_thread(
        cli, db, "add", "DOGEUSDT", "--base-asset", "DOGE", "--quote-asset", "USDT", "--tick-size", "１",
        "--step-size", "1", "--min-notional", "5",
    )  # fmt: skip
    assert bad.returncode == 2 and "not a plain decimal number" in bad.stderr

    client = await services.create_client(cmds.CreateClient("sol trader"), db.uow())
    assert client.id is not None
    strategy = await services.create_strategy(
        cmds.CreateStrategy(client.id, "SOLUSDT", "SOL channel", Channel(D(144), D(159))), db.uow(), db.exchange
    )
    assert strategy.id is not None
    await services.allocate_capital(cmds.AllocateCapital(strategy.id, D(1000)), db.uow(), db.exchange)
    # The synthetic walk of SOLUSDT swings ±5% around the price given when it was added (150), in
    # its 0.01 ticks: through E = 146.88 on the way up and X = 155.82 on the way down.
    source = SyntheticMarket(
        seed=3, tick_seconds=0.005, period_seconds=1.0,
        anchor=lambda name: views.reference_price(db.uow(), name),
    )  # fmt: skip
    db.prices = db.price_book  # type: ignore[assignment]
    worker = MarketWorker(db, source, poll_seconds=0.05)
    task = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(60):
            while True:
                async with db.uow() as uow:
                    positions = await uow.positions.list(Page(10), strategy_id=strategy.id)
                if any(p.status is PositionStatus.CLOSED for p in positions):
                    break
                await asyncio.sleep(0.1)
    finally:
        worker.stop()
        await task
    async with db.uow() as uow:
        trades = await uow.trades.list(Page(10), strategy_id=strategy.id)
    assert {t.side.value for t in trades} == {"buy", "sell"}
    assert all(D(140) < t.price < D(160) for t in trades)


async def test_a_pair_quoted_in_btc_end_to_end_with_capital_per_asset(db: App) -> None:
    await seed_demo(db.uow, db.exchange)  # client 1 holds 2,000 USDT on BTCUSDT
    await symbols.add_symbol(cmds.AddSymbol("ETHBTC", "ETH", "BTC", D("0.00001"), D("0.0001"), D("0.0001")), db.uow())
    strategy = await services.create_strategy(
        cmds.CreateStrategy(1, "ETHBTC", "ETH in BTC", Channel(D("0.03"), D("0.034"))), db.uow(), db.exchange
    )
    assert strategy.id is not None
    await services.allocate_capital(cmds.AllocateCapital(strategy.id, D("0.5")), db.uow(), db.exchange)
    e, x = strategy.levels.entry, strategy.levels.exit  # 0.0306, 0.03332
    for prev, cur in ((D("0.0300"), e), (D("0.0335"), x)):
        db.price_book.set("ETHBTC", cur)
        await services.process_price_move(
            cmds.ProcessPriceMove(strategy.symbol_id, prev, cur, NOW, frozenset({strategy.id})), db.uow(), db.exchange
        )
    async with db.uow() as uow:
        [position] = await uow.positions.list(Page(10), strategy_id=strategy.id)
    assert position.status is PositionStatus.CLOSED and position.realized_profit is not None
    assert abs(position.cost / D("0.5") * 100 - 20) <= D("0.1")  # 20% of 0.5 BTC, in BTC (rule 2)
    assert position.realized_profit > 0
    async with db.uow() as uow:
        per_asset = await views.capital_balances(uow, 1, 1)
    assert set(per_asset) == {"BTC", "USDT"}
    assert per_asset["USDT"].principal == D(2000) and per_asset["BTC"].principal == D("0.5")
    assert per_asset["BTC"].profit == position.realized_profit
    async with db.uow() as uow:
        with pytest.raises(ValidationError) as which:
            await views.capital_balance(uow, 1, 1)
        assert which.value.details["assets"] == ["BTC", "USDT"]
        asset, btc = await views.capital_balance(uow, 1, 1, "btc")
    assert asset == "BTC" and btc == per_asset["BTC"]


async def test_candles_import_loads_a_csv_for_backtests(db: App, tmp_path: Path) -> None:
    good = tmp_path / "ETHUSDT-4h.csv"
    good.write_text(
        "open_time_ms,open,high,low,close,volume\n"
        "1582459200000,265.1,270.0,263.2,268.44,1000.5\n"
        "1582473600000,268.44,269.9,266.0,267.0,800\n"
    )
    done = await asyncio.to_thread(cli_command, db, "candles", "import", str(good), "--symbol", "ETHUSDT",
                                   "--interval", "4h")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Imported 2 4h candles of ETHUSDT" in done.stdout
    async with db.uow() as uow:
        rows = await uow.candles.history(2, "4h", 10)
    assert [(c.open, c.high, c.low, c.close) for c in rows] == [
        (D("265.1"), D("270.0"), D("263.2"), D("268.44")),
        (D("268.44"), D("269.9"), D("266.0"), D("267.0")),
    ]
    bad = tmp_path / "bad.csv"
    bad.write_text("1582459200000,265.1,270.0,263.2,268.44,1\n1582459200001,1,1,1,1,1\n")
    refused = await asyncio.to_thread(cli_command, db, "candles", "import", str(bad), "--symbol", "ETHUSDT",
                                      "--interval", "4h")  # fmt: skip
    assert refused.returncode == 1 and "bad.csv:2" in refused.stderr


def test_migrate_on_a_fresh_database_adds_the_base_symbols() -> None:
    """A compose deployment runs only `criptoren migrate` before the API: strategies on BTCUSDT and
    ETHUSDT must be possible before a worker has synced the symbols (issue 18's finding)."""
    from tests import services as test_services

    admin = test_services.server_url()
    url = test_services.create_database(admin)
    try:
        env = {**os.environ, "DATABASE_URL": url}
        done = subprocess.run(
            [sys.executable, "-m", "gql_api.cli", "migrate"], cwd=ROOT, env=env, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        listed = subprocess.run(
            [sys.executable, "-m", "gql_api.cli", "symbols", "list"], cwd=ROOT, env=env, capture_output=True,
            text=True, timeout=60,
        )  # fmt: skip
        assert "BTCUSDT" in listed.stdout and "ETHUSDT" in listed.stdout
    finally:
        test_services.drop_database(admin, url)
