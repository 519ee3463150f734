"""The arithmetic of dealerless key generation (``riskprop.core.dkg``): sieving, Shamir sharing
over small primes, the payload codec, and the biprimality test."""

from __future__ import annotations

import math

import gmpy2
import numpy as np
import pytest
from gmpy2 import mpz

from riskprop.core import dkg
from riskprop.errors import ProtocolError


def test_sieved_candidates_have_no_small_factor() -> None:
    n = 3
    sieve = dkg.Sieve.make(256, n)
    primes = sieve.prime_array
    count = 50
    units = [dkg.random_below(primes - 1, (count, len(primes))) + 1 for _ in range(n)]
    # Additive shares of the product computed in the clear stand in for the BGW products.
    product = units[0] * units[1] % primes * units[2] % primes
    split = [dkg.random_below(primes, product.shape) for _ in range(n - 1)]
    last = (product - split[0] - split[1]) % primes
    shares = [sieve.candidate_shares(x, i + 1) for i, x in enumerate([*split, last])]
    for candidate in map(sum, zip(*shares, strict=True)):
        assert candidate % 4 == 3
        assert all(candidate % ell for ell in (3, *sieve.primes))
        assert math.isqrt(1 << 511) < candidate < 1 << 256


def test_shamir_over_small_primes_reconstructs() -> None:
    primes = np.array([7, 11, 13, 101], dtype=np.int64)
    secret = dkg.random_below(primes, (20, 4))
    shares = dkg.share_mod_primes(secret, primes, 2, 5)
    weights = dkg.lagrange_mod_primes(5, primes)
    assert np.array_equal((weights[:, None, :] * shares).sum(axis=0) % primes, secret)


def test_payload_codec_round_trips_and_rejects_garbage() -> None:
    array = np.arange(12, dtype=np.int64).reshape(3, 4) * 5000
    ints = [0, -1, 2**700 + 3, -(2**64)]
    data = dkg.encode_fields([array, ints])
    decoded = dkg.decode_fields(data)
    assert np.array_equal(decoded[0], array)
    assert decoded[1] == ints
    for bad in (data[:-1], data + b"x", b"", b"\x00\x00\x00\x01\x09"):
        with pytest.raises(ProtocolError, match="malformed key-generation payload"):
            dkg.decode_fields(bad)


def test_public_base_has_jacobi_one_and_biprimality_detects_a_non_biprime() -> None:
    p, q, r = (int(gmpy2.next_prime(mpz(2) ** 120 * k)) for k in (3, 5, 7))
    bad = p * q * r
    g = dkg.public_base("s", bad, "x")
    assert gmpy2.jacobi(g, bad) == 1
    # With shares of a fake "phi": the Boneh-Franklin check fails for most g.
    fails = 0
    for label in range(20):
        base = dkg.public_base("s", bad, str(label))
        v1 = pow(base, (bad - p - q + 1) // 4 if (bad - p - q + 1) % 4 == 0 else 1, bad)
        fails += not dkg.biprimality_holds(bad, [v1, 1])
    assert fails >= 10
