"""Decrypted values no honest run produces are refused before anything is decoded or written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import phe
import pytest

from riskprop.core.paillier import FreshNoise, embed, rerandomize
from riskprop.core.threshold import combine, deal, partial_decrypt
from riskprop.errors import ProtocolError
from riskprop.files.results import write_scores
from riskprop.protocol.session import check_packed

SLOT_BITS = 10  # values up to 2**9
SLOTS = 3


def packed(values: list[int]) -> int:
    return sum(v << (SLOT_BITS * i) for i, v in enumerate(values))


def test_values_within_the_slot_bounds_pass() -> None:
    bound = 1 << (SLOT_BITS - 1)
    check_packed([packed([0, bound, 7]), packed([bound, 1])], SLOT_BITS, SLOTS, 5)
    check_packed([], SLOT_BITS, SLOTS, 0)


@pytest.mark.parametrize(
    "plaintexts",
    [
        [packed([0, (1 << (SLOT_BITS - 1)) + 1, 0]), packed([1, 1])],  # a slot over the bound
        [packed([1, 2, 3]), packed([1, 1, 5])],  # a value in a slot that holds no account
        [packed([1, 2, 3]) + (1 << (SLOT_BITS * SLOTS)), packed([1, 1])],  # bits above the slots
    ],
)
def test_out_of_range_plaintexts_are_refused(plaintexts: list[int]) -> None:
    with pytest.raises(ProtocolError, match="out of range: a ciphertext was damaged"):
        check_packed(plaintexts, SLOT_BITS, SLOTS, 5)


def test_a_random_partial_decryption_does_not_combine() -> None:
    _, private = phe.generate_paillier_keypair(n_length=512)
    shares = {s.party: s for s in deal(private.p, private.q, ["a", "b", "c"], 1)}
    public = shares["a"].key.public
    ciphertexts = rerandomize(public, embed(public, [42]), FreshNoise(public))
    partials = {name: partial_decrypt(shares[name], ciphertexts) for name in ("a", "b")}
    assert combine(shares["a"].key, partials) == [42]
    forged = {"a": partials["a"], "b": [partials["b"][0] * 3 % public.nsquare]}
    with pytest.raises(ProtocolError, match="do not combine to a plaintext"):
        combine(shares["a"].key, forged)


@pytest.mark.parametrize("bad", [1.5, -0.25, float("nan"), float("inf")])
def test_scores_outside_0_1_are_never_written(tmp_path: Path, bad: float) -> None:
    path = tmp_path / "risk_scores.csv"
    with pytest.raises(ProtocolError, match=r"outside \[0, 1\].*nothing written"):
        write_scores(path, ("a", "b"), np.array([0.5, bad]))
    assert not path.exists()
