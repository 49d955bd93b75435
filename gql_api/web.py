"""The browser side of the API: the dashboard at `/` and GraphiQL served from this server.

- The dashboard is the project's own HTML, CSS and ES modules under `gql_api/static/` (no build
  step, no CDN), served with Starlette's StaticFiles under `/static`. The page at `/` says which
  optional operations the schema has (`<meta name="criptoren-features">`), so the page shows only
  what this server can do (the emergency stop, backtests) without needing introspection, which is
  off in production.
- GraphiQL's assets (React, ReactDOM, GraphiQL's bundle and stylesheet) come from the npm registry at
  install time (`scripts/setup`: `npm ci` in `gql_api/graphiql/`, whose `node_modules` is not in the
  repository) and are served under `/graphiql/`; the GraphiQL page at `GET /graphql` points at them,
  so it works without internet access. When they are missing, Strawberry's own page (which loads
  them from a CDN) is served instead, and a warning is logged once.
"""

from __future__ import annotations

import html
import logging
from functools import cache
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

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

    def file_response(self, full_path: Any, stat_result: Any, scope: Scope, status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(SECURITY_HEADERS)
        return response


def schema_features(schema: Any) -> list[str]:
    """The optional operations this schema has (see OPTIONAL_FIELDS)."""
    found = []
    for type_name, fields in OPTIONAL_FIELDS.items():
        graphql_type = schema._schema.type_map.get(type_name)
        present = getattr(graphql_type, "fields", {}) or {}
        found += [f for f in fields if f in present]
    return found


@cache
def _dashboard_html(features: tuple[str, ...]) -> str:
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    return page.replace("__FEATURES__", html.escape(",".join(features), quote=True))


def graphiql_assets_present() -> bool:
    return all((GRAPHIQL_MODULES / path).is_file() for path in GRAPHIQL_ASSETS.values())


_warned: list[bool] = []


def graphiql_page() -> HTMLResponse | None:
    """The GraphiQL page on local assets; None (and a warning, once) when they are not installed."""
    if not graphiql_assets_present():
        if not _warned:
            _warned.append(True)
            log.warning(
                "GraphiQL's assets are not installed (%s): serving the page that loads them from a CDN, "
                "blank without internet access. Run scripts/setup to install them.",
                GRAPHIQL_MODULES,
            )
        return None
    page = (STATIC / "graphiql.html").read_text(encoding="utf-8")
    return HTMLResponse(page, headers=SECURITY_HEADERS)


def routes(schema: Any, graphiql: bool = True) -> list[BaseRoute]:
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
