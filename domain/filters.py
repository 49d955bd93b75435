"""The exchange filters an order must pass before it is sent (SPEC §4 rule 11), as pure checks that
the Binance adapter (against exchangeInfo and the average price) and the paper exchange share, so
that paper and live refuse the same orders. Each check cites Binance's filters.md.

`FilterFailure`: the order can never pass as it is (change its quantity or price).
`OrderNotAllowedNow`: it may pass later, when the average price has moved or an open order has
closed; nothing is sent meanwhile.
"""

from __future__ import annotations

from decimal import Decimal

from domain import channel as ch
from domain.errors import FilterFailure, OrderNotAllowedNow
from domain.model import Side, SymbolFilters

ZERO = Decimal(0)


def _plain(value: Decimal) -> str:
    return f"{value.normalize():f}"


def on_step(value: Decimal, step: Decimal) -> bool:
    """filters.md LOT_SIZE / PRICE_FILTER / MARKET_LOT_SIZE: `value % step == 0` (a zero step
    disables the rule)."""
    return step <= 0 or value % step == 0


def check_market_lot(quantity: Decimal, filters: SymbolFilters, what: str) -> None:
    """filters.md MARKET_LOT_SIZE: a MARKET order's quantity >= minQty, <= maxQty and a multiple of
    stepSize (each disabled at 0)."""
    f = filters
    if f.market_min_qty > 0 and quantity < f.market_min_qty:
        raise FilterFailure(
            f"{what}: quantity {_plain(quantity)} is below the minimum {_plain(f.market_min_qty)} of a market "
            "order (MARKET_LOT_SIZE).",
            filter="MARKET_LOT_SIZE",
        )
    if f.market_max_qty > 0 and quantity > f.market_max_qty:
        raise FilterFailure(
            f"{what}: quantity {_plain(quantity)} is above the maximum {_plain(f.market_max_qty)} of a market "
            "order (MARKET_LOT_SIZE).",
            filter="MARKET_LOT_SIZE",
            max_quantity=str(f.market_max_qty),
        )
    if not on_step(quantity, f.market_step_size):
        raise FilterFailure(
            f"{what}: quantity {_plain(quantity)} is not a multiple of the market order step "
            f"{_plain(f.market_step_size)} (MARKET_LOT_SIZE).",
            filter="MARKET_LOT_SIZE",
        )


def check_market_quote(quote: Decimal, average_price: Decimal, filters: SymbolFilters, what: str) -> None:
    """MARKET_LOT_SIZE for a MARKET buy by quote amount (`quoteOrderQty`): the quantity it buys at
    about the average price must not exceed maxQty — such an order is refused, never split (one
    entry is one order and one position, rule 2)."""
    if filters.market_max_qty > 0 and average_price > 0:
        estimated = quote / average_price
        if estimated > filters.market_max_qty:
            raise FilterFailure(
                f"{what}: {_plain(quote)} buys about {_plain(estimated.quantize(Decimal('1e-8')))} at the average "
                f"price {_plain(average_price)}, above the maximum {_plain(filters.market_max_qty)} of a market "
                "order (MARKET_LOT_SIZE).",
                filter="MARKET_LOT_SIZE",
                max_quantity=str(filters.market_max_qty),
            )


def check_notional(notional: Decimal, filters: SymbolFilters, what: str, *, market: bool) -> None:
    """filters.md NOTIONAL: `minNotional <= price * quantity <= maxNotional`; for a MARKET order
    the average price stands for its price, and each bound applies only if `applyMinToMarket` /
    `applyMaxToMarket` says so."""
    f = filters
    if (not market or f.apply_min_to_market) and notional < f.min_notional:
        raise FilterFailure(
            f"{what}: order value {_plain(notional)} is below the exchange's minimum {_plain(f.min_notional)} "
            "(NOTIONAL).",
            filter="MIN_NOTIONAL",
        )
    if f.max_notional > 0 and (not market or f.apply_max_to_market) and notional > f.max_notional:
        raise FilterFailure(
            f"{what}: order value {_plain(notional)} is above the exchange's maximum {_plain(f.max_notional)} "
            "(NOTIONAL).",
            filter="NOTIONAL",
        )


def percent_price_range(side: Side, average_price: Decimal, filters: SymbolFilters) -> tuple[Decimal, Decimal] | None:
    """filters.md PERCENT_PRICE_BY_SIDE: the prices a limit order of that side may have now."""
    pp = filters.percent_price
    if pp is None or average_price <= 0:
        return None
    if side is Side.BUY:
        return average_price * pp.bid_down, average_price * pp.bid_up
    return average_price * pp.ask_down, average_price * pp.ask_up


def raise_to_allowed_sell_price(price: Decimal, average_price: Decimal, filters: SymbolFilters) -> Decimal:
    """PERCENT_PRICE_BY_SIDE's lower bound for a SELL, `avg * askMultiplierDown`: a limit below it is
    refused, yet such a sell would fill at once against bids far above it. Raising the limit to the
    bound (on the tick) lets it through and changes nothing else — and a floor is only ever raised,
    so no sell goes below its minimum sell price (rule 3)."""
    allowed = percent_price_range(Side.SELL, average_price, filters)
    if allowed is None:
        return price
    return max(price, ch.round_up_to_step(allowed[0], filters.tick_size))


def check_percent_price(side: Side, price: Decimal, average_price: Decimal, filters: SymbolFilters, what: str) -> None:
    """filters.md PERCENT_PRICE_BY_SIDE. A price outside the range may be allowed later, once the
    average price has moved towards it: `OrderNotAllowedNow`."""
    allowed = percent_price_range(side, average_price, filters)
    if allowed is None:
        return
    low, high = allowed
    if low <= price <= high:
        return
    where = "above" if price > high else "below"
    bound = high if price > high else low
    raise OrderNotAllowedNow(
        f"{what}: the price {_plain(price)} is {where} {_plain(bound)}, the limit the exchange allows now "
        f"around the average price {_plain(average_price)} (PERCENT_PRICE_BY_SIDE); it is placed once the "
        "average price allows it.",
        filter="PERCENT_PRICE_BY_SIDE",
        price=str(price),
        average_price=str(average_price),
        allowed_from=str(low),
        allowed_to=str(high),
    )


def check_open_orders(open_orders: int, filters: SymbolFilters, symbol: str, what: str) -> None:
    """filters.md MAX_NUM_ORDERS: the account may have at most `maxNumOrders` open orders on the
    symbol, and a new order counts as one ("New order (TRADE)": it adds 1 to MAX_NUM_ORDERS). It may
    be allowed once an open order fills or is cancelled: `OrderNotAllowedNow`."""
    limit = filters.max_num_orders
    if limit > 0 and open_orders >= limit:
        raise OrderNotAllowedNow(
            f"{what}: {open_orders} orders are already open on {symbol}, the exchange's maximum (MAX_NUM_ORDERS); "
            "it is placed once one of them closes.",
            filter="MAX_NUM_ORDERS",
            open_orders=open_orders,
            max_num_orders=limit,
        )
