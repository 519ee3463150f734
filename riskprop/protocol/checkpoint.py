"""Checkpoints: a session's position and ciphertexts, and the messages it was about to send.

A checkpoint is taken after each completed step (and when decryption starts) *before* the
messages of that step are sent, and those messages are part of it: a node restored from it
sends them again with the same sequence numbers, so a peer that already had them drops the
copies, and one that did not gets them. It holds ciphertexts and public data only, never a
plaintext score. File layout::

    b"RPK1" | u32 header length | header (UTF-8 JSON) | state and packed ciphertexts
    (fixed width each) | for each pending message: u32 length | encoded message
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gmpy2 import mpz

from riskprop.core.paillier import Rerandomized
from riskprop.errors import ConfigError, ProtocolError
from riskprop.protocol.messages import Message, RunDescriptor, decode, encode

MAGIC = b"RPK1"


@dataclass(frozen=True)
class SessionSnapshot:
    """What ``RunSession.restore`` needs, besides the bank's data and key share."""

    descriptor: RunDescriptor
    party: str
    phase: str
    step: tuple[int, int]
    seq: dict[str, int]
    hellos: dict[str, tuple[int, tuple[tuple[str, ...], ...]]]
    served: dict[str, str]
    state: tuple[mpz, ...]
    packed: Rerandomized
    asked: tuple[str, ...]


def request_digest(values: Sequence[mpz]) -> str:
    """Names a decryption request: equal requests (a replay) have equal digests."""
    digest = hashlib.sha256()
    for value in values:
        digest.update(int(value).to_bytes((int(value).bit_length() + 7) // 8 + 1, "big"))
        digest.update(b"|")
    return digest.hexdigest()


def encode_ledger(ledger: Mapping[str, object]) -> bytes:
    """A session's ledger (``RunSession.ledger()``) as canonical JSON."""
    return json.dumps(ledger, sort_keys=True).encode()


def decode_ledger(data: bytes) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """Inverse of ``encode_ledger``: (requester -> digest served, requester -> (helper, digest)
    heard). Any other shape raises ``ValueError``."""
    malformed = ValueError("malformed record of served requests")
    try:
        ledger = json.loads(data)
    except ValueError:
        raise malformed from None
    if not isinstance(ledger, dict):
        raise malformed
    served_in, elsewhere_in = ledger.get("served", {}), ledger.get("elsewhere", {})
    if not isinstance(served_in, dict) or not isinstance(elsewhere_in, dict):
        raise malformed
    served: dict[str, str] = {}
    for requester, digest in served_in.items():
        if not isinstance(digest, str):
            raise malformed
        served[requester] = digest
    elsewhere: dict[str, tuple[str, str]] = {}
    for requester, pair in elsewhere_in.items():
        if not (
            isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, str) for v in pair)
        ):
            raise malformed
        elsewhere[requester] = (pair[0], pair[1])
    return served, elsewhere


def encode_checkpoint(snapshot: SessionSnapshot, pending: Sequence[Message], width: int) -> bytes:
    header = {
        "descriptor": snapshot.descriptor.to_json(),
        "party": snapshot.party,
        "phase": snapshot.phase,
        "step": list(snapshot.step),
        "seq": snapshot.seq,
        "hellos": {
            q: [n, [list(r) for r in rosters]] for q, (n, rosters) in snapshot.hellos.items()
        },
        "served": snapshot.served,
        "asked": list(snapshot.asked),
        "n_state": len(snapshot.state),
        "n_packed": len(snapshot.packed),
        "width": width,
    }
    raw = json.dumps(header, separators=(",", ":")).encode()
    parts = [MAGIC, struct.pack(">I", len(raw)), raw]
    parts.extend(int(v).to_bytes(width, "big") for v in (*snapshot.state, *snapshot.packed))
    for message in pending:
        data = encode(message, width)
        parts.append(struct.pack(">I", len(data)))
        parts.append(data)
    return b"".join(parts)


def decode_checkpoint(data: bytes, where: str) -> tuple[SessionSnapshot, list[Message]]:
    """Inverse of ``encode_checkpoint``; ``where`` names the file in errors."""
    try:
        if data[:4] != MAGIC:
            raise ValueError("not a riskprop checkpoint")
        (length,) = struct.unpack(">I", data[4:8])
        header: dict[str, Any] = json.loads(data[8 : 8 + length])
        width = int(header["width"])
        offset = 8 + length

        def values(count: int) -> tuple[mpz, ...]:
            nonlocal offset
            out = tuple(
                mpz(int.from_bytes(data[offset + i * width : offset + (i + 1) * width], "big"))
                for i in range(count)
            )
            offset += count * width
            return out

        state = values(int(header["n_state"]))
        packed = values(int(header["n_packed"]))
        pending = []
        while offset < len(data):
            (size,) = struct.unpack(">I", data[offset : offset + 4])
            pending.append(decode(data[offset + 4 : offset + 4 + size]))
            offset += 4 + size
        snapshot = SessionSnapshot(
            descriptor=RunDescriptor.from_json(header["descriptor"]),
            party=str(header["party"]),
            phase=str(header["phase"]),
            step=(int(header["step"][0]), int(header["step"][1])),
            seq={str(k): int(v) for k, v in header["seq"].items()},
            hellos={
                str(q): (int(n), tuple(tuple(str(i) for i in r) for r in rosters))
                for q, (n, rosters) in header["hellos"].items()
            },
            served={str(k): str(v) for k, v in header["served"].items()},
            state=state,
            packed=Rerandomized(packed),  # saved after re-randomisation
            asked=tuple(str(a) for a in header["asked"]),
        )
    except (ValueError, KeyError, TypeError, IndexError, struct.error, ProtocolError) as exc:
        raise ConfigError(f"{where}: unreadable checkpoint ({exc}); start with --fresh") from None
    return snapshot, pending
