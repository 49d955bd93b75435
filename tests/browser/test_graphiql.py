"""GraphiQL in headless Chromium with no way out of 127.0.0.1: its assets come from this server.
A query runs with the Bearer token of the headers editor, and a subscription gets events over
WebSocket with the same token (sent in `connection_init`)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from playwright.async_api import expect

from domain.adapters.bootstrap import App
from domain.adapters.seed import seed_demo
from gql_api import web
from gql_api.auth import access_tokens
from tests.browser.conftest import log_in
from tests.e2e import servers

QUERY_EDITOR = ".graphiql-query-editor .CodeMirror"
HEADERS_EDITOR = ".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror"
RESPONSE = ".graphiql-response .CodeMirror"


async def set_editor(page: Any, selector: str, text: str) -> None:
    await page.locator(selector).wait_for()
    await page.evaluate("([s, t]) => document.querySelector(s).CodeMirror.setValue(t)", [selector, text])
    await page.wait_for_timeout(700)  # GraphiQL parses the editors' contents after a debounce


async def editor_text(page: Any, selector: str) -> str:
    return str(await page.evaluate("(s) => document.querySelector(s).CodeMirror.getValue()", selector))


async def response(page: Any) -> str:
    return await editor_text(page, RESPONSE)


async def test_graphiql_runs_a_query_and_a_subscription_offline(db: App, page: Any) -> None:
    if not web.graphiql_assets_present():
        pytest.skip("GraphiQL's assets are not installed (scripts/setup runs npm ci in gql_api/graphiql)")
    await seed_demo(db.uow, db.exchange)
    token, _ = access_tokens(db.settings).issue(1)
    async with servers.api_server(db) as host:
        await page.goto(f"http://{host}/graphql")
        await expect(page.locator(QUERY_EDITOR)).to_be_visible()
        await page.get_by_role("button", name="Headers", exact=True).click()
        await set_editor(page, HEADERS_EDITOR, json.dumps({"Authorization": f"Bearer {token}"}))

        await set_editor(page, QUERY_EDITOR, "{ me { name } strategies { nodes { name state } } }")
        await page.click(".graphiql-execute-button")
        await expect(page.locator(".graphiql-response")).to_contain_text("TradeBot XYZ")
        body = json.loads(await response(page))
        assert body["data"]["strategies"]["nodes"] == [{"name": "Canal H4 BTC/USDT", "state": "ARMED"}]

        # A subscription that needs the token: GraphiQL sends the headers in connection_init.
        await set_editor(page, QUERY_EDITOR, "subscription { positionEvents { type message } }")
        await page.click(".graphiql-execute-button")
        mutation = 'mutation($on: Boolean!) { setStrategyActive(id: "1", isActive: $on) { state } }'
        async with httpx.AsyncClient(base_url=f"http://{host}", headers={"Authorization": f"Bearer {token}"}) as http:
            for attempt in range(40):  # until the subscription is registered
                variables = {"on": attempt % 2 == 1}
                answer = await http.post("/graphql", json={"query": mutation, "variables": variables})
                assert "errors" not in answer.json()
                await asyncio.sleep(0.25)
                if "strategy_" in await response(page):
                    break
        event = json.loads(await response(page))["data"]["positionEvents"]
        assert event["type"] in {"strategy_deactivated", "strategy_activated"}
        await page.click(".graphiql-execute-button")  # stop the subscription
    assert page.external_requests == []
    assert page.errors == []


async def test_graphiql_opened_from_the_dashboard_has_the_token_in_its_headers(db: App, page: Any) -> None:
    if not web.graphiql_assets_present():
        pytest.skip("GraphiQL's assets are not installed (scripts/setup runs npm ci in gql_api/graphiql)")
    await seed_demo(db.uow, db.exchange)
    async with servers.api_server(db) as host:
        await log_in(page, f"http://{host}", db)
        await page.click("a[href='/graphql']")
        await page.locator(HEADERS_EDITOR).wait_for()
        headers = json.loads(await editor_text(page, HEADERS_EDITOR))
        token = headers["Authorization"].removeprefix("Bearer ")
        assert access_tokens(db.settings).verify(token) == 1
