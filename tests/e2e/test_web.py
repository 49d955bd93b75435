"""What the API serves to browsers (gql_api/web.py): the dashboard at /, its static files, and
GraphiQL on local assets, with Strawberry's CDN page as the fallback. The pages themselves are
exercised in Chromium by tests/browser."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import httpx
import pytest

from domain.adapters.bootstrap import App
from gql_api import web
from gql_api.app import create_app
from gql_api.schema import schema

HTML = {"Accept": "text/html"}


def client(app: App) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(app=app)), base_url="http://criptoren.test")


async def test_the_dashboard_is_served_at_the_root_with_its_files(db: App, http: httpx.AsyncClient) -> None:
    page = await http.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/static/js/app.js">' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    # The optional operations this schema has, for the page to show or hide their controls.
    content = page.text.split('name="criptoren-features" content="')[1].split('"')[0]
    features = [name for name in content.split(",") if name]
    assert [f for f in features if f != "graphiql"] == web.schema_features(schema)
    for path, kind in (
        ("/static/js/app.js", "javascript"),
        ("/static/js/ws.js", "javascript"),
        ("/static/js/chart.js", "javascript"),
        ("/static/style.css", "text/css"),
    ):
        response = await http.get(path)
        assert response.status_code == 200 and kind in response.headers["content-type"], path
        assert response.headers["cache-control"] == "no-cache"
    assert (await http.get("/static/../app.py")).status_code == 404
    assert (await http.get("/static/nothing.js")).status_code == 404


async def test_graphiql_is_served_from_local_assets(db: App, http: httpx.AsyncClient) -> None:
    if not web.graphiql_assets_present():
        pytest.skip("GraphiQL's assets are not installed (scripts/setup runs npm ci in gql_api/graphiql)")
    page = await http.get("/graphql", headers=HTML)
    assert page.status_code == 200
    assert '<script src="/graphiql/graphiql.js">' in page.text and "unpkg.com" not in page.text
    for name in web.GRAPHIQL_ASSETS:
        asset = await http.get(f"/graphiql/{name}")
        assert asset.status_code == 200 and len(asset.content) > 1000, name
    assert (await http.get("/graphiql/package.json")).status_code == 404  # only the four assets
    assert (await http.get("/graphql?query={__typename}")).json() == {"data": {"__typename": "Query"}}


async def test_without_local_assets_graphiql_says_so_on_the_page_and_the_dashboard(
    db: App, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 14: not a blank page: GET /graphql says the files are missing and how to install them,
    with the CDN page one click away; the dashboard's link says it too; the warning is logged once."""
    monkeypatch.setattr(web, "GRAPHIQL_MODULES", tmp_path / "missing")
    monkeypatch.setattr(web, "_warned", [])
    with caplog.at_level(logging.WARNING, logger="criptoren.api"):
        page = await http.get("/graphql", headers=HTML)
        again = await http.get("/graphql", headers=HTML)
    assert page.status_code == 200 and "not installed" in page.text and "scripts/setup graphiql" in page.text
    assert "unpkg.com" not in page.text and 'href="/graphql?cdn=1"' in page.text
    assert again.text == page.text
    warnings = [r.getMessage() for r in caplog.records if "GraphiQL's assets are not installed" in r.getMessage()]
    assert len(warnings) == 1 and "scripts/setup" in warnings[0]  # logged once
    cdn = await http.get("/graphql?cdn=1", headers=HTML)
    assert cdn.status_code == 200 and "unpkg.com/graphiql" in cdn.text
    assert (await http.get("/graphiql/graphiql.js")).status_code == 404
    dashboard = await http.get("/", headers=HTML)
    assert 'name="criptoren-features"' in dashboard.text
    features = dashboard.text.split('name="criptoren-features" content="')[1].split('"')[0].split(",")
    assert "graphiql" not in features


async def test_with_local_assets_the_dashboard_knows_graphiql_works(db: App, http: httpx.AsyncClient) -> None:
    if not web.graphiql_assets_present():
        pytest.skip("GraphiQL's assets are not installed (scripts/setup runs npm ci in gql_api/graphiql)")
    dashboard = await http.get("/", headers=HTML)
    assert "graphiql" in dashboard.text.split('name="criptoren-features" content="')[1].split('"')[0].split(",")


def test_install_graphiql_assets_reports_a_missing_npm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(web, "GRAPHIQL_MODULES", tmp_path / "missing")
    monkeypatch.setattr(web.shutil, "which", lambda name: None)
    assert web.install_graphiql_assets() == "npm was not found"


async def test_production_serves_the_dashboard_but_no_graphiql(db: App) -> None:
    prod = dataclasses.replace(db, settings=db.settings.model_copy(update={"criptoren_env": "prod"}))
    async with client(prod) as http:
        assert (await http.get("/graphql", headers=HTML)).status_code == 404
        assert (await http.get("/graphiql/graphiql.js")).status_code == 404
        assert (await http.get("/")).status_code == 200
        assert (await http.get("/static/js/app.js")).status_code == 200
