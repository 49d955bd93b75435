"""The `criptoren` command.

criptoren up          migrate, seed the demo into an empty database, run a worker (restarted if it
                      dies), serve the API; ends with a summary (URLs, credentials, data); --verbose
                      shows the libraries' start-up chatter
criptoren serve       serve the API (uvicorn)
criptoren migrate     upgrade the database to the latest schema
criptoren seed-demo   load the plan's demo data (idempotent)
criptoren schema      print the GraphQL schema (SDL)
criptoren client create --name NAME   create a client; prints its API key and secret (once)
criptoren client rotate --name NAME   new API key and secret for a client; ends its sessions
criptoren client set-exchange-keys --name NAME [--api-key KEY]   the client's own Binance keys (the
                      secret is read from the terminal or stdin, never from the command line)
criptoren client clear-exchange-keys --name NAME   the client trades on paper again
criptoren pause [--client NAME | --all] [--cancel-scheduled]   emergency stop: no new entries
criptoren resume [--client NAME | --all]   end the pause
criptoren backup      pg_dump the database into BACKUP_DIR (compressed; the newest BACKUP_KEEP kept)
criptoren restore FILE [--force]   restore a backup (into an empty database, or replace it with --force)
criptoren export trades --client NAME [--from DATE] [--to DATE] [--strategy-id ID] [--output FILE]
                      a client's fills as CSV (columns: gql_api/export.py)
criptoren backtest    backtest a channel over historical candles (gql_api/backtest_cli.py)
criptoren symbols     add a symbol by hand, list them, sync them from Binance (gql_api/symbols_cli.py)
criptoren candles import FILE --symbol S --interval I   load a candle CSV for backtests
criptoren sweep       backtest a grid of channel parameters in parallel
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from types import FrameType
from typing import TYPE_CHECKING, TextIO

from domain import commands as cmds
from domain.adapters.config import Settings
from domain.errors import DomainError
from domain.services import auth
from domain.services.auth import Credentials
from gql_api import backtest_cli, candles_cli, symbols_cli

if TYPE_CHECKING:
    from domain.adapters.bootstrap import App

log = logging.getLogger("criptoren")


def _setup_logging(settings: Settings, quiet: bool = False) -> None:
    from domain.adapters.bootstrap import configure_logging

    configure_logging(settings, quiet=quiet)  # text or JSON (LOG_FORMAT), secrets masked


def cmd_migrate(settings: Settings) -> None:
    """Upgrade the schema, and make sure the base symbols (BTCUSDT, ETHUSDT) exist: a fresh
    deployment can create strategies before a worker has synced the symbols from Binance (or where
    it cannot reach Binance). Idempotent."""
    from domain.adapters.bootstrap import open_database, resolve_database_url, seed, upgrade_to_head

    upgrade_to_head(resolve_database_url(settings))

    async def base_symbols() -> list[str]:
        db = open_database(settings)
        try:
            return [s.symbol for s in await seed.seed_symbols(db.uow)]
        finally:
            await db.close()

    added = asyncio.run(base_symbols())
    log.info("Database schema is up to date%s.", f"; symbols added: {', '.join(added)}" if added else "")


async def _seed(settings: Settings, only_if_empty: bool) -> tuple[Credentials | None, str | None]:
    """Load the demo (into an empty database only, with `only_if_empty`). Returns the demo client's
    new credentials when it was loaded now, and the demo client's name when it exists."""
    from domain.adapters.bootstrap import bootstrap, seed

    app = bootstrap(settings)
    try:
        has_clients = False
        if only_if_empty:
            async with app.uow() as uow:
                has_clients = await uow.clients.exists()
        if has_clients:
            await seed.seed_symbols(app.uow)
        loaded = False if has_clients else await seed.seed_demo(app.uow, app.exchange)
        log.info("Demo data %s.", "loaded" if loaded else "already present (nothing changed)")
        async with app.uow() as uow:
            demo = await uow.clients.get_by_name(seed.DEMO_CLIENT)
        if not loaded or demo is None or demo.id is None:
            return None, None if demo is None else demo.name
        # The demo client needs credentials to log in: new ones, shown once.
        credentials = await auth.issue_credentials(cmds.IssueCredentials(demo.id), app.uow(), datetime.now(UTC))
        return credentials, demo.name
    finally:
        await app.close()


def cmd_seed_demo(settings: Settings, only_if_empty: bool = False) -> None:
    credentials, name = asyncio.run(_seed(settings, only_if_empty))
    if credentials is not None and name is not None:
        _print_credentials(name, credentials)


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


def _read_secret(prompt: str) -> str:
    """A secret from the terminal (not echoed), or the first line of stdin when piped."""
    if sys.stdin.isatty():
        import getpass

        return getpass.getpass(prompt)
    return sys.stdin.readline().strip()


async def _exchange_keys(app: App, action: str, name: str, api_key: str | None) -> None:
    from domain.services import exchange_keys

    client = await auth.find_client(app.uow(), name)
    assert client.id is not None
    if action == "clear-exchange-keys":
        keys = await exchange_keys.clear_exchange_keys(cmds.ClearExchangeKeys(client.id), app.uow())
    else:
        key = api_key or _read_secret("Binance API key: ")
        secret = _read_secret("Binance API secret (not shown): ")
        keys = await exchange_keys.set_exchange_keys(
            cmds.SetExchangeKeys(client.id, key, secret), app.uow(), app.secret_box
        )
    trades_on = "Binance" if keys.has_keys and app.settings.exchange == "binance" else "paper"
    log.info("Client %r: exchange key %s; trades on %s.", client.name, keys.api_key_hint or "none", trades_on)


async def _client(settings: Settings, action: str, name: str, api_key: str | None = None) -> None:
    from domain.adapters.bootstrap import bootstrap

    app = bootstrap(settings)
    try:
        if action in ("set-exchange-keys", "clear-exchange-keys"):
            await _exchange_keys(app, action, name, api_key)
        elif action == "create":
            client, credentials = await auth.create_client(
                cmds.CreateClientWithCredentials(name), app.uow(), datetime.now(UTC)
            )
            _print_credentials(client.name, credentials)
        else:
            await _issue_credentials(app, name)
    finally:
        await app.close()


def cmd_client(settings: Settings, action: str, name: str, api_key: str | None = None) -> None:
    try:
        asyncio.run(_client(settings, action, name, api_key))
    except DomainError as e:
        log.error("%s", e.message)
        raise SystemExit(1) from None


def cmd_serve(
    settings: Settings,
    *,
    quiet: bool = False,
    on_started: Callable[[App], Awaitable[None]] | None = None,
    on_exit_signal: Callable[[], None] | None = None,
) -> None:
    """Serve the API. `quiet`: uvicorn's start and stop lines and access log left out (`up`)."""
    from gql_api.app import create_app
    from gql_api.server import serve

    app = create_app(settings)
    if not quiet:
        log.info("GraphQL API and GraphiQL on http://%s:%s/graphql", settings.host, settings.port)

    async def started() -> None:
        if on_started is not None:
            await on_started(app.state.criptoren)

    level = "warning" if quiet else settings.log_level.lower()
    serve(app, settings.host, settings.port, level, on_started=started, on_exit_signal=on_exit_signal)


WORKER_COMMAND = [sys.executable, "-m", "workers"]


def cmd_worker(settings: Settings) -> None:
    """The worker is a process of its own (`python -m workers`): the API's code never imports the
    workers' (a test keeps the two apart)."""
    os.execv(WORKER_COMMAND[0], WORKER_COMMAND)  # noqa: S606 - our own interpreter, fixed arguments


class _Terminated(Exception):
    """SIGTERM on `criptoren up`: unwind as Ctrl+C does (the worker stopped first)."""


def _terminated(signum: int, frame: FrameType | None) -> None:
    raise _Terminated


def cmd_up(settings: Settings, verbose: bool = False) -> None:
    """Everything on one machine: migrate, seed an empty database, start a worker process (started
    again whenever it exits, gql_api/up.py), serve the API in this one, and end the start-up output
    with a summary. The embedded PostgreSQL/Redis (when used) live in this process; the worker
    reaches them through the URLs exported to its environment. Ctrl+C (or SIGTERM) stops the API,
    then the worker, and prints one line."""
    from domain.adapters.bootstrap import debugging, resolve_redis_url
    from gql_api import up

    quiet = not verbose and not debugging(settings)
    where = up.Where.of(settings)
    worker: up.WorkerProcess | None = None
    # uvicorn stops on SIGTERM, then raises it again: it must unwind this process (stopping the
    # worker) rather than kill it on the spot.
    signal.signal(signal.SIGTERM, _terminated)
    stopped_by: int | None = None
    try:
        cmd_migrate(settings)
        credentials, client_name = asyncio.run(_seed(settings, only_if_empty=True))
        if not settings.is_prod:
            # GraphiQL works offline on its pinned files: installed on the first start (npm).
            from gql_api.web import INSTALL_HINT, install_graphiql_assets

            missing = install_graphiql_assets()
            if missing:
                log.warning("GraphiQL's browser files are not installed (%s): %s.", missing, INSTALL_HINT)
        resolve_redis_url(settings)
        worker = up.WorkerProcess(WORKER_COMMAND + (["--quiet"] if quiet else []))
        worker.start()

        async def announce(app: App) -> None:
            ready = await up.wait_for_worker(app, within=20.0)
            sys.stdout.write(up.summary(settings, where, credentials, client_name, worker_ready=ready))
            sys.stdout.flush()

        cmd_serve(settings, quiet=quiet, on_started=announce, on_exit_signal=worker.stopping)
    except KeyboardInterrupt:
        stopped_by = signal.SIGINT
    except _Terminated:
        stopped_by = signal.SIGTERM
    finally:
        if worker is not None:
            worker.stop()
    sys.stdout.write("Criptoren stopped (the API and the worker).\n")
    sys.stdout.flush()
    if stopped_by is not None:
        raise SystemExit(128 + stopped_by)


async def _pause(settings: Settings, resume: bool, name: str | None, cancel_scheduled: bool) -> None:
    from domain import audit
    from domain.adapters.bootstrap import bootstrap
    from domain.services import trading_pause

    app = bootstrap(settings)
    try:
        if name is None:
            ids = await trading_pause.all_client_ids(app.uow())
        else:
            client = await auth.find_client(app.uow(), name)
            assert client.id is not None
            ids = [client.id]
        for client_id in ids:
            if resume:
                status = await trading_pause.resume_trading(cmds.ResumeTrading(client_id), app.uow)
            else:
                cmd = cmds.PauseTrading(client_id, cancel_scheduled)
                status = await trading_pause.pause_trading(cmd, app.uow, app.exchange)
            mutation = "cli:resume" if resume else "cli:pause"
            arguments = {} if resume else {"cancelScheduled": cancel_scheduled}
            await audit.record(
                app.uow(), mutation, arguments, client_id, datetime.now(UTC),
                result={"type": "TradingStatus", "paused": status.paused, "sellsHeld": status.sells_held},
            )  # fmt: skip
            detail = ""
            if status.cancelled_schedules:
                detail = f", {len(status.cancelled_schedules)} scheduled sells cancelled"
            if status.not_cancelled:
                detail += f", {len(status.not_cancelled)} not cancelled: {status.not_cancelled}"
            log.info("Client %s: trading %s%s.", client_id, "paused" if status.paused else "active", detail)
        if not ids:
            log.info("No clients.")
    finally:
        await app.close()


def cmd_pause(settings: Settings, resume: bool, name: str | None, cancel_scheduled: bool = False) -> None:
    try:
        asyncio.run(_pause(settings, resume, name, cancel_scheduled))
    except DomainError as e:
        log.error("%s", e.message)
        raise SystemExit(1) from None


def cmd_backup(settings: Settings) -> None:
    from domain.adapters.bootstrap import backups, resolve_database_url

    try:
        path = asyncio.run(backups.backup(resolve_database_url(settings), settings.backups_path, settings.backup_keep))
    except backups.BackupError as e:
        log.error("%s", e)
        raise SystemExit(1) from None
    sys.stdout.write(f"{path}\n")


def cmd_restore(settings: Settings, file: str, force: bool) -> None:
    from pathlib import Path

    from domain.adapters.bootstrap import backups, resolve_database_url

    try:
        asyncio.run(backups.restore(resolve_database_url(settings), Path(file), force=force))
    except backups.BackupError as e:
        log.error("%s", e)
        raise SystemExit(1) from None
    log.info("Restored %s. Run `criptoren migrate` if the backup comes from an older version.", file)


async def _export_trades(
    settings: Settings, name: str, start: str | None, end: str | None, strategy_id: int | None, out: TextIO
) -> int:
    from domain import views
    from domain.adapters.bootstrap import open_database
    from gql_api.export import csv_chunks, parse_time

    database = open_database(settings)
    try:
        client = await auth.find_client(database.uow(), name)
        assert client.id is not None
        export = views.TradeExport(client.id, parse_time(start, "from"), parse_time(end, "to"), strategy_id)
        async with database.uow() as uow:
            await views.check_trade_export(uow, export, None)
        lines = 0
        async for chunk in csv_chunks(database.uow, export):
            out.write(chunk)
            lines += chunk.count("\r\n")
        return lines - 1  # the header
    finally:
        await database.close()


def cmd_export(
    settings: Settings, name: str, start: str | None, end: str | None, strategy_id: int | None, output: str | None
) -> None:
    """`criptoren export trades`: the same CSV as `GET /export/trades.csv`, to a file or stdout."""
    try:
        if output:
            with open(output, "w", encoding="utf-8", newline="") as out:
                rows = asyncio.run(_export_trades(settings, name, start, end, strategy_id, out))
            log.info("%d trades of client %r written to %s.", rows, name, output)
        else:
            asyncio.run(_export_trades(settings, name, start, end, strategy_id, sys.stdout))
            sys.stdout.flush()
    except DomainError as e:
        if output and os.path.exists(output):
            os.remove(output)  # nothing half-written is left behind
        log.error("%s", e.message)
        raise SystemExit(1) from None


def cmd_schema(settings: Settings) -> None:
    from gql_api.schema import sdl

    sys.stdout.write(sdl())


# Each runs with the settings alone (its other parameters have defaults, or are given by `_run`).
COMMANDS: dict[str, tuple[Callable[[Settings], None], str]] = {
    "up": (
        cmd_up,
        "migrate, seed the demo into an empty database, run a worker (restarted if it dies) and serve the API",
    ),
    "serve": (cmd_serve, "serve the GraphQL API (uvicorn)"),
    "worker": (
        cmd_worker,
        "run a worker: market streams and the strategy engine, order updates, cron jobs (scale out with more)",
    ),
    "migrate": (cmd_migrate, "upgrade the database to the latest schema"),
    "seed-demo": (cmd_seed_demo, "load the plan's demo data (idempotent)"),
    "schema": (cmd_schema, "print the GraphQL schema (SDL)"),
    "backup": (cmd_backup, "back the database up into BACKUP_DIR (pg_dump, compressed; the newest BACKUP_KEEP kept)"),
}
CLIENT_ACTIONS = {
    "create": "create a client; prints its API key and secret (shown once)",
    "rotate": "give a client a new API key and secret (the old ones stop working, its sessions end)",
    "set-exchange-keys": "store the client's own Binance API key and secret (encrypted): it trades on Binance",
    "clear-exchange-keys": "forget the client's Binance keys: it trades on paper again",
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="criptoren", description="Channel-trading server for Binance spot.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        if name in ("up", "serve"):
            p.add_argument("--host", help="listen address (default 127.0.0.1, or HOST)")
            p.add_argument("--port", type=int, help="listen port (default 8000, or PORT)")
        if name == "up":
            p.add_argument(
                "--verbose",
                action="store_true",
                help="also show the embedded servers', Alembic's, uvicorn's and arq's own lines (as LOG_LEVEL=DEBUG)",
            )
    client = sub.add_parser("client", help="manage clients and their API credentials")
    actions = client.add_subparsers(dest="action", required=True)
    for action, help_text in CLIENT_ACTIONS.items():
        action_parser = actions.add_parser(action, help=help_text)
        action_parser.add_argument("--name", required=True, help="the client's name")
        if action == "set-exchange-keys":
            action_parser.add_argument("--api-key", help="the Binance API key (asked when omitted)")
    for name, help_text in (
        ("pause", "emergency stop: no new entries for a client (or every client) until `criptoren resume`"),
        ("resume", "end a trading pause"),
    ):
        p = sub.add_parser(name, help=help_text)
        who = p.add_mutually_exclusive_group(required=True)
        who.add_argument("--client", dest="client_name", help="the client's name")
        who.add_argument("--all", action="store_true", help="every client")
        if name == "pause":
            p.add_argument(
                "--cancel-scheduled",
                action="store_true",
                help="also cancel the scheduled sells and hold automatic exits until resume",
            )
    restore = sub.add_parser("restore", help="restore a backup made by `criptoren backup`")
    restore.add_argument("file", help="the backup file (.dump)")
    restore.add_argument("--force", action="store_true", help="replace the contents of a database that is not empty")
    export = sub.add_parser("export", help="export data as CSV")
    exports = export.add_subparsers(dest="what", required=True)
    trades = exports.add_parser("trades", help="a client's fills as CSV, oldest first (columns: see the README)")
    trades.add_argument("--client", dest="client_name", required=True, help="the client's name")
    trades.add_argument("--from", dest="start", help="first day or time (ISO 8601, UTC unless it says), included")
    trades.add_argument("--to", dest="end", help="last day or time (ISO 8601, UTC unless it says), excluded")
    trades.add_argument("--strategy-id", type=int, help="only this strategy's trades")
    trades.add_argument("--output", "-o", help="write to this file (default: standard output)")
    backtest_cli.add_parsers(sub)
    symbols_cli.add_parsers(sub)
    candles_cli.add_parsers(sub)
    args = parser.parse_args(argv)
    settings = Settings()
    if getattr(args, "host", None):
        settings.host = args.host
    if getattr(args, "port", None):
        settings.port = args.port
    verbose = getattr(args, "verbose", False)
    _setup_logging(settings, quiet=args.command == "up" and not verbose)
    try:
        _run(args, settings)
    except KeyboardInterrupt:
        sys.stderr.write("Interrupted.\n")
        raise SystemExit(128 + signal.SIGINT) from None


def _run(args: argparse.Namespace, settings: Settings) -> None:
    if args.command == "up":
        cmd_up(settings, verbose=args.verbose)
        return
    if args.command == "client":
        cmd_client(settings, args.action, args.name, getattr(args, "api_key", None))
        return
    if args.command in ("pause", "resume"):
        cmd_pause(settings, args.command == "resume", args.client_name, getattr(args, "cancel_scheduled", False))
        return
    if args.command == "restore":
        cmd_restore(settings, args.file, args.force)
        return
    if args.command in symbols_cli.COMMANDS:
        symbols_cli.run(args, settings)
        return
    if args.command in candles_cli.COMMANDS:
        candles_cli.run(args, settings)
        return
    if args.command == "export":
        cmd_export(settings, args.client_name, args.start, args.end, args.strategy_id, args.output)
        return
    if args.command in backtest_cli.COMMANDS:
        backtest_cli.run(args, settings)
        return
    COMMANDS[args.command][0](settings)


if __name__ == "__main__":
    main()
