"""Fixed-point encoding: the packing choice of score bits, the overflow budget and the exact
integer coefficients."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    dst = np.sort(rng.integers(0, accounts, edges))  # CSR order: edges row after row
    src = rng.integers(0, accounts, edges)
    amount = rng.uniform(1.0, 100.0, edges)
    incoming = np.bincount(dst, weights=amount, minlength=accounts)
    weight = amount / incoming[dst]
    indptr = np.searchsorted(dst, np.arange(accounts + 1)).astype(np.int64)
    scores = rng.uniform(0.0, 1.0, accounts)
    scores[0] = 1.0  # the largest initial value
    c_self, coeff = fixed.coefficients(delta, weight, indptr)
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


# ------------------------------------------------------------------------- coefficients


def reference_coefficients(f: int, delta: float, row: list[float]) -> tuple[int, list[int]]:
    """The module doc's definition in exact rational arithmetic."""
    d = Fraction(delta)
    total = math.floor(d * 2**f)
    row_total = sum(Fraction(w) for w in row)
    coefs = [math.floor(total * Fraction(w) / row_total) if row_total else 0 for w in row]
    return math.floor((1 - d) * 2**f), coefs


def check_rows(f: int, delta: float, rows: list[list[float]]) -> None:
    """Row by row: the coefficients are the exact ones, sum to at most ``2**f``, are no larger
    than their real values, and lose less than ``in-degree + 1`` units in all."""
    weights = np.array([w for row in rows for w in row], dtype=np.float64)
    indptr = np.cumsum([0] + [len(row) for row in rows]).astype(np.int64)
    c_self, coefs = FixedPoint(f).coefficients(delta, weights, indptr)
    d, scale = Fraction(delta), 2**f
    assert c_self <= (1 - d) * scale < c_self + 1
    for x, row in enumerate(rows):
        got = coefs[indptr[x] : indptr[x + 1]]
        assert (c_self, got) == reference_coefficients(f, delta, row)
        assert c_self + sum(got) <= scale
        assert all(c >= 0 for c in got)
        row_total = sum(Fraction(w) for w in row)
        if row_total:
            real = [d * scale * Fraction(w) / row_total for w in row]
            assert all(c <= r for c, r in zip(got, real, strict=True))
            loss = (1 - d) * scale - c_self + sum(real) - sum(got)
            assert 0 <= loss < len(row) + 1


def adversarial_rows(rng: np.random.Generator) -> list[list[float]]:
    """Rows whose float64 weights sum below or above 1, far apart in size, tiny, zero."""
    amounts = [rng.uniform(0.01, 1000.0, n).round(2) for n in (2, 3, 7, 50, 400)]
    amounts += [rng.lognormal(0.0, 20.0, 30), rng.integers(1, 4, 200).astype(np.float64)]
    rows = [list(a / np.bincount(np.zeros(len(a), dtype=np.int64), weights=a)[0]) for a in amounts]
    tenths = [0.1] * 10  # float 0.1 is above 1/10: sums to 1 + 2**-54
    rounded_up = [float(np.nextafter(1 / 1000, 1.0))] * 1000
    assert sum(map(Fraction, tenths)) > 1 and sum(map(Fraction, rounded_up)) > 1
    rows += [
        [1 / 3] * 3,  # sums to 1 - 2**-54
        tenths,
        [1 / 49] * 49,
        rounded_up,
        [0.001 * (1 + 1e-12)] * 1000,  # a row total far off: sums to 1 + 1e-12
        [0.6, 0.6],  # not normalised at all
        [1.0],
        [1.0, 5e-324, 1e-300],  # a subnormal and a tiny weight beside a large one
        [1e300, 1e-300],
        [0.0, 0.0],
        [0.0, 0.25],
    ]
    return rows


@pytest.mark.parametrize("f", [MIN_PRECISION_BITS, 32, MAX_PRECISION_BITS])
@pytest.mark.parametrize("delta", [0.1, 0.5, 1 - 2**-52, 2**-60, 1 / 3, 0.5 / 3**0.5])
def test_coefficients_are_exact_and_every_row_sums_to_at_most_the_scale(
    f: int, delta: float
) -> None:
    rng = np.random.default_rng(f)
    check_rows(f, delta, adversarial_rows(rng))
    random_rows = [list(rng.dirichlet(np.ones(n))) for n in rng.integers(1, 40, 50)]
    check_rows(f, delta, random_rows)


@settings(max_examples=200, deadline=None)
@given(
    f=st.integers(MIN_PRECISION_BITS, MAX_PRECISION_BITS),
    delta=st.floats(0.0, 1.0, exclude_min=True, exclude_max=True),
    rows=st.lists(
        st.lists(st.floats(0.0, 1e30, allow_subnormal=True), min_size=1, max_size=12),
        min_size=1,
        max_size=6,
    ),
)
def test_coefficients_bound_holds_for_any_weights(
    f: int, delta: float, rows: list[list[float]]
) -> None:
    check_rows(f, delta, rows)


def test_coefficients_depend_only_on_ratios_within_a_row() -> None:
    """Amounts or the weights ``amount / row total`` give the same coefficients up to the
    weights' rounding; a row's amounts scaled by a power of two give exactly the same."""
    rng = np.random.default_rng(3)
    amount = rng.uniform(0.01, 1000.0, 30).round(2)
    indptr = np.array([0, 10, 10, 30], dtype=np.int64)
    fixed = FixedPoint(40)
    _, by_amount = fixed.coefficients(0.45, amount, indptr)
    scaled = amount * np.repeat([2.0**-70, 1.0, 2.0**60], np.diff(indptr))
    assert fixed.coefficients(0.45, scaled, indptr)[1] == by_amount
    totals = np.add.reduceat(amount, [0, 10])
    weights = amount / np.repeat([totals[0], 1.0, totals[1]], np.diff(indptr))
    _, by_weight = fixed.coefficients(0.45, weights, indptr)
    assert max(abs(a - b) for a, b in zip(by_amount, by_weight, strict=True)) <= 1


def test_coefficients_refuse_what_they_cannot_bound() -> None:
    fixed = FixedPoint(32)
    assert fixed.coefficients(0.5, np.zeros(0)) == (1 << 31, [])
    assert fixed.coefficients(0.5, np.array([1.0, 3.0])) == (1 << 31, [1 << 29, 3 << 29])
    with pytest.raises(ValueError, match="non-negative"):
        fixed.coefficients(0.5, np.array([0.5, -0.5]))
    with pytest.raises(ValueError, match="non-negative"):
        fixed.coefficients(0.5, np.array([np.nan]))
    with pytest.raises(ValueError, match="rows"):
        fixed.coefficients(0.5, np.ones(3), np.array([0, 2], dtype=np.int64))
    with pytest.raises(ValueError, match="delta"):
        fixed.coefficients(1.5, np.ones(3))
