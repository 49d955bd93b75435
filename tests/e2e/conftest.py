"""An HTTP client on the ASGI app, wired to the test database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from domain.adapters.bootstrap import App
from gql_api.app import create_app


class GraphQLClient:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def execute(self, query: str, **variables: Any) -> dict[str, Any]:
        response = await self.http.post("/graphql", json={"query": query, "variables": variables})
        assert response.status_code == 200, response.text
        return response.json()

    async def data(self, query: str, **variables: Any) -> dict[str, Any]:
        body = await self.execute(query, **variables)
        assert "errors" not in body, body["errors"]
        return body["data"]

    async def error(self, query: str, **variables: Any) -> dict[str, Any]:
        """The single error of a failing operation."""
        body = await self.execute(query, **variables)
        assert body.get("errors"), body
        return body["errors"][0]


@pytest.fixture
async def gql(db: App) -> AsyncIterator[GraphQLClient]:
    asgi = create_app(app=db)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://criptoren.test") as http:
        yield GraphQLClient(http)
