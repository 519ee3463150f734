"""Whole-data-set simulations (the researcher's view): plaintext and, later, secure."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from riskprop.core.data import FloatArray, load_dataset
from riskprop.core.graph import GlobalGraph, build_global
from riskprop.core.plaintext import propagate
from riskprop.core.schedule import DeltaSchedule
from riskprop.results import global_scores_csv, write_or_print


@dataclass(frozen=True, eq=False)
class SimulationResult:
    graph: GlobalGraph
    scores: FloatArray
    warnings: tuple[str, ...]

    def csv(self) -> str:
        return global_scores_csv(self.graph.banks, self.graph.account_ids, self.scores)

    def write(self, out: Path | None) -> None:
        write_or_print(self.csv(), out)


def simulate_plaintext(
    data: Path, *, iterations: int, delta_a: float = 0.5, delta_b: float = 0.0
) -> SimulationResult:
    """Load every bank of ``data`` and propagate in plaintext."""
    schedule = DeltaSchedule(delta_a, delta_b)
    dataset = load_dataset(data)
    graph = build_global(dataset)
    warnings = tuple(w for bank in dataset.banks for w in bank.warnings)
    return SimulationResult(graph, propagate(graph, schedule, iterations), warnings)
