"""The asyncio driver (``riskprop.node.driver``) around the sessions, in one process on a
virtual clock: time-outs re-route decryption around a party that vanished, a protocol error
aborts every peer, and a node asks for a replay (``Rejoin``) only when it may have lost
messages."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
import virtualtime
from cycle import TOL, cycle_run

from riskprop.core import paillier
from riskprop.core.data import BankData
from riskprop.core.paillier import Rerandomized
from riskprop.core.threshold import KeyShare
from riskprop.errors import ComputeError, ProtocolError
from riskprop.node.driver import drive
from riskprop.node.journal import Journal, MemoryJournal
from riskprop.node.transport import InMemoryNetwork, InMemoryTransport
from riskprop.protocol.messages import (
    Codec,
    DecryptRequest,
    Done,
    Hello,
    Message,
    Partial,
    Rejoin,
    RunDescriptor,
    Scores,
)
from riskprop.protocol.session import Phase, RunSession

T = TypeVar("T")
R = TypeVar("R")
SessionRunner = Callable[[RunSession, InMemoryTransport, InMemoryNetwork], Awaitable[None]]


def run_sessions(
    descriptors: Mapping[str, RunDescriptor],
    banks: Sequence[BankData],
    shares: Mapping[str, KeyShare],
    *,
    idle_timeout: float | Mapping[str, float] = 10.0,
    runners: Mapping[str, SessionRunner] | None = None,
    tap: Callable[[Message, bytes], None] | None = None,
    journals: Mapping[str, Journal | None] | None = None,
) -> tuple[dict[str, RunSession], dict[str, BaseException | None]]:
    """One session per bank (each with its own descriptor) over one in-memory network, on the
    virtual clock; ``runners`` replaces ``drive`` for some parties; ``idle_timeout`` may differ
    per party, and so may the ``journals`` (none by default). Returns the sessions and each
    party's outcome (None or the exception it raised)."""
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
                journal = (journals or {}).get(name)
                jobs.append(drive(session, transport, idle_timeout=timeout, journal=journal))
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


def _check_missing_run(
    missing: str,
    cycle_data: Path,
    idle_timeouts: Callable[[str, str], float],
) -> None:
    """Run the cycle with ``missing`` crashing at decryption; the others must finish with the
    plaintext scores, and the party whose first helper (next in the ring) is the missing one
    must have got its partial decryption from the remaining party instead."""
    run = cycle_run(cycle_data)
    parties = run.descriptor.parties
    asker = parties[(parties.index(missing) - 1) % len(parties)]
    other = next(p for p in parties if p not in (asker, missing))
    sent: list[Message] = []
    sessions, outcomes = run_sessions(
        dict.fromkeys(run.dataset.names, run.descriptor),
        run.dataset.banks,
        run.shares,
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
        assert np.max(np.abs(session.result - run.expected(name))) <= TOL
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
    run = cycle_run(cycle_data)
    sessions, outcomes = run_sessions(
        dict.fromkeys(run.dataset.names, run.descriptor),
        run.dataset.banks,
        run.shares,
        idle_timeout=1.0,
        runners={"bob": crash_at_decryption, "charlie": crash_at_decryption},
    )
    error = outcomes["alice"]
    assert isinstance(error, ProtocolError), error
    assert "cannot decrypt" in str(error)
    assert "2 parties are needed" in str(error)
    assert sessions["alice"].result is None


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
    run = cycle_run(cycle_data)
    sessions, outcomes = run_sessions(
        dict.fromkeys(run.dataset.names, run.descriptor),
        run.dataset.banks,
        run.shares,
        idle_timeout=0.5,
        runners={"charlie": help_then_die_after_a_done},
    )
    assert sessions["charlie"].result is None
    for name in ("alice", "bob"):
        assert outcomes[name] is None, f"{name}: {outcomes[name]!r}"
        result = sessions[name].result
        assert result is not None
        assert np.max(np.abs(result - run.expected(name))) <= TOL


async def send_a_wrong_roster(
    session: RunSession, transport: InMemoryTransport, network: InMemoryNetwork
) -> None:
    """Hand shake, then send alice two scores where the roster announced one, and stop."""
    for message in session.start():
        if isinstance(message.body, Hello):
            await transport.send(message)
    wrong = Scores(Rerandomized((session.public.n + 1, session.public.n + 2)))
    await transport.send(Message(session.descriptor.run_id, session.name, "alice", wrong, 0, 1))


def test_a_protocol_error_aborts_every_peer(cycle_data: Path) -> None:
    """alice finds charlie's scores malformed; her driver tells bob and charlie, so bob stops
    with her reason instead of waiting for a run that cannot finish."""
    run = cycle_run(cycle_data)
    sent: list[Message] = []
    _, outcomes = run_sessions(
        dict.fromkeys(run.dataset.names, run.descriptor),
        run.dataset.banks,
        run.shares,
        idle_timeout=600.0,
        runners={"charlie": send_a_wrong_roster},
        tap=lambda message, data: sent.append(message),
    )
    alice, bob = outcomes["alice"], outcomes["bob"]
    assert isinstance(alice, ProtocolError) and "charlie sent 2 scores" in str(alice), alice
    assert isinstance(bob, ProtocolError), bob
    assert str(bob).startswith("alice aborted the run: charlie sent 2 scores"), bob
    aborts = {(m.sender, m.recipient) for m in sent if m.kind == "abort"}
    assert {("alice", "bob"), ("alice", "charlie")} <= aborts


class DeadWorkers:
    """An executor whose workers always die: ``map`` fails as ``ProcessExecutor`` does after
    its retry."""

    workers = 2
    private = True

    def map(self, fn: Callable[[T], R], batches: Sequence[T]) -> list[R]:
        raise ComputeError(f"{len(batches)} of {len(batches)} compute batches failed twice")


async def drive_with_dead_workers(
    session: RunSession, transport: InMemoryTransport, network: InMemoryNetwork
) -> None:
    session.executor = DeadWorkers()
    await drive(session, transport, idle_timeout=600.0)


def test_dead_compute_workers_abort_every_peer(
    cycle_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bob's compute workers die at his first step: his driver stops the run with
    ``ComputeError`` and tells his peers a generic reason (nothing of bob's data)."""
    monkeypatch.setattr(paillier, "BATCH_TERMS", 1)  # the cycle's steps go to the executor
    run = cycle_run(cycle_data)
    sent: list[Message] = []
    _, outcomes = run_sessions(
        dict.fromkeys(run.dataset.names, run.descriptor),
        run.dataset.banks,
        run.shares,
        idle_timeout=600.0,
        runners={"bob": drive_with_dead_workers},
        tap=lambda message, data: sent.append(message),
    )
    assert isinstance(outcomes["bob"], ComputeError), outcomes["bob"]
    for peer in ("alice", "charlie"):
        outcome = outcomes[peer]
        assert isinstance(outcome, ProtocolError), outcome
        assert str(outcome) == f"bob aborted the run: {ComputeError.PEER_REASON}", outcome
    aborts = {(m.sender, m.recipient) for m in sent if m.kind == "abort"}
    assert {("bob", "alice"), ("bob", "charlie")} <= aborts


def test_only_a_node_that_may_have_lost_messages_asks_for_a_replay(cycle_data: Path) -> None:
    """``Rejoin`` at start: without a journal (nothing to tell), and from a restarted node, which
    also answers its peers' ``Rejoin``; never from a node whose journal is new."""
    run = cycle_run(cycle_data)
    sent: list[Message] = []
    sessions, outcomes = run_sessions(
        dict.fromkeys(run.dataset.names, run.descriptor),
        run.dataset.banks,
        run.shares,
        journals={"bob": MemoryJournal(), "charlie": MemoryJournal(restarted=True)},
        tap=lambda message, data: sent.append(message),
    )
    assert all(outcome is None for outcome in outcomes.values()), outcomes
    rejoins = sorted(
        (m.sender, m.recipient, m.body.answer) for m in sent if isinstance(m.body, Rejoin)
    )
    assert rejoins == [
        ("alice", "bob", False),
        ("alice", "charlie", False),
        ("charlie", "alice", False),
        ("charlie", "alice", True),  # charlie restarted: it answers alice's Rejoin
        ("charlie", "bob", False),
    ]
    for name, session in sessions.items():
        assert session.result is not None
        assert np.max(np.abs(session.result - run.expected(name))) <= TOL
