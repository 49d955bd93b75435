"""`criptoren backtest` and `criptoren sweep` end to end: files written, figures consistent, and a
stored strategy backtested over the candles stored in PostgreSQL."""

from __future__ import annotations

import asyncio
import csv
import json
from decimal import Decimal
from pathlib import Path

import pytest

from domain.adapters.bootstrap import App
from domain.adapters.seed import seed_demo
from gql_api.cli import main
from tests.integration.test_backtest_vs_live import write_market

PNG = b"\x89PNG\r\n\x1a\n"


def test_backtest_writes_the_summary_trades_and_chart(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    market = tmp_path / "BTCUSDT-1h.csv"
    write_market(market)
    out = tmp_path / "out"
    main(["backtest", "--csv", str(market), "--base", "100000", "--top", "110000", "--capital-percentage", "25",
          "--bankroll", "2000", "--fee-rate", "0.001", "--out", str(out)])  # fmt: skip
    printed = capsys.readouterr().out
    assert "net profit (realised)" in printed and "BTCUSDT, 160 × 1h" in printed
    assert (out / "chart.png").read_bytes().startswith(PNG) and (out / "chart.png").stat().st_size > 20_000
    with (out / "trades.csv").open() as f:
        trades = list(csv.DictReader(f))
    result = json.loads((out / "backtest.json").read_text())
    assert [t["reason"] for t in trades] == [t["reason"] for t in result["trades"]] == [
        "entry", "entry", "exit", "exit", "entry", "exit", "entry", "scheduled_exit"
    ]  # fmt: skip
    profit = sum(Decimal(t["profit"]) for t in trades if t["side"] == "sell")
    assert Decimal(result["summary"]["net_profit"]) == profit == Decimal(result["summary"]["segregated_profit"])
    assert result["summary"]["levels"] == {"base": "100000", "entry": "102000", "exit": "107800", "top": "110000"}


def test_an_unworkable_channel_is_an_error_naming_the_smallest_top(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    market = tmp_path / "BTCUSDT-1h.csv"
    write_market(market)
    with pytest.raises(SystemExit):
        main(["backtest", "--csv", str(market), "--base", "100000", "--top", "104000", "--out", str(tmp_path)])
    assert "smallest workable topPrice" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["backtest", "sweep"])
def test_candles_coarser_than_the_timeframe_exit_non_zero_naming_the_coarsest_that_works(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SPEC §4 rule 5: 1h candles cannot judge a 30m timeframe's closes (its breaks): refused before
    any run, with the message of the API's VALIDATION error."""
    market = tmp_path / "BTCUSDT-1h.csv"
    write_market(market)
    out = tmp_path / "out"
    timeframe = "30m" if command == "backtest" else "4h,30m"
    with pytest.raises(SystemExit) as e:
        main([command, "--csv", str(market), "--base", "100000", "--top", "110000", "--timeframe", timeframe,
              "--out", str(out)])  # fmt: skip
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert f"criptoren {command}: Candles of 1h cannot judge every close" in err
    assert "coarsest candle interval that works is 30m" in err
    assert not out.exists()


def test_sweep_ranks_a_grid_and_draws_its_heat_map(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    market = tmp_path / "BTCUSDT-1h.csv"
    write_market(market)
    out = tmp_path / "sweep"
    main(["sweep", "--csv", str(market), "--base", "99000:100000:500", "--top", "104000,110000,112000",
          "--capital-percentage", "25", "--workers", "2", "--out", str(out)])  # fmt: skip
    assert "9 runs (2 rejected by rule 11)" in capsys.readouterr().out
    with (out / "sweep.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 9
    valid = [r for r in rows if not r["error"]]
    assert [int(r["rank"]) for r in valid] == list(range(1, 8))
    profits = [Decimal(r["net_profit"]) for r in valid]
    assert profits == sorted(profits, reverse=True)
    assert all(r["top"] == "104000" and "smallest workable topPrice" in r["error"] for r in rows if r["error"])
    assert (out / "heatmap.png").read_bytes().startswith(PNG)


async def test_backtest_of_a_stored_strategy_over_stored_candles(
    db: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed_demo(db.uow, db.exchange)  # the demo strategy and 90 days of 4h candles
    monkeypatch.setenv("DATABASE_URL", db.settings.database_url or "")
    out = tmp_path / "stored"
    args = ["backtest", "--strategy-id", "1", "--interval", "4h", "--out", str(out), "--no-chart"]
    await asyncio.to_thread(main, args)
    summary = json.loads((out / "backtest.json").read_text())["summary"]
    assert summary["symbol"] == "BTCUSDT" and summary["interval"] == "4h" and summary["candles"] == 540
    assert summary["channel"]["base"] == "100489" and summary["bankroll"] == "2000"
    assert not (out / "chart.png").exists()
