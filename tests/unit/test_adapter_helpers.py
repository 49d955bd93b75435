"""Small adapter helpers rewritten for the strict type check (mypy on domain/adapters and workers):
what they return is pinned here, so that the typing changed nothing."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from domain.adapters.backtest.runner import grid, symbol_for
from domain.adapters.config import Settings
from domain.adapters.exchanges.paper import SEED_SYMBOLS
from domain.adapters.market.factory import replay_files
from domain.adapters.ops.logs import debugging
from domain.channel import Channel


def test_replay_files_reads_a_path_or_symbol_path_pairs() -> None:
    assert replay_files("data/BTCUSDT-1m.csv") == {"BTCUSDT": Path("data/BTCUSDT-1m.csv")}
    assert replay_files(Path("ethusdt.csv")) == {"ETHUSDT": Path("ethusdt.csv")}
    assert replay_files(" btcusdt = a.csv ,ETHUSDT=b.csv,") == {"BTCUSDT": Path("a.csv"), "ETHUSDT": Path("b.csv")}


def test_debugging_only_at_log_level_debug() -> None:
    assert debugging(Settings(log_level="debug"))
    assert debugging(Settings(log_level="DEBUG"))
    assert not debugging(Settings(log_level="INFO"))
    assert not debugging(Settings(log_level="nonsense"))


def test_grid_is_every_combination_of_the_axes_the_rest_from_the_base() -> None:
    base = Channel(Decimal(1), Decimal(2))
    channels = grid(base, {"base": [Decimal(10), Decimal(11)], "timeframe": ["1h", "4h", "1d"]})
    assert [(c.base, c.timeframe) for c in channels] == [
        (Decimal(10), "1h"), (Decimal(10), "4h"), (Decimal(10), "1d"),
        (Decimal(11), "1h"), (Decimal(11), "4h"), (Decimal(11), "1d"),
    ]  # fmt: skip
    assert all(c.top == base.top for c in channels)


def test_symbol_for_copies_a_seeded_symbol_and_guesses_others() -> None:
    btc = symbol_for("btcusdt", tick_size=Decimal("0.1"))
    assert (btc.symbol, btc.base_asset, btc.quote_asset, btc.tick_size) == ("BTCUSDT", "BTC", "USDT", Decimal("0.1"))
    assert SEED_SYMBOLS[0]["tick_size"] == Decimal("0.01")  # the seed row itself is left as it was
    other = symbol_for("SOLFDUSD")
    assert (other.base_asset, other.quote_asset, other.step_size) == ("SOL", "FDUSD", Decimal("0.00000001"))
