"""Integer encoding of scores and weights, and the overflow budget.

Weights get ``f`` fractional bits, initial scores ``f_s`` (``f - 4 <= f_s <= f``, see
:meth:`FixedPoint.for_packing`). An initial score ``r`` becomes ``R_0 = round(r * 2**f_s)`` and
iteration ``k`` maps the integer state with non-negative integer coefficients::

    R_k(x) = c_self * R_{k-1}(x) + sum_s c(s, x) * R_{k-1}(s)
    c_self = floor((1 - d) * 2**f),   c(s, x) = floor(D * w(s, x) / W(x)),   D = floor(d * 2**f)

with ``w(s, x)`` the weight of edge ``s -> x`` and ``W(x) = sum_s w(s, x)`` (1 up to the weights'
rounding; amounts in place of weights give the same, only ratios within a row count), so after
``K`` iterations in all (every period counts) ``R_K / 2**(f_s + f*K)`` approximates the real
score. The coefficients are exact integer arithmetic on the exact binary values of ``d`` and
of the weights (float64 values are dyadic rationals), never float products, so the invariants
hold for every ``f`` up to ``MAX_PRECISION_BITS``:

* Bound: ``sum_s c(s, x) <= D`` (a sum of floors is at most the floor of the sum, ``D W / W``)
  and ``c_self + D = 2**f - ceil(d 2**f) + floor(d 2**f) <= 2**f``: each row's coefficients sum
  to at most ``2**f``. With ``R_0 <= 2**f_s``, ``0 <= R_K <= 2**(f_s + f*K)``: one slot of
  ``f_s + f*K + 1`` bits always holds a value, and a modulus of ``b`` bits holds
  ``(b - 1) // slot_bits`` slots.
* Precision: in units of ``2**-f`` a row loses ``ceil(d 2**f) - d 2**f`` on its own term and
  ``(d 2**f - D) w / W`` plus less than 1 on each edge: less than ``deg + 1`` in all (the first
  two add up to at most 1), and it gains nothing (no coefficient is above its real value). The
  update is non-expansive in the sup norm, so ``|decoded - exact| <= 2**-(f_s+1) + sum_k (deg_k
  + 1) * 2**-f``, where ``deg_k`` is the largest in-degree used in iteration ``k`` and ``exact``
  propagates the weights ``w / W``; the secure result is never above it by more than the
  initial rounding ``2**-(f_s+1)``. (Float64 weights ``amount / row total`` are within a
  relative ``2**-52`` of the amounts' exact ratios: at most ``2**-52`` more per iteration
  against those.) With the default ``f = 32`` (``f_s >= 28``) the bound is below 1e-7 while
  ``K * (max in-degree + 1) <= 400`` and below 1e-6 while it is at most 4,000 (TNO's toolbox
  encodes weights with 12 and scores with 8 decimal digits and reports differences of about
  2e-6 on the same data); ``--precision-bits 48`` gives about 1e-12 for 1.5 times the
  decryption cost (wider slots).
* Packing: the score bits only enter the bound through ``2**-(f_s+1)``, far below the weight
  term, so :meth:`FixedPoint.for_packing` gives up to ``SCORE_BITS_SLACK`` of them when that
  fits one more slot into the plaintext (at ``K = 3``, ``f = 32``: ``f_s = 30`` and slots of 127
  bits, 16 per 2048-bit plaintext instead of 15, 8 per 1024-bit one instead of 7).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from riskprop.core.types import FloatArray, IntArray
from riskprop.errors import ConfigError, ParameterError

DEFAULT_PRECISION_BITS = 32
#: Fewer fractional bits than this make every score too coarse to rank accounts.
MIN_PRECISION_BITS = 8
#: Scores enter and leave as float64 (53-bit significand): finer weights would not show.
MAX_PRECISION_BITS = 52
#: How many score bits :meth:`FixedPoint.for_packing` may give up for one more slot.
SCORE_BITS_SLACK = 4


@dataclass(frozen=True)
class FixedPoint:
    """Fixed-point parameters: ``precision_bits`` (``f`` in the module doc) for the weights and
    ``score_bits`` (``f_s``; ``None`` means ``f``) for the initial scores."""

    precision_bits: int = DEFAULT_PRECISION_BITS
    score_bits: int | None = None

    def __post_init__(self) -> None:
        if not MIN_PRECISION_BITS <= self.precision_bits <= MAX_PRECISION_BITS:
            raise ParameterError(
                "precision_bits",
                f"must lie in {MIN_PRECISION_BITS}..{MAX_PRECISION_BITS} "
                f"(got {self.precision_bits})",
            )
        if self.score_bits is not None and not (
            MIN_PRECISION_BITS <= self.score_bits <= self.precision_bits
        ):
            raise ParameterError(
                "score_bits",
                f"must lie in {MIN_PRECISION_BITS}..{self.precision_bits} (got {self.score_bits})",
            )

    @classmethod
    def for_packing(
        cls, precision_bits: int, total_iterations: int, modulus_bits: int
    ) -> FixedPoint:
        """The encoding with the most slots per ``modulus_bits``-bit plaintext after
        ``total_iterations`` iterations, taking ``f_s`` in ``[f - SCORE_BITS_SLACK, f]`` and the
        largest ``f_s`` among those with that many slots. Deterministic in its arguments, so
        every bank derives the same encoding from the run descriptor."""
        fewest = max(MIN_PRECISION_BITS, precision_bits - SCORE_BITS_SLACK)
        widest = cls(precision_bits, fewest).slots_per_plaintext(total_iterations, modulus_bits)
        if widest == 0:
            return cls(precision_bits, fewest)  # check_fits then names the true limit
        room = (modulus_bits - 1) // widest - 1 - precision_bits * total_iterations
        return cls(precision_bits, min(precision_bits, room))

    @property
    def scale(self) -> int:
        """``2**f``, the weights' scale."""
        return 1 << self.precision_bits

    @property
    def initial_bits(self) -> int:
        """``f_s``, the initial scores' fractional bits."""
        return self.precision_bits if self.score_bits is None else self.score_bits

    def encode_scores(self, scores: FloatArray) -> list[int]:
        """``R_0 = round(r * 2**f_s)`` for scores in [0, 1]."""
        scale = float(1 << self.initial_bits)
        return [int(v) for v in np.rint(np.asarray(scores, dtype=np.float64) * scale)]

    def coefficients(
        self, delta: float, weights: FloatArray, indptr: IntArray | None = None
    ) -> tuple[int, list[int]]:
        """``(c_self, [c(s, x) per edge])`` for one iteration with ``delta`` in [0, 1], exactly
        as the module doc defines them. ``weights`` holds the edges' non-negative weights (or
        amounts) row after row, ``indptr`` where each row starts (CSR; without it the edges are
        one row); a row whose weights are all 0 gets coefficients 0."""
        d = Fraction(delta)
        if not 0 <= d <= 1:
            raise ValueError(f"delta must lie in [0, 1] (got {delta!r})")
        c_self = math.floor((1 - d) * self.scale)
        total = math.floor(d * self.scale)
        numerators = _dyadic_numerators(weights)
        bounds = [0, len(numerators)] if indptr is None else [int(v) for v in indptr]
        if bounds[0] != 0 or bounds[-1] != len(numerators):
            raise ValueError("indptr does not describe the rows of the weights")
        coefs: list[int] = []
        for start, stop in itertools.pairwise(bounds):
            row = numerators[start:stop]
            row_total = sum(row)
            coefs.extend([total * a // row_total for a in row] if row_total else [0] * len(row))
        return c_self, coefs

    def slot_bits(self, total_iterations: int) -> int:
        """Bits that hold any state value after ``total_iterations`` iterations."""
        return self.initial_bits + self.precision_bits * total_iterations + 1

    def max_iterations(self, modulus_bits: int) -> int:
        """Largest total iteration count whose values fit a ``modulus_bits``-bit modulus."""
        return (modulus_bits - 2 - self.initial_bits) // self.precision_bits

    def slots_per_plaintext(self, total_iterations: int, modulus_bits: int) -> int:
        """How many values one plaintext packs: slots stay below ``2**(modulus_bits - 1)``."""
        return max(0, (modulus_bits - 1) // self.slot_bits(total_iterations))

    def check_fits(self, iterations: int, periods: int, modulus_bits: int) -> None:
        """Refuse, before anything is encrypted, parameters that would overflow the modulus."""
        total = iterations * periods
        limit = self.max_iterations(modulus_bits)
        if total > limit:
            raise ConfigError(
                f"{iterations} iteration(s) x {periods} period(s) = {total} in total overflow "
                f"the {modulus_bits}-bit modulus at {self.precision_bits} precision bits; at most "
                f"{limit} iterations in total fit (fewer iterations or periods, fewer precision "
                "bits, or a larger key)"
            )

    def decode(self, values: Sequence[int], total_iterations: int) -> FloatArray:
        """``R_K / 2**(f_s + f*K)`` as float64 (exact integer division, correctly rounded)."""
        denominator = 1 << (self.initial_bits + self.precision_bits * total_iterations)
        return np.array([v / denominator for v in values], dtype=np.float64)


def _dyadic_numerators(weights: FloatArray) -> list[int]:
    """Integers ``n_j`` with ``weights[j] = n_j * 2**e`` exactly, one ``e`` for all: each float64
    is ``m * 2**k`` with an integer ``m < 2**53``, and ``e`` is the smallest such ``k``."""
    values = np.asarray(weights, dtype=np.float64)
    if not np.all(np.isfinite(values) & (values >= 0.0)):
        raise ValueError("weights must be finite and non-negative")
    fraction, exponent = np.frexp(values)  # values = fraction * 2**exponent, fraction in [0.5, 1)
    mantissa = (fraction * 2.0**53).astype(np.int64)  # exact: 53 significant bits at most
    if not mantissa.any():
        return [0] * len(values)
    shift = np.where(mantissa > 0, exponent - exponent[mantissa > 0].min(), 0)
    return [m << k for m, k in zip(mantissa.tolist(), shift.tolist(), strict=True)]
