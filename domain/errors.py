"""The domain's errors. Each carries a stable `code` that the API exposes as `extensions.code`."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    code = "DOMAIN_ERROR"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(DomainError):
    code = "NOT_FOUND"


class ValidationError(DomainError):
    code = "VALIDATION"


class InsufficientCapital(DomainError):
    code = "INSUFFICIENT_CAPITAL"


class WouldSellAtLoss(DomainError):
    code = "WOULD_SELL_AT_LOSS"


class FilterFailure(DomainError):
    """An order that cannot meet the exchange's filters (LOT_SIZE, NOTIONAL, PRICE_FILTER)."""

    code = "FILTER_FAILURE"


class InvalidState(DomainError):
    """The operation does not apply to the object's current state (e.g. selling a closed position)."""

    code = "INVALID_STATE"


class NoPrice(DomainError):
    """No known market price for the symbol yet."""

    code = "NO_PRICE"


class ExchangeError(DomainError):
    code = "EXCHANGE_ERROR"


class TemporaryExchangeError(ExchangeError):
    """Worth retrying later (timeouts, 5xx, rate limits)."""

    code = "EXCHANGE_TEMPORARY"


class OrderOutcomeUnknown(TemporaryExchangeError):
    """An order was maybe placed and the exchange could not confirm it: it is recorded as UNKNOWN and
    the reconciliation job settles it (it is never sent again on its absence alone)."""

    code = "EXCHANGE_ORDER_UNKNOWN"


class PermanentExchangeError(ExchangeError):
    """The exchange refused the request; retrying the same request will not help."""

    code = "EXCHANGE_REJECTED"


class InsufficientBalance(PermanentExchangeError):
    """The exchange account's free balance of the asset an order spends (the quote asset for a buy,
    the base asset for a sell) does not cover it (SPEC §4b): found in the cached balance before
    sending, or answered by the exchange (Binance -2010)."""

    code = "INSUFFICIENT_BALANCE"


class OrderNotAllowedNow(FilterFailure, PermanentExchangeError):
    """An order the exchange's filters refuse now but may accept later: a price outside
    PERCENT_PRICE_BY_SIDE's range around the moving average price, or a symbol at MAX_NUM_ORDERS open
    orders. Nothing was placed; a resting sell is placed once the filter lets it through."""

    code = "FILTER_FAILURE"


class Unauthenticated(DomainError):
    """Missing, invalid or expired credentials or tokens. Deliberately vague: it never says which."""

    code = "UNAUTHENTICATED"


class SessionRevoked(Unauthenticated):
    """A refresh token presented again after its rotation: the whole session was revoked.
    `session_id` tells the API which session's access tokens to end too; it is never shown."""

    def __init__(self, message: str, session_id: str) -> None:
        super().__init__(message)
        self.session_id = session_id


class Busy(DomainError):
    """The server runs as much of this expensive work as it allows at once: retry later."""

    code = "BUSY"
