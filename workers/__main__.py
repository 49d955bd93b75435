"""`python -m workers` (what `criptoren worker` runs): one arq worker process — the market consumers
of the symbols it leases, order updates, and the cron jobs."""

from __future__ import annotations

from arq.worker import Worker

from domain.adapters.bootstrap import configure_logging, resolve_database_url
from domain.adapters.config import Settings
from workers.settings import worker_settings


def main() -> None:
    settings = Settings()
    configure_logging(settings)
    resolve_database_url(settings)
    Worker(**worker_settings(settings)).run()


if __name__ == "__main__":
    main()
