"""Writing a scored bank: the propagation input loads and propagates, explanations and alerts
name the right transactions, periods, and nothing is written on bad input."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from riskprop.core.data import load_bank
from riskprop.errors import ConfigError, InputError
from riskprop.lab.simulate import simulate_plaintext
from riskprop.scoring import output
from riskprop.scoring.output import DAY, assign_periods, write_scored
from riskprop.scoring.raw import Coded, RawTransactions, Texts
from riskprop.scoring.rules import Alerts, Scored

Row = tuple[
    str, str, str, str, str, str, float, str
]  # id, time, src, sbank, dst, dbank, amt, status


def _epoch(stamp: str) -> int:
    return int(dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())


def make_raw(rows: list[Row], path: Path = Path("raw.csv")) -> RawTransactions:
    n = len(rows)

    def column(i: int) -> Coded:
        return Coded.of([str(row[i]) for row in rows])

    sources, targets = Coded.shared([[row[2] for row in rows], [row[4] for row in rows]])
    source_banks, target_banks = Coded.shared([[row[3] for row in rows], [row[5] for row in rows]])
    amount = np.array([row[6] for row in rows], dtype=np.float64)
    return RawTransactions(
        path=path,
        line=np.arange(2, n + 2, dtype=np.int64),
        tx_id=Texts.of([row[0] for row in rows]),
        time=np.array([_epoch(row[1]) for row in rows], dtype=np.int64),
        utc_offset=np.zeros(n, dtype=np.int32),
        source=sources,
        source_bank=source_banks,
        target=targets,
        target_bank=target_banks,
        amount=amount,
        currency=Coded.of(["USD"] * n),
        original_amount=amount.copy(),
        kind=Coded.of(["wire"] * n),
        channel=Coded.of([""] * n),
        source_country=Coded.of([""] * n),
        target_country=Coded.of([""] * n),
        status=column(7),
        label=None,
    )


def make_scored(
    accounts: list[str],
    contributions: dict[str, list[float]],
    examples: dict[str, list[list[str]]],
    alerts: list[tuple[int, str, str]] = (),  # type: ignore[assignment]
) -> Scored:
    """Noisy-OR of the contributions, as the rules module defines the score."""
    c = {name: np.array(values, dtype=np.float64) for name, values in contributions.items()}
    score = 1.0 - np.prod([1.0 - v for v in c.values()], axis=0) if c else np.zeros(len(accounts))
    level = ["HIGH" if s >= 0.6 else "LOW" for s in score]
    return Scored(
        accounts=np.array(accounts, dtype=object),
        score=np.asarray(score, dtype=np.float64),
        level=level,
        action=["review" if name == "HIGH" else "none" for name in level],
        contributions=c,
        examples=examples,
        alerts=alerts_of(list(alerts)),
    )


def alerts_of(alerts: list[tuple[int, str, str]]) -> Alerts:
    """The alerts of (row, rule, level) triples, in their order."""
    rules = tuple(dict.fromkeys(rule for _, rule, _ in alerts))
    levels = tuple(dict.fromkeys(level for _, _, level in alerts))
    return Alerts(
        np.array([row for row, _, _ in alerts], dtype=np.int64),
        np.array([rules.index(rule) for _, rule, _ in alerts], dtype=np.int64),
        np.array([levels.index(level) for _, _, level in alerts], dtype=np.int64),
        rules,
        levels,
    )


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        return list(csv.reader(handle))


# Bank A: a1 receives 12,000 from b1 at bank B and passes 11,900 on to b2 within hours.
A_ROWS: list[Row] = [
    ("t1", "2024-03-01T09:00:00Z", "b1", "B", "a1", "A", 12_000.0, "completed"),
    ("t2", "2024-03-01T11:00:00Z", "a1", "A", "b2", "B", 11_900.0, "completed"),
    ("t3", "2024-03-02T10:00:00Z", "a2", "A", "a1", "A", 50.5, "failed"),
    ("t4", "2024-03-03T08:30:00Z", "a2", "A", "b1", "B", 0.1 + 0.2, "completed"),
]
# Bank B's own file: the same cross-bank transactions from its side.
B_ROWS: list[Row] = [
    ("u1", "2024-03-01T09:00:00Z", "b1", "B", "a1", "A", 12_000.0, "completed"),
    ("u2", "2024-03-01T11:00:00Z", "a1", "A", "b2", "B", 11_900.0, "completed"),
    ("u3", "2024-03-03T08:30:00Z", "a2", "A", "b1", "B", 0.30, "completed"),
]


def scored_a() -> Scored:
    return make_scored(
        ["a1", "a2"],
        {"pass_through": [0.7, 0.0], "threshold": [0.5, 0.0], "failed": [0.0, 0.2]},
        {"pass_through": [["t1", "t2"], []], "threshold": [["t1"], []], "failed": [[], ["t3"]]},
        [(1, "threshold", "HIGH"), (0, "threshold", "HIGH")],
    )


def write_a(out: Path) -> dict[str, int]:
    raw = make_raw(A_ROWS)
    period = assign_periods(raw.time, length=DAY)
    return write_scored(out, raw, "A", scored_a(), period)


def test_accounts_and_completed_transactions_load(tmp_path: Path) -> None:
    counts = write_a(tmp_path)
    assert counts == {
        "accounts.csv": 2,
        "transactions.csv": 3,
        "explanations.csv": 3,
        "alerts.csv": 2,
        "levels.csv": 2,
    }
    # highest score first; make_scored's bands: HIGH from 0.6
    assert read_csv(tmp_path / "A" / "levels.csv") == [
        ["account", "risk_score", "level", "action"],
        ["a1", "0.85", "HIGH", "review"],
        ["a2", "0.2", "LOW", "none"],
    ]
    assert read_csv(tmp_path / "A" / "accounts.csv") == [
        ["id", "risk_score"],
        ["a1", "0.85"],  # 1 - (1 - 0.7)(1 - 0.5)
        ["a2", "0.2"],
    ]
    # t3 failed: no money moved, so it is not propagated; amounts to cents, days as periods.
    assert read_csv(tmp_path / "A" / "transactions.csv")[1:] == [
        ["b1", "B", "a1", "A", "12000.00", "0"],
        ["a1", "A", "b2", "B", "11900.00", "0"],
        ["a2", "A", "b1", "B", "0.30", "2"],
    ]
    bank = load_bank(tmp_path / "A", "A", ["A", "B"])
    assert bank.account_ids == ("a1", "a2")
    assert bank.initial.tolist() == [0.85, 0.2]
    assert bank.period.tolist() == [0, 0, 2]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_two_banks_scored_separately_propagate(tmp_path: Path) -> None:
    write_a(tmp_path)
    raw_b = make_raw(B_ROWS)
    scored_b = make_scored(["b1", "b2"], {"threshold": [0.0, 0.0]}, {"threshold": [[], []]})
    write_scored(tmp_path, raw_b, "B", scored_b, assign_periods(raw_b.time, length=DAY))
    result = simulate_plaintext(tmp_path, iterations=3)
    assert result.banks == ("A", "B")
    scores = result.by_account()
    # b2 received from risky a1 in the same period, on both banks' books: it gained risk.
    assert scores[("B", "b2")] > 0.0
    assert scores[("A", "a1")] > 0.0


def test_explanations_sorted_with_triggering_transactions(tmp_path: Path) -> None:
    write_a(tmp_path)
    assert read_csv(tmp_path / "A" / "explanations.csv") == [
        ["account", "rule", "contribution", "transactions"],
        ["a1", "pass_through", "0.7", "t1;t2"],
        ["a1", "threshold", "0.5", "t1"],
        ["a2", "failed", "0.2", "t3"],
    ]


def test_explanations_keep_at_most_max_examples(tmp_path: Path) -> None:
    raw = make_raw(A_ROWS)
    scored = make_scored(
        ["a1", "a2"], {"fan_in": [0.3, 0.6]}, {"fan_in": [["t1", "t2"], ["t3", "t4"]]}
    )
    write_scored(tmp_path, raw, "A", scored, np.zeros(raw.n, dtype=np.int64), max_examples=1)
    assert read_csv(tmp_path / "A" / "explanations.csv")[1:] == [
        ["a2", "fan_in", "0.6", "t3"],  # the higher score first
        ["a1", "fan_in", "0.3", "t1"],
    ]


def test_alerts_list_flagged_transactions(tmp_path: Path) -> None:
    write_a(tmp_path)
    assert read_csv(tmp_path / "A" / "alerts.csv") == [
        ["tx_id", "timestamp", "source", "target", "amount", "rule", "level"],
        ["t1", "2024-03-01T09:00:00Z", "b1", "a1", "12000.00", "threshold", "HIGH"],
        ["t2", "2024-03-01T11:00:00Z", "a1", "b2", "11900.00", "threshold", "HIGH"],
    ]


def test_ids_with_commas_are_quoted_and_load(tmp_path: Path) -> None:
    rows: list[Row] = [("t,1", "2024-03-01T09:00:00Z", "a,1", "A", 'a"2', "A", 5.0, "completed")]
    raw = make_raw(rows)
    scored = make_scored(["a,1", 'a"2'], {"type": [0.4, 0.0]}, {"type": [["t,1"], []]})
    write_scored(tmp_path, raw, "A", scored, np.zeros(1, dtype=np.int64))
    bank = load_bank(tmp_path / "A", "A", ["A"])
    assert bank.account_ids == ("a,1", 'a"2')
    assert read_csv(tmp_path / "A" / "explanations.csv")[1] == ["a,1", "type", "0.4", "t,1"]


def test_bad_amount_writes_nothing(tmp_path: Path) -> None:
    rows = [*A_ROWS[:3], ("t4", "2024-03-03T08:30:00Z", "a2", "A", "b1", "B", -1.0, "completed")]
    raw = make_raw(rows, tmp_path / "raw.csv")
    with pytest.raises(InputError, match=r"raw\.csv:5: amount -1\.0"):
        write_scored(tmp_path / "data", raw, "A", scored_a(), np.zeros(4, dtype=np.int64))
    assert not (tmp_path / "data" / "A").exists()


def test_failure_leaves_earlier_output_untouched(tmp_path: Path) -> None:
    write_a(tmp_path)
    before = {p.name: p.read_bytes() for p in (tmp_path / "A").iterdir()}
    broken = make_scored(
        ["a1", "a2"],
        {"threshold": [0.5, 0.0]},
        {"threshold": [["t1"], []]},
        [(99, "threshold", "HIGH")],  # no such raw row: fails mid-way
    )
    with pytest.raises(IndexError):
        write_scored(tmp_path, make_raw(A_ROWS), "A", broken, np.zeros(4, dtype=np.int64))
    assert {p.name: p.read_bytes() for p in (tmp_path / "A").iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["A"]


def test_bank_name_must_be_a_directory_name(tmp_path: Path) -> None:
    raw = make_raw(A_ROWS)
    with pytest.raises(ConfigError, match="bank name"):
        write_scored(tmp_path, raw, "../A", scored_a(), np.zeros(4, dtype=np.int64))


def test_periods_by_length_from_utc_midnight() -> None:
    t = np.array(
        [
            _epoch(s)
            for s in ("2024-03-01T12:00:00Z", "2024-03-01T23:59:59Z", "2024-03-02T00:00:00Z")
        ]
    )
    assert assign_periods(t, length=DAY).tolist() == [0, 0, 1]
    week = np.append(t, _epoch("2024-03-08T00:00:00Z"))
    assert assign_periods(week, length=7 * DAY).tolist() == [0, 0, 0, 1]
    origin = _epoch("2024-02-29T00:00:00Z")
    assert assign_periods(t, length=DAY, origin=origin).tolist() == [1, 1, 2]
    with pytest.raises(ConfigError, match="after the first transaction"):
        assign_periods(t, length=DAY, origin=_epoch("2024-03-02T00:00:00Z"))


def test_periods_by_count_are_equal_buckets() -> None:
    t = np.arange(0, 100, dtype=np.int64) + 1_700_000_000
    period = assign_periods(t, count=4)
    assert np.bincount(period).tolist() == [25, 25, 25, 25]
    assert assign_periods(np.array([5, 5], dtype=np.int64), count=3).tolist() == [0, 0]
    with pytest.raises(ConfigError):
        assign_periods(t, length=DAY, count=2)
    with pytest.raises(ConfigError):
        assign_periods(t, count=0)


def test_chunked_columns_are_written(tmp_path: Path) -> None:
    # pyarrow turns a large numpy string array (the alerts' timestamps) into chunks.
    chunked = pa.chunked_array([pa.array(["a", "b"]), pa.array(["c"])])
    output._write_csv(tmp_path / "x.csv", ("id", "n"), [chunked, pa.array([1, 2, 3])])
    assert read_csv(tmp_path / "x.csv") == [["id", "n"], ["a", "1"], ["b", "2"], ["c", "3"]]
