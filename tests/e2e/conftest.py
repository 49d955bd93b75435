"""An HTTP client on the ASGI app, wired to the test database, logged in as a client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from domain import commands as cmds
from domain.adapters.bootstrap import App, upgrade_to_head
from domain.services import auth
from gql_api.app import create_app
from tests import services

LOGIN = """
mutation($k: String!, $s: String!) {
  login(apiKey: $k, apiSecret: $s) { accessToken refreshToken accessTokenExpiresAt clientId }
}
"""


class GraphQLClient:
    """Posts GraphQL requests as client `client_id`: at its first request it gives that client new
    credentials and logs in through the `login` mutation. `client_id=None`: anonymous."""

    def __init__(self, http: httpx.AsyncClient, app: App, client_id: int | None = 1) -> None:
        self.http = http
        self.app = app
        self.client_id = client_id
        self.access_token: str | None = None
        self.refresh_token: str | None = None

    def as_client(self, client_id: int | None) -> GraphQLClient:
        """Another identity on the same HTTP client (None: anonymous)."""
        return GraphQLClient(self.http, self.app, client_id)

    async def login(self, api_key: str | None = None, api_secret: str | None = None) -> dict[str, Any]:
        """Log in with the given credentials, else with new ones of `client_id`."""
        if api_key is None or api_secret is None:
            assert self.client_id is not None
            credentials = await auth.issue_credentials(
                cmds.IssueCredentials(self.client_id), self.app.uow(), datetime.now(UTC)
            )
            api_key, api_secret = credentials.api_key, credentials.api_secret
        response = await self.post(LOGIN, {"k": api_key, "s": api_secret}, token=None)
        body = response.json()
        assert "errors" not in body, body
        session: dict[str, Any] = body["data"]["login"]
        self.access_token, self.refresh_token = session["accessToken"], session["refreshToken"]
        return session

    async def post(
        self, query: str, variables: dict[str, Any] | None = None, *, token: str | None = None
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return await self.http.post("/graphql", json={"query": query, "variables": variables or {}}, headers=headers)

    async def execute(self, query: str, **variables: Any) -> dict[str, Any]:
        if self.client_id is not None and self.access_token is None:
            await self.login()
        response = await self.post(query, variables, token=self.access_token)
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
async def http(db: App) -> AsyncIterator[httpx.AsyncClient]:
    asgi = create_app(app=db)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://criptoren.test") as client:
        yield client


@pytest.fixture
async def gql(db: App, http: httpx.AsyncClient) -> GraphQLClient:
    """Client 1 (the demo client, once a test seeded it), logged in at its first request."""
    return GraphQLClient(http, db, client_id=1)


@pytest.fixture
def empty_database() -> Iterator[tuple[str, str]]:
    """A database of the test's own, without tables, and the admin URL of its server: for tests
    whose processes own a whole database (`criptoren up` on a first start, a PostgreSQL outage)."""
    admin = services.server_url()
    url = services.create_database(admin)
    try:
        yield admin, url
    finally:
        services.drop_database(admin, url)


@pytest.fixture
def fresh_database(empty_database: tuple[str, str]) -> tuple[str, str]:
    """`empty_database`, migrated."""
    upgrade_to_head(empty_database[1])
    return empty_database
