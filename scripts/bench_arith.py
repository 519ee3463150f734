#!/usr/bin/env python3
"""Micro-benchmark of the modular arithmetic under a secure run, per modulus size.

Times (median over ``--repeat`` repetitions, CPU time of this process by default so that other
load on the machine counts less) of: one multiplication and one squaring mod ``N**2``
(``a * b % n2`` with gmpy2), a fresh noise value ``r**N mod N**2``, a ``FixedBaseNoise`` draw
(and its one-off table), one ``powmod`` with a 48-, 32- and 24-bit exponent, one partial
decryption exponent of ``2|N| + 130`` bits (also per value in a batch of eight through
``powmod_many``: the native IFMA kernel where available, the constant-time mpn module and
``gmpy2.powmod_sec``), and ``linear_step`` per
CSR term (the self term of each row included) on a random CSR of ``--rows`` rows with
Poisson(``--degree``) terms per row over ``rows + rows/3`` bases, for f = 48, 32 and 24-bit
coefficients, three or four ways:

* ``powmod per term``: one ``gmpy2.powmod`` per term (before commit f1519e7);
* ``Straus, 3-bit fixed windows``: the version of commit f1519e7 (copied below);
* ``sliding windows (gmpy2)``: ``riskprop.core.paillier.linear_step``'s gmpy2 path, the one a
  CPU without IFMA runs;
* ``kernel lanes (current, IFMA)``: ``linear_step`` itself, where the IFMA kernel runs.

Each ``linear_step`` figure also appears in multiplications mod ``N**2`` (time / the
multiplication above), which is what a lower-bound count of a run's arithmetic multiplies.

    python scripts/bench_arith.py --bits 1024 2048 --repeat 5

``--constant-time`` instead times what secret exponents cost (docs/performance.md, "Constant-time
secret exponents"), per exponentiation mod ``N**2`` with a key-share-sized exponent (``2|N| +
210`` bits), dense (random) and sparse (``2**k + 1``): the kernel's constant-time path for a
secret exponent and its public path (per value in a batch of 8), ``gmpy2.powmod`` and
``gmpy2.powmod_sec``; a noise draw with the comb gathered and scanned, each shaped for 3,000
draws, and a fresh ``r**N`` by ``powmod_sec``. From an all-ones exponent (scanned and indexed at
one window) and the scanned comb's shape gathered it fits ``modexp.SCAN_COST`` and
``SHARED_SCAN_COST``. ``--baseline-kernel PATH`` adds the same figures from another build of the
kernel (an ``_mbx`` shared object, e.g. one built before a change), with its window for a secret
exponent chosen by the products alone, as before the scan. All figures of one size are measured
in turn within each repetition, so that the machine's drift hits them alike.

    python scripts/bench_arith.py --constant-time --repeat 7 --baseline-kernel /tmp/before/_mbx.so
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import os
import platform
import secrets
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType

import gmpy2
import numpy as np
import phe
from gmpy2 import mpz

from riskprop.core import modexp, paillier
from riskprop.core.modexp import ENVIRONMENT, backend, native, powmod_many
from riskprop.core.paillier import FixedBaseNoise, FreshNoise, PublicKey, linear_step
from riskprop.core.types import IntArray

Row = tuple[str, str, dict[int, float]]  # label, unit, value per modulus size


def measure(clock: Callable[[], float], op: Callable[[], object], count: int, repeat: int) -> float:
    """Median over ``repeat`` runs of the time of one ``op()`` (``count`` calls per run)."""
    times = []
    for _ in range(repeat):
        started = clock()
        for _ in range(count):
            op()
        times.append((clock() - started) / count)
    return statistics.median(times)


def powmod_per_term(
    key: PublicKey,
    bases: Sequence[mpz],
    n_rows: int,
    self_coef: int,
    indptr: IntArray,
    indices: IntArray,
    coefs: Sequence[int],
) -> list[mpz]:
    """Reference: ``bases[x]**self_coef * prod_j bases[indices[j]]**coefs[j]``, a powmod each."""
    n2 = mpz(key.nsquare)
    ptr, cols = indptr.tolist(), indices.tolist()
    out = []
    for x in range(n_rows):
        acc = gmpy2.powmod(bases[x], self_coef, n2)
        for j in range(ptr[x], ptr[x + 1]):
            acc = acc * gmpy2.powmod(bases[cols[j]], coefs[j], n2) % n2
        out.append(acc)
    return out


def straus_fixed_window(
    key: PublicKey,
    bases: Sequence[mpz],
    n_rows: int,
    self_coef: int,
    indptr: IntArray,
    indices: IntArray,
    coefs: Sequence[int],
) -> list[mpz]:
    """``linear_step`` of commit f1519e7: Straus per row, 3-bit fixed windows, a table of
    ``b**v, v < 8`` per base (dropped after its last use)."""
    w = 3
    n2 = mpz(key.nsquare)
    ptr = indptr.tolist()
    cols = indices.tolist()
    bits = max([int(self_coef).bit_length(), *(int(c).bit_length() for c in coefs)])
    n_digits = max(1, -(-bits // w))
    mask = (1 << w) - 1
    uses = np.bincount(np.asarray(indices, dtype=np.int64), minlength=len(bases))
    uses[:n_rows] += 1
    remaining = uses.tolist()
    tables: dict[int, list[mpz]] = {}

    def table(b: int) -> list[mpz]:
        found = tables.get(b)
        if found is None:
            base = bases[b]
            found = [mpz(1), base]
            for _ in range(mask - 1):
                found.append(found[-1] * base % n2)
            tables[b] = found
        remaining[b] -= 1
        if remaining[b] == 0:
            del tables[b]
        return found

    self_digits = [(self_coef >> (w * d)) & mask for d in range(n_digits)]
    out = []
    for x in range(n_rows):
        terms = [(table(x), self_digits)]
        for j in range(ptr[x], ptr[x + 1]):
            e = int(coefs[j])
            terms.append((table(cols[j]), [(e >> (w * d)) & mask for d in range(n_digits)]))
        acc = mpz(1)
        for d in range(n_digits - 1, -1, -1):
            if acc != 1:
                for _ in range(w):
                    acc = acc * acc % n2
            for powers, digits in terms:
                digit = digits[d]
                if digit:
                    acc = acc * powers[digit] % n2
        out.append(acc)
    return out


def sliding_windows(
    key: PublicKey,
    bases: Sequence[mpz],
    n_rows: int,
    self_coef: int,
    indptr: IntArray,
    indices: IntArray,
    coefs: Sequence[int],
) -> list[mpz]:
    """``linear_step``'s gmpy2 path (sliding windows per base), whatever the CPU."""
    ptr, cols = np.asarray(indptr, dtype=np.int64), np.asarray(indices, dtype=np.int64)
    terms = paillier._terms(n_rows, self_coef, ptr, cols, np.asarray(coefs, dtype=np.int64))
    return paillier._gmp_rows(key, bases, n_rows, *terms, paillier.TABLE_BUDGET)


STEP_METHODS = {
    "powmod per term": powmod_per_term,
    "Straus 3-bit fixed (f1519e7)": straus_fixed_window,
    "sliding windows (gmpy2)": sliding_windows,
}
if native():
    STEP_METHODS["kernel lanes (current, IFMA)"] = linear_step


def bench_size(bits: int, args: argparse.Namespace, clock: Callable[[], float]) -> list[Row]:
    public, _ = phe.generate_paillier_keypair(n_length=bits)
    key = PublicKey(public.n)
    n2 = mpz(key.nsquare)
    repeat = args.repeat
    a, b = mpz(secrets.randbelow(int(n2))), mpz(secrets.randbelow(int(n2)))
    rows: list[Row] = []

    def add(label: str, unit: str, seconds: float) -> None:
        scale = {"us": 1e6, "ms": 1e3, "s": 1.0}[unit]
        rows.append((label, unit, {bits: seconds * scale}))

    mul = measure(clock, lambda: a * b % n2, 20000, repeat)
    add("multiplication a*b % N^2", "us", mul)
    add("squaring a*a % N^2", "us", measure(clock, lambda: a * a % n2, 20000, repeat))
    fresh = FreshNoise(key)
    add("noise r^N mod N^2 (FreshNoise)", "ms", measure(clock, lambda: fresh.draw(1), 20, repeat))
    fixed = FixedBaseNoise(key)
    started = clock()
    fixed.draw(1)
    add("FixedBaseNoise table build (once)", "s", clock() - started)
    table_bytes = fixed.shape.entries * sys.getsizeof(fixed.base)
    rows.append(("FixedBaseNoise table values", "MiB", {bits: table_bytes / 2**20}))
    batch = 50
    per_draw = measure(clock, lambda: fixed.draw(batch), 3, repeat) / batch
    add("noise draw (FixedBaseNoise, 8-bit squaring-free comb)", "ms", per_draw)

    def power(exponent_bits: int) -> Callable[[], object]:
        exponent = mpz(secrets.randbits(exponent_bits) | 1 << (exponent_bits - 1))
        return lambda: gmpy2.powmod(a, exponent, n2)

    for f in (48, 32, 24):
        add(f"powmod, {f}-bit exponent", "us", measure(clock, power(f), 200, repeat))
    partial = power(2 * bits + 130)
    add("partial decryption, 2|N|+130-bit exponent", "ms", measure(clock, partial, 3, repeat))
    share = secrets.randbits(2 * bits + 130) | 1 << (2 * bits + 129)
    lanes = [a] * 8
    portable = (("GMP mpn, constant time", "gmp"), ("gmpy2 powmod_sec", "gmpy2"))
    for label, path in (("native kernel", None), *portable):
        if path is None and not native():
            continue  # this CPU or build has only the portable path
        if path == "gmp" and modexp._MPN is None:
            continue  # _mpn was not built
        os.environ.pop(ENVIRONMENT, None) if path is None else os.environ.update(
            {ENVIRONMENT: path}
        )
        per_batch = measure(clock, lambda: powmod_many(lanes, share, int(n2)), 1, repeat)
        add(f"  same, per value in a batch of 8 ({label})", "ms", per_batch / len(lanes))
    os.environ.pop(ENVIRONMENT, None)
    rng = np.random.default_rng(args.seed)
    n_bases = args.rows + args.rows // 3
    bases = [mpz(secrets.randbelow(int(n2))) for _ in range(n_bases)]
    counts = rng.poisson(args.degree, args.rows)
    indptr = np.zeros(args.rows + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    indices = rng.integers(0, n_bases, int(indptr[-1])).astype(np.int64)
    for f in (48, 32, 24):
        coefs = [int(v) for v in rng.integers(0, 2**f, int(indptr[-1]), dtype=np.int64)]
        self_coef = int(rng.integers(2 ** (f - 1), 2**f))
        reference: list[mpz] | None = None
        for name, method in STEP_METHODS.items():
            n_rows = min(args.rows, args.naive_rows) if method is powmod_per_term else args.rows
            terms = int(indptr[n_rows])
            ptr = indptr[: n_rows + 1]
            times = []
            for _ in range(repeat):
                started = clock()
                result = method(key, bases, n_rows, self_coef, ptr, indices, coefs)
                times.append((clock() - started) / terms)
                if reference is None:
                    reference = result
                if result[: len(reference)] != reference[: len(result)]:
                    raise SystemExit(f"{name} disagrees with the powmod reference")
            per_term = statistics.median(times)
            add(f"linear_step/term f={f}, {name}", "us", per_term)
            rows.append(
                (f"  same in multiplications mod N^2 (f={f}, {name})", "", {bits: per_term / mul})
            )
    return rows


def load_kernel(path: str) -> ModuleType:
    """Another build of ``riskprop.core._mbx`` (a shared object), loaded beside the current one."""
    spec = importlib.util.spec_from_file_location("riskprop.core._mbx", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{path}: not a Python extension module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Baseline:
    """A kernel build from before ``comb`` took a sub-table size (it takes 6 arguments)."""

    def __init__(self, module: ModuleType) -> None:
        self.module = module

    def comb(self, *args: object) -> bytes:
        if len(args) == 7 and args[6]:
            raise SystemExit("the baseline kernel cannot scan sub-tables")
        return bytes(self.module.comb(*args[:6]))


@contextmanager
def kernel(module: object) -> Iterator[None]:
    """``ProductTable`` calls ``module`` while inside."""
    saved = modexp._KERNEL
    modexp._KERNEL = module  # type: ignore[assignment]
    try:
        yield
    finally:
        modexp._KERNEL = saved


def measure_together(
    clock: Callable[[], float], ops: dict[str, Callable[[], object]], count: int, repeat: int
) -> dict[str, float]:
    """Median over ``repeat`` rounds of the time of one call of each op (``count`` calls per op
    and round, the ops in turn within a round)."""
    times: dict[str, list[float]] = {label: [] for label in ops}
    for _ in range(repeat):
        for label, op in ops.items():
            started = clock()
            for _ in range(count):
                op()
            times[label].append((clock() - started) / count)
    return {label: statistics.median(values) for label, values in times.items()}


@dataclass(frozen=True)
class Timed:
    """An operation to time: one call makes ``values`` exponentiations or draws."""

    call: Callable[[], object]
    values: int
    unit: str  # of the figure per value: "ms" or "us"


def kernel_powmod(
    module: ModuleType, bases: Sequence[int], exponent: int, modulus: int, w: int, secret: bool
) -> Timed:
    """One call of ``module.powmod``: ``bases**exponent mod modulus`` with window ``w``."""
    c = modexp._modulus(modulus)
    blob = modexp._encode(bases, modulus, c.nbytes)
    raw = exponent.to_bytes((exponent.bit_length() + 7) // 8, "little")
    call = functools.partial(module.powmod, blob, raw, c.raw, c.r2, c.k0, w, secret)
    return Timed(call, len(bases), "ms")


def draw_with(module: object, noise: FixedBaseNoise, count: int) -> list[mpz]:
    """``noise.draw(count)`` with ``module`` as the kernel."""
    with kernel(module):
        return noise.draw(count)


def exponent_ops(
    n2: int, share_bits: int, baseline: ModuleType | None, notes: list[str]
) -> dict[str, Timed]:
    """Exponentiations by a dense and a sparse share-sized exponent, a batch of 8 in the kernel
    (constant-time, public and the baseline's), one base with gmpy2 (powmod, powmod_sec)."""
    limbs = modexp.limbs(n2.bit_length())
    bases = [secrets.randbelow(n2) for _ in range(modexp.LANES)]
    # the baseline's window: the fewest products (before the scan)
    before = min(range(1, modexp.MAX_WINDOW + 1), key=lambda w: 2**w - 1 + -(-share_bits // w))
    exponents = {
        "dense": secrets.randbits(share_bits) | 1 << (share_bits - 1),
        "sparse": 1 << (share_bits - 1) | 1,
    }
    if baseline is not None:
        notes.append(f"baseline: w={before}")
    ops = {}
    for name, e in exponents.items():
        if native():
            assert modexp._KERNEL is not None
            secret = modexp.window(e, secret=True, limbs=limbs)
            public = modexp.window(e, secret=False, limbs=limbs)
            notes.append(f"{name}: secret w={secret}, public w={public}")
            ops[f"kernel, secret {name} exponent, constant-time"] = kernel_powmod(
                modexp._KERNEL, bases, e, n2, secret, True
            )
            ops[f"kernel, public {name} exponent"] = kernel_powmod(
                modexp._KERNEL, bases, e, n2, public, False
            )
        if baseline is not None:
            ops[f"baseline kernel, secret {name} exponent"] = kernel_powmod(
                baseline, bases, e, n2, before, True
            )
        arguments = (mpz(bases[0]), mpz(e), mpz(n2))
        ops[f"gmpy2.powmod, {name} exponent"] = Timed(
            functools.partial(gmpy2.powmod, *arguments), 1, "ms"
        )
        ops[f"gmpy2.powmod_sec, {name} exponent"] = Timed(
            functools.partial(gmpy2.powmod_sec, *arguments), 1, "ms"
        )
    if native():
        # the scan alone: an all-ones exponent has no zero window, so the public path does the
        # same products, each reading its entry directly
        assert modexp._KERNEL is not None
        ones = (1 << (8 * -(-share_bits // 8))) - 1
        w = modexp.window(ones, secret=True, limbs=limbs)
        for secret in (True, False):
            label = f"kernel, all-ones exponent, w={w}, {'scanned' if secret else 'indexed'}"
            ops[label] = kernel_powmod(modexp._KERNEL, bases, ones, n2, w, secret)
    return ops


def comb_ops(
    key: PublicKey, draws: int, baseline: ModuleType | None, notes: list[str]
) -> dict[str, Timed]:
    """Noise draws with the comb shaped for 3,000 draws, gathered and (in the kernel)
    constant-time, and a fresh ``r**N`` by ``gmpy2.powmod_sec``; the constant-time comb's
    shape gathered, to time its scans alone."""
    ops = {}
    shapes = {}
    for constant_time in (False, True) if native() else (False,):
        shape = FixedBaseNoise.shape_for(
            key.bits, 3_000, native=native(), constant_time=constant_time
        )
        how = "constant-time" if constant_time else "gathered"
        notes.append(f"{how} comb: {shape}")
        shapes[how] = shape
        noise = FixedBaseNoise(key, shape=shape, constant_time=constant_time)
        noise.draw(1)  # builds the table
        ops[f"noise draw, {how} comb"] = Timed(functools.partial(noise.draw, draws), draws, "us")
        if baseline is not None and not constant_time and native():
            call = functools.partial(draw_with, _Baseline(baseline), noise, draws)
            ops["noise draw, gathered comb, baseline kernel"] = Timed(call, draws, "us")
    r = mpz(secrets.randbelow(key.n - 1) + 1)
    fresh = functools.partial(gmpy2.powmod_sec, r, mpz(key.n), mpz(key.nsquare))
    ops["noise r^N mod N^2 with gmpy2.powmod_sec"] = Timed(fresh, 1, "us")
    if "constant-time" in shapes:
        noise = FixedBaseNoise(key, shape=shapes["constant-time"])
        noise.draw(1)
        call = functools.partial(noise.draw, draws)
        ops["noise draw, constant-time comb's shape, gathered"] = Timed(call, draws, "us")
    return ops


def fitted_scan_costs(
    key: PublicKey, share_bits: int, per_value: dict[str, float]
) -> dict[str, float]:
    """``SCAN_COST`` and ``SHARED_SCAN_COST`` (modexp) as measured: the time of the scans over
    their entries, over the time of a Montgomery product, times the limbs."""
    from riskprop.core import _mbx

    n2 = key.nsquare
    limbs = modexp.limbs(n2.bit_length())
    fitted = {}
    ones = (1 << (8 * -(-share_bits // 8))) - 1
    w = modexp.window(ones, secret=True, limbs=limbs)
    scanned = per_value.get(f"kernel, all-ones exponent, w={w}, scanned")
    indexed = per_value.get(f"kernel, all-ones exponent, w={w}, indexed")
    if scanned is not None and indexed is not None:
        c = modexp._modulus(n2)
        raw = ones.to_bytes(-(-share_bits // 8), "little")
        _, ops, _ = _mbx.powmod_traced(bytes(c.nbytes), raw, c.raw, c.r2, c.k0, w, False)
        windows = ops.count(b"M")
        product = indexed / len(ops)
        fitted["SCAN_COST"] = (scanned - indexed) / (windows << w) / product * limbs
    ct = per_value.get("noise draw, constant-time comb")
    gathered = per_value.get("noise draw, constant-time comb's shape, gathered")
    if ct is not None and gathered is not None:
        shape = FixedBaseNoise.shape_for(key.bits, 3_000, native=True, constant_time=True)
        reads = shape.blocks * shape.columns
        product = gathered / (shape.draw_multiplications + 1)  # and the conversion
        fitted["SHARED_SCAN_COST"] = (ct - gathered) / (reads << shape.teeth) / product * limbs
    return fitted


def bench_constant_time(
    bits: int, args: argparse.Namespace, clock: Callable[[], float], baseline: ModuleType | None
) -> list[Row]:
    public, _ = phe.generate_paillier_keypair(n_length=bits)
    key = PublicKey(public.n)
    share_bits = 2 * bits + 210  # 4306 at 2048 bits, as the dealt keys' shares
    notes: list[str] = []
    ops = exponent_ops(key.nsquare, share_bits, baseline, notes)
    ops.update(comb_ops(key, 400, baseline, notes))
    print(f"{bits}-bit N, {share_bits}-bit exponents: " + "; ".join(notes))
    calls = {label: op.call for label, op in ops.items()}
    seconds = measure_together(clock, calls, 3, args.repeat)
    per_value = {label: seconds[label] / op.values for label, op in ops.items()}
    rows: list[Row] = []
    for label, op in ops.items():
        scale = {"ms": 1e3, "us": 1e6}[op.unit]
        rows.append((label, op.unit, {bits: per_value[label] * scale}))
    ratios = {
        "ratio: constant-time / baseline, secret dense": (
            "kernel, secret dense exponent, constant-time",
            "baseline kernel, secret dense exponent",
        ),
        "ratio: powmod_sec / powmod, dense": (
            "gmpy2.powmod_sec, dense exponent",
            "gmpy2.powmod, dense exponent",
        ),
        "ratio: constant-time / gathered comb draw": (
            "noise draw, constant-time comb",
            "noise draw, gathered comb",
        ),
    }
    for label, (top, bottom) in ratios.items():
        if top in per_value and bottom in per_value:
            rows.append((label, "", {bits: per_value[top] / per_value[bottom]}))
    for name, value in fitted_scan_costs(key, share_bits, per_value).items():
        rows.append((f"fitted {name} (modexp; products x limbs per entry)", "", {bits: value}))
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Micro-benchmark of the modular arithmetic.")
    parser.add_argument("--bits", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--repeat", type=int, default=5, help="repetitions per figure (>= 5)")
    parser.add_argument("--rows", type=int, default=3000, help="CSR rows for linear_step")
    parser.add_argument("--degree", type=float, default=3.3, help="mean terms per row")
    parser.add_argument(
        "--naive-rows", type=int, default=600, help="rows the powmod-per-term reference runs"
    )
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--constant-time", action="store_true", help="time secret exponents and the noise comb"
    )
    parser.add_argument(
        "--baseline-kernel", metavar="PATH", help="an _mbx build to compare (--constant-time)"
    )
    args = parser.parse_args(argv)
    if args.repeat < 5:
        parser.error("--repeat must be at least 5 (figures are medians)")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    print("$ " + shlex.join([os.path.basename(sys.executable), *sys.argv]))
    print(
        f"python {platform.python_version()}, gmpy2 {gmpy2.version()}, {gmpy2.mp_version()}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs, load average "
        + ", ".join(f"{v:.2f}" for v in os.getloadavg())
    )
    workload = (
        "times per exponentiation or draw"
        if args.constant_time
        else f"CSR: {args.rows} rows, Poisson({args.degree})"
    )
    print(f"{args.clock} time, median of {args.repeat}; arithmetic: {backend()}; {workload}")
    baseline = load_kernel(args.baseline_kernel) if args.baseline_kernel else None
    merged: dict[tuple[str, str], dict[int, float]] = {}
    for bits in args.bits:
        if args.constant_time:
            rows = bench_constant_time(bits, args, clock, baseline)
        else:
            rows = bench_size(bits, args, clock)
        for label, unit, values in rows:
            merged.setdefault((label, unit), {}).update(values)
    width = max(len(label) + len(unit) + 3 for label, unit in merged)
    print("operation".ljust(width) + "".join(f"{f'{b}-bit N':>14}" for b in args.bits))
    for (label, unit), values in merged.items():
        name = f"{label} ({unit})" if unit else label
        cells = "".join(
            f"{values[b]:>14.{1 if values[b] >= 100 else 3}f}" if b in values else f"{'-':>14}"
            for b in args.bits
        )
        print(name.ljust(width) + cells)


if __name__ == "__main__":
    main()
