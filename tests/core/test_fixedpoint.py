"""Fixed-point encoding: the packing choice of score bits and the overflow budget."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from riskprop.core.fixedpoint import (
    DEFAULT_PRECISION_BITS,
    MAX_PRECISION_BITS,
    MIN_PRECISION_BITS,
    SCORE_BITS_SLACK,
    FixedPoint,
)
from riskprop.errors import ConfigError, ParameterError


@pytest.mark.parametrize(("bits", "slots"), [(2048, 16), (1024, 8)])
def test_default_precision_packs_one_more_slot_at_three_iterations(bits: int, slots: int) -> None:
    fixed = FixedPoint.for_packing(32, 3, bits)
    assert fixed.initial_bits == 30
    assert fixed.slot_bits(3) == 127
    assert fixed.slots_per_plaintext(3, bits) == slots
    assert FixedPoint(32).slots_per_plaintext(3, bits) == slots - 1


@pytest.mark.parametrize(
    ("f", "total", "bits"),
    list(itertools.product([8, 16, 24, 32, 48], [1, 2, 3, 5, 10, 20], [512, 1024, 2048, 3072])),
)
def test_packing_choice_is_the_best_in_range(f: int, total: int, bits: int) -> None:
    fewest = max(8, f - SCORE_BITS_SLACK)
    if FixedPoint(f, fewest).slots_per_plaintext(total, bits) == 0:
        chosen = FixedPoint.for_packing(f, total, bits)
        with pytest.raises(ConfigError, match=f"at most {chosen.max_iterations(bits)} iterations"):
            chosen.check_fits(total, 1, bits)
        return
    chosen = FixedPoint.for_packing(f, total, bits)
    best = max(FixedPoint(f, s).slots_per_plaintext(total, bits) for s in range(fewest, f + 1))
    slots = chosen.slots_per_plaintext(total, bits)
    assert slots == best
    assert fewest <= chosen.initial_bits <= f
    # the largest score precision among the encodings with that many slots
    assert all(
        FixedPoint(f, s).slots_per_plaintext(total, bits) < best
        for s in range(chosen.initial_bits + 1, f + 1)
    )
    # the packed plaintext stays below 2**(bits - 1) < N
    assert slots * chosen.slot_bits(total) <= bits - 1
    chosen.check_fits(total, 1, bits)


def test_score_bits_outside_range_are_refused() -> None:
    with pytest.raises(ParameterError, match=r"^score_bits: must lie in 8\.\.32 \(got 33\)$"):
        FixedPoint(32, 33)
    with pytest.raises(
        ParameterError, match=r"^score_bits: must lie in 8\.\.32 \(got 7\)$"
    ) as info:
        FixedPoint(32, 7)
    assert isinstance(info.value, ConfigError)
    assert (info.value.name, info.value.problem) == ("score_bits", "must lie in 8..32 (got 7)")


@pytest.mark.parametrize("bits", [MIN_PRECISION_BITS - 1, MAX_PRECISION_BITS + 1, 0, -32])
def test_precision_bits_outside_range_are_refused(bits: int) -> None:
    with pytest.raises(ParameterError) as info:
        FixedPoint(bits)
    assert info.value.name == "precision_bits"
    assert str(info.value) == f"precision_bits: must lie in 8..52 (got {bits})"
    assert (MIN_PRECISION_BITS, DEFAULT_PRECISION_BITS, MAX_PRECISION_BITS) == (8, 32, 52)
    for fine in (MIN_PRECISION_BITS, MAX_PRECISION_BITS):
        assert FixedPoint(fine).precision_bits == fine


def test_integer_propagation_stays_within_the_slot_and_the_error_bound() -> None:
    """Exact integer iteration on a random graph against float64, with ``f_s < f``."""
    rng = np.random.default_rng(7)
    accounts, edges, total, delta = 60, 400, 4, 0.4
    fixed = FixedPoint(32, 28)
    src = rng.integers(0, accounts, edges)
    dst = rng.integers(0, accounts, edges)
    amount = rng.uniform(1.0, 100.0, edges)
    incoming = np.bincount(dst, weights=amount, minlength=accounts)
    weight = amount / incoming[dst]
    scores = rng.uniform(0.0, 1.0, accounts)
    scores[0] = 1.0  # the largest initial value
    c_self, coeff = fixed.coefficients(delta, weight)
    state = fixed.encode_scores(scores)
    exact = scores.copy()
    for _ in range(total):
        shift = fixed.precision_bits
        nxt = [c_self * v if incoming[x] > 0 else v << shift for x, v in enumerate(state)]
        for s, d, c in zip(src, dst, coeff, strict=True):
            nxt[d] += c * state[s]
        state = nxt
        spread = np.bincount(dst, weights=weight * exact[src], minlength=accounts)
        exact = np.where(incoming > 0, (1 - delta) * exact + delta * spread, exact)
    assert max(state) < 1 << fixed.slot_bits(total)
    degree = int(np.bincount(dst, minlength=accounts).max())
    bound = 2.0 ** -(fixed.initial_bits + 1) + total * (degree + 1) * 2.0**-fixed.precision_bits
    error = np.max(np.abs(fixed.decode(state, total) - exact))
    assert error <= bound
    assert np.all(fixed.decode(state, total) <= exact + 2.0 ** -(fixed.initial_bits + 1))
