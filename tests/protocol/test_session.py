"""One bank's session (``riskprop.protocol.session``) driven over the fake link: it refuses
mismatched or overflowing parameters before anything is encrypted, re-routes decryption around
a silent helper and ignores its late answer, and accounts for its time per phase."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import phe
import pytest
from cycle import TOL, bank_slice, cycle_run
from gmpy2 import mpz
from helpers import KEY_BITS
from protocol.link import Link

from riskprop.core.fixedpoint import SCORE_BITS_SLACK, FixedPoint
from riskprop.core.paillier import FixedBaseNoise, FreshNoise
from riskprop.core.plaintext import propagate
from riskprop.core.schedule import DeltaSchedule
from riskprop.core.threshold import deal
from riskprop.errors import ConfigError
from riskprop.protocol import session as session_module
from riskprop.protocol.messages import Done, Partial
from riskprop.protocol.session import Phase, RunSession, SessionStats, Stopwatch


def phase(session: RunSession) -> Phase:
    """``session.phase``, read afresh where a test checks it before and after a step."""
    return session.phase


def test_a_run_over_the_link_matches_plaintext(cycle_data: Path) -> None:
    run = cycle_run(cycle_data)
    link = Link.between(run.dataset.banks, run.shares, run.descriptor).start().run()
    assert link.done and not link.errors and not link.pending
    for name, result in link.results().items():
        assert np.max(np.abs(result - run.expected(name))) <= TOL


def test_full_noise_runs_on_fresh_residues_and_matches_plaintext(cycle_data: Path) -> None:
    """``noise: full`` in the descriptor: every session draws r**N afresh (``FreshNoise``),
    never the fixed-base comb, and the results are those of the plaintext engine."""
    run = cycle_run(cycle_data)
    descriptor = dataclasses.replace(run.descriptor, noise="full")
    link = Link.between(run.dataset.banks, run.shares, descriptor)
    assert all(isinstance(s.noise, FreshNoise) for s in link.sessions.values())
    default = Link.between(run.dataset.banks, run.shares, run.descriptor)
    assert all(isinstance(s.noise, FixedBaseNoise) for s in default.sessions.values())
    link.start().run()
    assert link.done and not link.errors
    for name, result in link.results().items():
        assert np.max(np.abs(result - run.expected(name))) <= TOL


def test_a_constant_time_comb_gives_the_same_results(cycle_data: Path) -> None:
    """``constant_time_noise`` (a bank's own choice, not the run's) reads the comb by scans."""
    run = cycle_run(cycle_data)
    banks = {b.name: b for b in run.dataset.banks}
    alice = RunSession(
        run.descriptor, banks["alice"], run.shares["alice"], constant_time_noise=True
    )
    assert isinstance(alice.noise, FixedBaseNoise) and alice.noise.constant_time
    link = Link.between(run.dataset.banks, run.shares, run.descriptor)
    link.sessions["alice"] = alice
    link.start().run()
    assert link.done and not link.errors
    for name, result in link.results().items():
        assert np.max(np.abs(result - run.expected(name))) <= TOL


def test_delivery_order_does_not_matter(cycle_data: Path) -> None:
    """Messages for a later step wait in the session's inbox: newest first works as well."""
    run = cycle_run(cycle_data)
    newest = Link.between(
        run.dataset.banks, run.shares, run.descriptor, pick=lambda pending: len(pending) - 1
    )
    newest.start().run()
    assert newest.done and not newest.errors
    oldest = Link.between(run.dataset.banks, run.shares, run.descriptor).start().run()
    assert [m.kind for m, _ in newest.sent] != [m.kind for m, _ in oldest.sent]
    for name, result in newest.results().items():
        assert np.max(np.abs(result - run.expected(name))) <= TOL


def test_late_partial_from_a_replaced_helper_is_ignored(cycle_data: Path) -> None:
    run = cycle_run(cycle_data)
    slow = {("charlie", "bob", Partial), ("alice", "bob", Done)}
    link = Link.between(
        run.dataset.banks,
        run.shares,
        run.descriptor,
        hold=lambda m: (m.sender, m.recipient, type(m.body)) in slow,
    )
    link.start().run()
    bob = link.sessions["bob"]
    assert phase(bob) is Phase.DECRYPTING and bob.overdue_peers() == ["charlie"]
    link.unavailable("bob", "charlie")  # what a driver does when charlie stays silent too long
    link.run()
    assert phase(bob) is Phase.FINISHING and bob.result is not None
    assert len([m for m in link.held if isinstance(m.body, Partial)]) == 1
    link.release(lambda m: isinstance(m.body, Partial))  # charlie was only slow, after all
    link.run()
    link.release(lambda m: isinstance(m.body, Done))
    link.run()
    assert bob.done and not link.errors
    assert np.max(np.abs(bob.result - run.expected("bob"))) <= TOL


def test_a_lost_decryption_request_is_rerouted(cycle_data: Path) -> None:
    """bob's request to its first helper (charlie) is lost; told that charlie is unavailable,
    bob asks alice instead and every bank still gets its scores."""
    run = cycle_run(cycle_data)
    link = Link.between(
        run.dataset.banks,
        run.shares,
        run.descriptor,
        drop=lambda m: (
            m.kind == "decrypt_request" and (m.sender, m.recipient) == ("bob", "charlie")
        ),
    )
    link.start().run()
    assert link.sessions["bob"].overdue_peers() == ["charlie"]
    link.unavailable("bob", "charlie")
    link.run()
    asked = [(m.sender, m.recipient) for m, _ in link.sent if m.kind == "decrypt_request"]
    assert ("bob", "charlie") in asked and ("bob", "alice") in asked
    assert link.sessions["bob"].result is not None and not link.errors
    assert np.max(np.abs(link.sessions["bob"].result - run.expected("bob"))) <= TOL


# -------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("iterations", {"iterations": 3}),
        ("delta_a", {"delta_a": 0.25}),
        ("delta_b", {"delta_b": 1.0}),
        ("precision_bits", {"precision_bits": 40}),
        ("periods", {"periods": (0, 1)}),
        ("noise", {"noise": "full"}),
    ],
)
def test_parameter_mismatch_names_the_field(
    cycle_data: Path, field: str, change: dict[str, Any]
) -> None:
    run = cycle_run(cycle_data)
    odd = dataclasses.replace(run.descriptor, **change)
    descriptors = dict.fromkeys(run.dataset.names, run.descriptor) | {"charlie": odd}
    link = Link.between(run.dataset.banks, run.shares, descriptors).start().run()
    assert link.errors.keys() == set(run.dataset.names)  # every bank sees an odd handshake
    for name, error in link.errors.items():
        assert "run descriptor mismatch with" in str(error), (name, str(error))
        assert field in str(error), (name, str(error))
    assert not link.of(Partial)  # nothing was decrypted


def test_key_mismatch_names_the_fingerprint(cycle_data: Path) -> None:
    run = cycle_run(cycle_data)
    _, private = phe.generate_paillier_keypair(n_length=KEY_BITS)
    other = {s.party: s for s in deal(private.p, private.q, run.dataset.names, 1)}
    fingerprint = other["charlie"].key.fingerprint()
    odd = dataclasses.replace(run.descriptor, key_fingerprint=fingerprint)
    link = Link.between(
        run.dataset.banks,
        {**run.shares, "charlie": other["charlie"]},
        dict.fromkeys(run.dataset.names, run.descriptor) | {"charlie": odd},
    )
    link.start().run()
    assert link.errors.keys() == set(run.dataset.names)
    for name, error in link.errors.items():
        assert "key_fingerprint" in str(error), (name, str(error))


class NoNoise:
    """A noise source that fails the test if anything is encrypted."""

    def draw(self, count: int) -> list[mpz]:
        raise AssertionError("something was encrypted before the overflow check")


def test_overflow_is_refused_before_encrypting(cycle_data: Path) -> None:
    run = cycle_run(cycle_data)
    shares, descriptor = run.shares, run.descriptor
    bits = shares["alice"].key.public.bits
    f = descriptor.precision_bits
    fixed = FixedPoint(f, f - SCORE_BITS_SLACK)
    limit = fixed.max_iterations(bits)
    # independent check of the budget: (f - 4) + f*K + 1 bits per value must stay below the modulus
    assert (f - 4) + f * limit + 1 <= bits - 1 < (f - 4) + f * (limit + 1) + 1
    alice = run.dataset.banks[0]
    for iterations, periods in [(limit + 1, (0,)), (limit // 2 + 1, (0, 1)), (50, (0,))]:
        bad = dataclasses.replace(descriptor, iterations=iterations, periods=periods)
        with pytest.raises(ConfigError) as info:
            RunSession(bad, alice, shares["alice"], noise=NoNoise())
        message = str(info.value)
        assert f"at most {limit} iterations" in message, message
        assert "\n" not in message
    fine = dataclasses.replace(descriptor, iterations=limit)
    RunSession(fine, alice, shares["alice"], noise=NoNoise())  # fits: no error, nothing drawn


def test_largest_iteration_count_that_fits_is_exact(cycle_data: Path) -> None:
    run = cycle_run(cycle_data)
    f = run.descriptor.precision_bits
    bits = run.shares["alice"].key.public.bits
    limit = FixedPoint(f, f - SCORE_BITS_SLACK).max_iterations(bits)
    at_limit = dataclasses.replace(run.descriptor, iterations=limit, delta_a=0.3, delta_b=0.5)
    link = Link.between(run.dataset.banks, run.shares, at_limit).start().run()
    assert link.done and not link.errors
    reference = propagate(run.graph, DeltaSchedule(0.3, 0.5), limit)
    for name, result in link.results().items():
        assert np.max(np.abs(result - reference[bank_slice(run.graph, name)])) <= TOL


# ------------------------------------------------------------------------ statistics


def test_phase_statistics_give_wall_and_cpu_time_per_phase(cycle_data: Path) -> None:
    """Every phase with wall time has the CPU time of the session's thread, which can never
    exceed it; the run's phases are all there."""
    run = cycle_run(cycle_data)
    link = Link.between(run.dataset.banks, run.shares, run.descriptor).start().run()
    assert link.done and not link.errors
    for session in link.sessions.values():
        stats = session.stats
        assert stats.cpu_seconds.keys() == stats.seconds.keys()
        assert {"handshake", "encrypt", "decrypt"} <= stats.seconds.keys()
        assert {"period 0 iteration 1", "period 0 iteration 2"} <= stats.seconds.keys()
        for name, wall in stats.seconds.items():
            assert 0.0 <= stats.cpu_seconds[name] <= wall + 1e-3, name
        assert stats.cpu_seconds["decrypt"] > 0.0


class FakeClocks:
    """Stands in for the ``time`` module of ``protocol.session``: a wall clock and this
    thread's CPU clock that the test moves by hand."""

    def __init__(self) -> None:
        self.wall = 100.0
        self.cpu = 7.0

    def perf_counter(self) -> float:
        return self.wall

    def thread_time(self) -> float:
        return self.cpu

    def wait(self, seconds: float) -> None:
        self.wall += seconds

    def work(self, seconds: float) -> None:
        self.wall += seconds
        self.cpu += seconds


def test_stopwatch_tells_cpu_from_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    """A phase's wall time is the wall clock's, its CPU time the session thread's: waiting
    adds only to the first, working to both. (Fake clocks: a real busy loop gets as much CPU
    as a loaded machine grants it, which says nothing about the stopwatch.)"""
    clocks = FakeClocks()
    monkeypatch.setattr(session_module, "time", clocks)
    stats = SessionStats()
    started = Stopwatch.start()
    assert (started.wall, started.cpu) == (100.0, 7.0)
    clocks.wait(0.2)
    stats.lap("sleeping", started, sent=3)
    started = Stopwatch.start()
    clocks.work(0.25)
    clocks.wait(0.5)
    stats.lap("busy", started)
    started = Stopwatch.start()
    clocks.work(0.5)
    stats.lap("busy", started, sent=2)
    assert stats.seconds == {"sleeping": pytest.approx(0.2), "busy": pytest.approx(1.25)}
    assert stats.cpu_seconds == {"sleeping": 0.0, "busy": pytest.approx(0.75)}
    assert stats.ciphertexts_sent == {"sleeping": 3, "busy": 2}
