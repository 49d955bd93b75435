"""The dashboard in headless Chromium, against the API under uvicorn and a `criptoren worker` on a
replayed market (tests/data/btc-dashboard-1h.csv): the demo channel buys at E, sells at X, buys
again, and a candle closing below the base breaks the channel and schedules the position.

`CRIPTOREN_SCREENSHOT=docs/dashboard.png pytest tests/browser -k replayed` also saves the picture of
the dashboard used in the README."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect

from domain.adapters.bootstrap import App
from domain.adapters.messaging.redis_bus import dumps
from domain.adapters.seed import seed_demo
from gql_api import web
from gql_api.schema import schema
from tests.browser.conftest import log_in, wait_until
from tests.e2e import servers

DATA = Path(__file__).resolve().parents[1] / "data"
REPLAY = {
    "MARKET_SOURCE": "replay",
    "REPLAY_FILE": f"BTCUSDT={DATA / 'btc-dashboard-1h.csv'}",
    "REPLAY_SPEED": "3600",  # a 1h candle a second: the whole file in 16 s
}
DEMO = "Canal H4 BTC/USDT"
MS = timedelta(milliseconds=1)


def formatted(price: Decimal) -> str:
    """As the page shows a price of 1,000 or more: thousands separated, two decimals."""
    return f"{price:,.2f}"


async def markers(page: Any) -> list[str]:
    return [m["kind"] for m in await page.evaluate("window.criptoren.chartMarkers()")]


async def wait_for_marker(page: Any, kind: str, count: int = 1, timeout: float = 30) -> None:
    await wait_until(
        page, f"window.criptoren.chartMarkers().filter((m) => m.kind === '{kind}').length >= {count}", timeout
    )


async def test_dashboard_trades_a_replayed_channel(db: App, page: Any) -> None:
    await seed_demo(db.uow, db.exchange)
    async with servers.api_server(db) as host:
        await log_in(page, f"http://{host}", db)
        demo_row = page.locator("#strategies tbody tr", has_text=DEMO)
        await expect(demo_row.locator(".badge")).to_have_text("armed")
        await expect(page.locator("#capital dd[data-k=principal]")).to_have_text("2,000.00")

        # A channel too narrow for its minimum profit is refused; the smallest workable top is offered —
        # one that works once lots are rounded (SPEC §4 rule 11: the smallest ETHUSDT order, no principal).
        await page.click("#new-strategy")
        form = page.locator("#strategy-form")
        await form.locator("select[name=symbol]").select_option("ETHUSDT")
        await form.locator("input[name=name]").fill("ETH channel")
        await form.locator("input[name=basePrice]").fill("2000")
        await form.locator("input[name=topPrice]").fill("2010")
        await form.locator("button[type=submit]").click()
        top_error = form.locator('[data-error-for="topPrice"]')
        await expect(top_error).to_contain_text("too narrow")
        await expect(top_error).to_contain_text("The smallest workable topPrice is 2177.91")
        await expect(form.locator("input[name=topPrice]")).to_have_class("invalid")
        await top_error.locator("button[data-action=use-smallest-top]").click()
        await expect(form.locator("input[name=topPrice]")).to_have_value("2177.91")
        await form.locator("button[type=submit]").click()
        await expect(form).to_be_hidden()
        await expect(page.locator("#strategies tbody tr")).to_have_count(2)
        await expect(page.locator("#chart-title")).to_have_text("ETH channel · ETHUSDT")
        # No principal yet: it cannot trade, and says so, with the allocate field beside it (issue 14).
        eth_row = page.locator("#strategies tbody tr", has_text="ETH channel")
        await expect(eth_row.locator(".badge")).to_have_text("needs capital")
        await eth_row.locator("form.row-fund input[name=amount]").fill("500")
        await eth_row.locator("form.row-fund button[type=submit]").click()
        await expect(eth_row.locator(".badge")).to_have_text("armed")
        await expect(eth_row.locator("form.row-fund")).to_have_count(0)

        # Watch the demo channel trade on the replayed market.
        await demo_row.locator("button[data-action=select]").click()
        await expect(page.locator("#chart-title")).to_have_text(f"{DEMO} · BTCUSDT")
        worker = servers.start_worker(db, **REPLAY)
        try:
            await wait_for_marker(page, "buy")
            position = page.locator("#positions tbody tr[data-status=OPEN]")
            await expect(position).to_have_count(1)
            await expect(position.locator("td").nth(3)).to_have_text("102,498.78")  # entry at E (rule 10)
            await expect(demo_row.locator(".badge")).to_have_text("waiting for base")
            assert await page.evaluate("window.criptoren.chartPoints()") > 3  # the price moved
            await wait_for_marker(page, "sell")
            await wait_for_marker(page, "buy", 2)
            await wait_for_marker(page, "schedule")  # the channel broke: the position waits for min_sell
            await expect(demo_row.locator(".badge")).to_have_text("channel broken")
            scheduled = page.locator("#scheduled tbody tr")
            await expect(scheduled).to_have_count(1)
            await expect(page.locator("#positions tbody tr[data-status=SCHEDULED]")).to_have_count(1)
            await expect(page.locator("#capital dd[data-k=profit]")).not_to_have_text("0.00")
            await expect(page.locator("#events li[data-type=channel_broken]")).to_have_count(1)
            if path := os.environ.get("CRIPTOREN_SCREENSHOT"):
                await page.wait_for_timeout(3000)  # the replay's last candles
                await page.screenshot(path=path)

            # Cancel the scheduled sell: the position is open again.
            await scheduled.locator("button[data-action=cancel-scheduled]").click()
            await expect(scheduled).to_have_count(0)
            await expect(page.locator("#positions tbody tr[data-status=OPEN]")).to_have_count(1)
            await expect(page.locator("#events li[data-type=schedule_cancelled]")).to_have_count(1)
            assert {"buy", "sell", "broken", "schedule"} <= set(await markers(page))

            # The emergency stop: two clicks (the first asks for confirmation).
            if "pauseTrading" not in web.schema_features(schema):
                return  # not in this server's API
            stop = page.locator("#emergency-stop")
            await expect(stop).to_have_text("Emergency stop")
            await stop.click()
            await expect(stop).to_contain_text("Click again")
            # A refresh while the confirmation is pending must not put the old label back (issue 14:
            # the periodic refresh did, and the second click then read as a first one).
            await page.evaluate("window.criptoren.refresh()")
            await expect(stop).to_contain_text("Click again")
            await stop.click()
            await expect(stop).to_have_text("Resume trading")
            await expect(page.locator("#banner")).to_contain_text("Trading is paused")
            async with db.uow() as uow:
                assert (await uow.clients.paused([1])).keys() == {1}
            await page.reload()  # the session survives a reload (sessionStorage), and so does the pause
            await expect(stop).to_have_text("Resume trading")
            dashboards: list[Any] = []  # the dashboard's refreshes answered from here on
            page.on("response", lambda r: "query Dashboard" in (r.request.post_data or "") and dashboards.append(r))
            await stop.click()
            await expect(stop).to_have_text("Emergency stop")
            async with db.uow() as uow:
                assert (await uow.clients.paused([1])) == {}
            # The resume is an event too (alerts, issue 15): listed, and the refresh it asks for (beside
            # the resume's own) is answered before the server stops.
            await expect(page.locator("#events li[data-type=trading_resumed]").first).to_be_visible()
            deadline = asyncio.get_running_loop().time() + 10
            while len(dashboards) < 2 and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
            assert len(dashboards) >= 2
        finally:
            servers.stop(worker)
    assert page.external_requests == []
    assert [e for e in page.errors if "WebSocket" not in e] == []


async def test_the_chart_keeps_a_bounded_number_of_points(db: App, page: Any) -> None:
    """10,000 price updates through Redis, the API and the WebSocket: the chart keeps the last
    2,000 and the DOM does not grow. Sent in batches of 250, each once the page has the previous
    one (a subscriber over 256 messages behind loses the oldest: see gql_api/broadcast.py)."""
    await seed_demo(db.uow, db.exchange)
    async with servers.api_server(db) as host:
        await log_in(page, f"http://{host}", db)
        await expect(page.locator("#chart-title")).to_have_text(f"{DEMO} · BTCUSDT")
        await expect(page.locator("#events li")).to_have_count(2)  # the page has settled
        capacity = await page.evaluate("window.criptoren.chartCapacity()")
        nodes_before = await page.evaluate("document.getElementsByTagName('*').length")
        before = await page.evaluate("window.criptoren.chartUpdates()")
        start, channel, batch = datetime.now(UTC), db.bus.ticks_channel("BTCUSDT"), 250
        for first in range(0, 10_000, batch):
            async with db.redis.pipeline(transaction=False) as pipe:
                for i in range(first, first + batch):
                    price = Decimal(103_000 + (i * 37) % 2_000 + i % 7)
                    pipe.publish(channel, dumps({"symbol": "BTCUSDT", "price": price, "at": start + i * MS}))
                await pipe.execute()
            await wait_until(page, f"window.criptoren.chartUpdates() >= {before + first + batch}", every=0.02)
        updates = await page.evaluate("window.criptoren.chartUpdates()") - before
        points = await page.evaluate("window.criptoren.chartPoints()")
        last = await page.evaluate("window.criptoren.lastPrice()")
        nodes_after = await page.evaluate("document.getElementsByTagName('*').length")
        await expect(page.locator("#last-price")).to_have_text(formatted(price))
    assert capacity == 2000
    assert updates == 10_000 and points == capacity  # the last 2,000 of 10,000 updates
    assert last == float(price)
    assert nodes_after == nodes_before  # a price changes text, never the number of elements


async def test_the_dashboard_reconnects_by_itself_and_says_so(db: App, page: Any) -> None:
    await seed_demo(db.uow, db.exchange)
    port = servers.free_port()
    async with servers.api_server(db, port=port) as host:
        await log_in(page, f"http://{host}", db)
    status = page.locator("#conn-status")
    await expect(status).to_have_attribute("data-state", "reconnecting")
    await expect(status).to_contain_text("reconnecting in")
    async with servers.api_server(db, port=port):
        await expect(status).to_have_attribute("data-state", "live", timeout=30_000)
        # The subscriptions were sent again: a new price reaches the chart.
        for _ in range(50):
            await db.bus.publish_tick("BTCUSDT", Decimal("101234"), datetime.now(UTC))
            if await page.evaluate("window.criptoren.lastPrice()") == 101234:
                break
            await asyncio.sleep(0.1)
        assert await page.evaluate("window.criptoren.lastPrice()") == 101234


# Whether a <select> is at least as wide as its selected option's text.
FITS_ITS_TEXT = """(selector) => {
  const select = document.querySelector(selector);
  const probe = document.createElement("span");
  probe.style.font = getComputedStyle(select).font;
  probe.style.whiteSpace = "pre";
  probe.textContent = select.options[select.selectedIndex].text;
  document.body.append(probe);
  const width = probe.getBoundingClientRect().width;
  probe.remove();
  return select.getBoundingClientRect().width >= width;
}"""


async def test_the_backtest_view_draws_a_result(db: App, page: Any) -> None:
    if "backtest" not in web.schema_features(schema):
        pytest.skip("this server's API has no backtest query")
    await seed_demo(db.uow, db.exchange)  # 90 days of 4h candles
    async with servers.api_server(db) as host:
        await log_in(page, f"http://{host}", db)
        await page.click("#tabs button[data-tab=backtest]")
        # The strategy picker shows whole names (issue 14: they were cut off).
        await expect(page.locator("#backtest-form select[name=strategyId] option")).to_have_count(1)
        assert await page.evaluate(FITS_ITS_TEXT, "#backtest-form select[name=strategyId]")
        await page.click("#backtest-form button[type=submit]")
        await wait_until(page, "window.criptoren.backtest() !== null")
        drawn = await page.evaluate("window.criptoren.backtest()")
        await expect(page.locator("#backtest-summary")).to_contain_text("Entries / exits / wins")
    assert drawn["candles"] > 100 and drawn["trades"] > 0
    assert page.errors == []


async def test_the_dashboard_exports_trades_withdraws_principal_and_archives(db: App, page: Any) -> None:
    from domain import commands as cmds
    from domain import services
    from domain.channel import Channel
    from gql_api.export import COLUMNS

    await seed_demo(db.uow, db.exchange)
    db.price_book.set("BTCUSDT", Decimal(102500))
    bought = await services.buy(cmds.Buy(1, quote_amount=Decimal(400)), db.uow(), db.exchange, db.prices)
    db.price_book.set("BTCUSDT", Decimal(110000))
    await services.sell(cmds.Sell(bought.id or 0), db.uow(), db.exchange, db.prices)
    await services.create_strategy(
        cmds.CreateStrategy(1, "ETHUSDT", "Spare ETH", Channel(Decimal(2400), Decimal(2800))), db.uow(), db.exchange
    )
    async with servers.api_server(db) as host:
        await log_in(page, f"http://{host}", db)
        # The export: a CSV file of the client's fills, downloaded with the session's token.
        async with page.expect_download() as started:
            await page.click("#export-trades")
        download = await started.value
        lines = Path(await download.path()).read_text().splitlines()
        assert download.suggested_filename.startswith("criptoren-trades-1-")
        assert lines[0] == ",".join(COLUMNS) and [line.split(",")[2] for line in lines[1:]] == ["BUY", "SELL"]

        # Principal back: the free principal shrinks.
        demo_row = page.locator("#strategies tbody tr", has_text=DEMO)
        await demo_row.locator("button[data-action=select]").click()
        await page.fill("#fund-form input[name=amount]", "500")
        await page.click("#fund-form button[data-action=withdraw]")
        await expect(page.locator("#capital dd[data-k=principal]")).to_have_text("1,500.00")
        await page.fill("#fund-form input[name=amount]", "5000")
        await page.click("#fund-form button[data-action=withdraw]")
        await expect(page.locator("#fund-form .form-error")).to_contain_text("free principal")
        # Rule 11: a withdrawal that leaves entries too small to work stands, and says so.
        await page.fill("#fund-form input[name=amount]", "1400")
        await page.click("#fund-form button[data-action=withdraw]")
        await expect(page.locator("#capital dd[data-k=principal]")).to_have_text("100.00")
        await expect(page.locator("#fund-form .form-warning")).to_contain_text("every exit would become")
        await expect(page.locator("#fund-form .form-error")).to_have_text("")
        await page.fill("#fund-form input[name=amount]", "2000")
        await page.click("#fund-form button[type=submit]")
        await expect(page.locator("#capital dd[data-k=principal]")).to_have_text("2,100.00")
        await expect(page.locator("#fund-form .form-warning")).to_have_text("")

        # Archive a paused strategy (confirmed by a second click): it leaves the list.
        spare = page.locator("#strategies tbody tr", has_text="Spare ETH")
        await expect(spare.locator("button[data-action=archive]")).to_have_count(0)  # active: pause it first
        await spare.locator("button[data-action=pause]").click()
        await spare.locator("button[data-action=archive]").click()
        await expect(spare.locator("button[data-action=archive]")).to_have_text("Sure?")
        await spare.locator("button[data-action=archive]").click()
        await expect(page.locator("#strategies tbody tr")).to_have_count(1)
        assert page.errors == [] and page.external_requests == []  # (a stopped server's page logs errors)


async def test_the_alerts_panel_adds_a_webhook_tests_it_and_shows_deliveries(db: App, page: Any) -> None:
    from domain.services import alerts
    from tests.alert_receivers import WebhookReceiver, webhook_receiver
    from tests.integration.test_trading_pause import move

    await seed_demo(db.uow, db.exchange)
    async with servers.api_server(db) as host, webhook_receiver(WebhookReceiver()) as receiver:
        await log_in(page, f"http://{host}", db)
        await expect(page.locator('[data-empty-for="alert-endpoints"]')).to_be_visible()
        await page.fill("#alert-form input[name=url]", receiver.url)
        await page.click("#alert-form button[type=submit]")
        await expect(page.locator("#alert-secret")).to_contain_text("whsec_")
        receiver.secret = "whsec_" + (await page.locator("#alert-secret").inner_text()).split("whsec_", 1)[1].strip()
        row = page.locator("#alert-endpoints tbody tr", has_text=receiver.url)
        await expect(row).to_contain_text("active")

        await row.locator("button[data-action=test-alert]").click()
        await expect(page.locator("#banner")).to_contain_text("Test alert delivered (HTTP 200)")
        assert [r.body["type"] for r in receiver.accepted] == ["test"]  # signed with the secret shown

        # A buy, dispatched and delivered (what the worker's jobs do), then the log.
        await move(db, "101000", "103000")
        (delivery,) = await alerts.dispatch_events(db.uow(), datetime.now(UTC))
        await alerts.attempt_delivery(delivery.id or 0, db.uow(), db.alert_transport, db.secret_box, _Clock())
        await row.locator("button[data-action=alert-log]").click()
        log = page.locator("#alert-deliveries tbody tr")
        await expect(log).to_have_count(1)
        await expect(log).to_contain_text(f"evt_{delivery.event_id}")
        await expect(log).to_contain_text("delivered")
        assert [r.body["type"] for r in receiver.accepted] == ["test", "position_opened"]


async def test_the_alerts_panel_adds_a_telegram_chat_for_the_event_types_chosen(db: App, page: Any) -> None:
    from tests.alert_receivers import fake_telegram

    await seed_demo(db.uow, db.exchange)
    async with servers.api_server(db) as host, fake_telegram() as telegram:
        db.settings.telegram_api_url = telegram.url  # the API's test sends
        await log_in(page, f"http://{host}", db)
        form = page.locator("#alert-form")
        await form.locator("details.event-types summary").click()
        # The server's defaults are ticked, the rest is not (issue 15: stream down/up among them).
        for ticked in ("position_opened", "market_stream_down", "market_stream_up", "alert_endpoint_disabled"):
            await expect(form.locator(f"input[value={ticked}]")).to_be_checked()
        for unticked in ("strategy_created", "capital_allocated"):
            await expect(form.locator(f"input[value={unticked}]")).not_to_be_checked()

        await form.locator("select[name=kind]").select_option("telegram")
        await expect(form.locator("input[name=url]")).to_be_hidden()
        for box in await form.locator(".choices input").all():
            await box.uncheck()
        await form.locator("button[type=submit]").click()
        await expect(form.locator(".form-error")).to_have_text("Choose at least one event type.")
        await form.locator("input[value=position_opened]").check()
        await form.locator("input[value=market_stream_down]").check()
        await expect(form.locator('[data-k="chosen"]')).to_have_text("(2 chosen)")
        await form.locator("input[name=botToken]").fill("123456:ABC-secret-token")
        await form.locator("input[name=chatId]").fill("-100777")
        await form.locator("button[type=submit]").click()
        await expect(page.locator("#banner")).to_contain_text("Telegram endpoint #")
        row = page.locator("#alert-endpoints tbody tr", has_text="Telegram -100777")
        await expect(row).to_contain_text("2 types")
        await expect(page.locator("#alert-secret")).to_be_hidden()  # a bot token is never shown back

        await row.locator("button[data-action=test-alert]").click()
        await expect(page.locator("#banner")).to_contain_text("Test alert delivered (HTTP 200)")
        async with db.uow() as uow:
            (endpoint,) = await uow.alerts.endpoints(1)
        assert endpoint.event_types == ["market_stream_down", "position_opened"]
        assert endpoint.secret_encrypted != "123456:ABC-secret-token"
        assert [(token, chat) for token, chat, _ in telegram.messages] == [("123456:ABC-secret-token", "-100777")]
        assert "123456:ABC-secret-token" not in await page.content()
        assert page.errors == [] and page.external_requests == []  # (a stopped server's page logs errors)


async def test_an_endpoint_the_server_disables_is_an_event_and_can_be_activated_again(db: App, page: Any) -> None:
    from domain.services import alerts
    from tests.alert_receivers import WebhookReceiver, webhook_receiver
    from tests.integration.test_trading_pause import move

    await seed_demo(db.uow, db.exchange)
    async with servers.api_server(db) as host, webhook_receiver(WebhookReceiver(answer=lambda _b: 410)) as receiver:
        await log_in(page, f"http://{host}", db)
        await page.fill("#alert-form input[name=url]", receiver.url)
        await page.click("#alert-form button[type=submit]")
        await expect(page.locator("#alert-secret")).to_contain_text("whsec_")
        receiver.secret = "whsec_" + (await page.locator("#alert-secret").inner_text()).split("whsec_", 1)[1].strip()
        row = page.locator("#alert-endpoints tbody tr", has_text=receiver.url)
        await expect(row).to_contain_text("active")
        await expect(row.locator("button[data-action=activate-alert]")).to_have_count(0)

        # A buy, dispatched and attempted (what the worker's jobs do): the receiver answers 410.
        await move(db, "101000", "103000")
        delivery = next(d for d in await alerts.dispatch_events(db.uow(), datetime.now(UTC)))
        await alerts.attempt_delivery(delivery.id or 0, db.uow(), db.alert_transport, db.secret_box, _Clock())
        event = page.locator("#events li[data-type=alert_endpoint_disabled]")
        await expect(event).to_contain_text("are disabled: The receiver answered 410 Gone.")
        await expect(row).to_contain_text("disabled")  # the event refreshed the panel
        await row.locator("button[data-action=activate-alert]").click()
        await expect(row).to_contain_text("active")
        await expect(row.locator("button[data-action=activate-alert]")).to_have_count(0)
        assert page.errors == [] and page.external_requests == []
    assert [r.answered for r in receiver.requests] == [410]


class _Clock:
    def now(self) -> datetime:
        return datetime.now(UTC)
