"""The shapes the local Binance keeps and answers with: symbols and their filters, orders, trades,
errors and request records (rest-api.md "New order", "Query order", "Account trade list";
filters.md; errors.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any

from domain.model import Symbol

Q8 = Decimal("0.00000001")
ZERO = Decimal(0)
OPEN_STATUSES = ("NEW", "PARTIALLY_FILLED")


def fmt(value: Decimal) -> str:
    """Binance's decimal strings: 8 decimals."""
    return f"{value.quantize(Q8, rounding=ROUND_DOWN):f}"


class ApiError(Exception):
    def __init__(self, status: int, code: int, msg: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg
        self.headers = headers or {}


def mandatory(name: str) -> ApiError:
    return ApiError(400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


@dataclass
class SymbolSpec:
    """One exchangeInfo symbol and its filters (filters.md "Symbol filters"). The defaults are those
    Binance lists for the spot pairs here (exchangeInfo, 2025), as the paper exchange knows them
    (`domain.adapters.exchanges.paper.SEED_MARKET_FILTERS`)."""

    symbol: str
    base_asset: str
    quote_asset: str
    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal
    min_notional: Decimal
    min_price: Decimal = Decimal("0.01")
    max_price: Decimal = Decimal(1000000)
    max_qty: Decimal = Decimal(9000)
    base_asset_precision: int = 8
    quote_precision: int = 8
    quote_asset_precision: int = 8
    # Older symbols list MIN_NOTIONAL instead of NOTIONAL (filters.md); the adapter reads both.
    legacy_min_notional: bool = False
    # filters.md NOTIONAL: the maximum, and whether each bound applies to MARKET orders (judged at
    # the average price of the last `avg_price_mins` minutes).
    max_notional: Decimal = Decimal(9000000)
    apply_min_to_market: bool = True
    apply_max_to_market: bool = False
    avg_price_mins: int = 5
    # filters.md MARKET_LOT_SIZE (0: that bound is disabled); its maxQty follows the market's liquidity.
    market_min_qty: Decimal = ZERO
    market_max_qty: Decimal = Decimal(100)
    market_step_size: Decimal = ZERO
    # filters.md PERCENT_PRICE_BY_SIDE multipliers (bid = BUY, ask = SELL), None: not listed.
    percent_price: tuple[Decimal, Decimal, Decimal, Decimal] | None = (
        Decimal(5), Decimal("0.2"), Decimal(5), Decimal("0.2"),
    )  # fmt: skip
    # filters.md MAX_NUM_ORDERS: open orders of an account on the symbol.
    max_num_orders: int = 200
    # rest-api.md "Exchange information" / enums.md "Symbol status": TRADING, END_OF_DAY, HALT, BREAK.
    status: str = "TRADING"

    def exchange_info(self) -> dict[str, Any]:
        """rest-api.md "Exchange information": the symbol with its filters (filters.md formats)."""
        filters: list[dict[str, Any]] = [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": fmt(self.min_price),
                "maxPrice": fmt(self.max_price),
                "tickSize": fmt(self.tick_size),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": fmt(self.min_qty),
                "maxQty": fmt(self.max_qty),
                "stepSize": fmt(self.step_size),
            },
        ]
        if self.percent_price is not None:
            bid_up, bid_down, ask_up, ask_down = self.percent_price
            filters.append(
                {
                    "filterType": "PERCENT_PRICE_BY_SIDE",
                    "bidMultiplierUp": str(bid_up),
                    "bidMultiplierDown": str(bid_down),
                    "askMultiplierUp": str(ask_up),
                    "askMultiplierDown": str(ask_down),
                    "avgPriceMins": self.avg_price_mins,
                }
            )
        if self.legacy_min_notional:
            filters.append(
                {
                    "filterType": "MIN_NOTIONAL",
                    "minNotional": fmt(self.min_notional),
                    "applyToMarket": self.apply_min_to_market,
                    "avgPriceMins": self.avg_price_mins,
                }
            )
        else:
            filters.append(
                {
                    "filterType": "NOTIONAL",
                    "minNotional": fmt(self.min_notional),
                    "applyMinToMarket": self.apply_min_to_market,
                    "maxNotional": fmt(self.max_notional),
                    "applyMaxToMarket": self.apply_max_to_market,
                    "avgPriceMins": self.avg_price_mins,
                }
            )
        filters += [
            {"filterType": "ICEBERG_PARTS", "limit": 10},
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": fmt(self.market_min_qty),
                "maxQty": fmt(self.market_max_qty),
                "stepSize": fmt(self.market_step_size),
            },
            {"filterType": "TRAILING_DELTA", "minTrailingAboveDelta": 10, "maxTrailingAboveDelta": 2000,
             "minTrailingBelowDelta": 10, "maxTrailingBelowDelta": 2000},
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": self.max_num_orders},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
        ]  # fmt: skip
        return {
            "symbol": self.symbol,
            "status": self.status,
            "baseAsset": self.base_asset,
            "baseAssetPrecision": self.base_asset_precision,
            "quoteAsset": self.quote_asset,
            "quotePrecision": self.quote_precision,
            "quoteAssetPrecision": self.quote_asset_precision,
            "baseCommissionPrecision": 8,
            "quoteCommissionPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
            "icebergAllowed": True,
            "ocoAllowed": True,
            "otoAllowed": True,
            "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": True,
            "cancelReplaceAllowed": True,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": filters,
            "permissions": [],
            "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
        }

    def domain_symbol(self) -> Symbol:
        return Symbol(
            symbol=self.symbol,
            base_asset=self.base_asset,
            quote_asset=self.quote_asset,
            step_size=self.step_size,
            min_qty=self.min_qty,
            tick_size=self.tick_size,
            min_notional=self.min_notional,
        )


def default_symbols() -> list[SymbolSpec]:
    """Filters as Binance spot lists them for these pairs (exchangeInfo, 2025)."""
    return [
        SymbolSpec("BTCUSDT", "BTC", "USDT", Decimal("0.01"), Decimal("0.00001"), Decimal("0.00001"), Decimal(5)),
        SymbolSpec(
            "ETHUSDT",
            "ETH",
            "USDT",
            Decimal("0.01"),
            Decimal("0.0001"),
            Decimal("0.0001"),
            Decimal(5),
            market_max_qty=Decimal(2000),
        ),
        SymbolSpec("BNBUSDT", "BNB", "USDT", Decimal("0.01"), Decimal("0.001"), Decimal("0.001"), Decimal(5)),
    ]


@dataclass
class Trade:
    id: int
    order_id: int
    symbol: str
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    commission: Decimal
    commission_asset: str
    time: int
    is_buyer: bool
    is_maker: bool

    def fill(self) -> dict[str, Any]:
        return {
            "price": fmt(self.price),
            "qty": fmt(self.qty),
            "commission": fmt(self.commission),
            "commissionAsset": self.commission_asset,
            "tradeId": self.id,
        }

    def my_trade(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "id": self.id,
            "orderId": self.order_id,
            "orderListId": -1,
            "price": fmt(self.price),
            "qty": fmt(self.qty),
            "quoteQty": fmt(self.quote_qty),
            "commission": fmt(self.commission),
            "commissionAsset": self.commission_asset,
            "time": self.time,
            "isBuyer": self.is_buyer,
            "isMaker": self.is_maker,
            "isBestMatch": True,
        }


@dataclass
class Order:
    order_id: int
    symbol: str
    client_order_id: str
    side: str
    type: str
    time_in_force: str
    price: Decimal
    orig_qty: Decimal
    orig_quote_qty: Decimal
    time: int
    status: str = "NEW"
    executed_qty: Decimal = ZERO
    cum_quote: Decimal = ZERO
    update_time: int = 0
    fills: list[Trade] = field(default_factory=list)
    window: int = -1  # the order count interval it was placed in (rest-api.md "Unfilled Order Count")

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def remaining(self) -> Decimal:
        return self.orig_qty - self.executed_qty

    def common(self) -> dict[str, Any]:
        return {
            "price": fmt(self.price),
            "origQty": fmt(self.orig_qty),
            "executedQty": fmt(self.executed_qty),
            "origQuoteOrderQty": fmt(self.orig_quote_qty),
            "cummulativeQuoteQty": fmt(self.cum_quote),
            "status": self.status,
            "timeInForce": self.time_in_force,
            "type": self.type,
            "side": self.side,
        }

    def query(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": self.client_order_id,
            **self.common(),
            "stopPrice": fmt(ZERO),
            "icebergQty": fmt(ZERO),
            "time": self.time,
            "updateTime": self.update_time or self.time,
            "isWorking": True,
            "workingTime": self.time,
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }

    def ack(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": self.client_order_id,
            "transactTime": self.update_time or self.time,
        }

    def result(self) -> dict[str, Any]:
        return {
            **self.ack(),
            **self.common(),
            "workingTime": self.time,
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }

    def full(self) -> dict[str, Any]:
        return {**self.result(), "fills": [t.fill() for t in self.fills]}


@dataclass
class RequestRecord:
    at: float  # time.monotonic() on arrival
    method: str  # HTTP method, or "WS" for a WebSocket API request
    path: str  # URL path, or the WebSocket API method
    params: dict[str, str]
    status: int = 200
    code: int | None = None
