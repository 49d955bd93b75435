"""Paper account = live account, to the digit (issue 11, item 7): the live loop of
`test_live_loop_binance.py` — the API under uvicorn, the market worker and the consumer of order
updates in the test's event loop — on a market with what makes simulation and exchange part ways:

- gaps between candles (SPEC §4 rule 10): a jump from under E to above it, judged as one tick and
  filled at the open (103,000), not at E; a jump from above X to under it, filled at the open
  (106,000), not at X;
- a marketable scheduled sell (rule 6): `scheduleSell(minProfit: 0.1)` while the market stands at
  107,000, far above the sell's limit — Binance matches that LIMIT order at once against the bids, at
  the market's price, and so does paper;
- an entry the account's balance cannot cover (SPEC §4b): skipped with INSUFFICIENT_BALANCE before
  anything is sent, on Binance from the adapter's balance cache, on paper from the paper account's
  balance (both accounts hold 420 USDT and no BTC at the start).

The same market runs once on paper and once with the demo client's keys on the local Binance
(python-binance, unpatched); trades, positions, orders, the ledger, the events (type, message, data,
in order) and the accounts' balances are compared to the last digit. The replay is held after the
fourth candle (`HeldReplay`) while the test schedules the sell through the API, so the sell meets a
market standing still at 107,000 in both runs.
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
from domain.adapters.market.prices import FirstKnownPrice, LatestCandlePrices
from domain.adapters.market.replay import POINTS_PER_CANDLE, ReplayMarket
from domain.adapters.seed import seed_demo
from domain.market import ClosedCandle, MarketEvent
from domain.model import Position, PositionStatus, Trade
from domain.ports import Page
from gql_api.auth import access_tokens
from tests.binance_local import LocalBinance, local_config
from tests.conftest import reset
from tests.e2e import servers
from tests.e2e.test_live_loop import E, X
from tests.e2e.test_live_loop_binance import (
    SET_KEYS,
    FollowedReplay,
    FollowingBook,
    position_row,
    stop_workers,
    trade_row,
)
from workers.market import MarketWorker
from workers.orders import OrderUpdatesWorker

pytest_plugins = ["tests.binance_local.fixtures"]  # local_binance

DATA = Path(__file__).resolve().parents[1] / "data"
CANDLES = DATA / "btc-fidelity-1h.csv"
USDT = Decimal(420)  # both accounts: enough for one entry of 400, not for two at once
HOLD_AFTER = 3 * POINTS_PER_CANDLE + POINTS_PER_CANDLE - 1  # the fourth candle's close (seq 19), at 107,000
MARKET = Decimal(107000)
SCHEDULE = """mutation($p: ID!) {
  scheduleSell(positionId: $p, minProfit: "0.1") { id status scheduledExitPrice exitPrice minSellPrice }
}"""
DEADLINE = 120.0  # seconds: generous, the machine is shared


class HeldReplay:
    """The replay, held once the consumer has handled the event `hold_after` (it asked for the next
    one) until the test releases it; `ended` once the consumer has handled the last event."""

    def __init__(self, replay: ReplayMarket, hold_after: int) -> None:
        self.replay = replay
        self.name = replay.name
        self.fills_at_levels = replay.fills_at_levels
        self.hold_after = hold_after
        self.held = asyncio.Event()
        self.release = asyncio.Event()
        self.ended = asyncio.Event()

    async def stream(self, symbol: str, after_seq: int | None = None) -> AsyncIterator[MarketEvent]:
        async for event in self.replay.stream(symbol, after_seq):
            yield event
            if event.seq == self.hold_after:
                self.held.set()
                await self.release.wait()
        self.ended.set()

    async def closed_candles(
        self, symbol: str, interval: str, start: datetime, end: datetime
    ) -> Sequence[ClosedCandle]:
        return await self.replay.closed_candles(symbol, interval, start, end)

    async def close(self) -> None:
        await self.replay.close()


async def wait_for(event: asyncio.Event, what: str, market: asyncio.Task[None]) -> None:
    """Wait for `event`, failing early (with the cause) if the market worker died."""
    deadline = time.monotonic() + DEADLINE
    while not event.is_set():
        if market.done():
            raise AssertionError(f"the market worker ended while waiting for {what}") from market.exception()
        assert time.monotonic() < deadline, f"{what}: not within {DEADLINE} s"
        await asyncio.sleep(0.05)


async def wait_for_positions(db: App, want: list[PositionStatus]) -> None:
    deadline = time.monotonic() + DEADLINE
    while True:
        async with db.uow() as uow:
            statuses = [p.status for p in reversed(await uow.positions.list(Page(100)))]
        if statuses == want:
            return
        assert time.monotonic() < deadline, f"positions {statuses}, not {want}, after {DEADLINE} s"
        await asyncio.sleep(0.1)


async def play(db: App, binance: LocalBinance | None) -> dict[str, Any]:
    """The scenario on the paper account `db.exchange` (`binance` None) or with the demo client's keys
    on the local Binance; both accounts hold `USDT` and no BTC."""
    await seed_demo(db.uow, db.exchange)
    token, _ = access_tokens(db.settings).issue(1)
    auth = {"Authorization": f"Bearer {token}"}
    replay = HeldReplay(ReplayMarket({"BTCUSDT": CANDLES}), HOLD_AFTER)
    source: Any = replay
    async with servers.api_server(db) as host, httpx.AsyncClient(base_url=f"http://{host}", headers=auth) as http:
        if binance is not None:
            binance.set_balance("USDT", USDT)
            keys = {"k": binance.api_key, "s": binance.api_secret}
            answer = await http.post("/graphql", json={"query": SET_KEYS, "variables": keys})
            assert answer.json()["data"]["setExchangeKeys"]["hasKeys"] is True, answer.text
            book = FollowingBook(binance)
            db.price_book = book
            db.prices = FirstKnownPrice([book, LatestCandlePrices(db.session_factory)])
            db.exchange = ExchangeRouter(
                PaperExchange(db.prices, db.settings.fee_rate),
                db.uow,
                SecretBox(str(db.settings.criptoren_secret_key)),
                lambda key, secret: BinanceExchange(
                    local_config(binance, api_key=key, api_secret=secret, request_timeout=10.0, ws_timeout=10.0)
                ),
            )
            # The client's account started before the market moves (filters, commission, balances).
            assert isinstance(await db.exchange.for_client(1), BinanceExchange)
            source = FollowedReplay(replay, binance)  # HeldReplay stands for the ReplayMarket it holds
        # The consumer of order updates ends at once on paper (no resting orders there).
        market, orders = MarketWorker(db, source, lease_ttl=5.0, poll_seconds=0.2), OrderUpdatesWorker(db)
        tasks = [asyncio.create_task(market.run()), asyncio.create_task(orders.run())]
        try:
            # Held at 107,000 with the first position open (bought on the gap at 103,000).
            await wait_for(replay.held, "the hold after the fourth candle", tasks[0])
            await wait_for_positions(db, [PositionStatus.OPEN])
            answer = await http.post("/graphql", json={"query": SCHEDULE, "variables": {"p": "1"}})
            scheduled = answer.json()
            assert "errors" not in scheduled, answer.text
            replay.release.set()
            await wait_for(replay.ended, "the end of the replay", tasks[0])
            await wait_for_positions(db, [PositionStatus.CLOSED, PositionStatus.CLOSED])
        finally:
            await stop_workers(db, market, tasks)
    async with db.uow() as uow:
        trades = list(reversed(await uow.trades.list(Page(100))))
        positions = list(reversed(await uow.positions.list(Page(100))))
        ledger = await uow.allocations.ledger(1)
        events = [(e.type, e.message, e.data) for e in reversed(await uow.events.list_by_strategy(1, 100))]
    async with db.engine.connect() as conn:
        allocations = [
            tuple(r)
            for r in await conn.execute(
                text("SELECT kind, is_profit, amount, position_id FROM capital_allocations ORDER BY id")
            )
        ]
        order_rows = [
            tuple(r)
            for r in await conn.execute(
                text(
                    "SELECT client_order_id, side, type, time_in_force, purpose, status, requested_quote,"
                    " requested_quantity, price, filled_quantity, filled_quote, average_price, fee, fee_asset, error"
                    " FROM orders ORDER BY id"
                )
            )
        ]
    return {
        "trades": trades,
        "positions": positions,
        "ledger": ledger,
        "events": events,
        "allocations": allocations,
        "orders": order_rows,
        "scheduled": scheduled["data"]["scheduleSell"],
    }


def fee_row(t: Trade) -> tuple[Any, ...]:
    return (t.fees, t.fee_asset, t.profit)


def result_row(p: Position) -> tuple[Any, ...]:
    return (p.proceeds, p.realized_profit, p.closed_at is not None)


async def test_paper_and_binance_agree_on_gaps_marketable_sells_and_balance_skips(
    db: App, local_binance: LocalBinance
) -> None:
    """SPEC §4 rules 6 and 10, §4b: the same market on paper and on the local Binance gives the same
    trades, prices, fees, positions, orders, ledger and events, to the last digit."""
    paper_exchange = PaperExchange(db.prices, db.settings.fee_rate, balances={"USDT": USDT})
    db.exchange = paper_exchange
    paper = await play(db, None)
    paper_balances = dict(paper_exchange.balances or {})
    await reset(db)
    db.exchange = PaperExchange(db.prices, db.settings.fee_rate)
    binance = await play(db, local_binance)

    # What happened (the paper run; the Binance run is compared to it below).
    limit = paper["positions"][0].scheduled_exit_price
    assert limit is not None and limit < MARKET
    assert [(t.side.value, t.price, t.quantity, t.notes) for t in paper["trades"]] == [
        # Rule 10: the jump from 101,200 to the open 103,000 crosses E: one tick, filled at the open.
        ("buy", Decimal(103000), Decimal("0.00388"), "entry"),
        # Rule 6: scheduled at 0.1% profit (limit ~103,473) with the market at 107,000: marketable,
        # filled at once at the market's price, not at its limit.
        ("sell", MARKET, Decimal("0.00387"), "scheduled_exit"),
        # Inside a candle the path is continuous: the entry fills at E.
        ("buy", E, Decimal("0.00390"), "entry"),
        # Rule 10: the jump from 109,000 to the open 106,000 crosses X: one tick, sold at the open.
        ("sell", Decimal(106000), Decimal("0.00389"), "exit"),
    ]
    assert paper["trades"][3].price not in (X, paper["positions"][1].min_sell_price)
    assert paper["scheduled"]["status"] == "CLOSED" and paper["scheduled"]["exitPrice"] == "107000"
    assert Decimal(paper["scheduled"]["scheduledExitPrice"]) == limit
    # SPEC §4b: the second entry (at E, in the third candle, the first position still open) needs
    # 400 USDT; the account holds 420 - 399.64 = 20.36: skipped before anything is sent.
    skips = [(t, m, d) for t, m, d in paper["events"] if t == "entry_skipped"]
    assert [(d["reason"], d["price"]) for _, _, d in skips] == [("insufficient_balance", str(E))]
    assert "it needs 400 USDT, the account's free balance is 20.36 USDT" in skips[0][1]
    refused = paper["orders"][1]  # its order is recorded as refused, with why (it was never sent)
    assert (refused[4], refused[5], refused[14]) == ("entry", "rejected", skips[0][1].removeprefix("Entry skipped: "))
    # The ledger: principal untouched, the profit of both sells segregated (rule 7).
    assert paper["ledger"].principal == Decimal(2000) and paper["ledger"].committed == 0
    assert paper["ledger"].profit == sum((t.profit or 0 for t in paper["trades"]), Decimal(0)) > 0

    # Binance: the same, to the last digit.
    assert [trade_row(t) for t in binance["trades"]] == [trade_row(t) for t in paper["trades"]]
    assert [fee_row(t) for t in binance["trades"]] == [fee_row(t) for t in paper["trades"]]
    assert [position_row(p) for p in binance["positions"]] == [position_row(p) for p in paper["positions"]]
    assert [result_row(p) for p in binance["positions"]] == [result_row(p) for p in paper["positions"]]
    assert binance["orders"] == paper["orders"]
    assert binance["allocations"] == paper["allocations"]
    assert binance["ledger"] == paper["ledger"]
    assert binance["events"] == paper["events"]
    assert binance["scheduled"] == paper["scheduled"]

    # On Binance: two market buys, the scheduled GTC sell matched at once as a taker at the market's
    # price (not resting, not at its limit), the exit an IOC filled at the jump's price; the
    # skipped entry never reached it.
    sent = [(o.side, o.type, o.time_in_force, o.status, o.price) for o in local_binance.orders]
    assert sent == [
        ("BUY", "MARKET", "GTC", "FILLED", Decimal(0)),
        ("SELL", "LIMIT", "GTC", "FILLED", limit),
        ("BUY", "MARKET", "GTC", "FILLED", Decimal(0)),
        ("SELL", "LIMIT", "IOC", "FILLED", paper["orders"][-1][8]),  # min_sell rounded up to the tick
    ]
    assert len(local_binance.requests_to("POST", "/api/v3/order")) == 4
    marketable = local_binance.orders[1]
    assert [(f.price, f.is_maker) for f in marketable.fills] == [(MARKET, False)]
    # The accounts end with the same balances: what the fills moved, exactly.
    assert {a: local_binance.balance(a)[0] for a in ("USDT", "BTC")} == {
        a: paper_balances.get(a, Decimal(0)) for a in ("USDT", "BTC")
    }
