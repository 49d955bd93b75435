"""The end-to-end scenario of `test_live_loop.py` — a replayed market crossing E, X, the base, a
channel break and a scheduled exit, the API under uvicorn, subscriptions over WebSocket — with
EXCHANGE=binance: the demo client sets its keys through the API and trades on the local Binance
(python-binance, unpatched) through `ExchangeRouter`. Its positions, trades and capital are those of
the paper run of the same market.

In-process: the API server, the market worker and the consumer of order updates run in the test's
event loop (the code of `criptoren worker`: `MarketWorker`, `OrderUpdatesWorker`), not as a
subprocess, because the local Binance's price must follow the replay decision by decision, and that
server lives in this process. Its price follows the replay: the price book the consumer sets before
each decision (at the crossed level, rule 10) sets the local Binance's last price, so a market order
fills there; after each tick the local Binance trades at the tick's price, which is when its
resting orders reached by it fill (at their limit price) and report through the user data stream.

Binance reports commissions to 8 decimals (`quoteCommissionPrecision`), and so does the paper
exchange (half up): everything — quantities, prices, quote amounts, costs, fees, proceeds, profits,
the principal and the profit balance — is compared to the last digit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from domain.adapters.bootstrap import App
from domain.adapters.exchanges.binance import BinanceExchange
from domain.adapters.exchanges.paper import PaperExchange
from domain.adapters.exchanges.router import ExchangeRouter
from domain.adapters.exchanges.secrets import SecretBox
from domain.adapters.market.prices import FirstKnownPrice, LatestCandlePrices, MemoryPriceBook
from domain.adapters.market.replay import ReplayMarket
from domain.adapters.seed import seed_demo
from domain.market import ClosedCandle, MarketEvent, Tick
from domain.model import Position, PositionStatus, Trade
from domain.ports import Page
from gql_api.auth import access_tokens
from tests.binance_local import LocalBinance, local_config
from tests.conftest import reset
from tests.e2e import servers, ws_client
from tests.e2e.test_live_loop import EVENTS, FILLS, PRICES, E, X
from workers.market import MarketWorker
from workers.orders import OrderUpdatesWorker

pytest_plugins = ["tests.binance_local.fixtures"]  # local_binance

DATA = Path(__file__).resolve().parents[1] / "data"
SET_KEYS = """mutation($k: String!, $s: String!) {
  setExchangeKeys(apiKey: $k, apiSecret: $s) { clientId tradesOn hasKeys apiKeyHint }
}"""


class FollowingBook(MemoryPriceBook):
    """The consumer's price book; each price it is told is also the local Binance's last price, so
    an order decided at a level executes at that level there (rule 10)."""

    def __init__(self, binance: LocalBinance) -> None:
        super().__init__()
        self.binance = binance

    def set(self, symbol: str, price: Decimal, at: datetime | None = None) -> None:
        super().set(symbol, price, at)
        self.binance.prices[symbol] = price


class FollowedReplay:
    """The replay, with the local Binance trading at each tick's price once the consumer has
    handled it (resting orders reached fill then, as on a real market)."""

    def __init__(self, replay: ReplayMarket, binance: LocalBinance) -> None:
        self.replay = replay
        self.binance = binance
        self.name = replay.name
        self.fills_at_levels = replay.fills_at_levels

    async def stream(self, symbol: str, after_seq: int | None = None) -> AsyncIterator[MarketEvent]:
        async for event in self.replay.stream(symbol, after_seq):
            yield event  # the consumer handles it before asking for the next one
            if isinstance(event, Tick):
                await self.binance.set_price(symbol, event.price)

    async def closed_candles(
        self, symbol: str, interval: str, start: datetime, end: datetime
    ) -> Sequence[ClosedCandle]:
        return await self.replay.closed_candles(symbol, interval, start, end)

    async def close(self) -> None:
        await self.replay.close()


async def wait_for_closed(db: App, positions: int, trades: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        async with db.uow() as uow:
            live = await uow.positions.list(Page(100))
            done = await uow.trades.list(Page(100))
        if len(done) >= trades and len(live) == positions and all(p.status is PositionStatus.CLOSED for p in live):
            return
        assert time.monotonic() < deadline, f"{len(done)} trades, {[p.status for p in live]} after {timeout} s"
        await asyncio.sleep(0.1)


async def play(db: App, binance: LocalBinance | None) -> dict[str, Any]:
    """The scenario, on paper (`binance` None) or with the demo client on the local Binance."""
    await seed_demo(db.uow, db.exchange)
    token, _ = access_tokens(db.settings).issue(1)
    auth = {"Authorization": f"Bearer {token}"}
    replay = ReplayMarket({"BTCUSDT": DATA / "btc-channel-1h.csv"})
    async with servers.api_server(db) as host, ws_client.connect(f"ws://{host}/graphql", auth) as subs:
        responses: list[str] = []
        source: Any = replay
        if binance is not None:
            async with httpx.AsyncClient(base_url=f"http://{host}") as http:
                keys = {"k": binance.api_key, "s": binance.api_secret}
                answer = await http.post("/graphql", json={"query": SET_KEYS, "variables": keys}, headers=auth)
            responses.append(answer.text)
            assert (
                answer.json()["data"]["setExchangeKeys"]
                == {
                    "clientId": "1",
                    "tradesOn": "paper",  # these tests run EXCHANGE=paper settings; the router below trades Binance
                    "hasKeys": True,
                    "apiKeyHint": "********" + binance.api_key[-4:],
                }
            )
            book = FollowingBook(binance)
            db.price_book = book
            db.prices = FirstKnownPrice([book, LatestCandlePrices(db.session_factory)])
            box = SecretBox(str(db.settings.criptoren_secret_key))
            db.exchange = ExchangeRouter(
                PaperExchange(db.prices, db.settings.fee_rate),
                db.uow,
                box,
                lambda key, secret: BinanceExchange(local_config(binance, api_key=key, api_secret=secret)),
            )
            source = FollowedReplay(replay, binance)
        events, fills, prices = await subs.subscribe(EVENTS), await subs.subscribe(FILLS), await subs.subscribe(PRICES)
        await asyncio.sleep(0.3)  # subscriptions registered before the market starts
        market, orders = MarketWorker(db, source, lease_ttl=5.0, poll_seconds=0.2), OrderUpdatesWorker(db)
        tasks = [asyncio.create_task(market.run()), asyncio.create_task(orders.run())]
        try:
            await wait_for_closed(db, positions=2, trades=4)
            received_fills = await subs.wait_for(fills, 4)
            received_events = await subs.wait_for(events, 7)
            received_prices = await subs.wait_for(prices, 10)
        finally:
            await stop_workers(db, market, tasks)
    async with db.uow() as uow:
        trades = list(reversed(await uow.trades.list(Page(100))))
        positions = list(reversed(await uow.positions.list(Page(100))))
        ledger = await uow.allocations.ledger(1)
        strategy = await uow.strategies.get(1)
        events_stored = [e.type for e in reversed(await uow.events.list_by_strategy(1, 100))]
    async with db.engine.connect() as conn:
        allocations = [
            tuple(r)
            for r in await conn.execute(
                text("SELECT kind, is_profit, amount, position_id FROM capital_allocations ORDER BY id")
            )
        ]
    assert strategy is not None and strategy.is_channel_broken
    return {
        "trades": trades,
        "positions": positions,
        "allocations": allocations,
        "ledger": ledger,
        "events": events_stored,
        "fills": [f["data"]["fills"] for f in received_fills],
        "event_types": [e["data"]["positionEvents"]["type"] for e in received_events],
        "prices": received_prices,
        "responses": responses,
    }


def trade_row(t: Trade) -> tuple[Any, ...]:
    return (t.side, t.price, t.quantity, t.quote_amount, t.fee_asset, t.notes, t.position_id)


def position_row(p: Position) -> tuple[Any, ...]:
    return (
        p.status, p.entry_price, p.quantity, p.cost, p.fees, p.dust, p.min_profit, p.min_sell_price,
        p.scheduled_exit_price, p.channel_exit_date, p.exit_price,
    )  # fmt: skip


async def stop_workers(db: App, market: MarketWorker, tasks: list[asyncio.Task[Any]]) -> None:
    """Stop the market worker and the tasks beside it, then close the exchange's clients."""
    market.stop()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if isinstance(db.exchange, ExchangeRouter):
        await db.exchange.close()


async def test_the_live_loop_on_binance_trades_exactly_as_on_paper(db: App, local_binance: LocalBinance) -> None:
    paper = await play(db, None)
    await reset(db)
    db.exchange = PaperExchange(db.prices, db.settings.fee_rate)
    binance = await play(db, local_binance)

    # The paper run is the scenario of test_live_loop.py: entry at E, exit at X, entry at E, and the
    # position parked by the channel break sold at its scheduled price.
    sells = [t for t in paper["trades"] if t.side.value == "sell"]
    assert [(t.side.value, t.price, t.notes) for t in paper["trades"]] == [
        ("buy", E, "entry"),
        ("sell", X, "exit"),
        ("buy", E, "entry"),
        ("sell", paper["positions"][1].scheduled_exit_price, "scheduled_exit"),
    ]
    assert len(sells) == 2 and paper["positions"][1].channel_exit_date is not None

    # Binance: the same, to the last digit where Binance keeps every digit.
    assert [trade_row(t) for t in binance["trades"]] == [trade_row(t) for t in paper["trades"]]
    assert [position_row(p) for p in binance["positions"]] == [position_row(p) for p in paper["positions"]]
    # Fees, proceeds and profits to the last digit too (both book commissions to 8 decimals).
    for b, p in zip(binance["trades"], paper["trades"], strict=True):
        assert (b.fees, b.profit) == (p.fees, p.profit)
    for b, p in zip(binance["positions"], paper["positions"], strict=True):
        assert (b.proceeds, b.realized_profit) == (p.proceeds, p.realized_profit)
    assert binance["trades"][1].fees == paper["trades"][1].fees == Decimal("0.42172844")  # 0.1% of 421.7284372
    # Capital: the principal and the segregated profit, exactly.
    assert binance["ledger"].principal == paper["ledger"].principal == Decimal(2000)
    assert binance["ledger"].committed == paper["ledger"].committed == 0
    assert binance["ledger"].profit == paper["ledger"].profit > 0
    assert binance["allocations"] == paper["allocations"]
    assert binance["events"] == paper["events"]

    # What a subscriber saw: the same fills, events and prices.
    def fill_rows(run: dict[str, Any]) -> list[tuple[str, str, str, str]]:
        return [(f["side"], f["price"], f["quantity"], f["notes"]) for f in run["fills"]]

    assert fill_rows(binance) == fill_rows(paper)
    assert [f[0] for f in fill_rows(paper)] == ["BUY", "SELL", "BUY", "SELL"]
    assert binance["event_types"][:7] == paper["event_types"][:7]
    for expected in ("position_opened", "position_closed", "strategy_rearmed", "channel_broken", "position_scheduled"):
        assert expected in binance["event_types"], binance["event_types"]

    # On Binance: two market buys, an IOC sell at X, a GTC sell resting from the channel break until
    # the market reached it (a maker fill at its limit price), reported by the user data stream.
    sent = [(o.side, o.type, o.time_in_force, o.status) for o in local_binance.orders]
    assert sent == [
        ("BUY", "MARKET", "GTC", "FILLED"),
        ("SELL", "LIMIT", "IOC", "FILLED"),
        ("BUY", "MARKET", "GTC", "FILLED"),
        ("SELL", "LIMIT", "GTC", "FILLED"),
    ]
    resting = local_binance.orders[3]
    assert resting.price == paper["positions"][1].scheduled_exit_price and resting.fills[0].is_maker
    # The secret was sent once, to the API, and never came back.
    assert all(local_binance.api_secret not in r for r in binance["responses"])
