"""``riskprop sweep``: the library's sweep, files and recommendation behind a thin command;
bad input is one line and writes nothing."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest
from helpers import require_amlsim_sample, run_cli

from riskprop.lab.evaluate import METRICS, Options, Setting, Workbench
from riskprop.lab.synthetic import generate_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated data set with its labels (``DATA/labels.csv``)."""
    root = tmp_path_factory.mktemp("sweep") / "data"
    generate_dataset(root, accounts=400, edges=2000, seed=3)
    return root


def test_sweep_writes_rows_equal_to_the_workbench_and_a_recommendation(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code, stdout, err = run_cli(
        [
            "sweep",
            str(data),
            "-T",
            "0,1,3",
            "--delta-a",
            "0.3,0.6",
            "--combine",
            "plain,max",
            "--k",
            "20",
            "--workers",
            "2",
            "--out",
            str(out),
        ],
        capsys,
    )
    assert code == 0, err
    assert stdout.startswith("# Recommended setting\n")
    assert "**Recommended: " in stdout and "Trade-off: " in stdout
    assert "# 12 settings x 1 seed(s) on 2 worker(s)" in stdout
    assert (out / "recommendation.md").read_text() in stdout
    for name in ("tradeoff.png", "tradeoff.svg", "average_precision_vs_T.png", "seeds.csv"):
        assert (out / name).stat().st_size > 0

    rows = list(csv.DictReader(io.StringIO((out / "sweep.csv").read_text())))
    settings = [
        Setting(t, a, 0.0, c) for a in (0.3, 0.6) for t in (0, 1, 3) for c in ("plain", "max")
    ]
    expected = Workbench.load(data, data / "labels.csv").evaluate(settings, Options(k=20))
    assert len(rows) == len(expected) == 24
    for row, direct in zip(rows, expected, strict=True):
        setting = direct.setting
        assert (int(row["iterations"]), float(row["delta_a"]), row["combine"], row["subset"]) == (
            setting.iterations,
            setting.delta_a,
            setting.combine,
            direct.subset,
        )
        assert row["seeds"] == "1" and row["k"] == "20"
        for metric in METRICS:
            value = direct.metrics[metric]
            assert row[metric] == ("" if math.isnan(value) else repr(value))
            assert row[f"{metric}_std"] == ""  # one seed: no deviation

    document = json.loads((out / "sweep.json").read_text())
    assert document["source"] == f"data {data}, labels {data / 'labels.csv'}"
    assert document["workers"] == 2 and document["seeds"] == [0]


def test_sweep_amlsim_over_seeds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sample = require_amlsim_sample()
    out = tmp_path / "out"
    args = ["sweep", "--amlsim", str(sample), "--banks", "2", "-T", "0,2", "--delta-a", "0.3"]
    code, stdout, err = run_cli([*args, "--seeds", "2", "--no-plots", "--out", str(out)], capsys)
    assert code == 0, err
    assert "split into 2 banks" in stdout and "2 seed(s)" in stdout
    assert not list(out.glob("*.png"))
    seeds = list(csv.DictReader(io.StringIO((out / "seeds.csv").read_text())))
    assert sorted({row["seed"] for row in seeds}) == ["0", "1"]
    rows = list(csv.DictReader(io.StringIO((out / "sweep.csv").read_text())))
    assert len(rows) == 2 * 2 * 2 and all(row["seeds"] == "2" for row in rows)
    assert all(row["average_precision_std"] != "" for row in rows)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--seeds", "3"], "riskprop: error: --seeds: 3 seeds of fixed data would repeat"),
        (["--delta-a", "0.5,1.5"], "riskprop: error: --delta-a: must lie strictly between"),
        (["--combine", "mean"], "riskprop: error: --combine: 'mean' is not one of plain, max"),
        (["--amlsim", "x"], "riskprop: error: give DATA (with --labels) or --amlsim SRC"),
        (["--metric", "auc"], "riskprop: error: --metric: 'auc' is not one of"),
        (["--max-loss", "1"], "riskprop: error: --max-loss: must lie in [0, 1)"),
        (["--labels", "missing.csv"], "missing.csv: labels file not found"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    out = tmp_path / "out"
    code, _, err = run_cli(
        ["sweep", str(data), *extra, "--workers", "1", "--out", str(out)], capsys
    )
    assert code == 1
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_a_list_that_does_not_parse_is_a_usage_error(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(["sweep", str(data), "-T", "1,x", "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "not a comma-separated list of integers: '1,x'" in err
    assert not (tmp_path / "o").exists()


def test_out_that_is_a_file_is_refused_before_any_work(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "file"
    out.write_text("keep")
    code, _, err = run_cli(["sweep", str(data), "--out", str(out)], capsys)
    assert code == 1 and "--out" in err and "is not a directory" in err
    assert out.read_text() == "keep"


def test_out_that_holds_an_earlier_sweep_is_refused(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An earlier sweep's figures would be taken for this one's (e.g. after --no-plots)."""
    out = tmp_path / "earlier"
    out.mkdir()
    (out / "sweep.json").write_text("{}")
    (out / "old.png").write_bytes(b"")
    code, _, err = run_cli(["sweep", str(data), "--no-plots", "--out", str(out)], capsys)
    assert code == 1 and "holds an earlier sweep; give a new directory" in err
    assert sorted(p.name for p in out.iterdir()) == ["old.png", "sweep.json"]


def test_bad_data_found_in_a_worker_is_one_line(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("bank,id,is_laundering\nalice,nobody,1\n", encoding="utf-8")
    out = tmp_path / "out"
    args = ["sweep", str(data), "--labels", str(labels), "--workers", "2", "--out", str(out)]
    code, _, err = run_cli(args, capsys)
    assert code == 1
    assert err == f"riskprop: error: {labels}:2: alice has no account 'nobody'\n"
    assert not out.exists()
