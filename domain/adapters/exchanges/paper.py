"""The paper exchange: simulated fills against the last known price, with Binance's fee and filter
rules (SPEC §2). The buy fee is taken from the base asset received, the sell fee from the quote
proceeds, as Binance does without BNB. The filters are those the Binance adapter checks before
sending (`domain.filters`): LOT_SIZE and NOTIONAL from the symbol, and for the seeded symbols
MARKET_LOT_SIZE and PERCENT_PRICE_BY_SIDE as Binance lists them — judged against the last price,
which stands for the average price here — so that paper refuses what live refuses.

A paper account may hold balances (`balances`): then, as on Binance (SPEC §4b), an order whose
spent asset's free balance does not cover it is refused before it fills (`InsufficientBalance`,
with the Binance adapter's message), and fills move the balances as Binance's do. Without them
(the default) the account has no limit."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import TypedDict

from domain import channel as ch
from domain import filters as flt
from domain.errors import FilterFailure, InsufficientBalance, NoPrice, PermanentExchangeError
from domain.model import OrderStatus, PercentPriceBySide, Side, Symbol, SymbolFilters, TimeInForce
from domain.numbers import plain
from domain.ports import Execution, PriceSource


class SeedSymbol(TypedDict):
    """The fields of a `Symbol` that a seeded symbol sets (`Symbol(**row)`)."""

    symbol: str
    base_asset: str
    quote_asset: str
    step_size: Decimal
    min_qty: Decimal
    tick_size: Decimal
    min_notional: Decimal


# Exchange filters of the seeded symbols, as Binance spot lists them (exchangeInfo, 2025).
SEED_SYMBOLS: tuple[SeedSymbol, ...] = (
    {
        "symbol": "BTCUSDT",
        "base_asset": "BTC",
        "quote_asset": "USDT",
        "step_size": Decimal("0.00001"),
        "min_qty": Decimal("0.00001"),
        "tick_size": Decimal("0.01"),
        "min_notional": Decimal(5),
    },
    {
        "symbol": "ETHUSDT",
        "base_asset": "ETH",
        "quote_asset": "USDT",
        "step_size": Decimal("0.0001"),
        "min_qty": Decimal("0.0001"),
        "tick_size": Decimal("0.01"),
        "min_notional": Decimal(5),
    },
)


# The seeded symbols' filters that `Symbol` does not store (exchangeInfo, 2025): LOT_SIZE's maximum,
# MARKET_LOT_SIZE (its maxQty moves with the market's liquidity; these are of the size Binance lists),
# NOTIONAL's maximum, PERCENT_PRICE_BY_SIDE and MAX_NUM_ORDERS. The local Binance of the tests lists
# the same, so that paper and live agree.
_SPOT_PERCENT_PRICE = PercentPriceBySide(Decimal(5), Decimal("0.2"), Decimal(5), Decimal("0.2"), 5)
SEED_MARKET_FILTERS: dict[str, SymbolFilters] = {
    name: SymbolFilters(
        step_size=Decimal(0),
        min_qty=Decimal(0),
        tick_size=Decimal(0),
        min_notional=Decimal(0),
        max_qty=Decimal(9000),
        market_max_qty=market_max_qty,
        max_notional=Decimal(9000000),
        percent_price=_SPOT_PERCENT_PRICE,
        max_num_orders=200,
    )
    for name, market_max_qty in (("BTCUSDT", Decimal(100)), ("ETHUSDT", Decimal(2000)))
}


@dataclass
class _PaperOrder:
    execution: Execution


class PaperExchange:
    """Fills MARKET orders at the current price. A LIMIT sell is filled as Binance fills a new one:
    at or below the current price it is marketable and fills at once at that price (never below
    its limit); above it, nothing fills (IOC or GTC alike: orders do not rest here). The resting
    LIMIT sell of a scheduled position is simulated (`SimulatedRestingSells`): placed when it is
    marketable, else sent by the engine on the tick that reaches its price and filled at its limit
    by `fill_resting_sell` (SPEC §4 rules 6, 10)."""

    name = "paper"
    rests_limit_orders = False

    def __init__(
        self,
        prices: PriceSource,
        fee_rate: Decimal = ch.DEFAULT_FEE_RATE,
        market_filters: Mapping[str, SymbolFilters] = SEED_MARKET_FILTERS,
        balances: Mapping[str, Decimal] | None = None,
    ) -> None:
        self.prices = prices
        self._fee_rate = fee_rate
        self._market_filters = market_filters
        # Free balance by asset (None: an account without limits). Orders do not rest here, so
        # nothing is ever locked: free is all there is.
        self.balances: dict[str, Decimal] | None = None if balances is None else dict(balances)
        self._orders: dict[str, _PaperOrder] = {}
        self._ids = itertools.count(1)

    async def for_client(self, client_id: int) -> PaperExchange:
        """One simulated account serves every client."""
        return self

    def fee_rate(self, symbol: Symbol) -> Decimal:
        return self._fee_rate

    async def _price(self, symbol: Symbol) -> tuple[Decimal, datetime]:
        quote = await self.prices.current_price(symbol)
        if quote is None:
            raise NoPrice(f"No market price is known for {symbol.symbol} yet.", symbol=symbol.symbol)
        return quote[0], datetime.now(UTC)

    def _fill(
        self,
        symbol: Symbol,
        coid: str,
        side: Side,
        qty: Decimal,
        price: Decimal,
        at: datetime,
        status: OrderStatus = OrderStatus.FILLED,
    ) -> Execution:
        if coid in self._orders:
            # Same client order id: Binance refuses a duplicate; we return the original fill.
            return self._orders[coid].execution
        quote = qty * price
        if side is Side.BUY:
            fee, fee_asset = ch.commission(qty * self._fee_rate), symbol.base_asset
        else:
            fee, fee_asset = ch.commission(quote * self._fee_rate), symbol.quote_asset
        execution = Execution(
            client_order_id=coid,
            exchange_order_id=f"paper-{next(self._ids)}",
            status=status if qty > 0 else OrderStatus.EXPIRED,
            side=side,
            executed_quantity=qty,
            quote_quantity=quote,
            fee=fee if qty > 0 else Decimal(0),
            fee_asset=fee_asset,
            executed_at=at,
        )
        self._orders[coid] = _PaperOrder(execution)
        if self.balances is not None and qty > 0:
            # As Binance books a fill: a buy spends the quote and receives the base less its fee, a
            # sell spends the base and receives the quote less its fee.
            if side is Side.BUY:
                self._move(symbol.quote_asset, -quote)
                self._move(symbol.base_asset, qty - fee)
            else:
                self._move(symbol.base_asset, -qty)
                self._move(symbol.quote_asset, quote - fee)
        return execution

    def _move(self, asset: str, delta: Decimal) -> None:
        assert self.balances is not None
        self.balances[asset] = self.balances.get(asset, Decimal(0)) + delta

    def free_balance(self, asset: str) -> Decimal | None:
        """The account's free balance of `asset` (None: the account has no limit)."""
        return None if self.balances is None else self.balances.get(asset, Decimal(0))

    def _check_balance(self, asset: str, needed: Decimal, coid: str, what: str) -> None:
        """SPEC §4b, where the account holds balances: the free balance of the asset the order spends
        covers it, or nothing fills — refused as the Binance adapter refuses it before sending (same
        error, same message). An order already placed under `coid` is not judged again."""
        free = self.free_balance(asset)
        if free is None or free >= needed or coid in self._orders:
            return
        raise InsufficientBalance(
            f"{what}: insufficient balance: it needs {plain(needed)} {asset}, the account's free balance is "
            f"{plain(free)} {asset}.",
            asset=asset,
            needed=plain(needed),
            free=plain(free),
            client_order_id=coid,
            before_sending=True,
        )

    def filters(self, symbol: Symbol) -> SymbolFilters:
        """The symbol's stored filters, with those only exchangeInfo lists where they are known."""
        extra = self._market_filters.get(symbol.symbol)
        if extra is None:
            return symbol.filters
        return replace(
            extra,
            step_size=symbol.step_size,
            min_qty=symbol.min_qty,
            tick_size=symbol.tick_size,
            min_notional=symbol.min_notional,
        )

    def _check(self, symbol: Symbol, qty: Decimal, price: Decimal, *, market: bool = False) -> None:
        try:
            ch.check_order_filters(qty, price, symbol.filters, "Order")
            if market:
                flt.check_market_lot(qty, self.filters(symbol), "Market order")
        except FilterFailure as e:
            raise PermanentExchangeError(e.message, **e.details) from e

    async def market_buy(
        self,
        symbol: Symbol,
        client_order_id: str,
        *,
        quote_amount: Decimal | None = None,
        quantity: Decimal | None = None,
    ) -> Execution:
        price, at = await self._price(symbol)
        if quote_amount is not None:
            qty = ch.buy_quantity_for_quote(quote_amount, price, symbol.filters)
        else:
            assert quantity is not None
            qty = quantity
        self._check(symbol, qty, price, market=True)
        # What Binance judges: the quote order quantity, or the quantity at the (average) price.
        needed = quote_amount if quote_amount is not None else qty * price
        self._check_balance(symbol.quote_asset, needed, client_order_id, f"Buy {client_order_id}")
        return self._fill(symbol, client_order_id, Side.BUY, qty, price, at)

    async def market_sell(self, symbol: Symbol, client_order_id: str, quantity: Decimal) -> Execution:
        price, at = await self._price(symbol)
        self._check(symbol, quantity, price, market=True)
        self._check_balance(symbol.base_asset, quantity, client_order_id, f"Sell {client_order_id}")
        return self._fill(symbol, client_order_id, Side.SELL, quantity, price, at)

    async def limit_sell(
        self,
        symbol: Symbol,
        client_order_id: str,
        quantity: Decimal,
        price: Decimal,
        time_in_force: TimeInForce,
    ) -> Execution:
        market, at = await self._price(symbol)
        self._check(symbol, quantity, price)
        if time_in_force is TimeInForce.IOC:
            # PERCENT_PRICE_BY_SIDE is judged when an order is placed: an IOC sell now (its floor
            # raised to the bound, as the Binance adapter does). A GTC sell here stands for one resting
            # on Binance since it was scheduled, when it was judged.
            filters = self.filters(symbol)
            price = flt.raise_to_allowed_sell_price(price, market, filters)
            flt.check_percent_price(Side.SELL, price, market, filters, f"Sell {client_order_id}")
        self._check_balance(symbol.base_asset, quantity, client_order_id, f"Sell {client_order_id}")
        if market < price:
            return self._fill(symbol, client_order_id, Side.SELL, Decimal(0), price, at)
        # Marketable (rule 6): it takes the bids at the market's price, which is at or above its limit.
        return self._fill(symbol, client_order_id, Side.SELL, quantity, market, at)

    async def market_price(self, symbol: Symbol) -> Decimal | None:
        """The current price, which a marketable order fills at (None before the first one)."""
        quote = await self.prices.current_price(symbol)
        return None if quote is None else quote[0]

    async def fill_resting_sell(
        self, symbol: Symbol, client_order_id: str, quantity: Decimal, price: Decimal
    ) -> Execution:
        """The resting LIMIT sell of a scheduled position, which the market has reached: it fills at
        its limit, even when the price jumped past it (rules 6, 10). Nothing fills while the market
        is under the limit. Its balance is not judged again: on Binance the order has held its
        quantity since it was placed."""
        market, at = await self._price(symbol)
        self._check(symbol, quantity, price)
        filled = quantity if market >= price else Decimal(0)
        return self._fill(symbol, client_order_id, Side.SELL, filled, price, at)

    async def cancel_order(self, symbol: Symbol, client_order_id: str) -> Execution | None:
        order = self._orders.get(client_order_id)
        return order.execution if order else None

    async def get_order(self, symbol: Symbol, client_order_id: str) -> Execution | None:
        order = self._orders.get(client_order_id)
        return order.execution if order else None
