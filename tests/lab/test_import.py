"""``riskprop import amlsim`` and ``riskprop import amlworld``: files, ids, mapping, periods,
labels, the initial-score model, and bad input (one line, nothing written)."""

from __future__ import annotations

import csv
import hashlib
import itertools
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import require_amlsim_sample

from riskprop.cli import cli, main
from riskprop.core.data import load_dataset
from riskprop.core.metrics import roc_auc
from riskprop.errors import ConfigError, InputError
from riskprop.files.layout import read_labels, write_layout
from riskprop.lab import amlworld as amlworld_module
from riskprop.lab.amlsim import split_amlsim
from riskprop.lab.amlworld import (
    RATES,
    AmlworldSummary,
    assign_parties,
    import_amlworld,
    parse_duration,
)
from riskprop.lab.synthetic import ScoreModel

HEADER = (
    "Timestamp,From Bank,Account,To Bank,Account,Amount Received,Receiving Currency,"
    "Amount Paid,Payment Currency,Payment Format,Is Laundering"
)
#: Seven banks (``012`` and ``12`` are two), two currencies, one self-transfer and a laundering
#: chain A -> B -> C -> D whose middle hop is paid in euros.
ROWS = [
    "2022/09/01 00:20,010,8000EBD30,010,8000EBD30,3697.34,US Dollar,3697.34,US Dollar,Reinvestment,0",  # noqa: E501
    "2022/09/01 00:20,03208,8000F4580,001,8000F5340,0.01,US Dollar,0.01,US Dollar,Cheque,0",
    "2022/09/02 00:05,0134266,814167590,0036925,810E343A0,10000.00,US Dollar,10000.00,US Dollar,ACH,1",  # noqa: E501
    "2022/09/02 13:30,0036925,810E343A0,010,80011F990,8330.00,Euro,8330.00,Euro,ACH,1",
    "2022/09/03 09:00,010,80011F990,12,8003E4680,9600.00,US Dollar,9600.00,US Dollar,Wire,1",
    "2022/09/03 09:00,012,8003E4680,010,8000EBD30,50.00,US Dollar,42.50,Euro,Cash,0",
    "2022/09/04 23:59,001,8000F5340,03208,8000F4580,20.00,US Dollar,20.00,US Dollar,Credit Card,0",
]  # fmt: skip
CHAIN = {"0134266:814167590", "0036925:810E343A0", "010:80011F990", "12:8003E4680"}
BANKS = ("alice", "bob", "charlie")
TRANSACTIONS_HEADER = ["id_source", "bank_source", "id_destination", "bank_destination", "amount",
                       "period"]  # fmt: skip


def write_file(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        header, *rows = csv.reader(handle)
    return header, rows


def read_out(out: Path, banks: tuple[str, ...] = BANKS) -> tuple[
    dict[str, dict[str, float]], list[list[str]], dict[tuple[str, str], bool]
]:  # fmt: skip
    """Accounts ``bank -> id -> score``, every transaction once (from its source bank's file)
    and the labels."""
    accounts: dict[str, dict[str, float]] = {}
    transactions: list[list[str]] = []
    for bank in banks:
        header, rows = read_csv(out / bank / "accounts.csv")
        assert header == ["id", "risk_score"]
        accounts[bank] = {r[0]: float(r[1]) for r in rows}
        assert len(accounts[bank]) == len(rows)
        header, rows = read_csv(out / bank / "transactions.csv")
        assert header == TRANSACTIONS_HEADER
        assert all(bank in (r[1], r[3]) for r in rows)
        transactions += [r for r in rows if r[1] == bank]
    return accounts, transactions, read_labels(out / "labels.csv")


def all_bytes(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    """Exit code and stderr lines of ``riskprop ARGS``."""
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err.strip().splitlines()


# ------------------------------------------------------------------------------ amlsim


def test_import_amlsim_on_the_sample(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sample = require_amlsim_sample()
    out = tmp_path / "data"
    code, err = run_main(["import", "amlsim", str(sample), str(out), "--periods", "2"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == [*BANKS, "labels.csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no staging left behind
    accounts, transactions, labels = read_out(out)
    _, nodes = read_csv(sample / "nodes.csv")
    fraud = {n[0]: n[1] == "1" for n in nodes}
    assert sum(map(len, accounts.values())) == len(nodes) == len(labels)
    assert all(labels[BANKS[int(i) % 3], i] == f for i, f in fraud.items())
    assert {r[5] for r in transactions} == {"0", "1"}
    # the command writes exactly what the library function writes
    split_amlsim(sample, tmp_path / "direct", periods=2)
    assert all_bytes(out) == all_bytes(tmp_path / "direct")


def test_import_amlsim_bank_count_and_names(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "nodes.csv").write_text(
        "nodeid,isFraud,init_balance,fraudStep\n"
        + "".join(f"{i},{int(i < 3)},1.0,-1\n" for i in range(10))
    )
    (src / "transactions.csv").write_text(
        "sourceNodeId,targetNodeId,value,time\n"
        + "".join(f"{i},{(i + 1) % 10},{i}.5,{i}\n" for i in range(10))
    )
    runner = CliRunner()
    done = runner.invoke(
        cli, ["import", "amlsim", str(src), str(tmp_path / "four"), "--banks", "4"]
    )
    assert done.exit_code == 0, done.output
    assert "10 accounts in 4 banks" in done.output
    four = ("bank0", "bank1", "bank2", "bank3")
    accounts, _, labels = read_out(tmp_path / "four", four)
    assert {b: sorted(a, key=int) for b, a in accounts.items()} == {
        b: [str(i) for i in range(k, 10, 4)] for k, b in enumerate(four)
    }
    assert sum(labels.values()) == 3
    done = runner.invoke(
        cli, ["import", "amlsim", str(src), str(tmp_path / "xy"), "--banks", "x,y", "--seed", "3"]
    )
    assert done.exit_code == 0, done.output
    assert sorted(p.name for p in (tmp_path / "xy").iterdir()) == ["labels.csv", "x", "y"]


def test_import_amlsim_bad_input_is_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "nodes.csv").write_text("nodeid,isFraud,init_balance,fraudStep\n0,0,1,-1\n1,0,1,-1\n")
    (src / "transactions.csv").write_text("sourceNodeId,targetNodeId,value,time\n0,7,1.0,1\n")
    code, err = run_main(["import", "amlsim", str(src), str(tmp_path / "out" / "data")], capsys)
    assert code == 1
    path = src / "transactions.csv"
    assert err == [f"riskprop: error: {path}:2: targetNodeId 7 is not a nodeid of nodes.csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # not even the parent


# ------------------------------------------------------------------------------ amlworld


@pytest.fixture
def small(tmp_path: Path) -> tuple[Path, AmlworldSummary]:
    src = write_file(tmp_path / "HI-Test_Trans.csv", ROWS)
    out = tmp_path / "out"
    return out, import_amlworld(src, out, banks=BANKS, period_length="1d", seed=4)


def test_amlworld_ids_amounts_periods_and_labels(small: tuple[Path, AmlworldSummary]) -> None:
    out, summary = small
    accounts, transactions, labels = read_out(out)
    ids = {i for bank in accounts.values() for i in bank}
    assert ids == {
        "010:8000EBD30", "03208:8000F4580", "001:8000F5340", "0134266:814167590",
        "0036925:810E343A0", "010:80011F990", "12:8003E4680", "012:8003E4680",
    }  # fmt: skip
    assert summary.accounts == 8 and summary.self_transfers == 1
    assert summary.transactions == len(transactions) == 6
    # file order; amounts in US dollars (euros at 0.85 per dollar); calendar days from 0
    assert [(r[0], r[2], r[4], r[5]) for r in sorted(transactions, key=ROW_ORDER)] == [
        ("03208:8000F4580", "001:8000F5340", "0.01", "0"),
        ("0134266:814167590", "0036925:810E343A0", "10000.00", "1"),
        ("0036925:810E343A0", "010:80011F990", "9800.00", "1"),
        ("010:80011F990", "12:8003E4680", "9600.00", "2"),
        ("012:8003E4680", "010:8000EBD30", "50.00", "2"),
        ("001:8000F5340", "03208:8000F4580", "20.00", "3"),
    ]
    assert summary.periods == 4
    assert {i for (_, i), bad in labels.items() if bad} == CHAIN
    assert len(labels) == 8 and summary.laundering_accounts == 4
    party = {i: bank for bank, accs in accounts.items() for i in accs}
    assert all(labels[party[i], i] == (i in CHAIN) for i in ids)
    dataset = load_dataset(out)
    assert sum(b.n_accounts for b in dataset.banks) == 8
    assert all(not b.warnings for b in dataset.banks)


def ROW_ORDER(row: list[str]) -> int:  # noqa: N802 - a constant-like sort key
    """Position of a written transaction in the source file (its amount and ids are unique)."""
    order = ["03208:8000F4580", "0134266:814167590", "0036925:810E343A0", "010:80011F990",
             "012:8003E4680", "001:8000F5340"]  # fmt: skip
    return order.index(row[0])


def test_amlworld_volume_mapping(small: tuple[Path, AmlworldSummary]) -> None:
    out, summary = small
    # volumes (payer and payee endpoints): 010: 5; 001, 0036925, 03208: 2; 012, 0134266, 12: 1.
    # Greedy by decreasing volume, ties by id, each to the lightest party (ties: the first).
    assert summary.party_of_bank == {
        "010": "alice",
        "001": "bob",
        "0036925": "charlie",
        "03208": "bob",
        "012": "charlie",
        "0134266": "charlie",
        "12": "bob",
    }
    accounts, transactions, _ = read_out(out)
    for bank, accs in accounts.items():
        assert all(summary.party_of_bank[i.split(":")[0]] == bank for i in accs)
    for r in transactions:
        assert r[1] == summary.party_of_bank[r[0].split(":")[0]]
        assert r[3] == summary.party_of_bank[r[2].split(":")[0]]
    assert summary.cross_bank == sum(r[1] != r[3] for r in transactions) == 3


def test_amlworld_hash_mapping_is_per_bank_id(tmp_path: Path) -> None:
    def expected(bank: str) -> str:
        digest = hashlib.blake2b(bank.encode(), digest_size=8).digest()
        return ("p0", "p1")[int.from_bytes(digest, "big") % 2]

    full = import_amlworld(
        write_file(tmp_path / "all.csv", ROWS), tmp_path / "a", banks=("p0", "p1"), bank_map="hash"
    )
    assert full.party_of_bank == {b: expected(b) for b in full.party_of_bank}
    assert len(set(full.party_of_bank.values())) == 2
    part = import_amlworld(
        write_file(tmp_path / "part.csv", ROWS[2:5]), tmp_path / "b", banks=("p0", "p1"),
        bank_map="hash",
    )  # fmt: skip
    assert all(full.party_of_bank[b] == p for b, p in part.party_of_bank.items())


def test_assign_parties_balances_volume() -> None:
    rng = np.random.default_rng(0)
    volume = rng.pareto(1.2, 500).astype(np.int64) + 1
    ids = [f"{i:05d}" for i in range(500)]
    party = assign_parties(ids, volume, 4)
    load = np.bincount(party, weights=volume, minlength=4)
    assert load.max() - load.min() <= volume.max()  # greedy bound
    assert np.array_equal(assign_parties(ids[::-1], volume[::-1], 4), party[::-1])


def test_amlworld_periods_and_currency_options(tmp_path: Path) -> None:
    src = write_file(tmp_path / "t.csv", ROWS)
    buckets = import_amlworld(src, tmp_path / "a", banks=BANKS, periods=2)
    _, rows, _ = read_out(tmp_path / "a")
    assert buckets.periods == 2
    # range 09/01 00:20 - 09/04 23:59 split in half at 09/03 00:09:30
    assert [r[5] for r in sorted(rows, key=ROW_ORDER)] == ["0", "0", "0", "1", "1", "1"]
    assert parse_duration("12h") == 43200 and parse_duration("1w") == 7 * 86400

    usd = import_amlworld(src, tmp_path / "b", banks=BANKS, currency="US Dollar")
    _, rows, labels = read_out(tmp_path / "b")
    assert usd.other_currency == 2 and usd.transactions == 4
    assert sorted(r[4] for r in rows) == ["0.01", "10000.00", "20.00", "9600.00"]  # as written
    assert {i for (_, i), bad in labels.items() if bad} == CHAIN  # labels from every row
    assert usd.accounts == 8

    rates = tmp_path / "rates.csv"
    rates.write_text("currency,units_per_usd\nUS Dollar,1\nEuro,0.5\n")
    code = CliRunner().invoke(
        cli, ["import", "amlworld", str(src), str(tmp_path / "c"), "--banks", "3",
              "--rates", str(rates)],
    )  # fmt: skip
    assert code.exit_code == 0, code.output
    _, rows, _ = read_out(tmp_path / "c")
    assert sorted(r[4] for r in rows if r[0] in ("0036925:810E343A0", "012:8003E4680")) == [
        "16660.00",
        "85.00",
    ]


def test_amlworld_rate_table_names_aml_worlds_currencies() -> None:
    assert RATES["US Dollar"] == 1.0
    assert len(RATES) == 15 and all(rate > 0 for rate in RATES.values())


# ------------------------------------------------------------- initial scores, determinism


def synthetic_file(path: Path, *, rows: int = 30_000, seed: int = 0) -> Path:
    """A larger AMLworld-layout file: 5,000 accounts of 60 banks, clean payments in five
    currencies and 40 laundering chains of 3-8 hops."""
    rng = np.random.default_rng(seed)
    banks = [f"{b:03d}" for b in range(60)]
    bank_of = rng.integers(0, 60, 5_000)
    account = [f"8{i:07X}" for i in range(5_000)]
    currencies = ["US Dollar", "Euro", "Yen", "Rupee", "UK Pound"]
    start = datetime(2022, 9, 1)
    lines = []

    def row(minute: int, a: int, b: int, amount: float, currency: str, bad: int) -> str:
        stamp = (start + timedelta(minutes=minute)).strftime("%Y/%m/%d %H:%M")
        text = f"{amount:.2f}"
        return (f"{stamp},{banks[bank_of[a]]},{account[a]},{banks[bank_of[b]]},{account[b]},"
                f"{text},{currency},{text},{currency},ACH,{bad}")  # fmt: skip

    for _ in range(rows):
        a, b = rng.integers(0, 5_000, 2)
        lines.append(
            row(int(rng.integers(0, 14 * 1440)), int(a), int(b), float(rng.lognormal(5, 1.5)),
                currencies[int(rng.integers(0, 5))], 0)
        )  # fmt: skip
    members = rng.permutation(5_000)
    used = 0
    for _ in range(40):
        hops = int(rng.integers(3, 9))
        chain = members[used : used + hops + 1]
        used += hops + 1
        minute = int(rng.integers(0, 10 * 1440))
        for a, b in itertools.pairwise(chain):
            minute += int(rng.integers(30, 600))
            lines.append(row(minute, int(a), int(b), 9_000.0, "US Dollar", 1))
    order = rng.permutation(len(lines))
    return write_file(path, [lines[i] for i in order])


def test_initial_score_model_on_a_larger_file(tmp_path: Path) -> None:
    src = synthetic_file(tmp_path / "big.csv")
    model = ScoreModel(flag_share=0.4, false_positive_share=0.02)
    summary = import_amlworld(
        src, tmp_path / "out", banks=BANKS, period_length="1d", score_model=model, seed=9
    )
    accounts, _, labels = read_out(tmp_path / "out")
    keys = [(b, i) for b, accs in accounts.items() for i in accs]
    score = np.array([accounts[b][i] for b, i in keys])
    bad = np.array([labels[k] for k in keys])
    n_bad, n_good = int(bad.sum()), int((~bad).sum())
    assert n_bad == summary.laundering_accounts > 200
    assert summary.periods >= 14
    flagged = score >= model.threshold
    # exact shares: round(share * count) accounts of each kind are flagged
    assert int((flagged & bad).sum()) == round(0.4 * n_bad) == summary.flagged_laundering
    assert int((flagged & ~bad).sum()) == round(0.02 * n_good)
    assert summary.flagged == int(flagged.sum())
    # unflagged accounts: the same noise whether laundering or not
    auc = roc_auc(score[~flagged], bad[~flagged])
    assert abs(auc - 0.5) < 0.1, auc
    assert 0.0 < score[~flagged].mean() < 0.1
    assert score[flagged].min() >= 0.5 and score[~flagged].max() < 0.5


def test_amlworld_deterministic_for_a_seed(tmp_path: Path) -> None:
    src = synthetic_file(tmp_path / "t.csv", rows=3_000)
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        import_amlworld(src, tmp_path / name, banks=("x", "y"), seed=seed)
    a, b, c = (all_bytes(tmp_path / n) for n in "abc")
    assert a == b
    assert a.keys() == c.keys()
    differ = {name for name in a if a[name] != c[name]}
    assert differ == {"x/accounts.csv", "y/accounts.csv"}  # only the scores depend on the seed
    # writing again over an existing data set gives the same files
    import_amlworld(src, tmp_path / "a", banks=("x", "y"), seed=1)
    assert all_bytes(tmp_path / "a") == b


def test_amlworld_cli(tmp_path: Path) -> None:
    src = write_file(tmp_path / "t.csv", ROWS)
    (tmp_path / "empty").mkdir()
    done = CliRunner().invoke(
        cli, ["import", "amlworld", str(src), str(tmp_path / "empty"), "--banks", "alice,bob",
              "--period-length", "1d", "--flag-share", "1", "--false-positive-share", "0"],
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "8 accounts of 7 AMLworld banks in 2 banks" in done.output
    assert "4 laundering accounts (4 flagged, 4 accounts flagged in all)" in done.output
    accounts, _, labels = read_out(tmp_path / "empty", ("alice", "bob"))
    assert all((accounts[b][i] >= 0.5) == bad for (b, i), bad in labels.items())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "t.csv"]


# ------------------------------------------------------------------------------ bad input


BAD_ROW = 3  # the row the cases below break: line 6 (after the header, a row and a blank line)


@pytest.mark.parametrize(
    ("row", "header", "message"),
    [
        (None, HEADER.replace("Bank,Account,To", "Bank,From Account,To"),
         ":1: header column 3 is 'From Account', expected 'Account'"),
        (None, HEADER.removesuffix(",Is Laundering"),
         ":1: header has 10 columns, expected 11 (column 11 'Is Laundering' is missing)"),
        (None, HEADER + ",Note", ":1: header has 12 columns, expected 11 (extra column 'Note')"),
        (ROWS[BAD_ROW].removesuffix(",1"), HEADER,
         ":6: 10 fields, expected 11 (no 'Is Laundering')"),
        (ROWS[BAD_ROW].replace("2022/09/02 13:30", "2022-09-02 13:30"), HEADER,
         ":6: Timestamp '2022-09-02 13:30' is not a time YYYY/MM/DD HH:MM"),
        (ROWS[BAD_ROW].replace("2022/09/02 13:30", "2022/09/31 13:30"), HEADER,
         ":6: Timestamp '2022/09/31 13:30' is not a time"),
        (ROWS[BAD_ROW].replace("8330.00,Euro,ACH", "-8330.00,Euro,ACH"), HEADER,
         ":6: Amount Paid '-8330.00' is not a non-negative decimal number"),
        (ROWS[BAD_ROW].replace("8330.00,Euro,ACH", "8.330.00,Euro,ACH"), HEADER,
         ":6: Amount Paid '8.330.00' is not"),
        (ROWS[BAD_ROW].replace("Euro,ACH", "Pound,ACH"), HEADER,
         ":6: Payment Currency 'Pound' has no exchange rate"),
        (ROWS[BAD_ROW].replace("ACH,1", "ACH,yes"), HEADER,
         ":6: Is Laundering 'yes' is not 0 or 1"),
        (ROWS[BAD_ROW].replace(",0036925,810E343A0,", ",0036925,,"), HEADER,
         ":6: Account (column 3, the payer's) '' is empty"),
        (ROWS[BAD_ROW].replace(",010,80011F990,", ",,80011F990,"), HEADER,
         ":6: To Bank '' is empty"),
        (ROWS[BAD_ROW].replace(",010,80011F990,", ",0:10,80011F990,"), HEADER,
         ":6: To Bank '0:10' holds a comma, quote, colon or line break"),
        (ROWS[BAD_ROW].replace(",010,80011F990,", ',010,"8001,1F990",'), HEADER,
         ":6: Account (column 5, the payee's) '8001,1F990' holds a comma"),
    ],
)  # fmt: skip
def test_amlworld_bad_input_is_one_line_and_writes_nothing(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    row: str | None,
    header: str,
    message: str,
) -> None:
    rows = [*ROWS]
    if row is not None:
        rows[BAD_ROW] = row
    rows.insert(1, "")  # a blank line: line numbers count it
    src = write_file(tmp_path / "src" / "t.csv", rows, header)
    code, err = run_main(
        ["import", "amlworld", str(src), str(tmp_path / "new" / "out"), "--banks", "2"], capsys
    )
    assert code == 1
    assert len(err) == 1 and err[0].startswith(f"riskprop: error: {src}{message}"), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", ": file is empty"),
        (HEADER + "\n", ": no transactions after the header"),
        (None, ": not found; expected an AMLworld transactions CSV file"),
    ],
)
def test_amlworld_empty_or_missing_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str
) -> None:
    src = tmp_path / "t.csv"
    if content is not None:
        src.write_text(content)
    code, err = run_main(
        ["import", "amlworld", str(src), str(tmp_path / "o"), "--banks", "2"], capsys
    )
    assert code == 1 and len(err) == 1
    assert err[0].startswith(f"riskprop: error: {src}{message}"), err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"periods": 2, "period_length": "1d"}, "--periods or --period-length"),
        ({"period_length": "1y"}, "--period-length"),
        ({"periods": 0}, "--periods"),
        ({"banks": ("a", "b", "c", "d", "e", "f", "g", "h")}, "no AMLworld bank goes to party 'h'"),
        ({"currency": "Euro", "rates": {"Euro": 1.0}}, "--currency or --rates"),
        ({"rates": {"US Dollar": 0.0}}, "rate of 'US Dollar'"),
        ({"bank_map": "size"}, "--bank-map"),
        (
            {"currency": "USD"},
            "--currency 'USD': no row of .* \\(its currencies: Euro, US Dollar\\)",
        ),
        ({"score_model": ScoreModel(flag_share=1.5)}, "--flag-share"),
        ({"seed": -1}, "--seed"),
    ],
)
def test_amlworld_bad_options(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    src = write_file(tmp_path / "t.csv", ROWS)
    args: dict[str, object] = {"banks": BANKS, **kwargs}
    with pytest.raises(ConfigError, match=message) as info:
        import_amlworld(src, tmp_path / "out", **args)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_bad_rates_file(tmp_path: Path) -> None:
    rates = tmp_path / "rates.csv"
    rates.write_text("currency,units_per_usd\nEuro,abc\n")
    with pytest.raises(InputError, match=r"rates\.csv:2: units_per_usd 'abc' is not positive"):
        amlworld_module.read_rates(rates)


def test_a_failed_write_leaves_the_output_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = write_file(tmp_path / "t.csv", ROWS)
    out = tmp_path / "out"
    import_amlworld(src, out, banks=BANKS, seed=1)
    before = all_bytes(out)

    def failing(stage: Path, *args: object, **kwargs: object) -> None:
        write_layout(stage, *args, **kwargs)  # type: ignore[arg-type]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(amlworld_module, "write_layout", failing)
    with pytest.raises(OSError, match="No space"):
        import_amlworld(src, out, banks=BANKS, seed=2)
    with pytest.raises(OSError, match="No space"):
        import_amlworld(src, tmp_path / "fresh" / "out", banks=BANKS, seed=2)
    assert all_bytes(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "t.csv"]


def test_labels_count_every_row(tmp_path: Path) -> None:
    """A laundering self-transfer still labels its account, though the row is dropped."""
    rows = [*ROWS, ROWS[0].replace("Reinvestment,0", "Reinvestment,1")]
    summary = import_amlworld(write_file(tmp_path / "t.csv", rows), tmp_path / "o", banks=BANKS)
    _, _, labels = read_out(tmp_path / "o")
    assert {i for (_, i), bad in labels.items() if bad} == {*CHAIN, "010:8000EBD30"}
    assert summary.self_transfers == 2
    assert Counter(labels.values())[True] == summary.laundering_accounts == 5
