"""Noise draws in the node process and on its own worker processes (``paillier.PooledNoise``).

Draws ``--draws`` re-randomisation factors of a run's default comb (shaped for that many draws,
as a session shapes it) modulo ``N**2`` for a random odd ``--bits``-bit ``N`` (the arithmetic
costs what a key's modulus costs), ``--repeat`` times per worker count, and prints the median,
minimum and maximum wall seconds and the draws a second. With 1 worker the draws run here
(``FixedBaseNoise.draw``); with more, a ``ProcessExecutor`` of that many workers draws them,
one batch each (its first call builds each worker's comb, and is timed apart as the warm-up).
Prints the CPU's arithmetic path with the figures. Not a test: run it on an idle machine.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import time

from riskprop.compute.executors import ProcessExecutor
from riskprop.core import modexp
from riskprop.core.modexp import describe
from riskprop.core.paillier import FixedBaseNoise, PooledNoise, PublicKey


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draws", type=int, default=20_000, help="noise values a call")
    parser.add_argument("--bits", type=int, default=2048, help="bits of N")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per worker count")
    args = parser.parse_args()
    print(f"arithmetic: {describe()}; cores available: {len(os.sched_getaffinity(0))}")
    key = PublicKey(secrets.randbits(args.bits) | (1 << (args.bits - 1)) | 1)
    shape = FixedBaseNoise.shape_for(key.bits, args.draws, native=modexp.native())
    noise = FixedBaseNoise(key, shape=shape)
    started = time.perf_counter()
    noise.draw(1)  # builds the comb here
    print(
        f"{args.bits}-bit N, comb of {shape.blocks} tables of 2**{shape.teeth} "
        f"({shape.columns} columns), built in {time.perf_counter() - started:.2f} s"
    )
    for workers in args.workers:
        executor = ProcessExecutor(workers) if workers > 1 else None
        source = noise if executor is None else PooledNoise(noise, executor)
        try:
            started = time.perf_counter()
            source.draw(args.draws)
            warm = time.perf_counter() - started
            times = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                values = source.draw(args.draws)
                times.append(time.perf_counter() - started)
            assert len(values) == args.draws
        finally:
            if executor is not None:
                executor.close()
        median = statistics.median(times)
        print(
            f"workers {workers}: {median:.3f} s [{min(times):.3f}, {max(times):.3f}] for "
            f"{args.draws} draws, {args.draws / median:,.0f} draws/s "
            f"({median / args.draws * 1e3:.3f} ms a draw); first call {warm:.3f} s"
        )


if __name__ == "__main__":
    main()
