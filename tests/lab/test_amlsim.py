"""Converting the IBM AMLSim sample to the multi-bank layout."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest
from helpers import require_amlsim_sample

from riskprop.core.data import load_dataset
from riskprop.errors import ConfigError, InputError
from riskprop.lab.amlsim import split_amlsim
from riskprop.lab.synthetic import GenerationSummary

BANKS = ("alice", "bob", "charlie")
TRANSACTIONS_HEADER = "id_source,bank_source,id_destination,bank_destination,amount,period"


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        header, *rows = csv.reader(handle)
    return header, rows


def write_sample(src: Path, nodes: list[str], transactions: list[str]) -> Path:
    src.mkdir(parents=True, exist_ok=True)
    (src / "nodes.csv").write_text(
        "\n".join(["nodeid,isFraud,init_balance,fraudStep", *nodes]) + "\n"
    )
    (src / "transactions.csv").write_text(
        "\n".join(["sourceNodeId,targetNodeId,value,time", *transactions]) + "\n"
    )
    return src


@pytest.fixture(scope="module")
def sample() -> tuple[list[list[str]], list[list[str]]]:
    source = require_amlsim_sample()
    return read_csv(source / "nodes.csv")[1], read_csv(source / "transactions.csv")[1]


@pytest.fixture(scope="module")
def split(
    tmp_path_factory: pytest.TempPathFactory, sample: object
) -> tuple[Path, GenerationSummary]:
    out = tmp_path_factory.mktemp("amlsim")
    return out, split_amlsim(require_amlsim_sample(), out, periods=5, seed=1)


def test_counts_match_the_source(
    split: tuple[Path, GenerationSummary], sample: tuple[list[list[str]], list[list[str]]]
) -> None:
    out, summary = split
    nodes, transactions = sample
    loops = sum(s == d for s, d, *_ in transactions)
    assert loops > 0
    assert summary.accounts == len(nodes)
    assert summary.transactions == len(transactions) - loops
    assert summary.laundering_accounts == sum(int(n[1]) for n in nodes)
    written: Counter[str] = Counter()
    seen: Counter[tuple[str, ...]] = Counter()
    for bank in BANKS:
        header, rows = read_csv(out / bank / "accounts.csv")
        assert header == ["id", "risk_score"]
        written[bank] = len(rows)
        assert (out / bank / "transactions.csv").read_text().splitlines()[0] == TRANSACTIONS_HEADER
        for row in read_csv(out / bank / "transactions.csv")[1]:
            if row[1] == bank:  # each transaction once, from its source bank's file
                seen[(row[0], row[2], row[4])] += 1
    assert sum(written.values()) == len(nodes)
    # amounts are kept exactly as written in the source
    expected = Counter((s, d, v) for s, d, v, _ in transactions if s != d)
    assert seen == expected


def test_banks_periods_and_labels(
    split: tuple[Path, GenerationSummary], sample: tuple[list[list[str]], list[list[str]]]
) -> None:
    out, summary = split
    nodes, _ = sample
    for code, bank in enumerate(BANKS):
        ids = [int(r[0]) for r in read_csv(out / bank / "accounts.csv")[1]]
        assert ids and all(i % 3 == code for i in ids)
        rows = read_csv(out / bank / "transactions.csv")[1]
        for id_s, bank_s, id_d, bank_d, _, period in rows:
            assert bank in (bank_s, bank_d)
            assert bank_s == BANKS[int(id_s) % 3] and bank_d == BANKS[int(id_d) % 3]
            assert 0 <= int(period) < 5
        assert {int(r[5]) for r in rows} == set(range(5))
    cross = {
        tuple(r) for b in BANKS for r in read_csv(out / b / "transactions.csv")[1] if r[1] != r[3]
    }
    assert summary.cross_bank > 0 and len(cross) <= summary.cross_bank
    header, labels = read_csv(out / "labels.csv")
    assert header == ["bank", "id", "is_laundering"]
    fraud = {n[0]: n[1] for n in nodes}
    assert len(labels) == len(nodes)
    assert all(fraud[i] == flag and bank == BANKS[int(i) % 3] for bank, i, flag in labels)


def test_flagged_share(
    split: tuple[Path, GenerationSummary], sample: tuple[list[list[str]], list[list[str]]]
) -> None:
    out, _ = split
    nodes, _ = sample
    fraud = {n[0] for n in nodes if n[1] == "1"}
    score = {r[0]: float(r[1]) for b in BANKS for r in read_csv(out / b / "accounts.csv")[1]}
    assert all(0.0 <= s <= 1.0 for s in score.values())
    flagged_fraud = sum(score[i] >= 0.6 for i in fraud) / len(fraud)
    others = [s for i, s in score.items() if i not in fraud]
    flagged_other = sum(s >= 0.6 for s in others) / len(others)
    assert 0.27 <= flagged_fraud <= 0.33
    assert 0.005 <= flagged_other <= 0.02
    assert all(s < 0.1 or s >= 0.6 for s in score.values())


def test_loads_cleanly(split: tuple[Path, GenerationSummary]) -> None:
    out, summary = split
    dataset = load_dataset(out)
    assert dataset.names == BANKS
    assert sum(b.n_accounts for b in dataset.banks) == summary.accounts
    assert all(not b.warnings for b in dataset.banks)


NODES = [f"{i},{int(i in (3, 4, 5))},100.0,-1" for i in range(12)]
TRANSACTIONS = [
    "0,1,10.5,1",
    "1,2,20.25,3",
    "2,2,5,4",  # self-loop
    "3,4,9000.10,7",
    "4,5,8900.00,7",
    "5,3,8800,10",
    "7,11,1.5,10",
]


def test_small_sample_details(tmp_path: Path) -> None:
    src = write_sample(tmp_path / "src", NODES, TRANSACTIONS)
    summary = split_amlsim(src, tmp_path / "out", banks=("x", "y"), periods=3, flagged_fraction=1.0)
    assert summary == GenerationSummary(
        banks=("x", "y"),
        accounts=12,
        transactions=6,
        cross_bank=4,
        laundering_accounts=3,
        periods=3,
    )
    x_rows = [
        ["0", "x", "1", "y", "10.5", "0"],
        ["1", "y", "2", "x", "20.25", "0"],
        ["3", "y", "4", "x", "9000.10", "2"],  # time 7 of 1..10 -> bucket 2 of 3
        ["4", "x", "5", "y", "8900.00", "2"],
    ]
    y_rows = [*x_rows[:4], ["5", "y", "3", "y", "8800", "2"], ["7", "y", "11", "y", "1.5", "2"]]
    assert read_csv(tmp_path / "out" / "x" / "transactions.csv")[1] == x_rows
    assert read_csv(tmp_path / "out" / "y" / "transactions.csv")[1] == y_rows
    assert [r[0] for r in read_csv(tmp_path / "out" / "x" / "accounts.csv")[1]] == [
        str(i) for i in range(0, 12, 2)
    ]
    scores = {
        r[0]: float(r[1])
        for b in ("x", "y")
        for r in read_csv(tmp_path / "out" / b / "accounts.csv")[1]
    }
    assert all(scores[i] >= 0.6 for i in ("3", "4", "5"))


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    nodes = [f"{i},{int(i % 7 == 0)},1.0,-1" for i in range(300)]
    src = write_sample(
        tmp_path / "src", nodes, [f"{i},{(i * 13 + 1) % 300},1.00,{i}" for i in range(300)]
    )

    def files(out: Path) -> dict[str, bytes]:
        return {
            str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()
        }

    split_amlsim(src, tmp_path / "a", seed=5)
    split_amlsim(src, tmp_path / "b", seed=5)
    split_amlsim(src, tmp_path / "c", seed=6)
    assert files(tmp_path / "a") == files(tmp_path / "b")
    assert files(tmp_path / "a") != files(tmp_path / "c")


@pytest.mark.parametrize("missing", ["nodes.csv", "transactions.csv"])
def test_missing_source_file(tmp_path: Path, missing: str) -> None:
    src = write_sample(tmp_path / "src", NODES, TRANSACTIONS)
    (src / missing).unlink()
    with pytest.raises(InputError, match=missing):
        split_amlsim(src, tmp_path / "out")


@pytest.mark.parametrize(
    ("nodes", "transactions", "message"),
    [
        (["nodeid,isFraud,balance,fraudStep", "0,0,1,-1"], None, r"nodes\.csv:1: header"),
        (None, ["source,target,value,time", "0,1,1,1"], r"transactions\.csv:1: header"),
        (
            None,
            ["sourceNodeId,targetNodeId,value,time", "0,99,1,1"],
            r"transactions\.csv:2: targetNodeId 99",
        ),
        (
            None,
            ["sourceNodeId,targetNodeId,value,time", "0,1,abc,1"],
            r"transactions\.csv:2: value 'abc'",
        ),
        (
            ["nodeid,isFraud,init_balance,fraudStep", "0,0,1,-1", "0,1,1,-1"],
            None,
            r"nodes\.csv:3: duplicate",
        ),
        (["nodeid,isFraud,init_balance,fraudStep", "0,2,1,-1"], None, r"nodes\.csv:2: isFraud 2"),
    ],
)
def test_bad_source_files(
    tmp_path: Path, nodes: list[str] | None, transactions: list[str] | None, message: str
) -> None:
    src = write_sample(tmp_path / "src", NODES, TRANSACTIONS)
    if nodes is not None:
        (src / "nodes.csv").write_text("\n".join(nodes) + "\n")
    if transactions is not None:
        (src / "transactions.csv").write_text("\n".join(transactions) + "\n")
    with pytest.raises(InputError, match=message):
        split_amlsim(src, tmp_path / "out")


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"periods": 0}, "--periods"),
        ({"flagged_fraction": 1.5}, "--flag-share"),
        ({"banks": ("a", "a")}, "--banks"),
        ({"seed": -2}, "--seed"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict[str, object], option: str) -> None:
    src = write_sample(tmp_path / "src", NODES, TRANSACTIONS)
    with pytest.raises(ConfigError, match=option):
        split_amlsim(src, tmp_path / "out", **kwargs)  # type: ignore[arg-type]
