"""The three-bank cycle with a known answer, and a run of it: the small scenario that protocol,
driver, simulation and command tests share.

alice, bob and charlie with a cross-bank cycle a1 -> b1 -> c1 -> a1 and bob's internal
b2 -> b1. By hand, delta = 0.5: r' = r/2 + (weighted mean of incoming)/2, no incoming -> r/2;
b1 has two equal-amount sources (a1, b2), every other account at most one source::

    k=0: a1=1     a2=0  b1=0                         b2=0.5   c1=0
    k=1: a1=1/2+0/2=0.5 (c1=0)   b1=0/2+(1+0.5)/2/2=0.375   b2=0.25   c1=0/2+0/2=0
    k=2: a1=0.5/2+0/2=0.25       b1=0.375/2+(0.5+0.25)/2/2=0.375   b2=0.125
         c1=0/2+0.375/2=0.1875   a2 stays 0
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from helpers import TxRow, dealt_shares

from riskprop.core.data import Dataset, load_dataset
from riskprop.core.graph import GlobalGraph, build_global
from riskprop.core.params import RunParameters
from riskprop.core.plaintext import propagate
from riskprop.core.threshold import KeyShare
from riskprop.core.types import FloatArray
from riskprop.protocol.messages import RunDescriptor

#: Secure vs plaintext: the fixed-point bound (core.fixedpoint) with the default f = 32 for
#: small graphs like these (K * (max in-degree + 1) < 400) is below 1e-7.
TOL = 1e-7

CYCLE_ACCOUNTS = {
    "alice": [("a1", 1.0), ("a2", 0.0)],
    "bob": [("b1", 0.0), ("b2", 0.5)],
    "charlie": [("c1", 0.0)],
}
CYCLE_ROWS: list[TxRow] = [
    ("a1", "alice", "b1", "bob", 10.0, 0),
    ("b1", "bob", "c1", "charlie", 3.0, 0),
    ("c1", "charlie", "a1", "alice", 7.0, 0),
    ("b2", "bob", "b1", "bob", 10.0, 0),
]
CYCLE_EXPECTED_T2 = {
    ("alice", "a1"): 0.25,
    ("alice", "a2"): 0.0,
    ("bob", "b1"): 0.375,
    ("bob", "b2"): 0.125,
    ("charlie", "c1"): 0.1875,
}


@dataclass(frozen=True)
class CycleRun:
    """The cycle's data, graph, dealt shares, the descriptor of a run of two iterations with
    delta 0.5, and the plaintext engine's scores for it."""

    dataset: Dataset
    graph: GlobalGraph
    shares: dict[str, KeyShare]
    descriptor: RunDescriptor
    reference: FloatArray

    def expected(self, bank: str) -> FloatArray:
        """The plaintext scores of ``bank``'s accounts."""
        return self.reference[bank_slice(self.graph, bank)]


def cycle_run(data: Path, threshold: int = 1) -> CycleRun:
    dataset = load_dataset(data)
    graph = build_global(dataset)
    shares = dealt_shares(dataset.names, threshold)
    key = shares[dataset.names[0]].key
    parameters = RunParameters(2, delta_a=0.5, delta_b=0.0, periods=tuple(graph.periods))
    descriptor = RunDescriptor.create("cycle", key, parameters)
    return CycleRun(dataset, graph, shares, descriptor, propagate(graph, parameters.schedule, 2))


def bank_slice(graph: GlobalGraph, bank: str) -> slice:
    """Where ``bank``'s accounts are in the graph's (and the engine's) flat vectors."""
    b = graph.banks.index(bank)
    return slice(int(graph.offsets[b]), int(graph.offsets[b + 1]))
