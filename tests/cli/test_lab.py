"""The researcher's commands (``riskprop.cli.lab``): ``simulate`` plaintext and secure,
``detection``; thin layers whose output is the library's."""

from __future__ import annotations

import csv
import io
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from cycle import TOL
from helpers import KEY_BITS, require_amlsim_sample

from riskprop.cli import cli
from riskprop.core.fixedpoint import DEFAULT_PRECISION_BITS, SCORE_BITS_SLACK, FixedPoint
from riskprop.core.types import FloatArray


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


CLI = [sys.executable, "-c", "import sys; from riskprop.cli import main; main(sys.argv[1:])"]


def riskprop(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


def read_global_csv(path: Path) -> tuple[list[tuple[str, str]], FloatArray]:
    """The (bank, id) keys in file order and the scores of a ``bank,id,risk_score`` file."""
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    assert rows[0] == ["bank", "id", "risk_score"]
    return [(r[0], r[1]) for r in rows[1:]], np.array([float(r[2]) for r in rows[1:]])


def test_cli_keygen_then_secure_simulate(cycle_data: Path, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    made = riskprop(
        "keygen", "--parties", "alice,bob,charlie", "--threshold", "1", "--key-bits", str(KEY_BITS),
        "--out", keys,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    for party in ("alice", "bob", "charlie"):
        assert stat.S_IMODE((keys / f"{party}.share.json").stat().st_mode) == 0o600
    secure_out, plain_out = tmp_path / "secure.csv", tmp_path / "plain.csv"
    secure = riskprop(
        "simulate", cycle_data, "--secure", "--keys", keys, "-T", "2", "--out", secure_out
    )
    assert secure.returncode == 0, secure.stderr
    plain = riskprop("simulate", cycle_data, "-T", "2", "--out", plain_out)
    assert plain.returncode == 0, plain.stderr
    secure_keys, secure_scores = read_global_csv(secure_out)
    plain_keys, plain_scores = read_global_csv(plain_out)
    assert secure_keys == plain_keys
    assert len(secure_keys) == 5
    assert np.max(np.abs(secure_scores - plain_scores)) <= TOL
    pooled_out = tmp_path / "pooled.csv"
    pooled = riskprop(
        "simulate", cycle_data, "--secure", "--keys", keys, "-T", "2", "--workers", "2",
        "--out", pooled_out,
    )  # fmt: skip
    assert pooled.returncode == 0, pooled.stderr
    assert pooled_out.read_text() == secure_out.read_text()
    refused = riskprop("simulate", cycle_data, "--secure", "--workers", "0")
    assert refused.returncode == 2 and "--workers" in refused.stderr
    from distributed import LocalCluster

    dask_out = tmp_path / "dask.csv"
    with LocalCluster(
        n_workers=1,
        threads_per_worker=2,
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},  # its HTTP server: any port
    ) as cluster:
        on_dask = riskprop(
            "simulate", cycle_data, "--secure", "--keys", keys, "-T", "2",
            "--dask", cluster.scheduler_address, "--out", dask_out,
        )  # fmt: skip
    assert on_dask.returncode == 0, on_dask.stderr
    assert dask_out.read_text() == secure_out.read_text()


def test_cli_overflow_is_one_line_and_exit_1(cycle_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "never.csv"
    result = riskprop(
        "simulate", cycle_data, "--secure", "--key-bits", str(KEY_BITS), "-T", "50", "--out", out
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if " WARNING " not in f" {line}"]
    assert len(errors) == 1, result.stderr
    f = DEFAULT_PRECISION_BITS
    limit = FixedPoint(f, f - SCORE_BITS_SLACK).max_iterations(KEY_BITS)
    assert errors[0].startswith("riskprop: error:")
    assert f"at most {limit} iterations" in errors[0]
    assert not out.exists()
    assert result.stdout == ""


def test_simulate_writes_each_bank_its_ranked_file(cycle_data: Path, tmp_path: Path) -> None:
    """``--ranked DIR``: DIR/<bank>/ranked.csv per bank, with that bank's accounts only and the
    final scores the simulation wrote."""
    out, ranked = tmp_path / "scores.csv", tmp_path / "ranked"
    result = CliRunner().invoke(
        cli, ["simulate", str(cycle_data), "-T", "2", "-o", str(out), "--ranked", str(ranked)]
    )
    assert result.exit_code == 0, result.output
    with out.open() as handle:
        written = {(r["bank"], r["id"]): float(r["risk_score"]) for r in csv.DictReader(handle)}
    banks = {bank for bank, _ in written}
    assert {p.name for p in ranked.iterdir()} == banks
    for bank in banks:
        with (ranked / bank / "ranked.csv").open() as handle:
            rows = list(csv.DictReader(handle))
        assert {r["id"] for r in rows} == {i for b, i in written if b == bank}
        assert all(float(r["final_score"]) == written[bank, r["id"]] for r in rows)
        assert [int(r["rank"]) for r in rows] == sorted(int(r["rank"]) for r in rows)
