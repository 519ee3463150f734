"""Vector operations on Paillier ciphertexts (what phe lacks: batches, packing, pools).

Paillier with ``g = N + 1``: ``Enc(m; r) = (1 + m N) * r**N mod N**2``. Homomorphisms used here:
``Enc(a) * Enc(b) = Enc(a + b)`` and ``Enc(a)**k = Enc(k a)`` (mod ``N**2``, plaintexts mod
``N``). A *noise* value is an N-th residue ``s**N mod N**2`` (``s`` a unit mod ``N``);
multiplying a ciphertext by one re-randomises it: same plaintext, new ciphertext. Every
ciphertext leaving a bank gets a fresh one.

Two noise sources. ``FreshNoise``: ``r**N`` for a uniform ``r`` in ``Z_N^*``, Paillier's own
encryption, semantically secure under the decisional composite residuosity assumption (DCRA).
``FixedBaseNoise`` (what a run uses): ``h_N**alpha`` with ``h_N = (-x**2 mod N)**N mod N**2``
for a secret uniform ``x`` in ``Z_N^*`` and ``alpha`` uniform in ``[0, 2**L)``, ``L = ceil(|N|
/ 2)``. This is the variant of Damgård, Jurik and Nielsen, "A generalization of Paillier's
public-key system with applications to electronic voting", Int. J. Inf. Secur. 9(6), 2010,
section 4.1 (there ``h_N`` is public; here it never leaves the process). Its semantic security
needs DCRA *plus* an assumption: ``h**alpha`` for such a short ``alpha`` cannot be told from a
uniform element of the group ``<h>`` (a short-exponent assumption in a group of unknown order).
DJN take ``p = q = 3 mod 4`` and ``gcd(p - 1, q - 1) = 2``, so that ``<h>`` is w.h.p. the whole
subgroup of Jacobi symbol 1; riskprop's moduli are not checked for that (dealt keys come from
phe with unconstrained primes; distributed keys have ``p = q = 3 mod 4`` only), so for them the
assumption is made about ``<h>`` as it is. See docs/threat-model.md.

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
    """Supplies re-randomisation factors: N-th residues mod ``N**2``."""

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


#: ``FixedBaseNoise.draw`` takes its random digits in batches of this many values.
_DRAW_BATCH = 4096
#: Default memory cap of a noise comb table (:meth:`FixedBaseNoise.window_for`).
NOISE_TABLE_BYTES = 256 << 20


def comb_rows(key_bits: int, window: int) -> tuple[int, ...]:
    """Row lengths of the comb table for ``L = ceil(key_bits / 2)``-bit exponents and a
    ``window``-bit digit: ``2**w`` for each full digit, ``2**top`` for the last."""
    exponent_bits = (key_bits + 1) // 2
    rows = -(-exponent_bits // window)
    top = exponent_bits - window * (rows - 1)
    return (1 << window,) * (rows - 1) + (1 << top,)


class FixedBaseNoise:
    """Short-exponent fixed-base noise ``h_N**alpha`` (Damgård-Jurik-Nielsen 2010, section 4.1).

    Construction draws a secret uniform ``x`` in ``Z_N^*`` and keeps only the base
    ``h_N = (-x**2 mod N)**N mod N**2``; ``x`` is a local of ``__init__`` (never stored, logged
    or written). A value is ``h_N**alpha = ((-x**2)**alpha)**N``, an N-th residue, with
    ``alpha`` uniform in ``[0, 2**L)``, ``L = ceil(|N| / 2)`` (1024 bits at 2048-bit N). Security:
    DCRA plus DJN's short-exponent assumption (module docstring).

    Comb table with window ``w`` and ``k = ceil(L / w)`` rows: ``T[j][v] = h_N**(v * 2**(w j))``
    for ``j < k`` and ``v < 2**w`` (the top row only ``v < 2**(L - w (k - 1))``). Writing
    ``alpha = sum_j d_j 2**(w j)`` with independent uniform digits ``d_j`` (so ``alpha`` is
    uniform), ``h_N**alpha = prod_j T[j][d_j]``: ``k - 1`` multiplications mod ``N**2`` per
    draw (127 at 2048 bits, w = 8), where ``r**N`` takes about ``|N|`` squarings and ``|N| / 6``
    multiplications. The table is built on the first draw, ``(sum of row lengths) - k``
    multiplications (32,640 at 2048 bits, about 0.2 s): 128 x 256 values of 512 bytes, 16 MiB
    of numbers, about 17.5 MiB as Python objects. :meth:`window_for` picks ``w`` for an
    expected number of draws: 12 bits (85 multiplications per draw, 190 MiB) pays once a
    2048-bit node draws about a million values.
    """

    @staticmethod
    def window_for(key_bits: int, draws: int, memory: int = NOISE_TABLE_BYTES) -> int:
        """The comb window ``w`` in 1..16 that minimises the multiplications of building the
        table plus ``draws`` draws, ``sum(row lengths) + draws * (k - 1)``, among the tables
        whose values take at most ``memory`` bytes (each about ``|N**2| / 8 + 32``)."""
        value_bytes = 2 * key_bits // 8 + 32
        best, best_cost = 1, -1
        for window in range(1, 17):
            sizes = comb_rows(key_bits, window)
            entries = sum(sizes)
            if window > 1 and entries * value_bytes > memory:
                break
            cost = entries + draws * (len(sizes) - 1)
            if best_cost < 0 or cost < best_cost:
                best, best_cost = window, cost
        return best

    def __init__(
        self,
        key: PublicKey,
        *,
        window: int = 8,
        randbelow: Callable[[int], int] = secrets.randbelow,
    ) -> None:
        if not 1 <= window <= 16:
            raise ValueError("the comb window must be 1..16 bits")
        n, n2 = mpz(key.n), mpz(key.nsquare)
        self.window = window
        self.exponent_bits = (key.bits + 1) // 2
        #: length of each comb row: ``2**w`` and ``2**top`` for the last
        self.row_sizes = comb_rows(key.bits, window)
        self._n2 = n2
        x = FreshNoise(key, randbelow)._unit()
        self._base = gmpy2.powmod(-x * x % n, n, n2)
        del x
        self._table: list[list[mpz]] | None = None

    @property
    def base(self) -> mpz:
        """``h_N`` (DJN publish it; here it stays in the process, and ``x`` is gone)."""
        return self._base

    def _build(self) -> list[list[mpz]]:
        """``T[j][v] = g_j**v`` with ``g_0 = h_N`` and ``g_{j+1} = g_j**(2**w)``."""
        n2 = self._n2
        table: list[list[mpz]] = []
        g = self._base
        for size in self.row_sizes:
            row = [mpz(1), g]
            for _ in range(size - 2):
                row.append(row[-1] * g % n2)
            table.append(row)
            if len(table) < len(self.row_sizes):
                g = row[-1] * g % n2  # g**(2**w): only the last row is shorter
        return table

    def power(self, alpha: int) -> mpz:
        """``h_N**alpha mod N**2`` from the table, for ``0 <= alpha < 2**L``."""
        if not 0 <= alpha < 1 << self.exponent_bits:
            raise ValueError("exponent outside [0, 2**L)")
        mask = (1 << self.window) - 1
        digits = [(alpha >> (self.window * j)) & mask for j in range(len(self.row_sizes))]
        return self._combine(digits)

    def _combine(self, digits: Sequence[int]) -> mpz:
        if self._table is None:
            self._table = self._build()
        table, n2 = self._table, self._n2
        acc = table[0][digits[0]]
        for j in range(1, len(table)):
            acc = acc * table[j][digits[j]] % n2
        return acc

    def draw(self, count: int) -> list[mpz]:
        """``count`` values ``h_N**alpha``, the digits of each ``alpha`` from ``secrets``."""
        out: list[mpz] = []
        rows = len(self.row_sizes)
        limits = np.array([size - 1 for size in self.row_sizes], dtype=np.uint16)
        for start in range(0, count, _DRAW_BATCH):
            batch = min(_DRAW_BATCH, count - start)
            raw = np.frombuffer(secrets.token_bytes(2 * rows * batch), dtype="<u2")
            digits = (raw.reshape(batch, rows) & limits).tolist()
            out.extend(self._combine(d) for d in digits)
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
    """Fresh encryptions of the same plaintexts: ``c * s mod N**2``, ``s`` a fresh noise value."""
    n2 = mpz(key.nsquare)
    return [c * r % n2 for c, r in zip(ciphertexts, noise.draw(len(ciphertexts)), strict=True)]


#: Largest per-base window of ``linear_step`` (a table of ``2**(w-1)`` odd powers).
MAX_WINDOW = 6
#: Default cap, in bytes, on the window tables ``linear_step`` holds at once.
TABLE_BUDGET = 1 << 30
#: ``linear_step`` recodes exponents and runs rows in chunks of this many rows.
CHUNK_ROWS = 2048
#: Bytes a Python ``mpz`` takes beyond its limbs (header and allocator rounding).
_MPZ_OVERHEAD = 48


def linear_step(
    key: PublicKey,
    bases: Sequence[mpz],
    n_rows: int,
    self_coef: int,
    indptr: IntArray,
    indices: IntArray,
    coefs: Sequence[int],
    *,
    table_budget: int = TABLE_BUDGET,
) -> list[mpz]:
    """Encrypted ``R'(x) = c_self R(x) + sum_j coefs[j] R(indices[j])`` for rows ``x < n_rows``.

    ``bases[x]`` for ``x < n_rows`` is row ``x``'s own ciphertext; further bases are imported
    ciphertexts. Row ``x`` is ``bases[x]**self_coef * prod_j bases[indices[j]]**coefs[j] mod
    N**2`` (``indptr[x] <= j < indptr[x + 1]``), exactly the integers a ``powmod`` per term
    gives; exponents must lie in ``[0, 2**63)``. This is the only per-edge loop of the secure
    protocol.

    Method: interleaved sliding-window multi-exponentiation (Straus's simultaneous
    exponentiation with a window per base). Each exponent ``e`` of base ``b`` is recoded right
    to left as ``e = sum_i d_i 2**p_i`` with odd digits ``d_i < 2**w_b`` (about ``f / (w_b + 1)``
    of them for ``f``-bit exponents); ``b`` gets one table of odd powers ``b, b**3, ...,
    b**(2**w_b - 1)`` (``2**(w_b - 1)`` multiplications) that every row using ``b`` shares. A
    row runs from its highest digit position down: one squaring per bit position, shared by all
    its terms, and one multiplication per digit. ``w_b`` minimises ``u_b f / (w_b + 1) +
    2**(w_b - 1)`` for the ``u_b`` uses of ``b`` (``w_b = 1``, no table beyond ``b`` itself, is
    among the choices), plus a per-entry penalty raised until the tables alive at once fit
    ``table_budget`` bytes. A table is built when the first chunk of ``CHUNK_ROWS`` rows that
    uses its base starts and dropped after the last one. Memory beyond the inputs: the tables
    (at most ``table_budget``), the output, 8 bytes per table slot and one chunk's digit arrays.
    """
    n2 = mpz(key.nsquare)
    ptr = np.asarray(indptr, dtype=np.int64)
    cols = np.asarray(indices, dtype=np.int64)
    if len(ptr) != n_rows + 1 or len(cols) != len(coefs) or int(ptr[-1]) != len(cols):
        raise ValueError("indptr, indices and coefs do not describe n_rows CSR rows")
    try:
        edge_exps = np.asarray(coefs, dtype=np.int64)
    except OverflowError as exc:
        raise ValueError("linear_step exponents must lie in [0, 2**63)") from exc
    if (len(coefs) and int(edge_exps.min()) < 0) or not 0 <= self_coef < 1 << 63:
        raise ValueError("linear_step exponents must lie in [0, 2**63)")
    # one term list, row by row: the self term first, then the row's edges; zero exponents out
    sizes = np.diff(ptr) + 1
    rows = np.repeat(np.arange(n_rows, dtype=np.int64), sizes)
    self_at = ptr[:-1] + np.arange(n_rows, dtype=np.int64)
    is_edge = np.ones(len(rows), dtype=bool)
    is_edge[self_at] = False
    term_cols = np.empty(len(rows), dtype=np.int64)
    term_exps = np.empty(len(rows), dtype=np.int64)
    term_cols[self_at] = np.arange(n_rows, dtype=np.int64)
    term_exps[self_at] = self_coef
    term_cols[is_edge] = cols
    term_exps[is_edge] = edge_exps
    keep = term_exps != 0
    rows, term_cols, term_exps = rows[keep], term_cols[keep], term_exps[keep]
    bits = int(term_exps.max()).bit_length() if len(term_exps) else 0

    n_chunks = -(-n_rows // CHUNK_ROWS)
    windows, first, last = _plan_tables(
        len(bases), term_cols, rows // CHUNK_ROWS, n_chunks, bits, table_budget, key
    )
    size = np.where(last >= 0, 1 << (windows - 1), 0)
    offset = np.zeros(len(bases) + 1, dtype=np.int64)
    np.cumsum(size, out=offset[1:])
    pool: list[mpz | None] = [None] * int(offset[-1])
    by_first = np.argsort(first, kind="stable")
    first_bounds = np.searchsorted(first[by_first], np.arange(n_chunks + 1)).tolist()
    by_last = np.argsort(last, kind="stable")
    last_bounds = np.searchsorted(last[by_last], np.arange(n_chunks + 1)).tolist()
    term_bounds = np.searchsorted(rows, np.arange(n_chunks + 1) * CHUNK_ROWS).tolist()
    offsets, sizes_list = offset.tolist(), size.tolist()

    out: list[mpz] = []
    for chunk in range(n_chunks):
        for b in by_first[first_bounds[chunk] : first_bounds[chunk + 1]].tolist():
            _odd_powers(bases[b], n2, pool, offsets[b], sizes_list[b])
        lo, hi = term_bounds[chunk], term_bounds[chunk + 1]
        first_row = chunk * CHUNK_ROWS
        out += _run_rows(
            n2,
            pool,
            rows[lo:hi] - first_row,
            min(CHUNK_ROWS, n_rows - first_row),
            term_exps[lo:hi],
            windows[term_cols[lo:hi]],
            offset[term_cols[lo:hi]],
            bits,
        )
        for b in by_last[last_bounds[chunk] : last_bounds[chunk + 1]].tolist():
            start = offsets[b]
            pool[start : start + sizes_list[b]] = [None] * sizes_list[b]
    return out


def _plan_tables(
    n_bases: int,
    cols: IntArray,
    chunks: IntArray,
    n_chunks: int,
    bits: int,
    budget: int,
    key: PublicKey,
) -> tuple[IntArray, IntArray, IntArray]:
    """Per base: window, first and last chunk that uses it (``-1``: unused).

    The window minimises ``uses f / (w + 1) + 2**(w - 1) + penalty (2**(w - 1) - 1)`` (expected
    digit multiplications, table multiplications, new table entries); the penalty is the
    smallest of 0, 1, 2, 4, ... for which the table entries alive at once fit ``budget``.
    """
    uses = np.bincount(cols, minlength=n_bases)
    first = np.full(n_bases, n_chunks, dtype=np.int64)
    last = np.full(n_bases, -1, dtype=np.int64)
    np.minimum.at(first, cols, chunks)
    np.maximum.at(last, cols, chunks)
    used = last >= 0
    entry_bytes = key.ciphertext_bytes + _MPZ_OVERHEAD
    digits = max(bits, 1) * uses.astype(np.float64)
    penalty = 0.0
    while True:
        windows = np.ones(n_bases, dtype=np.int64)
        best = digits / 2
        for w in range(2, MAX_WINDOW + 1):
            cost = digits / (w + 1) + 2 ** (w - 1) + penalty * (2 ** (w - 1) - 1)
            better = cost < best
            windows[better] = w
            best = np.minimum(best, cost)
        extra = np.where(used, (1 << (windows - 1)) - 1, 0)
        alive = np.zeros(n_chunks + 1, dtype=np.int64)
        np.add.at(alive, first[used], extra[used])
        np.add.at(alive, last[used] + 1, -extra[used])
        peak = int(np.cumsum(alive).max()) if n_chunks else 0
        if peak * entry_bytes <= budget or not extra.any():
            return windows, first, last
        penalty = max(1.0, 2 * penalty)


def _odd_powers(base: mpz, n2: mpz, pool: list[mpz | None], start: int, count: int) -> None:
    """``pool[start + i] = base**(2 i + 1) mod N**2`` for ``i < count``."""
    value = base if 0 <= base < n2 else base % n2
    pool[start] = value
    if count > 1:
        square = value * value % n2
        for i in range(1, count):
            value = value * square % n2
            pool[start + i] = value


def _run_rows(
    n2: mpz,
    pool: list[mpz | None],
    rows: IntArray,
    n_rows: int,
    exps: IntArray,
    windows: IntArray,
    offsets: IntArray,
    bits: int,
) -> list[mpz]:
    """Rows ``0..n_rows-1`` of one chunk; ``rows`` (sorted) names the row of each term."""
    # right-to-left sliding windows, vectorised over the chunk's terms: a digit starts at
    # each set bit not covered by the previous digit of the same exponent
    free = np.zeros(len(exps), dtype=np.int64)
    found: list[tuple[IntArray, int, IntArray]] = []
    for i in range(bits):
        at = np.flatnonzero(((exps >> i) & 1).astype(bool) & (free <= i))
        if len(at):
            width = windows[at]
            found.append((at, i, (exps[at] >> i) & ((1 << width) - 1)))
            free[at] = i + width
    one = mpz(1)
    if not found:
        return [one] * n_rows
    term = np.concatenate([at for at, _, _ in found])
    pos = np.concatenate([np.full(len(at), i, dtype=np.int64) for at, i, _ in found])
    digit = np.concatenate([d for _, _, d in found])
    row = rows[term]
    order = np.lexsort((-pos, row))
    term, pos, digit, row = term[order], pos[order], digit[order], row[order]
    slots = (offsets[term] + (digit >> 1)).tolist()
    values = [pool[s] for s in slots]
    gaps = np.empty(len(pos), dtype=np.int64)
    gaps[0] = 0
    gaps[1:] = pos[:-1] - pos[1:]
    bounds = np.searchsorted(row, np.arange(n_rows + 1)).tolist()
    gap, lowest = gaps.tolist(), pos.tolist()
    out: list[mpz] = []
    append = out.append
    for x in range(n_rows):
        a, b = bounds[x], bounds[x + 1]
        if a == b:
            append(one)
            continue
        acc = values[a]
        for k in range(a + 1, b):
            for _ in range(gap[k]):
                acc = acc * acc % n2
            acc = acc * values[k] % n2
        for _ in range(lowest[b - 1]):
            acc = acc * acc % n2
        append(acc)
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
