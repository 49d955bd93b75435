"""The Binance adapter on python-binance (unpatched) against the local Binance: the order cycle,
fills and fees, filters and the error codes Binance answers with (issue 4)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from domain import channel as ch
from domain.adapters.exchanges.binance import (
    BinanceAuthError,
    BinanceExchange,
    BinanceFilterFailure,
    BinanceInsufficientBalance,
)
from domain.errors import (
    FilterFailure,
    InsufficientBalance,
    InsufficientCapital,
    OrderNotAllowedNow,
    PermanentExchangeError,
)
from domain.model import OrderStatus, Side, TimeInForce
from tests.binance_local import LocalBinance, local_config, next_update

pytest_plugins = ["tests.binance_local.fixtures"]  # local_binance, binance_exchange


@pytest.fixture
def binance(local_binance: LocalBinance) -> LocalBinance:
    return local_binance


@pytest.fixture
def exchange(binance_exchange: BinanceExchange) -> BinanceExchange:
    return binance_exchange


BTC = "BTCUSDT"
FEE = Decimal("0.001")


async def _resting_sell(binance: LocalBinance, exchange: BinanceExchange, coid: str = "cr-s1-1") -> Decimal:
    """Hold 0.01 BTC and rest a LIMIT GTC sell of it at 101,000; returns the quantity."""
    binance.set_balance("BTC", Decimal("0.01"))
    execution = await exchange.limit_sell(
        binance.domain_symbol(BTC), coid, Decimal("0.01"), Decimal(101000), TimeInForce.GTC
    )
    assert execution.status is OrderStatus.OPEN
    return Decimal("0.01")


async def test_buy_then_resting_limit_sell_filled_through_the_user_data_stream(
    binance: LocalBinance, exchange: BinanceExchange
) -> None:
    btc = binance.domain_symbol(BTC)
    bought = await exchange.market_buy(btc, "cr-e1-1", quote_amount=Decimal(400))
    assert bought.status is OrderStatus.FILLED and bought.side is Side.BUY
    assert (bought.executed_quantity, bought.quote_quantity) == (Decimal("0.004"), Decimal(400))
    assert (bought.fee, bought.fee_asset) == (Decimal("0.000004"), "BTC")  # the base asset, on a buy
    assert bought.average_price == Decimal(100000)
    assert binance.requests_to("POST", "/api/v3/order")[0].params["quoteOrderQty"] == "400"

    # Rule 9: the position holds the net quantity rounded down; the scheduled sell rests at
    # min_sell rounded *up* to the tick.
    position = ch.position_from_buy(
        bought.executed_quantity, bought.quote_quantity, bought.fee, bought.fee_asset, "BTC", "USDT",
        Decimal(100000), btc.filters,
    )  # fmt: skip
    assert position.quantity == Decimal("0.00399")
    resting = await exchange.limit_sell(btc, "cr-s1-1", position.quantity, Decimal("100999.991"), TimeInForce.GTC)
    assert resting.status is OrderStatus.OPEN and resting.executed_quantity == 0
    sent = binance.requests_to("POST", "/api/v3/order")[-1].params
    assert (sent["price"], sent["quantity"], sent["timeInForce"]) == ("101000", "0.00399", "GTC")
    assert binance.balance("BTC") == (Decimal("0.000006"), Decimal("0.00399"))  # locked while resting
    assert exchange.watched_orders == ["cr-s1-1"]

    await binance.set_price(BTC, Decimal(100500))  # below the limit: nothing happens
    await binance.set_price(BTC, Decimal(101250))  # reaches it: a maker fill at the limit price
    update = await next_update(exchange)
    assert update.client_order_id == "cr-s1-1" and update.status is OrderStatus.FILLED
    assert update.executed_quantity == Decimal("0.00399")
    assert update.quote_quantity == Decimal("402.99")
    assert (update.fee, update.fee_asset) == (Decimal("0.40299"), "USDT")  # the quote asset, on a sell
    assert exchange.updates_from_stream == 1 and exchange.updates_from_polling == 0
    assert exchange.watched_orders == []
    assert await exchange.get_order(btc, "cr-s1-1") == update  # the same fills, read back from myTrades
    assert await exchange.balance("USDT") == Decimal(10000) - 400 + Decimal("402.99") - Decimal("0.40299")


async def test_limit_ioc_sells_at_the_market_or_expires(binance: LocalBinance, exchange: BinanceExchange) -> None:
    btc = binance.domain_symbol(BTC)
    binance.set_balance("BTC", Decimal("0.02"))
    missed = await exchange.limit_sell(btc, "cr-x1-1", Decimal("0.01"), Decimal(100500), TimeInForce.IOC)
    assert missed.status is OrderStatus.EXPIRED and missed.executed_quantity == 0
    sold = await exchange.limit_sell(btc, "cr-x1-2", Decimal("0.01"), Decimal(99000), TimeInForce.IOC)
    assert sold.status is OrderStatus.FILLED
    assert sold.average_price == Decimal(100000)  # the best bid, above the floor
    assert (sold.fee, sold.fee_asset) == (Decimal("1"), "USDT")
    assert exchange.watched_orders == []


async def test_market_sell_quantity_is_rounded_down_to_the_step(
    binance: LocalBinance, exchange: BinanceExchange
) -> None:
    binance.set_balance("BTC", Decimal(1))
    sold = await exchange.market_sell(binance.domain_symbol(BTC), "cr-l1-1", Decimal("0.0012345"))
    assert binance.requests_to("POST", "/api/v3/order")[-1].params["quantity"] == "0.00123"
    assert sold.executed_quantity == Decimal("0.00123") and sold.quote_quantity == Decimal(123)


async def test_market_buy_by_quantity(binance: LocalBinance, exchange: BinanceExchange) -> None:
    bought = await exchange.market_buy(binance.domain_symbol(BTC), "cr-b1-1", quantity=Decimal("0.0020009"))
    assert binance.requests_to("POST", "/api/v3/order")[-1].params["quantity"] == "0.002"
    assert bought.executed_quantity == Decimal("0.002") and bought.quote_quantity == Decimal(200)


async def test_commission_in_bnb_carries_the_bnb_price(binance: LocalBinance, exchange: BinanceExchange) -> None:
    binance.pay_fees_in_bnb = True
    binance.set_balance("BNB", Decimal(1))
    btc = binance.domain_symbol(BTC)
    bought = await exchange.market_buy(btc, "cr-e1-1", quote_amount=Decimal(400))
    # 400 * 0.1% with the 25% BNB discount, at 600 USDT per BNB.
    assert (bought.fee, bought.fee_asset) == (Decimal("0.0005"), "BNB")
    assert bought.fee_asset_price_in_quote == Decimal(600)
    position = ch.position_from_buy(
        bought.executed_quantity, bought.quote_quantity, bought.fee, bought.fee_asset, "BTC", "USDT",
        Decimal(100000), btc.filters, bought.fee_asset_price_in_quote,
    )  # fmt: skip
    assert position.quantity == Decimal("0.004")  # nothing taken from the base asset
    assert position.cost == Decimal("400.3")


async def test_commission_in_bnb_of_an_older_fill_is_valued_at_its_time(
    binance: LocalBinance, exchange: BinanceExchange
) -> None:
    """A fill read back later (a recovered outcome, a restart) keeps the BNB price of its minute."""
    binance.pay_fees_in_bnb = True
    binance.set_balance("BNB", Decimal(1))
    btc = binance.domain_symbol(BTC)
    binance.clock_offset_ms = -600_000  # the fill happens ten minutes ago…
    await binance.set_price("BNBUSDT", Decimal(500))
    bought = await exchange.market_buy(btc, "cr-e1-1", quote_amount=Decimal(400))  # (-1021 once: resynced)
    assert (bought.fee, bought.fee_asset) == (Decimal("0.0006"), "BNB")
    binance.clock_offset_ms = 0  # …and BNB is at 600 now
    await binance.set_price("BNBUSDT", Decimal(600))
    again = await exchange.get_order(btc, "cr-e1-1")
    assert again is not None and again.fee_asset_price_in_quote == Decimal(500)
    assert binance.requests_to("GET", "/api/v3/klines")


async def test_balance_price_and_fee_rate(binance: LocalBinance, exchange: BinanceExchange) -> None:
    assert await exchange.balance("USDT") == Decimal(10000)
    assert await exchange.balance("DOGE") == 0
    price, _ = await exchange.current_price(binance.domain_symbol(BTC)) or (None, None)
    assert price == Decimal(100000)
    assert exchange.fee_rate(binance.domain_symbol(BTC)) == FEE  # the account's taker commission


# ---------------------------------------------------------------- filters


async def test_filters_come_from_exchange_info_and_are_refreshed(binance: LocalBinance) -> None:
    binance.set_filters("ETHUSDT", legacy_min_notional=True, min_notional=Decimal(10))
    adapter = BinanceExchange(local_config(binance, filters_ttl=0.3, user_stream=False))
    await adapter.start()
    try:
        btc = await adapter.symbol_filters(BTC)
        assert (btc.step_size, btc.min_qty, btc.tick_size, btc.min_notional) == (
            Decimal("0.00001"), Decimal("0.00001"), Decimal("0.01"), Decimal(5),
        )  # fmt: skip
        assert (await adapter.symbol_filters("ETHUSDT")).min_notional == Decimal(10)  # MIN_NOTIONAL
        loads = len(binance.requests_to("GET", "/api/v3/exchangeInfo"))
        await adapter.symbol_filters(BTC)
        assert len(binance.requests_to("GET", "/api/v3/exchangeInfo")) == loads  # cached
        binance.set_filters(BTC, tick_size=Decimal("0.1"))
        await asyncio.sleep(0.35)
        assert (await adapter.symbol_filters(BTC)).tick_size == Decimal("0.1")  # refreshed after the TTL
    finally:
        await adapter.close()


async def test_an_order_that_cannot_meet_the_filters_is_not_sent(
    binance: LocalBinance, exchange: BinanceExchange
) -> None:
    btc = binance.domain_symbol(BTC)
    binance.set_balance("BTC", Decimal(1))
    cases = [
        exchange.market_buy(btc, "cr-b1-1", quote_amount=Decimal("4.99")),  # NOTIONAL
        exchange.market_sell(btc, "cr-l1-1", Decimal("0.000009")),  # LOT_SIZE once rounded
        exchange.limit_sell(btc, "cr-s1-1", Decimal("0.00004"), Decimal(100000), TimeInForce.GTC),  # NOTIONAL
    ]
    for case in cases:
        with pytest.raises(BinanceFilterFailure) as refused:
            await case
        assert isinstance(refused.value, FilterFailure) and isinstance(refused.value, PermanentExchangeError)
        assert refused.value.code == "FILTER_FAILURE"
    assert binance.requests_to("POST", "/api/v3/order") == []


async def test_minus_1013_from_changed_filters_is_a_filter_failure_and_reloads_them(
    binance: LocalBinance, exchange: BinanceExchange
) -> None:
    btc = binance.domain_symbol(BTC)
    binance.set_balance("BTC", Decimal(1))
    binance.set_filters(BTC, step_size=Decimal("0.001"), min_qty=Decimal("0.001"))  # behind our back
    with pytest.raises(BinanceFilterFailure) as refused:
        await exchange.market_sell(btc, "cr-l1-1", Decimal("0.0015"))
    assert refused.value.details["binance_code"] == -1013
    assert "LOT_SIZE" in refused.value.message
    sold = await exchange.market_sell(btc, "cr-l1-2", Decimal("0.0015"))  # the new step is used
    assert sold.executed_quantity == Decimal("0.001")


async def test_minus_1111_too_much_precision_is_a_filter_failure(
    binance: LocalBinance, exchange: BinanceExchange
) -> None:
    btc = binance.domain_symbol(BTC)
    binance.set_filters(BTC, quote_asset_precision=2)
    with pytest.raises(BinanceFilterFailure) as refused:
        await exchange.market_buy(btc, "cr-b1-1", quote_amount=Decimal("100.123"))
    assert refused.value.details["binance_code"] == -1111
    bought = await exchange.market_buy(btc, "cr-b1-2", quote_amount=Decimal("100.123"))
    assert binance.requests_to("POST", "/api/v3/order")[-1].params["quoteOrderQty"] == "100.12"
    assert bought.status is OrderStatus.FILLED


# ---------------------------------------------------------------- errors


async def test_an_insufficient_balance_is_found_before_sending(
    binance: LocalBinance, exchange: BinanceExchange
) -> None:
    """SPEC §4b: the free balance of the asset an order spends (quote for a buy) must cover it."""
    binance.set_balance("USDT", Decimal(10))
    with pytest.raises(BinanceInsufficientBalance) as refused:
        await exchange.market_buy(binance.domain_symbol(BTC), "cr-e1-1", quote_amount=Decimal(50))
    error = refused.value
    assert isinstance(error, InsufficientBalance) and isinstance(error, InsufficientCapital)
    assert error.code == "INSUFFICIENT_BALANCE" and error.details["before_sending"] is True
    assert (error.details["asset"], error.details["needed"], error.details["free"]) == ("USDT", "50", "10")
    assert binance.requests_to("POST", "/api/v3/order") == []


async def test_minus_2010_insufficient_balance(binance: LocalBinance, exchange: BinanceExchange) -> None:
    assert await exchange.free_balance("USDT") == Decimal(10000)  # cached, and the stream is up
    binance.set_balance("USDT", Decimal(10))  # behind the stream's back: the cache does not know
    with pytest.raises(BinanceInsufficientBalance) as refused:
        await exchange.market_buy(binance.domain_symbol(BTC), "cr-e1-1", quote_amount=Decimal(50))
    error = refused.value
    assert isinstance(error, InsufficientCapital) and isinstance(error, PermanentExchangeError)
    assert error.code == "INSUFFICIENT_BALANCE" and error.details["binance_code"] == -2010
    assert await exchange.free_balance("USDT") == Decimal(10)  # the refusal made the cache read it again


async def test_minus_2010_duplicate_of_our_own_open_order_returns_it(
    binance: LocalBinance, exchange: BinanceExchange
) -> None:
    await _resting_sell(binance, exchange)
    first = binance.orders_with("cr-s1-1")[0]
    other = BinanceExchange(local_config(binance, user_stream=False))  # e.g. another worker
    await other.start()
    try:
        binance.set_balance("BTC", Decimal("0.01"))
        again = await other.limit_sell(
            binance.domain_symbol(BTC), "cr-s1-1", Decimal("0.01"), Decimal(101000), TimeInForce.GTC
        )
    finally:
        await other.close()
    assert again.status is OrderStatus.OPEN and again.exchange_order_id == str(first.order_id)
    assert [r.code for r in binance.requests_to("POST", "/api/v3/order")] == [None, -2010]
    assert len(binance.orders_with("cr-s1-1")) == 1


async def test_a_repeated_client_order_id_returns_the_first_order(
    binance: LocalBinance, exchange: BinanceExchange
) -> None:
    """Binance takes an id again once its order is filled: a caller's retry must not buy twice."""
    btc = binance.domain_symbol(BTC)
    first = await exchange.market_buy(btc, "cr-e1-1", quote_amount=Decimal(400))
    again = await exchange.market_buy(btc, "cr-e1-1", quote_amount=Decimal(400))
    assert again == first and len(binance.requests_to("POST", "/api/v3/order")) == 1
    restarted = BinanceExchange(local_config(binance, user_stream=False, query_before_send=True))
    await restarted.start()
    try:
        assert await restarted.market_buy(btc, "cr-e1-1", quote_amount=Decimal(400)) == first
    finally:
        await restarted.close()
    assert len(binance.requests_to("POST", "/api/v3/order")) == 1
    assert binance.balance("USDT")[0] == Decimal(9600)


async def test_cancel_a_resting_order(binance: LocalBinance, exchange: BinanceExchange) -> None:
    quantity = await _resting_sell(binance, exchange)
    cancelled = await exchange.cancel_order(binance.domain_symbol(BTC), "cr-s1-1")
    assert cancelled is not None and cancelled.status is OrderStatus.CANCELED
    assert cancelled.client_order_id == "cr-s1-1" and cancelled.executed_quantity == 0
    assert binance.balance("BTC") == (quantity, 0)
    assert exchange.watched_orders == []
    await asyncio.sleep(0.3)
    assert exchange._updates.empty()  # the caller has the outcome: the stream's report is not repeated


async def test_minus_2011_cancel_of_a_filled_order_returns_its_final_state(
    binance: LocalBinance, exchange: BinanceExchange
) -> None:
    btc = binance.domain_symbol(BTC)
    await _resting_sell(binance, exchange)
    await binance.set_price(BTC, Decimal(101000))
    gone = await exchange.cancel_order(btc, "cr-s1-1")
    assert binance.requests_to("DELETE", "/api/v3/order")[-1].code == -2011
    assert gone is not None and gone.status is OrderStatus.FILLED and gone.executed_quantity == Decimal("0.01")
    assert (gone.fee, gone.fee_asset) == (Decimal("1.01"), "USDT")
    assert await exchange.cancel_order(btc, "cr-never-sent") is None


async def test_partial_fill_then_cancel(binance: LocalBinance, exchange: BinanceExchange) -> None:
    btc = binance.domain_symbol(BTC)
    await _resting_sell(binance, exchange)
    await binance.set_price(BTC, Decimal(101000), quantity=Decimal("0.004"))
    partial = await next_update(exchange)
    assert partial.status is OrderStatus.PARTIALLY_FILLED and partial.executed_quantity == Decimal("0.004")
    assert partial.fee == Decimal("0.404")
    cancelled = await exchange.cancel_order(btc, "cr-s1-1")
    assert cancelled is not None and cancelled.status is OrderStatus.CANCELED
    assert cancelled.executed_quantity == Decimal("0.004") and cancelled.fee == Decimal("0.404")
    assert binance.balance("BTC") == (Decimal("0.006"), 0)


async def test_minus_1021_resyncs_the_clock_and_sends_once_more(
    binance: LocalBinance, exchange: BinanceExchange
) -> None:
    binance.clock_offset_ms = 5_000  # the server's clock jumps ahead of our recvWindow
    assert await exchange.balance("USDT") == Decimal(10000)
    assert [r.code for r in binance.requests_to("GET", "/api/v3/account")][-2:] == [-1021, None]
    assert binance.requests_to("GET", "/api/v3/time")


async def test_a_bad_signature_is_rejected(binance: LocalBinance) -> None:
    wrong = BinanceExchange(local_config(binance, api_secret="not-the-secret"))
    with pytest.raises(BinanceAuthError) as refused:
        await wrong.start()  # the first signed request: the account's commission
    assert refused.value.details["binance_code"] == -1022
    assert "not-the-secret" not in str(refused.value)
    assert binance.requests_to("GET", "/api/v3/account")[-1].code == -1022

    unsigned_only = BinanceExchange(local_config(binance, api_secret="not-the-secret", load_fee_rate=False))
    await unsigned_only.start()
    try:
        assert not await unsigned_only.wait_for_user_stream(0.5)  # the WebSocket API refuses it too
        assert any(r.code == -1022 for r in binance.requests if r.path == "userDataStream.subscribe.signature")
        with pytest.raises(BinanceAuthError):
            await unsigned_only.get_order(binance.domain_symbol(BTC), "cr-e1-1")
    finally:
        await unsigned_only.close()


async def test_an_unknown_api_key_is_rejected(binance: LocalBinance) -> None:
    wrong = BinanceExchange(local_config(binance, api_key="someone-else"))
    with pytest.raises(BinanceAuthError) as refused:
        await wrong.start()
    assert refused.value.details["binance_code"] == -2015


async def test_an_order_placed_before_a_restart_is_followed_by_watch(binance: LocalBinance) -> None:
    first = BinanceExchange(local_config(binance, user_stream=False))
    await first.start()
    try:
        await _resting_sell(binance, first)
    finally:
        await first.close()
    restarted = BinanceExchange(local_config(binance))
    await restarted.start()
    try:
        restarted.watch(BTC, "cr-s1-1")
        current = await next_update(restarted)
        assert current.status is OrderStatus.OPEN  # the state as found
        await binance.set_price(BTC, Decimal(101000))
        filled = await next_update(restarted)
        assert filled.status is OrderStatus.FILLED and filled.executed_quantity == Decimal("0.01")
    finally:
        await restarted.close()


@pytest.fixture
async def no_stream_exchange(binance: LocalBinance) -> AsyncIterator[BinanceExchange]:
    adapter = BinanceExchange(local_config(binance, user_stream=False))
    await adapter.start()
    yield adapter
    await adapter.close()


async def test_repr_and_errors_never_show_the_secret(
    binance: LocalBinance, no_stream_exchange: BinanceExchange
) -> None:
    assert binance.api_secret not in repr(no_stream_exchange)
    assert binance.api_secret not in repr(no_stream_exchange.config)
    assert binance.api_key not in repr(no_stream_exchange.config)


# ---------------------------------------------------------------- filters checked before sending (issue 19)


async def test_market_lot_size_refuses_a_market_order_over_its_max_before_sending(
    binance: LocalBinance, exchange: BinanceExchange
) -> None:
    """filters.md MARKET_LOT_SIZE (maxQty 100 BTC here): a MARKET sell over it, and a quote buy that
    would buy more than it at the average price, are refused with the reason — never split, never sent."""
    btc = binance.domain_symbol(BTC)
    binance.set_balance("BTC", Decimal(200))
    binance.set_balance("USDT", Decimal(20_000_000))
    for call in (
        exchange.market_sell(btc, "cr-l1-1", Decimal(150)),
        exchange.market_buy(btc, "cr-b1-1", quote_amount=Decimal(10_100_000)),  # about 101 BTC at 100,000
    ):
        with pytest.raises(BinanceFilterFailure) as refused:
            await call
        assert refused.value.details["filter"] == "MARKET_LOT_SIZE" and "MARKET_LOT_SIZE" in refused.value.message
    assert binance.requests_to("POST", "/api/v3/order") == []
    sold = await exchange.market_sell(btc, "cr-l1-2", Decimal(100))  # at the maximum: allowed
    assert sold.status is OrderStatus.FILLED


async def test_percent_price_by_side_is_checked_against_the_average_price(
    binance: LocalBinance, exchange: BinanceExchange
) -> None:
    """filters.md PERCENT_PRICE_BY_SIDE (askMultiplierUp 5): a LIMIT sell above 5 x the average price
    may be allowed later — `OrderNotAllowedNow`, nothing sent."""
    btc = binance.domain_symbol(BTC)
    binance.set_balance("BTC", Decimal(1))
    with pytest.raises(OrderNotAllowedNow) as waiting:
        await exchange.limit_sell(btc, "cr-s1-1", Decimal("0.01"), Decimal(500_001), TimeInForce.GTC)
    assert waiting.value.details["filter"] == "PERCENT_PRICE_BY_SIDE"
    assert waiting.value.details["allowed_to"] == "500000.00000000"
    assert binance.requests_to("GET", "/api/v3/avgPrice") and binance.requests_to("POST", "/api/v3/order") == []
    assert (await exchange.limit_sell(btc, "cr-s1-2", Decimal("0.01"), Decimal(500_000), TimeInForce.GTC)).status is (
        OrderStatus.OPEN
    )


async def test_max_num_orders_is_checked_before_sending(binance: LocalBinance) -> None:
    binance.set_filters(BTC, max_num_orders=2)
    binance.set_balance("BTC", Decimal(1))
    adapter = BinanceExchange(local_config(binance))
    await adapter.start()
    try:
        btc = binance.domain_symbol(BTC)
        for i in (1, 2):
            await adapter.limit_sell(btc, f"cr-s{i}-1", Decimal("0.01"), Decimal(101000), TimeInForce.GTC)
        with pytest.raises(OrderNotAllowedNow) as waiting:
            await adapter.limit_sell(btc, "cr-s3-1", Decimal("0.01"), Decimal(101000), TimeInForce.GTC)
        assert (waiting.value.details["filter"], waiting.value.details["open_orders"]) == ("MAX_NUM_ORDERS", 2)
        with pytest.raises(OrderNotAllowedNow):  # a MARKET order counts too ("New order (TRADE)")
            await adapter.market_sell(btc, "cr-l1-1", Decimal("0.01"))
    finally:
        await adapter.close()
    assert len(binance.requests_to("POST", "/api/v3/order")) == 2


async def test_notional_max_and_its_application_to_market_orders(binance: LocalBinance) -> None:
    """filters.md NOTIONAL: maxNotional applies to LIMIT orders, and to MARKET orders only with
    applyMaxToMarket (judged at the average price)."""
    binance.set_filters(BTC, max_notional=Decimal(50_000), apply_max_to_market=True)
    binance.set_balance("BTC", Decimal(10))
    adapter = BinanceExchange(local_config(binance, user_stream=False))
    await adapter.start()
    try:
        btc = binance.domain_symbol(BTC)
        for call in (
            adapter.limit_sell(btc, "cr-s1-1", Decimal(1), Decimal(100_000), TimeInForce.GTC),
            adapter.market_sell(btc, "cr-l1-1", Decimal("0.6")),
        ):
            with pytest.raises(BinanceFilterFailure) as refused:
                await call
            assert refused.value.details["filter"] == "NOTIONAL"
        assert binance.requests_to("POST", "/api/v3/order") == []
        assert (await adapter.market_sell(btc, "cr-l1-2", Decimal("0.4"))).status is OrderStatus.FILLED
    finally:
        await adapter.close()


async def test_a_market_buy_that_fills_at_several_prices_and_expires(
    binance: LocalBinance, exchange: BinanceExchange
) -> None:
    """faqs/market_orders_faq.md: the book runs out — two fills at two prices, the rest EXPIRED; the
    execution carries the fills aggregated (the quantity, the quote and the fees of both)."""
    binance.set_book(BTC, asks=[(Decimal(100000), Decimal("0.002")), (Decimal(100100), Decimal("0.001"))])
    bought = await exchange.market_buy(binance.domain_symbol(BTC), "cr-b1-1", quantity=Decimal("0.005"))
    assert (bought.status, bought.executed_quantity) == (OrderStatus.EXPIRED, Decimal("0.003"))
    assert bought.quote_quantity == Decimal("300.1")
    assert (bought.fee, bought.fee_asset) == (Decimal("0.000003"), "BTC")
    (order,) = binance.orders_with("cr-b1-1")
    assert [(t.price, t.qty) for t in order.fills] == [
        (Decimal(100000), Decimal("0.002")),
        (Decimal(100100), Decimal("0.001")),
    ]
    assert await exchange.get_order(binance.domain_symbol(BTC), "cr-b1-1") == bought  # the same, from myTrades


async def test_an_ioc_sell_partly_filled_ends_expired(binance: LocalBinance, exchange: BinanceExchange) -> None:
    binance.set_balance("BTC", Decimal("0.01"))
    binance.set_book(BTC, bids=[(Decimal(100500), Decimal("0.003")), (Decimal(99000), Decimal(1))])
    sold = await exchange.limit_sell(
        binance.domain_symbol(BTC), "cr-x1-1", Decimal("0.01"), Decimal(100000), TimeInForce.IOC
    )
    assert (sold.status, sold.executed_quantity, sold.average_price) == (
        OrderStatus.EXPIRED, Decimal("0.003"), Decimal(100500),
    )  # fmt: skip
    assert binance.balance("BTC") == (Decimal("0.007"), 0)


async def test_the_fee_rate_is_the_full_commission_of_a_taker_sell(binance: LocalBinance) -> None:
    """faqs/commission_faq.md: taker + seller of the standard commission (the account's
    `commissionRates`), and of the tax and special commissions (`GET /api/v3/account/commission`,
    read for a symbol when it is first traded)."""
    binance.set_commission(seller=Decimal("0.0004"))
    binance.set_commission("specialCommission", taker=Decimal("0.0003"), seller=Decimal("0.0002"))
    adapter = BinanceExchange(local_config(binance, user_stream=False))
    await adapter.start()
    try:
        btc = binance.domain_symbol(BTC)
        assert adapter.fee_rate(btc) == Decimal("0.0014")  # the account's standard rates
        bought = await adapter.market_buy(btc, "cr-b1-1", quote_amount=Decimal(100))
        assert adapter.fee_rate(btc) == Decimal("0.0019")  # + the symbol's special commission
        assert bought.fee == Decimal("0.00000130")  # 0.001 BTC x (taker 0.001 + special taker 0.0003)
    finally:
        await adapter.close()
    assert binance.requests_to("GET", "/api/v3/account/commission")[0].params["symbol"] == BTC


async def test_a_sell_floor_below_percent_price_by_side_is_raised_to_it(
    binance: LocalBinance, exchange: BinanceExchange
) -> None:
    """A limit below average * askMultiplierDown (0.2) would be refused; raised to that bound it is
    accepted and fills at the bids all the same — the floor is raised, never lowered."""
    binance.set_balance("BTC", Decimal(1))
    sold = await exchange.limit_sell(
        binance.domain_symbol(BTC), "cr-x1-1", Decimal("0.01"), Decimal(1000), TimeInForce.IOC
    )
    assert binance.requests_to("POST", "/api/v3/order")[-1].params["price"] == "20000"
    assert (sold.status, sold.average_price) == (OrderStatus.FILLED, Decimal(100000))
