"""``riskprop evaluate``: the table, the convergence lines and the files are the library's;
bad input is one line and writes nothing."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest
from helpers import run_cli

from riskprop.lab.evaluate import METRICS, Options, Setting, Workbench, grid

LABELS = "bank,id,is_laundering\nalice,a1,1\nbob,b1,1\nbob,b2,0\ncharlie,c1,0\n"


def test_grid_prints_table_and_convergence_and_writes_both_files(
    cycle_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (cycle_data / "labels.csv").write_text(LABELS, encoding="utf-8")
    out_csv, out_json = tmp_path / "out" / "rows.csv", tmp_path / "rows.json"
    code, out, err = run_cli(
        [
            "evaluate",
            str(cycle_data),  # labels default to DATA/labels.csv
            "-T",
            "1,2",
            "--delta-a",
            "0.3,0.5",
            "--combine",
            "plain,max",
            "--k",
            "2",
            "--csv",
            str(out_csv),
            "--json",
            str(out_json),
        ],
        capsys,
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("# ") and "5 accounts, 2 laundering" in lines[0]
    assert "1 accounts without a label count as not laundering" in lines[0]  # a2
    assert lines[1].split()[:6] == ["T", "delta_a", "delta_b", "combine", "subset", "AUC"]
    assert "P@2" in lines[1].split()
    body = [line.split() for line in lines[3:] if not line.startswith("#")]
    assert len(body) == 2 * (1 + 2 * 2 * 2)  # subsets x (initial + T x a x combine)
    assert body[0][:3] == ["0", "init", "all"]
    convergence = [line for line in lines if line.startswith("# change per iteration")]
    assert len(convergence) == 2 and "a=0.3 b=0" in convergence[0]

    # the files hold what the library computes, one row per setting and subset
    settings = grid([1, 2], [0.3, 0.5], [0.0], ["plain", "max"])
    expected = Workbench.load(cycle_data, cycle_data / "labels.csv").evaluate(
        settings, Options(k=2)
    )
    table = list(csv.DictReader(io.StringIO(out_csv.read_text(encoding="utf-8"))))
    rows = json.loads(out_json.read_text(encoding="utf-8"))
    assert len(table) == len(rows) == len(expected) == len(body)
    for row, record, e in zip(table, rows, expected, strict=True):
        assert (
            Setting(
                int(row["iterations"]), float(row["delta_a"]), float(row["delta_b"]), row["combine"]
            )
            == e.setting
        )
        assert record["subset"] == row["subset"] == e.subset
        assert int(row["k"]) == record["k"] == 2
        for name in METRICS:
            value = e.metrics[name]
            if math.isnan(value):
                assert row[name] == "" and record[name] is None
            else:
                assert float(row[name]) == record[name] == value


@pytest.mark.parametrize(
    ("extra", "labels", "message"),
    [
        ([], LABELS + "dave,d1,1\n", "labels.csv:6: bank 'dave' is not a bank of the data set"),
        (["--delta-a", "0.5,1.5"], LABELS, "--delta-a: must lie strictly between 0 and 1"),
        (["--combine", "plain,sum"], LABELS, "--combine: must be one of plain, max"),
        (["--top", "0"], LABELS, "--top: must lie in (0, 1]"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    cycle_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    labels: str,
    message: str,
) -> None:
    (tmp_path / "labels.csv").write_text(labels, encoding="utf-8")
    out = tmp_path / "out.csv"
    args = ["evaluate", str(cycle_data), "--labels", str(tmp_path / "labels.csv")]
    code, stdout, err = run_cli([*args, "--csv", str(out), *extra], capsys)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("riskprop: error: "), err
    assert message in err and "Traceback" not in err
    assert stdout == "" and not out.exists()


def test_bad_list_and_output_directory(
    cycle_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (cycle_data / "labels.csv").write_text(LABELS, encoding="utf-8")
    code, _, err = run_cli(["evaluate", str(cycle_data), "-T", "1,x"], capsys)
    assert code == 2 and "not a comma-separated list of integers" in err
    code, _, err = run_cli(["evaluate", str(cycle_data), "--json", str(tmp_path)], capsys)
    assert code == 1 and f"--json {tmp_path}: is a directory" in err
