"""Alerts from a `criptoren worker` process (issue 15, SPEC §4b), with receivers on 127.0.0.1:

- its market stream (Binance's public streams, from the local Binance) is cut and refused for a
  while, then back: a webhook that verifies every signature receives one `market_stream_down` —
  however many reconnection attempts the worker made meanwhile — then one `market_stream_up`;
- a replayed market's first buy reaches a Telegram chat (the local fake of the Bot API) as one short
  human line: "Bought 0.00389 BTC at 102,498.78 — Canal H4 BTC/USDT".
"""

from __future__ import annotations

from decimal import Decimal

from domain.adapters.bootstrap import App
from domain.adapters.seed import seed_demo
from domain.ports import Page
from tests.alert_receivers import WebhookReceiver, fake_telegram, webhook_receiver
from tests.binance_local import LocalBinance
from tests.e2e import servers
from tests.e2e.conftest import GraphQLClient
from tests.e2e.test_alerts_api import until
from tests.e2e.test_live_loop import REPLAY

pytest_plugins = ["tests.binance_local.fixtures"]  # local_binance

DOWN, UP = "market_stream_down", "market_stream_up"
CREATE = """mutation($u: String!) {
  createWebhookEndpoint(url: $u) { endpoint { id eventTypes } signingSecret } }"""


def stream_alerts(receiver: WebhookReceiver) -> list[str]:
    return [r.body["type"] for r in receiver.accepted if r.body["type"] in (DOWN, UP)]


async def test_a_lost_market_stream_reaches_a_webhook_as_one_down_then_one_up(
    db: App, gql: GraphQLClient, local_binance: LocalBinance
) -> None:
    await seed_demo(db.uow, db.exchange)
    await local_binance.set_price("BTCUSDT", Decimal("101000"))  # inside the demo's channel, below E
    async with webhook_receiver(WebhookReceiver()) as receiver:
        created = (await gql.data(CREATE, u=receiver.url))["createWebhookEndpoint"]
        receiver.secret = created["signingSecret"]
        assert {DOWN, UP} <= set(created["endpoint"]["eventTypes"])  # by default
        worker = servers.start_worker(
            db, MARKET_SOURCE="binance", BINANCE_API_URL=local_binance.api_url,
            BINANCE_STREAM_URL=local_binance.stream_url, SYMBOL_SYNC="off", STREAM_ALERT_SECONDS="1",
            CRIPTOREN_SECRET_KEY=str(db.settings.criptoren_secret_key), WEBHOOK_ALLOW_PRIVATE="true",
        )  # fmt: skip
        try:
            await until(lambda: len(local_binance._market) > 0)  # the worker's stream is subscribed
            await local_binance.set_price("BTCUSDT", Decimal("101100"))
            local_binance.refuse_websockets = True
            await local_binance.drop_websockets()
            await until(lambda: stream_alerts(receiver) == [DOWN])
            local_binance.refuse_websockets = False
            await until(lambda: stream_alerts(receiver) == [DOWN, UP])  # the kline pushes flow again
            assert worker.poll() is None
        finally:
            servers.stop(worker)
    assert all(r.signed for r in receiver.requests)
    down, up = (r.body for r in receiver.accepted if r.body["type"] in (DOWN, UP))
    assert down["strategy_name"] == up["strategy_name"] == "Canal H4 BTC/USDT" and down["symbol"] == "BTCUSDT"
    assert down["message"].startswith("The BTCUSDT market stream is lost since ")
    assert up["data"]["down_since"] == down["data"]["since"]
    async with db.uow() as uow:
        recorded = await uow.events.list(Page(10), types=[DOWN, UP])
    assert [e.type for e in reversed(recorded)] == [DOWN, UP]  # one each, whatever the reconnection attempts


async def test_a_replayed_buy_reaches_telegram_as_one_short_line(db: App, gql: GraphQLClient) -> None:
    await seed_demo(db.uow, db.exchange)
    async with fake_telegram() as telegram:
        created = await gql.data(
            'mutation { createTelegramEndpoint(botToken: "123456:ABC-secret-token", chatId: "-100777", '
            'eventTypes: ["position_opened"]) { id kind telegramChatId } }'
        )
        assert created["createTelegramEndpoint"]["telegramChatId"] == "-100777"
        worker = servers.start_worker(
            db, **REPLAY, REPLAY_SPEED="0", TELEGRAM_API_URL=telegram.url,
            CRIPTOREN_SECRET_KEY=str(db.settings.criptoren_secret_key),
        )  # fmt: skip
        try:
            await until(lambda: len(telegram.messages) >= 2)  # the replay buys twice (test_live_loop.py)
        finally:
            servers.stop(worker)
    async with db.uow() as uow:
        first_buy = list(await uow.trades.list(Page(10)))[-1]
        opened = list(await uow.events.list(Page(10), types=["position_opened"]))[-1]
    # The quantity the position holds (the event's): bought, net of the fee paid in BTC, on the lot.
    held = Decimal(opened.data["quantity"])
    assert first_buy.price == Decimal("102498.78") and held <= first_buy.quantity - first_buy.fees
    token, chat, text = telegram.messages[0]
    assert (token, chat) == ("123456:ABC-secret-token", "-100777")
    assert text == f"Bought {held.normalize():f} BTC at 102,498.78 — Canal H4 BTC/USDT"
