"""Fault injection over real node processes: kills, stops, partitions. Nothing may be lost.

Every faulty run must end with exactly the results of an uninterrupted run (the CSV text,
bit for bit): a restarted node resumes from its checkpoint and its peers replay what it lost.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from subprocess import Popen

import pytest
import yaml
from nodes import (
    ITERATIONS,
    FaultyLinks,
    Network,
    assert_matches_plaintext,
    make_network,
    route_through,
    wait_all,
)

KILLS = 20  # SIGKILL-and-restart points over all trials
#: Time-outs for runs that must succeed however busy the machine: a node process starts within
#: seconds (connect), and a peer killed and restarted answers within seconds (idle). Not longer:
#: a node sending to a peer that has finished and left (which it cannot know) tries for
#: max(connect, idle) seconds, and restarts make that happen.
PATIENT = {"connect": 6, "request": 10, "idle": 10, "deadline": 600}
#: Over the faulty links every exchange takes several delayed chunks, some lost or cut.
LOSSY = {"connect": 60, "request": 60, "idle": 60, "deadline": 600}


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


#: Log lines after which a node is killed: each marks a point of the protocol, so a kill lands
#: where the test chose, not wherever a sleep of the test's clock happened to end.
MILESTONES = (
    "listening on",
    "handshake complete",
    *(f"period 0 iteration {k}/{ITERATIONS} done" for k in range(1, ITERATIONS + 1)),
    "decrypted",
)


def reached(run: Network, party: str, process: Popen[bytes], since: int, line: str) -> bool:
    """Wait until ``party``'s node (its log from byte ``since``) logs ``line``: True, or it
    exits first: False."""
    deadline = time.monotonic() + 300  # only a hung node takes this long
    while line not in run.log(party, since):
        if process.poll() is not None:
            return False
        assert time.monotonic() < deadline, f"{party} neither logged {line!r} nor exited"
        time.sleep(0.005)
    return True


def freeze(process: Popen[bytes]) -> bool:
    """SIGSTOP ``process``; whether it was still running (a stopped process cannot exit, so
    what is done to it next lands mid-run)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGSTOP)
    return process.poll() is None


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
        started = time.monotonic()
        processes = {p: run.start(p) for p in order}
        since = dict.fromkeys(run.parties, 0)
        for _ in range(2):  # up to two kills per trial, at random banks and protocol points
            victim, milestone = rng.choice(run.parties), rng.choice(MILESTONES)
            process = processes[victim]
            if reached(run, victim, process, since[victim], milestone) and freeze(process):
                print(f"killed {victim} after {milestone!r}")
                process.send_signal(signal.SIGKILL)
                process.wait()
                since[victim] = run.log_size(victim)
                processes[victim] = run.start(victim)  # the same command
                kills += 1
        codes = wait_all(list(processes.values()), 180)
        print(f"trial {trials}: {time.monotonic() - started:.1f} s, {kills} kills so far")
        assert codes == [0, 0, 0], {p: run.log(p)[-1500:] for p in run.parties}
        assert run.results_text() == expected  # exactly the uninterrupted results
        for party in run.parties:  # a completed run leaves no checkpoint behind
            assert not (run.out / party / ".riskprop" / "test-run").exists()
    print(f"{kills} kill-and-restart points over {trials} runs, results lost: 0")


def wait_for_checkpoint(run: Network, party: str, processes: dict[str, Popen[bytes]]) -> None:
    """Wait until ``party`` saved its first checkpoint (its handshake is complete), then freeze
    every node there. None can have finished in between: the peers cannot finish before they
    have ``party``'s last iteration's scores, and ``party`` not before its peers."""
    journal = run.out / party / ".riskprop" / "test-run" / "checkpoint.bin"
    deadline = time.monotonic() + 300  # only a hung node takes this long
    while not journal.exists():
        assert time.monotonic() < deadline and processes[party].poll() is None, run.log(party)
        time.sleep(0.005)
    frozen = {name: freeze(process) for name, process in processes.items()}
    assert all(frozen.values()), f"a node finished right after {party}'s first checkpoint"


def thaw(process: Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGCONT)


def test_sigterm_stops_cleanly_and_the_same_command_resumes(
    base: tuple[Network, dict[str, str]], tmp_path: Path
) -> None:
    """bob is stopped while its peers are frozen (so it cannot get further meanwhile); it
    exits 0 with one line and keeps its checkpoint; the same command resumes the run."""
    network, expected = base
    run = network.another_run(tmp_path / "run", PATIENT)
    processes = {p: run.start(p) for p in run.parties}
    try:
        wait_for_checkpoint(run, "bob", processes)
        processes["bob"].send_signal(signal.SIGTERM)  # handled as soon as bob runs again
        thaw(processes["bob"])
        assert processes["bob"].wait(120) == 0
    finally:
        for process in processes.values():
            thaw(process)
    last = run.log("bob").strip().splitlines()[-1]
    assert last.startswith("riskprop: bob") and "stopped on request" in last, last
    assert last.endswith("the same command resumes"), last
    assert (run.out / "bob" / ".riskprop" / "test-run" / "checkpoint.bin").exists()
    assert not (run.out / "bob" / "risk_scores.csv").exists()
    processes["bob"] = run.start("bob")
    codes = wait_all(list(processes.values()), 180)
    assert codes == [0, 0, 0], {p: run.log(p)[-1500:] for p in run.parties}
    assert "resuming from the checkpoint" in run.log("bob")
    assert run.results_text() == expected


def set_timeouts(run: Network, timeouts: Mapping[str, float]) -> None:
    """Give every player file of ``run`` these time-outs (ports and all else unchanged)."""
    for party in run.parties:
        path = run.configs / f"{party}.yaml"
        player = yaml.safe_load(path.read_text())
        player["timeouts"] = dict(timeouts)
        path.write_text(yaml.safe_dump(player, sort_keys=False))


def test_partition_longer_than_the_timeouts_fails_everyone_then_resumes(
    base: tuple[Network, dict[str, str]], tmp_path: Path
) -> None:
    """charlie is cut off (frozen) for longer than the time-outs; everyone exits non-zero
    naming who it could not reach; starting the three again resumes and completes."""
    network, expected = base
    # short enough to run into quickly, long enough for three processes starting together on
    # a busy machine to reach each other
    short = {"connect": 6, "request": 6, "idle": 6, "deadline": 300}
    run = network.another_run(tmp_path / "run", short)
    processes = {p: run.start(p) for p in run.parties}
    wait_for_checkpoint(run, "charlie", processes)
    try:
        thaw(processes["alice"])
        thaw(processes["bob"])
        others = wait_all([processes["alice"], processes["bob"]], 300)
    finally:
        thaw(processes["charlie"])
    assert others == [1, 1]
    for party in ("alice", "bob"):
        last = run.log(party).strip().splitlines()[-1]
        assert last.startswith("riskprop: error:") and "charlie" in last, last
        assert not (run.out / party / "risk_scores.csv").exists()
    assert wait_all([processes["charlie"]], 300) == [1]
    last = run.log("charlie").strip().splitlines()[-1]
    assert last.startswith("riskprop: error:") and ("alice" in last or "bob" in last), last

    # the same commands again; patient time-outs, so that the resumed run does not depend on
    # how fast a busy machine restarts three processes
    set_timeouts(run, PATIENT)
    restarted = [run.start(p) for p in run.parties]
    assert wait_all(restarted, 180) == [0, 0, 0], {p: run.log(p)[-1500:] for p in run.parties}
    assert "resuming from the checkpoint" in run.log("charlie")
    assert run.results_text() == expected


def test_latency_and_loss_on_every_link(
    base: tuple[Network, dict[str, str]], tmp_path: Path
) -> None:
    network, expected = base
    run = network.another_run(tmp_path / "run", LOSSY)
    links = FaultyLinks(latency=0.2, lose_every=20, cut_first=1, cut_after=3)
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
        f"{links.resets} of {links.connections} connections cut; results lost: 0"
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
