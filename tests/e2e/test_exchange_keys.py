"""A client's own Binance keys (SPEC §3, issue 4): set through the API or the CLI, stored encrypted,
never returned. The secret appears nowhere in the database in plain text, in no log line (DEBUG
included, through a whole trading cycle on the local Binance) and in no GraphQL response."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text

from domain import commands as cmds
from domain import services
from domain.adapters.bootstrap import App
from domain.adapters.exchanges.binance import BinanceExchange
from domain.adapters.exchanges.router import ExchangeRouter
from domain.adapters.exchanges.secrets import SecretBox
from domain.adapters.persistence import orm
from domain.adapters.seed import seed_demo
from domain.model import PositionStatus
from tests.binance_local import LocalBinance, local_config
from tests.e2e.conftest import GraphQLClient
from tests.e2e.servers import ROOT
from workers.orders import OrderUpdatesWorker

pytest_plugins = ["tests.binance_local.fixtures"]  # local_binance

API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
SET_KEYS = """mutation($k: String!, $s: String!) {
  setExchangeKeys(apiKey: $k, apiSecret: $s) { clientId tradesOn hasKeys apiKeyHint }
}"""
CLEAR_KEYS = "mutation { clearExchangeKeys { clientId tradesOn hasKeys apiKeyHint } }"
# Everything a client can read about itself.
READ_ALL = """{
  me { id name apiKey createdAt }
  strategies { nodes { id name positions { nodes { id status trades { id price fees } } } } }
  positions(first: 50) { nodes { id status quantity cost } }
  trades(first: 50) { nodes { id side price quantity fees feeAsset notes } }
  capitalBalance { principal free profit }
}"""


async def database_text(db: App) -> str:
    """Every row of every table, as JSON text."""
    parts = []
    async with db.engine.connect() as conn:
        for table in orm.metadata.sorted_tables:
            rows = await conn.execute(text(f"SELECT row_to_json(t)::text FROM {table.name} t"))
            parts += [r[0] for r in rows]
    return "\n".join(parts)


async def stored_keys(db: App) -> tuple[str | None, str | None]:
    async with db.uow() as uow:
        client = await uow.clients.get(1)
    assert client is not None
    return client.binance_api_key, client.binance_api_secret_encrypted


async def test_keys_set_through_the_api_are_encrypted_and_never_returned(db: App, gql: GraphQLClient) -> None:
    await seed_demo(db.uow, db.exchange)
    body = await gql.execute(SET_KEYS, k=API_KEY, s=SECRET)
    assert (
        body["data"]["setExchangeKeys"]
        == {
            "clientId": "1",
            "tradesOn": "paper",  # the test settings run EXCHANGE=paper
            "hasKeys": True,
            "apiKeyHint": "********" + API_KEY[-4:],
        }
    )
    key, token = await stored_keys(db)
    assert key == API_KEY and token is not None and SECRET not in token
    assert SecretBox(str(db.settings.criptoren_secret_key)).decrypt(token) == SECRET
    everything = await database_text(db)
    assert SECRET not in everything
    assert '"apiSecret": "[redacted]"' in everything  # the audit log keeps the call, not the secret
    responses = [body, await gql.execute(READ_ALL)]
    # Refusals do not quote what was sent either.
    bad = await gql.execute(SET_KEYS, k=API_KEY, s=SECRET[:10] + "!")
    assert bad["errors"][0]["extensions"]["code"] == "VALIDATION"
    responses.append(bad)
    cleared = await gql.execute(CLEAR_KEYS)
    assert cleared["data"]["clearExchangeKeys"] == {
        "clientId": "1",
        "tradesOn": "paper",
        "hasKeys": False,
        "apiKeyHint": None,
    }
    responses.append(cleared)
    assert await stored_keys(db) == (None, None)
    assert all(SECRET not in str(r) and SECRET[:10] not in str(r) for r in responses)


async def test_keys_cannot_change_while_the_client_holds_positions(db: App, gql: GraphQLClient) -> None:
    await seed_demo(db.uow, db.exchange)
    db.price_book.set("BTCUSDT", Decimal(102500))
    await services.buy(cmds.Buy(1, quote_amount=Decimal(400)), db.uow(), db.exchange, db.prices)
    for query, variables in ((SET_KEYS, {"k": API_KEY, "s": SECRET}), (CLEAR_KEYS, {})):
        body = await gql.execute(query, **variables)
        assert body["errors"][0]["extensions"]["code"] == "INVALID_STATE", body
    assert await stored_keys(db) == (None, None)


async def test_without_a_server_secret_key_keys_are_not_stored(db: App, gql: GraphQLClient) -> None:
    await seed_demo(db.uow, db.exchange)
    key = db.settings.criptoren_secret_key
    db.settings.criptoren_secret_key = None
    try:
        body = await gql.execute(SET_KEYS, k=API_KEY, s=SECRET)
    finally:
        db.settings.criptoren_secret_key = key
    assert body["errors"][0]["extensions"]["code"] == "INVALID_STATE"
    assert "CRIPTOREN_SECRET_KEY" in body["errors"][0]["message"]
    assert await stored_keys(db) == (None, None)


async def test_a_trading_cycle_on_binance_logs_no_secret(
    db: App, gql: GraphQLClient, local_binance: LocalBinance, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    binance = local_binance
    await seed_demo(db.uow, db.exchange)
    assert "errors" not in await gql.execute(SET_KEYS, k=binance.api_key, s=binance.api_secret)
    router = ExchangeRouter(
        db.exchange,
        db.uow,
        SecretBox(str(db.settings.criptoren_secret_key)),
        lambda key, secret: BinanceExchange(local_config(binance, api_key=key, api_secret=secret)),
    )
    db.exchange = router
    worker = OrderUpdatesWorker(db)
    task = asyncio.create_task(worker.run())
    try:
        db.price_book.set("BTCUSDT", Decimal(102500))
        await binance.set_price("BTCUSDT", Decimal(102500))
        position = await services.buy(cmds.Buy(1, quote_amount=Decimal(400)), db.uow(), db.exchange, db.prices)
        assert position.id is not None
        await services.schedule_sell(cmds.ScheduleSell(position.id), db.uow(), db.exchange)
        await binance.set_price("BTCUSDT", Decimal(104000))
        for _ in range(100):
            if worker.applied:
                break
            await asyncio.sleep(0.05)
        await services.reconcile_orders(db.uow(), db.exchange)
        responses: list[Any] = [await gql.execute(READ_ALL)]
    finally:
        task.cancel()
        await router.close()
    async with db.uow() as uow:
        closed = await uow.positions.get(position.id)
    assert closed is not None and closed.status is PositionStatus.CLOSED and worker.applied == 1
    assert caplog.records and any(r.name.startswith("criptoren") for r in caplog.records)
    assert binance.api_secret not in caplog.text
    assert binance.api_key not in caplog.text  # only its last characters, masked
    assert all(binance.api_secret not in str(r) for r in responses)
    assert binance.api_secret not in await database_text(db)


def _cli(app: App, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    settings = app.settings
    env = {
        **os.environ,
        "DATABASE_URL": str(settings.database_url),
        "REDIS_URL": str(settings.redis_url),
        "REDIS_PREFIX": settings.redis_prefix,
        "CRIPTOREN_SECRET_KEY": str(settings.criptoren_secret_key),
        "LOG_LEVEL": "DEBUG",
    }
    return subprocess.run(
        [sys.executable, "-m", "gql_api.cli", "client", *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_the_cli_sets_and_clears_keys_reading_the_secret_from_stdin(db: App) -> None:
    await seed_demo(db.uow, db.exchange)
    name = "TradeBot XYZ"
    done = await asyncio.to_thread(_cli, db, "set-exchange-keys", "--name", name, "--api-key", API_KEY, stdin=SECRET)
    assert done.returncode == 0, done.stderr
    assert SECRET not in done.stdout + done.stderr and API_KEY not in done.stdout + done.stderr
    assert API_KEY[-4:] in done.stderr
    key, token = await stored_keys(db)
    assert key == API_KEY and token and SecretBox(str(db.settings.criptoren_secret_key)).decrypt(token) == SECRET
    assert SECRET not in await database_text(db)
    cleared = await asyncio.to_thread(_cli, db, "clear-exchange-keys", "--name", name)
    assert cleared.returncode == 0, cleared.stderr
    assert await stored_keys(db) == (None, None)
