"""The exchange filters checked before sending (`domain.filters`, Binance's filters.md; issue 19) and
the paper exchange applying them as the Binance adapter does, so that paper and live refuse the
same orders (SPEC §4 rule 11)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from domain import filters as flt
from domain.adapters.exchanges.paper import SEED_MARKET_FILTERS, SEED_SYMBOLS, PaperExchange
from domain.adapters.market.prices import MemoryPriceBook
from domain.errors import FilterFailure, OrderNotAllowedNow, PermanentExchangeError
from domain.model import PercentPriceBySide, Side, Symbol, SymbolFilters, TimeInForce

FILTERS = SymbolFilters(
    step_size=Decimal("0.00001"),
    min_qty=Decimal("0.00001"),
    tick_size=Decimal("0.01"),
    min_notional=Decimal(5),
    market_min_qty=Decimal("0.001"),
    market_max_qty=Decimal(100),
    market_step_size=Decimal("0.001"),
    max_notional=Decimal(1_000_000),
    apply_min_to_market=False,
    apply_max_to_market=True,
    percent_price=PercentPriceBySide(Decimal(2), Decimal("0.5"), Decimal("1.2"), Decimal("0.8")),
    max_num_orders=3,
)


def test_steps_are_multiples_of_the_step() -> None:
    """filters.md: `value % step == 0`, not an offset from the minimum; a zero step is no rule."""
    assert flt.on_step(Decimal("0.00004"), Decimal("0.00002"))
    assert not flt.on_step(Decimal("0.00005"), Decimal("0.00002"))
    assert flt.on_step(Decimal("0.123456789"), Decimal(0))


def test_market_lot_size() -> None:
    flt.check_market_lot(Decimal("100"), FILTERS, "Sell")
    for quantity in (Decimal("100.001"), Decimal("0.0005"), Decimal("1.0005")):
        with pytest.raises(FilterFailure) as refused:
            flt.check_market_lot(quantity, FILTERS, "Sell")
        assert refused.value.details["filter"] == "MARKET_LOT_SIZE"
    flt.check_market_quote(Decimal(5_000_000), Decimal(50_000), FILTERS, "Buy")  # 100 at the average
    with pytest.raises(FilterFailure, match="MARKET_LOT_SIZE"):
        flt.check_market_quote(Decimal(5_000_001), Decimal(50_000), FILTERS, "Buy")


def test_notional_bounds_and_market_orders() -> None:
    """filters.md NOTIONAL: each bound applies to a MARKET order only if its flag says so."""
    with pytest.raises(FilterFailure):
        flt.check_notional(Decimal(4), FILTERS, "Sell", market=False)
    flt.check_notional(Decimal(4), FILTERS, "Sell", market=True)  # applyMinToMarket false
    for market in (False, True):
        with pytest.raises(FilterFailure) as refused:
            flt.check_notional(Decimal(1_000_001), FILTERS, "Sell", market=market)
        assert refused.value.details["filter"] == "NOTIONAL"


def test_a_sell_floor_below_the_range_is_raised_to_it_never_lowered() -> None:
    assert flt.raise_to_allowed_sell_price(Decimal("70.001"), Decimal(100), FILTERS) == Decimal("80.00")
    assert flt.raise_to_allowed_sell_price(Decimal("90.01"), Decimal(100), FILTERS) == Decimal("90.01")


def test_percent_price_by_side_may_pass_later() -> None:
    """filters.md PERCENT_PRICE_BY_SIDE: SELL within [avg * askDown, avg * askUp], BUY within the bid
    multipliers; outside, `OrderNotAllowedNow` (the average price moves)."""
    assert flt.percent_price_range(Side.SELL, Decimal(100), FILTERS) == (Decimal("80.0"), Decimal("120.0"))
    assert flt.percent_price_range(Side.BUY, Decimal(100), FILTERS) == (Decimal("50.0"), Decimal(200))
    flt.check_percent_price(Side.SELL, Decimal(120), Decimal(100), FILTERS, "Sell")
    with pytest.raises(OrderNotAllowedNow) as waiting:
        flt.check_percent_price(Side.SELL, Decimal("120.01"), Decimal(100), FILTERS, "Sell")
    assert waiting.value.details["filter"] == "PERCENT_PRICE_BY_SIDE" and "above 120" in waiting.value.message
    assert isinstance(waiting.value, FilterFailure) and isinstance(waiting.value, PermanentExchangeError)
    flt.check_percent_price(Side.SELL, Decimal(10**9), Decimal(100), SymbolFilters(*[Decimal(1)] * 4), "Sell")


def test_max_num_orders() -> None:
    flt.check_open_orders(2, FILTERS, "BTCUSDT", "Sell")
    with pytest.raises(OrderNotAllowedNow) as waiting:
        flt.check_open_orders(3, FILTERS, "BTCUSDT", "Sell")
    assert (waiting.value.details["filter"], waiting.value.details["max_num_orders"]) == ("MAX_NUM_ORDERS", 3)


# ---------------------------------------------------------------- the paper exchange


@pytest.fixture
def paper() -> tuple[PaperExchange, MemoryPriceBook, Symbol]:
    book = MemoryPriceBook()
    book.set("BTCUSDT", Decimal(100000))
    btc = Symbol(**SEED_SYMBOLS[0])  # type: ignore[arg-type]
    return PaperExchange(book), book, btc


def test_the_paper_exchange_knows_the_market_filters_of_the_seeded_symbols(
    paper: tuple[PaperExchange, MemoryPriceBook, Symbol],
) -> None:
    exchange, _, btc = paper
    filters = exchange.filters(btc)
    assert (filters.step_size, filters.min_notional) == (btc.step_size, btc.min_notional)  # the symbol's own
    assert filters.market_max_qty == SEED_MARKET_FILTERS["BTCUSDT"].market_max_qty == Decimal(100)
    assert filters.percent_price is not None and filters.percent_price.ask_up == Decimal(5)


async def test_the_paper_exchange_refuses_a_market_order_over_market_lot_size(
    paper: tuple[PaperExchange, MemoryPriceBook, Symbol],
) -> None:
    exchange, _, btc = paper
    for call in (
        exchange.market_buy(btc, "cr-b1-1", quote_amount=Decimal(10_100_000)),  # 101 BTC
        exchange.market_sell(btc, "cr-l1-1", Decimal(101)),
    ):
        with pytest.raises(PermanentExchangeError) as refused:
            await call
        assert refused.value.details["filter"] == "MARKET_LOT_SIZE"
    assert (await exchange.market_sell(btc, "cr-l1-2", Decimal(100))).executed_quantity == Decimal(100)


async def test_the_paper_exchange_applies_percent_price_by_side(
    paper: tuple[PaperExchange, MemoryPriceBook, Symbol],
) -> None:
    """Against the last price (the average price of the paper market), as Binance does against its
    average, when an IOC sell is placed: a floor below 0.2 x the market is raised to it (the sell
    fills at the market all the same), one above 5 x is not allowed. (A GTC sell on paper stands for
    one resting on Binance, judged when it was scheduled.)"""
    exchange, _, btc = paper
    low = await exchange.limit_sell(btc, "cr-x1-1", Decimal("0.01"), Decimal("19999.99"), TimeInForce.IOC)
    assert (low.executed_quantity, low.average_price) == (Decimal("0.01"), Decimal(100000))  # floor raised to 20,000
    with pytest.raises(OrderNotAllowedNow):  # above 5 x the average price
        await exchange.limit_sell(btc, "cr-x1-3", Decimal("0.01"), Decimal("500000.01"), TimeInForce.IOC)
