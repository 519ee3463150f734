"""Reference propagation on float64 arrays: the specification in code.

Per period (in order; scores carry over) and iteration ``k = 1..T`` with ``d = delta_k``::

    r_k(x) = (1 - d) r_{k-1}(x) + d * sum_s w(s, x) r_{k-1}(s)
    w(s, x) = amt(s, x) / sum_s amt(s, x)

where the sums run over the counted incoming edges of ``x`` (see ``riskprop.core.graph``) and
the weighted term is 0 when ``x`` has none. Each iteration is one gather, one multiply and one
segmented sum over the CSR arrays: O(edges + accounts), no Python loop per edge. Because the
weights of a row sum to 1 (or 0) and ``0 < d < 1``, scores stay in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from riskprop.core.graph import GlobalGraph, IncomingCSR
from riskprop.core.schedule import DeltaSchedule
from riskprop.core.types import FloatArray, IntArray


@dataclass(frozen=True, eq=False)
class PreparedPeriod:
    """One period's CSR reduced to what an iteration needs."""

    n_rows: int
    indices: IntArray
    weights: FloatArray
    starts: IntArray
    nonempty: IntArray

    @classmethod
    def from_csr(cls, csr: IncomingCSR) -> PreparedPeriod:
        counts = np.diff(csr.indptr)
        nonempty = np.flatnonzero(counts > 0)
        return cls(
            n_rows=csr.n_rows,
            indices=csr.indices,
            weights=csr.weights(),
            starts=csr.indptr[:-1][nonempty],
            nonempty=nonempty,
        )

    def weighted_mean(self, scores: FloatArray) -> FloatArray:
        """``sum_s w(s, x) scores[s]`` for every row ``x`` (0 for rows without edges)."""
        out = np.zeros(self.n_rows)
        if len(self.nonempty):
            out[self.nonempty] = np.add.reduceat(self.weights * scores[self.indices], self.starts)
        return out


def step(period: PreparedPeriod, scores: FloatArray, delta: float) -> FloatArray:
    """One iteration of the update rule."""
    return (1.0 - delta) * scores + delta * period.weighted_mean(scores)


def propagate_csr(
    incoming: Sequence[IncomingCSR],
    initial: FloatArray,
    schedule: DeltaSchedule,
    iterations: int,
) -> FloatArray:
    """Run ``iterations`` iterations in each period of ``incoming``, in order."""
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0 (got {iterations})")
    scores = np.array(initial, dtype=np.float64, copy=True)
    for csr in incoming:
        period = PreparedPeriod.from_csr(csr)
        for delta in schedule.deltas(iterations):
            scores = step(period, scores, delta)
    return scores


def propagate(graph: GlobalGraph, schedule: DeltaSchedule, iterations: int) -> FloatArray:
    """Global plaintext propagation over every bank of ``graph``."""
    return propagate_csr(graph.incoming, graph.initial, schedule, iterations)
