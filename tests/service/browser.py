"""Headless Chromium for the status page tests, through Selenium.

Debian's ``chromium`` and ``chromium-driver`` packages are used by their paths, so Selenium
Manager never looks for (or downloads) a browser or a driver. Without them the tests skip,
except in CI (``CI=true``), where ``.ci/run`` installs them and their absence is a failure.

A test module binds the fixture (``chromium = browser.chromium`` after ``from service
import browser``) and takes a ``chromium`` argument: one browser per module, quit at its end.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
#: the window the page must be readable in
WINDOW = (1280, 800)
#: a generous liveness limit for anything the page shows after a fetch (it polls every second)
PATIENCE = 15.0
IN_CI = os.environ.get("CI") == "true"

T = TypeVar("T")
#: what the ``chromium`` fixture gives (Chromium's driver: it also reads the browser's log)
Browser = webdriver.Chrome


def require_chromium() -> None:
    """Skip (fail in CI) unless Debian's Chromium and its driver are installed."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        what = " and ".join(missing)
        if IN_CI:
            pytest.fail(f"{what} missing: .ci/run installs chromium and chromium-driver")
        pytest.skip(f"{what} not installed (Debian packages chromium and chromium-driver)")


def start_chromium() -> Browser:
    """A headless Chromium at a fixed window size, driven by Debian's chromedriver."""
    require_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
        "--disable-dev-shm-usage",  # containers have a small /dev/shm
        "--disable-gpu",
        "--no-first-run",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "SEVERE"})
    return webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """One headless Chromium for a test module, quit at its end."""
    driver = start_chromium()
    try:
        yield driver
    finally:
        driver.quit()


def wait_until(driver: WebDriver, condition: Callable[[WebDriver], T], what: str) -> T:
    """``condition``'s first truthy result; fails naming ``what`` after ``PATIENCE`` seconds.

    The pages redraw their tables on every refresh, so an element found by one poll may be
    gone by the next read: such polls count as not yet, like a missing element."""
    ignored = (NoSuchElementException, StaleElementReferenceException)
    return WebDriverWait(driver, PATIENCE, poll_frequency=0.1, ignored_exceptions=ignored).until(
        condition, f"the page never showed {what}"
    )


def script_errors(driver: Browser) -> list[str]:
    """The page's script errors logged since the last call (answers such as 401 or 503 are
    the network's entries, not errors of the page)."""
    entries: list[dict[str, str]] = driver.get_log("browser")  # type: ignore[no-untyped-call]
    return [
        entry["message"]
        for entry in entries
        if entry.get("level") == "SEVERE" and entry.get("source") != "network"
    ]


class BackgroundServer:
    """An aiohttp application on 127.0.0.1 (a random port, ``base``), served from a thread of
    its own, so that a test's browser and the test itself can both talk to it."""

    def __init__(self, app: web.Application) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runner = web.AppRunner(app, access_log=None)
        self.base = f"http://127.0.0.1:{self.call(self._start())}"

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the server's loop; its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(10)

    async def _start(self) -> int:
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        return int(self.runner.addresses[0][1])

    def close(self) -> None:
        self.call(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
