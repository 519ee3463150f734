"""The researcher's commands (``riskprop.cli.lab``): ``simulate`` plaintext and secure,
``detection``; thin layers whose output is the library's."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from helpers import require_amlsim_sample

from riskprop.cli import cli


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
