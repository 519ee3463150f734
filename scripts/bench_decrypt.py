#!/usr/bin/env python3
"""What verifiable decryption costs: one request of ``k`` packed ciphertexts, with and without
proofs, per key size and batch size (docs/performance.md, "Verifiable decryption").

Times (CPU of this process, median over ``--repeat`` repetitions, every figure of one setting
measured in turn within a repetition) of the steps of one decryption with t = 1:

* ``partial``: ``c**(2 Delta s_i)`` for the ``k`` ciphertexts (the requester's own and the
  helper's cost the same);
* ``combine``: the requester's ``combine`` of two partials (plaintext checks included);
* ``prove``: the helper's batched proof; ``verify``: the requester's check of it.

Decryption without proofs is ``2 partial + combine`` (all the exponentiations of a request,
requester and helper together); the overhead is ``(prove + verify)`` over that. The wall-clock
view of a node that waits for its helper is ``partial + prove + verify + combine`` against
``partial + combine`` (the helper and the requester compute their partials at the same time).
The arithmetic path is printed (``RISKPROP_ARITHMETIC=gmp`` forces the portable path, ``gmpy2``
the portable path without ``_mpn``).

``--chunked`` prints instead what a session's progress costs: ``partial`` in one call next to
the same work in chunks of ``DECRYPT_CHUNK`` ciphertexts (the session counts decrypted
ciphertexts between chunks, for the time left of its decryption phase).

    python scripts/bench_decrypt.py --bits 1024 2048 --batches 64 256 1024 --repeat 5
    python scripts/bench_decrypt.py --chunked --bits 2048 --batches 256 1024 --repeat 7
"""

from __future__ import annotations

import argparse
import platform
import secrets
import statistics
import time

import phe

from riskprop.core import modexp
from riskprop.core.paillier import FreshNoise, PublicKey, encrypt
from riskprop.core.threshold import KeyShare, combine, deal, partial_decrypt, prove, verify
from riskprop.protocol.session import DECRYPT_CHUNK

PARTIES = ("alice", "bob", "charlie")


def measure(shares: list[KeyShare], count: int, repeat: int) -> dict[str, float]:
    """Median CPU seconds per step for a request of ``count`` ciphertexts."""
    key = shares[0].key
    public: PublicKey = key.public
    plain = [secrets.randbelow(public.n) for _ in range(count)]
    ciphertexts = encrypt(public, plain, FreshNoise(public))
    requester, helper = shares[0], shares[1]
    context = b"bench|" + secrets.token_bytes(16)
    samples: dict[str, list[float]] = {"partial": [], "combine": [], "prove": [], "verify": []}
    for _ in range(repeat):
        started = time.process_time()
        own = partial_decrypt(requester, ciphertexts)
        samples["partial"].append(time.process_time() - started)
        theirs = partial_decrypt(helper, ciphertexts)
        started = time.process_time()
        proof = prove(helper, ciphertexts, theirs, context)
        samples["prove"].append(time.process_time() - started)
        started = time.process_time()
        valid = verify(key, helper.party, ciphertexts, theirs, proof, context)
        samples["verify"].append(time.process_time() - started)
        if not valid:
            raise SystemExit("a correct proof did not verify")
        started = time.process_time()
        result = combine(key, {"alice": own, "bob": theirs})
        samples["combine"].append(time.process_time() - started)
        if result != plain:
            raise SystemExit("decryption gave the wrong plaintexts")
    return {name: statistics.median(values) for name, values in samples.items()}


def measure_chunks(share: KeyShare, count: int, repeat: int) -> tuple[float, float]:
    """Median CPU seconds of ``partial`` for ``count`` ciphertexts: in one call, in chunks."""
    public = share.key.public
    ciphertexts = encrypt(
        public, [secrets.randbelow(public.n) for _ in range(count)], FreshNoise(public)
    )
    whole, chunked = [], []
    for _ in range(repeat):
        started = time.process_time()
        one = partial_decrypt(share, ciphertexts)
        whole.append(time.process_time() - started)
        started = time.process_time()
        parts = []
        for start in range(0, count, DECRYPT_CHUNK):
            parts += partial_decrypt(share, ciphertexts[start : start + DECRYPT_CHUNK])
        chunked.append(time.process_time() - started)
        if parts != one:
            raise SystemExit("chunks gave other partial decryptions")
    return statistics.median(whole), statistics.median(chunked)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bits", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--chunked", action="store_true", help="one call against chunks")
    args = parser.parse_args()
    print(f"arithmetic: {modexp.backend()}; CPU: {platform.processor() or platform.machine()}")
    if args.chunked:
        print(f"bits  k     one call  chunks of {DECRYPT_CHUNK}  ratio")
        for bits in args.bits:
            _, private = phe.generate_paillier_keypair(n_length=bits)
            share = deal(private.p, private.q, PARTIES, 1)[0]
            for count in args.batches:
                whole, chunked = measure_chunks(share, count, args.repeat)
                print(f"{bits:<5} {count:<5} {whole:8.3f}  {chunked:12.3f}  {chunked / whole:5.2f}")
        return
    print(
        "bits  k     partial  combine  prove   verify  | no proofs  with  overhead "
        "| wall: no proofs  with  overhead"
    )
    for bits in args.bits:
        _, private = phe.generate_paillier_keypair(n_length=bits)
        shares = deal(private.p, private.q, PARTIES, 1)
        for count in args.batches:
            t = measure(shares, count, args.repeat)
            base = 2 * t["partial"] + t["combine"]
            proofs = t["prove"] + t["verify"]
            wall = t["partial"] + t["combine"]
            print(
                f"{bits:<5} {count:<5} {t['partial']:7.3f}  {t['combine']:7.3f}  "
                f"{t['prove']:6.3f}  {t['verify']:6.3f}  | {base:9.3f}  {base + proofs:5.3f}  "
                f"{proofs / base:7.1%}  | {wall:15.3f}  {wall + proofs:5.3f}  {proofs / wall:7.1%}"
            )


if __name__ == "__main__":
    main()
