"""What travels between banks reveals nothing beyond what the protocol intends: a whole run
over the fake link (every message through the wire codec), checked message by message.

Four banks with long distinctive account ids, two periods, transactions that only one side
lists, an account that never sends across banks and one whose score is always 0.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from pathlib import Path

import gmpy2
import numpy as np
import pytest
from cycle import TOL, bank_slice
from gmpy2 import mpz
from helpers import TxRow, bank_specs, dealt_shares, full_decrypt, spread, write_dataset
from protocol.link import Link

from riskprop.core.data import load_dataset
from riskprop.core.fixedpoint import FixedPoint
from riskprop.core.graph import GlobalGraph, build_global
from riskprop.core.paillier import unpack
from riskprop.core.params import RunParameters
from riskprop.core.plaintext import PreparedPeriod, propagate, step
from riskprop.core.schedule import DeltaSchedule
from riskprop.core.threshold import KeyShare
from riskprop.core.types import FloatArray
from riskprop.protocol.messages import (
    DecryptRequest,
    Done,
    Hello,
    Message,
    Partial,
    RunDescriptor,
    Scores,
)


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
_BOTH: list[TxRow] = [
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
    """The privacy data's run over the link: every message sent (decoded, with its bytes),
    each bank's result, and the plaintext scores after 0, 1, 2, ... iterations."""

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


@pytest.fixture(scope="module")
def tapped(tmp_path_factory: pytest.TempPathFactory) -> TappedRun:
    banks = bank_specs(PRIVACY_ACCOUNTS, PRIVACY_FILES)
    data = write_dataset(tmp_path_factory.mktemp("privacy"), banks)
    dataset = load_dataset(data)
    graph = build_global(dataset)
    assert graph.periods == (0, 3)
    shares = dealt_shares(dataset.names, 2)
    parameters = RunParameters(
        PRIVACY_ITERATIONS, delta_a=0.6, delta_b=0.5, periods=tuple(graph.periods)
    )
    descriptor = RunDescriptor.create("privacy", shares["alice"].key, parameters)
    link = Link.between(dataset.banks, shares, descriptor).start().run()
    assert link.done and not link.errors, link.errors
    states = reference_states(graph, DeltaSchedule(0.6, 0.5), PRIVACY_ITERATIONS)
    return TappedRun(graph, descriptor, shares, link.sent, link.results(), states)


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
            share = tapped.shares[message.sender]
            secret = mpz(2 * share.key.delta * share.secret)
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
    rows: list[TxRow] = [
        (hub, "alice", b0, "bob", 5.0, 0),
        (hub, "alice", c0, "charlie", 7.0, 0),
        (other, "alice", c0, "charlie", 1.0, 0),
    ]
    dataset = load_dataset(write_dataset(tmp_path, bank_specs(accounts, spread(rows))))
    shares = dealt_shares(dataset.names, 1)
    iterations = 3
    parameters = RunParameters(iterations, delta_a=0.6, delta_b=0.5)
    descriptor = RunDescriptor.create("hub", shares["alice"].key, parameters)
    link = Link.between(dataset.banks, shares, descriptor).start().run()
    assert link.done and not link.errors, link.errors
    sent = link.sent
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
