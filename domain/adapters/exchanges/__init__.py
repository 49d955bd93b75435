"""The Exchange port's adapters: paper, Binance, the per-client router, and the cipher of stored exchange keys."""
