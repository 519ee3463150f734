"""Vector operations on Paillier ciphertexts (what phe lacks: batches, packing, pools).

Paillier with ``g = N + 1``: ``Enc(m; r) = (1 + m N) * r**N mod N**2``. Homomorphisms used here:
``Enc(a) * Enc(b) = Enc(a + b)`` and ``Enc(a)**k = Enc(k a)`` (mod ``N**2``, plaintexts mod
``N``). A *noise* value is an N-th residue ``s**N mod N**2`` (``s`` a unit mod ``N``);
multiplying a ciphertext by one re-randomises it: same plaintext, new ciphertext. Every
ciphertext leaving a bank gets a fresh one.

Two noise sources. ``FreshNoise`` (``noise: full``): ``r**N`` for a uniform ``r`` in
``Z_N^*``, Paillier's own encryption, semantically secure under the decisional composite
residuosity assumption (DCRA). ``FixedBaseNoise`` (a run's default, ``noise: djn``):
``h_N**alpha`` with ``h_N = (-x**2 mod N)**N mod N**2``
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
import itertools
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import gmpy2
import numpy as np
from gmpy2 import mpz

from riskprop.core.batches import Executor
from riskprop.core.modexp import (
    NATIVE_PRODUCT_COST,
    ProductTable,
    limbs,
    native,
    powmod_many,
    scan_cost,
)
from riskprop.core.types import IntArray


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
    """Computes each noise value on demand: ``r**N mod N**2`` for a uniform unit ``r``, one
    full exponentiation each (batched, and constant-time in the secret ``r``: see
    ``modexp.powmod_many``)."""

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
        units = [self._unit() for _ in range(count)]
        return powmod_many(units, int(self._n), int(self._n2), secret=True)


#: ``FixedBaseNoise.draw`` takes its random digits in batches of this many values.
_DRAW_BATCH = 4096
#: Default memory cap of a noise comb table (:meth:`FixedBaseNoise.shape_for`).
NOISE_TABLE_BYTES = 256 << 20
#: Bytes a Python ``mpz`` takes beyond its limbs (header and allocator rounding).
_MPZ_OVERHEAD = 48
#: Widest table index of a comb, in bits.
MAX_TEETH = 16


@dataclass(frozen=True)
class CombShape:
    """Shape of a Lim-Lee fixed-base comb (C. H. Lim and P. J. Lee, "More flexible
    exponentiation with precomputation", CRYPTO '94, LNCS 839): ``blocks`` tables indexed by
    ``teeth``-bit digits, ``columns`` digits per table and exponent.

    The exponent has ``E = teeth * blocks * columns`` bits, read as ``teeth`` rows of ``a =
    blocks * columns`` bits, each row cut into ``blocks`` blocks of ``columns`` bits. With
    ``g_k = h_N**(2**(k * columns))``, table ``j`` holds ``T_j[u] = prod_{i: bit i of u}
    g_{i * blocks + j}`` for ``u < 2**teeth``. The digit ``D[j][c]`` gathers bit ``c`` of block
    ``j`` of every row, so ``h_N**alpha = prod_c (prod_j T_j[D[j][c]])**(2**c)``: ``columns -
    1`` squarings and ``blocks * columns - 1`` multiplications per value. ``columns = 1`` is
    the squaring-free comb (one table per ``teeth``-bit window); more columns trade squarings
    for a table ``blocks * 2**teeth`` long, which pays when few values are drawn.
    """

    teeth: int
    blocks: int
    columns: int

    @property
    def exponent_bits(self) -> int:
        return self.teeth * self.blocks * self.columns

    @property
    def entries(self) -> int:
        """Values in the tables (including ``T_j[0] = 1``)."""
        return self.blocks << self.teeth

    @property
    def draw_multiplications(self) -> int:
        """Squarings plus multiplications mod ``N**2`` per value."""
        return self.columns - 1 + self.blocks * self.columns - 1

    @property
    def build_multiplications(self) -> int:
        """``E - columns`` squarings for the ``g_k``, ``2**teeth - teeth - 1`` per table."""
        return (
            self.exponent_bits - self.columns + self.blocks * ((1 << self.teeth) - self.teeth - 1)
        )


def comb_value_bytes(key_bits: int) -> int:
    """Memory of one comb value: as an ``mpz`` (the ``|N**2|``-bit number, its object header
    and list slot) or as the native kernel's Montgomery limbs (52 bits in 8 bytes), the larger."""
    as_mpz = 2 * key_bits // 8 + _MPZ_OVERHEAD + 8
    return max(as_mpz, 8 * limbs(2 * key_bits))


def comb_shape(key_bits: int, teeth: int, blocks: int) -> CombShape:
    """The comb with ``teeth`` and ``blocks`` whose exponent covers ``L = ceil(key_bits / 2)``
    bits with the fewest columns."""
    if not 1 <= teeth <= MAX_TEETH or blocks < 1:
        raise ValueError(f"a comb needs 1..{MAX_TEETH} teeth and at least one block")
    exponent_bits = (key_bits + 1) // 2
    return CombShape(teeth, blocks, -(-exponent_bits // (teeth * blocks)))


class FixedBaseNoise:
    """Short-exponent fixed-base noise ``h_N**alpha`` (Damgård-Jurik-Nielsen 2010, section 4.1).

    Construction draws a secret uniform ``x`` in ``Z_N^*`` and keeps only the base
    ``h_N = (-x**2 mod N)**N mod N**2``; ``x`` is a local of ``__init__`` (never stored, logged
    or written). A value is ``h_N**alpha = ((-x**2)**alpha)**N``, an N-th residue, with
    ``alpha`` uniform in ``[0, 2**E)`` for the comb's ``E >= L = ceil(|N| / 2)`` (1024 bits at
    2048-bit N). Security: DCRA plus DJN's short-exponent assumption (module docstring) for
    ``L``-bit exponents; a longer uniform exponent is no weaker, since ``h**(a + 2**L b) =
    h**a * (h**(2**L))**b`` for independent ``b`` maps uniform to uniform and the ``L``-bit
    distribution to the ``E``-bit one.

    Evaluation: a Lim-Lee comb (:class:`CombShape`) with independent uniform digits, built on
    the first draw (:class:`~riskprop.core.modexp.ProductTable`: eight draws at once in the
    native kernel). :meth:`shape_for` picks the shape for the expected number of draws. At 2048
    bits, about 3,000 draws get 5 tables of 8,192 values with gmpy2 (16 columns; 94
    multiplications per value, 42,000 to build, 25 MiB), and 8 tables of 1,024 in the kernel,
    where a product costs about a fifth (13 columns; 115 per value, 9,100 to build, 5 MiB). A
    million draws get 10 tables of 32,768 on either path (7 columns; 75 per value, 329,000 to
    build, 198 MiB). ``r**N`` costs about 2,400.

    Side channels: the products do not depend on ``alpha``, but which table entries they read
    are its digits. By default they are read directly (gathered in the kernel, list indexing
    with gmpy2), so cache timing on the node's host can reveal digits of ``alpha`` and with
    them the plaintext of the ciphertext this value re-randomises. With ``constant_time`` and
    the native kernel, every read scans its digit's whole sub-table ``T_j`` (the block ``j`` is
    public): the reads no longer depend on ``alpha``, at the cost of smaller tables and more
    products (:meth:`shape_for`). With gmpy2 ``constant_time`` changes nothing: Python object
    access cannot be made cache-constant-time.
    """

    @staticmethod
    def shape_for(
        key_bits: int,
        draws: int,
        memory: int = NOISE_TABLE_BYTES,
        *,
        native: bool = False,
        constant_time: bool = False,
    ) -> CombShape:
        """The comb that minimises the cost of building it plus ``draws`` draws, among those
        whose values take at most ``memory`` bytes (:func:`comb_value_bytes` each); ties go to
        the smaller table. Cost is in multiplications mod ``N**2`` with gmpy2, which builds
        the table. For a ``native`` table the draws' products, and one per table value (its
        conversion to Montgomery form), cost ``modexp.NATIVE_PRODUCT_COST`` each, and with
        ``constant_time`` each of a value's ``blocks * columns`` reads adds the scan of a
        sub-table (``modexp.scan_cost``)."""
        value_bytes = comb_value_bytes(key_bits)
        exponent_bits = (key_bits + 1) // 2
        best: CombShape | None = None
        best_key: tuple[float, int] = (0.0, 0)
        for teeth in range(1, MAX_TEETH + 1):
            blocks = 1
            while True:
                shape = comb_shape(key_bits, teeth, blocks)
                fits = shape.entries * value_bytes <= memory
                if fits or best is None:
                    products: float = draws * shape.draw_multiplications
                    if native:
                        if constant_time:
                            reads = shape.blocks * shape.columns
                            scans = reads * scan_cost(1 << teeth, limbs(2 * key_bits), shared=True)
                            products += draws * scans
                        products = NATIVE_PRODUCT_COST * (products + shape.entries)
                    cost = shape.build_multiplications + products
                    if best is None or (cost, shape.entries) < best_key:
                        best, best_key = shape, (cost, shape.entries)
                if shape.columns == 1 or not fits:
                    break
                # the next block count that lowers the columns
                blocks = -(-exponent_bits // (teeth * (shape.columns - 1)))
        assert best is not None
        return best

    def __init__(
        self,
        key: PublicKey,
        *,
        shape: CombShape | None = None,
        randbelow: Callable[[int], int] = secrets.randbelow,
        constant_time: bool = False,
        base: int | None = None,
    ) -> None:
        """A new secret base ``h_N`` (``x`` from ``randbelow``), or the given ``base``: the
        same noise as that of the ``FixedBaseNoise`` it came from."""
        n, n2 = mpz(key.n), mpz(key.nsquare)
        short_bits = (key.bits + 1) // 2  # L
        self.shape = shape or comb_shape(key.bits, 8, -(-short_bits // 8))
        if self.shape.exponent_bits < short_bits:
            raise ValueError("the comb's exponents are shorter than |N| / 2 bits")
        if not 1 <= self.shape.teeth <= MAX_TEETH:
            raise ValueError(f"a comb needs 1..{MAX_TEETH} teeth")
        self.exponent_bits = self.shape.exponent_bits
        self.constant_time = constant_time
        self._n2 = n2
        self._nsquare = key.nsquare
        self.key = key
        if base is None:
            x = FreshNoise(key, randbelow)._unit()
            self._base = gmpy2.powmod(-x * x % n, n, n2)
            del x
        elif 0 < base < key.nsquare:  # another process's noise (PooledNoise's workers)
            self._base = mpz(base)
        else:
            raise ValueError("a noise base lies in [1, N**2)")
        self._table: ProductTable | None = None

    @property
    def base(self) -> mpz:
        """``h_N`` (DJN publish it; here it stays in the process, and ``x`` is gone)."""
        return self._base

    def _build(self) -> list[mpz]:
        """``T_j[u]`` at ``j * 2**teeth + u`` (see :class:`CombShape`)."""
        n2 = self._n2
        teeth, blocks, columns = self.shape.teeth, self.shape.blocks, self.shape.columns
        powers = [self._base]  # g_k = h_N**(2**(k * columns))
        for _ in range(teeth * blocks - 1):
            g = powers[-1]
            for _ in range(columns):
                g = g * g % n2
            powers.append(g)
        size = 1 << teeth
        table: list[mpz] = []
        for j in range(blocks):
            sub = [mpz(1)] * size
            for u in range(1, size):
                top = u.bit_length() - 1
                g = powers[top * blocks + j]
                rest = u ^ (1 << top)
                sub[u] = g if rest == 0 else sub[rest] * g % n2
            table.extend(sub)
        return table

    def digits(self, alpha: int) -> list[int]:
        """Table positions ``j * 2**teeth + D[j][c]`` for ``alpha``, by column from the top,
        blocks in order: the order :meth:`_combine` reads them."""
        teeth, blocks, columns = self.shape.teeth, self.shape.blocks, self.shape.columns
        row_bits = blocks * columns
        out = []
        for c in reversed(range(columns)):
            for j in range(blocks):
                d = 0
                for i in range(teeth):
                    d |= ((alpha >> (i * row_bits + j * columns + c)) & 1) << i
                out.append((j << teeth) + d)
        return out

    def power(self, alpha: int) -> mpz:
        """``h_N**alpha mod N**2`` from the table, for ``0 <= alpha < 2**E``."""
        if not 0 <= alpha < 1 << self.exponent_bits:
            raise ValueError("exponent outside [0, 2**E)")
        (value,) = self._combine(np.array([self.digits(alpha)], dtype=np.int64))
        return value

    @property
    def table(self) -> ProductTable:
        """The comb's values (built on first use), in the native kernel where it runs."""
        if self._table is None:
            self._table = ProductTable(self._build(), self._nsquare)
        return self._table

    def _combine(self, positions: IntArray) -> list[mpz]:
        """One value per row of table positions (:meth:`digits` order): per column from the
        top, a squaring (but first) and a product per block. Position ``k`` is in table ``k %
        blocks``, the sub-table a constant-time read scans."""
        subtable = 1 << self.shape.teeth if self.constant_time else 0
        return self.table.products(positions, self.shape.blocks, subtable=subtable)

    def draw(self, count: int) -> list[mpz]:
        """``count`` values ``h_N**alpha``, the digits of each ``alpha`` from ``secrets``."""
        out: list[mpz] = []
        teeth, blocks, columns = self.shape.teeth, self.shape.blocks, self.shape.columns
        per_value = blocks * columns
        offsets = np.tile(np.arange(blocks, dtype=np.int64) << teeth, columns)
        mask = (1 << teeth) - 1
        for start in range(0, count, _DRAW_BATCH):
            batch = min(_DRAW_BATCH, count - start)
            raw = np.frombuffer(secrets.token_bytes(2 * per_value * batch), dtype="<u2")
            out.extend(self._combine((raw.reshape(batch, per_value) & mask) + offsets))
        return out


#: :class:`PooledNoise` hands a worker at least this many draws (about 0.1 s at 2048 bits in
#: the kernel, 0.4 s with gmpy2); fewer are drawn in the node process.
NOISE_BATCH_DRAWS = 1 << 10


class PooledNoise:
    """:class:`FixedBaseNoise` whose large draws run on the node's own worker processes.

    ``draw(count)`` with ``count >= 2 * batch_draws`` (default ``NOISE_BATCH_DRAWS``) is cut
    into one :class:`NoiseBatch` per worker (at most ``count // batch_draws``), each drawn by
    :func:`run_noise_batch` with the same comb on the same base, its digits from the worker's
    own ``secrets``; smaller draws stay here. A value is ``h_N**alpha`` for a uniform
    ``alpha`` wherever it is drawn: the same distribution as ``noise.draw``'s.

    A batch holds the base ``h_N`` and the draws come back in the clear: a noise value and the
    ciphertext it re-randomises give away the ciphertext before re-randomisation (and a bank's
    own initial scores are sent without other noise). So the executor must be ``private``: its
    workers are processes of this node on this host (``ProcessExecutor``), never a cluster."""

    def __init__(
        self, noise: FixedBaseNoise, executor: Executor, *, batch_draws: int | None = None
    ) -> None:
        if not executor.private:
            raise ValueError("noise is drawn only by the node's own processes, not a cluster")
        self.noise, self.executor, self.batch_draws = noise, executor, batch_draws

    def draw(self, count: int) -> list[mpz]:
        least = NOISE_BATCH_DRAWS if self.batch_draws is None else max(1, self.batch_draws)
        k = min(self.executor.workers, count // least)
        if k <= 1:
            return self.noise.draw(count)
        noise = self.noise
        width = noise.key.ciphertext_bytes
        base = int(noise.base).to_bytes(width, "big")
        batches = [
            NoiseBatch(
                noise.key.n,
                base,
                noise.shape,
                noise.constant_time,
                count * (i + 1) // k - count * i // k,
            )
            for i in range(k)
        ]
        out: list[mpz] = []
        for raw in self.executor.map(run_noise_batch, batches):
            out += decode_values(raw, width)
        return out


@dataclass(frozen=True, eq=False)
class NoiseBatch:
    """``count`` draws of the comb ``shape`` on the base ``base`` (``h_N``, fixed-width
    big-endian) mod ``N**2``. Secret: for the node's own worker processes only."""

    modulus: int  # N
    base: bytes
    shape: CombShape
    constant_time: bool
    count: int


#: A worker's comb: (N, base, shape, constant_time) -> its noise. One run's at a time, so a
#: worker process keeps no earlier run's base.
_WORKER_NOISE: dict[tuple[int, bytes, CombShape, bool], FixedBaseNoise] = {}


def run_noise_batch(batch: NoiseBatch) -> bytes:
    """``batch.count`` noise values (fixed-width big-endian), the comb built on the worker's
    first batch of a run and kept for the next ones."""
    key = PublicKey(batch.modulus)
    ident = (batch.modulus, batch.base, batch.shape, batch.constant_time)
    noise = _WORKER_NOISE.get(ident)
    if noise is None:
        _WORKER_NOISE.clear()
        noise = FixedBaseNoise(
            key,
            shape=batch.shape,
            constant_time=batch.constant_time,
            base=int.from_bytes(batch.base, "big"),
        )
        _WORKER_NOISE[ident] = noise
    return encode_values(noise.draw(batch.count), mpz(key.nsquare), key.ciphertext_bytes)


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


class Rerandomized(tuple[Any, ...]):
    """Ciphertexts each multiplied by its own fresh noise value: the only kind that may leave a
    bank (``Scores`` and ``DecryptRequest`` accept nothing else).

    Made by :func:`rerandomize` and :meth:`take`; otherwise only where such values come back
    (the wire decoder, the checkpoint reader). Noise-free ciphertexts (:func:`embed`) and the
    results of homomorphic steps are plain lists and cannot be sent by mistake.
    """

    __slots__ = ()

    def take(self, indices: Iterable[int]) -> Rerandomized:
        """The values at ``indices``: each is still freshly re-randomised."""
        return Rerandomized(self[i] for i in indices)


#: Nothing to send yet (re-randomised vacuously).
NO_CIPHERTEXTS = Rerandomized()


def rerandomize(key: PublicKey, ciphertexts: Sequence[mpz], noise: NoiseSource) -> Rerandomized:
    """Fresh encryptions of the same plaintexts: ``c * s mod N**2``, ``s`` a fresh noise value."""
    n2 = mpz(key.nsquare)
    draws = noise.draw(len(ciphertexts))
    return Rerandomized(c * r % n2 for c, r in zip(ciphertexts, draws, strict=True))


#: Largest per-base window of ``linear_step`` (a table of ``2**(w-1)`` odd powers).
MAX_WINDOW = 6
#: Default cap, in bytes, on the window tables ``linear_step`` holds at once.
TABLE_BUDGET = 1 << 30
#: ``linear_step`` recodes exponents and runs rows in chunks of this many rows.
CHUNK_ROWS = 2048
#: ``linear_step`` batches for an executor hold at least this many terms (about 0.3 s of work
#: at 2048 bits; smaller steps stay whole), at most ``MAX_BATCH_TERMS`` (a batch's bases take
#: up to ``|N**2| / 8`` bytes per term), and there are about ``BATCHES_PER_WORKER`` per worker
#: in between: each batch rebuilds the tables of the bases it shares with others (measured in
#: docs/design-compute.md).
BATCH_TERMS = 1 << 12
MAX_BATCH_TERMS = 1 << 18
BATCHES_PER_WORKER = 2


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
    executor: Executor | None = None,
    batch_terms: int | None = None,
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
    Where the AVX-512 IFMA kernel runs, the rows go to its lanes instead (:func:`_lane_rows`:
    fixed windows over a table of powers per base, eight rows at once, tables within
    ``table_budget``), 3 to 4 times less CPU for the same integers.

    With an ``executor`` of more than one worker, the rows are cut into contiguous batches of
    at least ``batch_terms`` (default ``BATCH_TERMS``) terms, edges plus one self term per row
    (:func:`step_bounds`), each a :class:`StepBatch` of public data that
    :func:`run_step_batch` computes the same way, ``table_budget`` shared among the workers.
    Batches are built and handed to the executor in waves of ``workers * BATCHES_PER_WORKER``
    (a wave's results decoded before the next is built): the node holds one wave's batches at
    a time, at most that many times ``MAX_BATCH_TERMS`` terms, however large the step.
    Every row is the same integer in ``[0, N**2)`` whatever the batching, so the result is
    bit-identical to the serial one.
    """
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
    if len(cols) and (int(cols.min()) < 0 or int(cols.max()) >= len(bases)):
        raise ValueError("indices name a base that does not exist")
    workers = 1 if executor is None else executor.workers
    if workers > 1:
        least = BATCH_TERMS if batch_terms is None else batch_terms
        bounds = step_bounds(n_rows, ptr, workers, least)
        if len(bounds) > 2:
            assert executor is not None
            batches = iter_step_batches(
                key,
                encoded_values(bases, key),
                self_coef,
                ptr,
                cols,
                edge_exps,
                bounds,
                table_budget // workers,
            )
            width = key.ciphertext_bytes
            out: list[mpz] = []
            # built and sent a wave at a time: the node holds one wave's batches, not a step's
            while wave := list(itertools.islice(batches, workers * BATCHES_PER_WORKER)):
                for raw in executor.map(run_step_batch, wave):
                    out += decode_values(raw, width)
            return out
    return _linear_rows(key, bases, n_rows, self_coef, ptr, cols, edge_exps, table_budget)


@dataclass(frozen=True, eq=False)
class StepBatch:
    """Rows ``[first_row, first_row + n_rows)`` of a ``linear_step``, self-contained.

    ``bases`` holds ``len(bases) // |N**2|-bytes`` ciphertexts as fixed-width big-endian
    numbers, reduced mod ``N**2``: the batch rows' own first (local position ``x`` is row
    ``first_row + x``), then every other base the rows name, in increasing global position.
    ``indptr`` and ``indices`` are the rows' CSR over those local positions, ``coefs`` their
    int64 exponents. Public data only: ciphertexts, positions and public exponents.
    """

    modulus: int  # N
    first_row: int
    n_rows: int
    self_coef: int
    bases: bytes
    indptr: IntArray
    indices: IntArray
    coefs: IntArray
    table_budget: int


def step_bounds(
    n_rows: int, indptr: IntArray, workers: int, min_terms: int = BATCH_TERMS
) -> list[int]:
    """Row bounds ``[0, r_1, ..., n_rows]`` of ``k`` contiguous ranges of about equal terms
    (edges plus one self term a row): ``k = workers * BATCHES_PER_WORKER``, fewer if a batch
    would hold under ``min_terms`` terms, more if one would hold over ``MAX_BATCH_TERMS``,
    never more than the rows."""
    terms = indptr + np.arange(n_rows + 1, dtype=np.int64)  # terms before each row
    total = int(terms[-1])
    k = min(workers * BATCHES_PER_WORKER, total // max(1, min_terms))
    k = min(n_rows, max(1, k, -(-total // MAX_BATCH_TERMS)))
    cuts = np.searchsorted(terms, np.arange(1, k, dtype=np.int64) * total / k)
    bounds: list[int] = np.unique(np.concatenate(([0], cuts, [n_rows]))).tolist()
    return bounds


def encoded_values(values: Sequence[mpz], key: PublicKey) -> np.ndarray[Any, np.dtype[np.uint8]]:
    """Every value reduced mod ``N**2`` and encoded once (:func:`encode_values`), one row of
    ``ciphertext_bytes`` a value: a batch's bases are then a gather of rows, whatever the
    number of batches that name a value."""
    width = key.ciphertext_bytes
    raw = encode_values(values, mpz(key.nsquare), width)
    return np.frombuffer(raw, dtype=np.uint8).reshape(len(values), width)


def iter_step_batches(
    key: PublicKey,
    encoded: np.ndarray[Any, np.dtype[np.uint8]],
    self_coef: int,
    indptr: IntArray,
    indices: IntArray,
    coefs: IntArray,
    bounds: Sequence[int],
    table_budget: int = TABLE_BUDGET,
) -> Iterator[StepBatch]:
    """The :class:`StepBatch` of each range of rows between consecutive ``bounds``, built as
    it is asked for, its bases gathered from ``encoded`` (:func:`encoded_values` of the
    step's bases)."""
    for r0, r1 in itertools.pairwise(bounds):
        lo, hi = int(indptr[r0]), int(indptr[r1])
        cols = indices[lo:hi]
        own = (cols >= r0) & (cols < r1)
        foreign = np.unique(cols[~own])
        local = np.empty(len(cols), dtype=np.int64)
        local[own] = cols[own] - r0
        local[~own] = (r1 - r0) + np.searchsorted(foreign, cols[~own])
        chosen = np.concatenate((np.arange(r0, r1, dtype=np.int64), foreign))
        blob = encoded[chosen].tobytes()
        yield StepBatch(
            key.n,
            r0,
            r1 - r0,
            self_coef,
            blob,
            indptr[r0 : r1 + 1] - lo,
            local,
            coefs[lo:hi],
            table_budget,
        )


def step_batches(
    key: PublicKey,
    bases: Sequence[mpz],
    n_rows: int,
    self_coef: int,
    indptr: IntArray,
    indices: IntArray,
    coefs: IntArray,
    workers: int,
    min_terms: int = BATCH_TERMS,
    table_budget: int = TABLE_BUDGET,
) -> list[StepBatch]:
    """Every batch of a step at once (:func:`step_bounds`, :func:`iter_step_batches`)."""
    bounds = step_bounds(n_rows, indptr, workers, min_terms)
    return list(
        iter_step_batches(
            key,
            encoded_values(bases, key),
            self_coef,
            indptr,
            indices,
            coefs,
            bounds,
            table_budget,
        )
    )


def run_step_batch(batch: StepBatch) -> bytes:
    """The rows of ``batch`` (as :func:`linear_step` computes them), fixed-width big-endian."""
    key = PublicKey(batch.modulus)
    width = key.ciphertext_bytes
    bases = decode_values(batch.bases, width)
    rows = _linear_rows(
        key,
        bases,
        batch.n_rows,
        batch.self_coef,
        batch.indptr,
        batch.indices,
        batch.coefs,
        batch.table_budget,
    )
    return encode_values(rows, mpz(key.nsquare), width)


def encode_values(values: Sequence[mpz], modulus: mpz, width: int) -> bytes:
    """Values reduced mod ``modulus``, each ``width`` bytes big-endian (a batch's form)."""
    return b"".join(int(v % modulus).to_bytes(width, "big") for v in values)


def decode_values(raw: bytes, width: int) -> list[mpz]:
    """Inverse of :func:`encode_values`."""
    return [mpz(int.from_bytes(raw[i : i + width], "big")) for i in range(0, len(raw), width)]


def _linear_rows(
    key: PublicKey,
    bases: Sequence[mpz],
    n_rows: int,
    self_coef: int,
    ptr: IntArray,
    cols: IntArray,
    edge_exps: IntArray,
    table_budget: int,
) -> list[mpz]:
    """:func:`linear_step` in this process, on validated int64 arrays (its docstring): in the
    kernel's lanes where it runs (:func:`_lane_rows`), else in gmpy2."""
    rows, term_cols, term_exps = _terms(n_rows, self_coef, ptr, cols, edge_exps)
    if native():
        lanes = _lane_rows(key, bases, n_rows, rows, term_cols, term_exps, table_budget)
        if lanes is not None:
            return lanes
    return _gmp_rows(key, bases, n_rows, rows, term_cols, term_exps, table_budget)


def _terms(
    n_rows: int, self_coef: int, ptr: IntArray, cols: IntArray, edge_exps: IntArray
) -> tuple[IntArray, IntArray, IntArray]:
    """The step's terms row by row, the self term first, zero exponents left out: each term's
    row (sorted), base and exponent."""
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
    return rows[keep], term_cols[keep], term_exps[keep]


def _gmp_rows(
    key: PublicKey,
    bases: Sequence[mpz],
    n_rows: int,
    rows: IntArray,
    term_cols: IntArray,
    term_exps: IntArray,
    table_budget: int,
) -> list[mpz]:
    """The rows in gmpy2: sliding windows per base (:func:`linear_step`'s docstring)."""
    n2 = mpz(key.nsquare)
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


#: Widest fixed window of :func:`_lane_rows` (a table of ``2**w`` powers per base).
LANE_WINDOW_MAX = 8


def lane_cost(w: int, bits: int, terms: int, bases: int, rows: int) -> int:
    """Montgomery products of :func:`_lane_rows` with windows of ``w`` bits for ``terms``
    exponents of ``bits`` bits over ``bases`` distinct bases in ``rows`` rows: ``bases (2**w -
    1)`` for the tables (a conversion and ``2**w - 2`` products each), ``terms ceil(bits / w)``
    for the digits (zero digits too: the lanes share one schedule; count padded terms for the
    exact figure, :func:`lane_widths`) and ``rows w (ceil(bits / w) - 1)`` squarings."""
    windows = -(-bits // w)
    return bases * ((1 << w) - 1) + terms * windows + rows * w * (windows - 1)


def lane_window(bits: int, terms: int, bases: int, rows: int) -> int:
    """The fixed window ``w`` of :func:`_lane_rows`: the fewest products (:func:`lane_cost`)."""
    return min(range(1, LANE_WINDOW_MAX + 1), key=lambda w: lane_cost(w, bits, terms, bases, rows))


def lane_widths(counts: IntArray) -> IntArray:
    """For rows' term counts sorted ascending, each row's width in the lanes: the most terms
    among its eight (rows ``8 i .. 8 i + 7``), to which it is padded."""
    widths: IntArray = counts[np.minimum(np.arange(len(counts)) | 7, len(counts) - 1)]
    return widths


def _lane_rows(
    key: PublicKey,
    bases: Sequence[mpz],
    n_rows: int,
    rows: IntArray,
    term_cols: IntArray,
    term_exps: IntArray,
    table_budget: int,
) -> list[mpz] | None:
    """The rows in the kernel, eight at a time in its lanes: fixed windows of ``w`` bits over
    a table of the powers ``b**0 .. b**(2**w - 1)`` of every base (``ProductTable.of_powers``).

    With ``W = ceil(bits / w)`` windows and ``d_i(e)`` digit ``i`` of ``e``, row ``x`` with
    terms ``(b_j, e_j)``, ``j < m``, is ``acc = prod_j b_j**d_{W-1}(e_j)``, then for ``i = W -
    2 .. 0``: ``acc = acc**(2**w) * prod_j b_j**d_i(e_j)``; as a ``ProductTable`` schedule,
    ``W m`` positions, window by window, with ``blocks = m`` and ``squarings = w``. Eight rows
    share one schedule, so rows are sorted by their number of terms and each eight padded to
    the most of them with the table's entry 0 (``b**0 = 1``). Tables take ``2**w`` entries of
    ``limbs(|N**2|)`` 8-byte limbs per base; the rows are taken in runs whose distinct bases'
    tables fit ``table_budget`` (a base that several runs use is built in each), narrowing
    ``w`` if one row's terms would not fit. ``None`` if they do not even at ``w = 1`` (the
    gmpy2 path then runs the step). Every row is the same integer in ``[0, N**2)`` as on the
    gmpy2 path.
    """
    one = mpz(1)
    if not len(term_exps):
        return [one] * n_rows
    bits = int(term_exps.max()).bit_length()
    entry_bytes = 8 * limbs(key.nsquare.bit_length())
    counts = np.bincount(rows, minlength=n_rows)
    previous = _previous_use(term_cols)
    w = lane_window(bits, len(term_exps), int((previous < 0).sum()), n_rows)
    while w > 1 and int(counts.max()) << w > table_budget // entry_bytes:
        w -= 1
    cap = table_budget // (entry_bytes << w)  # distinct bases a run of rows may hold
    if int(counts.max()) > cap:
        return None
    ends = np.cumsum(counts)
    term_start = ends - counts
    windows = -(-bits // w)
    shifts = w * np.arange(windows - 1, -1, -1, dtype=np.int64)  # the top window first
    out = [one] * n_rows
    r0 = 0
    while r0 < n_rows:
        lo = int(term_start[r0])
        # bases new to a run from lo: those whose previous use lies before it
        distinct = np.zeros(len(term_cols) - lo + 1, dtype=np.int64)
        np.cumsum(previous[lo:] < lo, out=distinct[1:])
        at_row_ends = distinct[ends[r0:] - lo]
        r1 = r0 + max(1, int(np.searchsorted(at_row_ends, cap, side="right")))
        hi = int(ends[r1 - 1])
        if hi > lo:
            used, local = np.unique(term_cols[lo:hi], return_inverse=True)
            table = ProductTable.of_powers([bases[b] for b in used.tolist()], key.nsquare, 1 << w)
            digits = (term_exps[lo:hi, None] >> shifts[None, :]) & ((1 << w) - 1)
            positions = (local.reshape(-1, 1) << w) + digits
            _lane_run(table, positions, counts[r0:r1], term_start[r0:r1] - lo, w, out, r0)
        r0 = r1
    return out


def _previous_use(cols: IntArray) -> IntArray:
    """For each term, the index of the previous term with the same base (-1: none)."""
    order = np.argsort(cols, kind="stable")
    previous = np.full(len(cols), -1, dtype=np.int64)
    same = cols[order[1:]] == cols[order[:-1]]
    previous[order[1:][same]] = order[:-1][same]
    return previous


def _lane_run(
    table: ProductTable,
    positions: IntArray,
    counts: IntArray,
    starts: IntArray,
    w: int,
    out: list[mpz],
    first_row: int,
) -> None:
    """``out[first_row + r]`` for the rows ``r`` of one run with terms: ``positions[t, i]`` is
    term ``t``'s entry for window ``i`` (top first); row ``r`` holds ``counts[r]`` terms from
    ``starts[r]``. Sorted by count, eight rows at a time share the largest count among them."""
    windows = positions.shape[1]
    order = np.argsort(counts, kind="stable")
    order = order[counts[order] > 0]
    lane_max = lane_widths(counts[order])
    cuts = np.flatnonzero(np.diff(lane_max)) + 1
    for a, b in itertools.pairwise([0, *cuts.tolist(), len(order)]):
        width = int(lane_max[a])
        group = order[a:b]
        sizes = counts[group]
        lane = np.repeat(np.arange(b - a), sizes)
        column = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        schedule = np.zeros((b - a, windows, width), dtype=np.int64)  # entry 0: one
        schedule[lane, :, column] = positions[np.repeat(starts[group], sizes) + column]
        values = table.products(schedule.reshape(b - a, windows * width), width, squarings=w)
        for row, value in zip(group.tolist(), values, strict=True):
            out[first_row + row] = value


#: ``pack`` batches for an executor hold at least this many ciphertexts (about 0.25 s of work
#: at 2048 bits and 3 iterations in the IFMA kernel; fewer stay whole).
PACK_BATCH_VALUES = 1 << 11


def pack(
    key: PublicKey,
    ciphertexts: Sequence[mpz],
    slot_bits: int,
    slots: int,
    *,
    executor: Executor | None = None,
    batch_values: int | None = None,
) -> list[mpz]:
    """Pack groups of ``slots`` ciphertexts into one: ``Enc(sum_i m_i 2**(i*slot_bits))``.

    Horner's rule: ``C = c_{k-1}; C = C**(2**slot_bits) * c_i`` for ``i = k-2..0``. Requires
    every ``m_i < 2**slot_bits`` and ``slots * slot_bits < log2 N`` (see fixedpoint), and
    ciphertexts in ``[0, N**2)``.

    With an ``executor`` of more than one worker, the groups are cut into contiguous
    :class:`PackBatch` es of at least ``batch_values`` (default ``PACK_BATCH_VALUES``)
    ciphertexts, about ``BATCHES_PER_WORKER`` per worker, that :func:`run_pack_batch` packs
    the same way. Public data only (ciphertexts and ``slot_bits``); every packed value is the
    same integer in ``[0, N**2)`` whatever the batching.
    """
    workers = 1 if executor is None else executor.workers
    groups = -(-len(ciphertexts) // slots)
    least = PACK_BATCH_VALUES if batch_values is None else max(1, batch_values)
    k = min(workers * BATCHES_PER_WORKER, len(ciphertexts) // least, groups)
    if workers > 1 and k > 1:
        assert executor is not None
        n2, width = mpz(key.nsquare), key.ciphertext_bytes
        bounds = [slots * (groups * i // k) for i in range(k)] + [len(ciphertexts)]
        batches = [
            PackBatch(key.n, slot_bits, slots, encode_values(ciphertexts[a:b], n2, width))
            for a, b in itertools.pairwise(bounds)
        ]
        out: list[mpz] = []
        for raw in executor.map(run_pack_batch, batches):
            out += decode_values(raw, width)
        return out
    return _pack(key, ciphertexts, slot_bits, slots)


@dataclass(frozen=True, eq=False)
class PackBatch:
    """Whole groups of ``slots`` ciphertexts (the last one may be shorter) to pack, as
    fixed-width big-endian numbers reduced mod ``N**2``. Public data only."""

    modulus: int  # N
    slot_bits: int
    slots: int
    ciphertexts: bytes


def run_pack_batch(batch: PackBatch) -> bytes:
    """The packed groups of ``batch`` (as :func:`pack` computes them), fixed-width big-endian."""
    key = PublicKey(batch.modulus)
    width = key.ciphertext_bytes
    values = decode_values(batch.ciphertexts, width)
    packed = _pack(key, values, batch.slot_bits, batch.slots)
    return encode_values(packed, mpz(key.nsquare), width)


def _pack(key: PublicKey, ciphertexts: Sequence[mpz], slot_bits: int, slots: int) -> list[mpz]:
    n2 = mpz(key.nsquare)
    shift = 1 << slot_bits
    groups = [ciphertexts[start : start + slots] for start in range(0, len(ciphertexts), slots)]
    out = [mpz(group[-1]) for group in groups]
    # all groups take Horner step `depth` together: one batch of exponentiations by 2**slot_bits
    for depth in range(1, max((len(group) for group in groups), default=0)):
        active = [k for k, group in enumerate(groups) if len(group) > depth]
        raised = powmod_many([out[k] for k in active], shift, key.nsquare, secret=False)
        for k, value in zip(active, raised, strict=True):
            out[k] = value * groups[k][-1 - depth] % n2
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
