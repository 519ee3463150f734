"""The propagation parameters of a run, under one name each from the command line to the
protocol, with their ranges checked once.

=================  ====================  ==================  ===============================
command line       configuration (run.)  here / descriptor   meaning
=================  ====================  ==================  ===============================
``--iterations``   ``iterations``        ``iterations``      T, iterations per period (>= 0)
``--delta-a``      ``delta_a``           ``delta_a``         a in delta_k = a / k**b, (0, 1)
``--delta-b``      ``delta_b``           ``delta_b``         b in delta_k = a / k**b, >= 0
``--precision-bits`` ``precision_bits``  ``precision_bits``  f, fractional bits per iteration
``--noise``        ``noise``             ``noise``           re-randomisation: djn or full
(from the data)    ``periods``           ``periods``         distinct period numbers >= 0
=================  ====================  ==================  ===============================

``delta_a``/``delta_b`` are checked by ``DeltaSchedule`` and ``precision_bits`` by
``FixedPoint``, the classes that use them; ``RunParameters`` builds both, so a
``RunParameters`` that exists is valid. Errors are ``ParameterError`` with the parameter's name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from riskprop.core.fixedpoint import DEFAULT_PRECISION_BITS, FixedPoint
from riskprop.core.schedule import DEFAULT_DELTA_A, DEFAULT_DELTA_B, DeltaSchedule
from riskprop.errors import ParameterError

#: Paillier modulus size of production keys; anything smaller is for tests.
DEFAULT_KEY_BITS = 2048
#: Iterations per period when none are asked for (the demo's).
DEFAULT_ITERATIONS = 3
#: How ciphertexts are re-randomised (``core.paillier``): ``djn`` is DJN's short-exponent
#: fixed-base noise ``h**alpha`` (DCRA plus a short-exponent assumption, much faster),
#: ``full`` is Paillier's own ``r**N`` for a uniform unit ``r`` (DCRA alone).
NOISE_KINDS = ("djn", "full")
DEFAULT_NOISE = "djn"


def check_periods(periods: Sequence[int]) -> tuple[int, ...]:
    """Distinct period numbers >= 0, sorted."""
    values = list(periods)
    if not values:
        raise ParameterError("periods", "need at least one period")
    if any(p < 0 for p in values) or len(set(values)) != len(values):
        raise ParameterError("periods", f"must be distinct integers >= 0 (got {values})")
    return tuple(sorted(values))


@dataclass(frozen=True)
class RunParameters:
    """What every bank of a run must use besides the key: valid once constructed."""

    iterations: int
    delta_a: float = DEFAULT_DELTA_A
    delta_b: float = DEFAULT_DELTA_B
    precision_bits: int = DEFAULT_PRECISION_BITS
    periods: tuple[int, ...] = (0,)
    noise: str = DEFAULT_NOISE

    def __post_init__(self) -> None:
        if self.iterations < 0:
            raise ParameterError("iterations", f"must be >= 0 (got {self.iterations})")
        if self.noise not in NOISE_KINDS:
            raise ParameterError(
                "noise", f"must be one of {', '.join(NOISE_KINDS)} (got {self.noise!r})"
            )
        object.__setattr__(self, "periods", check_periods(self.periods))
        self.schedule  # noqa: B018 -- checks delta_a and delta_b
        FixedPoint(self.precision_bits)  # checks precision_bits

    @property
    def schedule(self) -> DeltaSchedule:
        return DeltaSchedule(self.delta_a, self.delta_b)

    @property
    def total_iterations(self) -> int:
        return self.iterations * len(self.periods)
