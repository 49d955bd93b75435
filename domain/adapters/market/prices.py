"""Price sources: where "the last known price of a symbol" comes from."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.adapters.persistence.repositories import SqlAlchemyCandleRepository
from domain.model import Symbol
from domain.ports import PriceSource


class MemoryPriceBook:
    """Latest ticks kept in memory (fed by the live market, a replay, or a test)."""

    def __init__(self) -> None:
        self._prices: dict[str, tuple[Decimal, datetime]] = {}

    def set(self, symbol: str, price: Decimal, at: datetime | None = None) -> None:
        self._prices[symbol] = (price, at or datetime.now(UTC))

    async def current_price(self, symbol: Symbol) -> tuple[Decimal, datetime] | None:
        return self._prices.get(symbol.symbol)


class LatestCandlePrices:
    """The close of the most recent stored candle (any interval)."""

    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self.session_factory = session_factory

    async def current_price(self, symbol: Symbol) -> tuple[Decimal, datetime] | None:
        assert symbol.id is not None
        async with self.session_factory() as session:
            return await SqlAlchemyCandleRepository(session).latest_close(symbol.id)


class FirstKnownPrice:
    """Asks each source in turn; the first that knows a price wins."""

    def __init__(self, sources: Sequence[PriceSource]) -> None:
        self.sources = list(sources)

    async def current_price(self, symbol: Symbol) -> tuple[Decimal, datetime] | None:
        for source in self.sources:
            quote = await source.current_price(symbol)
            if quote is not None:
                return quote
        return None
