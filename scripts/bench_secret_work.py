"""The node's secret work in its own process and on its own worker processes: noise draws
(``paillier.PooledNoise``) and partial decryptions (``compute.share_in_workers``).

For a dealt ``--bits``-bit key: ``--draws`` re-randomisation factors of a run's default comb
(shaped for that many draws, as a session shapes it), and the partial decryptions of
``--partials`` packed ciphertexts in the session's chunks (``DECRYPT_CHUNK`` a worker and
call), ``--repeat`` times per worker count; prints the median, minimum and maximum wall
seconds. With 1 worker the work runs here; with more, a ``ProcessExecutor`` of that many
workers runs it (its first call, which starts the workers and builds each one's comb, is
timed apart as the warm-up). Prints the CPU's arithmetic path with the figures
(``RISKPROP_ARITHMETIC=gmp`` forces the portable path, ``gmpy2`` the portable path without
``_mpn``). Not a test: run it on an idle machine.

    python scripts/bench_secret_work.py --bits 2048 --workers 1 2 --repeat 5
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import time
from collections.abc import Callable

import phe
from gmpy2 import mpz

from riskprop.compute.executors import ProcessExecutor
from riskprop.core import modexp
from riskprop.core.modexp import describe
from riskprop.core.paillier import FixedBaseNoise, PooledNoise, PublicKey, embed
from riskprop.core.threshold import KeyShare, deal, partial_decrypt
from riskprop.protocol.session import DECRYPT_CHUNK


def timed(call: Callable[[], object], repeat: int) -> tuple[float, list[float]]:
    """(seconds of the first call, seconds of each of ``repeat`` more)."""
    started = time.perf_counter()
    call()
    first = time.perf_counter() - started
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return first, times


def line(what: str, count: int, first: float, times: list[float]) -> str:
    median = statistics.median(times)
    return (
        f"  {what}: {median:.3f} s [{min(times):.3f}, {max(times):.3f}] for {count}, "
        f"{median / count * 1e3:.3f} ms each; first call {first:.3f} s"
    )


def decrypt_all(share: KeyShare, packed: list[mpz], executor: ProcessExecutor | None) -> None:
    """As a session does: chunks of ``DECRYPT_CHUNK`` a worker."""
    chunk = DECRYPT_CHUNK * (executor.workers if executor else 1)
    for start in range(0, len(packed), chunk):
        partial_decrypt(share, packed[start : start + chunk], executor=executor)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bits", type=int, default=2048, help="bits of N")
    parser.add_argument("--draws", type=int, default=20_000, help="noise values a call")
    parser.add_argument("--partials", type=int, default=512, help="packed ciphertexts a call")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per worker count")
    args = parser.parse_args()
    print(f"arithmetic: {describe()}; cores available: {len(os.sched_getaffinity(0))}")
    _, private = phe.generate_paillier_keypair(n_length=args.bits)
    share = deal(private.p, private.q, ["alice", "bob", "charlie"], 1)[0]
    key = PublicKey(private.public_key.n)
    shape = FixedBaseNoise.shape_for(key.bits, args.draws, native=modexp.native())
    noise = FixedBaseNoise(key, shape=shape)
    started = time.perf_counter()
    noise.draw(1)  # builds the comb here
    print(
        f"{key.bits}-bit N; comb of {shape.blocks} tables of 2**{shape.teeth} "
        f"({shape.columns} columns), built in {time.perf_counter() - started:.2f} s"
    )
    packed = embed(key, [secrets.randbelow(key.n) for _ in range(args.partials)])
    for workers in args.workers:
        executor = ProcessExecutor(workers) if workers > 1 else None
        source = noise if executor is None else PooledNoise(noise, executor)
        try:
            print(f"workers {workers}:")
            first, times = timed(lambda: source.draw(args.draws), args.repeat)  # noqa: B023
            print(line("noise draws", args.draws, first, times))
            first, times = timed(
                lambda: decrypt_all(share, packed, executor),  # noqa: B023
                args.repeat,
            )
            print(line("partial decryptions", args.partials, first, times))
        finally:
            if executor is not None:
                executor.close()


if __name__ == "__main__":
    main()
