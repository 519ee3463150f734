"""Ranking metrics (``riskprop.core.metrics``) by hand, against scikit-learn (an independent
implementation, installed for the tests only) and against brute-force definitions on random
inputs with many ties: counting pairs, every threshold, every order of tied accounts."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest
import sklearn.metrics as skm  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st

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


# --------------------------------------------------------------------------- tie groups

Sample = tuple[list[float], list[bool]]


@st.composite
def samples(draw: st.DrawFn, max_size: int = 40) -> Sample:
    """Scores from a few distinct values (many ties) and labels, equal lengths."""
    n = draw(st.integers(1, max_size))
    scores = draw(st.lists(st.integers(0, 4), min_size=n, max_size=n))
    labels = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    return [s / 4 for s in scores], labels


def ap_by_thresholds(scores: list[float], labels: list[bool]) -> float:
    """Average precision from its definition: every distinct score a threshold, flag
    ``score >= t``, add (recall gained) x (precision there)."""
    positives = sum(labels)
    total, recall_before = 0.0, 0.0
    for t in sorted(set(scores), reverse=True):
        flagged = [y for s, y in zip(scores, labels, strict=True) if s >= t]
        recall = sum(flagged) / positives
        total += (recall - recall_before) * sum(flagged) / len(flagged)
        recall_before = recall
    return total


def expected_hits_over_orders(scores: list[float], labels: list[bool], m: int) -> float:
    """Positives among the first ``m`` accounts, averaged over every order of the accounts
    that sorts by descending score (ties in every possible order)."""
    total, orders = 0, 0
    for perm in itertools.permutations(range(len(scores))):
        ranked = sorted(perm, key=lambda i: -scores[i])  # stable: ties keep perm's order
        total += sum(labels[i] for i in ranked[:m])
        orders += 1
    return total / orders


def test_average_precision_by_hand() -> None:
    ap = metrics.average_precision
    # positives at ranks 1 and 3: 1/2 * 1 + 1/2 * 2/3
    assert ap([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx(5 / 6)
    # the tie 0.9 is one threshold: recall 1/2 at precision 1/2, then recall 1 at 2/3
    assert ap([0.9, 0.9, 0.1], [1, 0, 1]) == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)
    assert ap([0.3, 0.3, 0.3, 0.3], [1, 0, 0, 0]) == pytest.approx(1 / 4)  # the base rate
    assert ap([0.9, 0.1], [1, 0]) == pytest.approx(1.0)
    assert math.isnan(ap([0.1, 0.2], [0, 0]))
    assert math.isnan(ap([], []))


@settings(max_examples=200, deadline=None)
@given(samples())
def test_threshold_metrics_match_scikit_learn(sample: Sample) -> None:
    scores, labels = sample
    if not any(labels):
        assert math.isnan(metrics.average_precision(scores, labels))
        return
    expected_ap = float(skm.average_precision_score(labels, scores))
    assert metrics.average_precision(scores, labels) == pytest.approx(expected_ap, abs=1e-12)
    assert metrics.average_precision(scores, labels) == pytest.approx(
        ap_by_thresholds(scores, labels), abs=1e-12
    )
    if all(labels):
        assert math.isnan(metrics.roc_auc(scores, labels))
    else:
        expected_auc = float(skm.roc_auc_score(labels, scores))
        assert metrics.roc_auc(scores, labels) == pytest.approx(expected_auc, abs=1e-12)
    # precision at a recall: the first point of scikit-learn's curve, thresholds descending,
    # whose recall reaches it (its extra point, recall 0, never does)
    precision, recall, _ = skm.precision_recall_curve(labels, scores)
    for target in (0.1, 0.2, 0.5, 1.0):
        reached = [p for p, r in zip(precision[::-1], recall[::-1], strict=True) if r >= target]
        assert metrics.precision_at_recall(scores, labels, target) == pytest.approx(
            float(reached[0]), abs=1e-12
        )


@settings(max_examples=150, deadline=None)
@given(samples(max_size=6), st.integers(1, 8), st.sampled_from([0.01, 0.2, 0.34, 0.5, 1.0]))
def test_count_metrics_are_the_expectation_over_tie_orders(
    sample: Sample, k: int, share: float
) -> None:
    scores, labels = sample
    n, positives = len(scores), sum(labels)
    m = min(k, n)
    assert metrics.precision_at_k(scores, labels, k) == pytest.approx(
        expected_hits_over_orders(scores, labels, m) / m, abs=1e-12
    )
    top = max(1, math.ceil(share * n - 1e-9))
    hits = expected_hits_over_orders(scores, labels, top)
    if positives == 0:
        assert math.isnan(metrics.recall_at_top(scores, labels, share))
        assert math.isnan(metrics.lift_at_top(scores, labels, share))
        return
    assert metrics.recall_at_top(scores, labels, share) == pytest.approx(hits / positives)
    assert metrics.lift_at_top(scores, labels, share) == pytest.approx(
        (hits / top) / (positives / n)
    )


@settings(max_examples=100, deadline=None)
@given(samples(), st.randoms(use_true_random=False))
def test_metrics_do_not_depend_on_the_input_order(sample: Sample, rnd: random.Random) -> None:
    scores, labels = sample
    order = list(range(len(scores)))
    rnd.shuffle(order)
    shuffled = ([scores[i] for i in order], [labels[i] for i in order])
    a, b = metrics.Ranking.of(scores, labels), metrics.Ranking.of(*shuffled)

    def values(r: metrics.Ranking) -> list[float]:
        return [
            r.roc_auc(),
            r.average_precision(),
            r.precision_at_recall(0.5),
            r.precision_at_k(3),
            r.recall_at_top(0.3),
            r.lift_at_top(0.3),
        ]

    assert values(a) == pytest.approx(values(b), nan_ok=True, abs=1e-12)


def test_precision_at_k_shares_the_tie_at_the_cut() -> None:
    pak = metrics.precision_at_k
    scores = [0.9, 0.5, 0.5, 0.5, 0.1]
    labels = [0, 1, 0, 0, 1]
    # the top place is a negative; the second goes to one of three tied accounts, one of
    # which is positive: 1/3 of a hit expected
    assert pak(scores, labels, 2) == pytest.approx((0 + 1 / 3) / 2)
    assert pak(scores, labels, 4) == pytest.approx(1 / 4)  # the whole tie: one hit
    assert pak(scores, labels, 5) == pytest.approx(2 / 5)
    assert pak(scores, labels, 50) == pytest.approx(2 / 5)  # k beyond n takes every account
    assert pak([0.2, 0.1], [0, 0], 1) == 0.0  # defined without positives
    assert math.isnan(pak([], [], 3))
    with pytest.raises(ValueError, match="k must be"):
        pak(scores, labels, 0)


def test_top_share_counts_accounts_up_and_lift_is_one_for_a_constant_score() -> None:
    ranking = metrics.Ranking.of(np.zeros(100), np.arange(100) < 10)
    assert ranking.top_count(0.07) == 7  # 0.07 * 100 is 7.000000000000001 in floats
    assert ranking.top_count(0.001) == 1  # at least one account
    assert ranking.top_count(0.015) == 2  # 1.5 rounds up
    assert metrics.Ranking.of(np.zeros(250), np.zeros(250)).top_count(0.01) == 3
    assert ranking.recall_at_top(0.2) == pytest.approx(0.2)  # every account alike
    assert ranking.lift_at_top(0.2) == pytest.approx(1.0)
    perfect = metrics.Ranking.of(np.arange(100.0), np.arange(100) >= 90)
    assert perfect.recall_at_top(0.1) == pytest.approx(1.0)
    assert perfect.lift_at_top(0.05) == pytest.approx(10.0)  # 5 of 5 against a 10% base rate
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="share must"):
            ranking.recall_at_top(bad)


def test_metrics_refuse_mismatched_or_infinite_scores() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        metrics.average_precision([0.1, 0.2], [1])
    with pytest.raises(ValueError, match="finite"):
        metrics.precision_at_k([0.1, math.inf], [1, 0], 1)
