"""Benchmark one ``linear_step`` (the per-account multi-exponentiation of an iteration) in this
process, through a local pool of worker processes and, with ``--dask``, through a Dask
``LocalCluster`` of as many worker processes (one thread each) (docs/design-compute.md).

A step of ``--rows`` own accounts, ``--imported`` imported ciphertexts and about ``--degree``
incoming edges per account, with 32-bit exponents (the fixed-point coefficients at the
default precision), modulo ``N**2`` for a random odd ``--bits``-bit ``N`` (the arithmetic costs
what it costs for a real key). For each worker count it prints the median and the spread of
``--repeat`` timed steps (wall time; the pool is started and warmed by an untimed step first),
the speed-up over one worker, the load average when it ended, and what crosses to the workers
(bytes of batches and results, the parent's time to cut the step and decode the results, and
the round trip of the same batches to a function that does no arithmetic: the executor's
shipping and scheduling overhead). Each result is checked equal
to the serial one. Before and after, a probe says whether the cores are free (the same gmpy2
work alone and in parallel): on a shared machine a speed-up means little without it. Prints
the CPU and its arithmetic paths with the figures: ``linear_step`` runs in the AVX-512 IFMA
kernel's lanes where there is one (``RISKPROP_ARITHMETIC=gmp`` forces gmpy2), as do the batched
exponentiations (partial decryptions, packing).

    python scripts/bench_linear_step.py --rows 4000 --workers 1 2 --repeat 3 --dask
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pickle
import secrets
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from gmpy2 import mpz

from riskprop.compute import ProcessExecutor
from riskprop.core import paillier
from riskprop.core.batches import Executor
from riskprop.core.modexp import describe
from riskprop.core.paillier import PublicKey, linear_step, step_batches
from riskprop.core.types import IntArray


@dataclass(frozen=True)
class Step:
    """The arguments of one ``linear_step``."""

    key: PublicKey
    bases: list[mpz]
    rows: int
    c_self: int
    indptr: IntArray
    indices: IntArray
    coefs: list[int]

    @property
    def terms(self) -> int:
        return int(self.indptr[-1]) + self.rows

    def run(self, executor: Executor | None, batch_terms: int | None) -> list[mpz]:
        return linear_step(
            self.key,
            self.bases,
            self.rows,
            self.c_self,
            self.indptr,
            self.indices,
            self.coefs,
            executor=executor,
            batch_terms=batch_terms,
        )


def _squarings(count: int) -> float:
    """Seconds for ``count`` squarings mod a random 4096-bit odd number (a worker's work)."""
    m = mpz(secrets.randbits(4096) | 1)
    a = mpz(secrets.randbits(4000))
    started = time.perf_counter()
    for _ in range(count):
        a = a * a % m
    return time.perf_counter() - started


def free_cores(workers: int, count: int = 100_000) -> str:
    """How much of ``workers`` cores this machine gives right now: the same gmpy2 work in one
    process, then in ``workers`` at once. A ratio near 1 means free cores; near ``workers``,
    that the processes share one (other load on the machine, or SMT siblings)."""
    alone = _squarings(count)
    with ProcessExecutor(workers) as pool:
        pool.map(_squarings, [10] * workers)
        started = time.perf_counter()
        pool.map(_squarings, [count] * workers)
        together = time.perf_counter() - started
    return (
        f"the same work took {alone:.2f} s alone and {together:.2f} s in {workers} processes at "
        f"once (ratio {together / alone:.2f}; 1.0: {workers} free cores)"
    )


def _echo(batch: paillier.StepBatch) -> bytes:
    """What ``run_step_batch`` returns for ``batch`` in size, without the arithmetic."""
    return bytes(batch.n_rows * PublicKey(batch.modulus).ciphertext_bytes)


def batches_of(step: Step, workers: int, batch_terms: int | None) -> list[paillier.StepBatch]:
    """The step's batches for ``workers`` as ``linear_step`` cuts them (``batch_terms``: the
    smallest batch, default the library's)."""
    terms = paillier.BATCH_TERMS if batch_terms is None else batch_terms
    exps = np.asarray(step.coefs, dtype=np.int64)
    return step_batches(
        step.key,
        step.bases,
        step.rows,
        step.c_self,
        step.indptr,
        step.indices,
        exps,
        workers,
        terms,
    )


def cut_figure(step: Step, batches: int, repeat: int) -> str:
    """Median seconds of cutting the step into about ``batches`` batches (``MAX_BATCH_TERMS``
    set to make that many), as ``linear_step`` cuts a bank-sized step: µs a term, bytes out."""
    saved = paillier.MAX_BATCH_TERMS
    paillier.MAX_BATCH_TERMS = max(1, step.terms // batches)
    try:
        times, made = [], []
        for _ in range(repeat):
            started = time.perf_counter()
            made = batches_of(step, 2, 1)
            times.append(time.perf_counter() - started)
    finally:
        paillier.MAX_BATCH_TERMS = saved
    median = statistics.median(times)
    out = sum(len(b.bases) for b in made)
    return (
        f"cut into {len(made)} batches: median {median:.3f} s (min {min(times):.3f}, max "
        f"{max(times):.3f}, {repeat} runs), {median / step.terms * 1e6:.2f} us a term, "
        f"{out / 1e6:.0f} MB of bases out"
    )


def round_trip(step: Step, executor: Executor, batch_terms: int | None) -> float:
    """Median seconds of 3 ``executor.map`` calls of the step's batches to :func:`_echo`."""
    batches = batches_of(step, executor.workers, batch_terms)
    times = []
    for _ in range(3):
        started = time.perf_counter()
        executor.map(_echo, batches)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def make_step(rows: int, imported: int, degree: float, bits: int, seed: int) -> Step:
    rng = np.random.default_rng(seed)
    key = PublicKey(secrets.randbits(bits) | (1 << (bits - 1)) | 1)
    bases = [mpz(secrets.randbelow(key.nsquare)) for _ in range(rows + imported)]
    counts = rng.poisson(degree, rows)
    indptr = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    indices = rng.integers(0, len(bases), int(indptr[-1])).astype(np.int64)
    coefs = [int(v) for v in rng.integers(0, 2**32, int(indptr[-1]), dtype=np.int64)]
    return Step(key, bases, rows, (1 << 31) + 12345, indptr, indices, coefs)


def shipping(step: Step, serial: list[mpz], workers: int, batch_terms: int | None) -> str:
    """What crosses to the workers for one step (pickled batches out, result bytes back) and
    the parent's share of the work: cutting and encoding the batches, decoding the results."""
    started = time.perf_counter()
    batches = batches_of(step, workers, batch_terms)
    cut = time.perf_counter() - started
    out = sum(len(pickle.dumps(b, protocol=pickle.HIGHEST_PROTOCOL)) for b in batches)
    width = step.key.ciphertext_bytes
    back = b"".join(int(v).to_bytes(width, "big") for v in serial)
    started = time.perf_counter()
    decoded = [mpz(int.from_bytes(back[i : i + width], "big")) for i in range(0, len(back), width)]
    decode = time.perf_counter() - started
    assert decoded == serial
    return (
        f"{len(batches)} batches, {out / 1e6:.2f} MB out ({out / len(batches) / 1e3:.0f} KB a "
        f"batch) and {len(back) / 1e6:.2f} MB back, cut {cut * 1e3:.0f} ms, decode "
        f"{decode * 1e3:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=4000, help="own accounts (rows)")
    parser.add_argument("--imported", type=int, default=2000, help="imported ciphertexts")
    parser.add_argument("--degree", type=float, default=3.3, help="incoming edges per row")
    parser.add_argument("--bits", type=int, default=2048, help="bits of N")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=3, help="timed steps per worker count")
    parser.add_argument("--batch-terms", type=int, default=None, help="minimum terms a batch")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--dask", action="store_true", help="also a Dask LocalCluster beside the pool"
    )
    parser.add_argument(
        "--cut",
        type=int,
        default=None,
        metavar="BATCHES",
        help="only time cutting the step into about BATCHES batches (no arithmetic)",
    )
    args = parser.parse_args()

    step = make_step(args.rows, args.imported, args.degree, args.bits, args.seed)
    print(f"arithmetic: {describe()}; cores available: {len(os.sched_getaffinity(0))}")
    print(
        f"step: {step.rows} rows, {args.imported} imported, {step.terms} terms, {args.bits}-bit "
        f"N, 32-bit exponents; load average {os.getloadavg()[0]:.2f} at start"
    )
    if args.cut is not None:
        print(cut_figure(step, args.cut, args.repeat))
        return
    serial = step.run(None, None)
    top = max(args.workers)
    if top > 1:
        print(f"cores before: {free_cores(top)}", flush=True)
    kinds = ["pool", "dask"] if args.dask else ["pool"]
    one_worker = None
    for workers in args.workers:
        for kind in kinds if workers > 1 else ["serial"]:
            with executor_for(kind, workers) as executor:
                times = []
                if executor is not None:
                    step.run(executor, args.batch_terms)  # start and warm the workers
                for _ in range(args.repeat):
                    started = time.perf_counter()
                    got = step.run(executor, args.batch_terms)
                    times.append(time.perf_counter() - started)
                    if got != serial:
                        raise SystemExit(
                            f"{kind} {workers}: the result differs from the serial one"
                        )
                trip = round_trip(step, executor, args.batch_terms) if executor else 0.0
            median = statistics.median(times)
            one_worker = one_worker or median
            line = (
                f"{kind} {workers} worker(s): median {median:.2f} s (min {min(times):.2f}, max "
                f"{max(times):.2f}, {args.repeat} runs), speed-up {one_worker / median:.2f}, "
                f"load {os.getloadavg()[0]:.2f}"
            )
            if workers > 1:
                line += f"; {shipping(step, serial, workers, args.batch_terms)}"
                line += f"; round trip without arithmetic {trip * 1e3:.0f} ms"
            print(line, flush=True)
    if top > 1:
        print(f"cores after: {free_cores(top)}")


@contextlib.contextmanager
def executor_for(kind: str, workers: int) -> Iterator[Executor | None]:
    """None (serial), a process pool, or a Dask executor on a fresh ``LocalCluster`` of
    ``workers`` processes with one thread each."""
    if kind == "serial":
        yield None
    elif kind == "pool":
        with ProcessExecutor(workers) as pool:
            yield pool
    else:
        from distributed import LocalCluster

        from riskprop.compute.dask import DaskExecutor

        with (
            LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},  # its HTTP server: any port
            ) as cluster,
            DaskExecutor(cluster.scheduler_address) as executor,
        ):
            yield executor


if __name__ == "__main__":
    main()
