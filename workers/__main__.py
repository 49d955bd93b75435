"""`python -m workers` (what `criptoren worker` runs): one arq worker process — the market consumers
of the symbols it leases, order updates, and the cron jobs. It rides out Redis, PostgreSQL and
Binance outages by itself (workers.arq_worker, workers.supervision); `criptoren up` also restarts
it if it dies.

`--quiet` (what `criptoren up` passes): the libraries' chatter (arq's job lines) is left out.
"""

from __future__ import annotations

import signal
import sys


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    try:
        # Imported here: a Ctrl+C while they load (seconds on a busy machine) ends with no traceback.
        from domain.adapters.bootstrap import configure_logging, resolve_database_url
        from domain.adapters.config import Settings
        from workers.arq_worker import ResilientWorker
        from workers.settings import worker_settings

        settings = Settings()
        configure_logging(settings, quiet="--quiet" in args)
        resolve_database_url(settings)
        # From here on arq handles SIGINT and SIGTERM itself: a graceful stop.
        ResilientWorker(**worker_settings(settings)).run()
    except KeyboardInterrupt:
        raise SystemExit(128 + signal.SIGINT) from None


if __name__ == "__main__":
    main()
