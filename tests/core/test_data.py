"""Bad input data: every problem is an ``InputError`` naming ``file:line`` and the problem.

The data sets have two banks: alice (always valid) and bob, whose files are written verbatim.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import write_dataset

from riskprop.core.data import load_bank, load_dataset
from riskprop.errors import InputError

ACCOUNTS_HEADER = "id,risk_score"
TX_HEADER = "id_source,bank_source,id_destination,bank_destination,amount,period"
BOB_ACCOUNTS = f"{ACCOUNTS_HEADER}\nb1,0.5\nb2,0.25\n"
BOB_TRANSACTIONS = f"{TX_HEADER}\nb1,bob,b2,bob,10,0\na1,alice,b1,bob,5,0\n"


def make(root: Path, accounts: str = BOB_ACCOUNTS, transactions: str = BOB_TRANSACTIONS) -> Path:
    """A data set with a valid alice and bob's files as given; returns its root."""
    write_dataset(
        root,
        {"alice": ([("a1", "1"), ("a2", "0")], [("a1", "alice", "b1", "bob", "5", "0")])},
    )
    (root / "bob").mkdir()
    (root / "bob" / "accounts.csv").write_text(accounts, newline="")
    (root / "bob" / "transactions.csv").write_text(transactions, newline="")
    return root


def load_error(root: Path) -> str:
    with pytest.raises(InputError) as info:
        load_dataset(root)
    message = str(info.value)
    assert "\n" not in message
    return message


def assert_names(message: str, path: Path, line: int | None, *keywords: str) -> None:
    where = f"{path}:{line}: " if line is not None else f"{path}"
    assert where in message, message
    for keyword in keywords:
        assert keyword in message, message


def tx(*rows: str, header: str = TX_HEADER) -> str:
    return "\n".join([header, *rows]) + "\n"


def acc(*rows: str, header: str = ACCOUNTS_HEADER) -> str:
    return "\n".join([header, *rows]) + "\n"


# ------------------------------------------------------------------------- accounts.csv

ACCOUNT_CASES = {
    "missing column": (acc("b1", header="id"), 1, ["missing column", "risk_score"]),
    "extra column": (acc("b1,0.5,x", header="id,risk_score,kind"), 1, ["unexpected column"]),
    "column order": (acc("0.5,b1", header="risk_score,id"), 1, ["order"]),
    "too few fields": (acc("b1,0.5", "b2"), 3, ["expected 2 fields", "got 1"]),
    "too many fields": (acc("b1,0.5", "b2,0.5,7"), 3, ["expected 2 fields", "got 3"]),
    "score above 1": (acc("b1,0.5", "b2,1.5"), 3, ["risk_score", "outside [0, 1]"]),
    "score below 0": (acc("b1,-0.1"), 2, ["risk_score", "outside [0, 1]"]),
    "score NaN": (acc("b1,0.5", "b2,nan"), 3, ["risk_score", "nan"]),
    "score inf": (acc("b1,inf"), 2, ["risk_score", "inf"]),
    "score not numeric": (acc("b1,0.5", "b2,high"), 3, ["risk_score", "'high'", "not a number"]),
    "score empty": (acc("b1,"), 2, ["risk_score", "not a number"]),
    "duplicate id": (acc("b1,0.5", "b2,0.1", "b1,0.3"), 4, ["duplicate account id", "'b1'"]),
    "empty id": (acc("b1,0.5", ",0.5"), 3, ["empty id"]),
    "blank lines before error": (acc("b1,0.5", "", "", "b2,2"), 5, ["outside [0, 1]"]),
    "blank lines before duplicate": (acc("b1,0.5", "", "b1,0.2"), 4, ["duplicate"]),
    "blank lines before parse error": (acc("", "b1,0.5", "", "b2,x"), 5, ["not a number"]),
    "blank line before field count": (acc("b1,0.5", "", "b2"), 4, ["expected 2 fields"]),
}


@pytest.mark.parametrize(
    ("text", "line", "keywords"), ACCOUNT_CASES.values(), ids=list(ACCOUNT_CASES)
)
def test_bad_accounts_file(tmp_path: Path, text: str, line: int, keywords: list[str]) -> None:
    root = make(tmp_path, accounts=text)
    assert_names(load_error(root), root / "bob" / "accounts.csv", line, *keywords)


# --------------------------------------------------------------------- transactions.csv

OK_ROW = "b1,bob,b2,bob,10,0"
TX_CASES = {
    "missing column": (
        tx("b1,bob,b2,bob", header="id_source,bank_source,id_destination,bank_destination"),
        1,
        ["missing column", "amount"],
    ),
    "extra column": (tx(OK_ROW + ",x", header=TX_HEADER + ",note"), 1, ["unexpected column"]),
    "column order": (
        tx(
            "bob,b1,b2,bob,10",
            header="bank_source,id_source,id_destination,bank_destination,amount",
        ),
        1,
        ["order"],
    ),
    "period before amount": (
        tx("b1,bob,b2,bob,0,10", header=TX_HEADER.replace("amount,period", "period,amount")),
        1,
        ["order"],
    ),
    "too few fields": (tx(OK_ROW, "b1,bob,b2,bob,10"), 3, ["expected 6 fields", "got 5"]),
    "too many fields": (tx(OK_ROW, OK_ROW + ",1"), 3, ["expected 6 fields", "got 7"]),
    "too many fields without period": (
        tx("b1,bob,b2,bob,10,0", header=TX_HEADER.removesuffix(",period")),
        2,
        ["expected 5 fields", "got 6"],
    ),
    "amount not numeric": (tx(OK_ROW, "b1,bob,b2,bob,ten,0"), 3, ["amount", "'ten'", "number"]),
    "amount empty": (tx(OK_ROW, "b1,bob,b2,bob,,0"), 3, ["amount", "not a number"]),
    "amount negative": (tx(OK_ROW, "b1,bob,b2,bob,-1,0"), 3, ["amount", "-1", "non-negative"]),
    "amount NaN": (tx("b1,bob,b2,bob,NaN,0"), 2, ["amount", "nan"]),
    "amount inf": (tx(OK_ROW, OK_ROW, "b1,bob,b2,bob,inf,0"), 4, ["amount", "inf"]),
    "amount overflows": (tx(OK_ROW, "b1,bob,b2,bob,1e999,0"), 3, ["amount", "inf"]),
    "period not integer": (tx(OK_ROW, "b1,bob,b2,bob,10,1.5"), 3, ["period", "'1.5'", "integer"]),
    "period not numeric": (tx("b1,bob,b2,bob,10,may"), 2, ["period", "integer"]),
    "period empty": (tx("b1,bob,b2,bob,10,"), 2, ["period", "integer"]),
    "period negative": (tx(OK_ROW, "b1,bob,b2,bob,10,-1"), 3, ["period", "negative"]),
    "empty id_source": (tx(OK_ROW, ",bob,b2,bob,10,0"), 3, ["empty id_source"]),
    "empty id_destination": (tx("b1,bob,,bob,10,0"), 2, ["empty id_destination"]),
    "unknown bank_source": (
        tx(OK_ROW, "z1,zed,b1,bob,10,0"),
        3,
        ["bank_source", "'zed'", "not a bank"],
    ),
    "unknown bank_destination": (
        tx(OK_ROW, "b1,bob,z1,Alice,10,0"),
        3,
        ["bank_destination", "'Alice'", "not a bank"],
    ),
    "empty bank_source": (tx("b9,,b1,bob,10,0"), 2, ["bank_source ''", "not a bank"]),
    "touches no account of the bank": (
        tx(OK_ROW, "a1,alice,a2,alice,3,0"),
        3,
        ["touches no account of bank 'bob'"],
    ),
    "blank lines before checked error": (
        tx(OK_ROW, "", "", "b1,bob,b2,bob,-5,0"),
        5,
        ["amount", "non-negative"],
    ),
    "blank lines before parse error": (
        tx("", OK_ROW, "", "b1,bob,b2,bob,5,x"),
        5,
        ["period", "integer"],
    ),
    "blank lines before unknown bank": (
        tx(OK_ROW, "", OK_ROW, "", "", "b1,bob,q,nobank,1,0"),
        7,
        ["bank_destination", "not a bank"],
    ),
    "CRLF and blank lines": (
        tx(OK_ROW, "", "b1,bob,b2,bob,-5,0").replace("\n", "\r\n"),
        4,
        ["non-negative"],
    ),
    "quoted newline in an id": (
        tx('"b\n1",bob,b2,bob,1,0', "b1,bob,b2,bob,-1,0"),
        4,
        ["non-negative"],
    ),
}


@pytest.mark.parametrize(("text", "line", "keywords"), TX_CASES.values(), ids=list(TX_CASES))
def test_bad_transactions_file(tmp_path: Path, text: str, line: int, keywords: list[str]) -> None:
    root = make(tmp_path, transactions=text)
    assert_names(load_error(root), root / "bob" / "transactions.csv", line, *keywords)


def test_first_bad_row_is_reported(tmp_path: Path) -> None:
    # line 3: unknown bank; line 4: negative amount; line 5: empty id -> line 3
    text = tx(OK_ROW, "b1,bob,x,zed,1,0", "b1,bob,b2,bob,-1,0", ",bob,b2,bob,1,0")
    root = make(tmp_path, transactions=text)
    assert_names(load_error(root), root / "bob" / "transactions.csv", 3, "zed")
    text = tx(OK_ROW, ",bob,b2,bob,1,0", "b1,bob,b2,bob,-1,0", "b1,bob,x,zed,1,0")
    root = make(tmp_path / "again", transactions=text)
    assert_names(load_error(root), root / "bob" / "transactions.csv", 3, "empty id_source")


@pytest.mark.parametrize(
    "row",
    ["b1,bob,b2,bob,1_000,0", "b1,bob,b2,bob,1,+1", "b1,bob,b2,bob,1,99999999999999999999"],
    ids=["underscore amount", "plus period", "huge period"],
)
def test_python_parsable_values_still_name_the_line(tmp_path: Path, row: str) -> None:
    root = make(tmp_path, transactions=tx(OK_ROW, "", row))
    assert_names(load_error(root), root / "bob" / "transactions.csv", 4)


# ----------------------------------------------------------------- files and directories


def test_header_only_files_are_valid(tmp_path: Path) -> None:
    root = make(tmp_path, accounts=acc(), transactions=tx())
    bob = load_dataset(root).banks[1]
    assert bob.name == "bob" and bob.account_ids == () and bob.warnings == ()
    root = make(tmp_path / "no-period", transactions=tx(header=TX_HEADER.removesuffix(",period")))
    assert load_dataset(root).banks[1].account_ids == ("b1", "b2")
    root = make(tmp_path / "blank", transactions=tx("", ""))
    assert load_dataset(root).banks[1].account_ids == ("b1", "b2")


@pytest.mark.parametrize("which", ["accounts", "transactions"])
def test_header_only_file_without_final_newline_is_valid(tmp_path: Path, which: str) -> None:
    if which == "accounts":
        root = make(tmp_path, accounts=ACCOUNTS_HEADER, transactions=tx())
    else:
        root = make(tmp_path, transactions=TX_HEADER)
    load_dataset(root)


def test_last_row_without_final_newline_is_read(tmp_path: Path) -> None:
    root = make(
        tmp_path, accounts=f"{ACCOUNTS_HEADER}\nb1,0.5", transactions=f"{TX_HEADER}\n{OK_ROW}"
    )
    assert load_dataset(root).banks[1].account_ids == ("b1", "b2")


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    root = make(
        tmp_path, accounts="\ufeff" + BOB_ACCOUNTS, transactions="\ufeff" + BOB_TRANSACTIONS
    )
    assert load_dataset(root).banks[1].account_ids == ("b1", "b2")


@pytest.mark.parametrize("name", ["accounts.csv", "transactions.csv"])
def test_empty_file(tmp_path: Path, name: str) -> None:
    root = make(tmp_path, **{name.removesuffix(".csv"): ""})
    assert_names(load_error(root), root / "bob" / name, None, "empty")


@pytest.mark.parametrize("name", ["accounts.csv", "transactions.csv"])
def test_missing_file(tmp_path: Path, name: str) -> None:
    root = make(tmp_path)
    (root / "bob" / name).unlink()
    assert_names(load_error(root), root / "bob" / name, None, "not found")


def test_data_directory_missing(tmp_path: Path) -> None:
    assert_names(load_error(tmp_path / "nope"), tmp_path / "nope", None, "not found")
    (tmp_path / "file").write_text("x")
    assert_names(load_error(tmp_path / "file"), tmp_path / "file", None, "not found")


def test_data_directory_without_banks(tmp_path: Path) -> None:
    assert_names(load_error(tmp_path), tmp_path, None, "no bank sub-directories")
    (tmp_path / "notes.txt").write_text("not a bank")
    (tmp_path / ".hidden").mkdir()
    assert_names(load_error(tmp_path), tmp_path, None, "no bank sub-directories")


def test_bank_directory_name_decides_the_bank(tmp_path: Path) -> None:
    # a row naming a bank of another data set is refused even if the id exists somewhere
    root = make(tmp_path, transactions=tx("b1,bob,a1,alice,1,0", "b1,bob,c1,charlie,1,0"))
    message = load_error(root)
    assert_names(message, root / "bob" / "transactions.csv", 3, "'charlie'", "alice, bob")


# ----------------------------------------------------------------------------- warnings


def test_implicit_accounts_and_self_loops_are_warnings_with_counts(tmp_path: Path) -> None:
    text = tx(
        "b1,bob,n1,bob,1,0",  # n1 implicit
        "n2,bob,b1,bob,1,0",  # n2 implicit
        "b1,bob,b1,bob,4,0",  # self-loop
        "n1,bob,n2,bob,1,1",
        "b2,bob,b2,bob,1,2",  # self-loop
        "b2,bob,b2,bob,1,0",  # self-loop
        "a1,alice,n3,bob,1,0",  # n3 implicit
        "b2,bob,zz,alice,1,0",  # alice's zz is not bob's business
    )
    root = make(tmp_path, transactions=text)
    bob = load_bank(root / "bob", "bob", ["alice", "bob"])
    # declared accounts first, then the implicit ones (their order: see test_plaintext.py)
    assert bob.account_ids[:2] == ("b1", "b2")
    assert sorted(bob.account_ids[2:]) == ["n1", "n2", "n3"]
    assert bob.initial.tolist()[2:] == [0.0, 0.0, 0.0]
    assert len(bob.warnings) == 2
    implicit, loops = bob.warnings
    path = str(root / "bob" / "transactions.csv")
    assert implicit.startswith(path) and "3 account(s) of bank 'bob'" in implicit
    assert loops.startswith(path) and "3 self-loop" in loops
    # a valid data set with warnings loads; alice has none
    dataset = load_dataset(root)
    assert dataset.banks[0].warnings == ()
    assert dataset.banks[1].warnings == bob.warnings


# ---------------------------------------------------------------------------------- CLI


def riskprop_command() -> list[str]:
    script = Path(sys.executable).with_name("riskprop")
    return [str(script)] if script.exists() else [sys.executable, "-m", "riskprop"]


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*riskprop_command(), *map(str, args)], capture_output=True, text=True, check=False
    )


CLI_CASES = {
    "negative amount after blank line": (
        "transactions",
        tx(OK_ROW, "", "b1,bob,b2,bob,-1,0"),
        "bob/transactions.csv:4: ",
    ),
    "duplicate account": ("accounts", acc("b1,0.5", "b2,0.1", "b1,0.3"), "bob/accounts.csv:4: "),
    "unknown bank": ("transactions", tx(OK_ROW, "b1,bob,c1,charlie,1,0"), "transactions.csv:3: "),
    "bad field count": ("accounts", acc("b1,0.5,1"), "bob/accounts.csv:2: "),
    "bad header": ("transactions", "id_source,amount\n", "bob/transactions.csv:1: "),
}


@pytest.mark.parametrize(("which", "text", "where"), CLI_CASES.values(), ids=list(CLI_CASES))
def test_cli_error_is_one_line_and_writes_nothing(
    tmp_path: Path, which: str, text: str, where: str
) -> None:
    root = make(tmp_path / "data", **{which: text})
    out = tmp_path / "out" / "scores.csv"
    out.parent.mkdir()
    done = run_cli("simulate", root, "--iterations", "2", "--out", out)
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("riskprop: error: ")
    assert where in lines[0]
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    assert list(out.parent.iterdir()) == []  # no output, no temporary file
    # an existing output is left as it was
    out.write_text("bank,id,risk_score\nold,run,0.5\n")
    before = out.stat()
    done = run_cli("simulate", root, "-T", "2", "-o", out)
    assert done.returncode == 1 and len(done.stderr.splitlines()) == 1
    assert out.read_text() == "bank,id,risk_score\nold,run,0.5\n"
    assert out.stat().st_mtime_ns == before.st_mtime_ns
    assert list(out.parent.iterdir()) == [out]


def test_cli_missing_data_directory(tmp_path: Path) -> None:
    out = tmp_path / "scores.csv"
    done = run_cli("simulate", tmp_path / "nowhere", "-T", "1", "--out", out)
    assert done.returncode == 1
    assert re.fullmatch(r"riskprop: error: .*nowhere.*not found\n", done.stderr), done.stderr
    assert not out.exists()


def test_cli_warnings_do_not_fail(tmp_path: Path) -> None:
    root = make(
        tmp_path / "data", transactions=tx(OK_ROW, "b1,bob,n1,bob,1,0", "b2,bob,b2,bob,1,0")
    )
    out = tmp_path / "scores.csv"
    done = run_cli("simulate", root, "-T", "1", "--out", out)
    assert done.returncode == 0, done.stderr
    assert "1 account(s) of bank 'bob'" in done.stderr
    assert "1 self-loop" in done.stderr
    assert "error" not in done.stderr
    assert out.read_text().splitlines()[-1].startswith("bob,n1,")
