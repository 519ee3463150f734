"""Detection quality of plaintext propagation on IBM AMLSim's sample (``riskprop detection``).

Splits the sample into ``k`` banks (``riskprop.lab.amlsim.split_amlsim``) in a temporary
directory, propagates in plaintext for every number of iterations ``T`` and ``delta_a`` asked
for, and measures how well the scores rank the fraud accounts (``is_laundering`` of
``labels.csv``):

* on the accounts the banks did *not* already flag (initial score below ``flag_threshold``):
  the accounts propagation is meant to surface;
* over all accounts.

Metrics (``riskprop.core.metrics``): ROC AUC and precision at 20% recall, the metric of van
Egmond et al. (FC 2024). The row ``T = 0`` holds the initial scores.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from riskprop.core.metrics import precision_at_recall, roc_auc
from riskprop.core.types import BoolArray, FloatArray
from riskprop.errors import ConfigError
from riskprop.files.layout import read_labels
from riskprop.lab.amlsim import split_amlsim
from riskprop.lab.simulate import simulate_plaintext

DEFAULT_BANKS = ("alice", "bob", "charlie")


@dataclass(frozen=True)
class Row:
    iterations: int
    delta_a: float
    auc_unflagged: float
    precision_unflagged: float
    auc_all: float
    precision_all: float


@dataclass(frozen=True)
class Experiment:
    rows: tuple[Row, ...]
    accounts: int
    fraud: int
    unflagged: int
    unflagged_fraud: int
    split_s: float
    propagate_s: float


def bank_names(k: int) -> tuple[str, ...]:
    if k < 1:
        raise ConfigError(f"--banks must be >= 1 (got {k})")
    if k <= len(DEFAULT_BANKS):
        return DEFAULT_BANKS[:k]
    return tuple(f"bank{i}" for i in range(k))


def labels_in_order(
    banks: Sequence[str], account_ids: Sequence[Sequence[str]], labels: dict[tuple[str, str], bool]
) -> BoolArray:
    """Labels in the order of a simulation's flat score vector."""
    return np.array(
        [
            labels[bank, account]
            for bank, ids in zip(banks, account_ids, strict=True)
            for account in ids
        ],
        dtype=bool,
    )


def run_experiment(
    src: Path,
    *,
    banks: int = 3,
    iterations: Sequence[int] = (1, 2, 3, 5),
    deltas: Sequence[float] = (0.3, 0.5, 0.8),
    delta_b: float = 0.0,
    periods: int = 1,
    flagged_fraction: float = 0.3,
    seed: int = 0,
    flag_threshold: float = 0.5,
    recall: float = 0.2,
) -> Experiment:
    with tempfile.TemporaryDirectory(prefix="riskprop-detection-") as tmp:
        data = Path(tmp) / "data"
        started = time.perf_counter()
        split_amlsim(
            src,
            data,
            banks=bank_names(banks),
            periods=periods,
            flagged_fraction=flagged_fraction,
            seed=seed,
        )
        split_s = time.perf_counter() - started

        started = time.perf_counter()
        initial = simulate_plaintext(data, iterations=0)
        fraud = labels_in_order(
            initial.banks, initial.account_ids, read_labels(data / "labels.csv")
        )
        unflagged = initial.scores < flag_threshold

        def row(t: int, a: float, scores: FloatArray) -> Row:
            return Row(
                iterations=t,
                delta_a=a,
                auc_unflagged=roc_auc(scores[unflagged], fraud[unflagged]),
                precision_unflagged=precision_at_recall(
                    scores[unflagged], fraud[unflagged], recall
                ),
                auc_all=roc_auc(scores, fraud),
                precision_all=precision_at_recall(scores, fraud, recall),
            )

        rows = [row(0, math.nan, initial.scores)]
        for a in deltas:
            for t in iterations:
                result = simulate_plaintext(data, iterations=t, delta_a=a, delta_b=delta_b)
                if result.banks != initial.banks or result.account_ids != initial.account_ids:
                    raise AssertionError("account order differs between simulations")
                rows.append(row(t, a, result.scores))
        propagate_s = time.perf_counter() - started

    return Experiment(
        rows=tuple(rows),
        accounts=int(fraud.size),
        fraud=int(fraud.sum()),
        unflagged=int(unflagged.sum()),
        unflagged_fraud=int((fraud & unflagged).sum()),
        split_s=split_s,
        propagate_s=propagate_s,
    )


def format_table(experiment: Experiment, recall: float) -> str:
    p = f"P@{recall:.0%}R"
    header = (
        f"{'T':>3} {'delta':>6} | {'AUC':>6} {p:>8} | {'AUC':>6} {p:>8}",
        f"{'':>3} {'':>6} | {'unflagged':^15} | {'all accounts':^15}",
    )
    lines = [header[1], header[0], "-" * len(header[0])]
    for r in experiment.rows:
        delta = "init" if r.iterations == 0 else f"{r.delta_a:g}"
        lines.append(
            f"{r.iterations:>3} {delta:>6} | {r.auc_unflagged:6.3f} {r.precision_unflagged:8.3f}"
            f" | {r.auc_all:6.3f} {r.precision_all:8.3f}"
        )
    return "\n".join(lines)
