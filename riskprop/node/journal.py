"""What a node keeps so that it can restart mid-run: a checkpoint and a log of what it sent.

The checkpoint (``protocol.checkpoint``) restores the session; the outbox log lets the node
send a restarted peer everything it had sent that peer, which the peer needs because its
inbox died with it. ``MemoryJournal`` serves in-process runs; ``FileJournal`` writes
``DIR/checkpoint.bin`` atomically and appends every delivered message to ``DIR/outbox.log``.
"""

from __future__ import annotations

import shutil
import struct
from collections import defaultdict
from pathlib import Path
from typing import BinaryIO, Protocol

from riskprop.files.atomic import atomic_write_bytes
from riskprop.protocol.messages import Message, decode, encode


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


class MemoryJournal:
    """A journal that lives as long as the process (tests, in-process runs)."""

    def __init__(self, *, restarted: bool = False) -> None:
        self.restarted = restarted
        self.checkpoint: bytes | None = None
        self._sent: dict[str, list[Message]] = defaultdict(list)

    def record(self, message: Message) -> None:
        self._sent[message.recipient].append(message)

    def sent_to(self, peer: str) -> list[Message]:
        return list(self._sent[peer])

    def save_checkpoint(self, data: bytes) -> None:
        self.checkpoint = data


class FileJournal:
    """A journal in a directory of its own (one per run)."""

    def __init__(self, directory: Path, width: int) -> None:
        self.directory = directory
        self.width = width
        # created before the node listens: if it is there, an earlier process listened
        self.restarted = directory.is_dir()
        directory.mkdir(parents=True, exist_ok=True)
        self._sent: dict[str, list[Message]] = defaultdict(list)
        self._load_outbox()
        self._log: BinaryIO = (directory / "outbox.log").open("ab")

    @property
    def checkpoint_path(self) -> Path:
        return self.directory / "checkpoint.bin"

    def load_checkpoint(self) -> bytes | None:
        path = self.checkpoint_path
        return path.read_bytes() if path.is_file() else None

    def _load_outbox(self) -> None:
        path = self.directory / "outbox.log"
        if not path.is_file():
            return
        data = path.read_bytes()
        offset = 0
        while offset + 4 <= len(data):
            (size,) = struct.unpack(">I", data[offset : offset + 4])
            if offset + 4 + size > len(data):
                break  # a record cut short by a crash: drop it
            message = decode(data[offset + 4 : offset + 4 + size])
            self._sent[message.recipient].append(message)
            offset += 4 + size
        if offset != len(data):
            with path.open("r+b") as handle:
                handle.truncate(offset)

    def record(self, message: Message) -> None:
        self._sent[message.recipient].append(message)
        data = encode(message, self.width)
        self._log.write(struct.pack(">I", len(data)) + data)
        self._log.flush()

    def sent_to(self, peer: str) -> list[Message]:
        return list(self._sent[peer])

    def save_checkpoint(self, data: bytes) -> None:
        atomic_write_bytes(self.checkpoint_path, data, mode=0o600)

    def close(self) -> None:
        self._log.close()

    def discard(self) -> None:
        """Remove the journal (after a completed run, or for --fresh)."""
        self.close()
        shutil.rmtree(self.directory, ignore_errors=True)
