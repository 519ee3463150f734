"""Properties of the synthetic multi-bank data set generator."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import pytest

from riskprop.core.data import load_dataset
from riskprop.errors import ConfigError
from riskprop.lab.synthetic import GenerationSummary, generate_dataset

BANKS = ("alice", "bob", "charlie")
ACCOUNTS_HEADER = "id,risk_score"
TRANSACTIONS_HEADER = "id_source,bank_source,id_destination,bank_destination,amount,period"
LABELS_HEADER = "bank,id,is_laundering"

Row = tuple[str, str, str, str, str, str]


def read_rows(path: Path) -> tuple[str, list[list[str]]]:
    text = path.read_text(encoding="utf-8")
    assert '"' not in text
    header, *lines = text.splitlines()
    return header, [line.split(",") for line in lines]


@dataclass
class Data:
    accounts: dict[str, list[tuple[str, float]]]
    transactions: dict[str, list[Row]]
    labels: dict[tuple[str, str], int]


def load(out: Path, banks: tuple[str, ...] = BANKS) -> Data:
    accounts: dict[str, list[tuple[str, float]]] = {}
    transactions: dict[str, list[Row]] = {}
    for bank in banks:
        header, rows = read_rows(out / bank / "accounts.csv")
        assert header == ACCOUNTS_HEADER
        accounts[bank] = [(r[0], float(r[1])) for r in rows]
        for _, score in rows:
            assert re.fullmatch(r"[01](\.\d{1,6})?", score), score
        header, rows = read_rows(out / bank / "transactions.csv")
        assert header == TRANSACTIONS_HEADER
        assert all(len(r) == 6 for r in rows)
        transactions[bank] = [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]
    header, rows = read_rows(out / "labels.csv")
    assert header == LABELS_HEADER
    labels = {(r[0], r[1]): int(r[2]) for r in rows}
    assert len(labels) == len(rows)
    return Data(accounts, transactions, labels)


def distinct(transactions: dict[str, list[Row]]) -> list[Row]:
    """Every transaction once: each is taken from its source bank's file."""
    return [row for bank, rows in transactions.items() for row in rows if row[1] == bank]


def all_bytes(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def medium(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GenerationSummary]:
    out = tmp_path_factory.mktemp("medium")
    summary = generate_dataset(out, accounts=5_000, edges=20_000, periods=4, seed=7)
    return out, summary


def test_layout_and_headers(medium: tuple[Path, GenerationSummary]) -> None:
    out, summary = medium
    assert sorted(p.name for p in out.iterdir()) == [*BANKS, "labels.csv"]
    for bank in BANKS:
        assert sorted(p.name for p in (out / bank).iterdir()) == [
            "accounts.csv",
            "transactions.csv",
        ]
    data = load(out)
    assert summary.banks == BANKS
    assert summary.periods == 4
    assert summary.accounts == sum(len(a) for a in data.accounts.values())


def test_transactions_touch_their_bank_and_cross_bank_ones_appear_twice(
    medium: tuple[Path, GenerationSummary],
) -> None:
    out, summary = medium
    transactions = load(out).transactions
    for bank, rows in transactions.items():
        for row in rows:
            assert bank in (row[1], row[3])
    for a in BANKS:
        for b in BANKS:
            if a < b:
                pair = {a, b}
                in_a = Counter(r for r in transactions[a] if {r[1], r[3]} == pair)
                in_b = Counter(r for r in transactions[b] if {r[1], r[3]} == pair)
                assert in_a == in_b
                assert in_a
    rows = distinct(transactions)
    assert len(rows) == summary.transactions == 20_000
    assert sum(r[1] != r[3] for r in rows) == summary.cross_bank


def test_edges_are_valid(medium: tuple[Path, GenerationSummary]) -> None:
    out, _ = medium
    data = load(out)
    ids = {bank: {i for i, _ in accs} for bank, accs in data.accounts.items()}
    for row in distinct(data.transactions):
        id_s, bank_s, id_d, bank_d, amount, period = row
        assert (bank_s, id_s) != (bank_d, id_d), "self-loop"
        assert id_s in ids[bank_s] and id_d in ids[bank_d]
        assert re.fullmatch(r"\d+\.\d\d", amount) and float(amount) > 0
        assert 0 <= int(period) < 4
    periods = Counter(int(r[5]) for r in distinct(data.transactions))
    assert set(periods) == {0, 1, 2, 3}


def test_accounts_scores_and_labels(medium: tuple[Path, GenerationSummary]) -> None:
    out, summary = medium
    data = load(out)
    accounts, labels = data.accounts, data.labels
    sizes = [len(accounts[b]) for b in BANKS]
    assert min(sizes) >= 1 and len(set(sizes)) > 1  # unequal split
    for accs in accounts.values():
        assert len({i for i, _ in accs}) == len(accs)
        assert all(re.fullmatch(r"a\d{7,}", i) for i, _ in accs)
        assert all(0.0 <= s <= 1.0 for _, s in accs)
    keys = {(bank, i) for bank, accs in accounts.items() for i, _ in accs}
    assert set(labels) == keys
    assert set(labels.values()) <= {0, 1}
    bad = {k for k, v in labels.items() if v}
    assert len(bad) == summary.laundering_accounts
    assert 0.003 * len(keys) <= len(bad) <= 0.02 * len(keys)
    score = {(bank, i): s for bank, accs in accounts.items() for i, s in accs}
    good_scores = [score[k] for k in keys - bad]
    bad_scores = [score[k] for k in bad]
    assert sum(bad_scores) / len(bad_scores) > 0.3 > 10 * sum(good_scores) / len(good_scores)
    assert sum(s >= 0.5 for s in bad_scores) >= len(bad_scores) / 3
    assert any(s == 0.0 for s in good_scores)
    assert sum(s < 0.1 for s in good_scores) > 0.9 * len(good_scores)


def test_motifs_are_planted_and_labelled(medium: tuple[Path, GenerationSummary]) -> None:
    out, _ = medium
    data = load(out)
    labels = data.labels
    motif = nx.MultiDiGraph()
    for id_s, bank_s, id_d, bank_d, *_ in distinct(data.transactions):
        s, d = (bank_s, id_s), (bank_d, id_d)
        if labels[s] and labels[d]:
            motif.add_edge(s, d)
    bad = {k for k, v in labels.items() if v}
    assert set(motif.nodes) == bad  # every labelled account sits in a motif
    simple = nx.DiGraph(motif)
    assert max(d for _, d in simple.in_degree()) >= 5  # fan-in
    assert max(d for _, d in simple.out_degree()) >= 5  # fan-out
    assert any(len(c) >= 3 for c in nx.simple_cycles(simple))  # cycle
    assert any(s[0] != d[0] for s, d in simple.edges)  # motifs cross banks


def test_heavy_tailed_degrees_and_cross_share(medium: tuple[Path, GenerationSummary]) -> None:
    out, summary = medium
    rows = distinct(load(out).transactions)
    degree = Counter((r[1], r[0]) for r in rows) + Counter((r[3], r[2]) for r in rows)
    mean = 2 * len(rows) / summary.accounts
    assert max(degree.values()) > 15 * mean
    assert 0.15 <= summary.cross_bank / summary.transactions <= 0.30


def test_loads_cleanly(medium: tuple[Path, GenerationSummary]) -> None:
    out, summary = medium
    dataset = load_dataset(out)
    assert dataset.names == BANKS
    assert sum(b.n_accounts for b in dataset.banks) == summary.accounts
    assert all(not b.warnings for b in dataset.banks)
    assert not [p for p in out.rglob(".*")]  # no temporary files left


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    def run(name: str, seed: int) -> GenerationSummary:
        return generate_dataset(tmp_path / name, accounts=600, edges=3_000, periods=2, seed=seed)

    s1, s2 = run("a", 3), run("b", 3)
    run("c", 4)
    assert s1 == s2
    a, b, c = all_bytes(tmp_path / "a"), all_bytes(tmp_path / "b"), all_bytes(tmp_path / "c")
    assert a == b
    assert a.keys() == c.keys()
    assert all(a[name] != c[name] for name in a)
    # rewriting over an existing output gives the same bytes again
    run("a", 3)
    assert all_bytes(tmp_path / "a") == b


@pytest.mark.parametrize(
    ("accounts", "edges", "banks"),
    [
        (1000, 10, BANKS),
        (3, 50, BANKS),
        (2, 5, ("solo",)),
        (60, 0, ("x", "y")),
        (80, 400, ("one",)),
    ],
)
def test_small_and_edge_sizes(
    tmp_path: Path, accounts: int, edges: int, banks: tuple[str, ...]
) -> None:
    summary = generate_dataset(tmp_path, accounts=accounts, edges=edges, banks=banks, seed=1)
    data = load(tmp_path, banks)
    rows = distinct(data.transactions)
    assert len(rows) == summary.transactions == edges
    assert summary.accounts == accounts
    assert all((r[1], r[0]) != (r[3], r[2]) for r in rows)
    assert all(len(data.accounts[b]) >= 1 for b in banks)
    if len(banks) == 1:
        assert summary.cross_bank == 0
    assert summary.laundering_accounts == sum(data.labels.values())


def test_small_data_set_gets_every_motif_kind(tmp_path: Path) -> None:
    for seed in range(3):
        summary = generate_dataset(tmp_path / str(seed), accounts=60, edges=600, seed=seed)
        # smallest fan-in, fan-out (hub + 5), cycle (3) and chain (4): 19 accounts
        assert summary.laundering_accounts >= 19


def test_motifs_shrink_to_fit_few_edges(tmp_path: Path) -> None:
    summary = generate_dataset(tmp_path, accounts=1_000, edges=12, seed=2)
    assert summary.transactions == 12
    assert summary.laundering_accounts <= 12  # at most half of the edges are motif edges


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"accounts": 0}, "--accounts"),
        ({"accounts": 2}, "--accounts"),  # fewer accounts than banks
        ({"accounts": 1, "banks": ("a",)}, "--accounts"),  # edges need two accounts
        ({"edges": -1}, "--edges"),
        ({"periods": 0}, "--periods"),
        ({"seed": -1}, "--seed"),
        ({"banks": ()}, "--banks"),
        ({"banks": ("a", "a")}, "--banks"),
        ({"banks": ("a b",)}, "--banks"),
        ({"banks": ("",)}, "--banks"),
        ({"banks": "alice"}, "--banks"),
        ({"accounts": 2.5}, "--accounts"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict[str, object], option: str) -> None:
    args: dict[str, object] = {"accounts": 100, "edges": 10, **kwargs}
    with pytest.raises(ConfigError, match=re.escape(option)) as info:
        generate_dataset(tmp_path / "out", **args)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_refuses_output_with_foreign_bank_directory(tmp_path: Path) -> None:
    (tmp_path / "dave").mkdir()
    with pytest.raises(ConfigError, match="dave"):
        generate_dataset(tmp_path, accounts=10, edges=10)
