"""Regressions of the coded reader and writer (raw columns as ``Coded``/``Texts``, rules in
threads, explanations joined in Arrow): the first error is the first bad field in file order
whichever thread found it, merged spellings keep the value as written in messages, examples are
joined per account whatever the writer's ``max_examples``, and ``members`` filters
transactions.csv only."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest

from riskprop.errors import InputError
from riskprop.scoring import raw as raw_module
from riskprop.scoring import rules as rules_module
from riskprop.scoring.output import DAY, assign_periods, write_scored
from riskprop.scoring.raw import AMLWORLD_HEADER, RISKPROP_HEADER, read_raw
from riskprop.scoring.rules import Examples, Rule, RuleSet, Scored, score

HEADER = ",".join(RISKPROP_HEADER)
AML_HEADER = ",".join(AMLWORLD_HEADER)
GOOD = "t1,2026-01-01T00:00:00Z,a1,A,b1,B,5,USD,cash,,,,completed"


def write(tmp_path: Path, header: str, rows: list[str]) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "raw.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def first_error(path: Path) -> str:
    with pytest.raises(InputError) as caught:
        read_raw(path)
    return str(caught.value)


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


# --- the first bad field in file order -----------------------------------------------------


def test_one_row_reports_its_first_bad_column(tmp_path: Path) -> None:
    """Timestamp (column 2) before amount (7) and status (13), though other threads check them."""
    bad = "t2,2026-02-30T00:00:00Z,a1,A,b1,B,-5,USD,cash,,,,done"
    message = first_error(write(tmp_path, HEADER, [GOOD, bad]))
    assert "raw.csv:3: timestamp '2026-02-30T00:00:00Z' is not a time " in message


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        # a bad currency on an earlier row than an empty id
        (
            ["t1,2026-01-01T00:00:00Z,a1,A,b1,B,5,US,cash,,,,completed",
             ",2026-01-01T00:00:00Z,a1,A,b1,B,5,USD,cash,,,,completed"],
            "raw.csv:2: currency 'US' is not an ISO 4217 code",
        ),
        # an empty target (accounts' thread) on an earlier row than a bad currency (money's)
        (
            ["t1,2026-01-01T00:00:00Z,a1,A,,B,5,USD,cash,,,,completed",
             "t2,2026-01-01T00:00:00Z,a1,A,b1,B,5,U$D,cash,,,,completed"],
            "raw.csv:2: target '' is empty",
        ),
        # one row: the source bank (column 4) before the target (column 5) of the other side
        (
            [GOOD, 't2,2026-01-01T00:00:00Z,a1,"A,x","b""q",B,5,USD,cash,,,,completed'],
            "raw.csv:3: source_bank 'A,x' holds a comma, quote or line break",
        ),
        # the target's bad value on an earlier row than the source's same bad value
        (
            [GOOD, "t2,2026-01-01T00:00:00Z,a1,A,,B,5,USD,cash,,,,completed",
             "t3,2026-01-01T00:00:00Z,,A,b1,B,5,USD,cash,,,,completed"],
            "raw.csv:3: target '' is empty",
        ),
        # a repeated id after a blank line: its physical line
        (
            [GOOD, "", "t1,2026-01-01T00:00:00Z,a1,A,b1,B,5,USD,cash,,,,completed"],
            "raw.csv:4: tx_id 't1' is not unique (an earlier row has it)",
        ),
        # a currency without a rate before a bad ISO code later
        (
            [GOOD, "t2,2026-01-01T00:00:00Z,a1,A,b1,B,5,xau,cash,,,,completed",
             "t3,2026-01-01T00:00:00Z,a1,A,b1,B,5,X,cash,,,,completed"],
            "raw.csv:3: currency 'XAU' has no exchange rate",
        ),
    ],
)  # fmt: skip
def test_first_bad_field_in_file_order(tmp_path: Path, rows: list[str], expected: str) -> None:
    assert first_error(write(tmp_path, HEADER, rows)).endswith(expected)


def test_amlworld_row_reports_the_bank_before_the_payees_account(tmp_path: Path) -> None:
    """From Bank is column 2, the payee's Account column 5: on one row the bank is reported
    (the reader before the coded one checked the accounts first and named the Account)."""
    rows = [
        "2022/09/01 00:20,010,8000EBD30,10,8000EBD30,1,US Dollar,1,US Dollar,Cash,0",
        "2022/09/01 00:20,,8000EBD30,10,,1,US Dollar,1,US Dollar,Cash,0",
    ]
    assert first_error(write(tmp_path, AML_HEADER, rows)).endswith(
        "raw.csv:3: From Bank '' is empty"
    )


def test_errors_do_not_depend_on_the_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad country on a later row (one thread) and an empty bank on an earlier one (another)."""

    def row(i: int, target_bank: str = "B", country: str = "") -> str:
        currency = "eur" if i % 7 == 0 else "EUR"
        ids = f"t{i},2026-01-01T00:00:00Z,a{i},A,b{i},{target_bank}"
        return f"{ids},{i},{currency},cash,,{country},,completed"

    rows = [row(i) for i in range(400)]
    rows[300], rows[200] = row(300, country="XX1"), row(200, target_bank="")
    path = write(tmp_path, HEADER, rows)
    many = first_error(path)
    monkeypatch.setattr(raw_module, "threads", lambda: 1)
    assert first_error(path) == many and many.endswith("raw.csv:202: target_bank '' is empty")


# --- merged spellings --------------------------------------------------------------------------


def test_merged_spellings_share_a_code_and_errors_quote_the_value_as_written(
    tmp_path: Path,
) -> None:
    rows = [
        "t1,2026-01-01T00:00:00Z,a1,A,b1,B,5,Usd,Cash,Online,us,,Completed",
        "t2,2026-01-01T00:00:00Z,b1,B,a1,A,5,usd,CASH,ONLINE,,US,completed",
        "t3,2026-01-01T00:00:00Z,b1,B,a1,A,5,USD,cash,online,Us,uS,COMPLETED",
    ]
    raw = read_raw(write(tmp_path, HEADER, rows))
    for column, value in [("currency", "USD"), ("kind", "cash"), ("channel", "online"),
                          ("status", "completed")]:  # fmt: skip
        coded = getattr(raw, column)
        assert coded.values.tolist() == [value] and coded.codes.tolist() == [0, 0, 0]
    assert raw.source_country.values is raw.target_country.values
    assert raw.source_country.values.tolist() == ["", "US"]
    assert raw.source_country.equals("US").tolist() == [True, False, True]
    assert raw.target_country.equals("").tolist() == [True, False, False]
    bad = [*rows, "t4,2026-01-01T00:00:00Z,b1,B,a1,A,5,Usd,cash,,Usa,,completed"]
    assert first_error(write(tmp_path, HEADER, bad)).endswith(
        "raw.csv:5: source_country 'Usa' is not an ISO 3166 alpha-2 code (or empty)"
    )


# --- explanations' examples and members --------------------------------------------------------

ROWS = [
    "t1,2026-01-01T01:00:00Z,a1,A,b1,B,12000,USD,cash,,,,completed",
    "t2,2026-01-01T02:00:00Z,a1,A,b2,B,15000,USD,cash,,,,completed",
    "t3,2026-01-01T03:00:00Z,x1,X,a1,A,11000,USD,cash,,,,completed",
    "t4,2026-01-01T04:00:00Z,a2,A,a1,A,50,USD,wire,,,,completed",
    "t5,2026-01-01T05:00:00Z,a2,A,b1,B,20000,USD,cash,,,,failed",
]
RULES = (
    Rule("cash", "threshold", 0.5, {"amount": 10000, "kinds": ["cash"]}),
    Rule("failed", "failed", 0.2, {}),
)


def scored_files(tmp_path: Path, rules_max: int, write_max: int) -> dict[str, list[list[str]]]:
    raw = read_raw(write(tmp_path, HEADER, ROWS))
    scored = score(raw, "A", RuleSet(Path("rules.yaml"), RULES, max_examples=rules_max))
    out = tmp_path / "out"
    write_scored(
        out, raw, "A", scored, assign_periods(raw.time, length=DAY), max_examples=write_max
    )
    return {name: read_csv(out / "A" / name) for name in ("explanations.csv", "alerts.csv")}


def explained(files: dict[str, list[list[str]]]) -> dict[tuple[str, str], str]:
    return {(row[0], row[1]): row[3] for row in files["explanations.csv"][1:]}


@pytest.mark.parametrize(
    ("rules_max", "write_max", "a1_cash", "a2_cash", "a2_failed"),
    [
        (3, 3, "t1;t2;t3", "t5", "t5"),
        (3, 2, "t1;t2", "t5", "t5"),  # the writer's limit below the rules'
        (1, 3, "t1", "t5", "t5"),  # the rules' limit below the writer's
        (0, 3, "", "", ""),  # fired, but the rules kept no examples at all
        (3, 0, "", "", ""),
    ],
)
def test_examples_joined_per_account(
    tmp_path: Path, rules_max: int, write_max: int, a1_cash: str, a2_cash: str, a2_failed: str
) -> None:
    got = explained(scored_files(tmp_path, rules_max, write_max))
    assert got == {("a1", "cash"): a1_cash, ("a2", "cash"): a2_cash, ("a2", "failed"): a2_failed}


def test_fired_accounts_without_examples_get_an_empty_field(tmp_path: Path) -> None:
    """An ``Examples`` holding some fired accounts only (a rule's examples may leave some out)."""
    raw = read_raw(write(tmp_path, HEADER, ROWS))
    scored = score(raw, "A", RuleSet(Path("rules.yaml"), RULES))
    cash = scored.examples["cash"]
    assert isinstance(cash, Examples)
    only_a2 = cash.account == 1
    partial = Examples(cash.account[only_a2], cash.row[only_a2], cash.tx_id, cash.n_accounts)
    kept = Scored(
        scored.accounts, scored.score, scored.level, scored.action, scored.contributions,
        {**scored.examples, "cash": partial}, scored.alerts,
    )  # fmt: skip
    out = tmp_path / "out"
    write_scored(out, raw, "A", kept, np.zeros(raw.n, dtype=np.int64))
    got = {(row[0], row[1]): row[3] for row in read_csv(out / "A/explanations.csv")[1:]}
    assert got == {("a1", "cash"): "", ("a2", "cash"): "t5", ("a2", "failed"): "t5"}


def test_alerts_by_row_then_rule_name_whatever_the_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    many = scored_files(tmp_path / "many", 3, 3)
    monkeypatch.setattr(rules_module, "threads", lambda: 1)
    assert scored_files(tmp_path / "one", 3, 3) == many
    assert [(row[0], row[5]) for row in many["alerts.csv"][1:]] == [
        ("t1", "cash"), ("t2", "cash"), ("t3", "cash"), ("t5", "cash"), ("t5", "failed")
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("members", "sources"),
    [(None, ["A", "A", "X", "A"]), (["B"], ["A", "A", "A"]), ([], ["A"]), (["X", "B"], None)],
)
def test_members_filter_transactions_only(
    tmp_path: Path, members: list[str] | None, sources: list[str] | None
) -> None:
    raw = read_raw(write(tmp_path, HEADER, ROWS))
    scored = score(raw, "A", RuleSet(Path("rules.yaml"), RULES))
    out = tmp_path / "out"
    write_scored(out, raw, "A", scored, np.zeros(raw.n, dtype=np.int64), members=members)
    rows = read_csv(out / "A/transactions.csv")[1:]
    assert [row[1] for row in rows] == (sources or ["A", "A", "X", "A"])
    assert len(read_csv(out / "A/alerts.csv")) == 6  # the rules saw every row


# --- platforms ---------------------------------------------------------------------------------


def test_scores_where_the_system_has_no_affinity_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """macOS and Windows have no ``os.sched_getaffinity``: the reader's and the rules' threads
    fall back to the machine's cores instead of failing with AttributeError."""
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    raw = read_raw(write(tmp_path, HEADER, ROWS))
    scored = score(raw, "A", RuleSet(Path("rules.yaml"), RULES))
    assert scored.accounts.tolist() == ["a1", "a2"]
