"""The curated public API: every exported name exists, is documented and is what it says."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pytest
from helpers import REPO
from PIL import Image

from riskprop import api


def test_every_exported_name_resolves_and_is_documented() -> None:
    assert len(set(api.__all__)) == len(api.__all__)
    for name in api.__all__:
        value = getattr(api, name)
        if inspect.isfunction(value) or inspect.isclass(value):
            assert inspect.getdoc(value), f"riskprop.api.{name} has no docstring"


def test_nothing_public_is_left_out() -> None:
    public = {n for n in vars(api) if not n.startswith("_") and n != "annotations"}
    assert public == set(api.__all__)


def test_errors_share_one_base() -> None:
    for error in (api.ConfigError, api.InputError, api.ParameterError, api.ProtocolError):
        assert issubclass(error, api.RiskpropError)
    assert issubclass(api.ParameterError, api.ConfigError)


# ------------------------------------------------------------------------------ workbench


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated data set with ``labels.csv``."""
    root = tmp_path_factory.mktemp("api") / "data"
    api.generate_dataset(root, accounts=300, edges=1500, seed=2)
    return root


def tables_of(root: Path) -> tuple[pa.Table, pa.Table, pa.Table]:
    """The data set at ``root`` as three tables: accounts (with a bank column), every
    transaction once (from its source bank's file) and the labels."""
    text = {"id": pa.string(), "id_source": pa.string(), "id_destination": pa.string()}
    options = pa_csv.ConvertOptions(column_types=text)
    accounts, transactions = [], []
    for bank in ("alice", "bob", "charlie"):
        table = pa_csv.read_csv(root / bank / "accounts.csv", convert_options=options)
        accounts.append(table.add_column(0, "bank", pa.array([bank] * table.num_rows)))
        table = pa_csv.read_csv(root / bank / "transactions.csv", convert_options=options)
        transactions.append(table.filter(pc.equal(table.column("bank_source"), bank)))
    labels = pa_csv.read_csv(root / "labels.csv", convert_options=options)
    return pa.concat_tables(accounts), pa.concat_tables(transactions), labels


def test_load_from_tables_equals_load_from_files(labelled: Path) -> None:
    pd = pytest.importorskip("pandas")
    from_files = api.load(labelled)
    accounts, transactions, labels = tables_of(labelled)
    for frame in (accounts, accounts.to_pandas()):
        from_tables = api.load(accounts=frame, transactions=transactions, labels=labels)
        assert from_tables.graph.banks == from_files.graph.banks
        assert from_tables.graph.account_ids == from_files.graph.account_ids
        assert np.array_equal(from_tables.labels, from_files.labels)
        assert np.array_equal(from_tables.initial, from_files.initial)  # exact floats
        setting = api.Setting(3, 0.5)
        # the transactions come in another order: sums differ in the last bit at most
        assert np.allclose(from_tables.scores(setting), from_files.scores(setting), atol=1e-15)
    assert isinstance(accounts.to_pandas(), pd.DataFrame)
    without = api.load(accounts=accounts, transactions=transactions)
    assert without.unlabelled == without.n_accounts and not without.labels.any()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("drop_risk", "accounts: missing column(s) risk_score (needs bank, id, risk_score)"),
        ("foreign_bank", "transactions: bank_source 'dave' has no accounts in the accounts table"),
        ("bad_score", "table alice/accounts.csv:2: risk_score 1.5 is outside [0, 1]"),
        ("bad_label", "labels: column is_laundering holds a value other than 0 and 1"),
        ("not_a_table", "accounts: expected a pyarrow Table or a pandas DataFrame"),
    ],
)
def test_load_from_bad_tables_is_one_clear_error(labelled: Path, change: str, message: str) -> None:
    accounts, transactions, labels = tables_of(labelled)
    tables: dict[str, object] = {
        "accounts": accounts,
        "transactions": transactions,
        "labels": labels,
    }
    if change == "drop_risk":
        tables["accounts"] = accounts.drop_columns(["risk_score"])
    elif change == "foreign_bank":
        banks = transactions.column("bank_source").to_pylist()
        tables["transactions"] = transactions.set_column(
            1, "bank_source", pa.array(["dave", *banks[1:]])
        )
    elif change == "bad_score":
        scores = accounts.column("risk_score").to_pylist()
        tables["accounts"] = accounts.set_column(2, "risk_score", pa.array([1.5, *scores[1:]]))
    elif change == "bad_label":
        flags = labels.column("is_laundering").to_pylist()
        tables["labels"] = labels.set_column(2, "is_laundering", pa.array([2, *flags[1:]]))
    else:
        tables["accounts"] = accounts.to_pylist()
    with pytest.raises(api.InputError) as info:
        api.load(**tables)  # type: ignore[arg-type]
    assert str(info.value).startswith(message)
    assert "riskprop-tables-" not in str(info.value)


def test_load_needs_data_or_tables(labelled: Path) -> None:
    with pytest.raises(api.ConfigError, match="give a data directory or the accounts"):
        api.load()
    accounts, transactions, _ = tables_of(labelled)
    with pytest.raises(api.ConfigError, match="give a data directory or the accounts"):
        api.load(labelled, accounts=accounts, transactions=transactions)
    with pytest.raises(api.ConfigError, match="both the accounts and the transactions"):
        api.load(accounts=accounts)


def test_simulate_is_the_workbench_scores_with_ids(labelled: Path) -> None:
    bench = api.load(labelled)
    table = api.simulate(bench, iterations=2, delta_a=0.4, combine="max")
    assert table.schema.names == ["bank", "id", "initial_score", "risk_score"]
    expected = bench.scores(api.Setting(2, 0.4, 0.0, "max"))
    assert table.column("risk_score").to_pylist() == expected.tolist()
    assert table.column("initial_score").to_pylist() == bench.initial.tolist()
    assert (expected >= bench.initial).all()
    ids = [
        (b, i)
        for b, ids in zip(bench.graph.banks, bench.graph.account_ids, strict=True)
        for i in ids
    ]
    assert (
        list(zip(table.column("bank").to_pylist(), table.column("id").to_pylist(), strict=True))
        == ids
    )
    plain = api.simulate(labelled, iterations=2, delta_a=0.4)  # from the directory
    reference = api.simulate_plaintext(labelled, iterations=2, delta_a=0.4)
    assert plain.column("risk_score").to_pylist() == reference.scores.tolist()


def test_evaluate_rows_are_the_workbench_rows(labelled: Path) -> None:
    bench = api.load(labelled)
    options = api.Options(k=15)
    table = api.evaluate(bench, iterations=[1, 4], delta_a=[0.2, 0.6], options=options)
    settings = [api.Setting(0, 0.2)] + [api.Setting(t, a) for a in (0.2, 0.6) for t in (1, 4)]
    expected = [e.row() for e in bench.evaluate(settings, options)]
    assert table.num_rows == len(expected) == 10
    assert json.dumps(table.to_pylist()) == json.dumps(expected)  # NaN spelt alike
    frame = api.evaluate(labelled, iterations=1, as_pandas=True)
    assert list(frame.columns) == list(expected[0]) and len(frame) == 4


def test_evaluate_needs_labels(labelled: Path) -> None:
    accounts, transactions, _ = tables_of(labelled)
    bench = api.load(accounts=accounts, transactions=transactions)
    with pytest.raises(api.ConfigError, match="no labels"):
        api.evaluate(bench)


def test_as_pandas_without_pandas_is_a_clear_error(
    labelled: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = api.load(labelled)
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(api.ConfigError, match="as_pandas=True needs pandas"):
        api.simulate(bench, as_pandas=True)
    assert api.simulate(bench).num_rows == bench.n_accounts


def test_sweep_aggregates_and_writes_files(labelled: Path, tmp_path: Path) -> None:
    rows = api.sweep(
        api.Generated(accounts=300, edges=1500),
        iterations=[0, 2],
        delta_a=[0.3],
        combine=["plain"],
        seeds=[0, 2],
        workers=1,
        out=tmp_path / "out",
        plots=False,
    )
    assert rows.num_rows == 2 * 2
    assert {"average_precision", "average_precision_std", "seeds"} <= set(rows.schema.names)
    assert set(rows.column("seeds").to_pylist()) == {2}
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        "sweep.csv",
        "seeds.csv",
        "sweep.json",
        "recommendation.md",
    }
    fixed = api.sweep(labelled, iterations=[1], delta_a=[0.5], combine=["max"], workers=1)
    assert fixed.column("combine").to_pylist() == ["max", "max"]
    with pytest.raises(api.ConfigError, match="--seeds: 2 seeds of fixed data"):
        api.sweep(labelled, seeds=2)
    with pytest.raises(api.ConfigError, match="labels go with a data directory"):
        api.sweep(api.Generated(100, 300), labelled / "labels.csv")


def test_workbench_example_evaluates_sweeps_and_plots(tmp_path: Path) -> None:
    example = REPO / "examples" / "workbench.py"
    env = {k: v for k, v in os.environ.items() if k != "RISKPROP_AMLSIM"}
    done = subprocess.run(
        [sys.executable, str(example), "--out", str(tmp_path / "sweep")],
        check=False,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == [
        "iterations",
        "delta_a",
        "combine",
        "subset",
        "roc_auc",
        "average_precision",
    ]
    table = lines[1 : next(i for i, line in enumerate(lines) if line.startswith("sweep: "))]
    assert len(table) == 2 * 9  # the initial scores and 2 x 2 x 2 settings, on both subsets
    assert [line.split()[3] for line in table] == ["all", "unflagged"] * 9
    assert "sweep: 60 rows (settings x subsets)" in done.stdout  # 5 T x 3 a x 2 combine x 2
    assert "**Recommended: T = " in done.stdout and "Trade-off: " in done.stdout
    with Image.open(tmp_path / "sweep" / "tradeoff.png") as image:
        assert image.format == "PNG"
    assert (tmp_path / "sweep" / "average_precision_vs_T.svg").is_file()
