#!/usr/bin/env python3
"""Detection quality of plaintext risk propagation on the IBM AMLSim sample.

Splits the AMLSim sample into ``k`` banks (``riskprop.amlsim.split_amlsim``) in a temporary
directory, propagates in plaintext for every number of iterations ``T`` and delta ``a`` asked
for, and prints how well the scores rank the fraud accounts (``is_laundering`` of
``labels.csv``):

* on the accounts the banks did *not* already flag (initial score below ``--flag-threshold``):
  the accounts propagation is meant to surface;
* over all accounts.

Metrics: ROC AUC (rank-based Mann-Whitney U, ties averaged) and precision at 20% recall, the
metric of van Egmond et al. (FC 2024). The row ``T = 0`` holds the initial scores.

    python scripts/detection.py --banks 3 --iterations 1,2,3,5 --deltas 0.3,0.5,0.8
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

#: IBM AMLSim's sample, in the shared folder beside the repository (RISKPROP_AMLSIM overrides).
SAMPLE = Path(
    os.environ.get("RISKPROP_AMLSIM")
    or Path(__file__).resolve().parents[2] / "shared" / "data" / "amlsim-20K_cycle200"
)
DEFAULT_BANKS = ("alice", "bob", "charlie")


# --------------------------------------------------------------------------- metrics


def _as_arrays(scores: npt.ArrayLike, labels: npt.ArrayLike) -> tuple[FloatArray, BoolArray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    if s.shape != y.shape:
        raise ValueError(f"scores and labels differ in length ({s.size} != {y.size})")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    return s, y


def average_ranks(values: npt.ArrayLike) -> FloatArray:
    """1-based ranks of ``values`` in ascending order; tied values share their mean rank."""
    v = np.asarray(values, dtype=np.float64).ravel()
    _, inverse, counts = np.unique(v, return_inverse=True, return_counts=True)
    last = np.cumsum(counts).astype(np.float64)  # rank of the last member of each group
    first = last - counts + 1.0
    mean: FloatArray = ((first + last) / 2.0)[inverse.ravel()]
    return mean


def roc_auc(scores: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """ROC AUC of ``scores`` for the boolean ``labels``: P(score_pos > score_neg) + P(tie) / 2.

    Computed from the Mann-Whitney U statistic with tied scores given their average rank.
    NaN when there are no positives or no negatives.
    """
    s, y = _as_arrays(scores, labels)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    rank_sum = float(average_ranks(s)[y].sum())
    u = rank_sum - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


def precision_at_recall(scores: npt.ArrayLike, labels: npt.ArrayLike, recall: float) -> float:
    """Precision of the highest score threshold whose recall reaches ``recall``.

    Flagging every account with ``score >= t`` (tied scores are flagged together), ``t``
    descends over the distinct scores until at least ``recall`` of the positives are flagged;
    the result is the share of positives among the flagged accounts at that point (no
    interpolation). NaN when there are no positives.
    """
    if not 0.0 < recall <= 1.0:
        raise ValueError(f"recall must lie in (0, 1] (got {recall})")
    s, y = _as_arrays(scores, labels)
    n_pos = int(y.sum())
    if n_pos == 0:
        return math.nan
    # groups of equal score, highest first
    _, inverse, counts = np.unique(-s, return_inverse=True, return_counts=True)
    positives = np.bincount(inverse.ravel(), weights=y.astype(np.float64), minlength=counts.size)
    flagged = np.cumsum(counts)
    caught = np.cumsum(positives)
    reached = np.flatnonzero(caught >= recall * n_pos - 1e-9)
    at = int(reached[0])
    return float(caught[at] / flagged[at])


# --------------------------------------------------------------------------- experiment


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
        raise ValueError(f"--banks must be >= 1 (got {k})")
    if k <= len(DEFAULT_BANKS):
        return DEFAULT_BANKS[:k]
    return tuple(f"bank{i}" for i in range(k))


def read_labels(path: Path) -> dict[tuple[str, str], bool]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return {(row["bank"], row["id"]): row["is_laundering"] == "1" for row in reader}


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
    from riskprop.amlsim import split_amlsim
    from riskprop.simulate import simulate_plaintext

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
                    raise RuntimeError("account order differs between simulations")
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


# --------------------------------------------------------------------------- command line


def int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of integers: {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"need integers >= 1: {text!r}")
    return values


def float_list(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of numbers: {text!r}"
        ) from None
    if not values or not all(0.0 < v < 1.0 for v in values):
        raise argparse.ArgumentTypeError(f"deltas must lie strictly between 0 and 1: {text!r}")
    return values


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--src", type=Path, default=SAMPLE, help="AMLSim sample directory")
    parser.add_argument("--banks", type=int, default=3, help="number of banks k")
    parser.add_argument(
        "--iterations", type=int_list, default=[1, 2, 3, 5], help="values of T, comma-separated"
    )
    parser.add_argument(
        "--deltas", type=float_list, default=[0.3, 0.5, 0.8], help="delta a values, comma-separated"
    )
    parser.add_argument("--delta-b", type=float, default=0.0, help="delta_k = a / k**b")
    parser.add_argument("--periods", type=int, default=1, help="time periods of the split")
    parser.add_argument(
        "--flagged-fraction", type=float, default=0.3, help="share of fraud accounts flagged"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial scores")
    parser.add_argument(
        "--flag-threshold",
        type=float,
        default=0.5,
        help="accounts with an initial score below this count as not yet flagged",
    )
    parser.add_argument("--recall", type=float, default=0.2, help="recall of the precision metric")
    return parser.parse_args(argv)


def reproduce_command(args: argparse.Namespace) -> str:
    parts = [
        "python",
        "scripts/detection.py",
        "--src",
        str(args.src),
        "--banks",
        str(args.banks),
        "--iterations",
        ",".join(map(str, args.iterations)),
        "--deltas",
        ",".join(map(str, args.deltas)),
        "--delta-b",
        str(args.delta_b),
        "--periods",
        str(args.periods),
        "--flagged-fraction",
        str(args.flagged_fraction),
        "--seed",
        str(args.seed),
        "--flag-threshold",
        str(args.flag_threshold),
        "--recall",
        str(args.recall),
    ]
    return shlex.join(parts)


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


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"# reproduce: {reproduce_command(args)}")
    if not (args.src / "nodes.csv").is_file():
        print(f"AMLSim sample not found in {args.src}", file=sys.stderr)
        return 1
    from riskprop.errors import RiskpropError

    started = time.perf_counter()
    try:
        experiment = run_experiment(
            args.src,
            banks=args.banks,
            iterations=args.iterations,
            deltas=args.deltas,
            delta_b=args.delta_b,
            periods=args.periods,
            flagged_fraction=args.flagged_fraction,
            seed=args.seed,
            flag_threshold=args.flag_threshold,
            recall=args.recall,
        )
    except (RiskpropError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    e = experiment
    print(
        f"# {e.accounts} accounts, {e.fraud} fraud; not flagged (initial score < "
        f"{args.flag_threshold:g}): {e.unflagged} accounts, {e.unflagged_fraud} fraud "
        f"(base rate {e.unflagged_fraud / max(e.unflagged, 1):.3f}); "
        f"delta_k = a / k**{args.delta_b:g}"
    )
    print(format_table(e, args.recall))
    print(
        f"# split {e.split_s:.1f} s, propagation and metrics {e.propagate_s:.1f} s, "
        f"total {time.perf_counter() - started:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
