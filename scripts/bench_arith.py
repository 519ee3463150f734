#!/usr/bin/env python3
"""Micro-benchmark of the modular arithmetic under a secure run, per modulus size.

Times (median over ``--repeat`` repetitions, CPU time of this process by default so that other
load on the machine counts less) of: one multiplication and one squaring mod ``N**2``
(``a * b % n2`` with gmpy2), a fresh noise value ``r**N mod N**2``, a ``FixedBaseNoise`` draw
(and its one-off table), one ``powmod`` with a 48-, 32- and 24-bit exponent, one partial
decryption exponent of ``2|N| + 130`` bits (also per value in a batch of eight through
``powmod_many``: the native IFMA kernel where available, and gmpy2), and ``linear_step`` per
CSR term (the self term of each row included) on a random CSR of ``--rows`` rows with
Poisson(``--degree``) terms per row over ``rows + rows/3`` bases, for f = 48, 32 and 24-bit
coefficients, three ways:

* ``powmod per term``: one ``gmpy2.powmod`` per term (before commit f1519e7);
* ``Straus, 3-bit fixed windows``: the version of commit f1519e7 (copied below);
* ``sliding windows (current)``: ``riskprop.core.paillier.linear_step``.

Each ``linear_step`` figure also appears in multiplications mod ``N**2`` (time / the
multiplication above), which is what a lower-bound count of a run's arithmetic multiplies.

    python scripts/bench_arith.py --bits 1024 2048 --repeat 5
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import gmpy2
import numpy as np
import phe
from gmpy2 import mpz

from riskprop.core.modexp import ENVIRONMENT, native, powmod_many
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


STEP_METHODS = {
    "powmod per term": powmod_per_term,
    "Straus 3-bit fixed (f1519e7)": straus_fixed_window,
    "sliding windows (current)": linear_step,
}


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
    for label, path in (("native kernel", None), ("gmpy2", "gmp")):
        if path is None and not native():
            continue  # this CPU or build has only the gmpy2 path
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
    print(
        f"{args.clock} time, median of {args.repeat}; CSR: {args.rows} rows, Poisson({args.degree})"
    )
    merged: dict[tuple[str, str], dict[int, float]] = {}
    for bits in args.bits:
        for label, unit, values in bench_size(bits, args, clock):
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
