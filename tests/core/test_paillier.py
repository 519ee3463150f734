"""Ciphertext arithmetic: fixed-base noise (DJN) and the multi-exponentiation of ``linear_step``.

Noise values must be N-th residues (they decrypt to 0), and ``linear_step`` must give exactly
the integers of one ``powmod`` per term, whatever the shape, window or memory budget.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import gmpy2
import numpy as np
import phe
import pytest
from gmpy2 import mpz
from helpers import random_csr
from hypothesis import given, settings
from hypothesis import strategies as st

from riskprop.core import modexp, paillier
from riskprop.core.paillier import (
    NOISE_TABLE_BYTES,
    CombShape,
    FixedBaseNoise,
    FreshNoise,
    PublicKey,
    comb_shape,
    comb_value_bytes,
    encrypt,
    linear_step,
    rerandomize,
)
from riskprop.core.types import IntArray

KEY_BITS = 256
_PUBLIC, _PRIVATE = phe.generate_paillier_keypair(n_length=KEY_BITS)
KEY = PublicKey(_PUBLIC.n)
N, N2 = mpz(KEY.n), mpz(KEY.nsquare)
LAMBDA = mpz((_PRIVATE.p - 1) * (_PRIVATE.q - 1))


def decrypt(values: Sequence[mpz]) -> list[int]:
    """``m = L(c**lambda mod N**2) / lambda mod N`` with ``L(u) = (u - 1) / N`` (``g = N + 1``)."""
    inverse = gmpy2.invert(LAMBDA, N)
    return [int((gmpy2.powmod(c, LAMBDA, N2) - 1) // N * inverse % N) for c in values]


# ------------------------------------------------------------------------ fixed-base noise


def test_fixed_base_noise_values_are_nth_residues() -> None:
    values = FixedBaseNoise(KEY).draw(50)
    # an N-th residue s**N has (s**N)**lambda = 1 mod N**2, so L(.) = 0: it encrypts 0
    assert all(gmpy2.powmod(v, LAMBDA, N2) == 1 for v in values)
    assert decrypt(values) == [0] * 50
    assert all(0 < v < N2 and gmpy2.gcd(v, N) == 1 for v in values)


def test_encrypt_and_rerandomize_with_fixed_base_noise_keep_the_plaintext() -> None:
    noise = FixedBaseNoise(KEY)
    plain = [0, 1, 2, 2**48, KEY.n - 1, *(secrets.randbelow(KEY.n) for _ in range(20))]
    cts = encrypt(KEY, plain, noise)
    assert decrypt(cts) == plain
    once = rerandomize(KEY, cts, noise)
    twice = rerandomize(KEY, once, noise)
    assert decrypt(once) == plain
    assert decrypt(twice) == plain
    for group in zip(cts, once, twice, strict=True):
        assert len(set(map(int, group))) == 3


def test_fixed_base_draws_differ() -> None:
    noise = FixedBaseNoise(KEY)
    values = noise.draw(500) + noise.draw(500)
    assert len(set(map(int, values))) == 1000
    # every instance draws its own secret base
    assert len({int(FixedBaseNoise(KEY).base) for _ in range(5)}) == 5


SHAPES = [(8, 65, 1), (1, 1, 129), (4, 3, 11), (7, 2, 10), (16, 1, 9), (5, 26, 1), (3, 4, 11)]


@pytest.mark.parametrize("constant_time", [False, True])
@pytest.mark.parametrize(("teeth", "blocks", "columns"), SHAPES)
def test_comb_evaluation_is_the_power(
    arithmetic: str, teeth: int, blocks: int, columns: int, constant_time: bool
) -> None:
    """Every digit layout, squaring-free (one column) to a single table, computes h_N**alpha,
    with entries gathered or found by a scan of their sub-table."""
    shape = CombShape(teeth, blocks, columns)
    assert shape.exponent_bits >= 128  # KEY: L = 128 bits
    noise = FixedBaseNoise(KEY, shape=shape, constant_time=constant_time)
    top = 2**noise.exponent_bits - 1
    for alpha in [0, 1, 2, 255, 256, top, top >> 1, *(secrets.randbits(128) for _ in range(10))]:
        assert noise.power(alpha) == gmpy2.powmod(noise.base, alpha, N2)
    with pytest.raises(ValueError, match="exponent"):
        noise.power(top + 1)
    assert noise.table.entries == shape.entries
    assert noise.table.native == (modexp.backend() == "avx512-ifma")


@pytest.mark.parametrize(("teeth", "blocks", "columns"), SHAPES)
def test_comb_multiplication_counts_are_what_the_model_says(
    monkeypatch: pytest.MonkeyPatch, teeth: int, blocks: int, columns: int
) -> None:
    """Count the products mod N**2 while building the comb and drawing from it (on the gmpy2
    path; the kernel follows the same schedule, which the equality tests check)."""
    monkeypatch.setenv(modexp.ENVIRONMENT, "gmp")
    shape = CombShape(teeth, blocks, columns)
    noise = FixedBaseNoise(KEY, shape=shape)
    counted = [0]
    real = noise._n2

    def modulo(value: object) -> object:
        counted[0] += 1
        return value % real

    class Modulus:
        def __rmod__(self, value: object) -> object:
            return modulo(value)

    noise._n2 = Modulus()
    assert not noise.table.native
    assert counted[0] == shape.build_multiplications
    noise.table.modulus = Modulus()
    noise.draw(5)
    assert counted[0] == shape.build_multiplications + 5 * shape.draw_multiplications


@pytest.mark.parametrize("fill", [b"\xff", b"\x00"])
@pytest.mark.parametrize(("teeth", "blocks", "columns"), [(8, 17, 1), (4, 3, 11), (5, 2, 13)])
def test_draw_digits_cover_every_exponent_bit(
    monkeypatch: pytest.MonkeyPatch,
    arithmetic: str,
    fill: bytes,
    teeth: int,
    blocks: int,
    columns: int,
) -> None:
    """All-ones random bytes give ``alpha = 2**E - 1``; zeros give ``alpha = 0``."""
    shape = CombShape(teeth, blocks, columns)
    noise = FixedBaseNoise(KEY, shape=shape)
    monkeypatch.setattr(secrets, "token_bytes", lambda size: fill * size)  # paillier's too
    alpha = 2**shape.exponent_bits - 1 if fill == b"\xff" else 0
    assert noise.draw(3) == [gmpy2.powmod(noise.base, alpha, N2)] * 3


@pytest.mark.parametrize("constant_time", [False, True])
def test_constant_time_noise_scans_the_sub_table_of_each_read(
    monkeypatch: pytest.MonkeyPatch, arithmetic: str, constant_time: bool
) -> None:
    """Draws and powers ask the table for a scan of each position's ``2**teeth`` sub-table (in
    the kernel; the gmpy2 path computes the same products by indexing)."""
    shape = CombShape(5, 6, 5)
    noise = FixedBaseNoise(KEY, shape=shape, constant_time=constant_time)
    table = noise.table
    asked: list[int] = []
    products = table.products

    def spy(positions: IntArray, blocks: int, *, subtable: int = 0) -> list[mpz]:
        asked.append(subtable)
        return products(positions, blocks, subtable=subtable)

    monkeypatch.setattr(table, "products", spy)
    values = noise.draw(9)
    assert decrypt(values) == [0] * 9
    alpha = secrets.randbits(shape.exponent_bits)
    assert noise.power(alpha) == gmpy2.powmod(noise.base, alpha, N2)
    assert asked == [32 if constant_time else 0] * 2


def test_fixed_base_noise_refuses_bad_combs() -> None:
    with pytest.raises(ValueError, match="shorter"):
        FixedBaseNoise(KEY, shape=CombShape(8, 2, 7))  # 112 < 128 bits
    with pytest.raises(ValueError, match="teeth"):
        FixedBaseNoise(KEY, shape=CombShape(17, 1, 8))
    with pytest.raises(ValueError, match="teeth"):
        comb_shape(2048, 0, 4)


@pytest.mark.parametrize("key_bits", [256, 1024, 2048])
@pytest.mark.parametrize("draws", [0, 1, 50, 3_000, 100_000, 2_000_000])
@pytest.mark.parametrize(("native", "constant_time"), [(False, False), (True, False), (True, True)])
def test_comb_shape_minimises_multiplications_within_the_memory_cap(
    key_bits: int, draws: int, native: bool, constant_time: bool
) -> None:
    """Brute force over every (teeth, blocks) against ``shape_for``; for a native table the
    draws' products and converting the table cost ``NATIVE_PRODUCT_COST`` each, and a
    constant-time read adds the scan of a sub-table."""
    scan = modexp.scan_cost(1, modexp.limbs(2 * key_bits), shared=True)
    memory = 64 << 20
    value_bytes = comb_value_bytes(key_bits)
    exponent_bits = (key_bits + 1) // 2
    fitting = {}
    for teeth in range(1, 17):
        for blocks in range(1, -(-exponent_bits // teeth) + 1):
            shape = comb_shape(key_bits, teeth, blocks)
            assert shape.exponent_bits >= exponent_bits
            if shape.entries * value_bytes <= memory:
                products: float = draws * shape.draw_multiplications
                if constant_time:
                    reads = blocks * shape.columns
                    products += draws * reads * scan * 2**teeth
                if native:
                    products = modexp.NATIVE_PRODUCT_COST * (products + shape.entries)
                fitting[shape] = shape.build_multiplications + products
    chosen = FixedBaseNoise.shape_for(
        key_bits, draws, memory, native=native, constant_time=constant_time
    )
    assert chosen in fitting
    assert fitting[chosen] == min(fitting.values())


def test_session_noise_comb_follows_the_expected_draws() -> None:
    few = FixedBaseNoise.shape_for(2048, 3_000)
    many = FixedBaseNoise.shape_for(2048, 1_000_000)
    assert few.entries < many.entries
    assert few.draw_multiplications > many.draw_multiplications
    # the documented figures (class docstring)
    assert few == CombShape(13, 5, 16) and few.draw_multiplications == 94
    assert FixedBaseNoise.shape_for(2048, 3_000, native=True) == CombShape(10, 8, 13)
    # a constant-time read scans its sub-table: smaller ones, more products (docs/performance.md)
    constant = FixedBaseNoise.shape_for(2048, 3_000, native=True, constant_time=True)
    assert constant == CombShape(7, 21, 7) and constant.draw_multiplications == 152
    assert many == CombShape(15, 10, 7) and many.draw_multiplications == 75
    assert many.entries * comb_value_bytes(2048) <= NOISE_TABLE_BYTES
    squaring_free = comb_shape(2048, 12, 86)
    assert squaring_free.columns == 1 and squaring_free.draw_multiplications == 85


def test_comb_table_memory_at_2048_bits(arithmetic: str) -> None:
    """The default comb: 128 squaring-free tables of 256 values, more than 16 MiB of numbers
    and within the per-value estimate ``shape_for`` budgets with, on both paths."""
    n = (1 << 2047) | secrets.randbits(2046) << 1 | 1
    noise = FixedBaseNoise(PublicKey(n))
    assert noise.shape == CombShape(8, 128, 1)
    noise.draw(1)
    assert noise.table.entries == 32768
    assert 16 * 2**20 < noise.table.nbytes <= 32768 * comb_value_bytes(2048)


def test_fresh_noise_is_still_a_noise_source() -> None:
    values = FreshNoise(KEY).draw(5)
    assert decrypt(values) == [0] * 5


# ------------------------------------------------------------------------------ linear_step


def naive_step(
    bases: Sequence[mpz],
    n_rows: int,
    self_coef: int,
    indptr: IntArray,
    indices: IntArray,
    coefs: Sequence[int],
) -> list[mpz]:
    """One ``powmod`` per term: the reference."""
    out = []
    for x in range(n_rows):
        acc = gmpy2.powmod(bases[x], self_coef, N2)
        for j in range(int(indptr[x]), int(indptr[x + 1])):
            acc = acc * gmpy2.powmod(bases[int(indices[j])], coefs[j], N2) % N2
        out.append(acc)
    return out


@pytest.mark.parametrize(
    ("n_rows", "extra", "degree", "bits", "self_coef"),
    [
        (0, 3, 0.0, 48, 5),
        (1, 0, 0.0, 48, 2**47 + 1),
        (40, 0, 0.0, 48, 2**48 - 1),  # no edges
        (300, 100, 3.3, 48, 2**47 + 12345),
        (300, 100, 3.3, 32, 2**31 + 7),
        (300, 100, 3.3, 24, 2**23),
        (200, 50, 6.0, 1, 1),  # exponents 0/1: every window collapses to one digit
        (200, 50, 2.0, 62, 2**62 - 1),
        (200, 20, 3.0, 48, 0),  # no self term
        (5000, 3000, 1.0, 40, 3),  # several chunks, most bases used once
    ],
)
def test_linear_step_equals_powmod_per_term(
    arithmetic: str, n_rows: int, extra: int, degree: float, bits: int, self_coef: int
) -> None:
    rng = np.random.default_rng(n_rows * 1000 + bits)
    bases, indptr, indices, coefs = random_csr(rng, KEY, n_rows, extra, degree, bits)
    got = linear_step(KEY, bases, n_rows, self_coef, indptr, indices, coefs)
    assert got == naive_step(bases, n_rows, self_coef, indptr, indices, coefs)


def test_linear_step_zero_coefficients_empty_rows_and_duplicates(arithmetic: str) -> None:
    bases = [mpz(secrets.randbelow(KEY.nsquare)) for _ in range(8)]
    # row 0: duplicate column 5 and its own column; row 1 empty; row 2 all-zero coefficients;
    # row 3: one term with exponent 1 (the base itself); row 4: a zero among others
    rows: list[list[tuple[int, int]]] = [
        [(5, 2**40 + 3), (5, 77), (0, 9), (6, 2**47)],
        [],
        [(4, 0), (7, 0)],
        [(6, 1)],
        [(1, 0), (2, 2**30), (2, 0)],
    ]
    indptr = np.array([0, *np.cumsum([len(r) for r in rows])], dtype=np.int64)
    indices = np.array([c for r in rows for c, _ in r], dtype=np.int64)
    coefs = [e for r in rows for _, e in r]
    for self_coef in (0, 1, 2**47 + 5):
        got = linear_step(KEY, bases, len(rows), self_coef, indptr, indices, coefs)
        assert got == naive_step(bases, len(rows), self_coef, indptr, indices, coefs)
    got = linear_step(KEY, bases, len(rows), 0, indptr, indices, coefs)
    assert got[1] == got[2] == 1  # Enc(0) with noise 1, as powmod gives
    assert got[3] == bases[6]


def test_linear_step_reduces_unreduced_bases(arithmetic: str) -> None:
    bases = [mpz(secrets.randbelow(KEY.nsquare)) + N2 * k for k in (1, 2, 3)]
    indptr = np.array([0, 1, 2], dtype=np.int64)
    indices = np.array([2, 0], dtype=np.int64)
    got = linear_step(KEY, bases, 2, 1, indptr, indices, [1, 1])
    assert got == naive_step(bases, 2, 1, indptr, indices, [1, 1])
    assert all(0 <= v < N2 for v in got)


@pytest.mark.parametrize("budget", [0, 2_000, 50_000, 1 << 40])
@pytest.mark.parametrize("chunk_rows", [1, 7, 2048])
def test_linear_step_windows_chunks_and_budgets(
    monkeypatch: pytest.MonkeyPatch, arithmetic: str, budget: int, chunk_rows: int
) -> None:
    """gmpy2: budget 0 forces window 1 (no tables); a hub base used by every row gets the
    widest window; tiny chunks build and drop tables across chunk boundaries. Kernel: budgets
    too small for a row send the step to gmpy2; 50,000 bytes narrow the window and cut the
    rows into runs that each build their own tables."""
    monkeypatch.setattr(paillier, "CHUNK_ROWS", chunk_rows)
    rng = np.random.default_rng(budget % 1000 + chunk_rows)
    n_rows = 120
    bases, indptr, indices, coefs = random_csr(rng, KEY, n_rows, 30, 2.5, 48)
    hub = n_rows + 3
    lists = [[*indices[indptr[x] : indptr[x + 1]].tolist(), hub] for x in range(n_rows)]
    indptr = np.array([0, *np.cumsum([len(c) for c in lists])], dtype=np.int64)
    indices = np.array([c for cols in lists for c in cols], dtype=np.int64)
    coefs = [int(v) for v in rng.integers(0, 2**48, len(indices), dtype=np.int64)]
    got = linear_step(KEY, bases, n_rows, 2**47 + 1, indptr, indices, coefs, table_budget=budget)
    assert got == naive_step(bases, n_rows, 2**47 + 1, indptr, indices, coefs)


def _rows_csr(
    counts: Sequence[int], n_bases: int, bits: int, rng: np.random.Generator
) -> tuple[list[mpz], IntArray, IntArray, list[int]]:
    bases = [mpz(secrets.randbelow(KEY.nsquare)) for _ in range(n_bases)]
    indptr = np.array([0, *np.cumsum(counts)], dtype=np.int64)
    indices = rng.integers(0, n_bases, int(indptr[-1])).astype(np.int64)
    coefs = [int(v) for v in rng.integers(0, 2**bits, int(indptr[-1]), dtype=np.int64)]
    return bases, indptr, indices, coefs


@pytest.mark.parametrize("budget", [1 << 30, 60_000, 9_000])
def test_kernel_rows_equal_powmod_per_term_whatever_the_lanes_and_runs(
    monkeypatch: pytest.MonkeyPatch, arithmetic: str, budget: int
) -> None:
    """The lanes' rows (``_lane_rows``, a ``ProductTable`` on either path): row sizes from 0
    to 40 terms in no order (padded eights, several calls), zero exponents; a budget that
    cuts the rows into runs and one that also narrows the window. Every table fits the
    budget."""
    rng = np.random.default_rng(budget % 997)
    counts = [int(c) for c in rng.permutation([0, 0, 1, 2, 3, 3, 5, 8, 13, 21, 40] * 4)]
    bases, indptr, indices, coefs = _rows_csr(counts, 70, 48, rng)
    coefs[::5] = [0] * len(coefs[::5])
    tables: list[int] = []
    build = modexp.ProductTable.of_powers.__func__  # type: ignore[attr-defined]

    def spy(cls: type[modexp.ProductTable], values: list[int], m: int, count: int) -> object:
        tables.append(len(values) * count * 8 * modexp.limbs(m.bit_length()))
        return build(cls, values, m, count)

    monkeypatch.setattr(modexp.ProductTable, "of_powers", classmethod(spy))
    for self_coef in (0, 2**47 + 3):
        rows, cols, exps = paillier._terms(
            len(counts), self_coef, indptr, indices, np.array(coefs, dtype=np.int64)
        )
        got = paillier._lane_rows(KEY, bases, len(counts), rows, cols, exps, budget)
        assert got == naive_step(bases, len(counts), self_coef, indptr, indices, coefs)
    assert tables and max(tables) <= budget
    assert (len(tables) > 2) == (budget < 1 << 30)  # one run per self_coef, or several


def test_kernel_rows_leave_a_row_beyond_the_budget_to_gmpy2() -> None:
    rng = np.random.default_rng(3)
    bases, indptr, indices, coefs = _rows_csr([2, 30], 40, 32, rng)
    rows, cols, exps = paillier._terms(2, 1, indptr, indices, np.array(coefs, dtype=np.int64))
    entry = 8 * modexp.limbs(KEY.nsquare.bit_length())
    assert paillier._lane_rows(KEY, bases, 2, rows, cols, exps, 31 * 2 * entry - 1) is None
    got = paillier._lane_rows(KEY, bases, 2, rows, cols, exps, 31 * 2 * entry)
    assert got == naive_step(bases, 2, 1, indptr, indices, coefs)
    empty = np.zeros(0, dtype=np.int64)
    assert paillier._lane_rows(KEY, bases, 3, empty, empty, empty, 0) == [1, 1, 1]


def test_the_kernel_window_follows_the_uses_of_a_base() -> None:
    assert paillier.lane_window(1, 1000, 10, 100) == 1  # 0/1 exponents: no table
    once = paillier.lane_window(32, 5000, 5000, 1000)  # each base used once
    hub = paillier.lane_window(32, 5000, 10, 1000)  # ten bases, used 500 times each
    assert 2 <= once <= 4 < hub <= paillier.LANE_WINDOW_MAX


@pytest.mark.skipif(not modexp.native(), reason="the kernel does not run on this machine")
def test_linear_step_runs_in_the_lanes_where_the_kernel_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(11)
    bases, indptr, indices, coefs = random_csr(rng, KEY, 50, 20, 3.0, 32)
    want = naive_step(bases, 50, 7, indptr, indices, coefs)

    def refuse(*_args: object) -> list[mpz]:
        raise AssertionError("the gmpy2 rows ran")

    monkeypatch.setattr(paillier, "_gmp_rows", refuse)
    assert linear_step(KEY, bases, 50, 7, indptr, indices, coefs) == want
    with pytest.raises(AssertionError, match="gmpy2 rows"):  # a budget below one row's table
        linear_step(KEY, bases, 50, 7, indptr, indices, coefs, table_budget=100)


def test_table_plan_respects_the_budget() -> None:
    rng = np.random.default_rng(7)
    n_bases, n_terms, chunk = 20_000, 100_000, 512
    rows = np.sort(rng.integers(0, 18_000, n_terms))
    cols = rng.integers(0, n_bases, n_terms).astype(np.int64)
    cols[::10] = 0  # a hub
    n_chunks = -(-18_000 // chunk)
    entry = KEY.ciphertext_bytes + paillier._MPZ_OVERHEAD
    peaks = []
    for budget in (0, 10**5, 10**6, 10**7, 10**9):
        windows, first, last = paillier._plan_tables(
            n_bases, cols, rows // chunk, n_chunks, 48, budget, KEY
        )
        used = last >= 0
        assert np.all(windows >= 1)
        assert np.all(windows <= paillier.MAX_WINDOW)
        extra = np.where(used, 2 ** (windows - 1) - 1, 0)
        alive = [int(extra[used & (first <= c) & (last >= c)].sum()) for c in range(0, n_chunks, 5)]
        peaks.append(max(alive) * entry)
        assert max(alive) * entry <= budget or not extra.any()
    assert peaks[0] == 0
    assert peaks == sorted(peaks)
    assert windows[0] == paillier.MAX_WINDOW  # the hub, with an unbounded budget


def test_linear_step_refuses_bad_input() -> None:
    bases = [mpz(3), mpz(5)]
    indptr = np.array([0, 1], dtype=np.int64)
    indices = np.array([1], dtype=np.int64)
    for coefs, self_coef in (([-1], 1), ([2**63], 1), ([1], -1), ([1], 2**63)):
        with pytest.raises(ValueError, match="exponents"):
            linear_step(KEY, bases, 1, self_coef, indptr, indices, coefs)
    with pytest.raises(ValueError, match="CSR"):
        linear_step(KEY, bases, 1, 1, indptr, indices, [1, 2])


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.lists(st.tuples(st.integers(0, 9), st.integers(0, 2**48 - 1)), max_size=6),
        max_size=10,
    ),
    st.integers(0, 2**48 - 1),
    st.sampled_from([0, 3_000, 1 << 30]),
)
def test_linear_step_property(
    rows: list[list[tuple[int, int]]], self_coef: int, budget: int
) -> None:
    bases = [mpz(secrets.randbelow(KEY.nsquare)) for _ in range(max(10, len(rows)))]
    indptr = np.array([0, *np.cumsum([len(r) for r in rows])], dtype=np.int64)
    indices = np.array([c for r in rows for c, _ in r], dtype=np.int64)
    coefs = [e for r in rows for _, e in r]
    got = linear_step(KEY, bases, len(rows), self_coef, indptr, indices, coefs, table_budget=budget)
    assert got == naive_step(bases, len(rows), self_coef, indptr, indices, coefs)
