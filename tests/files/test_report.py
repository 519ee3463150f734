"""The run report: its MAC catches a changed report or results file; modes are what was asked."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import numpy as np
import pytest

from riskprop.errors import InputError
from riskprop.files.results import (
    REPORT_FILE,
    RESULTS_FILE,
    NodeReport,
    read_report,
    read_scores,
    write_report,
    write_scores,
)
from riskprop.files.sealed import state_key

KEY = state_key(99991)


def report(output: Path, sha256: str) -> NodeReport:
    return NodeReport(
        player="alice",
        run_id="r1",
        accounts=2,
        results=output / RESULTS_FILE,
        seconds={"decrypt": 1.0},
        bytes_by_phase={"hello": 10},
        bytes_sent=10,
        wall_seconds=1.5,
        identity={"iterations": "3", "data": "ab" * 32},
        results_sha256=sha256,
    )


def test_a_changed_report_or_results_file_is_refused(tmp_path: Path) -> None:
    sha256 = write_scores(tmp_path / RESULTS_FILE, ("a", "b"), np.array([0.25, 0.5]))
    write_report(tmp_path, report(tmp_path, sha256), key=KEY)
    saved = read_report(tmp_path, key=KEY)
    assert saved == report(tmp_path, sha256)
    assert read_scores(
        tmp_path / RESULTS_FILE, ("a", "b"), sha256=saved.results_sha256
    ).tolist() == [
        0.25,
        0.5,
    ]
    with pytest.raises(InputError, match="another bank's"):
        read_report(tmp_path, key=state_key(5))
    fields = json.loads((tmp_path / REPORT_FILE).read_text())
    fields["identity"]["iterations"] = "2"
    (tmp_path / REPORT_FILE).write_text(json.dumps(fields))
    with pytest.raises(InputError, match="changed since the run wrote it"):
        read_report(tmp_path, key=KEY)
    (tmp_path / RESULTS_FILE).write_text("id,risk_score\na,0.25\nb,0.75\n")
    with pytest.raises(InputError, match="changed since the run wrote it"):
        read_scores(tmp_path / RESULTS_FILE, ("a", "b"), sha256=saved.results_sha256)


@pytest.mark.parametrize("mode", [0o600, 0o640])
def test_results_and_report_get_the_mode_asked_for(tmp_path: Path, mode: int) -> None:
    sha256 = write_scores(tmp_path / RESULTS_FILE, ("a",), np.array([0.1]), mode=mode)
    write_report(tmp_path, report(tmp_path, sha256), key=KEY, mode=mode)
    for name in (RESULTS_FILE, REPORT_FILE):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode
