"""Arithmetic of the dealerless key generation (see ``protocol.keygen`` for the rounds).

Parties have Shamir indices ``1..n``; polynomials have degree ``t`` (products ``2t``) and
``n >= 2t + 1``, so every degree-``2t`` polynomial is fixed by the ``n`` points and Lagrange
interpolation at 0 over all of them is exact (``lagrange_mod``).

Three kinds of sharing are used:

* over ``Z_ell`` for the small sieving primes ``ell > n`` (vectorised with numpy, every entry
  of an array shared at once, each column modulo its own prime);
* over ``Z_m`` for a large modulus ``m`` whose prime factors all exceed ``n`` (a prime ``P >
  2**B`` to multiply candidate primes, the modulus ``N`` itself for the final checks);
* over the integers, for the decryption key: ``f(0)`` is a multiple of ``Delta = n!`` and the
  other coefficients are uniform in ``[0, 2**(|f(0)| + t*ceil(log2 n) + sigma))``, so any
  ``t`` shares are within statistical distance ``t * 2**-sigma`` of shares of another secret.

Randomness comes from the operating system (``secrets``/``os.urandom``), never from numpy's
generators: a share is only hiding if its coefficients are unpredictable.
"""

from __future__ import annotations

import hashlib
import math
import os
import secrets
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import gmpy2
import numpy as np
from gmpy2 import mpz
from numpy.typing import NDArray

from riskprop.errors import ProtocolError

I64 = NDArray[np.int64]

#: Default trial-division bound for a candidate modulus (one gcd with the product of primes).
TRIAL_DIVISION_BOUND = 1 << 20
#: Bits of head-room between the sieving modulus M and a prime of b bits (random high part).
RANDOM_HIGH_BITS = 64


# ----------------------------------------------------------------------------- primes


@cache
def small_primes(bound: int) -> tuple[int, ...]:
    """Primes ``< bound`` (sieve of Eratosthenes)."""
    flags = np.ones(bound, dtype=bool)
    flags[:2] = False
    for k in range(2, math.isqrt(bound - 1) + 1):
        if flags[k]:
            flags[k * k :: k] = False
    return tuple(int(v) for v in np.flatnonzero(flags))


def product(values: Sequence[int]) -> int:
    """Product by a balanced tree (fast for many small factors)."""
    items = [mpz(v) for v in values] or [mpz(1)]
    while len(items) > 1:
        paired = [items[i] * items[i + 1] for i in range(0, len(items) - 1, 2)]
        if len(items) % 2:
            paired.append(items[-1])
        items = paired
    return int(items[0])


@cache
def trial_division_product(bound: int) -> mpz:
    """Product of the odd primes below ``bound``: ``gcd(N, it) = 1`` iff no such prime divides N."""
    return mpz(product(small_primes(bound)[1:]))


def passes_trial_division(moduli: Sequence[int], bound: int = TRIAL_DIVISION_BOUND) -> list[bool]:
    """For each modulus: no prime ``3 <= ell < bound`` divides it. For blocks of moduli a
    remainder tree reduces the prime product modulo products of ever fewer moduli, so each
    modulus costs a gcd and a small division rather than a division of the whole product."""
    big = trial_division_product(bound)
    out: list[bool] = []
    for start in range(0, len(moduli), 256):
        levels = [[mpz(m) for m in moduli[start : start + 256]]]
        while len(levels[-1]) > 1:
            below = levels[-1]
            levels.append([below[i] * below[i + 1] for i in range(0, len(below) - 1, 2)])
            if len(below) % 2:
                levels[-1].append(below[-1])
        rests = [big % levels[-1][0]]
        for level in reversed(levels[:-1]):
            rests = [rests[i // 2] % node for i, node in enumerate(level)]
        out.extend(bool(gmpy2.gcd(r, m) == 1) for r, m in zip(rests, levels[0], strict=True))
    return out


@cache
def field_prime(bits: int) -> int:
    """The smallest prime above ``2**bits``: a public field in which products of candidates
    (below ``2**bits``) are computed without wrapping."""
    return int(gmpy2.next_prime(mpz(1) << bits))


# ------------------------------------------------------------------------------ sieve


@dataclass(frozen=True)
class Sieve:
    """How candidate primes of ``bits`` bits are formed for ``n`` parties.

    ``p = X + M * (r + T0)`` with ``X`` the sum of the parties' additive shares mod ``M`` of a
    unit ``a`` mod ``M``: ``M = 4 * (odd primes <= n) * (primes in (n, y])``. ``p = 3 mod 4``
    and ``p = ell - 1 mod ell`` for the odd primes ``ell <= n`` (fixed, public; such primes
    cannot carry Shamir shares between ``n`` parties); ``p = a mod ell`` otherwise. ``T0`` puts
    ``p`` in ``[sqrt(2) 2**(bits-1), 2**bits)`` so that ``N = p q`` has exactly ``2 * bits``
    bits; each party's random high part ``r_i`` has ``high_bits`` bits.
    """

    bits: int
    parties: int
    tiny: tuple[int, ...]
    primes: tuple[int, ...]
    modulus: int
    offset: int
    high_bits: int

    @classmethod
    def make(cls, bits: int, parties: int) -> Sieve:
        spare = RANDOM_HIGH_BITS + math.ceil(math.log2(parties)) + 4
        if bits < spare + 16:
            raise ValueError(f"primes of {bits} bits are too small to sieve")
        tiny = tuple(p for p in small_primes(parties + 1) if p > 2)
        modulus = 4 * math.prod(tiny)
        primes: list[int] = []
        for ell in small_primes(1 << 16):
            if ell <= parties:
                continue
            if (modulus * ell).bit_length() > bits - spare:
                break
            modulus *= ell
            primes.append(ell)
        root = math.isqrt(1 << (2 * bits - 1)) + 1  # > sqrt(2) * 2**(bits-1)
        offset = -(-root // modulus)
        high_bits = bits - modulus.bit_length() - math.ceil(math.log2(parties)) - 4
        return cls(bits, parties, tiny, tuple(primes), modulus, offset, high_bits)

    @property
    def prime_array(self) -> I64:
        return np.array(self.primes, dtype=np.int64)

    def prime_probability(self) -> float:
        """P(candidate is prime): ``(1 / ln p) / prod (1 - 1/ell)`` over every sieved prime."""
        survive = 0.5 * math.prod(1 - 1 / p for p in self.tiny + self.primes)
        return 1 / (self.bits * math.log(2)) / survive

    def expected_pairs(self) -> float:
        """Expected number of candidate pairs until both are prime."""
        return 1 / self.prime_probability() ** 2

    @cache  # noqa: B019 - instances are few, immutable and hashable
    def crt_basis(self) -> tuple[list[int], int]:
        """``E_ell = 1 mod ell, 0 mod M/ell`` for each sieving prime, and party 1's fixed part
        (``3 mod 4``, ``ell - 1 mod`` each tiny odd prime, ``0 mod`` the sieving primes)."""
        m = self.modulus
        basis = [(m // ell) * pow(m // ell, -1, ell) % m for ell in self.primes]
        fixed = 0
        for ell, residue in [(4, 3), *((p, p - 1) for p in self.tiny)]:
            fixed += (m // ell) * pow(m // ell, -1, ell) * residue
        return basis, fixed % m

    def candidate_shares(self, additive: I64, me: int) -> list[int]:
        """This party's candidate shares ``p_i = X_i + M (r_i + [i = 1] T0)`` from its additive
        shares mod each sieving prime (``additive`` has one row per candidate)."""
        basis, fixed = self.crt_basis()
        m = self.modulus
        combined = additive.astype(object).dot(np.array(basis, dtype=object))
        own_fixed = fixed if me == 1 else 0
        highs = random_residues(1 << self.high_bits, len(combined))
        own_offset = self.offset if me == 1 else 0
        return [
            (int(x) + own_fixed) % m + m * (high + own_offset)
            for x, high in zip(combined.tolist(), highs, strict=True)
        ]


# ------------------------------------------------------ vectorised sharing mod small primes


def random_below(bounds: I64, shape: tuple[int, ...]) -> I64:
    """Exactly uniform integers in ``[0, bounds)`` (bounds ``< 2**31``, broadcast over the last
    axis): 32-bit words from the OS, rejecting the few at or above the largest multiple."""
    limit = (np.uint64(1 << 32) // bounds.astype(np.uint64)) * bounds.astype(np.uint64)
    limit = np.broadcast_to(limit, shape)
    words = np.frombuffer(os.urandom(4 * math.prod(shape)), dtype=np.uint32).reshape(shape)
    words = words.astype(np.uint64)
    bad = words >= limit
    while bad.any():
        fresh = np.frombuffer(os.urandom(4 * int(bad.sum())), dtype=np.uint32)
        words[bad] = fresh
        bad = words >= limit
    return (words % bounds.astype(np.uint64)).astype(np.int64)


def share_mod_primes(secret: I64, primes: I64, degree: int, parties: int) -> I64:
    """Shamir shares of every entry of ``secret`` (last axis: one prime each): out[j-1] is
    party ``j``'s share, ``f(j) = secret + c_1 j + ... + c_t j**t mod ell``."""
    coefficients = random_below(primes, (degree, *secret.shape))
    out = np.empty((parties, *secret.shape), dtype=np.int64)
    for j in range(1, parties + 1):
        acc = np.zeros_like(secret)
        for c in coefficients[::-1]:
            acc = (acc * j + c) % primes
        out[j - 1] = (acc * j + secret) % primes if degree else secret % primes
    return out


def lagrange_mod(parties: int, modulus: int) -> list[int]:
    """Lagrange coefficients at 0 over the points ``1..n`` modulo ``modulus`` (its prime
    factors must exceed ``n``): ``f(0) = sum_j lambda_j f(j)`` for every ``deg f < n``."""
    out = []
    for j in range(1, parties + 1):
        num = den = 1
        for k in range(1, parties + 1):
            if k != j:
                num *= k
                den *= k - j
        out.append(num * pow(den, -1, modulus) % modulus)
    return out


def lagrange_mod_primes(parties: int, primes: I64) -> I64:
    """``lagrange_mod`` for each small prime: shape ``(n, len(primes))``."""
    return np.array(
        [lagrange_mod(parties, int(ell)) for ell in primes.tolist()], dtype=np.int64
    ).T.copy()


# ----------------------------------------------------------- sharing mod a large modulus


def evaluate(coefficients: Sequence[int], x: int) -> int:
    """``sum_k coefficients[k] * x**k`` (Horner)."""
    acc = 0
    for c in reversed(coefficients):
        acc = acc * x + c
    return acc


def random_residues(modulus: int, count: int) -> list[int]:
    """``count`` uniform residues mod ``modulus`` from one read of the OS generator (128 extra
    bits each: statistical distance below ``count * 2**-128``)."""
    width = (modulus.bit_length() + 128 + 7) // 8
    data = os.urandom(width * count)
    return [
        int.from_bytes(data[i : i + width], "big") % modulus for i in range(0, width * count, width)
    ]


def share_many_mod(
    secrets_: Sequence[int], modulus: int, degree: int, parties: int, *, zero: bool = False
) -> list[list[int]]:
    """Shamir shares over ``Z_modulus`` of each secret (or, with ``zero``, of 0 by polynomials of
    ``degree``): out[j-1][k] is party ``j``'s share of secret ``k``."""
    count = len(secrets_)
    coefficients = random_residues(modulus, count * degree)
    out: list[list[int]] = [[] for _ in range(parties)]
    for k in range(count):
        poly = [0 if zero else secrets_[k] % modulus]
        poly += coefficients[k * degree : (k + 1) * degree]
        for j in range(1, parties + 1):
            out[j - 1].append(evaluate(poly, j) % modulus)
    return out


def share_mod(secret: int, modulus: int, degree: int, parties: int) -> list[int]:
    """Shamir shares of ``secret`` over ``Z_modulus``: party ``j`` gets ``f(j) mod modulus``."""
    return [column[0] for column in share_many_mod([secret], modulus, degree, parties)]


def zero_shares(modulus: int, degree: int, parties: int) -> list[int]:
    """Shares of 0 by a uniform polynomial of ``degree`` (re-randomises a revealed product)."""
    return [column[0] for column in share_many_mod([0], modulus, degree, parties, zero=True)]


def reconstruct_mod(shares: Sequence[int], modulus: int) -> int:
    """``f(0) mod modulus`` from all ``n`` shares of a polynomial of degree below ``n``."""
    weights = lagrange_mod(len(shares), modulus)
    return sum(w * s for w, s in zip(weights, shares, strict=True)) % modulus


def share_integer(secret: int, degree: int, parties: int, sigma: int) -> list[int]:
    """Integer Shamir shares of ``secret`` (a multiple of ``n!`` for hiding, see module doc)."""
    bits = abs(secret).bit_length() + degree * math.ceil(math.log2(parties)) + sigma
    poly = [secret] + [secrets.randbits(bits) for _ in range(degree)]
    return [evaluate(poly, j) for j in range(1, parties + 1)]


# -------------------------------------------------------------------------- biprimality


def public_base(session: str, modulus: int, label: str) -> int:
    """A public pseudo-random ``g`` in ``Z_N^*`` with Jacobi symbol ``(g / N) = 1``, the same for
    every party (derived from the session, N and a label)."""
    width = (modulus.bit_length() + 64 + 7) // 8
    counter = 0
    while True:
        seed = f"riskprop-dkg|{session}|{modulus:x}|{label}|{counter}".encode()
        g = int.from_bytes(hashlib.shake_256(seed).digest(width), "big") % modulus
        if g > 1 and gmpy2.jacobi(g, modulus) == 1:
            return g
        counter += 1


def biprimality_exponent(modulus: int, p_share: int, q_share: int, me: int) -> int:
    """Party 1: ``(N - p_1 - q_1 + 1) / 4``, others ``(p_i + q_i) / 4`` (exact by the residues
    mod 4), so ``v_1 / prod_{i>1} v_i = g**(phi(N)/4)``."""
    total = modulus - p_share - q_share + 1 if me == 1 else p_share + q_share
    if total % 4:
        raise ProtocolError("biprimality exponent not divisible by 4 (shares of wrong form)")
    return total // 4


def biprimality_holds(modulus: int, values: Sequence[int]) -> bool:
    """``v_1 = +-prod_{i>1} v_i mod N`` (values in party order)."""
    rest = 1
    for v in values[1:]:
        rest = rest * v % modulus
    first = values[0] % modulus
    return first in (rest, (-rest) % modulus)


# ------------------------------------------------------------------------ payload codec

_ARRAY, _INTS = 1, 2


def encode_fields(fields: Sequence[I64 | Sequence[int]]) -> bytes:
    """Serialise arrays (as little-endian unsigned 16/32-bit or signed 64-bit) and lists of
    integers (signed, big-endian, fixed width) for one round's payload."""
    out = [struct.pack(">I", len(fields))]
    for field in fields:
        if isinstance(field, np.ndarray):
            low, high = (int(field.min()), int(field.max())) if field.size else (0, 0)
            dtype = (
                "<u2"
                if low >= 0 and high < 1 << 16
                else "<u4"
                if low >= 0 and high < 1 << 32
                else "<i8"
            )
            out.append(struct.pack(">BB3sB", _ARRAY, len(dtype), dtype.encode(), field.ndim))
            out.append(struct.pack(f">{field.ndim}Q", *field.shape))
            out.append(field.astype(dtype).tobytes())
        else:
            values = [int(v) for v in field]
            width = max((v.bit_length() for v in values), default=0) // 8 + 1
            out.append(struct.pack(">BQI", _INTS, len(values), width))
            out.append(b"".join(v.to_bytes(width, "big", signed=True) for v in values))
    return b"".join(out)


def decode_fields(data: bytes) -> list[I64 | list[int]]:
    """Inverse of ``encode_fields``; any malformation raises ``ProtocolError``."""
    try:
        view = memoryview(data)
        (count,) = struct.unpack_from(">I", view, 0)
        at = 4
        fields: list[I64 | list[int]] = []
        for _ in range(count):
            kind = view[at]
            if kind == _ARRAY:
                _, size, code, ndim = struct.unpack_from(">BB3sB", view, at)
                at += 6
                dtype = code[:size].decode()
                if dtype not in ("<u2", "<u4", "<i8"):
                    raise ValueError(f"dtype {dtype}")
                shape = struct.unpack_from(f">{ndim}Q", view, at)
                at += 8 * ndim
                nbytes = math.prod(shape) * np.dtype(dtype).itemsize
                if at + nbytes > len(data):
                    raise ValueError("truncated array")
                array = np.frombuffer(view[at : at + nbytes], dtype=dtype).reshape(shape)
                fields.append(array.astype(np.int64))
                at += nbytes
            elif kind == _INTS:
                _, length, width = struct.unpack_from(">BQI", view, at)
                at += 13
                if width < 1 or at + length * width > len(data):
                    raise ValueError("truncated integers")
                fields.append(
                    [
                        int.from_bytes(view[i : i + width], "big", signed=True)
                        for i in range(at, at + length * width, width)
                    ]
                )
                at += length * width
            else:
                raise ValueError(f"field kind {kind}")
        if at != len(data):
            raise ValueError("trailing bytes")
        return fields
    except (struct.error, ValueError, IndexError) as exc:
        raise ProtocolError(f"malformed key-generation payload ({exc})") from None
