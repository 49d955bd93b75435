"""The checked-in `schema.graphql` matches the code; the models match the migrations; the plan's
`updated_at` trigger works."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from domain.adapters.bootstrap import App
from domain.adapters.persistence import orm

ROOT = Path(__file__).resolve().parents[2]


def test_schema_graphql_is_up_to_date() -> None:
    from gql_api.schema import sdl

    checked_in = (ROOT / "schema.graphql").read_text()
    assert checked_in == sdl(), "schema.graphql is stale: run `criptoren schema > schema.graphql`"


async def test_models_and_migrations_agree(app: App) -> None:
    def diff(sync_conn):  # type: ignore[no-untyped-def]
        ctx = MigrationContext.configure(sync_conn, opts={"compare_type": True})
        return compare_metadata(ctx, orm.metadata)

    async with app.engine.connect() as conn:
        differences = await conn.run_sync(diff)
    assert differences == []


async def test_updated_at_trigger(db: App) -> None:
    async with db.engine.begin() as conn:
        before = (await conn.execute(text("SELECT updated_at FROM symbols WHERE symbol = 'BTCUSDT'"))).scalar_one()
    await asyncio.sleep(0.01)
    async with db.engine.begin() as conn:
        await conn.execute(text("UPDATE symbols SET is_active = false WHERE symbol = 'BTCUSDT'"))
        after = (await conn.execute(text("SELECT updated_at FROM symbols WHERE symbol = 'BTCUSDT'"))).scalar_one()
    assert after > before
