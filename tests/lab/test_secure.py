"""The secure protocol end to end: it computes what the plaintext engine computes, tolerates a
missing party at decryption time, refuses mismatched or overflowing parameters, and what travels
on the wire reveals nothing beyond what the protocol intends (checked with the transport tap).

Keys are 512-bit (dealt once per party list and threshold, cached); one 2048-bit run is marked
slow.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import hashlib
import io
import math
import stat
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import gmpy2
import numpy as np
import phe
import pytest
import virtualtime
from gmpy2 import mpz
from helpers import bank_specs, write_dataset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riskprop.core.data import BankData, load_dataset
from riskprop.core.fixedpoint import DEFAULT_PRECISION_BITS, SCORE_BITS_SLACK, FixedPoint
from riskprop.core.graph import GlobalGraph, build_global
from riskprop.core.paillier import FreshNoise, encrypt, rerandomize, unpack
from riskprop.core.params import RunParameters
from riskprop.core.plaintext import PreparedPeriod, propagate, step
from riskprop.core.schedule import DeltaSchedule
from riskprop.core.threshold import KeyShare, combine, deal, partial_decrypt
from riskprop.core.types import FloatArray
from riskprop.errors import ConfigError, ProtocolError
from riskprop.files.keys import write_keys
from riskprop.lab.simulate import simulate_plaintext, simulate_secure
from riskprop.node.driver import drive
from riskprop.node.inprocess import PartyOutcome, run_parties
from riskprop.node.transport import InMemoryNetwork, InMemoryTransport
from riskprop.protocol import session as session_module
from riskprop.protocol.messages import (
    Codec,
    DecryptRequest,
    Done,
    Hello,
    Message,
    Partial,
    RunDescriptor,
    Scores,
)
from riskprop.protocol.session import Phase, RunSession, SessionStats, Stopwatch

KEY_BITS = 512
#: Secure vs plaintext: the fixed-point bound (core.fixedpoint) with the default f = 32 for
#: these small graphs (K * (max in-degree + 1) < 400) is below 1e-7.
TOL = 1e-7

# ------------------------------------------------------------------------------ helpers

#: (id_source, bank_source, id_destination, bank_destination, amount, period)
Row = tuple[str, str, str, str, float, int]


def spread(rows: Iterable[Row]) -> dict[str, list[Row]]:
    """Each transaction in the file of every bank it touches (both, for cross-bank ones)."""
    files: dict[str, list[Row]] = {}
    for row in rows:
        for bank in dict.fromkeys((row[1], row[3])):
            files.setdefault(bank, []).append(row)
    return files


_SHARES: dict[tuple[tuple[str, ...], int], dict[str, KeyShare]] = {}


def shares_for(parties: Sequence[str], threshold: int) -> dict[str, KeyShare]:
    """A dealt 512-bit key for ``parties``, cached per (parties, threshold)."""
    cache_key = (tuple(parties), threshold)
    if cache_key not in _SHARES:
        _, private = phe.generate_paillier_keypair(n_length=KEY_BITS)
        dealt = deal(private.p, private.q, parties, threshold)
        _SHARES[cache_key] = {s.party: s for s in dealt}
    return _SHARES[cache_key]


@pytest.fixture(scope="module")
def key_dirs(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Sequence[str], int], Path]:
    """Directories of key files (as ``riskprop keygen`` writes them), cached per party list."""
    made: dict[tuple[tuple[str, ...], int], Path] = {}

    def get(parties: Sequence[str], threshold: int) -> Path:
        cache_key = (tuple(parties), threshold)
        if cache_key not in made:
            directory = tmp_path_factory.mktemp("keys")
            write_keys(directory, list(shares_for(parties, threshold).values()))
            made[cache_key] = directory
        return made[cache_key]

    return get


def full_decrypt(shares: Mapping[str, KeyShare], values: Sequence[mpz]) -> list[int]:
    """Decrypt with every share (what no single bank can do)."""
    key = next(iter(shares.values())).key
    return combine(key, {p: partial_decrypt(s, values) for p, s in shares.items()})


def reference_states(
    graph: GlobalGraph, schedule: DeltaSchedule, iterations: int
) -> list[FloatArray]:
    """Plaintext scores after 0, 1, 2, ... iterations in all (periods in order)."""
    scores = np.array(graph.initial, dtype=np.float64)
    states = [scores]
    for csr in graph.incoming:
        period = PreparedPeriod.from_csr(csr)
        for delta in schedule.deltas(iterations):
            scores = step(period, scores, delta)
            states.append(scores)
    return states


def global_index(graph: GlobalGraph, bank: str, account: str) -> int:
    b = graph.banks.index(bank)
    return int(graph.offsets[b]) + graph.account_ids[b].index(account)


def bank_slice(graph: GlobalGraph, bank: str) -> slice:
    b = graph.banks.index(bank)
    return slice(int(graph.offsets[b]), int(graph.offsets[b + 1]))


def assert_same_result(secure: Any, plain: Any) -> None:
    assert secure.banks == plain.banks
    assert secure.account_ids == plain.account_ids
    assert secure.scores.shape == plain.scores.shape
    if len(plain.scores):
        difference = float(np.max(np.abs(secure.scores - plain.scores)))
        assert difference <= TOL, difference
        assert secure.max_difference == pytest.approx(difference, abs=1e-15)


def run_on_virtual_time(
    descriptor: RunDescriptor,
    banks: Sequence[BankData],
    shares: Mapping[str, KeyShare],
    *,
    tap: Callable[[Message, bytes], None] | None = None,
    idle_timeout: float = 30.0,
) -> dict[str, PartyOutcome]:
    """``node.inprocess.run_in_process`` with its time-outs on the virtual clock."""
    return virtualtime.run(
        run_parties(descriptor, banks, shares, tap=tap, idle_timeout=idle_timeout)
    )


SessionRunner = Callable[[RunSession, InMemoryTransport, InMemoryNetwork], Awaitable[None]]


def run_sessions(
    descriptors: Mapping[str, RunDescriptor],
    banks: Sequence[BankData],
    shares: Mapping[str, KeyShare],
    *,
    idle_timeout: float | Mapping[str, float] = 10.0,
    runners: Mapping[str, SessionRunner] | None = None,
    tap: Callable[[Message, bytes], None] | None = None,
) -> tuple[dict[str, RunSession], dict[str, BaseException | None]]:
    """One session per bank (each with its own descriptor) over one in-memory network;
    ``runners`` replaces ``drive`` for some parties; ``idle_timeout`` may differ per party.
    Returns the sessions and each party's outcome (None or the exception it raised)."""
    public = next(iter(shares.values())).key.public
    parties = next(iter(descriptors.values())).parties

    async def main() -> tuple[dict[str, RunSession], list[BaseException | None]]:
        network = InMemoryNetwork(parties, Codec.for_key(public), tap=tap)
        sessions = {b.name: RunSession(descriptors[b.name], b, shares[b.name]) for b in banks}
        jobs = []
        for name, session in sessions.items():
            transport = network.endpoint(name)
            if runners and name in runners:
                jobs.append(runners[name](session, transport, network))
            else:
                timeout = idle_timeout if isinstance(idle_timeout, float) else idle_timeout[name]
                jobs.append(drive(session, transport, idle_timeout=timeout))
        results = await asyncio.wait_for(asyncio.gather(*jobs, return_exceptions=True), timeout=60)
        return sessions, list(results)

    sessions, results = virtualtime.run(main())
    return sessions, dict(zip(sessions, results, strict=True))


async def crash_at_decryption(
    session: RunSession, transport: InMemoryTransport, network: InMemoryNetwork
) -> None:
    """Take part in the handshake and the iterations (answering no decryption request), then
    vanish as soon as decryption begins: the party is taken down, later sends to it fail."""
    await _forward_until_decrypting(session, transport)
    network.take_down(session.name)


async def _forward_until_decrypting(session: RunSession, transport: InMemoryTransport) -> None:
    async def forward(messages: Iterable[Message]) -> None:
        for message in messages:
            if isinstance(message.body, Hello | Scores):
                await transport.send(message)

    await forward(session.start())
    while session.phase in (Phase.HANDSHAKE, Phase.ITERATING):
        message = await asyncio.wait_for(transport.receive(), 30)
        await forward(session.receive(message))


# ------------------------------------------------------------------- known answer

#: three banks, a cross-bank cycle a1 -> b1 -> c1 -> a1 and bob's internal b2 -> b1
CYCLE_ACCOUNTS = {
    "alice": [("a1", 1.0), ("a2", 0.0)],
    "bob": [("b1", 0.0), ("b2", 0.5)],
    "charlie": [("c1", 0.0)],
}
CYCLE_ROWS: list[Row] = [
    ("a1", "alice", "b1", "bob", 10.0, 0),
    ("b1", "bob", "c1", "charlie", 3.0, 0),
    ("c1", "charlie", "a1", "alice", 7.0, 0),
    ("b2", "bob", "b1", "bob", 10.0, 0),
]
# By hand, delta = 0.5, r' = r/2 + (weighted mean of incoming)/2, no incoming -> r' = r/2;
# b1 has two equal-amount sources (a1, b2), every other account at most one source.
#   k=0: a1=1     a2=0  b1=0                         b2=0.5   c1=0
#   k=1: a1=1/2+0/2=0.5 (c1=0)   b1=0/2+(1+0.5)/2/2=0.375   b2=0.25   c1=0/2+0/2=0
#   k=2: a1=0.5/2+0/2=0.25       b1=0.375/2+(0.5+0.25)/2/2=0.375   b2=0.125
#        c1=0/2+0.375/2=0.1875   a2 stays 0
CYCLE_EXPECTED_T2 = {
    ("alice", "a1"): 0.25,
    ("alice", "a2"): 0.0,
    ("bob", "b1"): 0.375,
    ("bob", "b2"): 0.125,
    ("charlie", "c1"): 0.1875,
}


@pytest.fixture
def cycle_data(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "cycle", bank_specs(CYCLE_ACCOUNTS, spread(CYCLE_ROWS)))


def test_known_answer_cycle(cycle_data: Path) -> None:
    secure = simulate_secure(cycle_data, iterations=2, delta_a=0.5, key_bits=KEY_BITS)
    plain = simulate_plaintext(cycle_data, iterations=2, delta_a=0.5)
    assert_same_result(secure, plain)
    got = {
        (bank, acc): float(score)
        for (bank, acc), score in zip(
            [(b, a) for b, ids in zip(secure.banks, secure.account_ids, strict=True) for a in ids],
            secure.scores,
            strict=True,
        )
    }
    assert got.keys() == CYCLE_EXPECTED_T2.keys()
    for account, expected in CYCLE_EXPECTED_T2.items():
        assert got[account] == pytest.approx(expected, abs=TOL), account


# ----------------------------------------------------------------------- property

BANKS = ("alpha", "bravo", "charlie", "delta", "echo")
amounts = st.sampled_from([0.0, 1.0, 2.5, 1e-3, 1e6]) | st.floats(0.0, 1e4, allow_nan=False)
scores = st.sampled_from([0.0, 1.0, 0.5]) | st.floats(0.0, 1.0, allow_nan=False)


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    n_banks = draw(st.integers(2, 5))
    banks = BANKS[:n_banks]
    accounts: dict[str, list[tuple[str, float]]] = {}
    pools: dict[str, list[str]] = {}
    for bank in banks:
        n = draw(st.integers(1, 6))
        pools[bank] = [f"{bank[0]}{i}" for i in range(n + 1)]  # the last one is not listed
        accounts[bank] = [(acc, draw(scores)) for acc in pools[bank][:n]]
    files: dict[str, list[Row]] = {bank: [] for bank in banks}
    rows: list[Row] = []
    for _ in range(draw(st.integers(0, 20))):
        if rows and draw(st.integers(0, 4)) == 0:  # a parallel edge
            s, sb, d, db, _, period = draw(st.sampled_from(rows))
            row = (s, sb, d, db, draw(amounts), draw(st.sampled_from([period, 0])))
        else:
            sb, db = draw(st.sampled_from(banks)), draw(st.sampled_from(banks))
            s, d = draw(st.sampled_from(pools[sb])), draw(st.sampled_from(pools[db]))
            row = (s, sb, d, db, draw(amounts), draw(st.integers(0, 2)))
        rows.append(row)
        if row[1] == row[3]:
            files[row[1]].append(row)
        else:  # cross-bank: usually in both files, sometimes only in one (disagreement)
            where = draw(st.sampled_from(["both", "both", "both", "source", "destination"]))
            if where != "destination":
                files[row[1]].append(row)
            if where != "source":
                files[row[3]].append(row)
    return {
        "banks": banks,
        "accounts": accounts,
        "files": files,
        "period_column": draw(st.booleans()) or not rows,
        "iterations": draw(st.integers(0, 3)),
        "delta_a": draw(st.sampled_from([0.5, 0.1, 0.9]) | st.floats(0.01, 0.99)),
        "delta_b": draw(st.sampled_from([0.0, 0.0, 1.0]) | st.floats(0.0, 2.0)),
        "threshold": draw(st.integers(1, n_banks - 1)),
    }


@given(scenario=scenarios())
@settings(
    max_examples=35,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
def test_secure_equals_plaintext(
    scenario: dict[str, Any], key_dirs: Callable[[Sequence[str], int], Path]
) -> None:
    keys = key_dirs(scenario["banks"], scenario["threshold"])
    with tempfile.TemporaryDirectory() as tmp:
        banks = bank_specs(
            scenario["accounts"], scenario["files"], period_column=scenario["period_column"]
        )
        data = write_dataset(Path(tmp), banks)
        options = {
            "iterations": scenario["iterations"],
            "delta_a": scenario["delta_a"],
            "delta_b": scenario["delta_b"],
        }
        plain = simulate_plaintext(data, **options)
        secure = simulate_secure(data, keys=keys, **options)
    assert_same_result(secure, plain)
    assert np.all((secure.scores >= 0.0) & (secure.scores <= 1.0 + TOL))


EDGE_CASES: dict[str, tuple[dict[str, list[tuple[str, float]]], dict[str, list[Row]]]] = {
    "bank without accounts": (
        {"a": [("a1", 1.0)], "b": [], "c": [("c1", 0.5)]},
        spread([("a1", "a", "c1", "c", 1.0, 0), ("c1", "c", "a1", "a", 2.0, 0)]),
    ),
    "no accounts at all": ({"a": [], "b": []}, {}),
    "accounts only in transactions": (
        {"a": [], "b": [("b1", 0.3)]},
        spread([("a9", "a", "b1", "b", 1.0, 0), ("b1", "b", "a9", "a", 2.0, 0)]),
    ),
    "ids that need CSV quoting": (
        {"a": [('x,"y"\n1', 1.0), ("\u00fc\U0001f600", 0.2)], "b": [("b 1", 0.0)]},
        spread(
            [('x,"y"\n1', "a", "b 1", "b", 1.0, 0), ("b 1", "b", "\u00fc\U0001f600", "a", 1.0, 0)]
        ),
    ),
    "sparse large periods": (
        {"a": [("a1", 0.3)], "b": [("b1", 1.0)]},
        spread([("a1", "a", "b1", "b", 1.0, 10**12), ("b1", "b", "a1", "a", 1.0, 7)]),
    ),
}


@pytest.mark.parametrize("case", sorted(EDGE_CASES))
def test_secure_equals_plaintext_edge_cases(case: str, tmp_path: Path) -> None:
    accounts, files = EDGE_CASES[case]
    data = write_dataset(tmp_path / "data", bank_specs(accounts, files))
    for iterations in (0, 2):
        plain = simulate_plaintext(data, iterations=iterations, delta_a=0.7)
        secure = simulate_secure(
            data, iterations=iterations, delta_a=0.7, keys=None, key_bits=KEY_BITS
        )
        assert_same_result(secure, plain)


# ------------------------------------------------------------- missing parties


def _cycle_run(cycle_data: Path, threshold: int = 1) -> tuple[Any, ...]:
    dataset = load_dataset(cycle_data)
    graph = build_global(dataset)
    shares = shares_for(dataset.names, threshold)
    key = shares[dataset.names[0]].key
    parameters = RunParameters(2, delta_a=0.5, delta_b=0.0, periods=tuple(graph.periods))
    descriptor = RunDescriptor.create("cycle", key, parameters)
    reference = propagate(graph, DeltaSchedule(0.5, 0.0), 2)
    return dataset, graph, shares, descriptor, reference


def _check_missing_run(
    missing: str,
    cycle_data: Path,
    idle_timeouts: Callable[[str, str], float],
) -> None:
    """Run the cycle with ``missing`` crashing at decryption; the others must finish with the
    plaintext scores, and the party whose first helper (next in the ring) is the missing one
    must have got its partial decryption from the remaining party instead."""
    dataset, graph, shares, descriptor, reference = _cycle_run(cycle_data)
    parties = descriptor.parties
    asker = parties[(parties.index(missing) - 1) % len(parties)]
    other = next(p for p in parties if p not in (asker, missing))
    sent: list[Message] = []
    sessions, outcomes = run_sessions(
        dict.fromkeys(dataset.names, descriptor),
        dataset.banks,
        shares,
        idle_timeout={name: idle_timeouts(name, asker) for name in parties},
        runners={missing: crash_at_decryption},
        tap=lambda message, data: sent.append(message),
    )
    assert outcomes[missing] is None
    assert sessions[missing].result is None
    for name in (asker, other):
        assert outcomes[name] is None, f"{name}: {outcomes[name]!r}"
        session = sessions[name]
        assert session.done and session.result is not None
        assert np.max(np.abs(session.result - reference[bank_slice(graph, name)])) <= TOL
    answered = [m.sender for m in sent if isinstance(m.body, Partial) and m.recipient == asker]
    assert answered == [other]


@pytest.mark.parametrize("missing", ["alice", "bob", "charlie"])
def test_one_party_missing_at_decryption(cycle_data: Path, missing: str) -> None:
    # The party that must re-route gives up on its silent helper sooner than the others wait.
    _check_missing_run(missing, cycle_data, lambda name, asker: 0.5 if name == asker else 5.0)


@pytest.mark.parametrize(
    "missing",
    [
        "alice",  # charlie's request to alice fails at once: no time-out involved
        "bob",
        "charlie",
    ],
)
def test_one_party_missing_at_decryption_same_timeout(cycle_data: Path, missing: str) -> None:
    _check_missing_run(missing, cycle_data, lambda name, asker: 1.0)


def test_two_parties_missing_cannot_decrypt(cycle_data: Path) -> None:
    dataset, _, shares, descriptor, _ = _cycle_run(cycle_data)
    sessions, outcomes = run_sessions(
        dict.fromkeys(dataset.names, descriptor),
        dataset.banks,
        shares,
        idle_timeout=1.0,
        runners={"bob": crash_at_decryption, "charlie": crash_at_decryption},
    )
    error = outcomes["alice"]
    assert isinstance(error, ProtocolError), error
    assert "cannot decrypt" in str(error)
    assert "2 parties are needed" in str(error)
    assert sessions["alice"].result is None


class Pump:
    """Deterministic delivery between sans-I/O sessions through the wire codec; messages that
    ``hold`` selects wait in ``held`` until the test delivers them."""

    def __init__(
        self, sessions: Mapping[str, RunSession], codec: Codec, hold: Callable[[Message], bool]
    ) -> None:
        self.sessions = sessions
        self.codec = codec
        self.hold = hold
        self.queue: deque[Message] = deque()
        self.held: list[Message] = []

    def post(self, messages: Iterable[Message]) -> None:
        for sent in messages:
            message = self.codec.decode(self.codec.encode(sent))
            (self.held if self.hold(message) else self.queue).append(message)

    def deliver(self, message: Message) -> None:
        session = self.sessions[message.recipient]
        if not session.done:  # a finished party's driver reads no more
            self.post(session.receive(message))

    def run(self) -> None:
        while self.queue:
            self.deliver(self.queue.popleft())


def test_late_partial_from_a_replaced_helper_is_ignored(cycle_data: Path) -> None:
    dataset, graph, shares, descriptor, reference = _cycle_run(cycle_data)
    sessions = {b.name: RunSession(descriptor, b, shares[b.name]) for b in dataset.banks}
    slow = {("charlie", "bob", Partial), ("alice", "bob", Done)}
    pump = Pump(
        sessions,
        Codec.for_key(shares["alice"].key.public),
        lambda m: (m.sender, m.recipient, type(m.body)) in slow,
    )
    for session in sessions.values():
        pump.post(session.start())
    pump.run()
    bob = sessions["bob"]
    assert phase(bob) is Phase.DECRYPTING and bob.overdue_peers() == ["charlie"]
    # what drive does when charlie stays silent for idle_timeout
    pump.post(bob.peer_unavailable("charlie"))
    pump.run()
    assert phase(bob) is Phase.FINISHING and bob.result is not None
    late = [m for m in pump.held if isinstance(m.body, Partial)]
    assert len(late) == 1
    pump.deliver(late[0])  # charlie was only slow: its answer arrives after all
    for message in pump.held:
        if isinstance(message.body, Done):
            pump.deliver(message)
    pump.run()
    assert bob.done
    assert np.max(np.abs(bob.result - reference[bank_slice(graph, "bob")])) <= TOL


async def help_then_die_after_a_done(
    session: RunSession, transport: InMemoryTransport, network: InMemoryNetwork
) -> None:
    """Answer every decryption request but never ask for one, then die (taken down) right
    after the first ``Done`` from a peer has reached this party."""

    async def forward(messages: Iterable[Message]) -> None:
        for message in messages:
            if not isinstance(message.body, DecryptRequest | Done):
                await transport.send(message)

    await forward(session.start())
    while True:
        message = await asyncio.wait_for(transport.receive(), 30)
        if isinstance(message.body, Done):
            network.take_down(session.name)
            return
        await forward(session.receive(message))


def test_party_dying_after_receiving_done_is_tolerated(cycle_data: Path) -> None:
    dataset, graph, shares, descriptor, reference = _cycle_run(cycle_data)
    sessions, outcomes = run_sessions(
        dict.fromkeys(dataset.names, descriptor),
        dataset.banks,
        shares,
        idle_timeout=0.5,
        runners={"charlie": help_then_die_after_a_done},
    )
    assert sessions["charlie"].result is None
    for name in ("alice", "bob"):
        assert outcomes[name] is None, f"{name}: {outcomes[name]!r}"
        result = sessions[name].result
        assert result is not None
        assert np.max(np.abs(result - reference[bank_slice(graph, name)])) <= TOL


# ------------------------------------------------------------------------- privacy


def acct(bank: str, i: int) -> str:
    """A long distinctive account id, so that substring checks on the wire are meaningful."""
    return f"{bank}-acct-{hashlib.sha256(f'{bank}/{i}'.encode()).hexdigest()[:24]}"


A, B, C, D = ([acct(bank, i) for i in range(4)] for bank in ("alice", "bob", "charlie", "dora"))
PRIVACY_ACCOUNTS = {
    "alice": list(zip(A, [0.9, 0.0, 0.3, 0.6], strict=True)),
    "bob": list(zip(B, [0.0, 1.0, 0.2, 0.0], strict=True)),
    "charlie": list(zip(C[:3], [0.5, 0.0, 0.8], strict=True)),
    # D[1] has risk 0 and no incoming edge: its plaintext is 0 at every step
    # D[3] never sends to another bank: its id must never leave dora
    "dora": list(zip(D, [0.7, 0.0, 0.4, 1.0], strict=True)),
}
_BOTH: list[Row] = [
    (A[0], "alice", B[0], "bob", 10.0, 0),
    (A[1], "alice", B[0], "bob", 5.0, 0),
    (B[0], "bob", C[0], "charlie", 7.0, 0),
    (C[0], "charlie", A[0], "alice", 3.0, 0),
    (C[1], "charlie", D[0], "dora", 2.0, 0),
    (D[0], "dora", A[1], "alice", 4.0, 0),
    (D[1], "dora", A[2], "alice", 1.0, 0),
    (B[1], "bob", B[2], "bob", 6.0, 0),
    (D[3], "dora", D[0], "dora", 1.0, 0),
    (B[2], "bob", A[0], "alice", 2.0, 3),
    (A[0], "alice", C[1], "charlie", 1.0, 3),
    (C[2], "charlie", B[3], "bob", 5.0, 3),
    (D[0], "dora", A[1], "alice", 1.0, 3),
    (D[0], "dora", A[1], "alice", 2.0, 3),
    (D[1], "dora", A[2], "alice", 1.0, 3),
    (D[3], "dora", D[0], "dora", 2.0, 3),
    (A[2], "alice", A[3], "alice", 1.0, 3),
    (C[0], "charlie", D[0], "dora", 0.0, 3),
]
PRIVACY_FILES = spread(_BOTH)
PRIVACY_FILES["alice"].append((A[3], "alice", B[1], "bob", 8.0, 0))  # bob does not list it
PRIVACY_FILES["charlie"].append((D[2], "dora", C[2], "charlie", 9.0, 0))  # dora does not
PRIVACY_ITERATIONS = 2


def _ids_of(bank: str) -> set[str]:
    """Every id of ``bank``'s accounts: listed, or named as one of its accounts in any file."""
    found = {acc for acc, _ in PRIVACY_ACCOUNTS[bank]}
    for rows in PRIVACY_FILES.values():
        for s, sb, d, db, _, _ in rows:
            found |= {s} if sb == bank else set()
            found |= {d} if db == bank else set()
    return found


def _listed_senders(sender: str, recipient: str, period: int | None = None) -> set[str]:
    """Accounts of ``sender`` that its own file lists as sending to ``recipient``."""
    return {
        r[0]
        for r in PRIVACY_FILES[sender]
        if r[1] == sender and r[3] == recipient and (period is None or r[5] == period)
    }


@dataclasses.dataclass
class TappedRun:
    graph: GlobalGraph
    descriptor: RunDescriptor
    shares: dict[str, KeyShare]
    sent: list[tuple[Message, bytes]]
    results: dict[str, FloatArray]
    states: list[FloatArray]

    def of(self, kind: type) -> list[Message]:
        return [m for m, _ in self.sent if isinstance(m.body, kind)]


def values_of(message: Message) -> tuple[mpz, ...]:
    """The values a ``Scores``, ``DecryptRequest`` or ``Partial`` message carries."""
    assert isinstance(message.body, Scores | DecryptRequest | Partial)
    return message.body.values


def phase(session: RunSession) -> Phase:
    """``session.phase``, read afresh where a test checks it before and after a step."""
    return session.phase


@pytest.fixture(scope="module")
def tapped(tmp_path_factory: pytest.TempPathFactory) -> TappedRun:
    banks = bank_specs(PRIVACY_ACCOUNTS, PRIVACY_FILES)
    data = write_dataset(tmp_path_factory.mktemp("privacy"), banks)
    dataset = load_dataset(data)
    graph = build_global(dataset)
    assert graph.periods == (0, 3)
    shares = shares_for(dataset.names, 2)
    parameters = RunParameters(
        PRIVACY_ITERATIONS, delta_a=0.6, delta_b=0.5, periods=tuple(graph.periods)
    )
    descriptor = RunDescriptor.create("privacy", shares["alice"].key, parameters)
    sent: list[tuple[Message, bytes]] = []
    outcomes = run_on_virtual_time(
        descriptor, dataset.banks, shares, tap=lambda m, b: sent.append((m, b)), idle_timeout=30.0
    )
    states = reference_states(graph, DeltaSchedule(0.6, 0.5), PRIVACY_ITERATIONS)
    return TappedRun(
        graph, descriptor, shares, sent, {n: o.scores for n, o in outcomes.items()}, states
    )


def test_privacy_run_is_correct(tapped: TappedRun) -> None:
    final = tapped.states[-1]
    schedule = DeltaSchedule(tapped.descriptor.delta_a, tapped.descriptor.delta_b)
    assert np.array_equal(final, propagate(tapped.graph, schedule, PRIVACY_ITERATIONS))
    assert len(tapped.states) == tapped.descriptor.total_iterations + 1
    for name, result in tapped.results.items():
        assert np.max(np.abs(result - final[bank_slice(tapped.graph, name)])) <= TOL
    kinds = {type(m.body) for m, _ in tapped.sent}
    assert {Hello, Scores, DecryptRequest, Partial, Done} <= kinds


def test_no_third_bank_ids_on_the_wire(tapped: TappedRun) -> None:
    ids = {bank: _ids_of(bank) for bank in PRIVACY_ACCOUNTS}
    for message, data in tapped.sent:
        for bank, bank_ids in ids.items():
            present = {acc for acc in bank_ids if acc.encode() in data}
            if bank == message.sender:
                # only accounts the sender itself lists as paying the recipient
                assert present <= _listed_senders(bank, message.recipient), message.kind
            elif bank != message.recipient:
                assert not present, (message.sender, message.recipient, message.kind, present)
    everything = b"".join(data for _, data in tapped.sent)
    assert D[3].encode() not in everything  # never sends across banks
    assert D[2].encode() not in everything  # only charlie lists it (dora must not)
    assert A[3].encode() in everything  # alice lists it as paying bob: it is in her roster


def test_hello_rosters_are_the_listed_senders(tapped: TappedRun) -> None:
    hellos = tapped.of(Hello)
    assert len(hellos) == 4 * 3
    for message in hellos:
        assert isinstance(message.body, Hello)
        assert message.body.descriptor == tapped.descriptor
        for index, period in enumerate(tapped.descriptor.periods):
            roster = message.body.rosters[index]
            assert len(set(roster)) == len(roster)
            assert set(roster) == _listed_senders(message.sender, message.recipient, period)


def test_ciphertexts_are_fresh_units_and_decrypt_to_the_senders_scores(tapped: TappedRun) -> None:
    key = tapped.shares["alice"].key
    n, n2 = key.public.n, key.public.nsquare
    total = tapped.descriptor.total_iterations
    fixed = FixedPoint.for_packing(tapped.descriptor.precision_bits, total, key.public.bits)
    encoded = set(fixed.encode_scores(tapped.graph.initial))
    rosters = {
        (m.sender, m.recipient): m.body.rosters
        for m in tapped.of(Hello)
        if isinstance(m.body, Hello)
    }
    checked = 0
    for message in tapped.of(Scores) + tapped.of(DecryptRequest):
        for value in values_of(message):
            assert n <= value < n2
            assert gmpy2.gcd(value, n) == 1
            assert int(value) not in encoded
    for message in tapped.of(Scores):
        assert isinstance(message.body, Scores)
        roster = rosters[message.sender, message.recipient][message.period]
        assert len(message.body.values) == len(roster)
        done = message.period * PRIVACY_ITERATIONS + message.iteration - 1
        decoded = fixed.decode(full_decrypt(tapped.shares, message.body.values), done)
        expected = [
            tapped.states[done][global_index(tapped.graph, message.sender, a)] for a in roster
        ]
        assert np.max(np.abs(decoded - np.array(expected))) <= TOL, message
        checked += 1
    assert (
        checked
        == sum(
            bool(_listed_senders(s, r, p))
            for s in PRIVACY_ACCOUNTS
            for r in PRIVACY_ACCOUNTS
            for p in tapped.descriptor.periods
            if s != r
        )
        * PRIVACY_ITERATIONS
    )
    # decryption requests hold the requester's own packed final scores and nothing else
    slot_bits = fixed.slot_bits(total)
    slots = fixed.slots_per_plaintext(total, key.public.bits)
    for message in tapped.of(DecryptRequest):
        assert isinstance(message.body, DecryptRequest)
        own = bank_slice(tapped.graph, message.sender)
        count = own.stop - own.start
        assert len(message.body.values) == math.ceil(count / slots)
        plain = full_decrypt(tapped.shares, message.body.values)
        decoded = fixed.decode(unpack(plain, slot_bits, slots, count), total)
        assert np.max(np.abs(decoded - tapped.states[-1][own])) <= TOL


def test_partials_only_answer_the_requester(tapped: TappedRun) -> None:
    key = tapped.shares["alice"].key
    n2 = mpz(key.public.nsquare)
    requests: dict[tuple[str, str], tuple[int, DecryptRequest]] = {}
    answered: set[tuple[str, str]] = set()
    for position, (message, _) in enumerate(tapped.sent):
        pair = (message.sender, message.recipient)
        if isinstance(message.body, DecryptRequest):
            assert pair not in requests, "asked the same helper twice"
            requests[pair] = (position, message.body)
        elif isinstance(message.body, Partial):
            asked = requests.get((message.recipient, message.sender))
            assert asked is not None, f"partial {pair} that nobody asked for"
            assert asked[0] < position
            request = asked[1]
            assert len(message.body.values) == len(request.values)
            secret = mpz(tapped.shares[message.sender].secret)
            for value, c in zip(message.body.values, request.values, strict=True):
                assert value == gmpy2.powmod(c, secret, n2)
            assert pair not in answered
            answered.add(pair)
    threshold = tapped.descriptor.threshold
    for requester in PRIVACY_ACCOUNTS:
        helpers = [h for (r, h) in requests if r == requester]
        assert len(helpers) == threshold
        assert all((h, requester) in answered for h in helpers)


def test_no_ciphertext_is_sent_twice(tapped: TappedRun) -> None:
    scores = [int(v) for m in tapped.of(Scores) for v in values_of(m)]
    assert len(scores) == len(set(scores))
    # a requester sends the same ciphertexts to each of its helpers (they must decrypt the
    # same values), but they are fresh: none was sent before, by anyone
    requested: dict[str, tuple[int, ...]] = {}
    for message in tapped.of(DecryptRequest):
        values = tuple(int(v) for v in values_of(message))
        assert requested.setdefault(message.sender, values) == values
    flat = [v for values in requested.values() for v in values]
    assert len(requested) == len(PRIVACY_ACCOUNTS)
    assert len(flat) == len(set(flat))
    assert not set(flat) & set(scores)
    # the constant-zero account: same plaintext at every step, a different ciphertext each time
    rosters = {
        (m.sender, m.recipient): m.body.rosters
        for m in tapped.of(Hello)
        if isinstance(m.body, Hello)
    }
    zeros = []
    for message in tapped.of(Scores):
        if (message.sender, message.recipient) == ("dora", "alice"):
            roster = rosters["dora", "alice"][message.period]
            zeros.append(values_of(message)[roster.index(D[1])])
    assert len(zeros) == len(tapped.descriptor.periods) * PRIVACY_ITERATIONS
    assert len(set(zeros)) == len(zeros)
    assert full_decrypt(tapped.shares, zeros) == [0] * len(zeros)


def test_an_account_sent_to_several_peers_is_rerandomised_once_per_step(tmp_path: Path) -> None:
    """One fresh ciphertext per account and step, the same for every peer that needs it."""
    hub, other = acct("alice", 10), acct("alice", 11)
    b0, c0 = acct("bob", 10), acct("charlie", 10)
    accounts = {"alice": [(hub, 0.8), (other, 0.3)], "bob": [(b0, 0.1)], "charlie": [(c0, 0.2)]}
    rows: list[Row] = [
        (hub, "alice", b0, "bob", 5.0, 0),
        (hub, "alice", c0, "charlie", 7.0, 0),
        (other, "alice", c0, "charlie", 1.0, 0),
    ]
    dataset = load_dataset(write_dataset(tmp_path, bank_specs(accounts, spread(rows))))
    shares = shares_for(dataset.names, 1)
    iterations = 3
    parameters = RunParameters(iterations, delta_a=0.6, delta_b=0.5)
    descriptor = RunDescriptor.create("hub", shares["alice"].key, parameters)
    sent: list[tuple[Message, bytes]] = []
    run_on_virtual_time(
        descriptor, dataset.banks, shares, tap=lambda m, b: sent.append((m, b)), idle_timeout=30.0
    )
    rosters = {
        (m.sender, m.recipient): m.body.rosters for m, _ in sent if isinstance(m.body, Hello)
    }
    by_step: dict[int, dict[str, mpz]] = {}
    others = []
    for message, _ in sent:
        if isinstance(message.body, Scores) and message.sender == "alice":
            roster = rosters["alice", message.recipient][0]
            by_step.setdefault(message.iteration, {})[message.recipient] = message.body.values[
                roster.index(hub)
            ]
            if other in roster:
                others.append(message.body.values[roster.index(other)])
    assert sorted(by_step) == list(range(1, iterations + 1))
    for step_values in by_step.values():
        assert set(step_values) == {"bob", "charlie"}
        assert step_values["bob"] == step_values["charlie"]
    fresh = [v["bob"] for v in by_step.values()]
    assert len(set(map(int, fresh + others))) == 2 * iterations


def test_rerandomize_gives_a_fresh_ciphertext_of_the_same_plaintext() -> None:
    shares = shares_for(("alice", "bob", "charlie"), 1)
    public = shares["alice"].key.public
    noise = FreshNoise(public)
    plain = [0, 1, 2**48, public.n - 1]
    cts = encrypt(public, plain, noise)
    again = encrypt(public, plain, noise)
    once = rerandomize(public, cts, noise)
    twice = rerandomize(public, cts, noise)
    for group in zip(cts, again, once, twice, strict=True):
        assert len(set(map(int, group))) == 4
    for values in (cts, again, once, twice):
        assert full_decrypt(shares, values) == plain


# -------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("iterations", {"iterations": 3}),
        ("delta_a", {"delta_a": 0.25}),
        ("delta_b", {"delta_b": 1.0}),
        ("precision_bits", {"precision_bits": 40}),
        ("periods", {"periods": (0, 1)}),
    ],
)
def test_parameter_mismatch_names_the_field(
    cycle_data: Path, field: str, change: dict[str, Any]
) -> None:
    dataset, _, shares, descriptor, _ = _cycle_run(cycle_data)
    odd = dataclasses.replace(descriptor, **change)
    descriptors = dict.fromkeys(dataset.names, descriptor) | {"charlie": odd}
    _, outcomes = run_sessions(descriptors, dataset.banks, shares, idle_timeout=5.0)
    for name, error in outcomes.items():
        assert isinstance(error, ProtocolError), (name, error)
        assert field in str(error), (name, str(error))


def test_key_mismatch_names_the_fingerprint(cycle_data: Path) -> None:
    dataset, _, shares, descriptor, _ = _cycle_run(cycle_data)
    _, private = phe.generate_paillier_keypair(n_length=KEY_BITS)
    other = {s.party: s for s in deal(private.p, private.q, dataset.names, 1)}
    odd = dataclasses.replace(descriptor, key_fingerprint=other["charlie"].key.public.fingerprint())
    _, outcomes = run_sessions(
        dict.fromkeys(dataset.names, descriptor) | {"charlie": odd},
        dataset.banks,
        {**shares, "charlie": other["charlie"]},
        idle_timeout=5.0,
    )
    for name, error in outcomes.items():
        assert isinstance(error, ProtocolError), (name, error)
        assert "key_fingerprint" in str(error), (name, str(error))


class NoNoise:
    """A noise source that fails the test if anything is encrypted."""

    def draw(self, count: int) -> list[mpz]:
        raise AssertionError("something was encrypted before the overflow check")


def test_overflow_is_refused_before_encrypting(cycle_data: Path) -> None:
    dataset, _, shares, descriptor, _ = _cycle_run(cycle_data)
    bits = shares["alice"].key.public.bits
    f = descriptor.precision_bits
    fixed = FixedPoint(f, f - SCORE_BITS_SLACK)
    limit = fixed.max_iterations(bits)
    # independent check of the budget: (f - 4) + f*K + 1 bits per value must stay below the modulus
    assert (f - 4) + f * limit + 1 <= bits - 1 < (f - 4) + f * (limit + 1) + 1
    alice = dataset.banks[0]
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
    dataset, graph, shares, descriptor, _ = _cycle_run(cycle_data)
    f = descriptor.precision_bits
    limit = FixedPoint(f, f - SCORE_BITS_SLACK).max_iterations(shares["alice"].key.public.bits)
    at_limit = dataclasses.replace(descriptor, iterations=limit, delta_a=0.3, delta_b=0.5)
    outcomes = run_on_virtual_time(at_limit, dataset.banks, shares, idle_timeout=30.0)
    reference = propagate(graph, DeltaSchedule(0.3, 0.5), limit)
    for name, outcome in outcomes.items():
        assert np.max(np.abs(outcome.scores - reference[bank_slice(graph, name)])) <= TOL


# ----------------------------------------------------------------------------- CLI

CLI = [sys.executable, "-c", "import sys; from riskprop.cli import main; main(sys.argv[1:])"]


def riskprop(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


def read_scores(path: Path) -> tuple[list[tuple[str, str]], np.ndarray]:
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    assert rows[0] == ["bank", "id", "risk_score"]
    return [(r[0], r[1]) for r in rows[1:]], np.array([float(r[2]) for r in rows[1:]])


def test_cli_keygen_then_secure_simulate(cycle_data: Path, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    made = riskprop(
        "keygen", "--parties", "alice,bob,charlie", "--threshold", "1", "--key-bits", str(KEY_BITS),
        "--out", keys,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    for party in ("alice", "bob", "charlie"):
        assert stat.S_IMODE((keys / f"{party}.share.json").stat().st_mode) == 0o600
    secure_out, plain_out = tmp_path / "secure.csv", tmp_path / "plain.csv"
    secure = riskprop(
        "simulate", cycle_data, "--secure", "--keys", keys, "-T", "2", "--out", secure_out
    )
    assert secure.returncode == 0, secure.stderr
    plain = riskprop("simulate", cycle_data, "-T", "2", "--out", plain_out)
    assert plain.returncode == 0, plain.stderr
    secure_keys, secure_scores = read_scores(secure_out)
    plain_keys, plain_scores = read_scores(plain_out)
    assert secure_keys == plain_keys
    assert len(secure_keys) == 5
    assert np.max(np.abs(secure_scores - plain_scores)) <= TOL


def test_cli_overflow_is_one_line_and_exit_1(cycle_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "never.csv"
    result = riskprop(
        "simulate", cycle_data, "--secure", "--key-bits", str(KEY_BITS), "-T", "50", "--out", out
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if " WARNING " not in f" {line}"]
    assert len(errors) == 1, result.stderr
    f = DEFAULT_PRECISION_BITS
    limit = FixedPoint(f, f - SCORE_BITS_SLACK).max_iterations(KEY_BITS)
    assert errors[0].startswith("riskprop: error:")
    assert f"at most {limit} iterations" in errors[0]
    assert not out.exists()
    assert result.stdout == ""


# ---------------------------------------------------------------------------- slow


@pytest.mark.slow
def test_secure_equals_plaintext_2048(tmp_path: Path) -> None:
    rng = np.random.default_rng(20240611)
    banks = ("alice", "bob", "charlie")
    ids = {b: [f"{b}-{i:03d}" for i in range(10)] for b in banks}
    accounts = {
        b: [(a, float(rng.choice([0.0, rng.random(), 1.0]))) for a in ids[b]] for b in banks
    }
    rows: list[Row] = []
    for _ in range(60):
        sb, db = rng.choice(banks), rng.choice(banks)
        rows.append(
            (
                str(rng.choice(ids[sb])),
                str(sb),
                str(rng.choice(ids[db])),
                str(db),
                float(rng.integers(0, 1000)),
                int(rng.integers(0, 2)),
            )
        )
    files = spread(rows)
    files["bob"].append((ids["alice"][0], "alice", ids["bob"][0], "bob", 50.0, 1))  # disagreement
    data = write_dataset(tmp_path / "data", bank_specs(accounts, files))
    plain = simulate_plaintext(data, iterations=3, delta_a=0.4, delta_b=0.5)
    secure = simulate_secure(data, iterations=3, delta_a=0.4, delta_b=0.5, key_bits=2048)
    assert sum(map(len, secure.account_ids)) == 30
    assert_same_result(secure, plain)
    assert np.any(plain.scores > 0.0)


def test_phase_statistics_give_wall_and_cpu_time_per_phase(cycle_data: Path) -> None:
    """Every phase with wall time has the CPU time of the session's thread, which can never
    exceed it; the run's phases are all there."""
    dataset, _, shares, descriptor, _ = _cycle_run(cycle_data)
    sessions, outcome = run_sessions(
        dict.fromkeys(dataset.names, descriptor), dataset.banks, shares
    )
    assert all(error is None for error in outcome.values())
    for session in sessions.values():
        stats = session.stats
        assert stats.cpu_seconds.keys() == stats.seconds.keys()
        assert {"handshake", "encrypt", "decrypt"} <= stats.seconds.keys()
        assert {"period 0 iteration 1", "period 0 iteration 2"} <= stats.seconds.keys()
        for phase, wall in stats.seconds.items():
            assert 0.0 <= stats.cpu_seconds[phase] <= wall + 1e-3, phase
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
