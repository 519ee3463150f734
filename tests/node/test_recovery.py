"""Crash recovery in one process: a bank killed at any safe point resumes from its checkpoint."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import phe
import pytest
import virtualtime

from riskprop.core.data import Dataset, load_dataset
from riskprop.core.params import RunParameters
from riskprop.core.threshold import KeyShare, deal
from riskprop.files.sealed import state_key
from riskprop.lab.simulate import simulate_plaintext
from riskprop.lab.synthetic import generate_dataset
from riskprop.node.driver import drive
from riskprop.node.journal import FileJournal, MemoryJournal
from riskprop.node.transport import InMemoryNetwork
from riskprop.protocol.checkpoint import decode_checkpoint, encode_checkpoint
from riskprop.protocol.messages import Codec, Message, RunDescriptor
from riskprop.protocol.session import RunSession

ITERATIONS = 2
PERIODS = 2


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Dataset, dict[str, KeyShare]]:
    root = tmp_path_factory.mktemp("recovery")
    generate_dataset(root, accounts=60, edges=200, periods=PERIODS, seed=3)
    dataset = load_dataset(root)
    _, private = phe.generate_paillier_keypair(n_length=512)
    shares = {s.party: s for s in deal(private.p, private.q, dataset.names, 1)}
    return root, dataset, shares


def descriptor_for(dataset: Dataset, shares: dict[str, KeyShare]) -> RunDescriptor:
    key = next(iter(shares.values())).key
    parameters = RunParameters(
        ITERATIONS, delta_a=0.5, delta_b=0.3, periods=tuple(dataset.periods())
    )
    return RunDescriptor.create("recovery", key, parameters)


async def run(
    dataset: Dataset,
    shares: dict[str, KeyShare],
    descriptor: RunDescriptor,
    victim: str | None = None,
    crash_at: int = 0,
) -> dict[str, np.ndarray]:
    parties = dataset.names
    public = shares[parties[0]].key.public
    network = InMemoryNetwork(parties, Codec.for_key(public))
    journals = {name: MemoryJournal() for name in parties}
    sessions = {b.name: RunSession(descriptor, b, shares[b.name]) for b in dataset.banks}

    def start(
        name: str, session: RunSession, pending: list[Message] | None = None
    ) -> asyncio.Task[None]:
        return asyncio.create_task(
            drive(
                session,
                network.endpoint(name),
                idle_timeout=20,
                journal=journals[name],
                resume_with=pending,
            )
        )

    tasks = {name: start(name, s) for name, s in sessions.items()}
    if victim is not None:
        while sessions[victim].safe_points < crash_at and not tasks[victim].done():
            await asyncio.sleep(0)
        assert not tasks[victim].done(), "the victim finished before the crash point"
        tasks[victim].cancel()  # the process dies: inbox and memory are gone
        with pytest.raises(asyncio.CancelledError):
            await tasks[victim]
        network.clear_inbox(victim)
        # the journal outlives the process (it is on disk): the new process finds it, so it
        # knows that it restarted and asks its peers for a replay
        journals[victim].restarted = True
        bank = next(b for b in dataset.banks if b.name == victim)
        checkpoint = journals[victim].checkpoint
        if checkpoint is None:
            sessions[victim] = RunSession(descriptor, bank, shares[victim])
            tasks[victim] = start(victim, sessions[victim])
        else:
            snapshot, pending = decode_checkpoint(checkpoint, "memory")
            sessions[victim] = RunSession.restore(snapshot, bank, shares[victim])
            tasks[victim] = start(victim, sessions[victim], pending)
    await asyncio.wait_for(asyncio.gather(*tasks.values()), 60)
    results = {}
    for name, session in sessions.items():
        assert session.result is not None
        results[name] = session.result
    return results


def test_uninterrupted_run_matches_plaintext(
    setup: tuple[Path, Dataset, dict[str, KeyShare]],
) -> None:
    root, dataset, shares = setup
    results = virtualtime.run(run(dataset, shares, descriptor_for(dataset, shares)))
    reference = simulate_plaintext(root, iterations=ITERATIONS, delta_a=0.5, delta_b=0.3)
    assert (
        np.max(np.abs(np.concatenate([results[n] for n in dataset.names]) - reference.scores))
        < 1e-7
    )


@pytest.mark.parametrize("victim", ["alice", "bob", "charlie"])
@pytest.mark.parametrize("crash_at", range(PERIODS * ITERATIONS + 2))
def test_crash_at_any_safe_point_gives_identical_scores(
    setup: tuple[Path, Dataset, dict[str, KeyShare]], victim: str, crash_at: int
) -> None:
    _, dataset, shares = setup
    descriptor = descriptor_for(dataset, shares)
    expected = virtualtime.run(run(dataset, shares, descriptor))
    found = virtualtime.run(run(dataset, shares, descriptor, victim, crash_at))
    for name in dataset.names:
        assert np.array_equal(found[name], expected[name]), name  # bit for bit


def test_checkpoint_round_trip_and_file_journal(
    setup: tuple[Path, Dataset, dict[str, KeyShare]], tmp_path: Path
) -> None:
    _, dataset, shares = setup
    descriptor = descriptor_for(dataset, shares)
    journal = MemoryJournal()
    virtualtime.run(run_and_keep(dataset, shares, descriptor, journal))
    assert journal.checkpoint is not None
    snapshot, pending = decode_checkpoint(journal.checkpoint, "memory")
    assert snapshot.descriptor == descriptor and snapshot.party == "alice"
    width = shares["alice"].key.public.ciphertext_bytes
    assert encode_checkpoint(snapshot, pending, width) == journal.checkpoint
    # no plaintext score is in a checkpoint: only ciphertexts (units mod N) and public data
    n = shares["alice"].key.public.n
    assert all(int(c) >= n for c in (*snapshot.state, *snapshot.packed))
    key, identity = state_key(shares["alice"].secret), {"run": descriptor.run_id}
    files = FileJournal(tmp_path / "journal", width, key=key, identity=identity)
    files.save_checkpoint(journal.checkpoint)
    for peer in ("bob", "charlie"):
        for message in journal.sent_to(peer):
            files.record(message)
    files.close()
    reopened = FileJournal(tmp_path / "journal", width, key=key, identity=identity)
    assert reopened.load_checkpoint() == journal.checkpoint
    assert reopened.sent_to("bob") == journal.sent_to("bob")
    assert (tmp_path / "journal" / "checkpoint.bin").stat().st_mode & 0o077 == 0
    # a record cut short by a crash is dropped on reopening
    reopened.close()
    with (tmp_path / "journal" / "outbox.log").open("ab") as handle:
        handle.write(b"\x00\x00\x10\x00partial")
    again = FileJournal(tmp_path / "journal", width, key=key, identity=identity)
    assert again.sent_to("charlie") == journal.sent_to("charlie")
    again.discard()
    assert not (tmp_path / "journal").exists()


async def run_and_keep(
    dataset: Dataset, shares: dict[str, KeyShare], descriptor: RunDescriptor, journal: MemoryJournal
) -> None:
    """A run in which alice keeps her journal (to inspect her last checkpoint)."""
    network = InMemoryNetwork(dataset.names, Codec.for_key(shares["alice"].key.public))
    sessions = [RunSession(descriptor, b, shares[b.name]) for b in dataset.banks]
    await asyncio.gather(
        *(
            drive(s, network.endpoint(s.name), journal=journal if s.name == "alice" else None)
            for s in sessions
        )
    )


def test_results_of_another_run_are_set_aside(tmp_path: Path) -> None:
    from riskprop.files.results import REPORT_FILE, RESULTS_FILE, previous_run
    from riskprop.node.runner import set_aside_stale_results

    out = tmp_path / "out"
    out.mkdir()
    assert previous_run(out) is None
    (out / RESULTS_FILE).write_text("id,risk_score\na,0.5\n")
    (out / REPORT_FILE).write_text('{"run_id": "march"}')
    assert previous_run(out) == "march"
    set_aside_stale_results(out)
    assert not (out / RESULTS_FILE).exists() and not (out / REPORT_FILE).exists()
    assert (out / f"{RESULTS_FILE}.march.previous").read_text() == "id,risk_score\na,0.5\n"


async def run_with_lost_rejoin(
    dataset: Dataset, shares: dict[str, KeyShare], descriptor: RunDescriptor
) -> dict[str, np.ndarray]:
    """alice dies before her first checkpoint and starts afresh; her ``Rejoin`` reaches bob's
    process, which dies before handling it and resumes from its checkpoint. Only bob's own
    ``Rejoin``, answered by alice, can get alice bob's handshake again."""
    parties = dataset.names
    network = InMemoryNetwork(parties, Codec.for_key(shares["alice"].key.public))
    journals = {name: MemoryJournal() for name in parties}
    banks = {b.name: b for b in dataset.banks}
    sessions = {name: RunSession(descriptor, banks[name], shares[name]) for name in parties}

    def start(name: str, pending: list[Message] | None = None) -> asyncio.Task[None]:
        coroutine = drive(
            sessions[name], network.endpoint(name), idle_timeout=5, journal=journals[name],
            resume_with=pending,
        )  # fmt: skip
        return asyncio.create_task(coroutine)

    tasks = {name: start(name) for name in parties}
    while sessions["bob"].safe_points < 1:  # bob has its handshake checkpoint
        await asyncio.sleep(0)
    for victim in ("alice", "bob"):
        tasks[victim].cancel()
        with pytest.raises(asyncio.CancelledError):
            await tasks[victim]
        network.clear_inbox(victim)
    journals["alice"] = MemoryJournal(restarted=True)  # alice had not checkpointed yet
    journals["bob"].restarted = True
    sessions["alice"] = RunSession(descriptor, banks["alice"], shares["alice"])
    tasks["alice"] = start("alice")
    while network._queues["bob"].empty():  # alice's Rejoin waits for bob ...
        await asyncio.sleep(0)
    network.clear_inbox("bob")  # ... and is lost with bob's process
    checkpoint = journals["bob"].checkpoint
    assert checkpoint is not None
    snapshot, pending = decode_checkpoint(checkpoint, "memory")
    sessions["bob"] = RunSession.restore(snapshot, banks["bob"], shares["bob"])
    tasks["bob"] = start("bob", pending)
    await asyncio.wait_for(asyncio.gather(*tasks.values()), 60)
    return {name: s.result for name, s in sessions.items() if s.result is not None}


def test_a_rejoin_lost_with_a_crashed_peer_is_recovered(
    setup: tuple[Path, Dataset, dict[str, KeyShare]],
) -> None:
    _, dataset, shares = setup
    descriptor = descriptor_for(dataset, shares)
    expected = virtualtime.run(run(dataset, shares, descriptor))
    found = virtualtime.run(run_with_lost_rejoin(dataset, shares, descriptor))
    assert found.keys() == expected.keys()
    for name in dataset.names:
        assert np.array_equal(found[name], expected[name]), name
