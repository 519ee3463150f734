"""Sealed state files: any change is noticed and named, nothing damaged is ever read back."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from riskprop.files.sealed import (
    DamagedFileError,
    seal,
    seal_record,
    state_key,
    unseal,
    unseal_records,
)

KEY = state_key(123456789)
WHERE = Path("/state/checkpoint.bin")
REMEDY = "start with --fresh"


@given(st.binary(max_size=300), st.data())
def test_every_bit_flip_and_truncation_is_refused(payload: bytes, data: st.DataObject) -> None:
    sealed = seal(b"TEST", payload, KEY)
    assert unseal(b"TEST", sealed, KEY, WHERE, REMEDY) == payload
    bit = data.draw(st.integers(0, len(sealed) * 8 - 1))
    flipped = bytearray(sealed)
    flipped[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(DamagedFileError, match=r"^/state/checkpoint.bin: .*; start with --fresh$"):
        unseal(b"TEST", bytes(flipped), KEY, WHERE, REMEDY)
    cut = data.draw(st.integers(0, len(sealed) - 1))
    with pytest.raises(DamagedFileError):
        unseal(b"TEST", sealed[:cut], KEY, WHERE, REMEDY)
    with pytest.raises(DamagedFileError):
        unseal(b"TEST", sealed + b"\0", KEY, WHERE, REMEDY)


def test_another_banks_or_another_kinds_file_is_refused() -> None:
    sealed = seal(b"TEST", b"state", KEY)
    with pytest.raises(DamagedFileError, match="another bank's"):
        unseal(b"TEST", sealed, state_key(987654321), WHERE, REMEDY)
    with pytest.raises(DamagedFileError, match="not a riskprop state file of this kind"):
        unseal(b"OTHR", sealed, KEY, WHERE, REMEDY)


def test_keys_differ_by_secret_and_purpose() -> None:
    assert len(KEY) == 32
    assert state_key(123456789) == KEY != state_key(123456788)
    assert state_key(123456789, b"other") != KEY
    assert state_key(-5) != state_key(5)


def test_records_cut_short_are_dropped_and_changed_ones_refused() -> None:
    payloads = [b"one", b"", b"three" * 40]
    log = b"".join(seal_record(i, p, KEY) for i, p in enumerate(payloads))
    assert unseal_records(log, KEY, WHERE, REMEDY) == (payloads, len(log))
    records, complete = unseal_records(log[:-5], KEY, WHERE, REMEDY)  # a crash mid-append
    assert records == payloads[:2] and complete < len(log) - 5
    first = seal_record(0, payloads[0], KEY)
    changed = bytearray(log)
    changed[len(first) + 5] ^= 0x10  # inside the second record's MAC
    with pytest.raises(DamagedFileError, match="record 2 fails its checksum"):
        unseal_records(bytes(changed), KEY, WHERE, REMEDY)
    swapped = seal_record(0, payloads[1], KEY) + seal_record(1, payloads[0], KEY)
    reordered = seal_record(1, payloads[0], KEY) + seal_record(0, payloads[1], KEY)
    assert unseal_records(swapped, KEY, WHERE, REMEDY)[0] == [payloads[1], payloads[0]]
    with pytest.raises(DamagedFileError, match="record 1"):
        unseal_records(reordered, KEY, WHERE, REMEDY)
    without_first = log[len(first) :]
    with pytest.raises(DamagedFileError, match="record 1"):
        unseal_records(without_first, KEY, WHERE, REMEDY)
