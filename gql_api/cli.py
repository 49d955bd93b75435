"""The `criptoren` command.

criptoren up          migrate, seed the demo into an empty database, serve the API
criptoren serve       serve the API (uvicorn)
criptoren migrate     upgrade the database to the latest schema
criptoren seed-demo   load the plan's demo data (idempotent)
criptoren schema      print the GraphQL schema (SDL)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from domain.adapters.config import Settings

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
        return await seed_demo(app.uow, app.exchange)
    finally:
        await app.close()


def cmd_seed_demo(settings: Settings, only_if_empty: bool = False) -> None:
    loaded = asyncio.run(_seed(settings, only_if_empty))
    log.info("Demo data %s.", "loaded" if loaded else "already present (nothing changed)")


def cmd_serve(settings: Settings) -> None:
    import uvicorn

    from gql_api.app import create_app

    app = create_app(settings)
    log.info("GraphQL API and GraphiQL on http://%s:%s/graphql", settings.host, settings.port)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower())


def cmd_up(settings: Settings) -> None:
    cmd_migrate(settings)
    cmd_seed_demo(settings, only_if_empty=True)
    cmd_serve(settings)


def cmd_schema(settings: Settings) -> None:
    from gql_api.schema import sdl

    sys.stdout.write(sdl())


COMMANDS = {
    "up": (cmd_up, "migrate, seed the demo into an empty database, and serve the API"),
    "serve": (cmd_serve, "serve the GraphQL API (uvicorn)"),
    "migrate": (cmd_migrate, "upgrade the database to the latest schema"),
    "seed-demo": (cmd_seed_demo, "load the plan's demo data (idempotent)"),
    "schema": (cmd_schema, "print the GraphQL schema (SDL)"),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="criptoren", description="Channel-trading server for Binance spot.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        if name in ("up", "serve"):
            p.add_argument("--host", help="listen address (default 127.0.0.1, or HOST)")
            p.add_argument("--port", type=int, help="listen port (default 8000, or PORT)")
    args = parser.parse_args(argv)
    settings = Settings()
    if getattr(args, "host", None):
        settings.host = args.host
    if getattr(args, "port", None):
        settings.port = args.port
    _setup_logging(settings)
    COMMANDS[args.command][0](settings)


if __name__ == "__main__":
    main()
