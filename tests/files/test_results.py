"""Result files round-trip whatever an account id holds: commas, quotes, newlines, unicode."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from riskprop.errors import InputError
from riskprop.files.results import (
    RESULTS_FILE,
    global_scores_csv,
    read_global_scores,
    read_scores,
    write_scores,
)
from riskprop.lab.simulate import simulate_plaintext

HOSTILE = ("a,b", 'say "hi"', "two\nlines", "cr\r\nlf", "ünïcødé €", " padded ", "=1+2", "'", ",")


def test_hostile_ids_round_trip_through_a_bank_results_file(tmp_path: Path) -> None:
    scores = np.linspace(0.0, 1.0, len(HOSTILE))
    write_scores(tmp_path / RESULTS_FILE, HOSTILE, scores)
    assert read_scores(tmp_path / RESULTS_FILE, HOSTILE).tolist() == scores.tolist()
    with (tmp_path / RESULTS_FILE).open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert all(len(row) == 2 for row in rows)  # joining strings gave "a,b,0.0": three fields
    assert [row[0] for row in rows[1:]] == list(HOSTILE)


@given(st.lists(st.text(min_size=1), min_size=1, max_size=20, unique=True))
def test_any_ids_round_trip_through_the_simulation_csv(ids: list[str]) -> None:
    scores = np.arange(len(ids), dtype=np.float64) / 7.0
    text = global_scores_csv(("x,y",), (tuple(ids),), scores)
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == ["bank", "id", "risk_score"]
    assert [(r[0], r[1], float(r[2])) for r in rows[1:]] == [
        ("x,y", i, s) for i, s in zip(ids, scores.tolist(), strict=True)
    ]


def test_saved_scores_of_other_accounts_are_refused(tmp_path: Path) -> None:
    write_scores(tmp_path / RESULTS_FILE, ("a,b", "c"), np.array([0.1, 0.2]))
    with pytest.raises(InputError, match="does not list this bank's accounts"):
        read_scores(tmp_path / RESULTS_FILE, ("a", "b", "c"))


def test_a_malformed_results_file_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / RESULTS_FILE
    path.write_text("id,risk_score\nalpha,high\n")
    with pytest.raises(InputError, match=r"row 2: 'high' is not a number"):
        read_scores(path, ("alpha",))
    path.write_text("account,score\n")
    with pytest.raises(InputError, match="expected the header id,risk_score"):
        read_scores(path, ())


def test_a_comma_id_accepted_on_input_comes_out_intact(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for bank, own, other, other_bank in (
        ("alice", '"acme, ltd"', "bob1", "bob"),
        ("bob", "bob1", '"acme, ltd"', "alice"),
    ):
        (data / bank).mkdir(parents=True)
        (data / bank / "accounts.csv").write_text(f"id,risk_score\n{own},0.9\n")
        rows = f"{own},{bank},{other},{other_bank},10\n{other},{other_bank},{own},{bank},5\n"
        header = "id_source,bank_source,id_destination,bank_destination,amount\n"
        (data / bank / "transactions.csv").write_text(header + rows)
    result = simulate_plaintext(data, iterations=2)
    out = tmp_path / "scores.csv"
    result.write(out)
    assert read_global_scores(out) == result.by_account()
    assert ("alice", "acme, ltd") in result.by_account()
