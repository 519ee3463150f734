"""Vector operations on Paillier ciphertexts (what phe lacks: batches, packing, pools).

Paillier with ``g = N + 1``: ``Enc(m; r) = (1 + m N) * r**N mod N**2``. Homomorphisms used here:
``Enc(a) * Enc(b) = Enc(a + b)`` and ``Enc(a)**k = Enc(k a)`` (mod ``N**2``, plaintexts mod
``N``). A *noise* value is ``r**N mod N**2`` for a fresh uniform ``r`` in ``Z_N^*``; multiplying
a ciphertext by one re-randomises it: the result is a fresh, independent encryption of the same
plaintext, which is what every ciphertext leaving a bank gets.

Ciphertexts are ``gmpy2.mpz`` values in flat lists indexed by account position. Keys come from
phe (``generate_paillier_keypair``); arithmetic is GMP through gmpy2.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import gmpy2
from gmpy2 import mpz

from riskprop.core.data import IntArray


@dataclass(frozen=True)
class PublicKey:
    """A Paillier public key ``N`` (generator ``N + 1``)."""

    n: int

    @property
    def nsquare(self) -> int:
        return self.n * self.n

    @property
    def bits(self) -> int:
        return self.n.bit_length()

    @property
    def ciphertext_bytes(self) -> int:
        """Fixed width of one ciphertext on the wire."""
        return (self.nsquare.bit_length() + 7) // 8

    def fingerprint(self) -> str:
        """SHA-256 of the modulus, hex: names the key in run descriptors and logs."""
        width = (self.bits + 7) // 8
        return hashlib.sha256(b"riskprop-paillier-n:" + self.n.to_bytes(width, "big")).hexdigest()


class NoiseSource(Protocol):
    """Supplies re-randomisation factors ``r**N mod N**2``."""

    def draw(self, count: int) -> list[mpz]: ...


class FreshNoise:
    """Computes each noise value on demand: one full exponentiation mod ``N**2`` each."""

    def __init__(self, key: PublicKey, randbelow: Callable[[int], int] = secrets.randbelow):
        self._n = mpz(key.n)
        self._n2 = mpz(key.nsquare)
        self._randbelow = randbelow

    def _unit(self) -> mpz:
        while True:
            r = mpz(self._randbelow(int(self._n) - 1) + 1)
            if gmpy2.gcd(r, self._n) == 1:
                return r

    def draw(self, count: int) -> list[mpz]:
        return [gmpy2.powmod(self._unit(), self._n, self._n2) for _ in range(count)]


def encrypt(key: PublicKey, plaintexts: Sequence[int], noise: NoiseSource) -> list[mpz]:
    """``Enc(m) = (1 + m N) * noise mod N**2`` for each ``0 <= m < N``."""
    n, n2 = mpz(key.n), mpz(key.nsquare)
    factors = noise.draw(len(plaintexts))
    out = []
    for m, r in zip(plaintexts, factors, strict=True):
        if not 0 <= m < key.n:
            raise ValueError("plaintext outside [0, N)")
        out.append((1 + mpz(m) * n) % n2 * r % n2)
    return out


def rerandomize(key: PublicKey, ciphertexts: Sequence[mpz], noise: NoiseSource) -> list[mpz]:
    """Fresh encryptions of the same plaintexts: ``c * r**N mod N**2``."""
    n2 = mpz(key.nsquare)
    return [c * r % n2 for c, r in zip(ciphertexts, noise.draw(len(ciphertexts)), strict=True)]


def linear_step(
    key: PublicKey,
    bases: Sequence[mpz],
    n_rows: int,
    self_coef: int,
    indptr: IntArray,
    indices: IntArray,
    coefs: Sequence[int],
) -> list[mpz]:
    """Encrypted ``R'(x) = c_self R(x) + sum_j coefs[j] R(indices[j])`` for rows ``x < n_rows``.

    ``bases[x]`` for ``x < n_rows`` is row ``x``'s own ciphertext; further bases are imported
    ciphertexts. This is the only per-edge loop of the secure protocol.
    """
    n2 = mpz(key.nsquare)
    powmod = gmpy2.powmod
    ptr = indptr.tolist()
    cols = indices.tolist()
    out = []
    for x in range(n_rows):
        acc = powmod(bases[x], self_coef, n2)
        for j in range(ptr[x], ptr[x + 1]):
            acc = acc * powmod(bases[cols[j]], coefs[j], n2) % n2
        out.append(acc)
    return out


def pack(key: PublicKey, ciphertexts: Sequence[mpz], slot_bits: int, slots: int) -> list[mpz]:
    """Pack groups of ``slots`` ciphertexts into one: ``Enc(sum_i m_i 2**(i*slot_bits))``.

    Horner's rule: ``C = c_{k-1}; C = C**(2**slot_bits) * c_i`` for ``i = k-2..0``. Requires
    every ``m_i < 2**slot_bits`` and ``slots * slot_bits < log2 N`` (see fixedpoint).
    """
    n2 = mpz(key.nsquare)
    shift = mpz(1) << slot_bits
    out = []
    for start in range(0, len(ciphertexts), slots):
        group = ciphertexts[start : start + slots]
        acc = mpz(group[-1])
        for c in reversed(group[:-1]):
            acc = gmpy2.powmod(acc, shift, n2) * c % n2
        out.append(acc)
    return out


def unpack(plaintexts: Sequence[int], slot_bits: int, slots: int, count: int) -> list[int]:
    """Inverse of ``pack`` on decrypted values: the first ``count`` slot values."""
    mask = (1 << slot_bits) - 1
    values: list[int] = []
    for plaintext in plaintexts:
        rest = plaintext
        for _ in range(slots):
            values.append(rest & mask)
            rest >>= slot_bits
    return values[:count]
