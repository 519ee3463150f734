"""Integer encoding of scores and weights, and the overflow budget.

Weights get ``f`` fractional bits, initial scores ``f_s`` (``f - 4 <= f_s <= f``, see
:meth:`FixedPoint.for_packing`). An initial score ``r`` becomes ``R_0 = round(r * 2**f_s)`` and
iteration ``k`` maps the integer state with non-negative integer coefficients::

    R_k(x) = c_self * R_{k-1}(x) + sum_s c(s, x) * R_{k-1}(s)
    c_self = floor((1 - d) * 2**f),   c(s, x) = floor(d * w(s, x) * 2**f)

so after ``K`` iterations in all (every period counts) ``R_K / 2**(f_s + f*K)`` approximates the
real score. Invariants:

* Bound: each row's coefficients sum to at most ``2**f`` (floors of terms summing to ``2**f``)
  and ``R_0 <= 2**f_s``, hence ``0 <= R_K <= 2**(f_s + f*K)``: one slot of ``f_s + f*K + 1`` bits
  always holds a value, and a modulus of ``b`` bits holds ``(b - 1) // slot_bits`` slots.
* Precision: flooring loses less than ``2**-f`` per coefficient and the update is
  non-expansive in the sup norm, so ``|decoded - exact| <= 2**-(f_s+1) + sum_k (deg_k + 1) * 2**-f``
  where ``deg_k`` is the largest in-degree used in iteration ``k``. With the default ``f = 32``
  (``f_s >= 28``) that is below 1e-7 while ``K * (max in-degree + 1) <= 400`` and below 1e-6
  while it is at most 4,000 (TNO's toolbox encodes weights with 12 and scores with 8 decimal
  digits and reports differences of about 2e-6 on the same data); ``--precision-bits 48`` gives
  about 1e-12 for 1.5 times the decryption cost (wider slots). The secure result is never above
  the exact one by more than the initial rounding ``2**-(f_s+1)``.
* Packing: the score bits only enter the bound through ``2**-(f_s+1)``, far below the weight
  term, so :meth:`FixedPoint.for_packing` gives up to ``SCORE_BITS_SLACK`` of them when that
  fits one more slot into the plaintext (at ``K = 3``, ``f = 32``: ``f_s = 30`` and slots of 127
  bits, 16 per 2048-bit plaintext instead of 15, 8 per 1024-bit one instead of 7).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from riskprop.core.types import FloatArray
from riskprop.errors import ConfigError, ParameterError

DEFAULT_PRECISION_BITS = 32
#: Fewer fractional bits than this make every score too coarse to rank accounts.
MIN_PRECISION_BITS = 8
#: float64 has a 53-bit significand: beyond that, d * w * 2**f is no longer an exact floor.
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

    def coefficients(self, delta: float, weights: FloatArray) -> tuple[int, list[int]]:
        """``(c_self, [c(s, x) per edge])`` for one iteration with ``delta`` and edge weights."""
        c_self = int(np.floor((1.0 - delta) * self.scale))
        edge = np.floor(np.asarray(weights, dtype=np.float64) * (delta * self.scale))
        return c_self, [int(v) for v in edge.astype(np.int64)]

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
