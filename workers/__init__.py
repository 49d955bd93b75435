"""arq workers: the market stream, the strategy engine and order jobs (the live-loop issue)."""
