"""Evaluation maths: how well scores rank the positives of a boolean label vector.

Every function takes scores and labels as arrays of equal length and returns NaN where the
metric is undefined (no positives, or no negatives for ROC AUC).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from riskprop.core.types import BoolArray, FloatArray


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
