"""arq workers: the market consumers (stream -> engine, decisions inline in tick order), order
updates, and the cron jobs (reconciliation, candle backfill, backups). Run as `python -m workers`."""
