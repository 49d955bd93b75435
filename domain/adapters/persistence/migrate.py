"""Run the Alembic migrations programmatically (used by `criptoren migrate` and the tests)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from alembic.config import Config

from alembic import command

ROOT = Path(__file__).resolve().parents[3]


def alembic_config(url: str) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "alembic"))
    cfg.attributes["url"] = url
    cfg.attributes["configure_logger"] = False
    return cfg


def upgrade_to_head(url: str) -> None:
    """`alembic upgrade head` on `url`. Runs in a thread of its own, so it works from inside an
    event loop too (Alembic's async env calls `asyncio.run`)."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            command.upgrade(alembic_config(url), "head")
        except BaseException as e:  # re-raised in the caller's thread
            errors.append(e)

    thread = threading.Thread(target=run, name="alembic-upgrade")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


async def upgrade_to_head_async(url: str) -> None:
    await asyncio.to_thread(upgrade_to_head, url)
