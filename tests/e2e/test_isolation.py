"""Per-client isolation, field by field: every query, mutation and subscription of the schema (taken
from introspection, so a new field cannot be forgotten) is called

- without a token: refused (UNAUTHENTICATED) unless public, and nothing changes;
- with client A's token on client B's ids: NOT_FOUND exactly as for a missing id, nothing changes;
- with an expired, forged or wrong-type token: refused like no token;
- with a refreshed token: works;

and a reused rotated refresh token revokes its family.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import websockets

from domain import commands as cmds
from domain import services
from domain.adapters.bootstrap import App
from domain.adapters.seed import seed_demo
from domain.channel import Channel
from domain.ports import Page
from domain.services import alerts, auth
from gql_api.auth import access_tokens
from gql_api.permissions import PUBLIC_FIELDS
from tests.e2e import servers
from tests.e2e.conftest import GraphQLClient
from tests.e2e.test_errors import snapshot


@dataclass
class Owner:
    """One client's objects and credentials."""

    client: int
    strategy: int
    open: int
    spare: int  # open too
    scheduled: int
    closed: int
    retired: int  # a second strategy, without positions: archivable
    api_key: str
    api_secret: str
    endpoint: int = 0  # a webhook alert endpoint
    delivery: int = 0  # one of its deliveries

    @property
    def positions(self) -> set[str]:
        return {str(p) for p in (self.open, self.spare, self.scheduled, self.closed)}


async def _owner(db: App, client_id: int, name: str) -> Owner:
    strategy = await services.create_strategy(
        cmds.CreateStrategy(client_id, "ETHUSDT", name, Channel(Decimal("2400"), Decimal("2800"))),
        db.uow(),
        db.exchange,
    )
    assert strategy.id is not None
    await services.allocate_capital(cmds.AllocateCapital(strategy.id, Decimal("1000")), db.uow(), db.exchange)
    db.price_book.set("ETHUSDT", Decimal("2450"))

    async def buy() -> int:
        p = await services.buy(cmds.Buy(strategy.id, quote_amount=Decimal("100")), db.uow(), db.exchange, db.prices)  # type: ignore[arg-type]
        assert p.id is not None
        return p.id

    open_id, spare_id, scheduled_id, closed_id = await buy(), await buy(), await buy(), await buy()
    await services.schedule_sell(cmds.ScheduleSell(scheduled_id), db.uow(), db.exchange)
    db.price_book.set("ETHUSDT", Decimal("2600"))
    await services.sell(cmds.Sell(closed_id), db.uow(), db.exchange, db.prices)  # a profit: withdrawable
    db.price_book.set("ETHUSDT", Decimal("2450"))
    retired = await services.create_strategy(
        cmds.CreateStrategy(client_id, "ETHUSDT", f"{name} retired", Channel(Decimal("2400"), Decimal("2800"))),
        db.uow(),
        db.exchange,
    )
    assert retired.id is not None
    credentials = await auth.issue_credentials(cmds.IssueCredentials(client_id), db.uow(), datetime.now(UTC))
    return Owner(
        client_id, strategy.id, open_id, spare_id, scheduled_id, closed_id, retired.id, credentials.api_key,
        credentials.api_secret,
    )  # fmt: skip


@dataclass
class World:
    a: Owner
    b: Owner


@pytest.fixture
async def world(db: App) -> World:
    """A = the demo client (1) with an ETH strategy; B = another client (2) with the same objects."""
    await seed_demo(db.uow, db.exchange)
    bob = await services.create_client(cmds.CreateClient("Bob"), db.uow())
    assert bob.id == 2
    world = World(await _owner(db, 1, "Alice ETH"), await _owner(db, 2, "Bob ETH"))
    for owner in (world.a, world.b):
        created = await alerts.create_webhook_endpoint(
            cmds.CreateWebhookEndpoint(owner.client, "http://127.0.0.1:9/hook", ("position_opened",)),
            db.uow(),
            db.secret_box,
            db.alert_transport,
        )
        assert created.endpoint.id is not None
        owner.endpoint = created.endpoint.id
    await alerts.dispatch_events(db.uow(), datetime.now(UTC))
    for owner in (world.a, world.b):
        (owner.delivery, *_) = [
            d.id for d in await alerts.list_deliveries(owner.client, owner.endpoint, Page(1), db.uow())
        ]
    return world


async def new_refresh_token(db: App, owner: Owner) -> str:
    session = await auth.login(cmds.Login(owner.api_key, owner.api_secret), db.uow(), datetime.now(UTC))
    return session.refresh_token


# Each field with a call on an owner's objects. `{…}` names an `Owner` attribute; "$refresh" is a
# refresh token of a new session of the owner.
CALLS: dict[str, tuple[str, dict[str, Any]]] = {
    "me": ("{ me { id } }", {}),
    "strategy": ("query($s: ID!) { strategy(id: $s) { id name } }", {"s": "{strategy}"}),
    "strategies": ("query($c: ID) { strategies(clientId: $c) { nodes { id } } }", {"c": "{client}"}),
    "position": ("query($p: ID!) { position(id: $p) { id } }", {"p": "{open}"}),
    "positions": ("query($s: ID) { positions(strategyId: $s) { nodes { id } } }", {"s": "{strategy}"}),
    "scheduledSells": ("{ scheduledSells { nodes { id } } }", {}),
    "trades": ("query($p: ID) { trades(positionId: $p) { nodes { id } } }", {"p": "{closed}"}),
    "orders": ("query($s: ID) { orders(strategyId: $s) { nodes { id status } } }", {"s": "{strategy}"}),
    "events": ("{ events(first: 100) { nodes { id strategyId } } }", {}),
    "capitalBalance": ("query($c: ID) { capitalBalance(clientId: $c) { principal } }", {"c": "{client}"}),
    "capitalBalances": ("query($c: ID) { capitalBalances(clientId: $c) { asset principal } }", {"c": "{client}"}),
    "profitReport": ("query($s: ID!) { profitReport(strategyId: $s) { closedPositions } }", {"s": "{strategy}"}),
    "positionsReport": ("{ positionsReport(days: 30) { open positions { id } } }", {}),
    "tradesReport": ('{ tradesReport(symbol: "ETHUSDT") { trades } }', {}),
    "priceHistory": ('{ priceHistory(symbol: "BTCUSDT", limit: 2) { close } }', {}),
    "currentPrice": ('{ currentPrice(symbol: "ETHUSDT") { price } }', {}),
    "symbols": ("{ symbols { symbol } }", {}),
    "backtest": (
        'query($s: ID!) { backtest(input: {strategyId: $s, interval: "4h"}) { summary { entries } } }',
        {"s": "{strategy}"},
    ),
    "login": (
        "mutation($k: String!, $s: String!) { login(apiKey: $k, apiSecret: $s) { clientId } }",
        {"k": "{api_key}", "s": "{api_secret}"},
    ),
    "refreshToken": ("mutation($t: String!) { refreshToken(token: $t) { clientId } }", {"t": "$refresh"}),
    "createStrategy": (
        "mutation($i: CreateStrategyInput!) { createStrategy(input: $i) { id } }",
        {"i": {"clientId": "{client}", "symbol": "ETHUSDT", "name": "new", "basePrice": "2000", "topPrice": "2600"}},
    ),
    "updateStrategy": (
        'mutation($s: ID!) { updateStrategy(id: $s, input: {topPrice: "2900"}) { id } }',
        {"s": "{strategy}"},
    ),
    "setStrategyActive": (
        "mutation($s: ID!) { setStrategyActive(id: $s, isActive: false) { id } }",
        {"s": "{strategy}"},
    ),
    "allocateCapital": (
        'mutation($s: ID!) { allocateCapital(strategyId: $s, amount: "10") { id warnings } }',
        {"s": "{strategy}"},
    ),
    "withdrawCapital": (
        'mutation($s: ID!) { withdrawCapital(strategyId: $s, amount: "10") { id } }',
        {"s": "{strategy}"},
    ),
    "archiveStrategy": ("mutation($s: ID!) { archiveStrategy(id: $s) { id state } }", {"s": "{retired}"}),
    "withdrawProfit": (
        'mutation($s: ID!) { withdrawProfit(strategyId: $s, amount: "0.01") { id } }',
        {"s": "{strategy}"},
    ),
    "buy": ('mutation($s: ID!) { buy(strategyId: $s, quoteAmount: "50") { id } }', {"s": "{strategy}"}),
    "sell": ("mutation($p: ID!) { sell(positionId: $p, acceptLoss: true) { id } }", {"p": "{spare}"}),
    "scheduleSell": ("mutation($p: ID!) { scheduleSell(positionId: $p) { id } }", {"p": "{open}"}),
    "cancelScheduledSell": ("mutation($p: ID!) { cancelScheduledSell(id: $p) { id } }", {"p": "{scheduled}"}),
    "logout": ("mutation($t: String!) { logout(refreshToken: $t) }", {"t": "$refresh"}),
    "setExchangeKeys": (
        "mutation($k: String!, $s: String!) { setExchangeKeys(apiKey: $k, apiSecret: $s) { hasKeys } }",
        {"k": "binance-key-0123456789abcdef", "s": "binance-secret-0123456789abcdef"},
    ),
    "clearExchangeKeys": ("mutation { clearExchangeKeys { hasKeys } }", {}),
    # Pause, then resume (in this order: a paused client's buys are refused).
    "pauseTrading": ("mutation($c: ID) { pauseTrading(clientId: $c) { paused } }", {"c": "{client}"}),
    "resumeTrading": ("mutation($c: ID) { resumeTrading(clientId: $c) { paused } }", {"c": "{client}"}),
    # Alerts (issue 15): the endpoint is deleted last.
    "alertEndpoints": ("{ alertEndpoints { id url } }", {}),
    "alertEventTypes": ("{ alertEventTypes }", {}),
    "alertDefaultEventTypes": ("{ alertDefaultEventTypes }", {}),
    "alertDeliveries": (
        "query($p: ID!) { alertDeliveries(endpointId: $p) { nodes { id status } } }",
        {"p": "{endpoint}"},
    ),
    "createWebhookEndpoint": (
        'mutation { createWebhookEndpoint(url: "http://127.0.0.1:9/other") { endpoint { id } signingSecret } }',
        {},
    ),
    "createTelegramEndpoint": (
        'mutation { createTelegramEndpoint(botToken: "123:abc", chatId: "42") { id kind } }',
        {},
    ),
    "updateAlertEndpoint": (
        'mutation($p: ID!) { updateAlertEndpoint(id: $p, eventTypes: ["position_opened"]) { id } }',
        {"p": "{endpoint}"},
    ),
    "rotateWebhookSecret": ("mutation($p: ID!) { rotateWebhookSecret(id: $p) { signingSecret } }", {"p": "{endpoint}"}),
    "testAlertEndpoint": ("mutation($p: ID!) { testAlertEndpoint(id: $p) { ok statusCode } }", {"p": "{endpoint}"}),
    "redeliverAlert": ("mutation($p: ID!) { redeliverAlert(deliveryId: $p) { id status } }", {"p": "{delivery}"}),
    "deleteAlertEndpoint": ("mutation($p: ID!) { deleteAlertEndpoint(id: $p) }", {"p": "{endpoint}"}),
}
# Fields that name no object: they answer about the caller only (A, in the A-on-B test).
ABOUT_THE_CALLER = {
    "me": lambda data, w: data["me"]["id"] == str(w.a.client),
    "scheduledSells": lambda data, w: {n["id"] for n in data["scheduledSells"]["nodes"]} == {str(w.a.scheduled)},
    "positionsReport": lambda data, w: not w.b.positions & {p["id"] for p in data["positionsReport"]["positions"]},
    "tradesReport": lambda data, w: data["tradesReport"]["trades"] == 5,  # A's 4 buys and 1 sell, not B's
    "alertEndpoints": lambda data, w: [e["id"] for e in data["alertEndpoints"]] == [str(w.a.endpoint)],
    "alertEventTypes": lambda data, w: "position_opened" in data["alertEventTypes"],
    "alertDefaultEventTypes": lambda data, w: "market_stream_down" in data["alertDefaultEventTypes"],
    "createWebhookEndpoint": lambda data, w: data["createWebhookEndpoint"]["signingSecret"].startswith("whsec_"),
    "createTelegramEndpoint": lambda data, w: data["createTelegramEndpoint"]["kind"] == "telegram",
    "events": lambda data, w: (
        bool(data["events"]["nodes"])
        and not {str(w.b.strategy), str(w.b.retired)} & {n["strategyId"] for n in data["events"]["nodes"]}
    ),
}
# Fields about the caller that this world's caller is refused, with the code: A holds positions, so
# its exchange keys cannot change (a position bought on one account cannot be sold on another).
REFUSED_FOR_THE_CALLER = {"setExchangeKeys": "INVALID_STATE", "clearExchangeKeys": "INVALID_STATE"}
SUBSCRIPTIONS = {
    "prices": 'subscription { prices(symbols: ["BTCUSDT"]) { price } }',
    "fills": "subscription($s: ID) { fills(strategyId: $s) { id } }",
    "positionEvents": "subscription($s: ID) { positionEvents(strategyId: $s) { id } }",
}


async def variables(db: App, template: dict[str, Any], owner: Owner) -> dict[str, Any]:
    async def fill(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: await fill(v) for k, v in value.items()}
        if value == "$refresh":
            return await new_refresh_token(db, owner)
        if isinstance(value, str) and value.startswith("{"):
            return str(getattr(owner, value.strip("{}")))
        return value

    filled: dict[str, Any] = await fill(template)
    return filled


def codes(body: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors") or []]


INTROSPECT = """
{ __schema {
    queryType { fields { name } }
    mutationType { fields { name } }
    subscriptionType { fields { name } }
} }
"""


async def test_the_matrix_covers_every_field_of_the_schema(gql: GraphQLClient) -> None:
    schema = (await gql.post(INTROSPECT)).json()["data"]["__schema"]
    operations = {f["name"] for kind in ("queryType", "mutationType") for f in schema[kind]["fields"]}
    assert operations == set(CALLS), "add the new field to CALLS (and decide whether it is public)"
    subscriptions = {f["name"] for f in (schema["subscriptionType"] or {"fields": []})["fields"]}
    assert subscriptions == set(SUBSCRIPTIONS)
    assert {"currentPrice", "priceHistory", "symbols", "login", "refreshToken", "prices"} == set(PUBLIC_FIELDS)


def test_every_private_field_carries_the_permission() -> None:
    from strawberry.permission import PermissionExtension
    from strawberry.utils.str_converters import to_camel_case

    from gql_api.permissions import IsAuthenticated
    from gql_api.schema import schema

    for root in (schema.query, schema.mutation, schema.subscription):
        definition = root.__strawberry_definition__  # type: ignore[union-attr]
        for f in definition.fields:
            guarded = any(
                isinstance(e, PermissionExtension) and any(isinstance(p, IsAuthenticated) for p in e.permissions)
                for e in f.extensions
            )
            assert guarded == (to_camel_case(f.python_name) not in PUBLIC_FIELDS), f.python_name


async def test_without_a_token_only_public_fields_answer_and_nothing_changes(
    db: App, gql: GraphQLClient, world: World
) -> None:
    before = await snapshot(db)
    for name, (query, template) in CALLS.items():
        body = (await gql.post(query, await variables(db, template, world.b))).json()
        if name in PUBLIC_FIELDS:
            assert codes(body) == [], (name, body)
        else:
            assert codes(body) == ["UNAUTHENTICATED"], (name, body)
            assert body["data"] is None
            assert "Authorization: Bearer" in body["errors"][0]["message"]
    assert await snapshot(db) == before


async def test_another_clients_ids_are_not_found_and_nothing_changes(db: App, gql: GraphQLClient, world: World) -> None:
    await gql.login()  # client A
    before = await snapshot(db)
    b_session = await new_refresh_token(db, world.b)
    for name, (query, template) in CALLS.items():
        values = await variables(db, template, world.b)
        if name == "logout":
            values = {"t": b_session}
        body = await gql.execute(query, **values)
        if name in PUBLIC_FIELDS:
            # login and refreshToken are bound to credentials and tokens, not to the caller's ids.
            assert codes(body) == [], (name, body)
        elif name in ABOUT_THE_CALLER:
            assert codes(body) == [], (name, body)
            assert ABOUT_THE_CALLER[name](body["data"], world), (name, body)
        elif name in REFUSED_FOR_THE_CALLER:
            assert codes(body) == [REFUSED_FOR_THE_CALLER[name]], (name, body)
        else:
            # Exactly as for an id (or session) that does not exist.
            assert codes(body) == ["NOT_FOUND"], (name, body)
            missing = await gql.execute(query, **_missing(values))
            assert codes(missing) == ["NOT_FOUND"], (name, missing)
            assert body["errors"][0]["message"].replace(_named_id(values), "#") == missing["errors"][0][
                "message"
            ].replace(MISSING, "#"), (name, body, missing)
    # The endpoints A created for itself (createWebhookEndpoint, …) are the only change: undone.
    for endpoint in await alerts.list_endpoints(world.a.client, db.uow()):
        if endpoint.id != world.a.endpoint:
            await alerts.delete_alert_endpoint(world.a.client, endpoint.id, db.uow())  # type: ignore[arg-type]
    assert await snapshot(db) == before
    # B's session was not ended by A's logout attempt.
    refreshed = await gql.as_client(None).execute(
        "mutation($t: String!) { refreshToken(token: $t) { clientId } }", t=b_session
    )
    assert refreshed["data"]["refreshToken"]["clientId"] == str(world.b.client)


MISSING = "987654"
ID_VARIABLES = ("s", "p", "c", "clientId")


def _named_id(values: dict[str, Any]) -> str:
    for k, v in values.items():
        if isinstance(v, dict):
            return _named_id(v)
        if k in ID_VARIABLES:
            return str(v)
    return "\0"


def _missing(values: dict[str, Any]) -> dict[str, Any]:
    """The same variables with every id (or session) replaced by one that exists nowhere."""
    return {
        k: _missing(v) if isinstance(v, dict) else MISSING if k in ID_VARIABLES else "rt_missing" if k == "t" else v
        for k, v in values.items()
    }


async def test_the_lists_of_a_client_hold_only_its_own_objects(gql: GraphQLClient, world: World) -> None:
    for owner, other in ((world.a, world.b), (world.b, world.a)):
        client = gql.as_client(owner.client)
        data = await client.data(
            """{ strategies(includeArchived: true) { nodes { id } } positions(first: 100) { nodes { id } }
                 scheduledSells { nodes { id } } trades(first: 100) { nodes { position { id } order { id } } }
                 positionsReport { positions { id } }
                 orders(first: 100) { nodes { id position { id } strategy { id } } }
                 events(first: 100) { nodes { strategyId } } }"""
        )
        assert {n["id"] for n in data["positions"]["nodes"]} == owner.positions
        assert {n["id"] for n in data["scheduledSells"]["nodes"]} == {str(owner.scheduled)}
        assert {n["position"]["id"] for n in data["trades"]["nodes"]} <= owner.positions
        assert {p["id"] for p in data["positionsReport"]["positions"]} == owner.positions
        assert str(other.strategy) not in {n["id"] for n in data["strategies"]["nodes"]}
        own_strategies = {n["id"] for n in data["strategies"]["nodes"]}
        assert {str(owner.strategy), str(owner.retired)} <= own_strategies
        assert {n["position"]["id"] for n in data["orders"]["nodes"]} == owner.positions
        assert {n["strategy"]["id"] for n in data["orders"]["nodes"]} == {str(owner.strategy)}
        order_ids = {n["id"] for n in data["orders"]["nodes"]}
        assert {n["order"]["id"] for n in data["trades"]["nodes"]} <= order_ids
        assert {n["strategyId"] for n in data["events"]["nodes"]} <= own_strategies


async def test_bad_tokens_are_refused_on_every_private_field(db: App, gql: GraphQLClient, world: World) -> None:
    tokens = access_tokens(db.settings)
    expired, _ = tokens.issue(1, now=datetime.now(UTC) - timedelta(minutes=15, seconds=1))
    forged = expired.rsplit(".", 1)[0] + ".c2lnbmF0dXJl"
    refresh_as_access = await new_refresh_token(db, world.a)
    before = await snapshot(db)
    for token in (expired, forged, refresh_as_access):
        for name, (query, template) in CALLS.items():
            body = (await gql.post(query, await variables(db, template, world.a), token=token)).json()
            assert codes(body) == ([] if name in PUBLIC_FIELDS else ["UNAUTHENTICATED"]), (name, body)
    assert await snapshot(db) == before


async def test_a_refreshed_token_works_on_every_field(db: App, gql: GraphQLClient, world: World) -> None:
    session = await gql.login(world.a.api_key, world.a.api_secret)
    refreshed = (
        await gql.post(
            "mutation($t: String!) { refreshToken(token: $t) { accessToken } }", {"t": session["refreshToken"]}
        )
    ).json()["data"]["refreshToken"]
    gql.access_token = refreshed["accessToken"]
    # `logout` last: it ends the session whose token it is given (a spare one of A's).
    for name, (query, template) in sorted(CALLS.items(), key=lambda c: c[0] == "logout"):
        body = await gql.execute(query, **await variables(db, template, world.a))
        assert codes(body) == ([REFUSED_FOR_THE_CALLER[name]] if name in REFUSED_FOR_THE_CALLER else []), (name, body)


async def test_a_reused_refresh_token_revokes_its_family(db: App, gql: GraphQLClient, world: World) -> None:
    refresh = "mutation($t: String!) { refreshToken(token: $t) { accessToken refreshToken } }"
    anonymous = gql.as_client(None)
    first, other_login = await new_refresh_token(db, world.a), await new_refresh_token(db, world.a)
    second = (await anonymous.execute(refresh, t=first))["data"]["refreshToken"]
    reused = await anonymous.execute(refresh, t=first)
    assert codes(reused) == ["UNAUTHENTICATED"]
    # The token the legitimate rotation gave is revoked too: every session of that login ends.
    assert codes(await anonymous.execute(refresh, t=second["refreshToken"])) == ["UNAUTHENTICATED"]
    # The other login of A (another family) still refreshes.
    assert (await anonymous.execute(refresh, t=other_login))["data"]["refreshToken"]


# ---------------------------------------------------------------- subscriptions over WebSocket


async def _first_message(url: str, payload: dict[str, Any], query: str, variables: dict[str, Any]) -> Any:
    """connection_init with `payload`, subscribe; the first answer (or the close code)."""
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        try:
            ack = json.loads(await ws.recv())
        except websockets.ConnectionClosed as e:
            return ("closed", e.rcvd.code if e.rcvd else None)
        assert ack["type"] == "connection_ack"
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query, "variables": variables}}))
        try:
            return json.loads(await asyncio.wait_for(ws.recv(), 0.5))
        except TimeoutError:
            return ("waiting", None)


def message_codes(message: Any) -> list[str]:
    """The error codes of a graphql-transport-ws `error` message, or of a `next` message's errors."""
    assert isinstance(message, dict), message
    errors = message["payload"] if message["type"] == "error" else message["payload"].get("errors", [])
    return [e["extensions"]["code"] for e in errors]


async def test_subscriptions_are_scoped_and_refused_like_the_other_fields(db: App, world: World) -> None:
    tokens = access_tokens(db.settings)
    a_token, _ = tokens.issue(1)
    expired, _ = tokens.issue(1, now=datetime.now(UTC) - timedelta(hours=1))
    async with servers.api_server(db) as host:
        url = f"ws://{host}/graphql"
        for name, query in SUBSCRIPTIONS.items():
            b_ids = {"s": str(world.b.strategy)} if "$s" in query else {}
            anonymous = await _first_message(url, {}, query, b_ids)
            if name in PUBLIC_FIELDS:
                assert anonymous == ("waiting", None), (name, anonymous)  # subscribed, no tick yet
            else:
                assert message_codes(anonymous) == ["UNAUTHENTICATED"], (name, anonymous)
            # An expired (or forged) token refuses the connection itself: 4403 Forbidden.
            for bad in (expired, "garbage"):
                refused = await _first_message(url, {"Authorization": f"Bearer {bad}"}, query, b_ids)
                assert refused == ("closed", 4403), (name, refused)
            if b_ids:
                other = await _first_message(url, {"Authorization": f"Bearer {a_token}"}, query, b_ids)
                assert message_codes(other) == ["NOT_FOUND"], (name, other)
                own = await _first_message(url, {"Authorization": a_token}, query, {"s": str(world.a.strategy)})
                assert own == ("waiting", None), (name, own)


async def test_a_websocket_is_closed_when_its_token_expires(db: App) -> None:
    # A token with about two seconds left.
    token, expires = access_tokens(db.settings).issue(1, now=datetime.now(UTC) - timedelta(minutes=15, seconds=-2))
    async with (
        servers.api_server(db) as host,
        websockets.connect(f"ws://{host}/graphql", subprotocols=["graphql-transport-ws"]) as ws,
    ):
        await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await asyncio.wait_for(ws.wait_closed(), 10)
        assert ws.close_code == 4403
        assert datetime.now(UTC) >= expires - timedelta(seconds=1)
