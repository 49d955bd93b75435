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
    fee_rate: Decimal = Decimal("0.001")
    criptoren_secret_key: str | None = None
    criptoren_env: Literal["dev", "prod"] = "dev"
    criptoren_data_dir: Path = Field(default_factory=default_data_dir)
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"
    host: str = "127.0.0.1"
    port: int = 8000
    max_page_size: int = 100

    @property
    def is_prod(self) -> bool:
        return self.criptoren_env == "prod"
