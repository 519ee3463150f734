"""Whole-data-set simulations (the researcher's view): plaintext, and secure with every bank
in this process over the in-memory transport."""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import phe

from riskprop.core.batches import Executor
from riskprop.core.data import load_dataset
from riskprop.core.fixedpoint import DEFAULT_PRECISION_BITS
from riskprop.core.graph import GlobalGraph, build_global
from riskprop.core.params import DEFAULT_KEY_BITS, DEFAULT_NOISE, RunParameters
from riskprop.core.plaintext import propagate
from riskprop.core.schedule import DEFAULT_DELTA_A, DEFAULT_DELTA_B, DeltaSchedule
from riskprop.core.threshold import deal, default_threshold
from riskprop.core.types import FloatArray
from riskprop.errors import ConfigError
from riskprop.files.keys import load_share, share_file
from riskprop.files.results import global_scores_csv, write_or_print
from riskprop.node.inprocess import run_in_process
from riskprop.protocol.messages import RunDescriptor

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class SimulationResult:
    """Scores of every account of every bank, banks in data set order."""

    banks: tuple[str, ...]
    account_ids: tuple[tuple[str, ...], ...]
    scores: FloatArray
    warnings: tuple[str, ...]
    #: largest |secure - plaintext| over all accounts (secure runs only)
    max_difference: float | None = None

    def by_account(self) -> dict[tuple[str, str], float]:
        """``(bank, id) -> score`` for every account."""
        keys = [(b, i) for b, ids in zip(self.banks, self.account_ids, strict=True) for i in ids]
        return dict(zip(keys, self.scores.tolist(), strict=True))

    def csv(self) -> str:
        return global_scores_csv(self.banks, self.account_ids, self.scores)

    def write(self, out: Path | None) -> None:
        write_or_print(self.csv(), out)


def simulate_plaintext(
    data: Path,
    *,
    iterations: int,
    delta_a: float = DEFAULT_DELTA_A,
    delta_b: float = DEFAULT_DELTA_B,
) -> SimulationResult:
    """Load every bank of ``data`` and propagate in plaintext."""
    schedule = DeltaSchedule(delta_a, delta_b)
    started = time.perf_counter()
    dataset = load_dataset(data)
    graph = build_global(dataset)
    _log_loaded(data, graph, time.perf_counter() - started)
    started = time.perf_counter()
    scores = propagate(graph, schedule, iterations)
    log.info(
        "propagated %d iteration(s) x %d period(s) in plaintext in %.2f s",
        iterations,
        len(graph.periods),
        time.perf_counter() - started,
    )
    warnings = tuple(w for bank in dataset.banks for w in bank.warnings)
    return SimulationResult(graph.banks, graph.account_ids, scores, warnings)


def _log_loaded(data: Path, graph: GlobalGraph, seconds: float) -> None:
    log.info(
        "loaded %s: %d bank(s), %d accounts, period(s) %s in %.2f s",
        data,
        len(graph.banks),
        sum(len(ids) for ids in graph.account_ids),
        ", ".join(map(str, graph.periods)),
        seconds,
    )


def simulate_secure(
    data: Path,
    *,
    iterations: int,
    delta_a: float = DEFAULT_DELTA_A,
    delta_b: float = DEFAULT_DELTA_B,
    precision_bits: int = DEFAULT_PRECISION_BITS,
    noise: str = DEFAULT_NOISE,
    key_bits: int = DEFAULT_KEY_BITS,
    keys: Path | None = None,
    threshold: int | None = None,
    executor: Executor | None = None,
    share_in_workers: bool = False,
) -> SimulationResult:
    """Run the secure protocol for every bank of ``data`` in one process (in-memory transport).

    Keys come from ``keys`` (a directory of share files) or are dealt afresh with ``key_bits``.
    The plaintext engine runs too, and the largest difference is reported. The banks share
    ``executor`` for their linear steps (default: this process), and for their partial
    decryptions too with ``share_in_workers`` when it is private (the node's own processes).
    """
    started = time.perf_counter()
    dataset = load_dataset(data)
    graph = build_global(dataset)
    _log_loaded(data, graph, time.perf_counter() - started)
    parameters = RunParameters(
        iterations=iterations,
        delta_a=delta_a,
        delta_b=delta_b,
        precision_bits=precision_bits,
        periods=tuple(graph.periods),
        noise=noise,
    )
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
    descriptor = RunDescriptor.create(f"simulate-{secrets.token_hex(4)}", key, parameters)
    started = time.perf_counter()
    outcomes = run_in_process(
        descriptor, dataset.banks, shares, executor=executor, share_in_workers=share_in_workers
    )
    log.info(
        "ran the secure protocol for %d bank(s) (%d-bit key, threshold %d) in %.2f s",
        len(names),
        key.public.bits,
        key.threshold,
        time.perf_counter() - started,
    )
    scores = np.concatenate([outcomes[name].scores for name in names])
    reference = propagate(graph, parameters.schedule, iterations)
    warnings = tuple(w for bank in dataset.banks for w in bank.warnings)
    difference = float(np.max(np.abs(scores - reference))) if len(scores) else 0.0
    return SimulationResult(graph.banks, graph.account_ids, scores, warnings, difference)
