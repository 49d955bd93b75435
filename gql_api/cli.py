"""The `criptoren` command.

criptoren up          migrate, seed the demo into an empty database, serve the API
criptoren serve       serve the API (uvicorn)
criptoren migrate     upgrade the database to the latest schema
criptoren seed-demo   load the plan's demo data (idempotent)
criptoren schema      print the GraphQL schema (SDL)
criptoren client create --name NAME   create a client; prints its API key and secret (once)
criptoren client rotate --name NAME   new API key and secret for a client; ends its sessions
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from domain import auth
from domain import commands as cmds
from domain.adapters.config import Settings
from domain.adapters.seed import DEMO_CLIENT
from domain.auth import Credentials
from domain.errors import DomainError

if TYPE_CHECKING:
    from domain.adapters.bootstrap import App

log = logging.getLogger("criptoren")


def _setup_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def cmd_migrate(settings: Settings) -> None:
    from domain.adapters.bootstrap import resolve_database_url
    from domain.adapters.migrate import upgrade_to_head

    upgrade_to_head(resolve_database_url(settings))
    log.info("Database schema is up to date.")


async def _seed(settings: Settings, only_if_empty: bool) -> bool:
    from domain.adapters.bootstrap import bootstrap
    from domain.adapters.seed import seed_demo, seed_symbols

    app = bootstrap(settings)
    try:
        if only_if_empty:
            async with app.uow() as uow:
                has_clients = await uow.clients.exists()
            if has_clients:
                await seed_symbols(app.uow)
                return False
        loaded = await seed_demo(app.uow, app.exchange)
        if loaded:
            # The demo client needs credentials to log in: new ones, shown once.
            await _issue_credentials(app, DEMO_CLIENT)
        return loaded
    finally:
        await app.close()


def cmd_seed_demo(settings: Settings, only_if_empty: bool = False) -> None:
    loaded = asyncio.run(_seed(settings, only_if_empty))
    log.info("Demo data %s.", "loaded" if loaded else "already present (nothing changed)")


def _print_credentials(name: str, credentials: Credentials) -> None:
    sys.stdout.write(
        f"\nAPI credentials of client {name!r} (id {credentials.client_id}). The secret is shown only now;\n"
        f"`criptoren client rotate --name {name!r}` replaces both.\n"
        f"  API key:    {credentials.api_key}\n"
        f"  API secret: {credentials.api_secret}\n"
        "Log in from GraphiQL or a front-end with the `login` mutation (see the README).\n\n"
    )
    sys.stdout.flush()


async def _issue_credentials(app: App, name: str) -> None:
    client = await auth.find_client(app.uow(), name)
    assert client.id is not None
    credentials = await auth.issue_credentials(cmds.IssueCredentials(client.id), app.uow(), datetime.now(UTC))
    _print_credentials(client.name, credentials)


async def _client(settings: Settings, action: str, name: str) -> None:
    from domain.adapters.bootstrap import bootstrap

    app = bootstrap(settings)
    try:
        if action == "create":
            client, credentials = await auth.create_client(
                cmds.CreateClientWithCredentials(name), app.uow(), datetime.now(UTC)
            )
            _print_credentials(client.name, credentials)
        else:
            await _issue_credentials(app, name)
    finally:
        await app.close()


def cmd_client(settings: Settings, action: str, name: str) -> None:
    try:
        asyncio.run(_client(settings, action, name))
    except DomainError as e:
        log.error("%s", e.message)
        raise SystemExit(1) from None


def cmd_serve(settings: Settings) -> None:
    import uvicorn

    from gql_api.app import create_app

    app = create_app(settings)
    log.info("GraphQL API and GraphiQL on http://%s:%s/graphql", settings.host, settings.port)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower())


def cmd_worker(settings: Settings) -> None:
    from arq.worker import Worker

    from domain.adapters.bootstrap import resolve_database_url
    from workers.settings import worker_settings

    resolve_database_url(settings)
    Worker(**worker_settings(settings)).run()


def cmd_up(settings: Settings) -> None:
    """Everything on one machine: migrate, seed an empty database, start a worker process, serve the
    API in this one. The embedded PostgreSQL/Redis (when used) live in this process; the worker
    reaches them through the URLs exported to its environment."""
    import subprocess

    from domain.adapters.bootstrap import resolve_redis_url

    cmd_migrate(settings)
    cmd_seed_demo(settings, only_if_empty=True)
    resolve_redis_url(settings)
    worker = subprocess.Popen([sys.executable, "-m", "gql_api.cli", "worker"])
    try:
        cmd_serve(settings)
    finally:
        worker.terminate()
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            worker.kill()


def cmd_schema(settings: Settings) -> None:
    from gql_api.schema import sdl

    sys.stdout.write(sdl())


COMMANDS = {
    "up": (cmd_up, "migrate, seed the demo into an empty database, run a worker and serve the API"),
    "serve": (cmd_serve, "serve the GraphQL API (uvicorn)"),
    "worker": (cmd_worker, "run a worker: market streams, strategy engine, order jobs (scale out with more)"),
    "migrate": (cmd_migrate, "upgrade the database to the latest schema"),
    "seed-demo": (cmd_seed_demo, "load the plan's demo data (idempotent)"),
    "schema": (cmd_schema, "print the GraphQL schema (SDL)"),
}
CLIENT_ACTIONS = {
    "create": "create a client; prints its API key and secret (shown once)",
    "rotate": "give a client a new API key and secret (the old ones stop working, its sessions end)",
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="criptoren", description="Channel-trading server for Binance spot.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        if name in ("up", "serve"):
            p.add_argument("--host", help="listen address (default 127.0.0.1, or HOST)")
            p.add_argument("--port", type=int, help="listen port (default 8000, or PORT)")
    client = sub.add_parser("client", help="manage clients and their API credentials")
    actions = client.add_subparsers(dest="action", required=True)
    for action, help_text in CLIENT_ACTIONS.items():
        actions.add_parser(action, help=help_text).add_argument("--name", required=True, help="the client's name")
    args = parser.parse_args(argv)
    settings = Settings()
    if getattr(args, "host", None):
        settings.host = args.host
    if getattr(args, "port", None):
        settings.port = args.port
    _setup_logging(settings)
    if args.command == "client":
        cmd_client(settings, args.action, args.name)
        return
    COMMANDS[args.command][0](settings)


if __name__ == "__main__":
    main()
