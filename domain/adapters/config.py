"""All configuration in one place, read from the environment (SPEC §8; documented in README and
`.env.example`). Every variable is optional."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "criptoren"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    database_url: str | None = Field(
        default=None, description="postgresql+asyncpg://… ; unset: an embedded PostgreSQL under DATA_DIR"
    )
    redis_url: str | None = Field(default=None, description="redis://… ; unset: an embedded Redis under DATA_DIR")
    exchange: Literal["paper", "binance"] = "paper"
    binance_testnet: bool = True
    market_source: Literal["auto", "binance", "replay", "synthetic"] = "auto"
    replay_file: Path | None = None
    replay_speed: float = Field(default=60.0, description="replay: times faster than real time (0: no waiting)")
    redis_prefix: str = Field(default="criptoren", description="prefix of every Redis key, channel and arq queue")
    synthetic_seed: int = 7
    lease_seconds: float = Field(default=5.0, description="a dead worker's symbols are taken over after this")
    engine_reload_seconds: float = Field(
        default=30.0, gt=0, description="worker: a consumer reloads its symbol's strategies in full at least this often"
    )
    fee_rate: Decimal = Decimal("0.001")
    criptoren_secret_key: str | None = None
    criptoren_env: Literal["dev", "prod"] = "dev"
    criptoren_data_dir: Path = Field(default_factory=default_data_dir)
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"
    host: str = "127.0.0.1"
    port: int = 8000
    max_page_size: int = 100
    access_token_minutes: int = Field(default=15, description="lifetime of an access token (JWT)")
    refresh_token_days: int = Field(default=30, description="lifetime of a refresh token (each refresh renews it)")
    rate_limit_per_minute: int = Field(default=600, description="API requests per client (or per IP) a minute")
    max_body_bytes: int = Field(
        default=100_000, description="largest HTTP request body, and largest WebSocket message, the API reads"
    )
    # Hostile clients (issue 17): WebSocket limits, backtests, logins.
    ws_max_subscriptions: int = Field(
        default=100, description="operations (subscriptions, queries in flight) open at once on one WebSocket"
    )
    ws_queue_depth: int = Field(
        default=1000, description="messages waiting for a WebSocket client; over it the socket is closed (1013)"
    )
    ws_max_connections_per_client: int = Field(default=20, description="open WebSockets per client, per API process")
    ws_max_connections_per_ip: int = Field(default=200, description="open WebSockets per IP address, per API process")
    backtest_concurrency: int = Field(default=2, description="backtests run at once per API process (processes)")
    backtest_wait_seconds: float = Field(
        default=10.0, description="how long a backtest waits for a free slot before BUSY"
    )
    login_failures_per_key: int = Field(
        default=5, description="failed logins of one API key before each further attempt waits (doubling)"
    )
    login_failures_per_ip: int = Field(
        default=20, description="failed logins from one IP address before each further attempt waits (doubling)"
    )
    login_max_delay_seconds: int = Field(default=300, description="the longest wait between throttled logins")
    # Operations (issue 7): metrics, readiness, graceful shutdown, backups.
    metrics_port: int = Field(default=0, description="worker: serve Prometheus metrics on this port (0: off)")
    stream_stale_seconds: float = Field(
        default=120.0, description="/readyz: a market stream without a tick for this long is not ready"
    )
    shutdown_grace_seconds: float = Field(
        default=10.0, description="worker: on SIGTERM, how long a decision in flight may take to finish"
    )
    backup_dir: Path | None = Field(default=None, description="where backups go; unset: DATA_DIR/backups")
    backup_keep: int = Field(default=7, description="backups kept in BACKUP_DIR (the oldest are deleted)")
    backup_cron: bool = Field(default=False, description="worker: back the database up every day")
    backup_hour: int = Field(default=3, description="hour (UTC) of the daily backup")
    # Symbols (SPEC §4b): synced from Binance's exchangeInfo at worker start and daily.
    symbol_sync: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="sync symbols from Binance: auto = unless the market is a replay or synthetic on paper",
    )
    binance_api_url: str | None = Field(
        default=None, description="another Binance REST base ending in /api (a proxy, or the tests' local Binance)"
    )
    binance_stream_url: str | None = Field(
        default=None, description="another Binance market stream base, e.g. wss://host:9443/ (the tests' local Binance)"
    )
    stream_alert_seconds: float = Field(
        default=20.0,
        gt=0,
        description="worker: a market stream lost for longer than this is an event (market_stream_down), alerted",
    )
    # Alerts (SPEC §4b): webhooks and Telegram.
    webhook_allow_private: bool = Field(
        default=False, description="allow webhook URLs on loopback, private or link-local addresses (tests, LANs)"
    )
    telegram_api_url: str = Field(
        default="https://api.telegram.org", description="Telegram Bot API base URL (the tests' local fake)"
    )

    @property
    def syncs_symbols(self) -> bool:
        if self.symbol_sync != "auto":
            return self.symbol_sync == "on"
        return not (self.exchange == "paper" and self.market_source in ("replay", "synthetic"))

    @property
    def backups_path(self) -> Path:
        return self.backup_dir or self.criptoren_data_dir / "backups"

    @property
    def is_prod(self) -> bool:
        return self.criptoren_env == "prod"
