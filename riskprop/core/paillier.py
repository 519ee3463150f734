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
import numpy as np
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


class FixedBaseNoise:
    """Short-exponent noise from a fixed base (Damgård-Jurik-Nielsen, PKC 2010, section 4.1).

    At construction a secret uniform ``x`` in ``Z_N^*`` gives ``h = -x**2 mod N`` and the base
    ``h_N = h**N mod N**2``; a noise value is ``h_N**alpha = (h**alpha)**N`` (an N-th residue)
    with ``alpha`` uniform in ``[0, 2**L)``, ``L = ceil(|N| / 2)`` as DJN propose. DJN prove
    this semantically secure under DCRA plus the assumption that ``h**alpha`` with such short
    ``alpha`` is indistinguishable from a uniform element of the group ``h`` generates; see
    docs/threat-model.md. ``x`` lives in this object only (never logged or written).

    Cost: a comb table ``T[j][v] = h_N**(v * 2**(w j))`` (``ceil(L/w)`` rows of ``2**w``) makes
    one draw ``ceil(L/w) - 1`` multiplications mod ``N**2``, against about ``1.2 |N|`` for
    ``r**N``: with ``w = 8`` and a 2048-bit N, 127 instead of ~2,450. The table (16 MiB at 2048
    bits) is built on the first draw, about 33,000 multiplications.
    """

    def __init__(self, key: PublicKey, *, window: int = 8) -> None:
        if window != 8:
            raise ValueError("only byte-wide windows are supported")
        self._key = key
        self._n2 = mpz(key.nsquare)
        self.exponent_bits = (key.bits + 1) // 2
        self._rows = -(-self.exponent_bits // window)
        self._top_mask = (1 << (self.exponent_bits - window * (self._rows - 1))) - 1
        self._table: list[list[mpz]] | None = None

    def _build(self) -> list[list[mpz]]:
        n, n2 = mpz(self._key.n), self._n2
        x = FreshNoise(self._key)._unit()
        base = gmpy2.powmod((-x * x) % n, n, n2)
        table = []
        for _ in range(self._rows):
            row = [mpz(1), base]
            for _ in range(254):
                row.append(row[-1] * base % n2)
            table.append(row)
            base = row[-1] * base % n2  # base**256
        return table

    def draw(self, count: int) -> list[mpz]:
        if self._table is None:
            self._table = self._build()
        table, n2, rows, mask = self._table, self._n2, self._rows, self._top_mask
        data = secrets.token_bytes(rows * count)
        out = []
        for start in range(0, rows * count, rows):
            digits = data[start : start + rows]
            acc = table[rows - 1][digits[rows - 1] & mask]
            for j in range(rows - 1):
                acc = acc * table[j][digits[j]] % n2
            out.append(acc)
        return out


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


def embed(key: PublicKey, plaintexts: Sequence[int]) -> list[mpz]:
    """``(1 + m N) mod N**2``: the encryption of ``m`` with noise 1, at no cost.

    Not hiding by itself: use it only for a bank's own values that stay with the bank until
    they are re-randomised (every ciphertext a bank sends is), as the session does with its
    initial scores.
    """
    n, n2 = mpz(key.n), mpz(key.nsquare)
    out = []
    for m in plaintexts:
        if not 0 <= m < key.n:
            raise ValueError("plaintext outside [0, N)")
        out.append((1 + mpz(m) * n) % n2)
    return out


def rerandomize(key: PublicKey, ciphertexts: Sequence[mpz], noise: NoiseSource) -> list[mpz]:
    """Fresh encryptions of the same plaintexts: ``c * r**N mod N**2``."""
    n2 = mpz(key.nsquare)
    return [c * r % n2 for c, r in zip(ciphertexts, noise.draw(len(ciphertexts)), strict=True)]


#: Window of the multi-exponentiation in ``linear_step`` (tables of ``2**w - 1`` powers).
STRAUS_WINDOW = 3


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
    ciphertexts. This is the only per-edge loop of the secure protocol. Each row is one
    multi-exponentiation ``prod_k b_k**e_k`` by Straus' method with window ``w``: the ``f``
    squarings are shared by the row's terms (``f`` = bit length of the largest exponent), each
    term costs one multiplication per non-zero ``w``-bit digit, and each base's powers
    ``b**v, v < 2**w`` are computed once per step for every row that uses it. A table is
    dropped after its base's last use, which bounds memory by the bases in use.
    """
    w = STRAUS_WINDOW
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
