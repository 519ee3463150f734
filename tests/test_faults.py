"""Fault injection over real node processes: kills, stops, partitions. Nothing may be lost.

Every faulty run must end with exactly the results of an uninterrupted run (the CSV text,
bit for bit): a restarted node resumes from its checkpoint and its peers replay what it lost.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from nodes import (
    FaultyLinks,
    Network,
    assert_matches_plaintext,
    make_network,
    route_through,
    wait_all,
)

KILLS = 20  # SIGKILL-and-restart points over all trials
PATIENT = {"connect": 30, "request": 30, "idle": 60, "deadline": 300}


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Network, dict[str, str]]:
    """A three-bank network and the results of one uninterrupted run."""
    network = make_network(
        tmp_path_factory.mktemp("base"), ["alice", "bob", "charlie"], timeouts=PATIENT
    )
    processes = [network.start(p) for p in network.parties]
    assert wait_all(processes, 120) == [0, 0, 0]
    assert_matches_plaintext(network)
    return network, network.results_text()


def kill_and_restart(
    network: Network, processes: dict[str, subprocess.Popen[bytes]], victim: str
) -> bool:
    """SIGKILL ``victim`` if it still runs and start it again with the same command."""
    if processes[victim].poll() is not None:
        return False
    processes[victim].send_signal(signal.SIGKILL)
    processes[victim].wait()
    processes[victim] = network.start(victim)
    return True


def test_randomised_kill_and_restart_points(
    base: tuple[Network, dict[str, str]], tmp_path: Path
) -> None:
    network, expected = base
    rng = random.Random(int(os.environ.get("RISKPROP_FAULT_SEED", "20261122")))
    kills, trials = 0, 0
    while kills < KILLS:
        trials += 1
        assert trials <= 4 * KILLS, f"only {kills} kills landed in {trials} trials"
        run = network.another_run(tmp_path / f"trial{trials}", PATIENT)
        order = list(run.parties)
        rng.shuffle(order)
        processes = {p: run.start(p) for p in order}
        started = time.monotonic()
        for _ in range(2):  # up to two kills per trial, at random moments and banks
            time.sleep(rng.uniform(0.2, 2.0))
            kills += kill_and_restart(run, processes, rng.choice(run.parties))
        codes = wait_all(list(processes.values()), 180)
        print(f"trial {trials}: {time.monotonic() - started:.1f} s, {kills} kills so far")
        assert codes == [0, 0, 0], {p: run.log(p)[-1500:] for p in run.parties}
        assert run.results_text() == expected  # exactly the uninterrupted results
        for party in run.parties:  # a completed run leaves no checkpoint behind
            assert not (run.out / party / ".riskprop" / "test-run").exists()
    print(f"{kills} kill-and-restart points over {trials} runs, results lost: 0")


def test_sigterm_stops_cleanly_and_the_same_command_resumes(
    base: tuple[Network, dict[str, str]], tmp_path: Path
) -> None:
    network, expected = base
    run = network.another_run(tmp_path / "run", PATIENT)
    processes = {p: run.start(p) for p in run.parties}
    journal = run.out / "bob" / ".riskprop" / "test-run" / "checkpoint.bin"
    deadline = time.monotonic() + 60
    while not journal.exists():  # stop bob once it has a checkpoint
        assert time.monotonic() < deadline and processes["bob"].poll() is None
        time.sleep(0.02)
    processes["bob"].send_signal(signal.SIGTERM)
    assert processes["bob"].wait(30) == 1
    assert "the same command resumes the run" in run.log("bob")
    assert journal.exists()
    processes["bob"] = run.start("bob")
    codes = wait_all(list(processes.values()), 180)
    assert codes == [0, 0, 0], {p: run.log(p)[-1500:] for p in run.parties}
    assert "resuming from the checkpoint" in run.log("bob")
    assert run.results_text() == expected


def test_partition_longer_than_the_timeouts_fails_everyone_then_resumes(
    base: tuple[Network, dict[str, str]], tmp_path: Path
) -> None:
    """charlie is cut off (frozen) for longer than the time-outs; everyone exits non-zero
    naming who it could not reach; starting the three again resumes and completes."""
    network, expected = base
    short = {"connect": 3, "request": 3, "idle": 4, "deadline": 120}
    run = network.another_run(tmp_path / "run", short)
    processes = {p: run.start(p) for p in run.parties}
    journal = run.out / "charlie" / ".riskprop" / "test-run" / "checkpoint.bin"
    deadline = time.monotonic() + 60
    while not journal.exists():
        assert time.monotonic() < deadline and processes["charlie"].poll() is None
        time.sleep(0.02)
    os.kill(processes["charlie"].pid, signal.SIGSTOP)
    try:
        others = wait_all([processes["alice"], processes["bob"]], 60)
    finally:
        os.kill(processes["charlie"].pid, signal.SIGCONT)
    assert others == [1, 1]
    for party in ("alice", "bob"):
        last = run.log(party).strip().splitlines()[-1]
        assert last.startswith("riskprop: error:") and "charlie" in last, last
        assert not (run.out / party / "risk_scores.csv").exists()
    assert wait_all([processes["charlie"]], 60) == [1]
    last = run.log("charlie").strip().splitlines()[-1]
    assert last.startswith("riskprop: error:") and ("alice" in last or "bob" in last), last

    restarted = [run.start(p) for p in run.parties]
    assert wait_all(restarted, 120) == [0, 0, 0], {p: run.log(p)[-1500:] for p in run.parties}
    assert run.results_text() == expected


def test_latency_and_loss_on_every_link(
    base: tuple[Network, dict[str, str]], tmp_path: Path
) -> None:
    network, expected = base
    run = network.another_run(tmp_path / "run", PATIENT)
    links = FaultyLinks(latency=0.2, loss=0.05, reset=0.5, seed=7)
    try:
        route_through(run, links)
        processes = [run.start(p) for p in run.parties]
        codes = wait_all(processes, 300)
    finally:
        links.close()
    assert codes == [0, 0, 0], {p: run.log(p)[-1500:] for p in run.parties}
    assert run.results_text() == expected
    assert links.chunks > 50 and links.lost > 0 and links.resets > 0
    print(
        f"faulty links: {links.chunks} chunks delayed 200 ms, {links.lost} lost (+0.6 s), "
        f"{links.resets} connections cut; results lost: 0"
    )


def test_a_completed_run_restarted_is_a_no_op_and_fresh_runs_it_again(
    base: tuple[Network, dict[str, str]], tmp_path: Path
) -> None:
    network, expected = base
    run = network.another_run(tmp_path / "run", PATIENT)
    assert wait_all([run.start(p) for p in run.parties], 120) == [0, 0, 0]
    first = {p: (run.out / p / "risk_scores.csv").stat().st_mtime_ns for p in run.parties}
    assert wait_all([run.start("alice")], 60) == [0]  # alone: its peers are gone
    assert "already complete" in run.log("alice")
    assert (run.out / "alice" / "risk_scores.csv").stat().st_mtime_ns == first["alice"]
    fresh = [
        subprocess.Popen(
            [*command, "--fresh"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        for command in (run.command(p) for p in run.parties)
    ]
    assert wait_all(fresh, 120) == [0, 0, 0]
    assert run.results_text() == expected
    assert all((run.out / p / "risk_scores.csv").stat().st_mtime_ns > first[p] for p in run.parties)
