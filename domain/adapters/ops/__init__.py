"""Operations: backups, logs, metrics, market stream heartbeats."""
