"""The browser side of the API: the dashboard at `/` and GraphiQL served from this server.

- The dashboard is the project's own HTML, CSS and ES modules under `gql_api/static/` (no build
  step, no CDN), served with Starlette's StaticFiles under `/static`. The page at `/` says which
  optional operations the schema has (`<meta name="criptoren-features">`), so the page shows only
  what this server can do (the emergency stop, backtests) without needing introspection, which is
  off in production.
- GraphiQL's assets (React, ReactDOM, GraphiQL's bundle and stylesheet) come from the npm registry at
  install time (`scripts/setup`: `npm ci` in `gql_api/graphiql/`, whose `node_modules` is not in the
  repository) and are served under `/graphiql/`; the GraphiQL page at `GET /graphql` points at them,
  so it works without internet access. `criptoren up` installs them on its first start when npm is
  there (`install_graphiql_assets`). When they are missing, `GET /graphql` says so on the page itself
  (and how to install them), with a link to Strawberry's own page, which loads them from a CDN; the
  dashboard marks its GraphiQL link the same way.
"""

from __future__ import annotations

import html
import logging
import os
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

if TYPE_CHECKING:
    import strawberry
    from starlette.staticfiles import PathLike

log = logging.getLogger("criptoren.api")

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
GRAPHIQL_MODULES = HERE / "graphiql" / "node_modules"
# What the GraphiQL page loads, by the name it is served under (/graphiql/<name>).
GRAPHIQL_ASSETS = {
    "react.js": "react/umd/react.production.min.js",
    "react-dom.js": "react-dom/umd/react-dom.production.min.js",
    "graphiql.js": "graphiql/graphiql.min.js",
    "graphiql.css": "graphiql/graphiql.min.css",
}
# Operations the dashboard uses only when the schema has them.
OPTIONAL_FIELDS = {
    "Query": ("backtest",),
    "Mutation": ("pauseTrading", "resumeTrading"),
    "Client": ("tradingPausedAt",),  # whether the emergency stop is on
}

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
# The dashboard runs only its own scripts and talks only to this server (HTTP and WebSocket).
DASHBOARD_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


class StaticAssets(StaticFiles):
    """StaticFiles whose answers are revalidated (ETag) on every load: a new version of the
    dashboard is picked up at once."""

    def file_response(
        self, full_path: PathLike, stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(SECURITY_HEADERS)
        return response


def schema_features(schema: strawberry.Schema) -> list[str]:
    """The optional operations this schema has (see OPTIONAL_FIELDS)."""
    found = []
    for type_name, fields in OPTIONAL_FIELDS.items():
        graphql_type = schema._schema.type_map.get(type_name)
        present = getattr(graphql_type, "fields", {}) or {}
        found += [f for f in fields if f in present]
    return found


def _dashboard_html(features: tuple[str, ...]) -> str:
    # Not cached as a whole: GraphiQL's assets may be installed while the server runs.
    present = ("graphiql",) if graphiql_assets_present() else ()
    page = _dashboard_template()
    return page.replace("__FEATURES__", html.escape(",".join(features + present), quote=True))


@cache
def _dashboard_template() -> str:
    return (STATIC / "index.html").read_text(encoding="utf-8")


def graphiql_assets_present() -> bool:
    return all((GRAPHIQL_MODULES / path).is_file() for path in GRAPHIQL_ASSETS.values())


INSTALL_HINT = "install Node.js and npm, then run scripts/setup graphiql (or restart criptoren up)"


def install_graphiql_assets() -> str | None:
    """Install GraphiQL's pinned assets (`npm ci` in gql_api/graphiql, from its package-lock.json) when
    they are missing. Returns None when they are there, else why they are not (no npm, npm failed)."""
    if graphiql_assets_present():
        return None
    npm = shutil.which("npm")
    if npm is None or not (HERE / "graphiql" / "package-lock.json").is_file():
        return "npm was not found"
    log.info("Installing GraphiQL's browser assets from the npm registry (once, into %s)…", GRAPHIQL_MODULES)
    try:
        subprocess.run(  # noqa: S603 - npm found on PATH, fixed arguments
            [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"],
            cwd=HERE / "graphiql", check=True, capture_output=True, timeout=300,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as e:
        detail = getattr(e, "stderr", b"") or b""
        return f"npm ci failed: {detail.decode(errors='replace').strip()[-300:] or e}"
    return None if graphiql_assets_present() else "npm ci did not install them"


_warned: list[bool] = []


def graphiql_page(cdn: bool = False) -> HTMLResponse | None:
    """The GraphiQL page on local assets. When they are not installed: a page that says so and how to
    install them (a warning is logged once), or — `cdn`, the user's choice — None: Strawberry's page,
    which loads them from a CDN and is blank without internet access."""
    if graphiql_assets_present():
        page = (STATIC / "graphiql.html").read_text(encoding="utf-8")
        return HTMLResponse(page, headers=SECURITY_HEADERS)
    if not _warned:
        _warned.append(True)
        log.warning("GraphiQL's assets are not installed (%s): %s.", GRAPHIQL_MODULES, INSTALL_HINT)
    if cdn:
        return None
    page = (STATIC / "graphiql-missing.html").read_text(encoding="utf-8").replace("__HINT__", html.escape(INSTALL_HINT))
    return HTMLResponse(page, headers={**SECURITY_HEADERS, "Content-Security-Policy": DASHBOARD_CSP})


def routes(schema: strawberry.Schema, graphiql: bool = True) -> list[BaseRoute]:
    """`/` (the dashboard), `/static/*` (its files) and, unless `graphiql` is off (production),
    `/graphiql/*` (GraphiQL's assets)."""
    features = tuple(schema_features(schema))

    async def dashboard(request: Request) -> HTMLResponse:
        headers = {**SECURITY_HEADERS, "Content-Security-Policy": DASHBOARD_CSP, "X-Frame-Options": "DENY"}
        return HTMLResponse(_dashboard_html(features), headers=headers)

    async def graphiql_asset(request: Request) -> Response:
        path = GRAPHIQL_ASSETS.get(request.path_params["name"])
        if path is None or not (GRAPHIQL_MODULES / path).is_file():
            return PlainTextResponse("Not found", status_code=404)
        headers = {**SECURITY_HEADERS, "Cache-Control": "public, max-age=86400"}
        return FileResponse(GRAPHIQL_MODULES / path, headers=headers)

    served: list[BaseRoute] = [Route("/", dashboard), Mount("/static", StaticAssets(directory=STATIC), name="static")]
    if graphiql:
        served.append(Route("/graphiql/{name}", graphiql_asset))
    return served
