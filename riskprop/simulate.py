"""Whole-data-set simulations (the researcher's view): plaintext and, later, secure."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import phe

from riskprop.core.data import FloatArray, load_dataset
from riskprop.core.fixedpoint import DEFAULT_FRACTION_BITS
from riskprop.core.graph import build_global
from riskprop.core.plaintext import propagate
from riskprop.core.schedule import DeltaSchedule
from riskprop.core.threshold import deal, default_threshold
from riskprop.errors import ConfigError
from riskprop.keys import load_share, share_file
from riskprop.node.inprocess import make_descriptor, run_in_process
from riskprop.results import global_scores_csv, write_or_print


@dataclass(frozen=True, eq=False)
class SimulationResult:
    """Scores of every account of every bank, banks in data set order."""

    banks: tuple[str, ...]
    account_ids: tuple[tuple[str, ...], ...]
    scores: FloatArray
    warnings: tuple[str, ...]
    #: largest |secure - plaintext| over all accounts (secure runs only)
    max_difference: float | None = None

    def csv(self) -> str:
        return global_scores_csv(self.banks, self.account_ids, self.scores)

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
    return SimulationResult(
        graph.banks, graph.account_ids, propagate(graph, schedule, iterations), warnings
    )


def simulate_secure(
    data: Path,
    *,
    iterations: int,
    delta_a: float = 0.5,
    delta_b: float = 0.0,
    key_bits: int = 2048,
    keys: Path | None = None,
    threshold: int | None = None,
    precision_bits: int = DEFAULT_FRACTION_BITS,
) -> SimulationResult:
    """Run the secure protocol for every bank of ``data`` in one process (in-memory transport).

    Keys come from ``keys`` (a directory of share files) or are dealt afresh with ``key_bits``.
    The plaintext engine runs too, and the largest difference is reported.
    """
    schedule = DeltaSchedule(delta_a, delta_b)
    dataset = load_dataset(data)
    graph = build_global(dataset)
    names = dataset.names
    if keys is not None:
        shares = {name: load_share(share_file(keys, name), name) for name in names}
    else:
        _, private = phe.generate_paillier_keypair(n_length=key_bits)
        t = default_threshold(len(names)) if threshold is None else threshold
        shares = {s.party: s for s in deal(private.p, private.q, names, t)}
    key = shares[names[0]].key
    if set(key.parties) != set(names):
        raise ConfigError(
            f"the key's parties ({', '.join(key.parties)}) differ from the data set's banks "
            f"({', '.join(names)})"
        )
    descriptor = make_descriptor(
        key,
        iterations=iterations,
        delta_a=schedule.a,
        delta_b=schedule.b,
        periods=graph.periods,
        precision_bits=precision_bits,
    )
    outcomes = run_in_process(descriptor, dataset.banks, shares)
    scores = np.concatenate([outcomes[name].scores for name in names])
    reference = propagate(graph, schedule, iterations)
    warnings = tuple(w for bank in dataset.banks for w in bank.warnings)
    difference = float(np.max(np.abs(scores - reference))) if len(scores) else 0.0
    return SimulationResult(graph.banks, graph.account_ids, scores, warnings, difference)
