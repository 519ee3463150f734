"""labels.csv: one strict reader for every command that reads labels."""

from __future__ import annotations

from pathlib import Path

import pytest

from riskprop.errors import InputError
from riskprop.files.layout import read_labels


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "labels.csv"
    path.write_text(text)
    return path


def test_labels_are_read_by_bank_and_id(tmp_path: Path) -> None:
    path = write(tmp_path, "bank,id,is_laundering\nalice,a1,1\nalice,a2,0\nbob,a1,0\n")
    assert read_labels(path) == {
        ("alice", "a1"): True,
        ("alice", "a2"): False,
        ("bob", "a1"): False,
    }


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("bank,id\nalice,a1\n", r"labels\.csv:1: expected the header bank,id,is_laundering"),
        ("bank,id,is_laundering\nalice,a1\n", r"labels\.csv:2: expected 3 fields"),
        ("bank,id,is_laundering\nalice,a1,yes\n", r"labels\.csv:2: is_laundering 'yes' is not 0"),
        (
            "bank,id,is_laundering\nalice,a1,1\nalice,a1,0\n",
            r"labels\.csv:3: account 'a1' of alice is labelled twice",
        ),
    ],
)
def test_a_bad_labels_file_is_one_line_naming_the_line(
    tmp_path: Path, text: str, error: str
) -> None:
    with pytest.raises(InputError, match=error):
        read_labels(write(tmp_path, text))


def test_a_missing_labels_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"labels\.csv: labels file not found"):
        read_labels(tmp_path / "labels.csv")
