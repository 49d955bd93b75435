"""Market files for tests."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path


def bouncing_market(path: Path, cycles: int = 300) -> Path:
    """1m candles, 20 a cycle: a dip to 99,000 (below B = 100,000: re-arms), a rise to 109,000
    (through E = 102,000 and X = 107,800), a fall to 104,000 (down through X: sells), then flat at
    104,000. No candle closes below B, so the channel never breaks."""
    start = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp() * 1000)
    rows = []
    cycle = [(104000, 104000, 99000, 101000), (101000, 109000, 101000, 109000), (109000, 109000, 104000, 104000)]
    cycle += [(104000, 104000, 104000, 104000)] * 17
    for i in range(cycles * len(cycle)):
        o, h, low, c = cycle[i % len(cycle)]
        rows.append(f"{start + i * 60_000},{o},{h},{low},{c},1")
    path.write_text("open_time_ms,open,high,low,close,volume\n" + "\n".join(rows) + "\n")
    return path
