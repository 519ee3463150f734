"""``riskprop demo --web`` (``riskprop.localnet.web``): the live view of the three banks.

The unit tests drive ``DemoState`` and ``DemoView`` by hand, with fake node admin listeners
answering ``/status``; the process tests run the real demo (512-bit key, two iterations,
a fresh cache under ``tmp_path``) and read its page in headless Chromium.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

import pytest
from aiohttp import web
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait
from service import browser
from service.browser import Browser, script_errors, wait_until

from riskprop.cli import main
from riskprop.files.results import NodeReport, read_report
from riskprop.localnet.demo import DemoKeys, DemoReport
from riskprop.localnet.web import BYTES_VIEW, DemoState, DemoView, by_phase, phase_of
from riskprop.service.progress import PHASES

#: the module's headless Chromium
chromium = browser.chromium

T = TypeVar("T")
BANKS = ("alice", "bob", "charlie")
#: a liveness limit for a whole demo on a loaded machine (data, certificates, key, run)
DEMO_PATIENCE = 240.0
URL = re.compile(r"open (http://127\.0\.0\.1:\d+/) to watch")


# --- fake node admin listeners -----------------------------------------------------------------
class FakeNodes(browser.BackgroundServer):
    """``GET /<bank>/status`` for each bank, on 127.0.0.1 from a thread: ``documents[bank]``
    as JSON, or the HTTP status ``failures[bank]``."""

    def __init__(self) -> None:
        self.documents: dict[str, dict[str, Any]] = {}
        self.failures: dict[str, int] = {}
        app = web.Application()
        app.router.add_get("/{bank}/status", self._status)
        super().__init__(app)

    async def _status(self, request: web.Request) -> web.Response:
        bank = request.match_info["bank"]
        if bank in self.failures:
            return web.Response(status=self.failures[bank], text="unavailable")
        return web.json_response(self.documents.get(bank, {"current": None}))


def current(phase: str, sent: int, to: dict[str, tuple[int, int]] | None = None) -> dict[str, Any]:
    """A node's ``current`` run in ``phase`` having sent ``sent`` bytes, and ``to`` each peer
    (bytes, messages) when given (without it, the fields are absent, as from an older node)."""
    at = PHASES.index(phase)
    per_peer: dict[str, dict[str, int]] = {}
    if to is not None:
        per_peer = {
            "bytes_by_peer": {peer: sizes for peer, (sizes, _) in to.items()},
            "messages_by_peer": {peer: count for peer, (_, count) in to.items()},
        }
    return {
        **per_peer,
        "run_id": "demo-test",
        "trigger": "once",
        "phase": phase,
        "detail": f"{phase} 1/2",
        "fraction": (at + 0.5) / len(PHASES),
        "bytes_sent": sent,
        "phases": [
            {
                "name": name,
                "state": "done" if i < at else "running" if i == at else "pending",
                "done": 1,
                "total": 2,
                "fraction": 1.0 if i < at else 0.5 if i == at else 0.0,
                "elapsed_seconds": 0.1,
                "eta_seconds": None,
            }
            for i, name in enumerate(PHASES)
        ],
    }


def node_report(bank: str, accounts: int) -> NodeReport:
    """A bank's report: 2850 bytes sent, 1600 in 9 messages to the first of its two peers
    (in ``BANKS`` order) and 1250 in 7 to the other."""
    peers = [b for b in BANKS if b != bank]
    return NodeReport(
        player=bank,
        run_id="demo-test",
        accounts=accounts,
        results=Path(f"/out/{bank}/risk_scores.csv"),
        seconds={
            "handshake": 0.5,
            "encrypt": 0.25,
            "period 0 iteration 1": 1.0,
            "period 0 iteration 2": 1.0,
            "decrypt": 2.0,
            "proofs": 1.0,
            "write": 0.125,
        },
        bytes_by_phase={
            "hello": 100,
            "period 0 iteration 1": 1000,
            "period 0 iteration 2": 1000,
            "decrypt_request": 300,
            "partial": 400,
            "served": 20,
            "done": 30,
        },
        bytes_sent=2850,
        wall_seconds=5.9,
        bytes_by_peer={peers[0]: 1600, peers[1]: 1250},
        messages_by_peer={peers[0]: 9, peers[1]: 7},
    )


def get(url: str, host: str | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def state_of(view: DemoView) -> dict[str, Any]:
    code, _, body = get(f"{view.url}state")
    assert code == 200
    document: dict[str, Any] = json.loads(body)
    return document


def eventually(what: str, condition: Callable[[], bool], patience: float = 15.0) -> None:
    deadline = time.monotonic() + patience
    while not condition():
        assert time.monotonic() < deadline, f"not within {patience:g} s: {what}"
        time.sleep(0.1)


@pytest.fixture
def nodes() -> Iterator[FakeNodes]:
    fake = FakeNodes()
    try:
        yield fake
    finally:
        fake.close()


# --- unit tests ------------------------------------------------------------------------------
def test_report_steps_and_message_kinds_map_to_the_status_phases() -> None:
    report = node_report("alice", 3)
    assert by_phase(report.seconds) == {
        "handshake": 0.5,
        "iterating": 2.25,
        "decrypting": 3.0,
        "finishing": 0.125,
    }
    assert by_phase(report.bytes_by_phase) == {
        "handshake": 100,
        "iterating": 2000,
        "decrypting": 700,
        "finishing": 50,
    }
    assert phase_of("rejoin") == "handshake" and phase_of("abort") == "finishing"


def test_state_follows_the_demo_and_the_nodes_status(nodes: FakeNodes) -> None:
    state = DemoState()
    with DemoView(state) as view:
        first = state_of(view)
        assert first["stage"] == "preparing" and first["banks"] == [] and first["bank"] == {}
        state.begin(BANKS, key_bits=512, iterations=2)
        state.stage("keygen", "dealerless")
        state.keygen("alice", "done", 1.234, "wrote its share")
        state.keygen("bob", "running", 0.5, "sieving")
        state.keygen("charlie", "cached")
        state.stage("running", "run demo-test")
        nodes.documents["alice"] = {
            "current": current("iterating", 1000, {"bob": (600, 3), "charlie": (400, 2)})
        }
        nodes.failures["bob"] = 503
        nodes.documents["charlie"] = {"current": None}  # the node is up, its run not yet
        state.nodes({bank: f"{nodes.base}/{bank}" for bank in BANKS}, "demo-test")

        def alice_seen() -> bool:
            return bool(state_of(view)["bank"]["alice"]["bytes_sent"] == 1000)

        eventually("alice's bytes", alice_seen)
        assert state_of(view)["bank"]["alice"]["bytes_by_peer"] == {"bob": 600, "charlie": 400}
        # counts that are not whole numbers are left out, never shown
        later = current("decrypting", 1500, {"bob": (900, 5), "charlie": (600, 4)})
        later["bytes_by_peer"]["mallory"] = "lots"
        later["messages_by_peer"]["mallory"] = -1
        later["messages_by_peer"]["eve"] = True
        nodes.documents["alice"] = {"current": later}
        eventually(
            "alice decrypting",
            lambda: state_of(view)["bank"]["alice"]["current"]["phase"] == "decrypting",
        )
        eventually("bob's error", lambda: state_of(view)["bank"]["bob"]["node"]["error"])
        doc = state_of(view)
        assert set(doc) == {
            "stage",
            "detail",
            "error",
            "failed_in",
            "elapsed_seconds",
            "key_bits",
            "iterations",
            "keygen",
            "run_id",
            "run_seconds",
            "bytes_view",
            "banks",
            "bank",
        }
        assert doc["stage"] == "running" and doc["keygen"] == "dealerless"
        assert doc["banks"] == list(BANKS) and doc["run_id"] == "demo-test"
        assert doc["bytes_view"] == BYTES_VIEW == "per-pair"
        alice, bob, charlie = (doc["bank"][b] for b in BANKS)
        assert set(alice) == {
            "keygen",
            "node",
            "current",
            "bytes_sent",
            "bytes_live",
            "bytes_by_peer",
            "messages_by_peer",
            "result",
        }
        assert alice["keygen"] == {"state": "done", "seconds": 1.23, "detail": "wrote its share"}
        assert bob["keygen"]["state"] == "running" and charlie["keygen"]["state"] == "cached"
        # the node's current run as it reports it; bytes credited to the phase at each poll
        assert alice["node"]["state"] == "running" and alice["node"]["error"] is None
        assert alice["current"] == later
        assert alice["bytes_live"] == {
            "handshake": 0,
            "iterating": 1000,
            "decrypting": 500,
            "finishing": 0,
        }
        # what it delivered to each peer so far, the latest figures as the node reports them
        assert alice["bytes_by_peer"] == {"bob": 900, "charlie": 600}
        assert alice["messages_by_peer"] == {"bob": 5, "charlie": 4}
        assert bob["node"]["state"] == "starting" and "503" in bob["node"]["error"]
        assert bob["current"] is None and bob["bytes_sent"] == 0
        assert charlie["node"]["state"] == "running" and charlie["current"] is None
        # not reported (yet): None, not zero
        assert bob["bytes_by_peer"] is None and charlie["messages_by_peer"] is None
        assert all(doc["bank"][b]["result"] is None for b in BANKS)

        # a node whose status has no counts per peer keeps its last ones, and one that has
        # none yet stays unknown
        state.node_status("alice", current("finishing", 1600))
        state.node_status("charlie", current("handshake", 50))
        doc = state_of(view)
        assert doc["bank"]["alice"]["bytes_by_peer"] == {"bob": 900, "charlie": 600}
        assert doc["bank"]["alice"]["bytes_sent"] == 1600
        assert doc["bank"]["charlie"]["bytes_sent"] == 50
        assert doc["bank"]["charlie"]["bytes_by_peer"] is None

        # the end: nodes exit, results with the plaintext comparison, per bank
        for bank in BANKS:
            state.node_exited(bank, 0, 6.0)
        top = {
            bank: [(f"{bank}-{i}", 0.9 - i / 10, 0.9 - i / 10 + 1e-10) for i in range(5)]
            for bank in BANKS
        }
        report = DemoReport(
            data=Path("/data"),
            out=Path("/out"),
            key_bits=512,
            keys=DemoKeys(Path("/keys"), "distributed", 1.2),
            seconds=6.5,
            reports={bank: node_report(bank, 10 + i) for i, bank in enumerate(BANKS)},
            differences={"alice": 1e-10, "bob": 2e-10, "charlie": 3e-10},
            top=top,
        )
        state.finished(report)
        doc = state_of(view)
        assert doc["stage"] == "done" and doc["run_seconds"] == 6.5
        for i, bank in enumerate(BANKS):
            entry = doc["bank"][bank]
            assert entry["node"]["state"] == "finished" and entry["node"]["exit_code"] == 0
            result = entry["result"]
            assert result["accounts"] == 10 + i and result["bytes_sent"] == 2850
            assert result["max_difference"] == report.differences[bank]
            assert [p["name"] for p in result["phases"]] == list(PHASES)
            assert {p["state"] for p in result["phases"]} == {"done"}
            assert result["bytes_by_phase"] == {
                "handshake": 100,
                "iterating": 2000,
                "decrypting": 700,
                "finishing": 50,
            }
            assert result["bytes_by_kind"]["partial"] == 400
            # exactly, from the run report: what it delivered to each other bank
            one, other = (b for b in BANKS if b != bank)
            assert result["bytes_by_peer"] == {one: 1600, other: 1250}
            assert result["messages_by_peer"] == {one: 9, other: 7}
            assert sum(result["bytes_by_peer"].values()) == result["bytes_sent"]
            # a bank's column lists its own accounts only
            assert [row["account"] for row in result["top"]] == [f"{bank}-{j}" for j in range(5)]
            assert result["top"][0] == {
                "account": f"{bank}-0",
                "secure": 0.9,
                "plaintext": 0.9 + 1e-10,
            }
        assert state.watched() == {}  # exited nodes are no longer polled

        state.failed("node bob failed: gone")
        doc = state_of(view)
        assert doc["stage"] == "failed" and doc["failed_in"] == "done"
        assert doc["error"] == "node bob failed: gone"


def test_the_view_serves_its_page_to_loopback_names_only() -> None:
    with DemoView(DemoState()) as view:
        code, headers, body = get(view.url)
        assert code == 200 and body.startswith(b"<!doctype html>")
        assert headers["Content-Type"].startswith("text/html")
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        assert b'fetch("state"' in body and b"innerHTML" not in body
        assert b"http" not in body.replace(b"http-equiv", b"")  # no external resource
        code, _, _ = get(f"{view.url}state", host=f"localhost:{view.port}")
        assert code == 200
        code, _, body = get(f"{view.url}state", host=f"rebound.example:{view.port}")
        assert code == 403 and b"bank" not in body


def test_a_busy_web_port_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(SystemExit) as exit_info:
            main(["demo", "--web", "--web-port", str(port), "--key-bits", "512"])
    assert exit_info.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith(f"riskprop: error: --web-port: cannot listen on 127.0.0.1:{port}")
    assert "Traceback" not in "\n".join(lines)


# --- the real demo -----------------------------------------------------------------------------
class DemoProcess:
    """``riskprop demo --web`` as a process, with its cache under ``root``."""

    def __init__(self, root: Path, *extra: str) -> None:
        env = {**os.environ, "XDG_CACHE_HOME": str(root / "cache"), "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, "-m", "riskprop", "demo", "--web", "--out", str(root / "out")]
        self.process = subprocess.Popen(
            [*command, *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        stream: IO[str] | None = self.process.stdout
        assert stream is not None
        for line in stream:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def url(self) -> str:
        found: list[str] = []

        def printed() -> bool:
            assert self.process.poll() is None, self.output
            found.extend(URL.findall(self.output))
            return bool(found)

        eventually("the view's URL", printed, DEMO_PATIENCE)
        return found[0]

    def state(self, url: str) -> dict[str, Any]:
        """The view's ``/state``."""
        with urllib.request.urlopen(f"{url}state", timeout=10) as response:
            document: dict[str, Any] = json.loads(response.read())
        return document

    def wait(self, timeout: float) -> int:
        """The exit code (a demo that does not end is killed and fails the test)."""
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"the demo did not end:\n{self.output}") from None
        self._reader.join(5)
        return code

    def stop(self) -> int:
        """SIGTERM; the exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.wait(30)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def remaining(root: Path, but: int) -> list[str]:
    """Command lines of processes, other than ``but``, running with ``root`` in them (nodes
    left behind)."""
    left = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in (os.getpid(), but):
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(root) in command:
            left.append(command)
    return left


def bank_text(driver: WebDriver, bank: str, css: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, f'.bank[data-bank="{bank}"] {css}').text


Cell = tuple[str, str | None, str | None]


def matrix(driver: WebDriver) -> dict[tuple[str, str], Cell]:
    """The "between banks" matrix by (sender, recipient), sums under "all": each cell's
    text, ``data-bytes`` and ``data-messages`` (None when absent). Read in one script: the
    page rebuilds the table when a figure changes."""
    cells = driver.execute_script(
        "return [...document.querySelectorAll('#pairs-table td[data-from]')].map((td) =>"
        " [td.dataset.from, td.dataset.to, td.innerText,"
        " td.dataset.bytes ?? null, td.dataset.messages ?? null]);"
    )
    return {
        (sender, recipient): (text, size, count) for sender, recipient, text, size, count in cells
    }


def pairs_source(driver: WebDriver) -> str:
    return driver.find_element(By.ID, "pairs-table").get_attribute("data-source") or ""


def test_the_matrix_shows_live_counts_then_the_reports_figures(chromium: Browser) -> None:
    """The page over a hand-driven ``DemoState``: the nodes' live counts per peer (one node
    not reporting them yet), then the run reports' exact ones."""
    state = DemoState()
    with DemoView(state) as view:
        state.begin(BANKS, key_bits=512, iterations=2)
        state.stage("running", "run demo-test")
        state.node_status(
            "alice", current("iterating", 1000, {"bob": (600, 3), "charlie": (400, 2)})
        )
        state.node_status("bob", current("handshake", 120, {"alice": (120, 1)}))
        state.node_status("charlie", current("handshake", 0))  # no counts per peer
        script_errors(chromium)
        chromium.get(view.url)
        wait_until(
            chromium,
            lambda d: pairs_source(d) == "live" and ("alice", "bob") in matrix(d),
            "the live matrix",
        )
        cells = matrix(chromium)
        assert "Live" in chromium.find_element(By.ID, "pairs-source").text
        assert cells[("alice", "bob")] == ("600 B\n3 messages", "600", "3")
        assert cells[("alice", "charlie")] == ("400 B\n2 messages", "400", "2")
        assert cells[("bob", "alice")] == ("120 B\n1 message", "120", "1")
        assert cells[("bob", "charlie")] == ("0 B\n0 messages", "0", "0")  # nothing sent yet
        assert cells[("charlie", "alice")] == ("—", None, None)  # not reported
        for bank in BANKS:
            assert cells[(bank, bank)] == ("", None, None)  # the diagonal is empty
        assert cells[("alice", "all")] == ("1.0 kB\n5 messages", "1000", "5")
        assert cells[("charlie", "all")][1] is None
        # received: unknown while one sender's counts are
        assert cells[("all", "alice")] == ("—", None, None)

        state.node_status(
            "charlie", current("iterating", 700, {"alice": (300, 2), "bob": (400, 2)})
        )
        wait_until(
            chromium,
            lambda d: matrix(d)[("charlie", "bob")][1] == "400",
            "charlie's counts",
        )
        cells = matrix(chromium)
        assert cells[("all", "alice")] == ("420 B\n3 messages", "420", "3")
        assert cells[("all", "all")][1:] == ("1820", "10")

        report = DemoReport(
            data=Path("/data"),
            out=Path("/out"),
            key_bits=512,
            keys=DemoKeys(Path("/keys"), "distributed", 1.2),
            seconds=6.5,
            reports={bank: node_report(bank, 10) for bank in BANKS},
            differences=dict.fromkeys(BANKS, 1e-10),
            top={},
        )
        state.finished(report)
        wait_until(chromium, lambda d: pairs_source(d) == "report", "the reports' figures")
        assert "run-report.json" in chromium.find_element(By.ID, "pairs-source").text
        cells = matrix(chromium)
        assert cells[("alice", "bob")] == ("1.6 kB\n9 messages", "1600", "9")
        assert cells[("charlie", "bob")] == ("1.3 kB\n7 messages", "1250", "7")
        for bank in BANKS:
            assert cells[(bank, "all")][1:] == ("2850", "16")
        assert cells[("all", "all")][1:] == (str(3 * 2850), str(3 * 16))
        assert not script_errors(chromium)


def test_the_page_shows_the_banks_running_and_their_results(
    chromium: Browser, tmp_path: Path
) -> None:
    demo = DemoProcess(tmp_path, "--key-bits", "512", "-T", "2")
    try:
        url = demo.url()
        script_errors(chromium)
        chromium.get(url)

        def finished(driver: WebDriver) -> bool:
            assert demo.process.poll() is None, demo.output
            assert not script_errors(chromium)  # a broken page fails at once
            badge = driver.find_element(By.ID, "stage")
            results = driver.find_elements(By.CSS_SELECTOR, ".bank .result")
            return badge.get_attribute("data-stage") == "done" and (
                len(results) == len(BANKS) and all(r.is_displayed() for r in results)
            )

        WebDriverWait(chromium, DEMO_PATIENCE, poll_frequency=0.2).until(
            finished, "the page never showed every bank's results"
        )
        banks = chromium.find_elements(By.CSS_SELECTOR, ".bank")
        assert [b.get_attribute("data-bank") for b in banks] == list(BANKS)
        for bank in BANKS:
            assert bank_text(chromium, bank, ".bank-name") == bank
            assert bank_text(chromium, bank, ".keygen").startswith("done in ")  # a fresh key
            assert bank_text(chromium, bank, ".node").startswith("finished in ")
            diff = chromium.find_element(By.CSS_SELECTOR, f'.bank[data-bank="{bank}"] .max-diff')
            assert float(diff.text) < 1e-6 and float(diff.get_attribute("data-value") or 1) < 1e-6
            for phase in PHASES:
                row = chromium.find_element(
                    By.CSS_SELECTOR, f'.bank[data-bank="{bank}"] tr[data-phase="{phase}"]'
                )
                assert row.get_attribute("data-state") == "done", (bank, phase)
            # its highest-scored accounts, secure next to plaintext, equal to 1e-6
            top = chromium.find_elements(
                By.CSS_SELECTOR, f'.bank[data-bank="{bank}"] table.top tbody tr'
            )
            assert len(top) == 5
            for row in top:
                account, secure, plain = (td.text for td in row.find_elements(By.TAG_NAME, "td"))
                assert account and abs(float(secure) - float(plain)) < 1e-6
            assert int(bank_text(chromium, bank, ".accounts")) > 0
        # the bytes each bank sent, per phase, from the run reports
        assert chromium.find_element(By.ID, "bytes-section").get_attribute("data-source") == (
            "report"
        )
        assert "run-report.json" in chromium.find_element(By.ID, "bytes-source").text
        for bank in BANKS:
            total = chromium.find_element(
                By.CSS_SELECTOR, f'#bytes tr[data-phase="total"] td[data-bank="{bank}"]'
            )
            assert int(total.get_attribute("data-bytes") or 0) > 0 and total.text.endswith("B")
            iterating = chromium.find_element(
                By.CSS_SELECTOR, f'#bytes tr[data-phase="iterating"] td[data-bank="{bank}"]'
            )
            assert int(iterating.get_attribute("data-bytes") or 0) > 0
        # between banks: every bank sent to every other one (the handshake at least); each
        # row, what its node delivered to each peer, sums to what its report says it sent
        assert pairs_source(chromium) == "report"
        reports = {bank: read_report(tmp_path / "out" / bank) for bank in BANKS}
        cells = matrix(chromium)
        for sender in BANKS:
            sent = 0
            for recipient in BANKS:
                text, size, count = cells[(sender, recipient)]
                if sender == recipient:
                    assert (text, size, count) == ("", None, None)
                    continue
                assert size is not None and count is not None, (sender, recipient)
                assert int(size) > 0 and int(count) > 0, (sender, recipient)
                assert int(size) == reports[sender].bytes_by_peer[recipient]
                assert int(count) == reports[sender].messages_by_peer[recipient]
                assert text.endswith("messages")
                sent += int(size)
            assert sent == reports[sender].bytes_sent > 0
            assert cells[(sender, "all")][1] == str(sent)
            total = chromium.find_element(
                By.CSS_SELECTOR, f'#bytes tr[data-phase="total"] td[data-bank="{sender}"]'
            )
            assert total.get_attribute("data-bytes") == str(sent)
        assert not script_errors(chromium)
        height = chromium.execute_script("return document.documentElement.scrollHeight")
        chromium.set_window_size(browser.WINDOW[0], int(height) + 200)  # the whole page
        (tmp_path / "demo.png").write_bytes(chromium.get_screenshot_as_png())
        chromium.set_window_size(*browser.WINDOW)

        # the demo keeps showing the results until SIGTERM, then exits 0
        assert "results shown at" in demo.output and "Ctrl-C to stop" in demo.output
        assert demo.process.poll() is None
        assert demo.stop() == 0, demo.output
        assert re.search(r"^alice\s+\d+", demo.output, re.MULTILINE)  # the terminal table too
        assert not remaining(tmp_path, demo.process.pid)
    finally:
        demo.close()


def test_sigterm_during_key_generation_stops_the_demo_and_its_nodes(tmp_path: Path) -> None:
    # a 2048-bit dealerless key takes far longer than the test waits for it
    demo = DemoProcess(tmp_path, "--key-bits", "2048", "-T", "1")
    try:
        url = demo.url()

        def generating() -> bool:
            assert demo.process.poll() is None, demo.output
            doc = demo.state(url)
            return doc["stage"] == "keygen" and all(
                doc["bank"][b]["keygen"]["state"] == "running" for b in BANKS
            )

        eventually("key generation", generating, DEMO_PATIENCE)
        assert remaining(tmp_path, demo.process.pid)  # the keygen processes
        assert demo.stop() == 0, demo.output
        assert "stopped by SIGTERM" in demo.output
        pid = demo.process.pid
        eventually("the keygen processes to end", lambda: not remaining(tmp_path, pid), 10.0)
    finally:
        demo.close()


def test_a_failed_demo_shows_its_error_until_the_linger_ends_then_exits_1(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    demo = DemoProcess(tmp_path, "--data", str(missing), "--web-linger", "5")
    try:
        url = demo.url()
        eventually("the failure", lambda: demo.state(url)["stage"] == "failed")
        doc = demo.state(url)
        assert doc["failed_in"] == "preparing"
        assert doc["error"] == f"{missing}: data set directory not found"
        assert demo.wait(60) == 1
        assert f"the failure shown at {url} for 5 s" in demo.output
        assert demo.lines[-1] == f"riskprop: error: {missing}: data set directory not found\n"
        assert "Traceback" not in demo.output
    finally:
        demo.close()
