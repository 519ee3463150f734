"""Real node processes against damaged state, reused run ids, stops, full and read-only disks.

Every case ends with one line a person can act on, peers that are told instead of waiting out a
time-out, and no result written that the run cannot vouch for.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from nodes import Network, assert_matches_plaintext, make_network, wait_all

from riskprop.files.results import REPORT_FILE, RESULTS_FILE

PARTIES = ["alice", "bob", "charlie"]
PATIENT = {"connect": 60, "request": 60, "idle": 120, "deadline": 600}


def start(run: Network, party: str, *extra: str) -> subprocess.Popen[bytes]:
    """``party``'s node with ``extra`` options, appending to its log."""
    log = (run.root / f"{party}.log").open("ab")
    return subprocess.Popen([*run.command(party), *extra], stdout=log, stderr=subprocess.STDOUT)


def wait_until(condition: Callable[[], bool], process: subprocess.Popen[bytes], what: str) -> None:
    """Poll ``condition`` while ``process`` runs (only a hung node takes the 300 s)."""
    deadline = time.monotonic() + 300
    while not condition():
        assert process.poll() is None, f"the node exited before {what}"
        assert time.monotonic() < deadline, f"no {what} within 300 s"
        time.sleep(0.01)


def kill(process: subprocess.Popen[bytes]) -> None:
    """Stop ``process`` where it is (SIGSTOP) and kill it (SIGKILL)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGSTOP)
    process.kill()
    process.wait()


def last_line(run: Network, party: str) -> str:
    return run.log(party).strip().splitlines()[-1]


@pytest.fixture
def run(tmp_path: Path) -> Network:
    return make_network(tmp_path, PARTIES, timeouts=PATIENT)


def test_a_damaged_checkpoint_stops_every_bank_and_nothing_is_written(run: Network) -> None:
    processes = {p: start(run, p) for p in PARTIES}
    checkpoint = run.out / "bob" / ".riskprop" / "test-run" / "checkpoint.bin"
    wait_until(checkpoint.exists, processes["bob"], "checkpoint of bob")
    kill(processes["bob"])
    damaged = bytearray(checkpoint.read_bytes())
    damaged[len(damaged) // 3] ^= 0x01  # one bit of one ciphertext
    checkpoint.write_bytes(bytes(damaged))
    processes["bob"] = start(run, "bob")
    codes = wait_all(list(processes.values()), 240)
    assert codes == [1, 1, 1], {p: run.log(p)[-800:] for p in PARTIES}
    assert f"{checkpoint}: damaged" in last_line(run, "bob")
    assert "--fresh at every bank" in last_line(run, "bob")
    for peer in ("alice", "charlie"):
        assert "bob aborted the run" in last_line(run, peer)
        # peers get a generic reason, never bob's own paths or data
        line = last_line(run, peer)
        assert str(checkpoint) not in line and "its saved state is damaged" in line, line
    assert not any((run.out / p / RESULTS_FILE).exists() for p in PARTIES)
    # the remedy the line names works, and gives the right scores
    processes = {p: start(run, p, "--fresh") for p in PARTIES}
    assert wait_all(list(processes.values()), 240) == [0, 0, 0]
    assert_matches_plaintext(run)


def test_a_reused_run_id_with_other_inputs_is_refused(run: Network) -> None:
    assert wait_all([start(run, p) for p in PARTIES], 240) == [0, 0, 0]
    results = run.results_text()
    for party in PARTIES:
        for name in (RESULTS_FILE, REPORT_FILE):
            assert stat.S_IMODE((run.out / party / name).stat().st_mode) == 0o600
    accounts = run.data / "bob" / "accounts.csv"
    rows = accounts.read_text().splitlines()
    identifier, _ = rows[1].split(",")
    accounts.write_text("\n".join([rows[0], f"{identifier},0.75", *rows[2:]]) + "\n")
    bob = start(run, "bob")
    assert bob.wait(120) == 1
    assert "was completed with other inputs (the bank's data)" in last_line(run, "bob")
    assert "use a new run id, or --fresh" in last_line(run, "bob")
    more = [start(run, p, "-T", "3") for p in ("alice", "charlie")]
    assert wait_all(more, 120) == [1, 1]
    assert "other inputs (iterations 2 -> 3)" in last_line(run, "alice")
    assert run.results_text() == results  # nothing stale was served as new


def test_sigterm_while_waiting_for_peers_exits_0_with_one_line(run: Network) -> None:
    bob = start(run, "bob")
    wait_until(lambda: "listening on" in run.log("bob"), bob, "listening")
    bob.send_signal(signal.SIGTERM)
    assert bob.wait(60) == 0
    log = run.log("bob")
    assert log.count("stopping on request; the same command resumes") == 1
    assert "Traceback" not in log


def test_a_restarted_node_with_its_result_leaves_once_its_peers_are_gone(tmp_path: Path) -> None:
    for trial in range(10):  # until bob is caught between saving his result and leaving
        run = make_network(tmp_path / f"trial{trial}", PARTIES, timeouts=PATIENT)
        processes = {p: start(run, p) for p in PARTIES}
        report = run.out / "bob" / REPORT_FILE

        def saved(report: Path = report) -> bool:
            return report.exists() and '"results_sha256": "' in report.read_text()

        wait_until(saved, processes["bob"], "saved result of bob")
        os.kill(processes["bob"].pid, signal.SIGSTOP)
        caught = processes["bob"].poll() is None
        for party in PARTIES:
            kill(processes[party])
        # caught before the journal's removal began: its checkpoint is what a restart reads
        # (stopped inside the removal, the directory may remain without it: a completed run)
        if caught and (run.out / "bob" / ".riskprop" / "test-run" / "checkpoint.bin").is_file():
            break
    else:
        pytest.fail("bob left before he could be stopped in 10 runs")
    results = (run.out / "bob" / RESULTS_FILE).read_text()
    player = yaml.safe_load((run.configs / "bob.yaml").read_text())
    player["timeouts"]["connect"] = 2  # how long bob tries peers that never come back
    (run.configs / "bob.yaml").write_text(yaml.safe_dump(player))
    bob = start(run, "bob")
    assert bob.wait(120) == 0, run.log("bob")[-800:]
    assert "result already saved" in run.log("bob")
    assert (run.out / "bob" / RESULTS_FILE).read_text() == results


@contextlib.contextmanager
def small_disk(path: Path, size: str, *, read_only: bool = False) -> Iterator[None]:
    """A tmpfs of ``size`` at ``path`` (root only: a real full or read-only disk)."""
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs as root: the disk tests need mount")
        pytest.skip("mounting a small disk needs root")
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def test_a_full_disk_is_one_line_and_the_peers_are_told(run: Network) -> None:
    with small_disk(run.out / "bob", "12k"):
        codes = wait_all([start(run, p) for p in PARTIES], 240)
        assert codes == [1, 1, 1], {p: run.log(p)[-800:] for p in PARTIES}
        assert "No space left on device" in last_line(run, "bob")
        assert "Traceback" not in run.log("bob")
        for peer in ("alice", "charlie"):
            assert "bob aborted the run" in last_line(run, peer)
            assert "cannot write its state or results" in last_line(run, peer)
            assert "No space left" not in last_line(run, peer)
            assert not (run.out / peer / RESULTS_FILE).exists()


def test_read_only_or_file_output_is_one_line_before_anything_is_sent(run: Network) -> None:
    with small_disk(run.out / "bob", "64k", read_only=True):
        bob = start(run, "bob")
        assert bob.wait(60) == 1
        assert last_line(run, "bob").endswith("cannot write results here (Read-only file system)")
    (run.out / "alice").parent.mkdir(parents=True, exist_ok=True)
    (run.out / "alice").write_text("not a directory")
    alice = start(run, "alice")
    assert alice.wait(60) == 1
    assert last_line(run, "alice").endswith("the output path is a file, not a directory")
    assert "Traceback" not in run.log("alice") + run.log("bob")


def test_a_bank_larger_than_the_agreed_limit_is_one_line(run: Network) -> None:
    player = yaml.safe_load((run.configs / "bob.yaml").read_text())
    player["limits"] = {"max_accounts": 10}
    (run.configs / "bob.yaml").write_text(yaml.safe_dump(player))
    bob = start(run, "bob")
    assert bob.wait(60) == 1
    assert "limits.max_accounts is 10, but this bank has" in last_line(run, "bob")


def test_fresh_starts_and_a_completed_rerun_log_no_replays_and_no_errors(run: Network) -> None:
    assert wait_all([start(run, p) for p in PARTIES], 240) == [0, 0, 0]
    for party in PARTIES:  # nobody restarted, so nobody replays
        assert "replaying" not in run.log(party) and " ERROR " not in run.log(party)
    since = run.log_size("alice")
    assert start(run, "alice").wait(60) == 0  # the run is complete: a no-op
    again = run.log("alice", since)
    assert "already complete" in again
    assert " ERROR " not in again and "Traceback" not in again
