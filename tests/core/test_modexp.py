"""Batched modular exponentiation: the native IFMA kernel and the gmpy2 path agree with pow()."""

from __future__ import annotations

import platform
import random
import secrets
from pathlib import Path

import gmpy2
import numpy as np
import pytest
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
needs_kernel = pytest.mark.skipif(not KERNEL, reason="CPU without AVX-512 IFMA (gmp path only)")


def test_the_kernel_is_built_and_used_exactly_where_the_cpu_has_ifma(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a failed build on an IFMA machine would silently cost 4x; this makes it a failure
    monkeypatch.delenv(modexp.ENVIRONMENT, raising=False)  # also when the suite runs with gmp
    assert modexp.backend() == ("avx512-ifma" if _cpu_has_ifma() else "gmp")


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


def test_the_gmp_path_sends_secret_exponents_to_powmod_sec(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(modexp.ENVIRONMENT, "gmp")
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


def test_the_window_minimises_the_products() -> None:
    # secret: table 2**w - 1 plus one product per window, whatever the digits
    exponent = (1 << 4306) | 1
    assert modexp.window(exponent, secret=True) == 7  # 127 + 616 < 63 + 718 < 255 + 539
    # public: a power of two has a single non-zero window, so the smallest table wins
    assert modexp.window(1 << 128, secret=False) == 1


def _schedule_reference(values: list[int], row: list[int], blocks: int, modulus: int) -> int:
    acc = values[row[0]] % modulus
    for k in range(1, len(row)):
        if k % blocks == 0:
            acc = acc * acc % modulus
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
    seed=st.integers(0, 2**32 - 1),
)
def test_table_products_follow_the_schedule(
    arithmetic: str, bits: int, entries: int, count: int, per_value: int, blocks: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    modulus = random.Random(seed).getrandbits(bits) | (1 << (bits - 1)) | 1  # odd, >= 3
    values = [secrets.randbelow(4 * modulus) for _ in range(entries)]  # some above M
    positions = rng.integers(0, entries, size=(count, per_value))
    table = modexp.ProductTable(values, modulus)
    got = table.products(positions, blocks)
    want = [_schedule_reference(values, row, blocks, modulus) for row in positions.tolist()]
    assert [int(x) for x in got] == want


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
