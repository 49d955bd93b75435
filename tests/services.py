"""Real PostgreSQL (and later Redis) for the tests, following SPEC §8: the server given by the
environment (TEST_DATABASE_URL or DATABASE_URL), else the one on 127.0.0.1:5432 when reachable,
else an embedded one. Each test run creates its own database and drops it at the end."""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

LOCAL_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


def _reachable(url: str) -> bool:
    async def probe() -> bool:
        try:
            conn = await asyncpg.connect(_dsn(url), timeout=3)
        except (TimeoutError, OSError, asyncpg.PostgresError):
            return False
        await conn.close()
        return True

    return asyncio.run(probe())


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


_embedded_dir: tempfile.TemporaryDirectory[str] | None = None


def server_url() -> str:
    """An admin URL on a PostgreSQL server the tests may create databases on."""
    global _embedded_dir
    for var in ("TEST_DATABASE_URL", "DATABASE_URL"):
        if os.environ.get(var):
            return os.environ[var]
    if _reachable(LOCAL_URL):
        return LOCAL_URL
    from domain.adapters.embedded import embedded_postgres_url

    _embedded_dir = tempfile.TemporaryDirectory(prefix="criptoren-test-pg-")
    return embedded_postgres_url(Path(_embedded_dir.name))


def create_database(admin_url: str) -> str:
    name = f"criptoren_test_{uuid.uuid4().hex[:10]}"

    async def create() -> None:
        conn = await asyncpg.connect(_dsn(admin_url))
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, url: str) -> None:
    name = make_url(url).database

    async def drop() -> None:
        conn = await asyncpg.connect(_dsn(admin_url))
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(drop())


LOCAL_REDIS = "redis://127.0.0.1:6379/0"


def redis_url() -> str:
    """The Redis given by the environment, else 127.0.0.1:6379 when reachable, else an embedded one.
    Tests isolate themselves with a key prefix of their own (see `redis_prefix`)."""
    for var in ("TEST_REDIS_URL", "REDIS_URL"):
        if os.environ.get(var):
            return os.environ[var]
    import redis

    try:
        redis.Redis.from_url(LOCAL_REDIS, socket_connect_timeout=2).ping()
        return LOCAL_REDIS
    except redis.RedisError:
        pass
    global _embedded_dir
    from domain.adapters.embedded import embedded_redis_url

    if _embedded_dir is None:
        _embedded_dir = tempfile.TemporaryDirectory(prefix="criptoren-test-")
    return embedded_redis_url(Path(_embedded_dir.name))


def redis_prefix() -> str:
    return f"criptoren-test-{uuid.uuid4().hex[:10]}"


async def delete_keys(redis_client, prefix: str) -> None:  # type: ignore[no-untyped-def]
    """Remove every key of a test run (its prefix), leaving the server as it was."""
    async for key in redis_client.scan_iter(match=f"{prefix}*", count=1000):
        await redis_client.delete(key)
