"""Cheating helpers and a deviating requester, over the fake link (every message through the
wire codec): a helper whose partial decryptions fail their proof is named and replaced, and
nobody gets a second decryption round.

A cheater is an honest session whose outgoing ``Partial`` messages to its victims are
rewritten on the wire (``CheatingLink``), each kind of cheat knowing what a real cheater
knows: its own share, the request it answers, and how proofs are bound to it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import gmpy2
import numpy as np
import pytest
from cycle import TOL, bank_slice, cycle_run
from gmpy2 import mpz
from helpers import TxRow, bank_specs, dealt_shares, spread, write_dataset
from protocol.link import Hook, Link, never

from riskprop.core.data import BankData, load_dataset
from riskprop.core.graph import build_global
from riskprop.core.paillier import FreshNoise, rerandomize
from riskprop.core.params import RunParameters
from riskprop.core.plaintext import propagate
from riskprop.core.threshold import KeyShare, partial_decrypt, prove
from riskprop.core.types import FloatArray
from riskprop.protocol.checkpoint import request_digest
from riskprop.protocol.messages import (
    Abort,
    DecryptRequest,
    Done,
    Message,
    Partial,
    RunDescriptor,
    Served,
)
from riskprop.protocol.session import Phase, RunSession

REFUSED = "its partial decryptions fail their proof"


def context(descriptor: RunDescriptor, requester: str, values: Iterable[mpz]) -> bytes:
    """What a helper's proof is bound to (as ``RunSession._context``): the run, the requester
    and the digest of its request. Spelled out here: a change to it is a wire change."""
    digest = request_digest(list(values))
    return b"|".join((descriptor.digest(), requester.encode(), digest.encode()))


@dataclass(frozen=True)
class Request:
    """What a cheating helper knows when it answers: its share, the run, the requester and the
    ciphertexts it was asked to decrypt, and its honest answer."""

    share: KeyShare
    descriptor: RunDescriptor
    requester: str
    ciphertexts: tuple[mpz, ...]
    honest: Partial

    def proved(self, values: list[mpz], share: KeyShare | None = None) -> Partial:
        """``values`` with a proof the cheater makes for them for this very request."""
        bound = context(self.descriptor, self.requester, self.ciphertexts)
        proof = prove(share or self.share, self.ciphertexts, values, bound)
        return Partial(tuple(values), proof)


def wrong_share(request: Request) -> Partial:
    """Partial decryptions and proof made with the next party's secret instead of its own."""
    key = request.share.key
    other = key.parties[key.index(request.share.party) % len(key.parties)]
    forged = KeyShare(key, request.share.party, dealt_secret(key.parties, key.threshold, other))
    return request.proved(partial_decrypt(forged, request.ciphertexts), forged)


def shifted(request: Request) -> Partial:
    """One honest value times ``(1 + N)``: a plaintext moved by a multiple of the share,
    re-proved by the cheater itself."""
    n, n2 = request.share.key.public.n, request.share.key.public.nsquare
    values = list(request.honest.values)
    values[0] = values[0] * (1 + n) % n2
    return request.proved(values)


def garbage(request: Request) -> Partial:
    """Random units mod ``N**2`` with a proof made for them."""
    n, n2 = request.share.key.public.n, request.share.key.public.nsquare
    values: list[mpz] = []
    while len(values) < len(request.ciphertexts):
        value = mpz(secrets.randbelow(n2))
        if gmpy2.gcd(value, n) == 1:
            values.append(value)
    return request.proved(values)


def replayed(request: Request) -> Partial:
    """The cheater's complete, valid answer to another request (fresh ciphertexts of the same
    plaintexts, from another requester), sent in place of this one's."""
    public = request.share.key.public
    others = [
        p for p in request.descriptor.parties if p not in (request.requester, request.share.party)
    ]
    fresh = list(rerandomize(public, request.ciphertexts, FreshNoise(public)))
    values = partial_decrypt(request.share, fresh)
    proof = prove(request.share, fresh, values, context(request.descriptor, others[0], fresh))
    return Partial(tuple(values), proof)


def rebound(request: Request) -> Partial:
    """The right partial decryptions with the proof the cheater made for them for another
    requester: a proof answers one request only."""
    other = next(p for p in request.descriptor.parties if p != request.requester)
    bound = context(request.descriptor, other, request.ciphertexts)
    proof = prove(request.share, request.ciphertexts, list(request.honest.values), bound)
    return Partial(request.honest.values, proof)


Cheat = Callable[[Request], Partial]
CHEATS: dict[str, Cheat] = {
    "wrong share": wrong_share,
    "shifted partial": shifted,
    "garbage": garbage,
    "replayed answer": replayed,
    "proof for another requester": rebound,
}


def dealt_secret(parties: tuple[str, ...], threshold: int, party: str) -> int:
    """``party``'s secret in the dealt key of ``tests/helpers.py`` (what a cheater may have
    stolen, or simply uses instead of its own)."""
    return dealt_shares(parties, threshold)[party].secret


class CheatingLink(Link):
    """A ``Link`` on which ``cheaters`` rewrite every ``Partial`` they send to one of their
    victims (``cheaters[helper]`` = (victims, cheat))."""

    def __init__(
        self,
        sessions: Iterable[RunSession],
        cheaters: dict[str, tuple[frozenset[str], Cheat]],
        *,
        hold: Hook = never,
    ) -> None:
        super().__init__(sessions, hold=hold)
        self.cheaters = cheaters

    def post(self, messages: Iterable[Message]) -> None:
        super().post(self._rewrite(message) for message in messages)

    def _rewrite(self, message: Message) -> Message:
        cheater = self.cheaters.get(message.sender)
        if cheater is None or not isinstance(message.body, Partial):
            return message
        victims, cheat = cheater
        if message.recipient not in victims:
            return message
        asked = [
            m.body.values
            for m in self.of(DecryptRequest)
            if (m.sender, m.recipient) == (message.recipient, message.sender)
            and isinstance(m.body, DecryptRequest)
        ]
        session = self.sessions[message.sender]
        request = Request(
            session.share, session.descriptor, message.recipient, tuple(asked[-1]), message.body
        )
        return Message(
            message.run_id,
            message.sender,
            message.recipient,
            cheat(request),
            message.period,
            message.iteration,
            message.seq,
        )


def sessions_of(
    banks: Iterable[BankData], shares: dict[str, KeyShare], descriptor: RunDescriptor
) -> list[RunSession]:
    return [RunSession(descriptor, bank, shares[bank.name]) for bank in banks]


def first_helper(parties: tuple[str, ...], requester: str) -> str:
    """The party a requester asks first (next in ring order)."""
    return parties[(parties.index(requester) + 1) % len(parties)]


def assert_close(result: FloatArray | None, expected: FloatArray) -> None:
    assert result is not None
    assert np.max(np.abs(result - expected)) <= TOL


# ------------------------------------------------------------------------ n = 3, t = 1


@pytest.mark.parametrize("kind", CHEATS)
@pytest.mark.parametrize("victim", ["alice", "bob", "charlie"])
def test_a_cheating_helper_is_named_and_replaced(cycle_data: Path, kind: str, victim: str) -> None:
    run = cycle_run(cycle_data)
    parties = run.descriptor.parties
    cheater = first_helper(parties, victim)
    other = next(p for p in parties if p not in (victim, cheater))
    link = CheatingLink(
        sessions_of(run.dataset.banks, run.shares, run.descriptor),
        {cheater: (frozenset({victim}), CHEATS[kind])},
    )
    link.start().run()
    assert link.done and not link.errors, link.errors
    requester = link.sessions[victim]
    assert requester.rejected == {cheater: REFUSED}
    asked = [m.recipient for m in link.of(DecryptRequest) if m.sender == victim]
    assert asked == [cheater, other]
    answered = [m.sender for m in link.of(Partial) if m.recipient == victim]
    assert answered == [cheater, other]
    for name, session in link.sessions.items():
        assert_close(session.result, run.expected(name))
        if name != victim:
            assert session.rejected == {}, name  # the cheater answers the others honestly


@pytest.mark.parametrize("kind", CHEATS)
def test_both_helpers_cheating_leave_the_requester_without_a_result(
    cycle_data: Path, kind: str
) -> None:
    run = cycle_run(cycle_data)
    victim = "alice"
    helpers = frozenset({"bob", "charlie"})
    link = CheatingLink(
        sessions_of(run.dataset.banks, run.shares, run.descriptor),
        {helper: (frozenset({victim}), CHEATS[kind]) for helper in helpers},
    )
    link.start().run()
    assert link.errors.keys() == {victim}
    message = str(link.errors[victim])
    assert "cannot decrypt" in message and "no result is written" in message, message
    assert "bob" in message and "charlie" in message, message
    alice = link.sessions[victim]
    assert alice.result is None and alice.phase is Phase.DECRYPTING
    assert alice.rejected == dict.fromkeys(helpers, REFUSED)
    for name in helpers:  # the others decrypted their own scores
        assert_close(link.sessions[name].result, run.expected(name))
    assert not [m for m in link.of(Done) if m.sender == victim]


# ------------------------------------------------------------------------ n = 5, t = 2

FIVE = ("alice", "bob", "charlie", "dora", "eve")
FIVE_ACCOUNTS = {bank: [(f"{bank[0]}{i}", 0.2 * i) for i in range(1, 4)] for bank in FIVE}
FIVE_ROWS: list[TxRow] = [
    *(
        (f"{a[0]}{i}", a, f"{b[0]}{(i % 3) + 1}", b, 1.0 + i, 0)
        for a, b in zip(FIVE, FIVE[1:] + FIVE[:1], strict=True)
        for i in range(1, 4)
    ),
    ("a1", "alice", "d2", "dora", 4.0, 0),
    ("e3", "eve", "b1", "bob", 2.5, 0),
    ("c1", "charlie", "c2", "charlie", 1.0, 0),
]


@pytest.mark.parametrize("kind", ["wrong share", "shifted partial", "replayed answer"])
@pytest.mark.parametrize("cheater", ["bob", "charlie"])
def test_one_cheater_among_two_helpers_of_five(tmp_path: Path, kind: str, cheater: str) -> None:
    """t = 2: alice asks bob and charlie; the cheater among them is replaced by dora."""
    data = write_dataset(tmp_path / "five", bank_specs(FIVE_ACCOUNTS, spread(FIVE_ROWS)))
    dataset = load_dataset(data)
    assert dataset.names == FIVE
    graph = build_global(dataset)
    shares = dealt_shares(dataset.names, 2)
    parameters = RunParameters(2, delta_a=0.5, delta_b=0.0, periods=tuple(graph.periods))
    descriptor = RunDescriptor.create("five", shares["alice"].key, parameters)
    reference = propagate(graph, parameters.schedule, 2)
    link = CheatingLink(
        sessions_of(dataset.banks, shares, descriptor),
        {cheater: (frozenset({"alice"}), CHEATS[kind])},
    )
    link.start().run()
    assert link.done and not link.errors, link.errors
    assert link.sessions["alice"].rejected == {cheater: REFUSED}
    asked = [m.recipient for m in link.of(DecryptRequest) if m.sender == "alice"]
    assert asked == ["bob", "charlie", "dora"]
    for name, session in link.sessions.items():
        assert_close(session.result, reference[bank_slice(graph, name)])


# ----------------------------------------------------------- one decryption round per bank


def _held_requests(cycle_data: Path, hold: Hook) -> tuple[CheatingLink, RunDescriptor]:
    """The cycle run with alice's decryption request and everything ``hold`` selects held."""
    run = cycle_run(cycle_data)
    link = CheatingLink(
        sessions_of(run.dataset.banks, run.shares, run.descriptor),
        {},
        hold=lambda m: (m.sender == "alice" and isinstance(m.body, DecryptRequest)) or hold(m),
    )
    link.start().run()
    return link, run.descriptor


def _second_request(link: Link, to: str) -> tuple[Message, DecryptRequest]:
    """A different request from alice (fresh ciphertexts of the same packed scores) to ``to``:
    with two decryptions of the same scores under different noise, alice could learn more
    than her scores (and with other plaintexts, anything)."""
    (first,) = [m for m in link.held if m.sender == "alice" and isinstance(m.body, DecryptRequest)]
    assert isinstance(first.body, DecryptRequest)
    public = link.sessions["alice"].public
    other = DecryptRequest(rerandomize(public, first.body.values, FreshNoise(public)))
    assert request_digest(other.values) != request_digest(first.body.values)
    return Message(first.run_id, "alice", to, other, seq=99), other


def test_a_second_request_after_the_notice_is_refused(cycle_data: Path) -> None:
    """bob serves alice and tells charlie; alice's different request to charlie is refused
    with an ``Abort`` and charlie never sends her a partial decryption."""
    link, _ = _held_requests(cycle_data, lambda m: m.sender == "alice" and isinstance(m.body, Done))
    second, _ = _second_request(link, "charlie")
    link.release(lambda m: isinstance(m.body, DecryptRequest))  # alice -> bob
    link.run()
    notices = [
        m for m in link.of(Served) if isinstance(m.body, Served) and m.body.requester == "alice"
    ]
    assert [(m.sender, m.recipient) for m in notices] == [("bob", "charlie")]
    assert link.sessions["alice"].result is not None  # from bob's honest answer
    link.deliver(second)
    link.run()
    aborts = [m for m in link.of(Abort) if (m.sender, m.recipient) == ("charlie", "alice")]
    assert len(aborts) == 1 and isinstance(aborts[0].body, Abort)
    assert "second decryption round" in aborts[0].body.reason
    assert not [m for m in link.of(Partial) if (m.sender, m.recipient) == ("charlie", "alice")]
    assert "charlie" not in link.errors  # refusing is enough: charlie goes on
    assert "alice" not in link.sessions["charlie"].ledger()["served"]


def test_a_second_request_before_the_notice_is_caught_by_the_notice(cycle_data: Path) -> None:
    """alice's second request reaches charlie before bob's notice: charlie serves it, and the
    helpers that then learn of the other decryption stop, naming alice."""
    link, _ = _held_requests(
        cycle_data,
        lambda m: (
            (m.sender == "alice" and isinstance(m.body, Done))
            or (isinstance(m.body, Served) and m.body.requester == "alice")
        ),
    )
    second, _ = _second_request(link, "charlie")
    link.release(lambda m: isinstance(m.body, DecryptRequest))  # alice -> bob
    link.run()
    link.deliver(second)  # before bob's notice to charlie
    link.run()
    served = [m for m in link.of(Partial) if m.recipient == "alice"]
    assert sorted(m.sender for m in served) == ["bob", "charlie"]  # the deviation succeeded...
    notices = {(m.sender, m.recipient) for m in link.held if isinstance(m.body, Served)}
    assert notices == {("bob", "charlie"), ("charlie", "bob")}
    # alice's Done stays held: a helper that has every Done stops reading, and a notice that
    # arrives after that is never seen (detection needs the helper still running)
    link.release(lambda m: isinstance(m.body, Served))
    link.run()
    # ...and both helpers learn of it from the other's notice
    assert {"bob", "charlie"} <= link.errors.keys()
    for helper in ("bob", "charlie"):
        message = str(link.errors[helper])
        assert "alice obtained two different decryptions" in message, message


def test_a_notice_about_the_same_request_is_accepted(cycle_data: Path) -> None:
    """Helpers serving the same request (alice re-routing after a silent helper) do not
    conflict: the notices agree."""
    run = cycle_run(cycle_data)
    link = CheatingLink(
        sessions_of(run.dataset.banks, run.shares, run.descriptor),
        {},
        hold=lambda m: (m.sender, m.recipient, type(m.body)) == ("bob", "alice", Partial),
    )
    link.start().run()
    link.unavailable("alice", "bob")  # bob was slow, not gone: it served alice
    link.run()
    link.release()
    link.run()
    assert link.done and not link.errors, link.errors
    notices = {
        (m.sender, m.recipient)
        for m in link.of(Served)
        if isinstance(m.body, Served) and m.body.requester == "alice"
    }
    assert notices == {("bob", "charlie"), ("charlie", "bob")}
    assert_close(link.sessions["alice"].result, run.expected("alice"))


def test_an_over_quota_request_asked_twice_is_never_answered(cycle_data: Path) -> None:
    link, _ = _held_requests(cycle_data, never)
    (first,) = [m for m in link.held if m.sender == "alice" and isinstance(m.body, DecryptRequest)]
    assert isinstance(first.body, DecryptRequest)
    public = link.sessions["alice"].public
    extra = rerandomize(public, first.body.values, FreshNoise(public))
    greedy = DecryptRequest(rerandomize(public, [*first.body.values, *extra], FreshNoise(public)))
    bob = link.sessions["bob"]
    ask = Message(first.run_id, "alice", "bob", greedy, seq=99)
    refused = bob.receive(ask)
    assert [type(m.body) for m in refused if m.recipient == "alice"] == [Abort]
    again = bob.receive(ask)
    assert not [m for m in again if isinstance(m.body, Partial)]
