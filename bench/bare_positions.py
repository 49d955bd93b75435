"""The read-path baseline: bare Strawberry (no database, no HTTP stack of ours, no extensions)
resolving the same `positions(first: N)` shape as Criptoren — the same fields, Decimal scalars and
the same items — from memory. Built from the page Criptoren returned (`load`), so that both sides
answer exactly the same data. Run by bench/api_bench.py: in-process (`schema.execute`), and served
by uvicorn (`app`, data from the JSON file named by BARE_POSITIONS_DATA) for reference.

Nested objects resolve through async resolvers reading dicts, as a Strawberry app reading a store
would (`Position.strategy`, `.symbol`, `.trades`), and Decimal fields are `decimal.Decimal`
values serialized by Strawberry's own Decimal scalar."""

from __future__ import annotations

import base64
import json
import os
from datetime import datetime
from decimal import Decimal
from typing import Any

import strawberry
from strawberry.asgi import GraphQL

QUERY = """
query($first: Int!) {
  positions(first: $first) {
    nodes {
      id status entryPrice quantity cost minSellPrice createdAt
      strategy { id name basePrice topPrice }
      symbol { symbol tickSize }
      trades { id side price quantity fees executedAt }
    }
    pageInfo { hasNextPage endCursor }
  }
}
"""

_symbols: dict[str, Symbol] = {}
_strategies: dict[str, Strategy] = {}
_trades: dict[str, list[Trade]] = {}
_positions: list[Position] = []


@strawberry.type
class Symbol:
    symbol: str
    tick_size: Decimal


@strawberry.type
class Strategy:
    id: strawberry.ID
    name: str
    base_price: Decimal
    top_price: Decimal


@strawberry.type
class Trade:
    id: strawberry.ID
    side: str
    price: Decimal
    quantity: Decimal
    fees: Decimal
    executed_at: datetime


@strawberry.type
class Position:
    id: strawberry.ID
    status: str
    entry_price: Decimal
    quantity: Decimal
    cost: Decimal
    min_sell_price: Decimal
    created_at: datetime
    strategy_key: strawberry.Private[str]
    symbol_key: strawberry.Private[str]

    @strawberry.field
    async def strategy(self) -> Strategy:
        return _strategies[self.strategy_key]

    @strawberry.field
    async def symbol(self) -> Symbol:
        return _symbols[self.symbol_key]

    @strawberry.field
    async def trades(self) -> list[Trade]:
        return _trades.get(str(self.id), [])


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class PositionConnection:
    nodes: list[Position]
    page_info: PageInfo


@strawberry.type
class Query:
    @strawberry.field
    async def positions(self, first: int = 20) -> PositionConnection:
        page = _positions[:first]
        cursor = base64.urlsafe_b64encode(f"cursor:{page[-1].id}".encode()).decode() if page else None
        return PositionConnection(nodes=page, page_info=PageInfo(has_next_page=len(_positions) > first,
                                                                    end_cursor=cursor))  # fmt: skip


def load(page: dict[str, Any]) -> None:
    """Fill the store from a `positions` page as Criptoren answered it (`data.positions`)."""
    _symbols.clear()
    _strategies.clear()
    _trades.clear()
    _positions.clear()
    for node in page["nodes"]:
        s = node["strategy"]
        _strategies[s["id"]] = Strategy(
            id=strawberry.ID(s["id"]), name=s["name"], base_price=Decimal(s["basePrice"]),
            top_price=Decimal(s["topPrice"]),
        )  # fmt: skip
        sym = node["symbol"]
        _symbols[sym["symbol"]] = Symbol(symbol=sym["symbol"], tick_size=Decimal(sym["tickSize"]))
        _trades[node["id"]] = [
            Trade(
                id=strawberry.ID(t["id"]), side=t["side"], price=Decimal(t["price"]), quantity=Decimal(t["quantity"]),
                fees=Decimal(t["fees"]), executed_at=datetime.fromisoformat(t["executedAt"]),
            )
            for t in node["trades"]
        ]  # fmt: skip
        _positions.append(
            Position(
                id=strawberry.ID(node["id"]), status=node["status"], entry_price=Decimal(node["entryPrice"]),
                quantity=Decimal(node["quantity"]), cost=Decimal(node["cost"]),
                min_sell_price=Decimal(node["minSellPrice"]), created_at=datetime.fromisoformat(node["createdAt"]),
                strategy_key=s["id"], symbol_key=sym["symbol"],
            )
        )  # fmt: skip
    if page["pageInfo"]["hasNextPage"]:
        # One more item, so that the bare page also says a next page exists.
        _positions.append(_positions[-1])


schema = strawberry.Schema(query=Query)

if os.environ.get("BARE_POSITIONS_DATA"):
    with open(os.environ["BARE_POSITIONS_DATA"]) as f:
        load(json.load(f))
app = GraphQL(schema)
