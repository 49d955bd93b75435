"""The `backtest` query over HTTP: a stored strategy's channel over the stored candles, the same
figures as the runner gives, bounded trades, its errors, and its run in the backtest pool (off the
event loop, one per client)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from domain.adapters.backtest.runner import backtest_async
from domain.adapters.bootstrap import App, StoredBacktest, run_stored_backtest
from domain.adapters.seed import seed_demo
from domain.channel import Channel
from domain.services.backtests import stored_candles
from gql_api import backtest as gql_backtest
from tests.e2e.conftest import GraphQLClient

QUERY = """
query($i: BacktestInput!) {
  backtest(input: $i) {
    summary { symbol interval candles basePrice entryLevel exitLevel topPrice bankroll feeRate entries exits wins
              netProfit segregatedProfit fees maxDrawdown exposurePct leftOpen leftScheduled unrealised finalEquity
              channelBrokenAt }
    trades { side price quantity quoteAmount fee profit reason executedAt position }
    tradesTruncated
    positionsLeft { position status cost unrealised }
    marks { at price kind }
  }
}
"""


async def test_backtest_query_matches_the_runner(db: App, gql: GraphQLClient) -> None:
    await seed_demo(db.uow, db.exchange)  # BTCUSDT: strategy 1 (100,489 - 110,626), 2,000, 540 4h candles
    data = await gql.data(QUERY, i={"strategyId": "1", "interval": "4h"})
    got = data["backtest"]
    async with db.uow() as uow:
        symbol = await uow.symbols.get_by_name("BTCUSDT")
    assert symbol is not None and symbol.id is not None
    series = await stored_candles(db.uow(), symbol.id, "4h")
    channel = Channel(Decimal(100489), Decimal(110626))
    expected = await backtest_async(series, channel, Decimal(2000), symbol, Decimal("0.001"))
    s = expected.summary
    assert got["summary"]["candles"] == 540 == s.candles
    assert Decimal(got["summary"]["netProfit"]) == s.net_profit
    assert Decimal(got["summary"]["maxDrawdown"]) == s.max_drawdown
    assert Decimal(got["summary"]["entryLevel"]) == Decimal("102498.78")
    assert got["summary"]["entries"] == s.entries and got["summary"]["exits"] == s.exits
    assert [(t["side"], Decimal(t["price"]), t["reason"]) for t in got["trades"]] == [
        (t.side.value.upper(), t.price, t.reason) for t in expected.trades
    ]
    assert len(got["positionsLeft"]) == s.left_open + s.left_scheduled


async def test_explicit_parameters_and_bounded_trades(db: App, gql: GraphQLClient) -> None:
    await seed_demo(db.uow, db.exchange)
    # A channel around the demo walk's middle: several round trips.
    data = await gql.data(
        QUERY,
        i={"symbol": "BTCUSDT", "interval": "4h", "basePrice": "100489", "topPrice": "110626",
           "capitalPercentage": "10", "bankroll": "5000", "maxTrades": 1},
    )  # fmt: skip
    got = data["backtest"]
    assert got["summary"]["bankroll"] == "5000"
    assert len(got["trades"]) <= 1
    assert got["tradesTruncated"] == (got["summary"]["entries"] + got["summary"]["exits"] > 1)


async def test_backtest_errors(db: App, gql: GraphQLClient) -> None:
    await seed_demo(db.uow, db.exchange)
    narrow = await gql.error(QUERY, i={"symbol": "BTCUSDT", "basePrice": "100000", "topPrice": "101000"})
    assert narrow["extensions"]["code"] == "VALIDATION" and "smallest workable topPrice" in narrow["message"]
    none = await gql.error(QUERY, i={"symbol": "BTCUSDT", "interval": "1h", "basePrice": "1", "topPrice": "2"})
    assert "No 1h candles" in none["message"]
    # SPEC §4 rule 5: 1d candles cannot show the 4h closes of the demo strategy's channel breaks.
    coarse = await gql.error(QUERY, i={"strategyId": "1", "interval": "1d"})
    assert coarse["extensions"]["code"] == "VALIDATION"
    assert coarse["extensions"]["details"]["coarsest_interval"] == "4h"
    assert "coarsest candle interval that works is 4h" in coarse["message"]
    too_many = await gql.error(QUERY, i={"strategyId": "1", "maxTrades": 5000})
    assert too_many["extensions"]["code"] == "VALIDATION"


def _gate(database_url: str) -> Path:
    return Path(tempfile.gettempdir()) / f"criptoren-held-backtest-{make_url(database_url).database}"


def held_backtest(database_url: str, job: StoredBacktest) -> Any:
    """The pool's job, held until the test releases it (in the pool's process)."""
    gate = _gate(database_url)
    (gate / "started").touch()
    deadline = time.monotonic() + 60
    while not (gate / "release").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return run_stored_backtest(database_url, job)


async def test_backtests_run_off_the_event_loop_one_per_client(
    db: App, gql: GraphQLClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The finding: a backtest over 600,000 candles stalled /healthz for 3.4 s, and any number ran
    # at once (four took 1.4 GB). Now: in the backtest pool's processes, one per client.
    await seed_demo(db.uow, db.exchange)
    monkeypatch.setattr(gql_backtest, "run_stored_backtest", held_backtest)
    gate = _gate(str(db.settings.database_url))
    shutil.rmtree(gate, ignore_errors=True)
    gate.mkdir()
    try:
        await gql.login()
        first = asyncio.create_task(gql.execute(QUERY, i={"strategyId": "1", "interval": "4h"}))
        async with asyncio.timeout(60):
            while not (gate / "started").exists():
                await asyncio.sleep(0.02)
        # While it runs: the API answers, and the same client's second backtest is BUSY at once.
        assert (await gql.http.get("/healthz")).status_code == 200
        busy = await gql.error(QUERY, i={"strategyId": "1", "interval": "4h"})
        assert busy["extensions"]["code"] == "BUSY" and "running already" in busy["message"]
        (gate / "release").touch()
        body = await first
        assert body["data"]["backtest"]["summary"]["candles"] == 540
    finally:
        shutil.rmtree(gate, ignore_errors=True)
