"""Batched modular exponentiation: the native IFMA kernel, the portable path (the constant-time
mpn module for secret exponents) and gmpy2 alone agree with pow()."""

from __future__ import annotations

import ctypes.util
import functools
import platform
import random
import secrets
from pathlib import Path

import gmpy2
import numpy as np
import pytest
from gmpy2 import mpz
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riskprop.core import modexp


def _cpu_has_ifma() -> bool:
    cpuinfo = Path("/proc/cpuinfo")
    if platform.machine() not in ("x86_64", "AMD64") or not cpuinfo.exists():
        return False
    flags = cpuinfo.read_text()
    return " avx512ifma" in flags and " avx512f " in flags


KERNEL = modexp.backend() == "avx512-ifma"
needs_kernel = pytest.mark.skipif(
    not KERNEL,
    reason="native kernel not in use (no AVX-512 IFMA, not built, or RISKPROP_ARITHMETIC=gmp)",
)


def test_the_kernel_is_built_and_used_exactly_where_the_cpu_has_ifma(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a failed build on an IFMA machine would silently cost 4x; this makes it a failure
    monkeypatch.delenv(modexp.ENVIRONMENT, raising=False)  # also when the suite runs with gmp
    assert modexp.backend() == ("avx512-ifma" if _cpu_has_ifma() else "gmp")
    steps = "AVX-512 IFMA kernel" if _cpu_has_ifma() else "gmpy2 "
    assert f"linear_step: {steps}" in modexp.describe()


def test_the_environment_forces_the_portable_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(modexp.ENVIRONMENT, "GMP")
    assert modexp.backend() == "gmp"


@st.composite
def problems(draw: st.DrawFn) -> tuple[list[int], int, int, bool]:
    bits = draw(st.integers(2, 700))
    modulus = draw(st.integers(1 << (bits - 1), (1 << bits) - 1)) | 1
    edge = st.sampled_from([0, 1, 2, modulus - 1, modulus, modulus + 1, -1, 3 * modulus + 5])
    bases = draw(st.lists(st.one_of(st.integers(0, modulus - 1), edge), max_size=19))
    exponent = draw(st.one_of(st.integers(0, 2), st.integers(0, 1 << 900), st.just(1 << 128)))
    return bases, exponent, modulus, draw(st.booleans())


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(problems())
def test_powmod_many_equals_pow(arithmetic: str, problem: tuple[list[int], int, int, bool]) -> None:
    bases, exponent, modulus, secret = problem
    got = modexp.powmod_many(bases, exponent, modulus, secret=secret)
    assert [int(x) for x in got] == [pow(b, exponent, modulus) for b in bases]


@needs_kernel
def test_the_kernel_squares_at_every_limb_count() -> None:
    """The kernel's squaring (column by column, its own index bounds at each end) against pow
    at every count of 52-bit limbs up to 4,700-bit moduli, each at the shortest and the longest
    modulus of that count (an almost empty and a full top limb), on the largest values (M - 1
    and M - 2) and random ones, with exponents that are all squarings, and dense ones."""
    sizes: dict[int, list[int]] = {}
    for bits in range(2, 4700):
        sizes.setdefault(modexp.limbs(bits), []).append(bits)
    assert sorted(sizes) == list(range(1, len(sizes) + 1))
    for bits in sorted({b for run in sizes.values() for b in (run[0], run[-1])}):
        modulus = secrets.randbits(bits) | 1 | (1 << (bits - 1)) if bits > 2 else 3
        bases = [modulus - 1, modulus - 2, *(secrets.randbelow(modulus) for _ in range(6))]
        for exponent in (1 << 70, secrets.randbits(130)):
            for secret in (False, True):
                got = modexp.powmod_many(bases, exponent, modulus, secret=secret)
                assert [int(x) for x in got] == [pow(b, exponent, modulus) for b in bases], bits


@pytest.mark.parametrize("bits", [1024, 2048, 4096, 4100])
def test_key_sized_moduli_and_share_sized_exponents(arithmetic: str, bits: int) -> None:
    modulus = secrets.randbits(bits) | 1 | (1 << (bits - 1))
    exponent = secrets.randbits(bits + 211)
    bases = [secrets.randbelow(modulus) for _ in range(11)]
    got = modexp.powmod_many(bases, exponent, modulus)
    assert got == [gmpy2.powmod(b, exponent, modulus) for b in bases]


def test_a_negative_exponent_inverts(arithmetic: str) -> None:
    modulus = 1009 * 1013
    bases = [2, 5, modulus - 3]
    assert [int(x) for x in modexp.powmod_many(bases, -77, modulus)] == [
        pow(b, -77, modulus) for b in bases
    ]
    with pytest.raises(ValueError, match="not invertible"):
        modexp.powmod_many([1009], -1, modulus)


@pytest.mark.parametrize("modulus", [0, 1, 2, 1 << 64, -7])
def test_the_modulus_must_be_odd_and_above_one(modulus: int) -> None:
    with pytest.raises(ValueError, match="odd and greater than 1"):
        modexp.powmod_many([3], 5, modulus)


@needs_kernel
@pytest.mark.parametrize("secret", [True, False])
def test_every_window_width_gives_the_same_powers(secret: bool) -> None:
    from riskprop.core import _mbx

    modulus = secrets.randbits(2048) | 1 | (1 << 2047)
    constants = modexp._modulus(modulus)
    bases = [secrets.randbelow(modulus) for _ in range(9)]
    blob = b"".join(b.to_bytes(constants.nbytes, "little") for b in bases)
    for exponent in (0, 1, 1 << 64, secrets.randbits(300)):
        raw = exponent.to_bytes((exponent.bit_length() + 7) // 8, "little")
        want = [pow(b, exponent, modulus) for b in bases]
        for w in range(1, modexp.MAX_WINDOW + 1):
            out = _mbx.powmod(blob, raw, constants.raw, constants.r2, constants.k0, w, secret)
            size = constants.nbytes
            got = [
                int.from_bytes(out[i : i + size], "little") % modulus
                for i in range(0, len(out), size)
            ]
            assert got == want, (exponent.bit_length(), w)


@needs_kernel
def test_the_kernel_refuses_what_it_cannot_compute() -> None:
    from riskprop.core import _mbx

    with pytest.raises(ValueError, match="bad modulus"):
        _mbx.powmod(b"\x01\x00", b"\x03", b"\x0a\x01", b"\x00\x00", 1, 4, True)  # even
    with pytest.raises(ValueError, match="bad modulus"):
        _mbx.powmod(b"\x01", b"\x03", b"\x0b\x01", b"\x00\x00", 1, 4, True)  # ragged bases
    with pytest.raises(ValueError, match="bad modulus"):
        _mbx.powmod(b"\x01\x00", b"\x03", b"\x0b\x01", b"\x00\x00", 1, 9, True)  # window


def test_the_window_minimises_the_cost() -> None:
    # secret, 4306 bits in 539 bytes, 79 limbs (2048-bit N): 2**w - 1 table products, then
    # one product and one scan of 2**w entries (SCAN_COST / 79 products each) per window
    exponent = (1 << 4306) | 1
    scan = modexp.SCAN_COST / 79
    cost = {w: 2**w - 1 + -(-4312 // w) * (1 + 2**w * scan) for w in (4, 5, 6)}
    assert cost[5] < min(cost[4], cost[6])
    assert modexp.window(exponent, secret=True, limbs=79) == 5
    # it depends on the length in bytes alone
    assert modexp.window((1 << 4311) - 1, secret=True, limbs=79) == 5
    assert modexp.window(1 << 4304, secret=True, limbs=79) == 5
    # public: a power of two has a single non-zero window, so the smallest table wins
    assert modexp.window(1 << 128, secret=False, limbs=79) == 1
    assert modexp.window(exponent, secret=False, limbs=79) == 1


def _kernel_call(
    traced: bool, bases: list[int], exponent: int, modulus: int, secret: bool
) -> tuple[list[int], bytes, int, int]:
    """The kernel's powers of ``bases`` (reduced), its operation codes, entries read and window."""
    from riskprop.core import _mbx

    constants = modexp._modulus(modulus)
    size = constants.nbytes
    w = modexp.window(exponent, secret=secret, limbs=constants.limbs)
    args = (
        modexp._encode(bases, modulus, size),
        exponent.to_bytes((exponent.bit_length() + 7) // 8, "little"),
        constants.raw,
        constants.r2,
        constants.k0,
        w,
        secret,
    )
    if traced:
        out, ops, reads = _mbx.powmod_traced(*args)
    else:
        out, ops, reads = _mbx.powmod(*args), b"", 0
    got = [int.from_bytes(out[i : i + size], "little") % modulus for i in range(0, len(out), size)]
    return got, ops, reads, w


def _one_length_exponents(top: int) -> tuple[int, list[int]]:
    """Exponents of one length in bytes (``top // 8 + 1``; ``top`` a key share's top bit) and
    very different density."""
    nbytes = top // 8 + 1
    return nbytes, [
        (1 << top) + 1,  # sparse
        (1 << (top + 1)) - 1,  # all ones
        secrets.randbits(top) | 1 << top,  # random
        1 << top,  # a single bit
        1 << (8 * nbytes - 8),  # shorter, but as many bytes
    ]


@needs_kernel
@pytest.mark.parametrize("bits", [2048, 4096])
def test_secret_exponents_take_one_operation_sequence_whatever_their_bits(bits: int) -> None:
    """Same length, very different density: the same squarings and products in the same order,
    and every window's product reads the whole table."""
    modulus = secrets.randbits(bits) | 1 | (1 << (bits - 1))
    bases = [secrets.randbelow(modulus) for _ in range(8)]
    nbytes, exponents = _one_length_exponents(bits + 210)
    traces = set()
    for exponent in exponents:
        got, ops, reads, w = _kernel_call(True, bases, exponent, modulus, secret=True)
        assert got == [gmpy2.powmod(b, exponent, modulus) for b in bases]
        windows = -(-8 * nbytes // w)
        assert ops == b"XX" + b"T" * (2**w - 2) + b"C" + (b"S" * w + b"C") * (windows - 1) + b"X"
        assert reads == windows * 2**w  # every multiplication scanned the whole table
        traces.add((ops, reads))
        # the untraced entry point computes the same
        assert _kernel_call(False, bases, exponent, modulus, secret=True)[0] == got
    assert len(traces) == 1


@needs_kernel
def test_public_exponents_skip_zero_windows() -> None:
    modulus = secrets.randbits(2048) | 1 | (1 << 2047)
    bases = [secrets.randbelow(modulus) for _ in range(3)]
    for exponent in (1 << 127, (1 << 300) + 1, secrets.randbits(500) | 1 << 499):
        got, ops, reads, w = _kernel_call(True, bases, exponent, modulus, secret=False)
        assert got == [pow(b, exponent, modulus) for b in bases]
        digits = [(exponent >> k) & (2**w - 1) for k in range(0, exponent.bit_length(), w)]
        nonzero = sum(1 for d in digits if d)
        assert b"C" not in ops
        assert ops.count(b"M") == reads == nonzero
        assert ops.count(b"S") == w * (len(digits) - 1)
    _, sparse, _, _ = _kernel_call(True, bases, (1 << 300) + 1, modulus, secret=False)
    _, dense, _, _ = _kernel_call(True, bases, (1 << 301) - 1, modulus, secret=False)
    assert sparse != dense


@functools.cache
def _agreement_problem(bits: int) -> tuple[int, list[int], dict[int, list[int]]]:
    """A modulus, 9 invertible bases and Python's ``pow`` of them for a few exponents (once
    per size: both arithmetic paths compare with it)."""
    modulus = secrets.randbits(bits) | 1 | (1 << (bits - 1))
    bases = [secrets.randbelow(modulus) for _ in range(9)]
    bases = [b if gmpy2.gcd(b, modulus) == 1 else 1 for b in bases]
    share, sparse = secrets.randbits(bits + 210), (1 << (bits + 210)) + 1
    want = {e: [pow(b, e, modulus) for b in bases] for e in (0, 1, 2, share, sparse, 1 << 64)}
    for e in (1, share, 1 << 64):
        want[-e] = [pow(x, -1, modulus) for x in want[e]]
    return modulus, bases, want


@pytest.mark.parametrize("bits", [2048, 4096])
def test_constant_time_and_public_paths_agree_with_pow(arithmetic: str, bits: int) -> None:
    """N**2-sized moduli (1024- and 2048-bit N), a batch of 9 (8 lanes and 1)."""
    modulus, bases, want = _agreement_problem(bits)
    for exponent, powers in want.items():
        secret = modexp.powmod_many(bases, exponent, modulus, secret=True)
        public = modexp.powmod_many(bases, exponent, modulus, secret=False)
        assert [int(x) for x in secret] == [int(x) for x in public] == powers, exponent


def test_the_gmpy2_path_sends_secret_exponents_to_powmod_sec(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(modexp.ENVIRONMENT, "gmpy2")
    assert not modexp.mpn()
    modulus = (1 << 521) - 1  # odd
    bases = [3, 5, modulus + 7]
    calls: list[str] = []
    powmod, powmod_sec = gmpy2.powmod, gmpy2.powmod_sec

    def public(b: object, e: object, m: object) -> object:
        calls.append("powmod")
        return powmod(b, e, m)

    def secret(b: object, e: object, m: object) -> object:
        calls.append("powmod_sec")
        return powmod_sec(b, e, m)

    monkeypatch.setattr(gmpy2, "powmod", public)
    monkeypatch.setattr(gmpy2, "powmod_sec", secret)
    for exponent in (1, 2**300 + 1, secrets.randbits(600), -(2**100) - 1):
        calls.clear()
        got = modexp.powmod_many(bases, exponent, modulus, secret=True)
        assert calls == ["powmod_sec"] * 3
        assert [int(x) for x in got] == [pow(b, exponent, modulus) for b in bases]
        calls.clear()
        got = modexp.powmod_many(bases, exponent, modulus, secret=False)
        assert calls == ["powmod"] * 3
        assert [int(x) for x in got] == [pow(b, exponent, modulus) for b in bases]
    calls.clear()
    # powmod_sec needs a positive exponent: b**0 is 1 without either
    assert modexp.powmod_many(bases, 0, modulus, secret=True) == [1, 1, 1]
    assert calls == []


def _schedule_reference(
    values: list[int], row: list[int], blocks: int, modulus: int, squarings: int = 1
) -> int:
    acc = values[row[0]] % modulus
    for k in range(1, len(row)):
        if k % blocks == 0:
            acc = pow(acc, 2**squarings, modulus)
        acc = acc * values[row[k]] % modulus
    return acc


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    bits=st.integers(2, 1100),
    entries=st.integers(1, 40),
    count=st.integers(0, 19),
    per_value=st.integers(1, 12),
    blocks=st.integers(1, 5),
    squarings=st.sampled_from([0, 1, 2, 4, 7]),
    seed=st.integers(0, 2**32 - 1),
)
def test_table_products_follow_the_schedule(
    arithmetic: str,
    bits: int,
    entries: int,
    count: int,
    per_value: int,
    blocks: int,
    squarings: int,
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    modulus = random.Random(seed).getrandbits(bits) | (1 << (bits - 1)) | 1  # odd, >= 3
    values = [secrets.randbelow(4 * modulus) for _ in range(entries)]  # some above M
    positions = rng.integers(0, entries, size=(count, per_value))
    table = modexp.ProductTable(values, modulus)
    got = table.products(positions, blocks, squarings=squarings)
    want = [
        _schedule_reference(values, row, blocks, modulus, squarings) for row in positions.tolist()
    ]
    assert [int(x) for x in got] == want


@pytest.mark.parametrize("bits", [2, 61, 520, 1100, 4096])
@pytest.mark.parametrize("count", [1, 2, 3, 16, 33])
def test_a_table_of_powers_holds_every_power(arithmetic: str, bits: int, count: int) -> None:
    """Entry ``v count + d`` is ``values[v]**d``: 0, 1, M - 1, values above M and 0 < M
    among the values, more than eight of them (two groups of lanes)."""
    modulus = secrets.randbits(bits) | (1 << (bits - 1)) | 1
    values = [0, 1, modulus - 1, modulus, 5 * modulus + 2]
    values += [secrets.randbelow(modulus) for _ in range(6)]
    table = modexp.ProductTable.of_powers(values, modulus, count)
    assert table.entries == len(values) * count
    positions = np.arange(table.entries).reshape(-1, 1)
    got = [int(x) for x in table.products(positions, 1)]
    assert got == [pow(v, d, modulus) for v in values for d in range(count)]


def test_a_fixed_window_multi_exponentiation_is_a_schedule_of_powers(arithmetic: str) -> None:
    """``prod_j b_j**e_j`` with windows of ``w`` bits: one position per base and window from
    the top, ``blocks`` = the bases, ``squarings`` = w (what linear_step's kernel rows run)."""
    modulus = secrets.randbits(1024) | (1 << 1023) | 1
    bases = [secrets.randbelow(modulus) for _ in range(5)]
    for w in (1, 3, 4, 8):
        table = modexp.ProductTable.of_powers(bases, modulus, 1 << w)
        rows = [[secrets.randbits(40) for _ in bases] for _ in range(11)]
        windows = -(-40 // w)
        positions = np.array(
            [
                [j * (1 << w) + ((e[j] >> (w * i)) & ((1 << w) - 1)) for j in range(len(bases))]
                for e in rows
                for i in reversed(range(windows))
            ]
        ).reshape(len(rows), windows * len(bases))
        got = [int(x) for x in table.products(positions, len(bases), squarings=w)]
        want = [
            functools.reduce(
                lambda a, j: a * pow(bases[j], e[j], modulus) % modulus, range(len(bases)), 1
            )
            for e in rows
        ]
        assert got == want


def test_tables_and_schedules_refuse_what_they_cannot_hold(arithmetic: str) -> None:
    with pytest.raises(ValueError, match="power 0"):
        modexp.ProductTable.of_powers([2, 3], 1009, 0)
    table = modexp.ProductTable.of_powers([2, 3], 1009, 4)
    with pytest.raises(ValueError, match="outside the table"):
        table.products(np.array([[0, 8]]), 1)
    with pytest.raises(ValueError, match="squarings"):
        table.products(np.array([[0, 1]]), 1, squarings=modexp.MAX_SQUARINGS + 1)
    with pytest.raises(ValueError, match="squarings"):
        table.products(np.array([[0, 1]]), 1, squarings=-1)


def test_table_products_refuse_positions_outside_the_table(arithmetic: str) -> None:
    table = modexp.ProductTable([2, 3, 5], 1009)
    with pytest.raises(ValueError, match="outside the table"):
        table.products(np.array([[0, 3]]), 1)
    with pytest.raises(ValueError, match="outside the table"):
        table.products(np.array([[-1, 0]]), 1)
    with pytest.raises(ValueError, match="count, K"):
        table.products(np.array([0, 1]), 1)


@needs_kernel
def test_the_comb_kernel_checks_bounds_itself() -> None:
    # the C entry point must not trust its caller with memory safety
    from riskprop.core import _mbx

    constants = modexp._modulus(1009)
    values = b"".join(v.to_bytes(2, "little") for v in (2, 3))
    table = _mbx.montgomery(values, constants.raw, constants.r2, constants.k0)
    good = np.array([[0, 1]], dtype="<u4").tobytes()
    bad = np.array([[0, 2]], dtype="<u4").tobytes()
    # blocks = 2: no squaring before the second entry, so 2 * 3
    out = _mbx.comb(table, good, 2, 2, constants.raw, constants.k0)
    assert int.from_bytes(out, "little") % 1009 == 6
    with pytest.raises(ValueError, match="outside the table"):
        _mbx.comb(table, bad, 2, 2, constants.raw, constants.k0)
    with pytest.raises(ValueError, match="bad table"):
        _mbx.comb(table, good[:4], 2, 2, constants.raw, constants.k0)
    with pytest.raises(ValueError, match="bad buffer"):
        _mbx.montgomery(b"\x02", constants.raw, constants.r2, constants.k0)


@needs_kernel
def test_the_powers_kernel_checks_its_arguments_itself() -> None:
    from riskprop.core import _mbx

    constants = modexp._modulus(1009)
    values = b"".join(v.to_bytes(2, "little") for v in (2, 3))
    table = _mbx.powers(values, constants.raw, constants.r2, constants.k0, 3)
    assert len(table) == 2 * 3 * 8  # 1009 fits one limb
    with pytest.raises(ValueError, match="count"):
        _mbx.powers(values, constants.raw, constants.r2, constants.k0, 0)
    with pytest.raises(ValueError, match="count"):
        _mbx.powers(values, constants.raw, constants.r2, constants.k0, (1 << 16) + 1)
    with pytest.raises(ValueError, match="bad buffer"):
        _mbx.powers(values[:3], constants.raw, constants.r2, constants.k0, 3)
    good = np.array([[0, 1]], dtype="<u4").tobytes()
    with pytest.raises(ValueError, match="schedule"):
        _mbx.comb(table, good, 2, 1, constants.raw, constants.k0, 0, 65)
    # squarings 0: no squaring between blocks, 1 * 2
    out = _mbx.comb(table, good, 2, 1, constants.raw, constants.k0, 0, 0)
    assert int.from_bytes(out, "little") % 1009 == 2


@needs_kernel
def test_the_comb_traces_its_squarings() -> None:
    from riskprop.core import _mbx

    constants = modexp._modulus(1009)
    values = b"".join(v.to_bytes(2, "little") for v in (2, 3))
    table = _mbx.powers(values, constants.raw, constants.r2, constants.k0, 4)
    positions = np.array([[1, 5, 2, 7, 3, 4]], dtype="<u4").tobytes()  # blocks of 2
    out, ops, reads = _mbx.comb_traced(table, positions, 6, 2, constants.raw, constants.k0, 0, 3)
    assert ops == b"G" + b"SSSG" + b"G" + b"SSSG" + b"G" + b"X"
    assert reads == 6
    want = pow(pow(pow(2, 1, 1009) * 3, 8, 1009) * 4 * 3**3, 8, 1009) * 2**3 * 1 % 1009
    assert int.from_bytes(out, "little") % 1009 == want


@needs_kernel
def test_the_constant_time_comb_scans_each_sub_table() -> None:
    """With a sub-table size every read scans its step's sub-table whatever the digits; without
    one, each lane's entry is gathered. Both give the schedule's products."""
    from riskprop.core import _mbx

    modulus = secrets.randbits(2048) | 1 | (1 << 2047)
    constants = modexp._modulus(modulus)
    sub, blocks, columns, count = 16, 3, 4, 11
    values = [secrets.randbelow(modulus) for _ in range(blocks * sub)]
    table = _mbx.montgomery(
        modexp._encode(values, modulus, constants.nbytes), constants.raw, constants.r2, constants.k0
    )
    offsets = np.tile(np.arange(blocks) * sub, columns)
    rng = np.random.default_rng(7)
    digits = {
        "zeros": np.zeros((count, blocks * columns), dtype=np.int64),
        "top": np.full((count, blocks * columns), sub - 1, dtype=np.int64),
        "random": rng.integers(0, sub, size=(count, blocks * columns)),
    }
    groups = -(-count // modexp.LANES)
    per_value = blocks * columns
    traces = set()
    for name, d in digits.items():
        positions = d + offsets
        raw = positions.astype("<u4").tobytes()
        want = [_schedule_reference(values, row, blocks, modulus) for row in positions.tolist()]
        size = constants.nbytes
        for subtable in (sub, 0):
            out, ops, reads = _mbx.comb_traced(
                table, raw, per_value, blocks, constants.raw, constants.k0, subtable
            )
            got = [
                int.from_bytes(out[i : i + size], "little") % modulus
                for i in range(0, len(out), size)
            ]
            assert got == want, name
            step = b"".join(
                (b"S" if k % blocks == 0 else b"") + (b"C" if subtable else b"G")
                for k in range(1, per_value)
            )
            assert ops == (step + b"X") * groups
            assert reads == groups * per_value * (subtable or 1)
            if subtable:
                traces.add((ops, reads))
    assert len(traces) == 1


@needs_kernel
def test_the_comb_kernel_checks_sub_tables_itself() -> None:
    from riskprop.core import _mbx

    constants = modexp._modulus(1009)
    values = b"".join(v.to_bytes(2, "little") for v in (2, 3, 5, 7))
    table = _mbx.montgomery(values, constants.raw, constants.r2, constants.k0)
    same = np.array([[0, 2], [1, 3]], dtype="<u4").tobytes()
    crossing = np.array([[0, 2], [2, 3]], dtype="<u4").tobytes()
    out = _mbx.comb(table, same, 2, 2, constants.raw, constants.k0, 2)
    assert [int.from_bytes(out[i : i + 2], "little") % 1009 for i in (0, 2)] == [10, 21]
    with pytest.raises(ValueError, match="sub-table"):
        _mbx.comb(table, crossing, 2, 2, constants.raw, constants.k0, 2)
    for bad in (3, 8, -2):
        with pytest.raises(ValueError, match="sub-table"):
            _mbx.comb(table, same, 2, 2, constants.raw, constants.k0, bad)


def test_table_products_check_sub_tables(arithmetic: str) -> None:
    table = modexp.ProductTable([2, 3, 5, 7], 1009)
    positions = np.array([[0, 2], [1, 3]])
    assert [int(x) for x in table.products(positions, 2, subtable=2)] == [10, 21]
    assert table.products(positions, 2, subtable=2) == table.products(positions, 2)
    with pytest.raises(ValueError, match="different sub-tables"):
        table.products(np.array([[0, 2], [2, 3]]), 2, subtable=2)
    for bad in (3, 8, -2):
        with pytest.raises(ValueError, match="power of two"):
            table.products(positions, 2, subtable=bad)


# ------------------------------------------------------------------ multi-exponentiation


def _naive_product(bases: list[int], exponents: list[int], modulus: int) -> int:
    out = 1 % modulus
    for base, exponent in zip(bases, exponents, strict=True):
        out = out * int(gmpy2.powmod(base, exponent, modulus)) % modulus
    return out


def _multi_problem(bits: int, count: int, seed: int) -> tuple[list[int], list[int], int]:
    """An odd ``bits``-bit modulus; bases with edge values (0, 1, M - 1, M, above M); exponents
    of 1..200 bits with zeros among them."""
    rng = random.Random(seed)
    modulus = rng.getrandbits(bits) | 1 | (1 << (bits - 1))
    edge = [0, 1, modulus - 1, modulus, modulus + 2, 3 * modulus + 5]
    bases = [
        edge[i] if i < len(edge) and count > 8 else rng.randrange(modulus) for i in range(count)
    ]
    exponents = [0 if i % 13 == 5 else rng.getrandbits(1 + i % 200) for i in range(count)]
    return bases, exponents, modulus


@pytest.mark.parametrize("bits", [2048, 4096])
@pytest.mark.parametrize("count", [0, 1, 7, 8, 9, 100, 1000])
def test_product_of_powers_equals_the_naive_product(arithmetic: str, bits: int, count: int) -> None:
    bases, exponents, modulus = _multi_problem(bits, count, seed=bits * 10_000 + count)
    expected = _naive_product(bases, exponents, modulus)
    got = modexp.product_of_powers(bases, exponents, modulus)
    assert got == expected
    assert modexp._gmp_product_of_powers(bases, exponents, mpz(modulus)) == expected


@pytest.mark.parametrize("bits", [2048, 4096])
@pytest.mark.parametrize("exponent_bits", [1, 2, 7, 8, 9, 63, 64, 65, 127, 128, 129, 200])
def test_product_of_powers_at_every_exponent_length(
    arithmetic: str, bits: int, exponent_bits: int
) -> None:
    """Exponents all of one length (the top window full or nearly empty), or up to it."""
    rng = random.Random(bits + exponent_bits)
    modulus = rng.getrandbits(bits) | 1 | (1 << (bits - 1))
    bases = [rng.randrange(modulus) for _ in range(23)]
    top = 1 << (exponent_bits - 1)
    for exponents in (
        [top | rng.getrandbits(exponent_bits - 1) for _ in bases],
        [rng.getrandbits(exponent_bits) for _ in bases],
        [top] + [0] * (len(bases) - 1),
    ):
        assert modexp.product_of_powers(bases, exponents, modulus) == _naive_product(
            bases, exponents, modulus
        )


def test_product_of_powers_of_zero_exponents_and_empty_inputs(arithmetic: str) -> None:
    modulus = (1 << 2047) + 12345  # odd
    assert modexp.product_of_powers([], [], modulus) == 1
    assert modexp.product_of_powers([5, 7, 0], [0, 0, 0], modulus) == 1
    assert modexp.product_of_powers([0], [0], modulus) == 1  # 0**0 = 1, as pow() has it
    assert modexp.product_of_powers([0, 3], [5, 2], modulus) == 0
    assert modexp.product_of_powers([modulus + 7], [3], modulus) == 343
    assert modexp.product_of_powers([7, 7], [1, 1], 1) == 0
    assert modexp.product_of_powers([3], [5], 1 << 20) == 243  # even: gmpy2 in any case
    # N**2 often comes as an mpz (a modulus not seen before: the kernel's constants are cached)
    assert modexp.product_of_powers([mpz(3)], [mpz(5)], mpz(modulus + 2)) == 243


def test_product_of_powers_refuses_what_it_cannot_compute(arithmetic: str) -> None:
    with pytest.raises(ValueError, match="one exponent per base"):
        modexp.product_of_powers([2, 3], [1], 1009)
    with pytest.raises(ValueError, match="non-negative"):
        modexp.product_of_powers([2, 3], [1, -1], 1009)
    with pytest.raises(ValueError, match="positive"):
        modexp.product_of_powers([2], [1], 0)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.integers(2, 600).flatmap(
        lambda bits: st.tuples(
            st.integers(1 << (bits - 1), (1 << bits) - 1).map(lambda m: m | 1),
            st.lists(
                st.tuples(st.integers(0, 1 << 700), st.integers(0, (1 << 200) - 1)), max_size=30
            ),
        )
    )
)
def test_product_of_powers_at_small_odd_moduli(
    arithmetic: str, problem: tuple[int, list[tuple[int, int]]]
) -> None:
    modulus, pairs = problem
    bases = [b for b, _ in pairs]
    exponents = [e for _, e in pairs]
    assert modexp.product_of_powers(bases, exponents, modulus) == _naive_product(
        bases, exponents, modulus
    )


def test_the_multi_window_minimises_the_cost_within_the_budget() -> None:
    # 128-bit weights: c = 8 gives 16 windows, two passes of eight lanes
    assert modexp.multi_window(1024, 128, 79) == 8
    assert modexp.multi_window(20_000, 128, 79) == 8
    assert modexp.multi_window(64, 128, 79) == 4  # 4 passes of (64 + 32) products
    assert modexp.multi_window(1, 1, 79) == 1
    # one pass of 8 windows of 16 bits pays only past 130,000 bases, and needs 8 2**16 buckets
    assert modexp.multi_window(200_000, 128, 2) == 16
    assert modexp.multi_window(200_000, 128, 79) < 16
    for count in (1, 64, 1000, 20_000, 200_000):
        for bits in (1, 50, 128, 200):
            c = modexp.multi_window(count, bits, 79)
            fits = [
                w
                for w in range(1, modexp.MULTI_WINDOW_MAX + 1)
                if modexp.LANES * 2**w * 79 * 8 <= modexp.BUCKET_BUDGET
            ]
            assert c in fits
            assert all(_multi_cost(count, bits, c) <= _multi_cost(count, bits, w) for w in fits)


def _multi_cost(count: int, bits: int, c: int) -> int:
    windows = -(-bits // c)
    return -(-windows // 8) * (count + (2 << c))


def _window_sums(bases: list[int], exponents: list[int], modulus: int, c: int) -> list[int]:
    """The kernel's window sums ``S_w``, reduced."""
    from riskprop.core import _mbx

    constants = modexp._modulus(modulus)
    bits = max(e.bit_length() for e in exponents)
    size = (bits + 7) // 8
    out = _mbx.multiexp(
        modexp._encode(bases, modulus, constants.nbytes),
        b"".join(e.to_bytes(size, "little") for e in exponents),
        bits,
        constants.raw,
        constants.r2,
        constants.k0,
        c,
    )
    n = constants.nbytes
    return [int.from_bytes(out[i : i + n], "little") % modulus for i in range(0, len(out), n)]


@needs_kernel
def test_every_multi_window_gives_each_window_its_products() -> None:
    """S_w = prod_j b_j**digit_{j,w} for every width the kernel takes (1..16), with more
    windows than lanes, fewer, and not a multiple of eight."""
    bases, exponents, modulus = _multi_problem(2048, 9, seed=7)
    exponents[3] = (1 << 130) - 1  # 130 bits: digits of all ones, a partial top window
    for c in range(1, 17):
        sums = _window_sums(bases, exponents, modulus, c)
        assert len(sums) == -(-130 // c)
        for w, got in enumerate(sums):
            digits = [(e >> (c * w)) & ((1 << c) - 1) for e in exponents]
            assert got == _naive_product(bases, digits, modulus), (c, w)


@needs_kernel
def test_the_multiexp_kernel_refuses_what_it_cannot_compute() -> None:
    from riskprop.core import _mbx

    constants = modexp._modulus(1009)
    m = (constants.raw, constants.r2, constants.k0)
    bases = b"\x02\x00\x03\x00"
    out = _mbx.multiexp(bases, b"\x05\x07", 3, *m, 4)
    assert int.from_bytes(out, "little") % 1009 == 2**5 * 3**7 % 1009
    for c in (0, 17):
        with pytest.raises(ValueError, match="window"):
            _mbx.multiexp(bases, b"\x05\x07", 3, *m, c)
    with pytest.raises(ValueError, match="buffer lengths"):
        _mbx.multiexp(bases, b"\x05", 3, *m, 4)  # one exponent for two bases
    with pytest.raises(ValueError, match="buffer lengths"):
        _mbx.multiexp(bases, b"\x05\x07", 0, *m, 4)  # no bits
    with pytest.raises(ValueError, match="bad modulus"):
        _mbx.multiexp(b"\x02\x00", b"\x05", 3, b"\x0a\x01", b"\x00\x00", 1, 4)  # even


@needs_kernel
def test_odd_moduli_take_the_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> None:
        raise AssertionError("the gmpy2 path ran")

    bases, exponents, modulus = _multi_problem(2048, 100, seed=1)
    expected = _naive_product(bases, exponents, modulus)
    monkeypatch.setattr(modexp, "_gmp_product_of_powers", refuse)
    assert modexp.product_of_powers(bases, exponents, modulus) == expected


# ------------------------------------------------------------- the constant-time mpn module

MPN = modexp._MPN is not None
needs_mpn = pytest.mark.skipif(not MPN, reason="riskprop.core._mpn was not built (no libgmp)")


def test_the_mpn_module_is_built_wherever_gmp_is() -> None:
    # a failed build would silently cost a quarter of every partial decryption without IFMA
    if ctypes.util.find_library("gmp") and platform.machine() in ("x86_64", "aarch64"):
        assert MPN


@needs_mpn
def test_the_portable_path_sends_secret_exponents_to_mpn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(modexp.ENVIRONMENT, "gmp")
    assert modexp.mpn() and not modexp.native() and modexp.path() == "gmp"
    assert "GMP mpn" in modexp.describe()
    assert "linear_step: gmpy2 " in modexp.describe()

    def refuse(*args: object) -> object:
        raise AssertionError("powmod_sec called on the mpn path")

    monkeypatch.setattr(gmpy2, "powmod_sec", refuse)
    modulus, bases, _ = _agreement_problem(2048)
    for exponent in (1, secrets.randbits(2446), -secrets.randbits(300)):
        got = modexp.powmod_many(bases, exponent, modulus, secret=True)
        assert [int(x) for x in got] == [pow(b, exponent, modulus) for b in bases]
    monkeypatch.setenv(modexp.ENVIRONMENT, "gmpy2")
    assert not modexp.mpn() and "gmpy2 (forced" in modexp.describe()
    assert modexp.path() == "gmpy2" and modexp.backend() == "gmp"


def _mpn_call(
    traced: bool, bases: list[int], exponent: int, modulus: int, w: int | None = None
) -> tuple[list[int], bytes, int, int]:
    """``_mpn``'s powers of ``bases`` (reduced), its operation codes, entries read and window."""
    from riskprop.core import _mpn

    nbytes, raw, r2, k0 = modexp._mpn_modulus(modulus)
    size = (exponent.bit_length() + 7) // 8
    w = modexp.mpn_window(size, nbytes // 8) if w is None else w
    args = (
        modexp._encode(bases, modulus, nbytes),
        exponent.to_bytes(size, "little"),
        raw,
        r2,
        k0,
        w,
    )
    if traced:
        out, ops, reads = _mpn.powmod_traced(*args)
    else:
        out, ops, reads = _mpn.powmod(*args), b"", 0
    got = [
        int.from_bytes(out[i : i + nbytes], "little") % modulus for i in range(0, len(out), nbytes)
    ]
    return got, ops, reads, w


@needs_mpn
@settings(max_examples=120, deadline=None)
@given(
    bits=st.integers(2, 1300),
    exponent=st.one_of(st.integers(1, 3), st.integers(1, 1 << 1500), st.just(1 << 128)),
    w=st.integers(1, modexp.MAX_WINDOW),
    seed=st.integers(0, 2**32 - 1),
)
def test_mpn_powers_equal_pow_at_every_size_and_window(
    bits: int, exponent: int, w: int, seed: int
) -> None:
    rng = random.Random(seed)
    modulus = max(3, rng.getrandbits(bits) | 1 | (1 << (bits - 1)))
    edges = [0, 1, 2, modulus - 1, modulus, modulus + 1, 3 * modulus + 5]
    bases = edges + [rng.randrange(modulus) for _ in range(4)]
    got, _, _, _ = _mpn_call(False, bases, exponent, modulus, w)
    assert got == [pow(b, exponent, modulus) for b in bases]


@needs_mpn
@pytest.mark.parametrize("bits", [2048, 4096])
def test_mpn_secret_exponents_take_one_operation_sequence_whatever_their_bits(bits: int) -> None:
    """Same length, very different density: the same squarings and products in the same order,
    and every window's product reads the whole table."""
    modulus = secrets.randbits(bits) | 1 | (1 << (bits - 1))
    bases = [secrets.randbelow(modulus) for _ in range(3)]
    nbytes, exponents = _one_length_exponents(bits + 398)
    traces = set()
    for exponent in exponents:
        got, ops, reads, w = _mpn_call(True, bases, exponent, modulus)
        assert got == [pow(b, exponent, modulus) for b in bases]
        windows = -(-8 * nbytes // w)
        one = b"XX" + b"T" * (2**w - 2) + (b"S" * w + b"C") * (windows - 1) + b"X"
        assert ops == one * len(bases)
        assert reads == len(bases) * windows * 2**w  # the first window's read, then every product's
        traces.add((ops, reads))
        assert _mpn_call(False, bases, exponent, modulus)[0] == got
    assert len(traces) == 1


@needs_mpn
def test_mpn_refuses_what_it_cannot_compute() -> None:
    from riskprop.core import _mpn

    eight = (3).to_bytes(8, "little")
    odd = ((1 << 63) | 5).to_bytes(8, "little")
    with pytest.raises(ValueError, match="must be odd"):
        _mpn.powmod(eight, b"\x03", (1 << 62).to_bytes(8, "little"), eight, 1, 4)  # even
    with pytest.raises(ValueError, match="whole 8-byte limbs"):
        _mpn.powmod(eight, b"\x03", b"\x0b\x01", eight, 1, 4)  # not a limb
    with pytest.raises(ValueError, match="bases and R"):
        _mpn.powmod(eight + b"\x01", b"\x03", odd, eight, 1, 4)  # ragged bases
    with pytest.raises(ValueError, match="exponent non-empty"):
        _mpn.powmod(eight, b"", odd, eight, 1, 4)
    with pytest.raises(ValueError, match="window 1 to 8"):
        _mpn.powmod(eight, b"\x03", odd, eight, 1, 9)


def test_the_mpn_window_minimises_the_cost() -> None:
    # a 2446-bit share (306 bytes) mod a 2048-bit N**2 (32 limbs): 2**w - 1 table products,
    # then per window one product and a scan of 2**w entries (MPN_SCAN_COST / 32 products each)
    scan = modexp.MPN_SCAN_COST / 32
    cost = {w: 2**w - 1 + -(-2448 // w) * (1 + 2**w * scan) for w in (4, 5, 6)}
    assert cost[5] < min(cost[4], cost[6])
    assert modexp.mpn_window(306, 32) == 5
    # a 4497-bit share mod a 4096-bit N**2 (64 limbs): a wider window pays
    assert modexp.mpn_window(563, 64) == 6


@needs_kernel
@needs_mpn
def test_a_lone_secret_base_goes_to_mpn_not_to_seven_empty_lanes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The kernel computes eight lanes whatever the batch: one base (a verification key) costs
    it eight, and _mpn about five; two or more bases stay in the kernel."""
    monkeypatch.delenv(modexp.ENVIRONMENT, raising=False)
    assert modexp._MPN is not None
    calls: list[int] = []
    powmod = modexp._MPN.powmod

    def counted(bases: bytes, *args: object) -> bytes:
        calls.append(len(bases))
        out: bytes = powmod(bases, *args)
        return out

    monkeypatch.setattr(modexp._MPN, "powmod", counted)
    modulus, bases, want = _agreement_problem(2048)
    share = max(want, key=abs)
    for count in (1, 2, 8, 9):
        calls.clear()
        got = modexp.powmod_many(bases[:count], share, modulus, secret=True)
        assert [int(x) for x in got] == want[share][:count]
        assert len(calls) == (1 if count == 1 else 0), count
    calls.clear()
    assert [int(x) for x in modexp.powmod_many(bases[:1], share, modulus, secret=False)] == [
        want[share][0]
    ]
    assert calls == []  # a public exponent keeps the kernel's public path
