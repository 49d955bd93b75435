"""`ExchangeRouter` (issue 4): each client on its own account — Binance with its keys, else paper —
resolved by the services with `for_client`, on PostgreSQL and the local Binance."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from domain import commands as cmds
from domain import services
from domain.adapters.bootstrap import App
from domain.adapters.exchanges.binance import BinanceExchange
from domain.adapters.exchanges.paper import PaperExchange
from domain.adapters.exchanges.router import ExchangeRouter
from domain.adapters.exchanges.secrets import SecretBox
from domain.adapters.seed import seed_demo
from domain.channel import Channel
from domain.errors import PermanentExchangeError
from domain.model import OrderStatus, PositionStatus, Side, TimeInForce
from domain.ports import Page
from domain.services import exchange_keys
from tests.binance_local import LocalBinance, local_config

pytest_plugins = ["tests.binance_local.fixtures"]  # local_binance

E = Decimal("102498.78")


@pytest.fixture
async def router(db: App, local_binance: LocalBinance) -> AsyncIterator[ExchangeRouter]:
    await seed_demo(db.uow, db.exchange)
    paper = db.exchange
    assert isinstance(paper, PaperExchange)
    starts: list[str] = []

    def open_account(api_key: str, api_secret: str) -> BinanceExchange:
        starts.append(api_key)
        return BinanceExchange(local_config(local_binance, api_key=api_key, api_secret=api_secret))

    routed = ExchangeRouter(paper, db.uow, SecretBox(str(db.settings.criptoren_secret_key)), open_account)
    routed.starts = starts  # type: ignore[attr-defined]
    db.exchange = routed
    try:
        yield routed
    finally:
        await routed.close()


async def set_keys(db: App, client_id: int, api_key: str, api_secret: str) -> None:
    box = SecretBox(str(db.settings.criptoren_secret_key))
    await exchange_keys.set_exchange_keys(cmds.SetExchangeKeys(client_id, api_key, api_secret), db.uow(), box)


async def test_a_client_with_keys_trades_on_its_own_account_the_others_on_paper(
    db: App, router: ExchangeRouter, local_binance: LocalBinance
) -> None:
    assert await router.for_client(1) is router.paper
    await set_keys(db, 1, local_binance.api_key, local_binance.api_secret)
    router.refresh(1)
    account = await router.for_client(1)
    assert isinstance(account, BinanceExchange) and account.rests_limit_orders
    assert await router.for_client(1) is account and router.starts == [local_binance.api_key]  # type: ignore[attr-defined]
    assert await router.for_client(2) is router.paper  # no such client: paper, nothing to trade anyway
    assert router.binance_accounts == {1: account}
    # Keys cleared: paper again, the Binance account closed.
    await exchange_keys.clear_exchange_keys(cmds.ClearExchangeKeys(1), db.uow())
    router.refresh()
    assert await router.for_client(1) is router.paper and router.binance_accounts == {}
    assert not account.stream_connected
    # Orders always go through a client's account.
    with pytest.raises(PermanentExchangeError):
        await router.get_order(local_binance.domain_symbol("BTCUSDT"), "cr-e1-1")


async def test_refused_keys_pause_that_client_only(
    db: App, router: ExchangeRouter, local_binance: LocalBinance
) -> None:
    await set_keys(db, 1, local_binance.api_key, "not-the-secret-0123456789abcdef")
    bob = await services.create_client(cmds.CreateClient("Bob"), db.uow())
    assert bob.id is not None
    strategy = await services.create_strategy(
        cmds.CreateStrategy(bob.id, "BTCUSDT", "Bob BTC", Channel(Decimal(100489), Decimal(110626))),
        db.uow(),
        db.exchange,
    )
    assert strategy.id is not None
    await services.allocate_capital(cmds.AllocateCapital(strategy.id, Decimal(1000)), db.uow(), db.exchange)
    with pytest.raises(PermanentExchangeError) as refused:
        await router.for_client(1)
    assert "did not start" in refused.value.message and local_binance.api_secret not in refused.value.message
    # The price rises through E: Bob buys on paper; the demo client's strategy waits (still armed).
    db.price_book.set("BTCUSDT", E)
    await services.process_price_move(
        cmds.ProcessPriceMove(1, Decimal(102000), E, datetime.now(UTC)), db.uow(), db.exchange
    )
    async with db.uow() as uow:
        positions = await uow.positions.list(Page(10))
        demo = await uow.strategies.get(1)
    assert [(p.client_id, p.entry_price) for p in positions] == [(bob.id, E)]
    assert demo is not None and demo.is_armed
    # The failure is remembered for a while: no second attempt to start the account.
    with pytest.raises(PermanentExchangeError):
        await router.for_client(1)
    assert router.starts == [local_binance.api_key]  # type: ignore[attr-defined]


async def test_an_exit_below_min_sell_rests_a_limit_sell_on_binance(
    db: App, router: ExchangeRouter, local_binance: LocalBinance
) -> None:
    """Rule 4: an exit crossing below the position's min_sell schedules it (rule 6); on Binance that
    is a resting LIMIT GTC sell at min_sell rounded up to the tick."""
    await set_keys(db, 1, local_binance.api_key, local_binance.api_secret)
    router.refresh(1)
    db.price_book.set("BTCUSDT", Decimal(102500))
    await local_binance.set_price("BTCUSDT", Decimal(102500))
    position = await services.buy(cmds.Buy(1, quote_amount=Decimal(400)), db.uow(), db.exchange, db.prices)
    db.price_book.set("BTCUSDT", Decimal(103000))
    local_binance.prices["BTCUSDT"] = Decimal(103000)
    outcome = await services.process_price_move(
        cmds.ProcessPriceMove(1, Decimal(109000), Decimal(103000), datetime.now(UTC)), db.uow(), db.exchange
    )
    assert [p.id for p in outcome.scheduled] == [position.id]
    async with db.uow() as uow:
        parked = await uow.positions.get(position.id or 0)
        buy, order = await uow.orders.list_by_position(position.id or 0, tuple(OrderStatus))
    assert buy.side is Side.BUY
    assert parked is not None and parked.status is PositionStatus.SCHEDULED
    assert parked.scheduled_exit_price == Decimal("103380.70")
    assert (order.status, order.time_in_force, order.price) == (OrderStatus.OPEN, TimeInForce.GTC, Decimal("103380.70"))
    assert [o.status for o in local_binance.orders_with(order.client_order_id)] == ["NEW"]


async def test_an_exit_binance_refuses_is_recorded_and_the_engine_goes_on(
    db: App, router: ExchangeRouter, local_binance: LocalBinance
) -> None:
    """The account no longer holds the position's coins (sold by hand on Binance): the exit is refused
    (by the balance check before sending, SPEC §4b; -2010 otherwise), recorded with an event, the
    position stays open, and the tick's transaction commits."""
    await set_keys(db, 1, local_binance.api_key, local_binance.api_secret)
    router.refresh(1)
    db.price_book.set("BTCUSDT", Decimal(102500))
    await local_binance.set_price("BTCUSDT", Decimal(102500))
    position = await services.buy(cmds.Buy(1, quote_amount=Decimal(400)), db.uow(), db.exchange, db.prices)
    local_binance.set_balance("BTC", Decimal(0))
    x = Decimal("108413.48")
    db.price_book.set("BTCUSDT", x)
    local_binance.prices["BTCUSDT"] = x
    await services.process_price_move(
        cmds.ProcessPriceMove(1, Decimal(109000), x, datetime.now(UTC)), db.uow(), db.exchange
    )
    async with db.uow() as uow:
        still = await uow.positions.get(position.id or 0)
        events = await uow.events.list_by_strategy(1, 5)
        orders = await uow.orders.list_by_position(position.id or 0, tuple(OrderStatus))
    assert still is not None and still.status is PositionStatus.OPEN
    assert events[0].type == "order_refused" and "insufficient balance" in events[0].message
    assert [(o.side, o.status) for o in orders] == [(Side.BUY, OrderStatus.FILLED), (Side.SELL, OrderStatus.REJECTED)]
