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


# ---------------------------------------------------------------- held to the docs (issue 19)


async def test_steps_are_multiples_of_the_step_not_offsets_from_the_minimum(
    local_binance: LocalBinance, client: AsyncClient
) -> None:
    """filters.md LOT_SIZE: `quantity % stepSize == 0` (and `price % tickSize == 0`)."""
    local_binance.set_filters(BTC, min_qty=Decimal("0.00003"), step_size=Decimal("0.00002"))
    local_binance.set_balance("BTC", Decimal(1))
    await client.order_limit_sell(symbol=BTC, quantity="0.00004", price="150000")  # 0.00004 % 0.00002 == 0
    with pytest.raises(BinanceAPIException) as refused:
        await client.order_limit_sell(symbol=BTC, quantity="0.00005", price="150000")  # 0.00003 + one step
    assert (refused.value.code, refused.value.message) == (-1013, "Filter failure: LOT_SIZE")


async def test_market_filters_judge_by_the_average_price(local_binance: LocalBinance, client: AsyncClient) -> None:
    """filters.md NOTIONAL (applyMinToMarket / applyMaxToMarket against the average price),
    MARKET_LOT_SIZE, PERCENT_PRICE_BY_SIDE; rest-api.md "Current average price" (a volume weighted
    average of the last avgPriceMins minutes)."""
    await local_binance.set_price(BTC, Decimal(100000), Decimal(1))
    await local_binance.set_price(BTC, Decimal(110000), Decimal(3))
    average = await client.get_avg_price(symbol=BTC)
    assert (average["mins"], average["price"]) == (5, "107500.00000000")
    local_binance.set_balance("BTC", Decimal(500))
    local_binance.set_filters(BTC, max_notional=Decimal(100_000), apply_max_to_market=True)

    async def refused(**order: Any) -> str:
        with pytest.raises(BinanceAPIException) as error:
            await client.create_order(symbol=BTC, side="SELL", **order)
        assert error.value.code == -1013
        return error.value.message

    assert await refused(type="MARKET", quantity="0.94") == "Filter failure: NOTIONAL"  # 101,050 at the average
    assert await refused(type="MARKET", quantity="0.00004") == "Filter failure: NOTIONAL"  # under 5
    local_binance.set_filters(BTC, apply_min_to_market=False, apply_max_to_market=False)
    await client.create_order(symbol=BTC, side="SELL", type="MARKET", quantity="0.00004")  # the minimum is off
    assert await refused(type="MARKET", quantity="101") == "Filter failure: MARKET_LOT_SIZE"
    limit = {"type": "LIMIT", "timeInForce": "GTC", "quantity": "0.001"}
    assert await refused(**limit, price="537500.01") == "Filter failure: PERCENT_PRICE_BY_SIDE"  # > 5 x average
    assert await refused(**limit, price="21499.99") == "Filter failure: PERCENT_PRICE_BY_SIDE"  # < 0.2 x average
    await client.create_order(symbol=BTC, side="SELL", **limit, price="537500")


async def test_max_num_orders(local_binance: LocalBinance, client: AsyncClient) -> None:
    """filters.md MAX_NUM_ORDERS: open orders of the account on the symbol."""
    local_binance.set_filters(BTC, max_num_orders=2)
    local_binance.set_balance("BTC", Decimal(1))
    for _ in range(2):
        await client.order_limit_sell(symbol=BTC, quantity="0.001", price="150000")
    with pytest.raises(BinanceAPIException) as refused:
        await client.order_limit_sell(symbol=BTC, quantity="0.001", price="150000")
    assert (refused.value.code, refused.value.message) == (-1013, "Filter failure: MAX_NUM_ORDERS")


async def test_market_and_ioc_orders_fill_to_the_book_and_expire(
    local_binance: LocalBinance, client: AsyncClient
) -> None:
    """faqs/market_orders_faq.md: a fill per price level, the rest EXPIRED; the user data stream
    reports each trade, then x = X = EXPIRED."""
    user = socket_manager_class(local_binance.stream_url)(client).user_socket()
    await user.connect()
    try:
        local_binance.set_book(BTC, asks=[(Decimal(100000), Decimal("0.002")), (Decimal(100010), Decimal("0.001"))])
        done = await client.order_market_buy(symbol=BTC, quantity="0.005")
        assert (done["status"], done["executedQty"], done["cummulativeQuoteQty"]) == (
            "EXPIRED", "0.00300000", "300.01000000",
        )  # fmt: skip
        assert [(f["price"], f["qty"]) for f in done["fills"]] == [
            ("100000.00000000", "0.00200000"), ("100010.00000000", "0.00100000"),
        ]  # fmt: skip
        reports = []
        while len(reports) < 4:
            event = await asyncio.wait_for(user.recv(), 3)
            if event["e"] == "executionReport":
                reports.append((event["x"], event["X"], event["l"]))
        assert reports == [
            ("NEW", "NEW", "0.00000000"),
            ("TRADE", "PARTIALLY_FILLED", "0.00200000"),
            ("TRADE", "PARTIALLY_FILLED", "0.00100000"),
            ("EXPIRED", "EXPIRED", "0.00000000"),
        ]
        local_binance.set_balance("BTC", Decimal(1))
        local_binance.set_book(BTC, bids=[(Decimal(99990), Decimal("0.001"))])
        ioc = await client.order_limit_sell(symbol=BTC, quantity="0.002", price="99000", timeInForce="IOC")
        assert (ioc["status"], ioc["executedQty"]) == ("EXPIRED", "0.00100000")
    finally:
        await user.__aexit__(None, None, None)


async def test_a_marketable_limit_sell_takes_the_bids_at_their_price_and_the_rest_rests(
    local_binance: LocalBinance, client: AsyncClient
) -> None:
    """SPEC §4 rule 6, as Binance matches a new LIMIT order (rest-api.md "New order"; enums.md "Time
    in force"): a GTC sell whose limit is at or below the market is a taker — it fills at once at the
    market's price (the bids'), not at its limit, and pays the taker rate. With a book, it takes every
    bid at or above its limit, each at that bid's price; what remains rests at its limit, its quantity
    locked, and fills there (as a maker) when the market trades up to it."""
    local_binance.set_balance("BTC", Decimal(1))
    local_binance.set_commission(maker=Decimal("0.0005"))  # tell the maker fill from the taker ones
    await local_binance.set_price(BTC, Decimal(107000))
    done = await client.order_limit_sell(symbol=BTC, quantity="0.00387", price="103472.89")
    assert (done["status"], done["executedQty"], done["cummulativeQuoteQty"]) == (
        "FILLED", "0.00387000", "414.09000000",
    )  # fmt: skip
    assert [(f["price"], f["commission"], f["commissionAsset"]) for f in done["fills"]] == [
        ("107000.00000000", "0.41409000", "USDT")  # 0.1%, the taker rate
    ]
    assert local_binance.balance("BTC") == (Decimal(1) - Decimal("0.00387"), Decimal(0))

    local_binance.set_book(BTC, bids=[(Decimal(106990), Decimal("0.002")), (Decimal(103000), Decimal(1))])
    partial = await client.order_limit_sell(symbol=BTC, quantity="0.005", price="103472.89")
    assert (partial["status"], partial["executedQty"]) == ("PARTIALLY_FILLED", "0.00200000")
    assert [f["price"] for f in partial["fills"]] == ["106990.00000000"]  # not the bid under the limit
    order = local_binance.orders[-1]
    assert order.is_open and local_binance.balance("BTC")[1] == Decimal("0.003")  # the rest rests, locked
    local_binance.clear_book(BTC)
    await local_binance.set_price(BTC, Decimal(103500))
    assert order.status == "FILLED"
    assert [(t.price, t.is_maker, t.commission) for t in order.fills[1:]] == [
        (Decimal("103472.89"), True, Decimal("0.15520934"))  # at its limit; 0.05% of 310.41867, to 8 decimals
    ]
    assert local_binance.balance("BTC")[1] == 0


async def test_the_unfilled_order_count_answers_429_minus_1015_with_retry_after() -> None:
    """rest-api.md "Unfilled Order Count", faqs/order_count_decrement.md: over the limit, 429 and
    -1015 "Too many new orders" with `Retry-After`; a filled order leaves the count."""
    server = LocalBinance(order_limit=2, order_window_ms=10_000)
    await server.start()
    api = await client_class(server.api_url).create(server.api_key, server.api_secret)
    try:
        server.set_balance("BTC", Decimal(1))
        await api.order_market_buy(symbol=BTC, quoteOrderQty="100")  # filled: off the count
        await api.order_limit_sell(symbol=BTC, quantity="0.001", price="150000")
        await api.order_limit_sell(symbol=BTC, quantity="0.001", price="150000")
        with pytest.raises(BinanceAPIException) as refused:
            await api.order_limit_sell(symbol=BTC, quantity="0.001", price="150000")
        error = refused.value
        assert (error.status_code, error.code) == (429, -1015)
        assert error.message == "Too many new orders; current limit is 2 orders per 10 SECOND."
        assert 1 <= int(error.response.headers["Retry-After"]) <= 10
        assert len(server.orders) == 3
    finally:
        await api.close_connection()
        await server.stop()


async def test_one_user_data_subscription_per_connection_and_its_end(
    local_binance: LocalBinance, client: AsyncClient
) -> None:
    """web-socket-api.md "User Data Stream subscription": one active subscription per account and
    connection (-2035 SUBSCRIPTION_ACTIVE); user-data-stream.md "Event Stream Terminated" when it is
    stopped; "Balance Update" on a deposit."""
    user = socket_manager_class(local_binance.stream_url)(client).user_socket()
    await user.connect()
    try:
        with pytest.raises(BinanceAPIException) as active:
            await client._ws_api_request("userDataStream.subscribe.signature", True, {})
        assert (active.value.code, active.value.message) == (-2035, "User Data Stream subscription already active.")
        await local_binance.deposit("USDT", Decimal("12.5"))
        deposit = await asyncio.wait_for(user.recv(), 3)
        assert (deposit["e"], deposit["a"], deposit["d"]) == ("balanceUpdate", "USDT", "12.50000000")
        assert (await asyncio.wait_for(user.recv(), 3))["B"] == [
            {"a": "USDT", "f": "10012.50000000", "l": "0.00000000"}
        ]
        await local_binance.terminate_user_streams()
        assert (await asyncio.wait_for(user.recv(), 3))["e"] == "eventStreamTerminated"
        assert local_binance.user_stream_subscriptions == 0
    finally:
        await user.__aexit__(None, None, None)


async def test_market_streams_push_klines_every_interval_and_ping() -> None:
    """web-socket-streams.md: the current kline every 2000 ms without trades ("Update Speed"), and a
    ping frame every 20 s that python-binance answers with a pong (both shortened here)."""
    server = LocalBinance(kline_push_seconds=0.1, ping_seconds=0.1)
    await server.start()
    api = await client_class(server.api_url, server.ws_api_url).create(server.api_key, server.api_secret)
    try:
        kline = socket_manager_class(server.stream_url)(api).kline_socket(BTC, AsyncClient.KLINE_INTERVAL_1MINUTE)
        kline.TIMEOUT = 0.2
        async with kline:
            pushed = [await asyncio.wait_for(kline.recv(), 3) for _ in range(3)]
            assert {(p["e"], p["k"]["c"], p["k"]["x"]) for p in pushed} == {("kline", "100000.00000000", False)}
            await wait_until(lambda: server.market_pings()[1] >= 2)
            sent, answered = server.market_pings()
            assert sent >= answered >= 2
    finally:
        await api.close_connection()
        await server.stop()


async def test_account_commission_rates(local_binance: LocalBinance, client: AsyncClient) -> None:
    """rest-api.md "Query Commission Rates"; faqs/commission_faq.md: a sell pays taker + seller of
    each kind."""
    local_binance.set_commission(seller=Decimal("0.0005"))
    local_binance.set_commission("taxCommission", taker=Decimal("0.0001"), seller=Decimal("0.0001"))
    rates = await client.v3_get_account_commission(symbol=BTC)
    assert rates["standardCommission"] == {
        "maker": "0.00100000", "taker": "0.00100000", "buyer": "0.00000000", "seller": "0.00050000",
    }  # fmt: skip
    assert rates["taxCommission"]["seller"] == "0.00010000" and rates["discount"]["discountAsset"] == "BNB"
    local_binance.set_balance("BTC", Decimal(1))
    sold = await client.order_market_sell(symbol=BTC, quantity="0.01")  # 1,000 USDT
    assert sold["fills"][0]["commission"] == "1.70000000"  # x (0.001 + 0.0005 + 0.0001 + 0.0001)
