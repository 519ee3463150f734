"""State files a node reads back, sealed with a MAC keyed by a secret only its bank holds.

A sealed file is::

    MAGIC (4 bytes) | u64 payload length | payload | HMAC-SHA256(key, MAGIC | length | payload)

``key`` is derived from the bank's key share (:func:`state_key`), so a bit flip, a truncation,
an extension, a file of another kind (another magic) or of another bank fails verification,
and so does a forgery by anyone who cannot read the share. Records appended to a log
(:func:`seal_record`) carry their position in the MAC, so records cannot be dropped from the
middle, reordered or repeated unnoticed. A record's length has a MAC of its own, so a damaged
length is not mistaken for the end of the log: only an incomplete last record (a crash while
appending) is recognisable as such and dropped by the reader.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from pathlib import Path

from riskprop.errors import InputError

MAC_BYTES = 32
#: A record's length carries a MAC of its own, shortened: it only tells damage from a crash.
HEADER_MAC_BYTES = 8
_LENGTH = struct.Struct(">Q")
_RECORD = struct.Struct(">I")


class DamagedFileError(InputError):
    """A state file failed verification: the message names it and what to do."""

    PEER_REASON = "stopped: its saved state is damaged (see its log)"

    def __init__(self, path: Path, problem: str, remedy: str) -> None:
        super().__init__(f"{path}: {problem}; {remedy}")
        self.path = path


def state_key(secret: int, purpose: bytes = b"state files") -> bytes:
    """A 32-byte MAC key for ``purpose`` from a bank's secret key share."""
    material = secret.to_bytes((secret.bit_length() + 8) // 8, "big", signed=True)
    return hmac.new(material, b"riskprop/" + purpose, hashlib.sha256).digest()


def _mac(key: bytes, *parts: bytes) -> bytes:
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for part in parts:
        mac.update(part)
    return mac.digest()


def seal(magic: bytes, payload: bytes, key: bytes) -> bytes:
    """``payload`` framed and MACed (see the module doc)."""
    if len(magic) != 4:
        raise ValueError("a magic is 4 bytes")
    length = _LENGTH.pack(len(payload))
    return magic + length + payload + _mac(key, magic, length, payload)


def unseal(magic: bytes, data: bytes, key: bytes, path: Path, remedy: str) -> bytes:
    """The payload of a sealed file; ``DamagedFileError`` (naming ``path`` and ``remedy``)
    unless it is complete, of this kind and unchanged."""
    head = 4 + _LENGTH.size
    if len(data) < head + MAC_BYTES or data[:4] != magic:
        raise DamagedFileError(path, "damaged or not a riskprop state file of this kind", remedy)
    (length,) = _LENGTH.unpack(data[4:head])
    if len(data) != head + length + MAC_BYTES:
        raise DamagedFileError(
            path, f"damaged: {len(data)} bytes, the header says {head + length + MAC_BYTES}", remedy
        )
    payload = data[head : head + length]
    expected = _mac(key, magic, data[4:head], payload)
    if not hmac.compare_digest(expected, data[head + length :]):
        raise DamagedFileError(
            path,
            "damaged: its checksum does not match (changed on disk, or another bank's)",
            remedy,
        )
    return payload


def _record_header(index: int, size: int, key: bytes) -> bytes:
    length = _RECORD.pack(size)
    return length + _mac(key, b"length", _LENGTH.pack(index), length)[:HEADER_MAC_BYTES]


def seal_record(index: int, payload: bytes, key: bytes) -> bytes:
    """Record number ``index`` of a log: ``u32 length | MAC(index, length)[:8] | payload |
    MAC(index, header, payload)``."""
    header = _record_header(index, len(payload), key)
    return header + payload + _mac(key, _LENGTH.pack(index), header, payload)


def unseal_records(data: bytes, key: bytes, path: Path, remedy: str) -> tuple[list[bytes], int]:
    """The payloads of a log of sealed records and the byte length of its complete part (an
    incomplete last record, left by a crash while appending, is not counted); a complete
    record that fails verification is a ``DamagedFileError``."""
    records: list[bytes] = []
    offset = 0
    head = _RECORD.size + HEADER_MAC_BYTES
    while offset + head <= len(data):
        header = data[offset : offset + head]
        (size,) = _RECORD.unpack(header[: _RECORD.size])
        if not hmac.compare_digest(header, _record_header(len(records), size, key)):
            raise DamagedFileError(
                path, f"damaged: record {len(records) + 1} fails its checksum", remedy
            )
        end = offset + head + size + MAC_BYTES
        if end > len(data):
            break
        payload = data[offset + head : end - MAC_BYTES]
        expected = _mac(key, _LENGTH.pack(len(records)), header, payload)
        if not hmac.compare_digest(expected, data[end - MAC_BYTES : end]):
            raise DamagedFileError(
                path, f"damaged: record {len(records) + 1} fails its checksum", remedy
            )
        records.append(payload)
        offset = end
    return records, offset
