"""The delta schedule: how strongly neighbours pull an account's score in iteration k."""

from __future__ import annotations

import math
from dataclasses import dataclass

from riskprop.errors import ParameterError

DEFAULT_DELTA_A = 0.5
DEFAULT_DELTA_B = 0.0


@dataclass(frozen=True)
class DeltaSchedule:
    """``delta_k = delta_a / k**delta_b`` for iteration ``k = 1..T`` of a period (k restarts
    every period).

    ``delta_a`` lies in (0, 1) and ``delta_b >= 0``, so every ``delta_k`` lies in (0, 1): the
    update ``r' = (1 - delta) r + delta * mean_in(r)`` is a convex combination and scores stay
    in [0, 1]. ``delta_b = 0`` is a constant delta. These are the only checks of the two
    parameters; configuration and commands rely on them.
    """

    delta_a: float = DEFAULT_DELTA_A
    delta_b: float = DEFAULT_DELTA_B

    def __post_init__(self) -> None:
        if not (math.isfinite(self.delta_a) and 0.0 < self.delta_a < 1.0):
            raise ParameterError(
                "delta_a", f"must lie strictly between 0 and 1 (got {self.delta_a:g})"
            )
        if not (math.isfinite(self.delta_b) and self.delta_b >= 0.0):
            raise ParameterError("delta_b", f"must be a finite number >= 0 (got {self.delta_b:g})")

    def delta(self, k: int) -> float:
        """``delta_k`` for the 1-based iteration ``k``."""
        if k < 1:
            raise ValueError(f"iteration numbers start at 1 (got {k})")
        return float(self.delta_a / float(k) ** self.delta_b)

    def deltas(self, iterations: int) -> list[float]:
        return [self.delta(k) for k in range(1, iterations + 1)]
