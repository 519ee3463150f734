"""Ranking metrics (``riskprop.core.metrics``): average ranks, ROC AUC and precision at a
recall, by hand and against counting pairs."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from riskprop.core import metrics


def test_average_ranks_share_ties() -> None:
    assert metrics.average_ranks([3.0, 1.0, 3.0, 2.0]).tolist() == [3.5, 1.0, 3.5, 2.0]
    assert metrics.average_ranks([5.0, 5.0, 5.0]).tolist() == [2.0, 2.0, 2.0]


def test_roc_auc_by_hand() -> None:
    auc = metrics.roc_auc
    # pairs (pos, neg): 0.35>0.1 yes, 0.35>0.4 no, 0.8>0.1 yes, 0.8>0.4 yes -> 3/4
    assert auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    # a tie between a positive and a negative counts one half: (0.5 + 1 + 1 + 1) / 4
    assert auc([0.5, 0.5, 0.2, 0.9], [1, 0, 0, 1]) == pytest.approx(0.875)
    assert auc([0.3, 0.3, 0.3, 0.3], [1, 0, 1, 0]) == pytest.approx(0.5)
    assert auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == pytest.approx(1.0)
    assert auc([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]) == pytest.approx(0.0)
    assert math.isnan(auc([0.1, 0.2], [0, 0]))
    assert math.isnan(auc([0.1, 0.2], [1, 1]))


def test_roc_auc_matches_counting_pairs() -> None:
    rng = np.random.default_rng(7)
    scores = rng.integers(0, 6, 60).astype(float)  # many ties
    labels = rng.random(60) < 0.3
    pos, neg = scores[labels], scores[~labels]
    pairs = list(itertools.product(pos, neg))
    expected = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)
    assert metrics.roc_auc(scores, labels) == pytest.approx(expected, abs=1e-12)


def test_precision_at_recall_by_hand() -> None:
    par = metrics.precision_at_recall
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05]
    labels = [0, 1, 0, 1, 0, 0, 1, 0, 0, 1]  # 4 positives, at ranks 2, 4, 7, 10
    assert par(scores, labels, 0.2) == pytest.approx(1 / 2)  # 1 of 4 caught at rank 2
    assert par(scores, labels, 0.25) == pytest.approx(1 / 2)
    assert par(scores, labels, 0.5) == pytest.approx(2 / 4)
    assert par(scores, labels, 0.75) == pytest.approx(3 / 7)
    assert par(scores, labels, 1.0) == pytest.approx(4 / 10)
    # tied scores are flagged together: the top group holds 1 positive of 3 accounts
    assert par([0.9, 0.9, 0.9, 0.1], [1, 0, 0, 1], 0.5) == pytest.approx(1 / 3)
    # order of the input does not matter
    assert par(scores[::-1], labels[::-1], 0.5) == pytest.approx(2 / 4)
    assert math.isnan(par([0.1, 0.2], [0, 0], 0.2))
    with pytest.raises(ValueError):
        par(scores, labels, 0.0)
