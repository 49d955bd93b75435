"""Backtests and sweeps on the shared engine: candle loading, runs in processes, reports and charts."""
