"""What a node keeps so that it can restart mid-run: a checkpoint and a log of what it sent.

The checkpoint (``protocol.checkpoint``) restores the session; the outbox log lets the node
send a restarted peer everything it had sent that peer, which the peer needs because its
inbox died with it. ``MemoryJournal`` serves in-process runs; ``FileJournal`` writes
``DIR/checkpoint.bin`` atomically and appends every delivered message to ``DIR/outbox.log``,
both sealed (``riskprop.files.sealed``) so that nothing damaged is ever read back.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO, Protocol

from riskprop.errors import ConfigError
from riskprop.files.atomic import atomic_write_bytes
from riskprop.files.results import describe_changes
from riskprop.files.sealed import seal, seal_record, unseal, unseal_records
from riskprop.protocol.messages import Message, decode, encode

CHECKPOINT_MAGIC = b"RPK2"
IDENTITY_MAGIC = b"RPI1"
LEDGER_MAGIC = b"RPL1"
#: What an operator does about a damaged journal file.
REMEDY = (
    "the run cannot resume from it: start it again with --fresh at every bank "
    "(riskprop run --fresh; a service: riskprop trigger --fresh)"
)


class Journal(Protocol):
    #: A previous process of this run got as far as listening: it may have taken (and lost)
    #: messages, so this one asks its peers for a replay when they rejoin (see ``Rejoin``).
    restarted: bool

    def record(self, message: Message) -> None:
        """``message`` was delivered."""

    def sent_to(self, peer: str) -> list[Message]:
        """Every message delivered to ``peer`` in this run, in order."""

    def save_checkpoint(self, data: bytes) -> None:
        """Replace the checkpoint."""

    def save_ledger(self, data: bytes) -> None:
        """Replace the ledger of served decryption requests (durably, before sending)."""

    def load_ledger(self) -> bytes | None:
        """The saved ledger, or None."""


class MemoryJournal:
    """A journal that lives as long as the process (tests, in-process runs)."""

    def __init__(self, *, restarted: bool = False) -> None:
        self.restarted = restarted
        self.checkpoint: bytes | None = None
        self.ledger: bytes | None = None
        self._sent: dict[str, list[Message]] = defaultdict(list)

    def record(self, message: Message) -> None:
        self._sent[message.recipient].append(message)

    def sent_to(self, peer: str) -> list[Message]:
        return list(self._sent[peer])

    def save_checkpoint(self, data: bytes) -> None:
        self.checkpoint = data

    def save_ledger(self, data: bytes) -> None:
        self.ledger = data

    def load_ledger(self) -> bytes | None:
        return self.ledger


class FileJournal:
    """A journal in a directory of its own (one per run), mode 0700, its files 0600.

    Every file is sealed with ``key`` (``riskprop.files.sealed``): the checkpoint as a whole,
    the outbox record by record, and ``identity`` (what the run was started with: descriptor
    fields and a digest of the bank's data) in ``identity.bin``. Opening the journal of a run
    started with other inputs raises ``ConfigError`` saying what changed; damage raises
    ``DamagedFileError`` naming the file.
    """

    def __init__(
        self, directory: Path, width: int, *, key: bytes, identity: Mapping[str, str]
    ) -> None:
        self.directory = directory
        self.width = width
        self.key = key
        # created before the node listens: if it is there, an earlier process listened
        self.restarted = directory.is_dir()
        for level in (directory.parent, directory):  # OUT/.riskprop and its run directory
            level.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(level, 0o700)
        self._check_identity(dict(identity))
        self._sent: dict[str, list[Message]] = defaultdict(list)
        self._records = 0
        self._load_outbox()
        self._log: BinaryIO = _open_private(self.outbox_path)

    @property
    def checkpoint_path(self) -> Path:
        return self.directory / "checkpoint.bin"

    @property
    def outbox_path(self) -> Path:
        return self.directory / "outbox.log"

    @property
    def identity_path(self) -> Path:
        return self.directory / "identity.bin"

    def _check_identity(self, identity: dict[str, str]) -> None:
        path = self.identity_path
        if not path.is_file():
            payload = json.dumps(identity, sort_keys=True).encode()
            atomic_write_bytes(path, seal(IDENTITY_MAGIC, payload, self.key), mode=0o600)
            return
        stored = json.loads(unseal(IDENTITY_MAGIC, path.read_bytes(), self.key, path, REMEDY))
        changes = describe_changes(stored, identity)
        if changes:
            raise ConfigError(
                f"{path}: run started with other inputs ({changes}); use a new run id, or "
                "--fresh to discard that run's state"
            )

    def load_checkpoint(self) -> bytes | None:
        """The checkpoint's content, verified; None when there is none."""
        path = self.checkpoint_path
        if not path.is_file():
            return None
        return unseal(CHECKPOINT_MAGIC, path.read_bytes(), self.key, path, REMEDY)

    def _load_outbox(self) -> None:
        path = self.outbox_path
        if not path.is_file():
            return
        data = path.read_bytes()
        records, complete = unseal_records(data, self.key, path, REMEDY)
        for record in records:
            message = decode(record)
            self._sent[message.recipient].append(message)
        self._records = len(records)
        if complete != len(data):  # a record cut short by a crash: drop it
            with path.open("r+b") as handle:
                handle.truncate(complete)

    def record(self, message: Message) -> None:
        self._sent[message.recipient].append(message)
        data = encode(message, self.width)
        self._log.write(seal_record(self._records, data, self.key))
        self._log.flush()
        self._records += 1

    def sent_to(self, peer: str) -> list[Message]:
        return list(self._sent[peer])

    def save_checkpoint(self, data: bytes) -> None:
        sealed = seal(CHECKPOINT_MAGIC, data, self.key)
        atomic_write_bytes(self.checkpoint_path, sealed, mode=0o600)

    @property
    def ledger_path(self) -> Path:
        return self.directory / "served.bin"

    def save_ledger(self, data: bytes) -> None:
        atomic_write_bytes(self.ledger_path, seal(LEDGER_MAGIC, data, self.key), mode=0o600)

    def load_ledger(self) -> bytes | None:
        path = self.ledger_path
        if not path.is_file():
            return None
        return unseal(LEDGER_MAGIC, path.read_bytes(), self.key, path, REMEDY)

    def close(self) -> None:
        self._log.close()

    def discard(self) -> None:
        """Remove the journal (after a completed run)."""
        self.close()
        remove_journal(self.directory)


def remove_journal(directory: Path) -> None:
    """Remove a run's journal directory (a completed run, or ``--fresh``)."""
    shutil.rmtree(directory, ignore_errors=True)


def _open_private(path: Path) -> BinaryIO:
    """``path`` opened for appending, created with mode 0600 (and made 0600 if it was not)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "ab")
