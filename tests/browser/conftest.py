"""Browser tests: Debian's Chromium (`/usr/bin/chromium`) driven by Playwright (the Python package,
with its own browser download never used). `scripts/setup` installs Chromium when it runs as root
(CI does); elsewhere, without Chromium, these tests are skipped, except under CI=true, where they fail.

A failing test leaves a screenshot of its page in a temporary directory and prints its path."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from domain import commands as cmds
from domain.adapters.bootstrap import App
from domain.services import auth

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-background-networking",  # no calls home: this machine has no internet
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1440, "height": 1100}


def chromium_path() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "/usr/bin/chromium"):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the browser tests (.ci/run installs Chromium via scripts/setup)")
    pytest.skip(reason)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[Any]:
    report = yield
    if report.when == "call":
        item.stash[FAILED] = report.failed
    return report


FAILED = pytest.StashKey[bool]()


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Any]:
    executable = chromium_path()
    if executable is None:
        _unavailable("Chromium is not installed (Debian: apt-get install chromium, or run scripts/setup as root)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install -e '.[dev]')")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS, headless=True)
        yield browser
        await browser.close()


@pytest.fixture
async def page(browser: Any, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A fresh page (own context: empty storage). Requests that leave 127.0.0.1 are refused and
    recorded in `page.external_requests` (the dashboard and GraphiQL must work offline); page
    errors are recorded in `page.errors`. On failure, a screenshot is saved and its path printed."""
    context = await browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(15_000)
    page = await context.new_page()
    page.external_requests = []
    page.errors = []

    async def offline(route: Any) -> None:
        url = route.request.url
        if url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:")):
            await route.continue_()
        else:
            page.external_requests.append(url)
            await route.abort()

    await context.route("**/*", offline)
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on("console", lambda m: m.type == "error" and page.errors.append(m.text))
    yield page
    if request.node.stash.get(FAILED, False):
        directory = Path(tempfile.mkdtemp(prefix="criptoren-browser-"))
        path = directory / f"{request.node.name}.png"
        try:
            await page.screenshot(path=str(path), full_page=True)
            message = f"\nScreenshot of the failed page: {path}\n"
        except Exception as e:  # the page may be gone
            message = f"\nNo screenshot of the failed page: {e}\n"
        print(message)
        sys.stderr.write(message)
    await context.close()


async def wait_until(page: Any, expression: str, timeout: float = 30.0, every: float = 0.05) -> Any:
    """Poll a JavaScript expression until it is truthy; returns its value. (The dashboard's CSP
    forbids eval, which Playwright's wait_for_function uses; evaluate goes through DevTools.)"""
    deadline = time.monotonic() + timeout
    while True:
        value = await page.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout} s: {expression}")
        await asyncio.sleep(every)


async def credentials(app: App, client_id: int = 1) -> tuple[str, str]:
    """New API key and secret for a client (the demo client is 1)."""
    issued = await auth.issue_credentials(cmds.IssueCredentials(client_id), app.uow(), datetime.now(UTC))
    return issued.api_key, issued.api_secret


async def log_in(page: Any, base_url: str, app: App) -> None:
    """Open the dashboard and log in through its form as the demo client."""
    from playwright.async_api import expect

    api_key, api_secret = await credentials(app)
    await page.goto(base_url + "/")
    await page.fill("#api-key", api_key)
    await page.fill("#api-secret", api_secret)
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#live-view")).to_be_visible()
    await expect(page.locator("#conn-status")).to_have_attribute("data-state", "live")
