"""The ledger of served decryption requests (``served.bin``): the driver saves it before a
partial decryption leaves, so a helper killed right after that still remembers, on restart,
which request it served -- even though its checkpoint predates the request. The restored helper
answers the same request again and refuses a different one; a damaged ledger is refused.

A helper (bob) is brought to its decryption phase over the fake link (``protocol.link``),
with alice's request to it held back; then the real driver takes bob over with a
``FileJournal`` and a transport that delivers alice's request and dies on sending the answer.
"""

from __future__ import annotations

import asyncio
import json
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from compute_cases import InProcess
from cycle import CycleRun, cycle_run
from gmpy2 import mpz
from protocol.link import Link

from riskprop.core import threshold
from riskprop.core.paillier import FreshNoise, rerandomize
from riskprop.core.threshold import verify
from riskprop.errors import ConfigError, InputError
from riskprop.files.sealed import DamagedFileError, seal, state_key, unseal
from riskprop.node.driver import drive
from riskprop.node.journal import LEDGER_MAGIC, REMEDY, FileJournal
from riskprop.node.runner import resume_session
from riskprop.protocol import session as session_module
from riskprop.protocol.checkpoint import decode_checkpoint, request_digest
from riskprop.protocol.messages import (
    Abort,
    DecryptRequest,
    Message,
    Partial,
    Served,
)
from riskprop.protocol.session import Phase, RunSession


class ProcessKilledError(Exception):
    """The process dies (raised by the transport, which nothing in the driver catches)."""


class DyingTransport:
    """Hands the driver ``inbox`` and dies when the driver sends a ``Partial``; what it did
    send before is in ``sent``."""

    def __init__(self, name: str, inbox: list[Message]) -> None:
        self.name = name
        self.bytes_sent = 0
        self.sent: list[Message] = []
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        for message in inbox:
            self.inbox.put_nowait(message)

    async def send(self, message: Message) -> None:
        if isinstance(message.body, Partial):
            raise ProcessKilledError(f"{self.name} killed before its partial decryption left")
        self.sent.append(message)

    async def receive(self) -> Message:
        return await self.inbox.get()


@dataclass
class Crashed:
    """bob's state after the crash: its journal's directory and key, what it was asked, and
    the run."""

    run: CycleRun
    directory: Path
    key: bytes
    identity: dict[str, str]
    request: Message

    def journal(self) -> FileJournal:
        width = self.run.shares["bob"].key.public.ciphertext_bytes
        return FileJournal(self.directory, width, key=self.key, identity=self.identity)

    def fresh_session(self) -> RunSession:
        bank = next(b for b in self.run.dataset.banks if b.name == "bob")
        return RunSession(self.run.descriptor, bank, self.run.shares["bob"])

    def restored(self) -> RunSession:
        """bob's session as the runner restores it (checkpoint, then the ledger)."""
        journal = self.journal()
        try:
            session, _ = resume_session(self.fresh_session(), journal)
        finally:
            journal.close()
        return session


@pytest.fixture
def crashed(cycle_data: Path, tmp_path: Path) -> Crashed:
    run = cycle_run(cycle_data)
    # bob stays in its decryption phase (its helper's answer is held), alice's request waits
    link = Link.between(
        run.dataset.banks,
        run.shares,
        run.descriptor,
        hold=lambda m: m.recipient == "bob" and isinstance(m.body, DecryptRequest | Partial),
    )
    link.start().run()
    bob = link.sessions["bob"]
    assert bob.phase is Phase.DECRYPTING and "alice" not in bob.ledger()["served"]
    (request,) = [m for m in link.held if m.sender == "alice" and m.kind == "decrypt_request"]
    directory = tmp_path / "out" / ".riskprop" / run.descriptor.run_id
    key = state_key(run.shares["bob"].secret)
    crashed = Crashed(run, directory, key, {"run": run.descriptor.run_id}, request)
    journal = crashed.journal()
    transport = DyingTransport("bob", [request])
    with pytest.raises(ProcessKilledError):
        asyncio.run(
            drive(bob, transport, idle_timeout=5, journal=journal, resume_with=[]),
        )
    journal.close()
    assert not [m for m in transport.sent if isinstance(m.body, Partial)]
    return crashed


def test_the_ledger_is_saved_sealed_before_the_answer_leaves(crashed: Crashed) -> None:
    path = crashed.directory / "served.bin"
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(crashed.directory.stat().st_mode) == 0o700
    ledger = json.loads(unseal(LEDGER_MAGIC, path.read_bytes(), crashed.key, path, REMEDY))
    assert isinstance(crashed.request.body, DecryptRequest)
    assert ledger["served"] == {"alice": request_digest(crashed.request.body.values)}
    # the checkpoint predates the request: only the ledger knows that bob served alice
    data = crashed.journal().load_checkpoint()
    assert data is not None
    snapshot, _ = decode_checkpoint(data, "checkpoint")
    assert snapshot.phase == "decrypting" and "alice" not in snapshot.served


def _different(crashed: Crashed) -> Message:
    """alice's request again, with fresh ciphertexts: another request, the same sender."""
    body = crashed.request.body
    assert isinstance(body, DecryptRequest)
    public = crashed.run.shares["alice"].key.public
    other = DecryptRequest(rerandomize(public, body.values, FreshNoise(public)))
    return Message(crashed.request.run_id, "alice", "bob", other, seq=crashed.request.seq + 1)


def test_the_restored_helper_refuses_a_different_request(crashed: Crashed) -> None:
    bob = crashed.restored()
    assert bob.phase is Phase.DECRYPTING
    out = bob.receive(_different(crashed))
    assert [(m.recipient, type(m.body)) for m in out] == [("alice", Abort)]
    assert isinstance(out[0].body, Abort)
    assert "second decryption round" in out[0].body.reason


def test_the_restored_helper_answers_the_same_request_again(crashed: Crashed) -> None:
    bob = crashed.restored()
    out = bob.receive(crashed.request)
    partials = [m for m in out if isinstance(m.body, Partial)]
    assert [m.recipient for m in partials] == ["alice"]
    assert not [m for m in out if isinstance(m.body, Served | Abort)]
    body, request = partials[0].body, crashed.request.body
    assert isinstance(body, Partial) and isinstance(request, DecryptRequest)
    descriptor = crashed.run.descriptor
    context = b"|".join((descriptor.digest(), b"alice", request_digest(request.values).encode()))
    key = crashed.run.shares["bob"].key
    assert verify(key, "bob", request.values, body.values, body.proof, context)


def test_the_restored_helper_keeps_its_compute_settings(
    crashed: Crashed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runner's restore keeps the executor, the noise mode and the operator's leave for
    the key share in the workers: the restored bob hands his partial decryptions to them."""
    given: list[object] = []
    honest = threshold.partial_decrypt  # what the session module imported

    def recorded(*args: Any, **kwargs: Any) -> list[mpz]:
        given.append(kwargs.get("executor"))
        return honest(*args, **kwargs)

    monkeypatch.setattr(session_module, "partial_decrypt", recorded)
    bank = next(b for b in crashed.run.dataset.banks if b.name == "bob")
    executor = InProcess(2)
    fresh = RunSession(
        crashed.run.descriptor,
        bank,
        crashed.run.shares["bob"],
        constant_time_noise=True,
        executor=executor,
        share_in_workers=True,
    )
    journal = crashed.journal()
    try:
        bob, _ = resume_session(fresh, journal)
    finally:
        journal.close()
    assert bob is not fresh  # restored from the checkpoint
    assert (bob.executor, bob.constant_time_noise, bob.share_in_workers) == (executor, True, True)
    out = bob.receive(crashed.request)
    assert [m.recipient for m in out if isinstance(m.body, Partial)] == ["alice"]
    assert given and all(e is executor for e in given)  # to the (in-process) workers


def test_without_the_ledger_the_checkpoint_alone_would_serve_twice(crashed: Crashed) -> None:
    """Why the ledger is needed: with it removed, the restored helper serves a different
    request (what the ledger prevents)."""
    (crashed.directory / "served.bin").unlink()
    bob = crashed.restored()
    out = bob.receive(_different(crashed))
    assert [type(m.body) for m in out if m.recipient == "alice"] == [Partial]


@pytest.mark.parametrize(
    "damage",
    ["flip", "truncate", "extend", "another bank", "another kind", "empty"],
)
def test_a_damaged_ledger_is_refused_naming_the_file(crashed: Crashed, damage: str) -> None:
    path = crashed.directory / "served.bin"
    data = path.read_bytes()
    if damage == "flip":
        data = data[:20] + bytes([data[20] ^ 1]) + data[21:]
    elif damage == "truncate":
        data = data[:-1]
    elif damage == "extend":
        data += b"\x00"
    elif damage == "another bank":
        payload = unseal(LEDGER_MAGIC, data, crashed.key, path, REMEDY)
        data = seal(LEDGER_MAGIC, payload, state_key(crashed.run.shares["alice"].secret))
    elif damage == "another kind":
        payload = unseal(LEDGER_MAGIC, data, crashed.key, path, REMEDY)
        data = seal(b"RPK2", payload, crashed.key)
    else:
        data = b""
    path.write_bytes(data)
    with pytest.raises(DamagedFileError) as info:
        crashed.restored()
    message = str(info.value)
    assert str(path) in message and "--fresh" in message, message
    assert "\n" not in message
    assert isinstance(info.value, InputError)


def test_a_sealed_ledger_that_is_not_json_is_refused_naming_the_file(crashed: Crashed) -> None:
    path = crashed.directory / "served.bin"
    for payload in (b"not json", b"[1, 2]", b'"served"'):
        path.write_bytes(seal(LEDGER_MAGIC, payload, crashed.key))
        with pytest.raises(ConfigError, match="malformed record of served requests") as info:
            crashed.restored()
        assert str(path) in str(info.value)


def test_a_ledger_of_the_wrong_shape_is_refused_naming_the_file(crashed: Crashed) -> None:
    path = crashed.directory / "served.bin"
    path.write_bytes(seal(LEDGER_MAGIC, b'{"served": ["alice"]}', crashed.key))
    with pytest.raises(ConfigError, match="malformed") as info:
        crashed.restored()
    assert str(path) in str(info.value)
