"""Properties of the synthetic multi-bank data set generator."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from riskprop.cli import cli
from riskprop.core.data import load_dataset
from riskprop.core.metrics import roc_auc
from riskprop.errors import ConfigError
from riskprop.lab.simulate import simulate_plaintext
from riskprop.lab.synthetic import (
    GenerationSummary,
    ScoreModel,
    generate_dataset,
    realistic_scores,
)

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


# ------------------------------------------------------------------ realistic initial scores


@pytest.fixture(scope="module")
def realistic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GenerationSummary]:
    out = tmp_path_factory.mktemp("realistic")
    summary = generate_dataset(out, accounts=20_000, edges=60_000, seed=11, scores="realistic")
    return out, summary


def test_realistic_scores_hide_the_unflagged_launderers(
    realistic: tuple[Path, GenerationSummary],
) -> None:
    out, summary = realistic
    data = load(out)
    keys = [(bank, i) for bank, accs in data.accounts.items() for i, _ in accs]
    score = np.array([s for accs in data.accounts.values() for _, s in accs])
    bad = np.array([bool(data.labels[k]) for k in keys])
    n_bad = int(bad.sum())
    assert n_bad == summary.laundering_accounts > 100
    flagged = score >= 0.5
    assert int((flagged & bad).sum()) == round(0.3 * n_bad)
    assert int((flagged & ~bad).sum()) == round(0.01 * (~bad).sum())
    auc = roc_auc(score[~flagged], bad[~flagged])
    assert abs(auc - 0.5) < 0.1, auc  # the informed default gives about 0.97
    assert score[~flagged].max() < 0.5 <= score[flagged].min()


def test_propagation_gain_is_measurable_on_realistic_data(
    realistic: tuple[Path, GenerationSummary],
) -> None:
    out, _ = realistic
    data = load(out)
    initial = {(bank, i): s for bank, accs in data.accounts.items() for i, s in accs}
    result = simulate_plaintext(out, iterations=3, delta_a=0.5).by_account()
    keys = [k for k in initial if initial[k] < 0.5]
    bad = [bool(data.labels[k]) for k in keys]
    before = roc_auc([initial[k] for k in keys], bad)
    after = roc_auc([result[k] for k in keys], bad)
    assert after > before + 0.05, (before, after)


def test_score_modes_share_the_transactions(tmp_path: Path) -> None:
    def run(name: str, **kwargs: object) -> dict[str, bytes]:
        generate_dataset(tmp_path / name, accounts=800, edges=3_000, seed=5, **kwargs)  # type: ignore[arg-type]
        return all_bytes(tmp_path / name)

    informed, realistic = run("a"), run("b", scores="realistic")
    assert run("c", scores="informed") == informed  # the default is "informed"
    differ = {name for name in informed if informed[name] != realistic[name]}
    assert differ == {f"{bank}/accounts.csv" for bank in BANKS}
    other = run("d", scores="realistic", score_model=ScoreModel(flag_share=0.8))
    assert other != realistic


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 400),
    bad_share=st.floats(0.0, 1.0),
    flag_share=st.floats(0.0, 1.0),
    false_positive_share=st.floats(0.0, 1.0),
    threshold=st.floats(0.05, 0.95),
    seed=st.integers(0, 2**32 - 1),
)
def test_realistic_scores_properties(
    n: int,
    bad_share: float,
    flag_share: float,
    false_positive_share: float,
    threshold: float,
    seed: int,
) -> None:
    laundering = np.random.default_rng(seed).random(n) < bad_share
    model = ScoreModel(
        flag_share=flag_share, false_positive_share=false_positive_share, threshold=threshold
    )
    scores = realistic_scores(np.random.default_rng(seed), laundering, model)
    again = realistic_scores(np.random.default_rng(seed), laundering, model)
    assert np.array_equal(scores, again)
    assert ((scores >= 0) & (scores <= 1)).all()
    assert np.array_equal(scores, np.round(scores, 6))  # what the files hold
    flagged = scores >= threshold
    n_bad = int(laundering.sum())
    assert int((flagged & laundering).sum()) == round(flag_share * n_bad)
    assert int((flagged & ~laundering).sum()) == round(false_positive_share * (n - n_bad))


def test_realistic_unflagged_auc_is_near_one_half() -> None:
    rng = np.random.default_rng(3)
    laundering = rng.random(50_000) < 0.02
    for seed in range(3):
        scores = realistic_scores(np.random.default_rng(seed), laundering, ScoreModel())
        rest = scores < 0.5
        assert abs(roc_auc(scores[rest], laundering[rest]) - 0.5) < 0.05


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"scores": "noisy"}, "--scores"),
        ({"score_model": ScoreModel()}, "--scores realistic"),
        ({"scores": "realistic", "score_model": ScoreModel(flag_share=-0.1)}, "--flag-share"),
        (
            {"scores": "realistic", "score_model": ScoreModel(false_positive_share=2.0)},
            "--false-positive-share",
        ),
        ({"scores": "realistic", "score_model": ScoreModel(flagged_beta=(0.0, 1.0))}, "flagged"),
        ({"scores": "realistic", "score_model": ScoreModel(threshold=1.0)}, "threshold"),
    ],
)
def test_bad_score_options(tmp_path: Path, kwargs: dict[str, object], option: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(option)):
        generate_dataset(tmp_path / "out", accounts=100, edges=10, **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()


def test_generate_command_scores_options(tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["generate", str(tmp_path / "g"), "--accounts", "3000", "--edges", "9000"]
    done = runner.invoke(cli, [*args, "--scores", "realistic", "--flag-share", "1"])
    assert done.exit_code == 0, done.output
    data = load(tmp_path / "g")
    score = {(b, i): s for b, accs in data.accounts.items() for i, s in accs}
    assert all(score[k] >= 0.5 for k, bad in data.labels.items() if bad)
    refused = runner.invoke(cli, [*args[:1], str(tmp_path / "h"), *args[2:], "--flag-share", "1"])
    assert refused.exit_code == 2 and "--scores realistic" in refused.output
    assert not (tmp_path / "h").exists()
