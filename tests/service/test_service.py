"""The node as a service, with real processes: schedules, late joiners, failures, metrics,
stops, reloads, and the status page in a real browser.

A schedule names runs by their slot, so every bank of a test derives the same run id by itself;
what the tests wait for is what the nodes report (their /status), never a fixed sleep.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from nodes import Network, assert_matches_plaintext, make_network
from prometheus_client.parser import text_string_to_metric_families
from selenium.webdriver.common.by import By
from service import browser
from service.services import Services, services

from riskprop.lab.synthetic import generate_dataset

chromium = browser.chromium

PARTIES = ["alice", "bob", "charlie"]
#: Short time-outs: a missing peer fails a run in seconds (the join window is longer).
QUICK = {"connect": 5, "request": 10, "idle": 10, "deadline": 300}
#: A daily slot open all day: whenever a test starts, the day's run is open.
ALL_DAY = {"cron": "0 0 * * *", "run_id": "daily-{date}", "join_window": 86399}


@pytest.fixture
def network(tmp_path: Path) -> Network:
    return make_network(tmp_path, PARTIES, timeouts=QUICK)


def run_folder(network: Network, party: str, run_id: str) -> Path:
    return network.out / party / "runs" / run_id


def folder_of(network: Network, run_id: str, party: str) -> Path:
    return run_folder(network, party, run_id)


def latest(network: Network, party: str) -> str | None:
    link = network.out / party / "latest"
    return Path(os.readlink(link)).name if link.is_symlink() else None


def read_snapshots(root: Path, party: str, player: dict[str, Any]) -> None:
    player["schedule"]["data"] = str(root / "snapshots" / "{date}" / party)


def today() -> str:
    return f"daily-{datetime.now(UTC):%Y-%m-%d}"


def away_from_the_minute() -> None:
    """Start in the first 45 s of a minute, so every node starts within the same slot."""
    second = datetime.now(UTC).second
    if second >= 45:
        time.sleep(62 - second)


def metrics(running: Services, party: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """name -> (labels -> value), parsed with Prometheus' own text parser."""
    code, body = running.get(party, "/metrics")
    assert code == 200
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            found.setdefault(sample.name, {})[labels] = sample.value
    return found


def test_a_schedule_every_minute_runs_twice_and_keeps_both_results(network: Network) -> None:
    away_from_the_minute()
    minutely = {"cron": "* * * * *", "run_id": "minute-{datetime}", "join_window": 3600}
    with services(network, minutely) as running:
        for party in PARTIES:
            running.start(party)
        running.wait(
            "two runs at every bank", lambda: all(len(running.succeeded(p)) >= 2 for p in PARTIES)
        )
        runs = running.succeeded("alice")[:2]
        assert all(running.succeeded(p)[:2] == runs for p in PARTIES)
        first, second = (datetime.strptime(r, "minute-%Y-%m-%dT%H%M") for r in runs)
        assert (second - first).total_seconds() == 60  # consecutive slots
        for run_id in runs:
            assert_matches_plaintext(network, functools.partial(folder_of, network, run_id))
        history = running.status("alice")
        assert history is not None
        triggers = {r["run_id"]: r["trigger"] for r in history["history"]}
        assert triggers[runs[0]] == "startup" and triggers[runs[1]] == "schedule"
        running.wait("latest on the second run", lambda: latest(network, "alice") == runs[1])
        assert all(p["reachable"] for p in history["peers"])
        found = metrics(running, "alice")
        assert found["riskprop_runs_total"][(("status", "succeeded"),)] >= 2
        assert found["riskprop_runs_total"][(("status", "failed"),)] == 0
        assert found["riskprop_sent_bytes_total"][()] > 0
        assert found["riskprop_last_success_timestamp_seconds"][()] > time.time() - 600
        assert found["riskprop_next_run_timestamp_seconds"][()] > time.time() - 60
        assert found["riskprop_certificate_expiry_seconds"][()] > 86400
        assert {dict(k)["peer"] for k in found["riskprop_peer_reachable"]} == {"bob", "charlie"}
        phases = {dict(k)["phase"] for k in found["riskprop_last_run_phase_seconds"]}
        assert phases == {"handshake", "iterating", "decrypting", "finishing"}
        assert found["riskprop_run_in_progress"][()] in (0, 1)
        for party in PARTIES:
            assert running.stop(party) == 0


def test_a_late_node_joins_the_open_slot(network: Network) -> None:
    """Each bank reads the day's snapshot (``schedule.data``); charlie starts after the
    others wait for it, and joins the day's run."""
    snapshot = network.root / "snapshots" / datetime.now(UTC).strftime("%Y-%m-%d")
    generate_dataset(snapshot, accounts=40 * 3, edges=120 * 3, banks=PARTIES, seed=8)
    with services(network, ALL_DAY) as running:
        for party in PARTIES:
            running.edit(party, functools.partial(read_snapshots, network.root, party))
        running.start("alice")
        running.start("bob")

        def waiting() -> bool:
            status = running.status("alice")
            return bool(status and status["current"] and status["current"]["phase"] == "handshake")

        running.wait("alice waiting in the handshake", waiting)
        assert running.get("alice", "/readyz")[0] == 503  # charlie is not up
        running.start("charlie")
        running.wait(
            "the day's run everywhere",
            lambda: all(today() in running.succeeded(p) for p in PARTIES),
        )
        assert_matches_plaintext(
            dataclasses.replace(network, data=snapshot), lambda p: run_folder(network, p, today())
        )
        for party in PARTIES:  # what crossed to each peer adds up to what was sent
            report = json.loads(
                (run_folder(network, party, today()) / "run-report.json").read_text()
            )
            assert set(report["bytes_by_peer"]) == set(PARTIES) - {party}
            assert sum(report["bytes_by_peer"].values()) == report["bytes_sent"]
            assert all(count > 0 for count in report["messages_by_peer"].values())
        assert all(latest(network, p) == today() for p in PARTIES)
        running.wait("alice ready", lambda: running.get("alice", "/readyz")[0] == 200)
        for party in PARTIES:
            assert running.stop(party) == 0


def test_a_failed_run_leaves_latest_on_the_previous_success(network: Network) -> None:
    """After the day's run, alice's operator triggers a run the other banks do not make:
    it fails once its peers are waited for, and ``latest`` stays on the day's run. The join
    window is shortened by a configuration reload (SIGHUP)."""
    with services(network, ALL_DAY) as running:
        for party in PARTIES:
            running.start(party)
        running.wait("the day's run", lambda: today() in running.succeeded("alice"))
        scores = (run_folder(network, "alice", today()) / "risk_scores.csv").read_bytes()

        def short_window(player: dict[str, Any]) -> None:
            player["schedule"]["join_window"] = 3

        running.edit("alice", short_window)
        running.processes["alice"].send_signal(signal.SIGHUP)
        running.wait("the reload", lambda: "configuration reloaded" in running.log("alice"))
        trigger = [*running.command("alice", "trigger"), "--run-id", "lonely-1"]
        result = subprocess.run(trigger, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
        assert "lonely-1" in result.stdout

        def failed() -> bool:
            status = running.status("alice")
            return status is not None and any(
                r["run_id"] == "lonely-1" and r["status"] == "failed" for r in status["history"]
            )

        running.wait("the lonely run to fail", failed)
        status = running.status("alice")
        assert status is not None
        record = next(r for r in status["history"] if r["run_id"] == "lonely-1")
        assert "bob" in record["error"] or "charlie" in record["error"], record
        assert latest(network, "alice") == today()
        assert status["latest"] == today()
        assert (network.out / "alice" / "latest" / "risk_scores.csv").read_bytes() == scores
        assert not (run_folder(network, "alice", "lonely-1") / "risk_scores.csv").exists()
        found = metrics(running, "alice")
        assert found["riskprop_runs_total"][(("status", "failed"),)] == 1
        again = subprocess.run(trigger, capture_output=True, text=True, check=False)
        assert again.returncode == 0  # the node takes the next trigger
        for party in PARTIES:
            assert running.stop(party) == 0


def test_sigterm_stops_a_service_at_once_idle_and_waiting_for_peers(network: Network) -> None:
    """Idle between runs and in a run waiting for its peers: exit 0 with one line."""
    hourly_later = {"cron": "0 0 1 1 *", "run_id": "yearly-{date}", "join_window": 60}
    with services(network, hourly_later) as running:
        running.start("bob")
        running.wait("bob up", lambda: running.get("bob", "/healthz")[0] == 200)
        assert running.status("bob") is not None
        assert running.stop("bob") == 0
        assert "service stopped on request" in running.log("bob")
    with services(network, ALL_DAY) as running:
        running.start("alice")

        def waiting() -> bool:
            status = running.status("alice")
            return bool(status and status["current"])

        running.wait("alice in a run", waiting)
        assert running.stop("alice") == 0
        assert "stopping on request" in running.log("alice")


def test_the_status_page_shows_a_run_in_progress(network: Network, chromium: Any) -> None:
    """alice alone in the day's run, waiting in the handshake: the page in headless Chromium
    shows the run, its phases and a progress bar; then, with the others up, the run's
    success in the history."""
    with services(network, ALL_DAY) as running:
        running.start("alice")
        running.wait("alice in a run", lambda: bool((running.status("alice") or {}).get("current")))
        chromium.get(running.url("alice", "/"))
        browser.wait_until(
            chromium,
            lambda d: today() in d.find_element(By.TAG_NAME, "body").text,
            "the run id on the page",
        )
        # The run is current before its first phase starts (the data are read first):
        # wait for the handshake row to turn to running rather than catch it in between.
        browser.wait_until(
            chromium,
            lambda d: (
                "running"
                in d.find_element(By.CSS_SELECTOR, '[data-phase="handshake"]').text.lower()
            ),
            "the handshake phase running",
        )
        browser.wait_until(
            chromium,
            lambda d: d.find_element(By.ID, "current-progress").is_displayed(),
            "the progress bar",
        )
        for party in ("bob", "charlie"):
            running.start(party)
        running.wait("the day's run", lambda: today() in running.succeeded("alice"))
        browser.wait_until(
            chromium,
            lambda d: "succeeded" in d.find_element(By.TAG_NAME, "body").text.lower(),
            "the success in the history",
        )
        assert browser.script_errors(chromium) == []
        for party in PARTIES:
            assert running.stop(party) == 0
