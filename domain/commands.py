"""Commands: what a user (or the engine) asks the domain to do. Imperative names, plain data.

`client_id` is the client on whose behalf the command runs; objects of another client are
reported as not found. `None` means a trusted system caller (CLI, engine).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from domain.channel import Channel


@dataclass(frozen=True)
class CreateClient:
    name: str


@dataclass(frozen=True)
class CreateStrategy:
    client_id: int
    symbol: str
    name: str
    channel: Channel
    is_active: bool = True


class _ChannelChanges:
    """A command that changes some of a channel's parameters (`None` keeps one): what they give."""

    base_price: Decimal | None
    top_price: Decimal | None
    capital_percentage: Decimal | None
    buy_threshold: Decimal | None
    sell_threshold: Decimal | None
    min_profit: Decimal | None
    timeframe: str | None

    def channel_from(self, current: Channel) -> Channel:
        """The channel asked for, starting from `current`."""
        return current.with_changes(
            base=self.base_price, top=self.top_price, capital_percentage=self.capital_percentage,
            buy_threshold=self.buy_threshold, sell_threshold=self.sell_threshold, min_profit=self.min_profit,
            timeframe=self.timeframe,
        )  # fmt: skip


@dataclass(frozen=True)
class UpdateStrategy(_ChannelChanges):
    """Change a strategy's channel or parameters; `None` keeps a value. Re-arms it (rule 5)."""

    strategy_id: int
    client_id: int | None = None
    name: str | None = None
    base_price: Decimal | None = None
    top_price: Decimal | None = None
    capital_percentage: Decimal | None = None
    buy_threshold: Decimal | None = None
    sell_threshold: Decimal | None = None
    min_profit: Decimal | None = None
    timeframe: str | None = None


@dataclass(frozen=True)
class SetStrategyActive:
    strategy_id: int
    is_active: bool
    client_id: int | None = None


@dataclass(frozen=True)
class AllocateCapital:
    strategy_id: int
    amount: Decimal
    client_id: int | None = None
    note: str | None = None


@dataclass(frozen=True)
class WithdrawProfit:
    strategy_id: int
    amount: Decimal
    client_id: int | None = None


@dataclass(frozen=True)
class WithdrawCapital:
    """Take principal back from a strategy: at most its free principal (rule 2)."""

    strategy_id: int
    amount: Decimal
    client_id: int | None = None


@dataclass(frozen=True)
class ArchiveStrategy:
    """Retire a strategy that holds no open or scheduled position."""

    strategy_id: int
    client_id: int | None = None


@dataclass(frozen=True)
class Buy:
    """Rule 8: a manual buy, by quote amount or by base quantity (exactly one)."""

    strategy_id: int
    quote_amount: Decimal | None = None
    quantity: Decimal | None = None
    client_id: int | None = None


@dataclass(frozen=True)
class Sell:
    """Rule 8: sell a position now (never below min_sell unless `accept_loss`), or schedule it."""

    position_id: int
    is_scheduled: bool = False
    accept_loss: bool = False
    client_id: int | None = None


@dataclass(frozen=True)
class ScheduleSell:
    """Rule 6: schedule a position at its min_sell for `min_profit` (the position's own by default)."""

    position_id: int
    min_profit: Decimal | None = None
    client_id: int | None = None


@dataclass(frozen=True)
class CancelScheduledSell:
    position_id: int
    client_id: int | None = None


@dataclass(frozen=True)
class ProcessPriceMove:
    """Apply rules 1, 4 and 6 to a price update `prev -> cur` of a symbol."""

    symbol_id: int
    prev: Decimal
    cur: Decimal
    at: datetime
    # Only these strategies (the engine's index says which a move concerns); None: all of the symbol.
    strategy_ids: frozenset[int] | None = None


@dataclass(frozen=True)
class ProcessCandleClose:
    """Apply rule 5 to a closed candle of `interval`."""

    symbol_id: int
    interval: str
    close: Decimal
    close_time: datetime
    strategy_ids: frozenset[int] | None = None


# ---------------------------------------------------------------- credentials and sessions


@dataclass(frozen=True)
class CreateClientWithCredentials:
    """A new client with a fresh API key and secret (the secret is shown once)."""

    name: str


@dataclass(frozen=True)
class IssueCredentials:
    """Replace a client's API key and secret; every session of the client ends."""

    client_id: int


@dataclass(frozen=True)
class Login:
    api_key: str
    api_secret: str


@dataclass(frozen=True)
class RefreshSession:
    refresh_token: str


@dataclass(frozen=True)
class Logout:
    refresh_token: str
    client_id: int | None = None


# ---------------------------------------------------------------- the client's exchange account


@dataclass(frozen=True)
class SetExchangeKeys:
    """Trade for the client on Binance with its own API key and secret (stored encrypted)."""

    client_id: int
    api_key: str = field(repr=False)
    api_secret: str = field(repr=False)


@dataclass(frozen=True)
class ClearExchangeKeys:
    """Forget the client's exchange keys: it trades on paper again."""

    client_id: int


# ---------------------------------------------------------------- emergency stop


@dataclass(frozen=True)
class PauseTrading:
    """Stop every new entry of a client at once; with `cancel_scheduled`, also cancel its scheduled
    sells and hold its automatic exits until trading resumes."""

    client_id: int
    cancel_scheduled: bool = False


@dataclass(frozen=True)
class ResumeTrading:
    """End a client's trading pause."""

    client_id: int


@dataclass(frozen=True)
class PrepareBacktest(_ChannelChanges):
    """A backtest's channel: a stored strategy's (of `client_id`), with the parameters given here
    changed, or one given whole (base and top at least). `None` keeps a value or takes its default."""

    client_id: int | None = None
    strategy_id: int | None = None
    base_price: Decimal | None = None
    top_price: Decimal | None = None
    capital_percentage: Decimal | None = None
    buy_threshold: Decimal | None = None
    sell_threshold: Decimal | None = None
    min_profit: Decimal | None = None
    timeframe: str | None = None
    bankroll: Decimal | None = None


@dataclass(frozen=True)
class AddSymbol:
    """A symbol added by hand (offline, paper, air-gapped): its assets and filters (SPEC §4b)."""

    symbol: str
    base_asset: str
    quote_asset: str
    tick_size: Decimal
    step_size: Decimal
    min_notional: Decimal
    min_qty: Decimal | None = None  # default: one step
    max_qty: Decimal | None = None


@dataclass(frozen=True)
class CreateWebhookEndpoint:
    client_id: int
    url: str
    event_types: tuple[str, ...] = ()  # empty: the default alert types


@dataclass(frozen=True)
class CreateTelegramEndpoint:
    client_id: int
    bot_token: str
    chat_id: str
    event_types: tuple[str, ...] = ()


@dataclass(frozen=True)
class UpdateAlertEndpoint:
    client_id: int
    endpoint_id: int
    url: str | None = None  # None: unchanged
    event_types: tuple[str, ...] | None = None
    is_active: bool | None = None
