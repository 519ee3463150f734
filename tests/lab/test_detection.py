"""Detection quality of plaintext propagation on the AMLSim sample (``riskprop.lab.detection``),
and where that sample is found."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import REPO, amlsim_sample, require_amlsim_sample

from riskprop.lab.detection import run_experiment


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
