"""Backups (issue 7): `criptoren backup` dumps the database (compressed, the newest BACKUP_KEEP kept)
and `criptoren restore FILE` brings every row back — checked on a scratch database that is backed up,
wiped and restored."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest

from domain import commands as cmds
from domain import services
from domain.adapters.bootstrap import App, bootstrap
from domain.adapters.config import Settings
from domain.adapters.ops import backup
from domain.adapters.persistence.migrate import upgrade_to_head
from domain.adapters.seed import seed_demo
from tests import services as test_services


@pytest.fixture
async def scratch(settings: Settings) -> AsyncIterator[App]:
    """An application on a database of its own (created like the session's, dropped after)."""
    admin = await _in_thread(test_services.server_url)
    url = await _in_thread(test_services.create_database, admin)
    try:
        await _in_thread(upgrade_to_head, url)
        app = bootstrap(settings.model_copy(update={"database_url": url}))
        try:
            yield app
        finally:
            await app.close()
    finally:
        await _in_thread(test_services.drop_database, admin, url)


async def _in_thread(fn, *args):  # type: ignore[no-untyped-def]
    import asyncio

    return await asyncio.to_thread(fn, *args)


async def rows(url: str) -> dict[str, list[str]]:
    """Every row of every table (the Alembic version included), as JSON text."""
    conn = await asyncpg.connect(backup.Connection.from_url(url).dsn)
    try:
        tables = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
        return {
            t["tablename"]: [
                r[0] for r in await conn.fetch(f'SELECT row_to_json(t)::text FROM "{t["tablename"]}" t ORDER BY 1')
            ]
            for t in tables
        }
    finally:
        await conn.close()


async def test_backup_wipe_restore_finds_every_row(scratch: App, tmp_path: Path) -> None:
    app = scratch
    await seed_demo(app.uow, app.exchange)
    app.price_book.set("BTCUSDT", Decimal("103000"))
    position = await services.buy(cmds.Buy(1, quote_amount=Decimal("400")), app.uow(), app.exchange, app.prices)
    app.price_book.set("BTCUSDT", Decimal("109000"))
    await services.sell(cmds.Sell(position.id or 0), app.uow(), app.exchange, app.prices)
    url = str(app.settings.database_url)
    before = await rows(url)
    assert len(before["trades"]) == 2 and len(before["historical_prices"]) > 100 and before["alembic_version"]

    path = await backup.backup(url, tmp_path, keep=3)
    assert path.name.startswith("criptoren-") and path.suffix == ".dump" and path.stat().st_size > 1000
    await app.engine.dispose()  # wipe: nothing of the schema is left
    conn = await asyncpg.connect(backup.Connection.from_url(url).dsn)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()
    assert await rows(url) == {}

    await backup.restore(url, path)
    assert await rows(url) == before
    # The application works on the restored database: ids go on from where they were.
    app.price_book.set("BTCUSDT", Decimal("103000"))
    again = await services.buy(cmds.Buy(1, quote_amount=Decimal("400")), app.uow(), app.exchange, app.prices)
    assert again.id == (position.id or 0) + 1


async def test_restore_refuses_a_database_that_is_not_empty_unless_forced(scratch: App, tmp_path: Path) -> None:
    url = str(scratch.settings.database_url)
    await seed_demo(scratch.uow, scratch.exchange)
    path = await backup.backup(url, tmp_path, keep=3)
    before = await rows(url)
    await services.create_client(cmds.CreateClient("Added after the backup"), scratch.uow())
    with pytest.raises(backup.BackupError, match="not empty"):
        await backup.restore(url, path)
    await scratch.engine.dispose()
    await backup.restore(url, path, force=True)
    assert await rows(url) == before


def test_rotation_keeps_the_newest(tmp_path: Path) -> None:
    for stamp in ("20260101T000000.000Z", "20260102T000000.000Z", "20260103T000000.000Z", "20260104T000000.000Z"):
        (tmp_path / f"criptoren-db-{stamp}.dump").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("not a backup")
    removed = backup.rotate(tmp_path, keep=2)
    assert [p.name for p in removed] == [
        "criptoren-db-20260101T000000.000Z.dump",
        "criptoren-db-20260102T000000.000Z.dump",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "criptoren-db-20260103T000000.000Z.dump",
        "criptoren-db-20260104T000000.000Z.dump",
        "notes.txt",
    ]


def test_the_tool_matches_the_server_version() -> None:
    tool = backup.find_tool("pg_dump", 15)
    assert backup._major(tool) is not None and backup._major(tool) >= 15  # type: ignore[operator]
    with pytest.raises(backup.BackupError, match="No pg_dump for PostgreSQL 99"):
        backup.find_tool("pg_dump", 99)


async def test_the_daily_backup_job(scratch: App, tmp_path: Path) -> None:
    from workers import cron
    from workers.settings import worker_settings

    scratch.settings.backup_dir, scratch.settings.backup_keep = tmp_path, 1
    first = await cron.backup_database({"app": scratch})
    second = await cron.backup_database({"app": scratch})
    assert [p.name for p in backup.backups(tmp_path)] == [Path(second).name] != [Path(first).name]
    jobs = worker_settings(scratch.settings.model_copy(update={"backup_cron": True, "backup_hour": 4}))["cron_jobs"]
    daily = next(j for j in jobs if j.name == "cron:backup_database")
    assert (daily.hour, daily.minute, daily.unique) == (4, 17, True)
    assert "cron:backup_database" not in {j.name for j in worker_settings(scratch.settings)["cron_jobs"]}
