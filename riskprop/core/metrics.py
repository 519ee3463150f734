"""Evaluation maths: how well scores rank the positives of a boolean label vector.

Every metric looks at the accounts through their *tie groups*: the distinct scores in
descending order, each with its number of accounts ``c_g`` and of positives ``p_g``. With
``C_g`` and ``P_g`` the running totals up to and including group ``g`` (flagging every account
with a score ``>=`` that group's), ``P`` the positives and ``N`` the negatives:

* a *threshold* metric flags tied accounts together (ROC AUC, average precision, precision at
  a recall): the result does not depend on the order of tied accounts;
* a *count* metric takes a fixed number ``m`` of accounts (precision at k, recall and lift in a
  top share). Where ``m`` cuts a tie group, the group fills the places left pro rata: the
  result is its expected value when tied accounts are put in a uniformly random order, again
  independent of the input order.

Every function takes scores and labels as arrays of equal length (finite scores) and returns NaN
where the metric is undefined (no accounts, no positives, or no negatives for ROC AUC).
:class:`Ranking` sorts once and answers every metric; the functions are one-call shortcuts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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


@dataclass(frozen=True, eq=False)
class Ranking:
    """The tie groups of a score vector, highest score first (module doc).

    ``counts[g]`` accounts share the ``g``-th highest distinct score, ``positives[g]`` of them
    are positive; ``flagged`` and ``caught`` are their running sums ``C_g`` and ``P_g``.
    """

    counts: FloatArray
    positives: FloatArray
    flagged: FloatArray
    caught: FloatArray

    @classmethod
    def of(cls, scores: npt.ArrayLike, labels: npt.ArrayLike) -> Ranking:
        s, y = _as_arrays(scores, labels)
        _, inverse, sizes = np.unique(-s, return_inverse=True, return_counts=True)
        counts = sizes.astype(np.float64)
        weights = y.astype(np.float64)
        positives: FloatArray = np.asarray(
            np.bincount(inverse.ravel(), weights=weights, minlength=len(sizes)), dtype=np.float64
        )
        return cls(counts, positives, np.cumsum(counts), np.cumsum(positives))

    @property
    def n(self) -> int:
        return int(self.flagged[-1]) if len(self.flagged) else 0

    @property
    def n_pos(self) -> int:
        return round(float(self.caught[-1])) if len(self.caught) else 0

    def roc_auc(self) -> float:
        """``P(score_pos > score_neg) + P(score_pos == score_neg) / 2`` over all (positive,
        negative) pairs: the Mann-Whitney U statistic over ``P * N``. Each positive of group
        ``g`` beats the negatives of the lower groups and ties half of its own group's."""
        n_pos, n_neg = self.n_pos, self.n - self.n_pos
        if n_pos == 0 or n_neg == 0:
            return math.nan
        negatives = self.counts - self.positives
        below = n_neg - np.cumsum(negatives)  # negatives scoring strictly lower
        return float(np.sum(self.positives * (below + negatives / 2.0)) / (n_pos * n_neg))

    def average_precision(self) -> float:
        """``AP = sum_g (R_g - R_{g-1}) * Prec_g`` with ``R_g = P_g / P`` and ``Prec_g = P_g /
        C_g``: the area under the step-wise precision-recall curve, one step per tie group, no
        interpolation (scikit-learn's ``average_precision_score``). NaN without positives."""
        n_pos = self.n_pos
        if n_pos == 0:
            return math.nan
        return float(np.sum(self.positives / n_pos * (self.caught / self.flagged)))

    def precision_at_recall(self, recall: float) -> float:
        """``Prec_g`` of the first (highest) group ``g`` with ``R_g >= recall``: the precision
        of the highest threshold that reaches the recall, no interpolation. NaN without
        positives."""
        if not 0.0 < recall <= 1.0:
            raise ValueError(f"recall must lie in (0, 1] (got {recall})")
        n_pos = self.n_pos
        if n_pos == 0:
            return math.nan
        at = int(np.flatnonzero(self.caught >= recall * n_pos - 1e-9)[0])
        return float(self.caught[at] / self.flagged[at])

    def hits(self, m: float) -> float:
        """Expected positives among the top ``m`` accounts (``0 <= m <= n``) with tied accounts
        in uniformly random order: the groups above the cut count whole, the cut group ``g``
        gives ``(m - C_{g-1}) * p_g / c_g``."""
        if not 0 <= m <= self.n:
            raise ValueError(f"m must lie in [0, {self.n}] (got {m})")
        if m == 0:
            return 0.0
        g = int(np.searchsorted(self.flagged, m, side="left"))  # first group with C_g >= m
        above_count = self.flagged[g - 1] if g else 0.0
        above_caught = self.caught[g - 1] if g else 0.0
        return float(above_caught + (m - above_count) * self.positives[g] / self.counts[g])

    def precision_at_k(self, k: int) -> float:
        """Share of positives among the ``min(k, n)`` highest-scoring accounts, tied accounts
        at the cut counted pro rata (``hits``). NaN when there are no accounts."""
        if k < 1:
            raise ValueError(f"k must be >= 1 (got {k})")
        m = min(k, self.n)
        return math.nan if m == 0 else self.hits(m) / m

    def top_count(self, share: float) -> int:
        """Accounts in the top ``share``: ``m = ceil(share * n)`` (at least one account)."""
        if not 0.0 < share <= 1.0:
            raise ValueError(f"share must lie in (0, 1] (got {share})")
        return max(1, math.ceil(share * self.n - 1e-9)) if self.n else 0

    def recall_at_top(self, share: float) -> float:
        """``hits(m) / P`` with ``m = top_count(share)``: the share of all positives found
        among the top ``share`` of the accounts. NaN without positives."""
        m = self.top_count(share)
        return math.nan if self.n_pos == 0 else self.hits(m) / self.n_pos

    def lift_at_top(self, share: float) -> float:
        """``(hits(m) / m) / (P / n)``: how many times the base rate the top ``share`` of the
        accounts holds positives (1 for a random ranking). NaN without positives."""
        m = self.top_count(share)
        if self.n_pos == 0:
            return math.nan
        return (self.hits(m) / m) / (self.n_pos / self.n)


def roc_auc(scores: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """ROC AUC of ``scores`` for the boolean ``labels`` (:meth:`Ranking.roc_auc`)."""
    return Ranking.of(scores, labels).roc_auc()


def average_precision(scores: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """Average precision, step-wise, ties one threshold (:meth:`Ranking.average_precision`)."""
    return Ranking.of(scores, labels).average_precision()


def precision_at_recall(scores: npt.ArrayLike, labels: npt.ArrayLike, recall: float) -> float:
    """Precision of the highest score threshold whose recall reaches ``recall``.

    Flagging every account with ``score >= t`` (tied scores are flagged together), ``t``
    descends over the distinct scores until at least ``recall`` of the positives are flagged;
    the result is the share of positives among the flagged accounts at that point (no
    interpolation). NaN when there are no positives.
    """
    if not 0.0 < recall <= 1.0:
        raise ValueError(f"recall must lie in (0, 1] (got {recall})")
    return Ranking.of(scores, labels).precision_at_recall(recall)


def precision_at_k(scores: npt.ArrayLike, labels: npt.ArrayLike, k: int) -> float:
    """Precision among the top ``k`` accounts, ties at the cut pro rata
    (:meth:`Ranking.precision_at_k`)."""
    return Ranking.of(scores, labels).precision_at_k(k)


def recall_at_top(scores: npt.ArrayLike, labels: npt.ArrayLike, share: float) -> float:
    """Recall in the top ``share`` of accounts (:meth:`Ranking.recall_at_top`)."""
    return Ranking.of(scores, labels).recall_at_top(share)


def lift_at_top(scores: npt.ArrayLike, labels: npt.ArrayLike, share: float) -> float:
    """Lift over the base rate in the top ``share`` of accounts (:meth:`Ranking.lift_at_top`)."""
    return Ranking.of(scores, labels).lift_at_top(share)
