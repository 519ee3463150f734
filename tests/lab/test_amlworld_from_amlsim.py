"""``scripts/amlworld_from_amlsim.py``: the AMLSim sample in AMLworld's layout imports cleanly
with ``riskprop import amlworld``, and its laundering labels are AMLSim's fraud flags."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from helpers import REPO, loaded_script, require_amlsim_sample

from riskprop.files.layout import read_labels
from riskprop.lab.amlworld import HEADER, import_amlworld

SCRIPT = REPO / "scripts" / "amlworld_from_amlsim.py"
#: The first rows of the sample (its first 30 days): 164 of them between two fraud accounts.
ROWS = 10_000
BANKS = ("alice", "bob", "charlie")


@pytest.fixture(scope="module")
def converter() -> Iterator[ModuleType]:
    with loaded_script(SCRIPT) as module:
        yield module


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every node of the AMLSim sample and its first :data:`ROWS` transactions."""
    src = require_amlsim_sample()
    out = tmp_path_factory.mktemp("amlsim")
    (out / "nodes.csv").write_bytes((src / "nodes.csv").read_bytes())
    with (src / "transactions.csv").open(encoding="utf-8") as handle:
        lines = [next(handle) for _ in range(ROWS + 1)]
    (out / "transactions.csv").write_text("".join(lines), encoding="utf-8")
    return out


def read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_layout_imports_with_amlsims_fraud_flags_as_labels(
    converter: ModuleType, sample: Path, tmp_path: Path
) -> None:
    layout = tmp_path / "aml.csv"
    conversion: Any = converter.convert(sample, layout)
    with layout.open(newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle))
    assert tuple(header) == HEADER

    summary = import_amlworld(layout, tmp_path / "data", banks=BANKS, period_length="30d")

    # expected from AMLSim's own columns: a fraud account is laundering when it deals with
    # another fraud account; a clean account never is
    fraud = {row["nodeid"] for row in read(sample / "nodes.csv") if row["isFraud"] == "1"}
    transactions = read(sample / "transactions.csv")
    dealing = {
        node
        for row in transactions
        if row["sourceNodeId"] in fraud and row["targetNodeId"] in fraud
        for node in (row["sourceNodeId"], row["targetNodeId"])
    }
    appearing = {row[c] for row in transactions for c in ("sourceNodeId", "targetNodeId")}
    assert 0 < len(dealing) < len(fraud & appearing)  # some fraud accounts deal only with clean

    def account(node: str) -> str:
        j = int(converter.bank_of(np.array([int(node)]), converter.DEFAULT_BANKS)[0])
        return f"{converter.bank_id(j)}:{converter.account_number(int(node))}"

    node_of = {account(node): node for node in appearing}
    assert len(node_of) == len(appearing)  # the ids are one to one
    labels = read_labels(tmp_path / "data" / "labels.csv")
    assert {node_of[i] for (_, i) in labels} == appearing
    laundering = {node_of[i] for (_, i), flag in labels.items() if flag}
    assert laundering == dealing
    assert laundering <= fraud
    assert summary.laundering_accounts == conversion.laundering_accounts == len(dealing)
    assert conversion.fraud_accounts == len(fraud)

    # the layout's dealing: 30 bank ids of unequal size onto 3 parties, several periods
    assert len(summary.party_of_bank) == converter.DEFAULT_BANKS
    assert set(summary.party_of_bank.values()) == set(BANKS)
    assert summary.accounts == len(appearing)
    self_loops = sum(row["sourceNodeId"] == row["targetNodeId"] for row in transactions)
    assert summary.self_transfers == self_loops > 0
    assert summary.transactions == ROWS - self_loops
    assert summary.periods > 1

    # amounts come back in US dollars within a cent (euro rows convert there and back); each
    # bank's file lists the transactions touching it, so count every one at its payer's bank
    imported = sorted(
        float(row["amount"])
        for bank in BANKS
        for row in read(tmp_path / "data" / bank / "transactions.csv")
        if row["bank_source"] == bank
    )
    original = sorted(
        float(row["value"]) for row in transactions if row["sourceNodeId"] != row["targetNodeId"]
    )
    assert np.abs(np.array(imported) - np.array(original)).max() <= 0.01 + 1e-9


def test_conversion_is_deterministic(converter: ModuleType, sample: Path, tmp_path: Path) -> None:
    converter.convert(sample, tmp_path / "a.csv")
    converter.convert(sample, tmp_path / "b.csv")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def test_bad_input_is_one_line_and_writes_nothing(
    converter: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "amlsim"
    src.mkdir()
    (src / "nodes.csv").write_text("nodeid,isFraud,init_balance,fraudStep\n0,1,1.0,-1\n")
    (src / "transactions.csv").write_text(
        "sourceNodeId,targetNodeId,value,time\n0,0,5.0,1\n0,7,5.0,2\n"
    )
    out = tmp_path / "aml.csv"
    assert converter.main([str(src), str(out)]) == 1
    err = capsys.readouterr().err
    assert (
        err == f"error: {src / 'transactions.csv'}:3: targetNodeId 7 is not a nodeid of nodes.csv\n"
    )
    assert not out.exists()
