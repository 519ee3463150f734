"""Progress of a run (``riskprop.service.progress``) with a fake clock: phase times from the
session's own record, time left from the rate of work or from the last run's durations, the
run's fraction, and what ``/status`` and the terminal show."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from helpers import dealt_shares
from protocol.link import Link

from riskprop.core.data import load_dataset
from riskprop.core.params import RunParameters
from riskprop.lab.synthetic import generate_dataset
from riskprop.node.runner import Tick
from riskprop.protocol.messages import DecryptRequest, Message, RunDescriptor
from riskprop.protocol.session import PhaseProgress, RunSession
from riskprop.service.progress import PHASES, ProgressTracker, duration

BANKS = ("alice", "bob", "charlie")

#: The last run's phase durations (seconds), the estimates for phases not under way.
LAST_RUN = {"handshake": 2.0, "iterating": 20.0, "decrypting": 30.0, "finishing": 1.0}
PHASE_KEYS = {"name", "state", "done", "total", "fraction", "elapsed_seconds", "eta_seconds"}


class Clock:
    """A monotonic clock the test moves by hand; ``session`` is the session's clock, the same
    time at another origin (as ``time.monotonic`` is to a tracker's own clock)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def session(self) -> float:
        return self.now + SESSION_ORIGIN


#: Where the fake session clock's zero lies on a test's clock.
SESSION_ORIGIN = 5000.0


def state(
    clock: Clock, phase: str, done: int, total: int, detail: str = "", /, **began: float
) -> PhaseProgress:
    """A session's progress; ``began`` gives the fake clock time each phase began. The session
    records its own clock's times (``clock.session``), which the tracker maps onto its clock."""
    record = tuple((name, at + SESSION_ORIGIN) for name, at in began.items())
    return PhaseProgress(phase, done, total, detail or f"{phase} {done}/{total}", record)


def tick(tracker: ProgressTracker, progress: PhaseProgress, sent: int = 0) -> None:
    tracker.update(Tick(progress, sent))


def by_name(tracker: ProgressTracker) -> dict[str, dict[str, object]]:
    return {str(p["name"]): p for p in tracker.phases()}


def iterating(clock: Clock, estimates: dict[str, float] | None = None) -> ProgressTracker:
    """A tracker 12 s into a run: a 2 s handshake, then iterations 4 of 10 done in 10 s."""
    tracker = ProgressTracker(estimates, clock=clock, session_clock=clock.session, name="alice")
    clock.now += 12
    tick(
        tracker,
        state(clock, "iterating", 4, 10, handshake=clock.now - 12, iterating=clock.now - 10),
    )
    return tracker


def test_a_new_tracker_knows_nothing_yet() -> None:
    clock = Clock()
    tracker = ProgressTracker(clock=clock, session_clock=clock.session, name="alice")
    assert tracker.phase == "starting" and tracker.line() == "alice: starting"
    assert tracker.eta() is None and tracker.fraction() == 0.0
    assert tracker.durations() == {}
    phases = tracker.phases()
    assert [p["name"] for p in phases] == list(PHASES)
    assert all(p["state"] == "pending" and p["eta_seconds"] is None for p in phases)
    assert all(set(p) == PHASE_KEYS for p in phases)


def test_before_the_first_tick_the_last_run_is_the_estimate() -> None:
    clock = Clock()
    tracker = ProgressTracker(LAST_RUN, clock=clock, session_clock=clock.session)
    assert tracker.eta() == pytest.approx(53.0)
    assert [p["eta_seconds"] for p in tracker.phases()] == [2.0, 20.0, 30.0, 1.0]
    assert tracker.fraction() == 0.0


def test_iterating_time_left_follows_the_rate_so_far() -> None:
    clock = Clock()
    tracker = iterating(clock, LAST_RUN)
    assert tracker.phase == "iterating"
    # one count seen is no rate yet: the last run's 20 s less the 10 s spent
    assert tracker.phase_eta("iterating") == pytest.approx(10.0, abs=1e-3)
    assert tracker.phase_eta("handshake") == 0.0
    assert tracker.phase_eta("decrypting") == 30.0  # not begun: the last run's duration
    assert tracker.eta() == pytest.approx(10.0 + 30.0 + 1.0, abs=1e-3)
    # spent 12 s of 12 + 41: the fraction is by time once every phase has an estimate
    assert tracker.fraction() == pytest.approx(12 / 53, abs=1e-4)
    clock.now += 3
    began = {"handshake": clock.now - 15, "iterating": clock.now - 13}
    tick(tracker, state(clock, "iterating", 5, 10, **began))
    assert tracker.phase_eta("iterating") == pytest.approx(15.0, abs=1e-3)  # 3 s x 5 to go
    clock.now += 5  # no new tick: 5 s more spent on the sixth iteration
    assert tracker.phase_eta("iterating") == pytest.approx(10.0, abs=1e-3)
    clock.now += 20  # late: the estimate bottoms out, it does not go negative
    assert tracker.phase_eta("iterating") == 0.0


def test_decryption_time_left_follows_the_ciphertexts_done() -> None:
    clock = Clock()
    tracker = iterating(clock)
    clock.now += 20
    began = {"handshake": 1000.0, "iterating": 1002.0, "decrypting": clock.now - 13}
    tick(tracker, state(clock, "decrypting", 13, 31, "decrypting 13/31 ciphertexts", **began))
    assert tracker.phase == "decrypting"
    assert tracker.phase_eta("decrypting") == pytest.approx(18.0, abs=1e-3)  # 13 s for 13 of 31
    assert tracker.phase_fraction("decrypting") == pytest.approx(13 / 31)
    assert tracker.eta() == pytest.approx(18.0, abs=1e-3)  # the acknowledgements count 0
    assert tracker.line() == (
        "alice: decrypting 13/31 ciphertexts (64% of the run), 18 s left in this phase, "
        "about 18 s left"
    )


def test_pending_and_waiting_phases_use_the_last_run() -> None:
    clock = Clock()
    tracker = ProgressTracker({"handshake": 5.0}, clock=clock, session_clock=clock.session)
    clock.now += 3
    tick(tracker, state(clock, "handshake", 1, 2, handshake=clock.now - 3))
    assert tracker.phase_eta("handshake") == pytest.approx(2.0, abs=1e-3)  # 5 s minus 3 s
    clock.now += 10  # a slow peer: never a negative time left
    assert tracker.phase_eta("handshake") == 0.0
    assert tracker.phase_eta("iterating") is None  # unknown
    assert tracker.eta() is None


def test_a_counted_phase_that_has_not_moved_uses_the_last_run() -> None:
    clock = Clock()
    tracker = ProgressTracker(LAST_RUN, clock=clock, session_clock=clock.session)
    clock.now += 3
    tick(
        tracker, state(clock, "iterating", 0, 10, handshake=clock.now - 3, iterating=clock.now - 1)
    )
    assert tracker.phase_eta("iterating") == pytest.approx(19.0, abs=1e-3)
    clock.now += 30
    assert tracker.phase_eta("iterating") == 0.0


def test_without_estimates_each_phase_counts_a_quarter() -> None:
    tracker = iterating(Clock())
    assert tracker.eta() is None
    assert tracker.fraction() == pytest.approx((1 + 0.4) / 4)


def test_phases_for_status() -> None:
    clock = Clock()
    tracker = iterating(clock, {"decrypting": 30.0})
    tick(tracker, state(clock, "iterating", 4, 10, handshake=1000.0, iterating=1002.0), sent=4096)
    assert tracker.bytes_sent == 4096
    phases = by_name(tracker)
    assert [p["state"] for p in phases.values()] == ["done", "running", "pending", "pending"]
    handshake, running = phases["handshake"], phases["iterating"]
    assert (handshake["fraction"], handshake["eta_seconds"]) == (1.0, 0.0)
    assert handshake["elapsed_seconds"] == pytest.approx(2.0, abs=1e-3)
    assert (running["done"], running["total"], running["fraction"]) == (4, 10, 0.4)
    assert running["elapsed_seconds"] == pytest.approx(10.0, abs=1e-3)
    assert running["eta_seconds"] == pytest.approx(15.0, abs=0.1)
    assert phases["decrypting"]["eta_seconds"] == 30.0
    assert phases["finishing"] == {
        "name": "finishing",
        "state": "pending",
        "done": 0,
        "total": 0,
        "fraction": 0.0,
        "elapsed_seconds": 0.0,
        "eta_seconds": None,
    }


def test_a_finished_phase_keeps_its_counts() -> None:
    """``/status`` shows a done handshake as 2/2 and done iterations as 10/10."""
    clock = Clock()
    tracker = ProgressTracker(clock=clock, session_clock=clock.session)
    tick(tracker, state(clock, "handshake", 1, 2, handshake=clock.now))
    clock.now += 1
    tick(tracker, state(clock, "iterating", 10, 10, handshake=999.0, iterating=1000.5))
    clock.now += 1
    began = {"handshake": 999.0, "iterating": 1000.5, "decrypting": 1001.5}
    tick(tracker, state(clock, "decrypting", 3, 31, **began))
    phases = by_name(tracker)
    assert (phases["handshake"]["done"], phases["handshake"]["total"]) == (2, 2)
    assert (phases["iterating"]["done"], phases["iterating"]["total"]) == (10, 10)
    assert (phases["decrypting"]["done"], phases["decrypting"]["total"]) == (3, 31)


def test_durations_come_from_the_session_even_for_phases_shorter_than_a_tick() -> None:
    """One tick, in the decryption: the iterations (0.25 s) were never seen running, yet
    each phase's time is exact, from when the session entered each phase."""
    clock = Clock()
    tracker = ProgressTracker(clock=clock, session_clock=clock.session)
    clock.now += 10
    began = {"handshake": 1000.0, "iterating": 1000.5, "decrypting": 1000.75}
    tick(tracker, state(clock, "decrypting", 1, 4, **began))
    durations = tracker.durations()
    assert list(durations) == ["handshake", "iterating", "decrypting"]
    assert durations["handshake"] == pytest.approx(0.5, abs=1e-3)
    assert durations["iterating"] == pytest.approx(0.25, abs=1e-3)
    assert durations["decrypting"] == pytest.approx(9.25, abs=1e-3)  # still running
    clock.now += 2
    began.update(finishing=1011.0, done=1011.5)
    tick(tracker, state(clock, "done", 1, 1, **began))
    final = tracker.durations()
    assert final["decrypting"] == pytest.approx(10.25, abs=1e-3)
    assert final["finishing"] == pytest.approx(0.5, abs=1e-3)
    assert tracker.phase == "done" and tracker.fraction() == 1.0 and tracker.eta() == 0.0
    assert all(p["state"] == "done" for p in tracker.phases())


def test_durations_without_the_session_record_use_the_ticks() -> None:
    clock = Clock()
    tracker = ProgressTracker(clock=clock, session_clock=clock.session)
    tick(tracker, PhaseProgress("handshake", 0, 2, "handshake 0/2"))
    clock.now += 4
    tick(tracker, PhaseProgress("decrypting", 0, 5, "decrypting 0/5"))
    assert tracker.durations() == {"handshake": 4.0, "iterating": 0.0, "decrypting": 0.0}
    clock.now += 1
    tick(tracker, PhaseProgress("done", 1, 1, "done"))
    assert tracker.durations() == {
        "handshake": 4.0,
        "iterating": 0.0,
        "decrypting": 1.0,
        "finishing": 0.0,
    }


def test_a_session_still_decrypting_for_a_peer_is_in_the_decryption() -> None:
    """A bank that has its own result serves a peer's decryption next: the session has
    entered ``finishing`` but reports the decryption (what it still has to do), so the
    decryption is the running phase, with its counts, and the finishing phase is pending."""
    clock = Clock()
    tracker = ProgressTracker(clock=clock, session_clock=clock.session)
    clock.now += 10
    began = {"handshake": 1000.0, "iterating": 1001.0, "decrypting": 1005.0}
    tick(tracker, state(clock, "decrypting", 20, 40, **began))
    clock.now += 2
    began["finishing"] = 1011.0  # own result decrypted; the peer's request is yet to come
    tick(tracker, state(clock, "decrypting", 20, 40, **began))
    phases = by_name(tracker)
    assert phases["decrypting"]["state"] == "running"
    assert (phases["decrypting"]["done"], phases["decrypting"]["total"]) == (20, 40)
    assert phases["decrypting"]["fraction"] == 0.5
    assert phases["finishing"]["state"] == "pending"
    # one count seen and no last run: the rate so far, 7 s for half of it
    assert tracker.phase_eta("decrypting") == pytest.approx(7.0, abs=1e-3)
    clock.now += 3
    tick(tracker, state(clock, "finishing", 1, 2, **began))
    phases = by_name(tracker)
    assert [p["state"] for p in phases.values()] == ["done", "done", "done", "running"]
    assert tracker.durations()["decrypting"] == pytest.approx(6.0, abs=1e-3)  # as recorded
    assert (phases["decrypting"]["done"], phases["decrypting"]["total"]) == (40, 40)


def test_a_resumed_run_that_starts_in_the_decryption() -> None:
    """A restored session enters the decryption at once: earlier phases take no time."""
    clock = Clock()
    tracker = ProgressTracker(LAST_RUN, clock=clock, session_clock=clock.session)
    clock.now += 4
    tick(tracker, state(clock, "decrypting", 10, 20, handshake=1000.0, decrypting=1000.0))
    assert [p["state"] for p in tracker.phases()] == ["done", "done", "running", "pending"]
    assert tracker.phase_eta("decrypting") == pytest.approx(26.0, abs=1e-3)  # 30 s less 4 s
    clock.now += 2
    tick(tracker, state(clock, "decrypting", 15, 20, handshake=1000.0, decrypting=1000.0))
    assert tracker.phase_eta("decrypting") == pytest.approx(2.0, abs=1e-3)  # 0.4 s x 5
    assert tracker.eta() == pytest.approx(3.0, abs=1e-3)


def test_the_decryption_logs_each_quarter_once(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    tracker = ProgressTracker(clock=clock, session_clock=clock.session, name="alice")
    caplog.set_level(logging.INFO, logger="riskprop.service.progress")
    began = {"handshake": 1000.0, "iterating": 1000.0, "decrypting": 1000.0}
    for done in (1, 9, 10, 16, 20, 25, 29, 30, 31, 40):
        clock.now += 1
        tick(tracker, state(clock, "decrypting", done, 40, f"decrypting {done}/40", **began))
    lines = [r.getMessage() for r in caplog.records if "left in this phase" in r.getMessage()]
    assert [line.split(",")[0] for line in lines] == [
        "alice: decrypting 10/40",
        "alice: decrypting 20/40",
        "alice: decrypting 30/40",
    ]
    # 2 s for 9 since the first count (1 of 40), 30 to go
    assert lines[0] == "alice: decrypting 10/40, about 7 s left in this phase"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "?"), (-3.0, "0 s"), (0.4, "0 s"), (42.0, "42 s"), (89.0, "89 s"), (90.0, "2 min")],
)
def test_duration_text(seconds: float | None, text: str) -> None:
    assert duration(seconds) == text


def test_long_durations_in_minutes_and_hours() -> None:
    assert duration(600.0) == "10 min"
    assert duration(5399.0) == "90 min"
    assert duration(5400.0) == "1.5 h"
    assert duration(36000.0) == "10.0 h"


def test_the_status_line_with_estimates() -> None:
    clock = Clock()
    tracker = iterating(clock, LAST_RUN)
    line = tracker.line()
    assert line.startswith("alice: iterating 4/10 (23% of the run), 10 s left in this phase")
    assert line.endswith("about 41 s left")


# ----------------------------------------------------------------------------- a whole run


class Recording(Link):
    """The fake link, noting every session's progress after each step."""

    def __init__(self, sessions: Iterable[RunSession], **hooks: Any) -> None:
        super().__init__(sessions, **hooks)
        self.states: dict[str, list[PhaseProgress]] = {name: [] for name in self.sessions}

    def _step(self, name: str, step: Callable[[], list[Message]]) -> None:
        super()._step(name, step)
        for party, session in self.sessions.items():
            self.states[party].append(session.progress_state())


ORDER = ("handshake", "iterating", "decrypting", "finishing", "done")


def request_size(message: Message) -> int:
    """Ciphertexts in a decryption request."""
    assert isinstance(message.body, DecryptRequest)
    return len(message.body.values)


@pytest.mark.parametrize("threshold", [1, 2])
@pytest.mark.parametrize("newest_first", [False, True])
def test_session_progress_over_a_whole_three_bank_run(
    tmp_path: Path, threshold: int, newest_first: bool
) -> None:
    """Three banks over the fake link (either delivery order): each count stays within its
    total, phases only move forward, and the decryption counts a bank's own packed
    ciphertexts plus those of every requester that asks it."""
    generate_dataset(tmp_path / "data", accounts=300, edges=900, banks=BANKS, seed=3)
    dataset = load_dataset(tmp_path / "data")
    shares = dealt_shares(dataset.names, threshold)
    parameters = RunParameters(2, delta_a=0.5, delta_b=0.0, periods=(0,))
    descriptor = RunDescriptor.create("progress", shares["alice"].key, parameters)
    sessions = [RunSession(descriptor, bank, shares[bank.name]) for bank in dataset.banks]
    pick = (lambda pending: len(pending) - 1) if newest_first else (lambda pending: 0)
    link = Recording(sessions, pick=pick)
    link.start().run()
    assert link.done and not link.errors
    requests = link.of(DecryptRequest)
    for name, session in link.sessions.items():
        states = link.states[name]
        assert all(0 <= s.done <= s.total for s in states if s.phase != "done"), name
        assert all(s.total > 0 for s in states if s.phase != "done")
        positions = [ORDER.index(s.phase) for s in states]
        assert positions == sorted(positions), name  # never back to an earlier phase
        assert states[-1].phase == "done" and positions[0] == 0
        assert {s.total for s in states if s.phase == "handshake"} == {2}
        assert {s.total for s in states if s.phase == "iterating"} == {2}
        # the peers' completions may all arrive while a bank still serves a decryption
        assert {s.total for s in states if s.phase == "finishing"} <= {2}
        asked = [m for m in requests if m.recipient == name]
        expected = len(session._packed) + sum(request_size(m) for m in asked)
        assert len(asked) == threshold  # every requester asks the next t parties in the ring
        decrypting = [s for s in states if s.phase == "decrypting"]
        assert max(s.total for s in decrypting) == expected, name
        assert session.decrypted == expected  # every unit of the phase's work was done
        record = [phase for phase, _ in states[-1].began]
        times = [at for _, at in states[-1].began]
        assert record == list(ORDER) and times == sorted(times)


@pytest.mark.parametrize("newest_first", [False, True])
def test_a_tracker_fed_by_a_whole_run(tmp_path: Path, newest_first: bool) -> None:
    """What a node's tracker makes of every state of a real session, a tick per step."""
    generate_dataset(tmp_path / "data", accounts=300, edges=900, banks=BANKS, seed=3)
    dataset = load_dataset(tmp_path / "data")
    shares = dealt_shares(dataset.names, 1)
    parameters = RunParameters(2, delta_a=0.5, delta_b=0.0, periods=(0,))
    descriptor = RunDescriptor.create("tracked", shares["alice"].key, parameters)
    sessions = [RunSession(descriptor, bank, shares[bank.name]) for bank in dataset.banks]
    pick = (lambda pending: len(pending) - 1) if newest_first else (lambda pending: 0)
    link = Recording(sessions, pick=pick)
    link.start().run()
    for name, states in link.states.items():
        clock = Clock()
        tracker = ProgressTracker(LAST_RUN, clock=clock, name=name)
        for progress in states:
            clock.now += 1
            tick(tracker, progress)
            phases = tracker.phases()
            assert all(int(str(p["done"])) <= int(str(p["total"])) for p in phases)
            running = [p["name"] for p in phases if p["state"] == "running"]
            if progress.phase in PHASES:
                assert running == [progress.phase], (name, progress)
            assert 0.0 <= tracker.fraction() <= 1.0
        assert tracker.phase == "done" and tracker.fraction() == 1.0
        assert list(tracker.durations()) == list(PHASES)
        assert all(p["state"] == "done" for p in tracker.phases())


def test_a_bank_asked_in_place_of_a_silent_helper_counts_the_extra_ciphertexts(
    tmp_path: Path,
) -> None:
    """Alice's request to bob is lost and her driver gives up on him: charlie, asked
    instead, decrypts alice's ciphertexts besides his own and bob's, and counts them."""
    generate_dataset(tmp_path / "data", accounts=300, edges=900, banks=BANKS, seed=3)
    dataset = load_dataset(tmp_path / "data")
    shares = dealt_shares(dataset.names, 1)
    parameters = RunParameters(2, delta_a=0.5, delta_b=0.0, periods=(0,))
    descriptor = RunDescriptor.create("rerouted", shares["alice"].key, parameters)
    sessions = [RunSession(descriptor, bank, shares[bank.name]) for bank in dataset.banks]

    def lost(message: Message) -> bool:
        return isinstance(message.body, DecryptRequest) and message.recipient == "bob"

    link = Recording(sessions, drop=lost)
    link.start().run()
    assert not link.sessions["alice"].done
    link.unavailable("alice", "bob")
    link.run()
    assert link.done and not link.errors
    charlie = link.sessions["charlie"]
    sizes = {m.sender: request_size(m) for m in link.of(DecryptRequest)}
    assert charlie.decrypted == len(charlie._packed) + sizes["alice"] + sizes["bob"]
    states = link.states["charlie"]
    assert all(s.done <= s.total for s in states)
    assert charlie._expected_decryptions() == charlie.decrypted  # the served one counts


def test_the_bytes_sent_to_each_peer_follow_the_ticks() -> None:
    clock = Clock()
    tracker = ProgressTracker(clock=clock, session_clock=clock.session)
    assert (tracker.bytes_by_peer, tracker.messages_by_peer) == ({}, {})
    first = state(clock, "iterating", 1, 4)
    tracker.update(Tick(first, 300, {"bob": 100, "carol": 200}, {"bob": 1}))
    second = state(clock, "iterating", 2, 4)
    tracker.update(Tick(second, 700, {"bob": 400, "carol": 300}, {"bob": 3}))
    assert tracker.bytes_sent == 700
    assert tracker.bytes_by_peer == {"bob": 400, "carol": 300}
    assert tracker.messages_by_peer == {"bob": 3}
