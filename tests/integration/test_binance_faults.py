"""Exactly-once orders, rate limits and a dropped user data stream: the adapter on python-binance
against the local Binance with faults injected (issue 4)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from domain.adapters.exchanges.binance import BinanceExchange, BinanceRateLimited, OrderStateUnknown, RequestGate
from domain.errors import TemporaryExchangeError
from domain.model import OrderStatus, TimeInForce
from tests.binance_local import LocalBinance, local_config, next_update, wait_until

pytest_plugins = ["tests.binance_local.fixtures"]  # local_binance, binance_exchange

BTC = "BTCUSDT"
ORDER = ("POST", "/api/v3/order")


@pytest.fixture
def binance(local_binance: LocalBinance) -> LocalBinance:
    return local_binance


@pytest.fixture
def exchange(binance_exchange: BinanceExchange) -> BinanceExchange:
    return binance_exchange


def _assert_bought_once(binance: LocalBinance, coid: str, spent: Decimal) -> None:
    assert len(binance.orders_with(coid)) == 1
    assert binance.balance("USDT")[0] == Decimal(10000) - spent


# ---------------------------------------------------------------- exactly once


async def test_timeout_on_create_where_the_order_filled_returns_it_without_sending_again(
    binance: LocalBinance,
) -> None:
    adapter = BinanceExchange(local_config(binance, request_timeout=0.3, user_stream=False))
    await adapter.start()
    try:
        binance.delay_next(*ORDER, seconds=1.0)  # processed at once, answered after our timeout
        bought = await adapter.market_buy(binance.domain_symbol(BTC), "cr-e1-1", quote_amount=Decimal(400))
    finally:
        await adapter.close()
    assert bought.status is OrderStatus.FILLED and bought.executed_quantity == Decimal("0.004")
    assert (bought.fee, bought.fee_asset) == (Decimal("0.000004"), "BTC")  # read back from myTrades
    assert len(binance.requests_to(*ORDER)) == 1  # no second order was sent
    assert binance.requests_to("GET", "/api/v3/order")[0].params["origClientOrderId"] == "cr-e1-1"
    assert adapter.unknown_outcomes == 1
    _assert_bought_once(binance, "cr-e1-1", Decimal(400))


async def test_lost_response_where_the_order_filled(binance: LocalBinance, exchange: BinanceExchange) -> None:
    binance.lose_next(*ORDER)  # processed, then the connection is cut
    bought = await exchange.market_buy(binance.domain_symbol(BTC), "cr-e1-1", quote_amount=Decimal(400))
    assert bought.status is OrderStatus.FILLED
    assert len(binance.requests_to(*ORDER)) == 1
    _assert_bought_once(binance, "cr-e1-1", Decimal(400))


async def test_5xx_after_execution_is_settled_by_client_order_id(
    binance: LocalBinance, exchange: BinanceExchange
) -> None:
    binance.fail_next(*ORDER, status=503, after_processing=True)
    bought = await exchange.market_buy(binance.domain_symbol(BTC), "cr-e1-1", quote_amount=Decimal(400))
    assert bought.status is OrderStatus.FILLED
    assert [r.status for r in binance.requests_to(*ORDER)] == [503]
    _assert_bought_once(binance, "cr-e1-1", Decimal(400))


async def test_5xx_before_execution_is_never_sent_again(binance: LocalBinance, exchange: BinanceExchange) -> None:
    """rest-api.md "HTTP Return Codes": a 5xx leaves the execution status UNKNOWN. An order Binance
    still does not list after its recvWindow is not sent again: it may yet reach the matching engine."""
    binance.fail_next(*ORDER, status=502)  # refused before the matching engine saw it
    with pytest.raises(OrderStateUnknown) as unknown:
        await exchange.market_buy(binance.domain_symbol(BTC), "cr-e1-1", quote_amount=Decimal(400))
    assert unknown.value.details["client_order_id"] == "cr-e1-1"
    assert [r.status for r in binance.requests_to(*ORDER)] == [502]  # sent once, never again
    assert binance.orders_with("cr-e1-1") == [] and binance.balance("USDT")[0] == Decimal(10000)
    assert "cr-e1-1" in exchange.watched_orders  # followed, in case it appears late


async def test_an_order_accepted_with_its_answer_lost_and_filled_late_is_sent_once(
    binance: LocalBinance, exchange: BinanceExchange
) -> None:
    """The double buy of issue 19: Binance takes the order, the answer is lost (-1007), and the
    matching engine places and fills it 2.5 s later — after recvWindow + grace (1.2 s here), when the
    old adapter, finding nothing, sent it again and bought twice. It is sent once; its late fill
    reaches `order_updates()` from the user data stream."""
    binance.accept_late_next(2.5)
    with pytest.raises(OrderStateUnknown):
        await exchange.market_buy(binance.domain_symbol(BTC), "cr-e1-1", quote_amount=Decimal(400))
    assert binance.orders_with("cr-e1-1") == []  # not there yet
    seen = await next_update(exchange, timeout=5.0)  # its NEW report, then its fill
    late = seen if seen.status is OrderStatus.FILLED else await next_update(exchange)
    assert (late.client_order_id, late.status) == ("cr-e1-1", OrderStatus.FILLED)
    assert late.executed_quantity == Decimal("0.004")
    assert (late.fee, late.fee_asset) == (Decimal("0.000004"), "BTC")
    assert [r.code for r in binance.requests_to(*ORDER)] == [-1007]  # one send
    _assert_bought_once(binance, "cr-e1-1", Decimal(400))
    assert exchange.watched_orders == []


async def test_unknown_outcome_when_binance_cannot_be_asked(binance: LocalBinance, exchange: BinanceExchange) -> None:
    binance.fail_next(*ORDER, status=503, after_processing=True)
    binance.fail_next("GET", "/api/v3/order", status=503, count=1000)
    with pytest.raises(OrderStateUnknown) as unknown:
        await exchange.market_buy(binance.domain_symbol(BTC), "cr-e1-1", quote_amount=Decimal(400))
    assert isinstance(unknown.value, TemporaryExchangeError)
    assert unknown.value.details["client_order_id"] == "cr-e1-1"
    assert len(binance.requests_to(*ORDER)) == 1  # never sent again while its state is unknown
    binance._faults.clear()
    found = await exchange.get_order(binance.domain_symbol(BTC), "cr-e1-1")  # what reconciliation does
    assert found is not None and found.status is OrderStatus.FILLED


async def test_a_resting_order_with_a_lost_response_is_watched(
    binance: LocalBinance, exchange: BinanceExchange
) -> None:
    binance.set_balance("BTC", Decimal("0.01"))
    binance.lose_next(*ORDER)
    resting = await exchange.limit_sell(
        binance.domain_symbol(BTC), "cr-s1-1", Decimal("0.01"), Decimal(101000), TimeInForce.GTC
    )
    assert resting.status is OrderStatus.OPEN and exchange.watched_orders == ["cr-s1-1"]
    await binance.set_price(BTC, Decimal(101000))
    assert (await next_update(exchange)).status is OrderStatus.FILLED
    assert len(binance.requests_to(*ORDER)) == 1


# ---------------------------------------------------------------- rate limits


async def test_a_429_storm_pauses_every_request_then_all_proceed(
    binance: LocalBinance, exchange: BinanceExchange
) -> None:
    btc = binance.domain_symbol(BTC)
    binance.rate_limit(count=3, retry_after=1)
    mark = len(binance.requests)
    started = time.monotonic()
    balance, missing, bought, price = await asyncio.gather(
        exchange.balance("ETH"),
        exchange.get_order(btc, "cr-never-sent"),
        exchange.market_buy(btc, "cr-e1-1", quote_amount=Decimal(400)),
        exchange.current_price(btc),
    )
    assert time.monotonic() - started >= 1.0
    # Nothing lost: every call has its answer, and the buy happened once.
    assert balance == 0 and missing is None and price is not None
    assert bought.status is OrderStatus.FILLED
    _assert_bought_once(binance, "cr-e1-1", Decimal(400))
    # Paused: after the first 429, nothing reached Binance until Retry-After had passed.
    rest = [r for r in binance.requests[mark:] if r.method != "WS"]
    first_429 = next(r for r in rest if r.status == 429)
    assert [r for r in rest if 0.05 < r.at - first_429.at < 0.95] == []
    assert sum(r.status == 429 for r in rest) == exchange.rate_limit_hits == 3


async def test_a_ban_longer_than_we_wait_fails_fast_and_keeps_the_gate_closed(
    binance: LocalBinance, exchange: BinanceExchange
) -> None:
    binance.rate_limit(count=1, retry_after=600, status=418)
    with pytest.raises(BinanceRateLimited) as banned:
        await exchange.balance("USDT")
    assert banned.value.details["retry_after"] == 600
    sent = len(binance.requests)
    with pytest.raises(BinanceRateLimited):
        await exchange.get_order(binance.domain_symbol(BTC), "cr-e1-1")
    assert len(binance.requests) == sent  # not even sent


async def test_adapters_sharing_a_gate_pause_together(binance: LocalBinance) -> None:
    """Binance limits per IP: one client's 429 holds back every client of the process."""
    gate = RequestGate(local_config(binance))
    first = BinanceExchange(local_config(binance, user_stream=False), gate)
    second = BinanceExchange(local_config(binance, user_stream=False, load_fee_rate=False), gate)
    await first.start()
    await second.start()
    try:
        binance.rate_limit(count=1, retry_after=1)
        mark = len(binance.requests)

        async def a_moment_later() -> object:
            await asyncio.sleep(0.1)
            return await second.get_order(binance.domain_symbol(BTC), "cr-e1-1")

        assert await asyncio.gather(first.balance("ETH"), a_moment_later()) == [0, None]
    finally:
        await first.close()
        await second.close()
    rest = [r for r in binance.requests[mark:] if r.method != "WS"]
    assert rest[0].status == 429
    assert all(r.at - rest[0].at >= 0.95 for r in rest[1:])  # the second client waited too


@pytest.fixture
async def small_weight_binance() -> AsyncIterator[LocalBinance]:
    server = LocalBinance(weight_limit=100, weight_window_ms=1000)
    await server.start()
    yield server
    await server.stop()


async def test_used_weight_slows_requests_down_before_the_limit(small_weight_binance: LocalBinance) -> None:
    binance = small_weight_binance
    adapter = BinanceExchange(local_config(binance, weight_window=1.0, user_stream=False))
    await adapter.start()
    try:
        btc = binance.domain_symbol(BTC)
        started = time.monotonic()
        answers = await asyncio.gather(*(adapter.get_order(btc, f"cr-e1-{i}") for i in range(40)))  # weight 160
        elapsed = time.monotonic() - started
    finally:
        await adapter.close()
    assert answers == [None] * 40
    assert all(r.status != 429 for r in binance.requests)  # the limit (100 per window) was never hit
    assert adapter.rate_limit_hits == 0
    assert elapsed >= 0.5  # it waited for later windows


# ---------------------------------------------------------------- the user data stream


async def test_a_dropped_user_data_stream_is_covered_by_polling_then_resubscribed(
    binance: LocalBinance, exchange: BinanceExchange
) -> None:
    btc = binance.domain_symbol(BTC)
    binance.set_balance("BTC", Decimal("0.02"))
    await exchange.limit_sell(btc, "cr-s1-1", Decimal("0.01"), Decimal(101000), TimeInForce.GTC)

    binance.refuse_websockets = True
    await binance.drop_websockets()
    await wait_until(lambda: not exchange.stream_connected)
    await binance.set_price(BTC, Decimal(101000))  # fills while nobody is subscribed
    assert binance.user_stream_subscriptions == 0

    filled = await next_update(exchange)
    assert filled.client_order_id == "cr-s1-1" and filled.status is OrderStatus.FILLED
    assert (filled.fee, filled.fee_asset) == (Decimal("1.01"), "USDT")
    assert exchange.updates_from_polling == 1 and not exchange.stream_connected
    delivered = [e for e in binance.delivered_user_events if e.get("c") == "cr-s1-1" and e.get("x") == "TRADE"]
    assert delivered == []  # the stream never carried it

    binance.refuse_websockets = False
    assert await exchange.wait_for_user_stream(10)
    await exchange.limit_sell(btc, "cr-s1-2", Decimal("0.01"), Decimal(102000), TimeInForce.GTC)
    await binance.set_price(BTC, Decimal(102000))
    again = await next_update(exchange)
    assert again.client_order_id == "cr-s1-2" and again.status is OrderStatus.FILLED
    assert exchange.updates_from_stream == 1


async def test_duplicated_stream_messages_are_yielded_once(binance: LocalBinance, exchange: BinanceExchange) -> None:
    binance.duplicate_stream_messages = True
    binance.set_balance("BTC", Decimal("0.01"))
    await exchange.limit_sell(binance.domain_symbol(BTC), "cr-s1-1", Decimal("0.01"), Decimal(101000), TimeInForce.GTC)
    await binance.set_price(BTC, Decimal(101000), quantity=Decimal("0.004"))
    await binance.set_price(BTC, Decimal(101000))
    first, second = await next_update(exchange), await next_update(exchange)
    assert (first.status, first.executed_quantity) == (OrderStatus.PARTIALLY_FILLED, Decimal("0.004"))
    assert (second.status, second.executed_quantity, second.fee) == (
        OrderStatus.FILLED, Decimal("0.01"), Decimal("1.01"),
    )  # fmt: skip
    await asyncio.sleep(0.3)
    assert exchange._updates.empty()


async def test_an_event_that_fails_to_process_does_not_end_the_subscription(
    binance: LocalBinance, exchange: BinanceExchange
) -> None:
    """Issue 19, item 5: Binance allows one subscription per account and connection (-2035 to a
    second one). An event the adapter cannot process is logged and skipped: it neither subscribes
    again on the live connection (refused, and the stream would stay down on polling) nor misses
    the next reports."""
    await binance.push_user_event({"e": "executionReport", "s": BTC, "c": "cr-x9-1", "x": "TRADE"})  # no fields
    await binance.push_user_event({"e": "outboundAccountPosition", "B": [{"a": "USDT"}]})
    binance.set_balance("BTC", Decimal("0.01"))
    await exchange.limit_sell(binance.domain_symbol(BTC), "cr-s1-1", Decimal("0.01"), Decimal(101000), TimeInForce.GTC)
    await binance.set_price(BTC, Decimal(101000))
    filled = await next_update(exchange)
    assert filled.status is OrderStatus.FILLED and exchange.updates_from_stream == 1
    assert exchange.stream_connected and exchange.subscriptions == 1
    subscribes = [r for r in binance.requests if r.path == "userDataStream.subscribe.signature"]
    assert [r.code for r in subscribes] == [None]  # never a second subscribe, never -2035


async def test_a_subscription_still_active_is_dropped_with_its_connection_before_subscribing_again(
    binance: LocalBinance,
) -> None:
    """The subscribe's answer comes after python-binance gave up waiting, but Binance took it: the
    next subscribe on that connection is refused with -2035. The adapter reconnects first, and
    subscribes on the new connection."""
    binance.delay_next("WS", "userDataStream.subscribe.signature", 1.0)
    adapter = BinanceExchange(local_config(binance, ws_timeout=0.5))
    await adapter.start()
    try:
        assert await adapter.wait_for_user_stream(10)
        subscribes = [r.code for r in binance.requests if r.path == "userDataStream.subscribe.signature"]
        assert subscribes == [None, -2035, None]
        assert binance.user_stream_subscriptions == 1
        binance.set_balance("BTC", Decimal("0.01"))
        btc = binance.domain_symbol(BTC)
        await adapter.limit_sell(btc, "cr-s1-1", Decimal("0.01"), Decimal(101000), TimeInForce.GTC)
        await binance.set_price(BTC, Decimal(101000))
        assert (await next_update(adapter)).status is OrderStatus.FILLED and adapter.updates_from_stream == 1
    finally:
        await adapter.close()


async def test_event_stream_terminated_subscribes_again(binance: LocalBinance, exchange: BinanceExchange) -> None:
    """user-data-stream.md "Event Stream Terminated": Binance ended the subscription; the connection
    lives on, and the adapter subscribes again on it."""
    await binance.terminate_user_streams()
    await wait_until(lambda: exchange.subscriptions == 2 and exchange.stream_connected, timeout=5)
    assert binance.user_stream_subscriptions == 1
    binance.set_balance("BTC", Decimal("0.01"))
    await exchange.limit_sell(binance.domain_symbol(BTC), "cr-s1-1", Decimal("0.01"), Decimal(101000), TimeInForce.GTC)
    await binance.set_price(BTC, Decimal(101000))
    assert (await next_update(exchange)).status is OrderStatus.FILLED and exchange.updates_from_stream == 1


async def test_the_balance_cache_follows_deposits_and_withdrawals(
    binance: LocalBinance, exchange: BinanceExchange
) -> None:
    """user-data-stream.md "Balance Update" and "Account Update": the cache follows them without
    asking Binance again."""
    assert await exchange.free_balance("USDT") == Decimal(10000)
    reads = len(binance.requests_to("GET", "/api/v3/account"))
    await binance.deposit("USDT", Decimal(250))
    await binance.withdraw("BTC", Decimal(0))
    await wait_until(lambda: exchange.balance_cache.free.get("USDT") == Decimal(10250))
    assert await exchange.free_balance("USDT") == Decimal(10250)
    assert len(binance.requests_to("GET", "/api/v3/account")) == reads


# ---------------------------------------------------------------- the order count (-1015)


@pytest.fixture
async def order_limited_binance() -> AsyncIterator[LocalBinance]:
    server = LocalBinance(order_limit=1, order_window_ms=1000)
    await server.start()
    yield server
    await server.stop()


async def test_the_order_count_limit_holds_back_new_orders_only(order_limited_binance: LocalBinance) -> None:
    """faqs/order_count_decrement.md: a new order over the account's unfilled order count gets 429
    -1015 with `Retry-After`; it was not placed, so it goes out again after that — once. Reads of
    the account go on meanwhile (the count is per account, not per IP)."""
    binance = order_limited_binance
    binance.set_balance("BTC", Decimal(1))
    adapter = BinanceExchange(local_config(binance, user_stream=False))
    await adapter.start()
    try:
        btc = binance.domain_symbol(BTC)
        await adapter.limit_sell(btc, "cr-s1-1", Decimal("0.01"), Decimal(101000), TimeInForce.GTC)  # unfilled: counts
        second = asyncio.ensure_future(
            adapter.limit_sell(btc, "cr-s2-1", Decimal("0.01"), Decimal(101000), TimeInForce.GTC)
        )
        await wait_until(lambda: any(r.code == -1015 for r in binance.requests_to(*ORDER)))
        assert await adapter.balance("USDT") == Decimal(10000)  # not held back
        assert (await second).status is OrderStatus.OPEN
    finally:
        await adapter.close()
    codes = [r.code for r in binance.requests_to(*ORDER)]
    assert codes.count(-1015) >= 1 and codes.count(None) == 2 and len(binance.orders) == 2
    refused = next(r for r in binance.requests_to(*ORDER) if r.code == -1015)
    assert all(r.at - refused.at >= 0.5 for r in binance.requests_to(*ORDER) if r.code is None and r.at > refused.at)
    assert adapter.rate_limit_hits >= 1 and adapter._gate.pauses == 0


async def test_a_caller_repeating_an_order_of_unknown_outcome_does_not_resend_it(
    binance: LocalBinance, exchange: BinanceExchange
) -> None:
    binance.accept_late_next(5.0)
    btc = binance.domain_symbol(BTC)
    with pytest.raises(OrderStateUnknown):
        await exchange.market_buy(btc, "cr-e1-1", quote_amount=Decimal(400))
    with pytest.raises(OrderStateUnknown, match="not sent again"):
        await exchange.market_buy(btc, "cr-e1-1", quote_amount=Decimal(400))
    assert len(binance.requests_to(*ORDER)) == 1
