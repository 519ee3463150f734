"""Detection quality of plaintext propagation on the AMLSim sample (``riskprop.lab.detection``)
and the ranking metrics it uses (``riskprop.core.metrics``)."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import REPO, amlsim_sample, require_amlsim_sample

from riskprop.cli import cli
from riskprop.core import metrics
from riskprop.lab.detection import run_experiment

# --------------------------------------------------------------------------- metric helpers


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


# --------------------------------------------------------------------------- AMLSim


def test_propagation_ranks_unflagged_fraud_better_than_initial_scores() -> None:
    experiment = run_experiment(
        require_amlsim_sample(),
        banks=3,
        iterations=(0, 3),
        deltas=(0.5,),
        flagged_fraction=0.3,
        seed=0,
    )
    initial, zero, propagated = experiment.rows
    assert (initial.iterations, zero.iterations, propagated.iterations) == (0, 0, 3)
    assert experiment.unflagged_fraud > 500  # ~70% of the ~945 fraud accounts
    # measured (seed 0): initial AUC 0.509 (the background scores are noise), T=3 0.676
    assert initial.auc_unflagged == pytest.approx(0.5, abs=0.05)
    assert propagated.auc_unflagged > initial.auc_unflagged + 0.1
    # the same assertion fails without propagation (T=0 scores are the initial ones)
    assert zero.auc_unflagged == pytest.approx(initial.auc_unflagged)
    assert not zero.auc_unflagged > initial.auc_unflagged + 0.1
    # precision at 20% recall among the unflagged accounts roughly doubles (0.036 -> 0.076)
    assert propagated.precision_unflagged > 1.5 * initial.precision_unflagged


def test_the_sample_is_found_like_the_old_script_and_required_in_ci(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RISKPROP_AMLSIM", raising=False)
    assert amlsim_sample() == REPO.parent / "shared" / "data" / "amlsim-20K_cycle200"
    monkeypatch.setenv("RISKPROP_AMLSIM", str(tmp_path / "nowhere"))
    assert amlsim_sample() == tmp_path / "nowhere"
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="AMLSim sample not found"):
        require_amlsim_sample()
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="AMLSim sample not found"):
        require_amlsim_sample()


def test_detection_command_prints_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    sample = require_amlsim_sample()
    args = ["detection", "--iterations", "3", "--deltas", "0.5"]
    monkeypatch.delenv("RISKPROP_AMLSIM", raising=False)
    missing = CliRunner().invoke(cli, args)
    assert missing.exit_code == 2 and "--src" in missing.output
    monkeypatch.setenv("RISKPROP_AMLSIM", str(sample))  # the default of --src
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("# ") and "fraud" in lines[0]
    rows = [line.split() for line in lines if line.split()[:2] in (["0", "init"], ["3", "0.5"])]
    assert len(rows) == 2
    (initial_auc, propagated_auc) = (float(row[3]) for row in rows)
    assert propagated_auc > initial_auc + 0.1
