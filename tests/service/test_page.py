"""The admin listener's status page (``riskprop.service.page``) in a real headless Chromium.

A small aiohttp server on loopback serves the page at ``/`` and a canned ``/status`` document
of the shape the node serves (optionally behind a bearer token); the tests read what the
browser renders, and one reads the pixels of a screenshot to see the progress drawn.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web
from PIL import Image
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from service import browser
from service.browser import Browser, script_errors, wait_until

from riskprop.service.page import CONTENT_TYPE, status_page

#: the module's headless Chromium (a fixture: one browser for all the tests here)
chromium = browser.chromium

T = TypeVar("T")
Document = dict[str, Any]

NOW = "2026-11-29T02:00:40Z"
RUN_ID = "daily-2026-11-29"
PHASES = ("handshake", "iterating", "decrypting", "finishing")


# --- canned /status documents ------------------------------------------------------------------
def phase(
    name: str, state: str, done: int, total: int, elapsed: float, eta: float | None
) -> Document:
    return {
        "name": name,
        "state": state,
        "done": done,
        "total": total,
        "fraction": done / total if total else 0.0,
        "elapsed_seconds": elapsed,
        "eta_seconds": eta,
    }


def idle_document() -> Document:
    """A node between runs with no history, peers, key or certificate: the bare minimum."""
    return {
        "player": "alice",
        "version": "0.1.0",
        "now": NOW,
        "started": "2026-11-28T09:00:00Z",
        "state": "idle",
        "current": None,
        "next_run": None,
        "schedule": None,
        "latest": None,
        "last_success": None,
        "history": [],
        "peers": [],
        "key": None,
        "certificate": None,
    }


def running_document(fraction: float = 0.6) -> Document:
    """Alice mid-run, in the decrypting phase (18 of 31 ciphertexts)."""
    document = idle_document()
    document.update(
        state="running",
        schedule={"cron": "0 2 * * *", "run_id": "daily-{date}", "join_window": 3600},
        key={
            "fingerprint": "3fa19c04be77d2e80a51",
            "parties": ["alice", "bob", "charlie"],
            "threshold": 1,
            "bits": 2048,
        },
        certificate={"subject": "alice", "not_after": "2027-11-29T00:00:00Z", "days_left": 364.2},
        current={
            "run_id": RUN_ID,
            "trigger": "schedule",
            "started": "2026-11-29T02:00:10Z",
            "elapsed_seconds": 30.0,
            "phase": "decrypting",
            "detail": "decrypting 18/31 ciphertexts",
            "fraction": fraction,
            "eta_seconds": 20.0,
            "bytes_sent": 2_345_678,
            "bytes_by_peer": {"charlie": 1_111_111, "bob": 1_234_567},
            "messages_by_peer": {"charlie": 38, "bob": 40},
            "phases": [
                phase("handshake", "done", 2, 2, 0.3, 0.0),
                phase("iterating", "done", 10, 10, 11.2, 0.0),
                phase("decrypting", "running", 18, 31, 18.4, 14.0),
                phase("finishing", "pending", 0, 1, 0.0, None),
            ],
        },
    )
    return document


def history_document() -> Document:
    """Alice idle after a failed run and a succeeded one, with three peers."""
    document = idle_document()
    document.update(
        schedule={"cron": "0 2 * * *", "run_id": "daily-{date}", "join_window": 3600},
        next_run={"run_id": "daily-2026-11-30", "at": "2026-11-30T02:00:00Z", "in_seconds": 86360},
        latest="daily-2026-11-27",
        last_success="2026-11-27T02:00:48Z",
        certificate={"subject": "alice", "not_after": "2026-12-11T12:00:00Z", "days_left": 12.4},
        history=[
            {
                "run_id": "daily-2026-11-28",
                "trigger": "schedule",
                "status": "failed",
                "started": "2026-11-28T02:00:00Z",
                "finished": "2026-11-28T02:02:57Z",
                "seconds": 177.0,
                "error": "bob did not answer within 177 s",
                "bytes_sent": 4_096,
                "accounts": None,
                "phases": {"handshake": 177.0},
            },
            {
                "run_id": "daily-2026-11-27",
                "trigger": "schedule",
                "status": "succeeded",
                "started": "2026-11-27T02:00:00Z",
                "finished": "2026-11-27T02:00:48Z",
                "seconds": 48.1,
                "error": None,
                "bytes_sent": 1_234_567,
                "accounts": 3000,
                "phases": {"handshake": 0.3, "iterating": 11.0, "decrypting": 31.0},
            },
        ],
        peers=[
            {
                "name": "bob",
                "url": "https://bob:9000",
                "reachable": True,
                "checked": "2026-11-29T02:00:30Z",
                "error": None,
            },
            {
                "name": "charlie",
                "url": "https://charlie:9000",
                "reachable": False,
                "checked": "2026-11-29T02:00:30Z",
                "error": "connection refused",
            },
            {
                "name": "dave",
                "url": "https://dave:9000",
                "reachable": None,
                "checked": None,
                "error": None,
            },
        ],
    )
    return document


# --- the server --------------------------------------------------------------------------------
class StatusServer(browser.BackgroundServer):
    """The page and ``document`` as ``/status`` on 127.0.0.1 (a random port), from a thread.

    With ``token`` set, ``/status`` answers 401 unless the request carries it as a bearer
    token; with ``failure`` set, it answers that HTTP status. ``authorizations`` records the
    Authorization header of every ``/status`` request (None when absent).
    """

    def __init__(self) -> None:
        self.document: Document = idle_document()
        self.token: str | None = None
        self.failure: int | None = None
        self.authorizations: list[str | None] = []
        app = web.Application()
        app.router.add_get("/", self._page)
        app.router.add_get("/status", self._status)
        super().__init__(app)
        self.url = f"{self.base}/"

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(body=status_page(), headers={"Content-Type": CONTENT_TYPE})

    async def _status(self, request: web.Request) -> web.Response:
        authorization = request.headers.get("Authorization")
        self.authorizations.append(authorization)
        if self.token is not None and authorization != f"Bearer {self.token}":
            return web.json_response(
                {"error": "unauthorized"}, status=401, headers={"WWW-Authenticate": "Bearer"}
            )
        if self.failure is not None:
            return web.Response(status=self.failure, text="unavailable")
        return web.json_response(self.document)


@pytest.fixture
def server() -> Iterator[StatusServer]:
    """A fresh server per test: a new port is a new origin, so no token survives in the tab's
    sessionStorage from one test to the next."""
    status_server = StatusServer()
    try:
        yield status_server
    finally:
        status_server.close()


# --- reading the page --------------------------------------------------------------------------
def shown(driver: WebDriver, css: str) -> str:
    """The rendered text of the element ``css`` selects ("" while it is hidden)."""
    return driver.find_element(By.CSS_SELECTOR, css).text


def open_page(driver: Browser, server: StatusServer, *, player: str = "alice") -> None:
    script_errors(driver)  # only this page's errors count from here
    driver.get(server.url)
    wait_until(driver, lambda d: shown(d, "#player") == player, f"player {player}")


def phase_cells(driver: WebDriver, name: str) -> dict[str, str]:
    row = driver.find_element(By.CSS_SELECTOR, f'#phases tr[data-phase="{name}"]')
    cells = ("phase-percent", "phase-count", "phase-state", "phase-elapsed", "phase-eta")
    texts = {cell: row.find_element(By.CLASS_NAME, cell).text for cell in cells}
    bar = row.find_element(By.CSS_SELECTOR, ".bar")
    texts["fraction"] = bar.get_attribute("data-fraction") or ""
    texts["state"] = row.get_attribute("data-state") or ""
    return texts


def sent_to_peers(driver: WebDriver) -> list[list[str]]:
    """The "sent to peers" table row by row: its cells' texts (the peer first) and, on a
    peer's row, the exact bytes. Read in one script: the page rebuilds the table when a count
    changes."""
    table: list[list[str]] = driver.execute_script(
        "return [...document.querySelectorAll('#sent tr')].map((tr) =>"
        " [...tr.cells].map((c) => c.innerText)"
        ".concat(tr.dataset.peer ? [tr.cells[1].dataset.bytes] : []));"
    )
    return table


def rows(driver: WebDriver, body: str) -> list[list[str]]:
    """The texts of every row of the table body ``#body``, cell by cell."""
    return [
        [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
        for row in driver.find_elements(By.CSS_SELECTOR, f"#{body} tr")
    ]


# --- tests -------------------------------------------------------------------------------------
def test_the_page_is_one_self_contained_file() -> None:
    page = status_page().decode()
    assert page.startswith("<!doctype html>")
    assert 'fetch("status"' in page  # relative: works under any path prefix
    for external in ("http://", "https://", "src=", "@import", "url(", "<link"):
        assert external not in page, external
    # data reaches the page as text, never as markup
    assert "innerHTML" not in page and "insertAdjacentHTML" not in page


def test_a_node_mid_run_shows_the_run_and_each_phase(
    chromium: Browser, server: StatusServer
) -> None:
    server.document = running_document(0.6)
    open_page(chromium, server)
    assert shown(chromium, "#state") == "running"
    assert shown(chromium, "#current-run-id") == RUN_ID
    assert shown(chromium, "#current-trigger") == "schedule"
    assert shown(chromium, "#current-percent") == "60%"
    assert shown(chromium, "#current-eta") == "about 20 s left"
    assert shown(chromium, "#current-detail") == "decrypting 18/31 ciphertexts"
    assert shown(chromium, "#current-bytes") == "2.3 MB"
    progress = chromium.find_element(By.ID, "current-progress")
    assert progress.get_attribute("data-fraction") == "0.6"
    assert progress.get_attribute("aria-valuenow") == "60"
    assert not chromium.find_element(By.ID, "no-run").is_displayed()

    names = [
        row.get_attribute("data-phase")
        for row in chromium.find_elements(By.CSS_SELECTOR, "#phases tr")
    ]
    assert names == list(PHASES)
    states = {name: phase_cells(chromium, name)["state"] for name in PHASES}
    assert states == {
        "handshake": "done",
        "iterating": "done",
        "decrypting": "running",
        "finishing": "pending",
    }
    decrypting = phase_cells(chromium, "decrypting")
    assert decrypting["phase-percent"] == "58%"
    assert decrypting["phase-count"] == "18/31"
    assert decrypting["phase-state"] == "running"
    assert decrypting["phase-elapsed"] == "18 s"
    assert decrypting["phase-eta"] == "14 s"
    assert float(decrypting["fraction"]) == pytest.approx(18 / 31)
    finishing = phase_cells(chromium, "finishing")
    assert (finishing["phase-percent"], finishing["phase-eta"]) == ("0%", "—")

    assert shown(chromium, "#fingerprint") == "3fa19c04 be77d2e8 0a51"  # as keygen prints it
    assert shown(chromium, "#key-info") == "3 parties, threshold 1, 2048 bits"
    expiry = chromium.find_element(By.ID, "cert-expiry")
    assert expiry.text == "364 days left"
    assert expiry.get_attribute("data-warn") == "false"
    assert not script_errors(chromium)


def test_the_current_run_shows_what_it_sent_to_each_peer(
    chromium: Browser, server: StatusServer
) -> None:
    server.document = running_document()
    open_page(chromium, server)
    wait_until(chromium, sent_to_peers, "the bytes sent to each peer")
    assert sent_to_peers(chromium) == [
        ["bob", "1.2 MB", "40", "1234567"],
        ["charlie", "1.1 MB", "38", "1111111"],
    ]
    assert "Sent to peers" in shown(chromium, "#sent-table caption")
    assert not chromium.find_element(By.ID, "sent-none").is_displayed()

    # a configured peer it has sent nothing yet shows 0; counts follow the next status
    document = running_document()
    document["peers"] = history_document()["peers"]  # bob, charlie, dave
    document["current"]["bytes_by_peer"] = {"bob": 300}
    document["current"]["messages_by_peer"] = {"bob": 1}
    server.document = document
    wait_until(chromium, lambda d: len(sent_to_peers(d)) == 3, "every configured peer")
    assert sent_to_peers(chromium) == [
        ["bob", "300 B", "1", "300"],
        ["charlie", "0 B", "0", "0"],
        ["dave", "0 B", "0", "0"],
    ]

    # nothing sent and no peers configured: one line says so
    document = running_document()
    document["current"]["bytes_by_peer"] = {}
    document["current"]["messages_by_peer"] = {}
    server.document = document
    wait_until(
        chromium,
        lambda d: sent_to_peers(d) == [["Nothing sent to a peer yet."]],
        "nothing sent",
    )

    # a node that does not report the counts per peer: the table gives way to a line
    document = running_document()
    del document["current"]["bytes_by_peer"], document["current"]["messages_by_peer"]
    server.document = document
    wait_until(chromium, lambda d: d.find_element(By.ID, "sent-none").is_displayed(), "the absence")
    assert shown(chromium, "#sent-none") == "Sent to each peer: not reported by this node."
    assert not chromium.find_element(By.ID, "sent-table").is_displayed()
    assert shown(chromium, "#current-bytes") == "2.3 MB"  # the run's total still shows
    assert not script_errors(chromium)


def test_an_idle_node_shows_its_history_and_peers(chromium: Browser, server: StatusServer) -> None:
    server.document = history_document()
    open_page(chromium, server)
    assert shown(chromium, "#state") == "idle"
    assert shown(chromium, "#no-run") == "No run in progress."
    assert not chromium.find_element(By.ID, "run").is_displayed()

    assert rows(chromium, "history") == [
        [
            "daily-2026-11-28",
            "schedule",
            "failed",
            "2026-11-28 02:00:00 UTC",
            "3 min",
            "4.1 kB",
            "bob did not answer within 177 s",
        ],
        [
            "daily-2026-11-27",
            "schedule",
            "succeeded",
            "2026-11-27 02:00:00 UTC",
            "48 s",
            "1.2 MB",
            "",
        ],
    ]
    failed = chromium.find_element(By.CSS_SELECTOR, '#history tr[data-status="failed"]')
    assert failed.get_attribute("data-run") == "daily-2026-11-28"

    peers = rows(chromium, "peers")
    assert [(p[0], p[1], p[2], p[4]) for p in peers] == [
        ("bob", "https://bob:9000", "yes", ""),
        ("charlie", "https://charlie:9000", "no", "connection refused"),
        ("dave", "https://dave:9000", "unknown", ""),
    ]
    assert peers[0][3] == "2026-11-29 02:00:30 UTC (10 s ago)"
    assert peers[2][3] == "never"

    assert shown(chromium, "#latest") == "daily-2026-11-27"
    assert shown(chromium, "#latest-time") == "2026-11-27 02:00:48 UTC (48 h ago)"
    assert shown(chromium, "#next-run") == "daily-2026-11-30"
    assert shown(chromium, "#next-in") == "2026-11-30 02:00:00 UTC (in 23 h 59 min)"
    expiry = chromium.find_element(By.ID, "cert-expiry")
    assert expiry.text == "12 days left"
    assert expiry.get_attribute("data-warn") == "true"
    assert "warn" in (expiry.get_attribute("class") or "").split()
    assert not script_errors(chromium)


def test_a_node_with_nothing_yet_shows_empty_sections(
    chromium: Browser, server: StatusServer
) -> None:
    open_page(chromium, server)
    assert shown(chromium, "#no-run") == "No run in progress."
    assert rows(chromium, "history") == [["No runs yet."]]
    assert rows(chromium, "peers") == [["No peers."]]
    assert shown(chromium, "#fingerprint") == "no key"
    assert shown(chromium, "#cert-expiry") == "no certificate"
    assert shown(chromium, "#latest") == "none yet"
    assert shown(chromium, "#next-run") == "not scheduled"
    assert not script_errors(chromium)


def test_the_page_asks_for_the_token_and_sends_it_as_a_bearer(
    chromium: Browser, server: StatusServer
) -> None:
    server.token = "correct horse battery"
    server.document = history_document()
    chromium.get(server.url)
    wait_until(chromium, lambda d: d.find_element(By.ID, "token").is_displayed(), "the token")
    assert server.authorizations[0] is None
    assert not chromium.find_element(By.ID, "status").is_displayed()

    def enter(token: str) -> None:
        chromium.find_element(By.ID, "token").send_keys(token)
        chromium.find_element(By.ID, "token-submit").click()

    enter("wrong")
    wait_until(chromium, lambda d: "refused" in shown(d, "#token-error"), "the refusal")
    assert "Bearer wrong" in server.authorizations
    enter("correct horse battery")
    wait_until(chromium, lambda d: shown(d, "#player") == "alice", "the status")
    assert rows(chromium, "history")[0][0] == "daily-2026-11-28"
    assert not chromium.find_element(By.ID, "token-form").is_displayed()
    assert server.authorizations[-1] == "Bearer correct horse battery"

    # the token lasts for the tab: a reload shows the status without asking again
    asked = len(server.authorizations)
    chromium.refresh()
    wait_until(chromium, lambda d: shown(d, "#player") == "alice", "the status after a reload")
    assert not chromium.find_element(By.ID, "token-form").is_displayed()
    assert server.authorizations[asked:]
    assert set(server.authorizations[asked:]) == {"Bearer correct horse battery"}


def test_a_node_that_stops_answering_is_reported_and_the_page_recovers(
    chromium: Browser, server: StatusServer
) -> None:
    server.document = running_document()
    open_page(chromium, server)
    server.failure = 503
    wait_until(chromium, lambda d: "HTTP 503" in shown(d, "#connection"), "the lost connection")
    assert shown(chromium, "#current-run-id") == RUN_ID  # the last status stays, marked stale
    server.failure = None
    wait_until(
        chromium, lambda d: not d.find_element(By.ID, "connection").is_displayed(), "recovery"
    )


def test_text_from_the_node_is_shown_as_text_never_as_markup(
    chromium: Browser, server: StatusServer
) -> None:
    error = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2"><b>bold</b>'
    document = history_document()
    document["history"][0]["error"] = error
    document["history"][0]["run_id"] = "<i>run</i>"
    document["peers"][1]["error"] = error
    server.document = document
    open_page(chromium, server)
    failed = chromium.find_element(By.CSS_SELECTOR, '#history tr[data-status="failed"]')
    assert failed.find_element(By.CLASS_NAME, "run-error").text == error
    assert failed.find_element(By.CLASS_NAME, "run-id").text == "<i>run</i>"
    assert rows(chromium, "peers")[1][4] == error
    for tag in ("script", "img", "b", "i"):
        assert not chromium.find_elements(By.CSS_SELECTOR, f"#history {tag}, #peers {tag}")
    assert chromium.execute_script("return window.pwned === undefined") is True
    assert not script_errors(chromium)


RGB = re.compile(r"rgba?\((\d+), (\d+), (\d+)")


@pytest.mark.parametrize("fraction", [0.25, 0.8])
def test_the_progress_bar_is_drawn_filled_to_its_fraction(
    chromium: Browser, server: StatusServer, tmp_path: Path, fraction: float
) -> None:
    server.document = running_document(fraction)
    open_page(chromium, server)
    wait_until(
        chromium,
        lambda d: shown(d, "#current-percent") == f"{round(fraction * 100)}%",
        "the overall percentage",
    )
    left, top, width, height, ratio, colour = chromium.execute_script(
        "const bar = document.getElementById('current-progress');"
        "bar.scrollIntoView({block: 'center'});"
        "const r = bar.getBoundingClientRect();"
        "const fill = getComputedStyle(bar.querySelector('.fill')).backgroundColor;"
        "return [r.left, r.top, r.width, r.height, window.devicePixelRatio, fill];"
    )
    png = chromium.get_screenshot_as_png()
    (tmp_path / "status.png").write_bytes(png)
    image = Image.open(io.BytesIO(png)).convert("RGB")

    match = RGB.match(colour)
    assert match, colour
    fill = tuple(int(channel) for channel in match.groups())
    x0, x1 = round(left * ratio), round((left + width) * ratio)
    y = round((top + height / 2) * ratio)
    assert 0 <= x0 < x1 <= image.width and 0 <= y < image.height, (image.size, x0, x1, y)
    line = [image.getpixel((x, y)) for x in range(x0, x1)]

    def is_fill(pixel: Any) -> bool:
        return all(abs(a - b) <= 24 for a, b in zip(pixel, fill, strict=True))

    filled = sum(map(is_fill, line))
    assert abs(filled / len(line) - fraction) <= 0.1, (filled, len(line))
    assert is_fill(line[1]) and not is_fill(line[-2])  # drawn from the left
