"""Batched modular exponentiation: ``b**e mod M`` for many bases ``b``, one ``e``, one odd ``M``;
and multi-exponentiation, ``prod_j b_j**e_j mod M`` for public ``e_j``.

The threshold decryption raises every packed ciphertext to the same share ``s_i`` modulo
``N**2``, and packing raises every group's accumulator to the same ``2**slot_bits``. Batches
like these fit multi-buffer arithmetic: the native kernel ``riskprop.core._mbx`` runs eight
Montgomery exponentiations at once in the eight 64-bit lanes of AVX-512 IFMA registers (radix
``2**52``, Gueron and Krasnov, ARITH 2016). On a CPU without IFMA, or if the extension was not
built, or with ``RISKPROP_ARITHMETIC=gmp`` in the environment, each base goes to the portable
path: secret exponents to ``riskprop.core._mpn`` (constant-time Montgomery exponentiation over
GMP's mpn functions, 1.2 times faster than ``gmpy2.powmod_sec``, whose GMP squares with a
full multiplication) and public ones to gmpy2. ``RISKPROP_ARITHMETIC=gmpy2`` (or a missing
``_mpn``) sends secret exponents to gmpy2 too. The kernel also runs products of table entries
along one schedule (:class:`ProductTable`): the noise comb, and the iterations'
multi-exponentiations over tables of powers (``paillier.linear_step``, eight rows at once). All
paths give the same integers; tests compare them.

Constant time. A *secret* exponent (a key share) must not steer the computation. In the kernel
its operations and the memory they touch depend only on its length in bytes: a fixed window, a
squaring per bit and a product per window (zero windows too), each factor found by a scan that
reads the whole window table and keeps the wanted entry with masks. On the portable path
``_mpn`` does the same with 64-bit limbs (GMP's ``mpn_sec_tabselect`` for the reads), or
``gmpy2.powmod_sec`` (GMP's ``mpz_powm_sec``, which depends only on the exponent's size in
limbs). A *public* exponent (a packing shift) indexes the table and skips zero windows in the
kernel, and goes to ``gmpy2.powmod``. Not covered: the sign of a negative exponent (a branch)
and the Python code around the kernel (``int`` to bytes and back), which handles the exponent
as a whole. Table products (:class:`ProductTable`, the noise comb) are constant-time only in
the kernel and only when given a sub-table size; see there. Multi-exponentiation
(:func:`product_of_powers`) is for public exponents only (batch verification weights): its
memory accesses follow their digits.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

import gmpy2
from gmpy2 import mpz

from riskprop.core.types import IntArray

RADIX = 52
LANES = 8
MAX_WINDOW = 8
#: A constant-time read scans every table entry; one entry of ``n`` limbs costs about
#: ``SCAN_COST / n`` Montgomery products of that size in ``powmod``'s window table (a vector per
#: limb, the lanes' own numbers), ``SHARED_SCAN_COST / n`` in a :class:`ProductTable` (one number
#: broadcast to the lanes). Fitted on this project's machine (0.42 to 0.54 and 0.16 to 0.20 at
#: 1024- and 2048-bit N): bench_arith.py --constant-time.
SCAN_COST = 0.5
SHARED_SCAN_COST = 0.2
#: ``_mpn`` takes about this many times the kernel's time per value for a secret exponent (4.85
#: and 5.05 at 1024- and 2048-bit N): a batch the kernel would run in mostly empty lanes (a
#: single base) goes to ``_mpn`` instead.
MPN_KERNEL_RATIO = 5
#: One table entry of ``n`` 64-bit limbs read by ``mpn_sec_tabselect`` costs about
#: ``MPN_SCAN_COST / n`` of ``_mpn``'s Montgomery products of that size (0.27 and 0.32 measured
#: at 32 and 64 limbs on this project's machine).
MPN_SCAN_COST = 0.3
ENVIRONMENT = "RISKPROP_ARITHMETIC"  # "gmp" forces the portable path, "gmpy2" also without _mpn


def _load_kernel() -> ModuleType | None:
    """The native module if it was built and this CPU has AVX-512 IFMA, else None."""
    try:
        from riskprop.core import _mbx
    except ImportError:
        return None
    return _mbx if _mbx.available() else None


def _load_mpn() -> ModuleType | None:
    """The constant-time mpn module if it was built (it needs GMP's shared library)."""
    try:
        from riskprop.core import _mpn
    except ImportError:
        return None
    return _mpn


_KERNEL = _load_kernel()
_MPN = _load_mpn()


def forced() -> str:
    """The path ``RISKPROP_ARITHMETIC`` forces: ``"gmp"``, ``"gmpy2"``, or ``""`` (none)."""
    value = os.environ.get(ENVIRONMENT, "").lower()
    return value if value in ("gmp", "gmpy2") else ""


def native() -> bool:
    """Whether batches run in the native kernel (built, supported, not turned off)."""
    return _KERNEL is not None and not forced()


def mpn() -> bool:
    """Whether secret exponents off the kernel run in ``_mpn`` (built, not turned off with
    ``RISKPROP_ARITHMETIC=gmpy2``)."""
    return _MPN is not None and forced() != "gmpy2"


def backend() -> str:
    """``"avx512-ifma"`` when batches run in the native kernel, ``"gmp"`` otherwise."""
    return "avx512-ifma" if native() else "gmp"


def path() -> str:
    """Where exponentiations run, for logs: ``"avx512-ifma"``, ``"gmp"`` (key shares in
    ``_mpn``, the rest in gmpy2) or ``"gmpy2"``."""
    if native():
        return "avx512-ifma"
    return "gmp" if mpn() else "gmpy2"


def _cpuinfo() -> tuple[str, list[str]] | None:
    """The first CPU's model name and flags from /proc/cpuinfo (None where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    model = next((ln.split(":", 1)[1].strip() for ln in lines if "model name" in ln), "?")
    flags = next((ln.split(":", 1)[1].split() for ln in lines if ln.startswith("flags")), [])
    return model, flags


def cpu_model() -> str:
    """The CPU's model name and whether it has AVX-512 IFMA and AVX2 (from /proc/cpuinfo;
    "unknown CPU" elsewhere)."""
    info = _cpuinfo()
    if info is None:
        return "unknown CPU"
    model, flags = info
    features = [f for f in ("avx512ifma", "avx2") if f in flags]
    return f"{model} ({', '.join(features) or 'no AVX2'})"


def cpu_has_ifma() -> bool:
    """Whether /proc/cpuinfo lists AVX-512 F and IFMA (what the native kernel needs)."""
    info = _cpuinfo()
    return info is not None and {"avx512f", "avx512ifma"} <= set(info[1])


def kernel_built() -> bool:
    """Whether the native kernel was built and this CPU runs it (turned off or not)."""
    return _KERNEL is not None


def mpn_built() -> bool:
    """Whether ``_mpn`` was built (turned off or not)."""
    return _MPN is not None


def describe() -> str:
    """The arithmetic paths of this process, for benchmark figures: the CPU, where batched
    exponentiations run (the IFMA kernel; else ``_mpn`` with its GMP for secret exponents and
    gmpy2 for public ones, or gmpy2 alone) and where ``linear_step`` runs (the kernel's lanes,
    else gmpy2, named with its GMP)."""
    if native():
        batched = "AVX-512 IFMA kernel"
    elif mpn():
        assert _MPN is not None
        batched = f"GMP mpn {_MPN.gmp_version()} (secret exponents), gmpy2 (public ones)"
    else:
        batched = "gmpy2"
    chosen = forced()
    if chosen and (_KERNEL is not None or chosen == "gmpy2"):
        batched += f" (forced by {ENVIRONMENT}={chosen})"
    gmp = f"gmpy2 {gmpy2.version()} ({gmpy2.mp_version()})"
    steps = "AVX-512 IFMA kernel" if native() else gmp
    return f"{cpu_model()}; batched exponentiation: {batched}; linear_step: {steps}"


@dataclass(frozen=True)
class _Modulus:
    """Per-modulus constants of the kernel: ``R = 2**(52 n)`` with ``4 M < R``."""

    nbytes: int
    limbs: int  # n
    raw: bytes  # M, little-endian
    r2: bytes  # R**2 mod M, little-endian
    k0: int  # -M**-1 mod 2**52


def limbs(modulus_bits: int) -> int:
    """The kernel's limbs ``n`` for a modulus of ``modulus_bits`` bits: ``4 M < 2**(52 n)``
    (whole bytes, as the kernel takes them)."""
    return (8 * -(-modulus_bits // 8) + 2 + RADIX - 1) // RADIX


@functools.lru_cache(maxsize=16)
def _modulus(modulus: int) -> _Modulus:
    nbytes = (modulus.bit_length() + 7) // 8
    n = limbs(modulus.bit_length())
    r2 = pow(2, 2 * RADIX * n, modulus)
    k0 = -pow(modulus, -1, 1 << RADIX) % (1 << RADIX)
    raw = modulus.to_bytes(nbytes, "little")
    return _Modulus(nbytes, n, raw, r2.to_bytes(nbytes, "little"), k0)


def scan_cost(entries: int, limbs: int, *, shared: bool = False) -> float:
    """A constant-time read of one of ``entries`` table entries of ``limbs`` limbs (it reads
    them all), in Montgomery products of that size; ``shared``: a :class:`ProductTable`'s."""
    return entries * (SHARED_SCAN_COST if shared else SCAN_COST) / limbs


def window(exponent: int, *, secret: bool, limbs: int) -> int:
    """The window width with the lowest cost for ``exponent`` modulo a ``limbs``-limb modulus.

    Squarings do not depend on ``w`` (one per bit); the table costs ``2**w - 1`` products. A
    public exponent then costs one product per non-zero window; a secret one, read as ``8 *
    bytes`` bits, one product and one scan of the ``2**w`` entries (:func:`scan_cost`) per
    window, whatever its digits.
    """
    if not secret:
        bits = exponent.bit_length()
        windows = [
            sum(1 for k in range(-(-bits // w)) if (exponent >> (k * w)) & ((1 << w) - 1))
            for w in range(1, MAX_WINDOW + 1)
        ]
        return min(range(1, MAX_WINDOW + 1), key=lambda w: (1 << w) - 1 + windows[w - 1])
    bits = 8 * _exponent_bytes(exponent)

    def cost(w: int) -> float:
        return (1 << w) - 1 + -(-bits // w) * (1 + scan_cost(1 << w, limbs))

    return min(range(1, MAX_WINDOW + 1), key=cost)


def _exponent_bytes(exponent: int) -> int:
    return (exponent.bit_length() + 7) // 8


def powmod_many(
    bases: Sequence[int], exponent: int, modulus: int, *, secret: bool = True
) -> list[mpz]:
    """``[b**exponent mod modulus for b in bases]`` for an odd ``modulus > 1``.

    A negative exponent inverts the results (``b**-e = (b**e)**-1``; integer Shamir shares can
    be negative), and a base without an inverse then raises ``ValueError``. ``secret`` says
    whether the exponent must not steer the computation (a key share: constant-time, module
    docstring) or may (a public shift: faster).
    """
    if modulus <= 1 or modulus % 2 == 0:
        raise ValueError("modulus must be odd and greater than 1")
    if exponent < 0:
        m = mpz(modulus)
        out = []
        for value in powmod_many(bases, -exponent, modulus, secret=secret):
            if gmpy2.gcd(value, m) != 1:
                raise ValueError("base is not invertible modulo the modulus")
            out.append(gmpy2.invert(value, m))
        return out
    if not bases:
        return []
    if not native():
        m, e = mpz(modulus), mpz(exponent)
        if not secret:
            return [gmpy2.powmod(mpz(b), e, m) for b in bases]
        if exponent == 0:  # powmod_sec needs e > 0; b**0 = 1 (modulus > 1)
            return [mpz(1) for _ in bases]
        if mpn():
            return _mpn_powmod(bases, exponent, modulus)
        return [gmpy2.powmod_sec(mpz(b), e, m) for b in bases]
    lanes = -(-len(bases) // LANES) * LANES
    if secret and exponent > 0 and mpn() and len(bases) * MPN_KERNEL_RATIO < lanes:
        return _mpn_powmod(bases, exponent, modulus)  # a lone base (a verification key)
    assert _KERNEL is not None
    mod = _modulus(modulus)
    raw = _KERNEL.powmod(
        _encode(bases, modulus, mod.nbytes),
        exponent.to_bytes(_exponent_bytes(exponent), "little"),
        mod.raw,
        mod.r2,
        mod.k0,
        window(exponent, secret=secret, limbs=mod.limbs),
        secret,
    )
    return _decode(raw, mod.nbytes, mpz(modulus))


@functools.lru_cache(maxsize=16)
def _mpn_modulus(modulus: int) -> tuple[int, bytes, bytes, int]:
    """``_mpn``'s constants for ``modulus``: bytes (whole limbs), ``M``, ``R**2 mod M`` and
    ``-M**-1 mod 2**64``, with ``R = 2**(64 n)`` for the ``n`` limbs of ``M``."""
    n = -(-modulus.bit_length() // 64)
    nbytes = 8 * n
    r2 = pow(2, 128 * n, modulus)
    k0 = -pow(modulus, -1, 1 << 64) % (1 << 64)
    return nbytes, modulus.to_bytes(nbytes, "little"), r2.to_bytes(nbytes, "little"), k0


def mpn_window(exponent_bytes: int, limbs: int) -> int:
    """``_mpn``'s window for a secret exponent of ``exponent_bytes`` bytes modulo ``limbs``
    limbs: ``2**w - 1`` table products, then per window one product and one scan of the
    ``2**w`` entries (:data:`MPN_SCAN_COST`); the squarings (one a bit) do not depend on it."""
    bits = 8 * exponent_bytes

    def cost(w: int) -> float:
        return (1 << w) - 1 + -(-bits // w) * (1 + (1 << w) * MPN_SCAN_COST / limbs)

    return min(range(1, MAX_WINDOW + 1), key=cost)


def _mpn_powmod(bases: Sequence[int], exponent: int, modulus: int) -> list[mpz]:
    """``b**exponent mod modulus`` in ``_mpn`` (``exponent > 0``, secret: constant time)."""
    assert _MPN is not None
    nbytes, raw, r2, k0 = _mpn_modulus(modulus)
    size = _exponent_bytes(exponent)
    out = _MPN.powmod(
        _encode(bases, modulus, nbytes),
        exponent.to_bytes(size, "little"),
        raw,
        r2,
        k0,
        mpn_window(size, nbytes // 8),
    )
    return _decode(out, nbytes, mpz(modulus))


def _encode(values: Sequence[int], modulus: int, size: int) -> bytes:
    """Each value mod ``M`` as ``size`` little-endian bytes, one after the other."""
    return b"".join((int(v) % modulus).to_bytes(size, "little") for v in values)


def _decode(raw: bytes, size: int, modulus: mpz) -> list[mpz]:
    """The kernel's results, ``size`` little-endian bytes each and at most ``M``
    (almost-Montgomery): ``% M`` maps ``M`` itself to 0."""
    return [
        mpz(int.from_bytes(raw[i : i + size], "little")) % modulus for i in range(0, len(raw), size)
    ]


#: :func:`product_of_powers` in the kernel: the widest window it may choose, and the budget for
#: its buckets (eight lanes of ``2**c`` numbers of ``n`` limbs of 8 bytes).
MULTI_WINDOW_MAX = 16
BUCKET_BUDGET = 16 << 20


def multi_window(count: int, bits: int, limbs: int) -> int:
    """The kernel's window ``c`` for ``count`` public exponents of ``bits`` bits modulo a
    ``limbs``-limb modulus.

    Each lane owns one of the ``W = ceil(bits / c)`` windows; a pass over the bases serves eight
    of them with one vector product per base, then reduces each lane's ``2**c - 1`` buckets with
    two products per bucket. Cost in vector products: ``ceil(W / 8) * (count + 2**(c + 1))``,
    over the widths whose buckets fit :data:`BUCKET_BUDGET` (at least ``c = 1``).
    """
    widths = [
        c
        for c in range(1, MULTI_WINDOW_MAX + 1)
        if c == 1 or LANES * (1 << c) * limbs * 8 <= BUCKET_BUDGET
    ]

    def cost(c: int) -> int:
        windows = -(-bits // c)
        return -(-windows // LANES) * (count + (2 << c))

    return min(widths, key=cost)


def product_of_powers(bases: Sequence[int], exponents: Sequence[int], modulus: int) -> mpz:
    """``prod_j bases[j]**exponents[j] mod modulus`` for non-negative *public* exponents (the
    computation depends on them) and ``modulus >= 1``.

    Pippenger's bucket method: for windows of ``c`` bits, ``S_w = prod_d B_{w,d}**d`` where the
    bucket ``B_{w,d}`` is the product of the bases whose exponent has digit ``d`` in window ``w``
    (a running product gives it in two products per bucket), and the result is ``prod_w
    S_w**(2**(c w))`` (Horner, ``c`` squarings per window). In the kernel (odd modulus > 1)
    eight windows run at once in the lanes (:func:`multi_window`), the bases converted to
    Montgomery form once and broadcast; the window sums are combined here. Otherwise gmpy2 goes
    window by window.
    """
    if len(bases) != len(exponents):
        raise ValueError("one exponent per base")
    modulus = int(modulus)  # an mpz would reach the kernel's constants (and their cache)
    if modulus < 1:
        raise ValueError("the modulus must be positive")
    exps = [int(e) for e in exponents]
    if exps and min(exps) < 0:
        raise ValueError("exponents must be non-negative")
    m = mpz(modulus)
    bits = max((e.bit_length() for e in exps), default=0)
    if bits == 0:
        return mpz(1) % m
    if not native() or modulus <= 1 or modulus % 2 == 0:
        return _gmp_product_of_powers(bases, exps, m)
    assert _KERNEL is not None
    mod = _modulus(modulus)
    width = multi_window(len(bases), bits, mod.limbs)
    size = (bits + 7) // 8
    raw = _KERNEL.multiexp(
        _encode(bases, modulus, mod.nbytes),
        b"".join(e.to_bytes(size, "little") for e in exps),
        bits,
        mod.raw,
        mod.r2,
        mod.k0,
        width,
    )
    sums = _decode(raw, mod.nbytes, m)
    shift = mpz(1) << width
    acc = sums[-1]
    for total in reversed(sums[:-1]):
        acc = gmpy2.powmod(acc, shift, m) * total % m
    return acc


def _gmp_product_of_powers(bases: Sequence[int], exponents: Sequence[int], modulus: mpz) -> mpz:
    """:func:`product_of_powers` in gmpy2, window by window from the top: windows of ``w`` bits,
    each costing a product per base and ``2**(w+1)`` more, plus one squaring per bit overall."""
    m = modulus
    if not bases:
        return mpz(1) % m
    bits = max(int(e).bit_length() for e in exponents)
    count = len(bases)
    width = min(range(1, 17), key=lambda w: -(-bits // w) * (count + (2 << w)) + bits)
    mask = (1 << width) - 1
    values = [mpz(b) % m for b in bases]
    exps = [int(e) for e in exponents]
    acc = mpz(1)
    for window in reversed(range(-(-bits // width))):
        if acc != 1:
            for _ in range(width):
                acc = acc * acc % m
        buckets: dict[int, mpz] = {}
        shift = window * width
        for value, e in zip(values, exps, strict=True):
            digit = (e >> shift) & mask
            if digit:
                held = buckets.get(digit)
                buckets[digit] = value if held is None else held * value % m
        running = total = None
        for digit in range(mask, 0, -1):
            held = buckets.get(digit)
            if held is not None:
                running = held if running is None else running * held % m
            if running is not None:
                total = running if total is None else total * running % m
        if total is not None:
            acc = acc * total % m
    return acc % m


#: A Montgomery product of the kernel, per lane, in multiplications ``a * b % M`` of gmpy2 at
#: Paillier sizes (0.16 at 1024-bit N, 0.21 at 2048 on this project's machine: bench_arith.py).
NATIVE_PRODUCT_COST = 0.2
#: Most squarings :meth:`ProductTable.products` does between blocks (the kernel's bound).
MAX_SQUARINGS = 64


class ProductTable:
    """A fixed table ``T`` of values mod ``M`` and products of its entries along one schedule.

    For positions ``p_0 .. p_{K-1}`` (``K = per_value``): ``acc = T[p_0]``, then for ``k >= 1``
    square ``acc`` ``s`` times (``squarings``, default 1) when ``blocks`` divides ``k`` and
    multiply by ``T[p_k]``, all mod ``M``: ``K - 1`` multiplications and ``s (K - 1) // blocks``
    squarings. A Lim-Lee comb is this with ``K = blocks * columns``; a multi-exponentiation
    with fixed windows of ``s`` bits is this over a table of powers (:meth:`of_powers`), with
    ``blocks`` the number of bases and one position per base and window, highest window first.
    In the kernel the table is kept in Montgomery form (``n`` limbs of 52 bits in ``uint64``
    each) and eight schedules run at once, each lane reading its own entries; otherwise gmpy2
    multiplies entry by entry.

    Which entries are read depends on the positions, unless :meth:`products` is given a
    ``subtable`` size and runs in the kernel: then each read scans the whole aligned run of
    ``subtable`` entries that holds position ``k`` of every row (which run is public; where in
    it is not), so its memory accesses do not depend on the positions. On the gmpy2 path the
    products are the same but the reads are list indexing, not constant-time.
    """

    def __init__(self, values: Sequence[int], modulus: int, *, powers: int = 0) -> None:
        """The table of ``values`` mod ``M``, or with ``powers > 0`` of their first ``powers``
        powers (:meth:`of_powers`)."""
        if modulus <= 1 or modulus % 2 == 0:
            raise ValueError("modulus must be odd and greater than 1")
        if powers < 0:
            raise ValueError("powers must be non-negative")
        self.modulus = mpz(modulus)
        self.entries = len(values) * (powers or 1)
        self.native = native()
        self._values: list[mpz] = []
        self._limbs = b""
        if self.native:
            assert _KERNEL is not None
            mod = _modulus(modulus)
            blob = _encode(values, modulus, mod.nbytes)
            if powers:
                self._limbs = _KERNEL.powers(blob, mod.raw, mod.r2, mod.k0, powers)
            else:
                self._limbs = _KERNEL.montgomery(blob, mod.raw, mod.r2, mod.k0)
        elif powers:
            m = self.modulus
            for v in values:
                base, acc = mpz(v) % m, mpz(1) % m
                for _ in range(powers):
                    self._values.append(acc)
                    acc = acc * base % m
        else:
            self._values = [mpz(v) % self.modulus for v in values]

    @classmethod
    def of_powers(cls, values: Sequence[int], modulus: int, count: int) -> ProductTable:
        """The table whose entry ``v count + d`` is ``values[v]**d mod M`` for ``d < count``:
        ``count - 2`` products a value (in the kernel, eight values at once)."""
        if count < 1:
            raise ValueError("a table of powers holds at least the power 0")
        return cls(values, modulus, powers=count)

    @property
    def nbytes(self) -> int:
        """Memory of the table's numbers (limbs, or the ``mpz`` objects and list)."""
        if self.native:
            return len(self._limbs)
        return sum(sys.getsizeof(v) for v in self._values) + sys.getsizeof(self._values)

    def products(
        self, positions: IntArray, blocks: int, *, subtable: int = 0, squarings: int = 1
    ) -> list[mpz]:
        """One product per row of ``positions`` (shape ``(count, K)``, entries < ``entries``).

        ``subtable`` (a power of two dividing ``entries``; 0: none): column ``k`` of every row
        lies in one aligned run of that many entries, which the kernel scans for each read.
        ``squarings`` (0 to 64): squarings of the accumulator at each multiple of ``blocks``.
        """
        if positions.ndim != 2 or blocks < 1:
            raise ValueError("positions must be a (count, K) array and blocks >= 1")
        if not 0 <= squarings <= MAX_SQUARINGS:
            raise ValueError(f"squarings must lie in [0, {MAX_SQUARINGS}]")
        count, per_value = positions.shape
        if count == 0:
            return []
        if per_value == 0 or positions.min() < 0 or positions.max() >= self.entries:
            raise ValueError("positions outside the table")
        if subtable:
            if subtable < 0 or subtable & (subtable - 1) or self.entries % subtable:
                raise ValueError("the sub-table size must be a power of two dividing the table")
            runs = positions // subtable
            if (runs != runs[0]).any():
                raise ValueError("a column's positions lie in different sub-tables")
        if not self.native:
            return [self._product(row, blocks, squarings) for row in positions.tolist()]
        assert _KERNEL is not None
        mod = _modulus(int(self.modulus))
        raw = _KERNEL.comb(
            self._limbs,
            positions.astype("<u4").tobytes(),
            per_value,
            blocks,
            mod.raw,
            mod.k0,
            subtable,
            squarings,
        )
        return _decode(raw, mod.nbytes, self.modulus)

    def _product(self, row: Sequence[int], blocks: int, squarings: int) -> mpz:
        values, m = self._values, self.modulus
        acc = values[row[0]]
        for k in range(1, len(row)):
            if k % blocks == 0:
                for _ in range(squarings):
                    acc = acc * acc % m
            acc = acc * values[row[k]] % m
        return acc
