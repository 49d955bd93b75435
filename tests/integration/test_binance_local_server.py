"""The local Binance speaks Binance's protocol: python-binance's own calls and streams work against it,
and it checks signatures, timing and order rules as Binance documents them."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from binance import AsyncClient
from binance.exceptions import BinanceAPIException

from domain.adapters.exchanges.binance import client_class, socket_manager_class
from tests.binance_local import LocalBinance, wait_until

pytest_plugins = ["tests.binance_local.fixtures"]  # local_binance

BTC = "BTCUSDT"
# rest-api.md, "SIGNED Endpoint Examples for POST /api/v3/order".
DOC_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
DOC_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
DOC_PARAMS = (
    "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
)
DOC_SIGNATURE = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
DOC_MIXED_SIGNATURE = "0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77"


@pytest.fixture
async def client(local_binance: LocalBinance) -> AsyncIterator[AsyncClient]:
    """python-binance itself, pointed at the local Binance by subclassing (SPEC §8)."""
    api = await client_class(local_binance.api_url, local_binance.ws_api_url).create(
        local_binance.api_key, local_binance.api_secret
    )
    api.ws_api.TIMEOUT = 0.2  # its read loop only sees a close at its next receive timeout
    yield api
    await api.close_connection()


async def _raw(server: LocalBinance, method: str, query: str = "", body: str = "") -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method,
            f"{server.api_url}/v3/order" + (f"?{query}" if query else ""),
            data=body,
            headers={"X-MBX-APIKEY": server.api_key, "Content-Type": "application/x-www-form-urlencoded"},
        ) as response,
    ):
        return response.status, await response.json()


async def test_signatures_are_checked_as_in_binance_documented_examples() -> None:
    server = LocalBinance(api_key=DOC_KEY, api_secret=DOC_SECRET)
    await server.start()
    try:
        server.clock_offset_ms = 1499827319559 + 100 - int(time.time() * 1000)  # the example's moment
        signed = f"{DOC_PARAMS}&signature={DOC_SIGNATURE}"
        # A valid signature and timestamp get as far as the symbol (LTCBTC is not listed here).
        assert await _raw(server, "POST", body=signed) == (400, {"code": -1121, "msg": "Invalid symbol."})
        assert (await _raw(server, "POST", query=signed))[1]["code"] == -1121
        query, body = DOC_PARAMS.split("&quantity")
        mixed = await _raw(server, "POST", query=query, body=f"quantity{body}&signature={DOC_MIXED_SIGNATURE}")
        assert mixed[1]["code"] == -1121  # totalParams = query string + body, no "&" between
        tampered = signed.replace("price=0.1", "price=0.2")
        assert await _raw(server, "POST", body=tampered) == (
            400, {"code": -1022, "msg": "Signature for this request is not valid."},
        )  # fmt: skip
        server.clock_offset_ms += 5_001  # the request is now older than its recvWindow
        assert (await _raw(server, "POST", body=signed))[1] == {
            "code": -1021,
            "msg": "Timestamp for this request is outside of the recvWindow.",
        }
        server.clock_offset_ms -= 7_000  # …and now more than 1 s in the server's future
        assert (await _raw(server, "POST", body=signed))[1]["code"] == -1021
    finally:
        await server.stop()


async def test_python_binance_signed_calls_and_key_errors(local_binance: LocalBinance, client: AsyncClient) -> None:
    account = await client.get_account()
    assert {b["asset"]: b["free"] for b in account["balances"]}["USDT"] == "10000.00000000"
    wrong = await client_class(local_binance.api_url).create(local_binance.api_key, "wrong-secret")
    try:
        with pytest.raises(BinanceAPIException) as refused:
            await wrong.get_account()
        assert (refused.value.status_code, refused.value.code) == (400, -1022)
    finally:
        await wrong.close_connection()
    stranger = await client_class(local_binance.api_url).create("someone-else", local_binance.api_secret)
    try:
        with pytest.raises(BinanceAPIException) as refused:
            await stranger.get_open_orders()
        assert (refused.value.status_code, refused.value.code) == (401, -2015)
    finally:
        await stranger.close_connection()


async def test_order_rules(local_binance: LocalBinance, client: AsyncClient) -> None:
    for illegal_id in ("tilde~is-not-allowed", "x" * 37):
        with pytest.raises(BinanceAPIException) as illegal:
            await client.order_market_buy(symbol=BTC, quoteOrderQty="100", newClientOrderId=illegal_id)
        assert illegal.value.code == -1100
    done = await client.order_market_buy(symbol=BTC, quoteOrderQty="100", newClientOrderId="same-id")
    assert done["status"] == "FILLED" and done["fills"][0]["commissionAsset"] == "BTC"
    # Binance refuses a client order id only while an order with it is open: a filled one can be
    # reused, so a blind retry would buy twice. (This is why the adapter asks before sending again.)
    again = await client.order_market_buy(symbol=BTC, quoteOrderQty="100", newClientOrderId="same-id")
    assert again["orderId"] != done["orderId"]
    await client.order_limit_sell(symbol=BTC, quantity="0.0001", price="150000", newClientOrderId="rests")
    with pytest.raises(BinanceAPIException) as duplicate:
        await client.order_limit_sell(symbol=BTC, quantity="0.0001", price="150000", newClientOrderId="rests")
    assert (duplicate.value.code, duplicate.value.message) == (-2010, "Duplicate order sent.")
    for bad, code in (({"price": "150000.001"}, -1013), ({"price": "150000.000000001"}, -1111)):
        with pytest.raises(BinanceAPIException) as refused:
            await client.order_limit_sell(symbol=BTC, quantity="0.0001", **bad)
        assert refused.value.code == code
    with pytest.raises(BinanceAPIException) as unknown:
        await client.get_order(symbol=BTC, origClientOrderId="never")
    assert (unknown.value.code, unknown.value.message) == (-2013, "Order does not exist.")
    with pytest.raises(BinanceAPIException) as gone:
        await client.cancel_order(symbol=BTC, origClientOrderId="same-id")
    assert (gone.value.code, gone.value.message) == (-2011, "Unknown order sent.")
    cancelled = await client.cancel_order(symbol=BTC, origClientOrderId="rests")
    assert cancelled["status"] == "CANCELED" and cancelled["origClientOrderId"] == "rests"
    trades = await client.get_my_trades(symbol=BTC, orderId=done["orderId"])
    assert trades[0]["commission"] == done["fills"][0]["commission"]


async def test_used_weight_header_and_429_with_retry_after() -> None:
    server = LocalBinance(weight_limit=30)
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{server.api_url}/v3/exchangeInfo") as first:
                assert first.headers["X-MBX-USED-WEIGHT-1M"] == "20"
            async with session.get(f"{server.api_url}/v3/exchangeInfo") as second:
                assert second.status == 429 and int(second.headers["Retry-After"]) >= 1
                assert (await second.json())["code"] == -1003
    finally:
        await server.stop()


async def test_market_streams_and_klines(local_binance: LocalBinance, client: AsyncClient) -> None:
    sockets = socket_manager_class(local_binance.stream_url)(client)
    kline = sockets.kline_socket(BTC, AsyncClient.KLINE_INTERVAL_1MINUTE)
    combined = sockets.multiplex_socket(["btcusdt@trade", "btcusdt@aggTrade"])
    kline.TIMEOUT = combined.TIMEOUT = 0.2  # python-binance's read loop exits at its next timeout
    async with kline, combined:
        await wait_until(lambda: len(local_binance._market) == 2)
        await local_binance.set_price(BTC, Decimal("100100.5"))
        candle = await asyncio.wait_for(kline.recv(), 3)
        assert candle["e"] == "kline" and candle["k"]["c"] == "100100.50000000" and candle["k"]["x"] is False
        messages = [await asyncio.wait_for(combined.recv(), 3) for _ in range(2)]
        assert {m["stream"] for m in messages} == {"btcusdt@trade", "btcusdt@aggTrade"}
        assert {m["data"]["p"] for m in messages} == {"100100.50000000"}
        await local_binance.advance_time(60_000)
        closed = await asyncio.wait_for(kline.recv(), 3)
        assert closed["k"]["x"] is True and closed["k"]["t"] == candle["k"]["t"]
    rows = await client.get_klines(symbol=BTC, interval="1m", limit=3)
    assert len(rows) >= 2 and rows[-2][4] == "100100.50000000"  # open time, O, H, L, C, …
    assert (await client.get_symbol_ticker(symbol=BTC))["price"] == "100100.50000000"


async def test_user_data_stream_over_the_websocket_api(local_binance: LocalBinance, client: AsyncClient) -> None:
    user = socket_manager_class(local_binance.stream_url)(client).user_socket()
    await user.connect()  # userDataStream.subscribe.signature
    try:
        assert local_binance.user_stream_subscriptions == 1
        await client.order_market_buy(symbol=BTC, quoteOrderQty="100", newClientOrderId="watched")
        reports = []
        while len(reports) < 2:
            event = await asyncio.wait_for(user.recv(), 3)
            if event["e"] == "executionReport":
                reports.append(event)
        assert [(r["x"], r["X"]) for r in reports] == [("NEW", "NEW"), ("TRADE", "FILLED")]
        assert reports[1]["c"] == "watched" and reports[1]["N"] == "BTC" and reports[1]["z"] == "0.00100000"
        raw = json.dumps(local_binance.delivered_user_events[-1])
        assert "outboundAccountPosition" in raw
    finally:
        await user.__aexit__(None, None, None)
    assert local_binance.user_stream_subscriptions == 0  # userDataStream.unsubscribe
    signed = [r for r in local_binance.requests if r.path == "userDataStream.subscribe.signature"]
    assert signed and signed[0].params["apiKey"] == local_binance.api_key


def test_hmac_helper_matches_the_documented_example() -> None:
    digest = hmac.new(DOC_SECRET.encode(), DOC_PARAMS.encode(), hashlib.sha256).hexdigest()
    assert digest == DOC_SIGNATURE
