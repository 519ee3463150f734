"""``scripts/compare_rules.py``: the three variants are what they say (rules alone is
``max(rule, flag)`` at T = 0, propagation alone starts from the flags only, rules +
propagation from ``max(rule, flag)``), on small generated raw data and a small AMLworld file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from helpers import REPO, loaded_script

from riskprop.core.plaintext import PreparedPeriod, step
from riskprop.core.types import FloatArray
from riskprop.lab.amlworld import HEADER
from riskprop.lab.evaluate import Options, measure

SCRIPT = REPO / "scripts" / "compare_rules.py"

AMLWORLD_ROWS = [
    "2022/09/01 10:00,001,A1,002,B1,12000.00,US Dollar,12000.00,US Dollar,Cash,1",
    "2022/09/01 11:00,002,B1,003,C1,11500.00,US Dollar,11500.00,US Dollar,Wire,1",
    "2022/09/01 12:00,003,C2,001,A2,40.00,US Dollar,40.00,US Dollar,ACH,0",
    "2022/09/02 12:00,001,A2,002,B2,34.00,Euro,34.00,Euro,ACH,0",
    "2022/09/03 12:00,002,B2,003,C2,70.00,US Dollar,70.00,US Dollar,Cheque,0",
    "2022/09/03 13:00,003,C3,003,C3,70.00,US Dollar,70.00,US Dollar,Reinvestment,1",
    "2022/09/04 12:00,003,C3,001,A1,25.00,US Dollar,25.00,US Dollar,ACH,0",
]


@pytest.fixture(scope="module")
def script() -> Iterator[ModuleType]:
    with loaded_script(SCRIPT) as module:
        yield module


@pytest.fixture(scope="module")
def generated(script: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Any:
    work = tmp_path_factory.mktemp("generated")
    return script.score_generated(1, work, accounts=600, transactions=6000, days=5)


def by_hand(initial: FloatArray, period: PreparedPeriod, iterations: int, a: float) -> FloatArray:
    """``iterations`` plaintext steps with ``delta_k = a`` (``delta_b = 0``)."""
    scores = initial
    for _ in range(iterations):
        scores = step(period, scores, a)
    return scores


def test_variants_are_their_definitions(script: ModuleType, generated: Any) -> None:
    data = generated
    labels, rules = data.labels, data.rules
    assert 0 < labels.sum() < len(labels) and rules.max() > 0.5 and rules.min() >= 0.0
    flags = script.draw_flags(labels, 3, 0.5)
    assert flags.sum() == round(0.5 * labels.sum()) and not (flags & ~labels).any()
    assert not np.array_equal(flags, script.draw_flags(labels, 4, 0.5))
    found = script.variant_scores(data, flags)
    assert set(found) == set(script.VARIANTS)
    (period,) = data.graph.incoming
    prepared = PreparedPeriod.from_csr(period)
    start = {"flags": flags.astype(float), "rules": np.maximum(rules, flags)}
    for variant, scores in found.items():
        initial = start[variant.seeded_by]
        want = by_hand(initial, prepared, variant.iterations, variant.delta_a)
        if variant.combine == "max":
            want = np.maximum(initial, want)
        else:
            assert variant.combine == "plain"
        np.testing.assert_allclose(scores, want, rtol=0, atol=1e-12)
    alone = {v.name: found[v] for v in script.VARIANTS if v.iterations == 0}
    np.testing.assert_array_equal(alone["rules alone"], np.maximum(rules, flags))
    np.testing.assert_array_equal(alone["flags alone"], flags.astype(float))
    assert alone["rules alone"][flags].min() == 1.0
    assert {v.combine for v in script.VARIANTS} == {"plain", "max"}


def test_rows_measure_both_subsets_with_k_the_positives(script: ModuleType, generated: Any) -> None:
    data = generated
    labels = data.labels
    rows = script.measure_seed(data, 2, 0.3)
    assert len(rows) == 2 * len(script.VARIANTS)
    flags = script.draw_flags(labels, 2, 0.3)
    unflagged = [r for r in rows if r["subset"] == "unflagged"]
    assert {r["accounts"] for r in unflagged} == {len(labels) - int(flags.sum())}
    assert {r["positives"] for r in unflagged} == {int((labels & ~flags).sum())}
    assert all(r["k"] == r["positives"] for r in rows)
    (rules_alone,) = [r for r in unflagged if r["variant"] == "rules alone"]
    mask = ~flags
    want = measure(data.rules[mask], labels[mask], Options(k=rules_alone["k"]))
    assert rules_alone["roc_auc"] == want["roc_auc"]
    assert rules_alone["average_precision"] == want["average_precision"]
    (flags_alone,) = [r for r in unflagged if r["variant"] == "flags alone"]
    assert flags_alone["roc_auc"] == 0.5  # every unflagged account scores 0


def test_amlworld_banks_and_labels_are_the_importers(script: ModuleType, tmp_path: Path) -> None:
    layout = tmp_path / "aml.csv"
    layout.write_text("\n".join([",".join(HEADER), *AMLWORLD_ROWS]) + "\n", encoding="utf-8")
    data = script.score_amlworld(layout, tmp_path / "work")
    assert data.graph.banks == ("001", "002", "003")
    ids = [a for bank in data.graph.account_ids for a in bank]
    laundering = {a for a, bad in zip(ids, data.labels, strict=True) if bad}
    # every account of a row marked 1, the self-transfer's too
    assert laundering == {"001:A1", "002:B1", "003:C1", "003:C3"}
    rules = dict(zip(ids, data.rules, strict=True))
    assert rules["001:A1"] >= 0.5 and rules["002:B1"] >= 0.5  # cash at the threshold
    assert rules["003:C2"] < 0.5
    assert data.fired["cash_threshold"] == (2, 2)  # A1 and B1, both laundering
    assert data.fired["high_risk_jurisdiction"] == (0, 0)  # AMLworld has no countries


def test_main_prints_the_tables_and_writes_rows(
    script: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "rows.json"
    args = ["--data", "generated", "--seeds", "2", "--accounts", "300", "--transactions", "2000"]
    assert script.main([*args, "--days", "5", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "generated, 2 seeds:" in text and "| rules alone (T = 0) |" in text
    assert "| rules + propagation, T = 8, a = 0.1 |" in text
    assert "rules fire on (laundering among them): cash_threshold " in text
    rows = json.loads(out.read_text(encoding="utf-8"))
    assert len(rows) == 2 * 2 * len(script.VARIANTS)
    assert {r["seed"] for r in rows} == {0, 1}
    with pytest.raises(SystemExit):
        script.main(["--data", "nothing"])
