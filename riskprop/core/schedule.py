"""The delta schedule: how strongly neighbours pull an account's score in iteration k."""

from __future__ import annotations

import math
from dataclasses import dataclass

from riskprop.errors import ConfigError


@dataclass(frozen=True)
class DeltaSchedule:
    """``delta_k = a / k**b`` for iteration ``k = 1..T`` of a period (k restarts every period).

    ``a`` lies in (0, 1) and ``b >= 0``, so every ``delta_k`` lies in (0, 1): the update
    ``r' = (1 - delta) r + delta * mean_in(r)`` is a convex combination and scores stay in
    [0, 1]. ``b = 0`` is a constant delta.
    """

    a: float = 0.5
    b: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.a) and 0.0 < self.a < 1.0):
            raise ConfigError(f"delta a must lie strictly between 0 and 1 (got {self.a})")
        if not (math.isfinite(self.b) and self.b >= 0.0):
            raise ConfigError(f"delta b must be a finite number >= 0 (got {self.b})")

    def delta(self, k: int) -> float:
        """``delta_k`` for the 1-based iteration ``k``."""
        if k < 1:
            raise ValueError(f"iteration numbers start at 1 (got {k})")
        return float(self.a / float(k) ** self.b)

    def deltas(self, iterations: int) -> list[float]:
        return [self.delta(k) for k in range(1, iterations + 1)]
