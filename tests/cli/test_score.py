"""``riskprop score`` end to end: raw files in both layouts to a data set that propagates,
with explanations, alerts, periods and a summary; bad input is one line and writes nothing."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from riskprop.cli import main
from riskprop.core.data import load_bank
from riskprop.errors import InputError
from riskprop.lab.simulate import simulate_plaintext

RISKPROP_HEADER = (
    "tx_id,timestamp,source,source_bank,target,target_bank,amount,currency,type,channel,"
    "source_country,target_country,status"
)
AMLWORLD_HEADER = (
    "Timestamp,From Bank,Account,To Bank,Account,Amount Received,Receiving Currency,"
    "Amount Paid,Payment Currency,Payment Format,Is Laundering"
)
# Bank A's book: a1 takes 15,000 in cash (reportable) and wires most of it to b2 at bank B.
A_RAW = [
    "c1,2024-03-01T09:00:00Z,a9,A,a1,A,15000.00,USD,cash,branch,NL,NL,completed",
    "c2,2024-03-01T13:00:00+02:00,a1,A,b2,B,14500.00,USD,wire,online,NL,NL,completed",
    "c3,2024-03-02T10:00:00Z,a2,A,b1,B,120.00,USD,card,online,NL,NL,failed",
    "c4,2024-03-09T10:00:00Z,b1,B,a2,A,80.00,USD,wire,online,NL,NL,completed",
]
B_RAW = [
    "d1,2024-03-01T11:00:00Z,a1,A,b2,B,14500.00,USD,wire,online,NL,NL,completed",
    "d2,2024-03-09T10:00:00Z,b1,B,a2,A,80.00,USD,wire,online,NL,NL,completed",
]


def write_raw(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def score(*args: str | Path) -> None:
    main(["score", *(str(arg) for arg in args)])


def test_two_banks_scored_separately_then_propagated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    a_raw = write_raw(tmp_path / "a.csv", RISKPROP_HEADER, A_RAW)
    b_raw = write_raw(tmp_path / "b.csv", RISKPROP_HEADER, B_RAW)
    score(a_raw, "--bank", "A", "--out", data, "--period-start", "2024-03-01")
    summary = capsys.readouterr().out
    assert "raw transactions     4" in summary and "own accounts         3" in summary
    assert "level CRITICAL" in summary and "alerts cash_threshold" in summary
    score(b_raw, "--bank", "B", "--out", data, "--period-start", "2024-03-01")

    accounts = {row["id"]: float(row["risk_score"]) for row in read_csv(data / "A/accounts.csv")}
    assert sorted(accounts) == ["a1", "a2", "a9"]
    assert accounts["a1"] > 0.0  # the reportable cash deposit
    transactions = read_csv(data / "A/transactions.csv")
    assert [row["amount"] for row in transactions] == ["15000.00", "14500.00", "80.00"]  # no c3
    assert [row["period"] for row in transactions] == ["0", "0", "8"]

    alerts = read_csv(data / "A/alerts.csv")
    assert "c1" in {row["tx_id"] for row in alerts}
    c1 = next(row for row in alerts if row["tx_id"] == "c1")
    assert (c1["timestamp"], c1["source"], c1["target"]) == ("2024-03-01T09:00:00Z", "a9", "a1")
    explained = [row for row in read_csv(data / "A/explanations.csv") if row["account"] == "a1"]
    assert explained and any("c1" in row["transactions"].split(";") for row in explained)

    bank = load_bank(data / "A", "A", ["A", "B"])
    assert set(bank.account_ids) == {"a1", "a2", "a9"}
    scores = simulate_plaintext(data, iterations=3).by_account()
    assert scores[("B", "b2")] > 0.0  # a1's risk reached bank B's account


def test_amlworld_layout(tmp_path: Path) -> None:
    raw = write_raw(
        tmp_path / "aml.csv",
        AMLWORLD_HEADER,
        [
            "2022/09/01 00:20,010,8000EBD30,010,8000EBD30,3697.34,US Dollar,3697.34,US Dollar,"
            "Reinvestment,0",
            "2022/09/01 00:22,010,8000F4580,020,8000F5340,15000.00,US Dollar,15000.00,US Dollar,"
            "Cash,1",
            "2022/09/08 09:00,020,8000F5340,010,8000F4580,50.00,US Dollar,50.00,US Dollar,ACH,0",
        ],
    )
    data = tmp_path / "data"
    score(raw, "--bank", "010", "--out", data, "--layout", "amlworld", "--period-length", "7d")
    bank = load_bank(data / "010", "010", ["010", "020"])
    assert set(bank.account_ids) == {"010:8000EBD30", "010:8000F4580"}
    assert bank.period.tolist() == [0, 1]  # the self-transfer is dropped by the loader
    assert bank.warnings  # ... with a warning
    rows = read_csv(data / "010/transactions.csv")
    assert [row["period"] for row in rows] == ["0", "0", "1"]
    alerts = read_csv(data / "010/alerts.csv")
    assert "3" in {row["tx_id"] for row in alerts}  # AMLworld ids are physical lines


def test_equal_periods(tmp_path: Path) -> None:
    raw = write_raw(tmp_path / "a.csv", RISKPROP_HEADER, A_RAW)
    score(raw, "--bank", "A", "--out", tmp_path / "data", "--periods", "2")
    rows = read_csv(tmp_path / "data/A/transactions.csv")
    assert [row["period"] for row in rows] == ["0", "0", "1"]


@pytest.mark.parametrize(
    ("rules", "rows", "needle"),
    [
        ("rules: [\n", A_RAW, "rules.yaml"),
        (None, [*A_RAW[:2], A_RAW[2].replace("120.00", "12O.00")], "a.csv:4"),
        (None, [*A_RAW[:2], A_RAW[2].replace("2024-03-02T", "2024-13-02T")], "a.csv:4"),
    ],
    ids=["bad-rules", "bad-amount", "bad-timestamp"],
)
def test_bad_input_is_one_line_and_writes_nothing(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    rules: str | None,
    rows: list[str],
    needle: str,
) -> None:
    raw = write_raw(tmp_path / "a.csv", RISKPROP_HEADER, rows)
    args: list[str | Path] = [raw, "--bank", "A", "--out", tmp_path / "data"]
    if rules is not None:
        (tmp_path / "rules.yaml").write_text(rules, encoding="utf-8")
        args += ["--rules", tmp_path / "rules.yaml"]
    with pytest.raises(SystemExit) as exit_info:
        score(*args)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("riskprop: error:") and needle in err[0], err
    assert not (tmp_path / "data").exists()


def test_unknown_bank_and_conflicting_periods(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = write_raw(tmp_path / "a.csv", RISKPROP_HEADER, A_RAW)
    for extra in (["--bank", "Z"], ["--bank", "A", "--periods", "2", "--period-length", "7d"]):
        with pytest.raises(SystemExit):
            score(raw, "--out", tmp_path / "data", *extra)
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "data").exists()


def test_rates_file_converts_amounts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [A_RAW[0].replace("15000.00,USD", "300.00,EUR")]
    raw = write_raw(tmp_path / "a.csv", RISKPROP_HEADER, rows)
    rates = tmp_path / "rates.csv"
    rates.write_text("currency,rate\nUSD,1\nEUR,0.5\n", encoding="utf-8")
    score(raw, "--bank", "A", "--out", tmp_path / "data", "--rates", rates)
    assert [row["amount"] for row in read_csv(tmp_path / "data/A/transactions.csv")] == ["600.00"]

    rates.write_text("currency,rate\nUSD,1\nEUR,half\n", encoding="utf-8")
    with pytest.raises(SystemExit):
        score(raw, "--bank", "A", "--out", tmp_path / "other", "--rates", rates)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "rates.csv:3: rate 'half'" in err[0]
    assert not (tmp_path / "other").exists()


def test_members_leave_out_banks_outside_the_network(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --members A,B, bank X's transactions stay out of transactions.csv (no node holds
    X's accounts, so the loader of the network's data set would refuse them) but still count
    for the rules: a1's reportable cash from x1 at X scores a1."""
    raw = write_raw(
        tmp_path / "raw.csv",
        RISKPROP_HEADER,
        [
            *A_RAW,
            "c5,2024-03-03T10:00:00Z,x1,X,a1,A,20000.00,USD,cash,branch,NL,NL,completed",
        ],
    )
    everything, network = tmp_path / "all", tmp_path / "network"
    score(raw, "--bank", "A", "--out", everything)
    score(raw, "--bank", "A", "--out", network, "--members", "A, B")
    assert "written transactions 3 (completed, within --members)" in capsys.readouterr().out
    kept = read_csv(network / "A/transactions.csv")
    assert [row["bank_source"] for row in read_csv(everything / "A/transactions.csv")] == [
        "A", "A", "B", "X"
    ]  # fmt: skip
    assert [row["bank_source"] for row in kept] == ["A", "A", "B"]
    assert (network / "A/accounts.csv").read_bytes() == (everything / "A/accounts.csv").read_bytes()
    with pytest.raises(InputError, match="X"):
        load_bank(everything / "A", "A", ["A", "B"])
    bank = load_bank(network / "A", "A", ["A", "B"])
    assert "x1" not in set(bank.account_ids)
    alerts = {(row["tx_id"], row["rule"]) for row in read_csv(network / "A/alerts.csv")}
    assert ("c5", "cash_threshold") in alerts
