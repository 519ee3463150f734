"""``riskprop demo --raw``: generated raw transactions, each bank scored by the default rules,
the secure run on the scored data equal to the plaintext engine's, and the top accounts shown
with the rules that fired; planted launderers among them."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from riskprop.cli import cli, main
from riskprop.core.data import load_dataset
from riskprop.core.graph import build_global
from riskprop.core.params import RunParameters
from riskprop.core.plaintext import propagate
from riskprop.errors import ConfigError
from riskprop.files.layout import read_labels
from riskprop.files.results import RESULTS_FILE, read_scores
from riskprop.localnet.demo import run_demo
from riskprop.localnet.rawdemo import RawSpec, score_raw

BANKS = ("alice", "bob", "charlie")


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_raw_demo_scores_propagates_securely_and_explains_the_top_accounts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "out"
    args = ["demo", "--raw", "--key-bits", "512", "--keygen", "dealer", "-T", "2", "--out", out]
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()

    # the secure result equals the plaintext engine's on the scored data set
    differences = [float(ln.split()[-1]) for ln in lines if ln.split()[:1] in ([b] for b in BANKS)]
    assert len(differences) == 3 and max(differences) < 1e-7
    dataset = load_dataset(out / "data")
    assert dataset.names == BANKS
    graph = build_global(dataset)
    parameters = RunParameters(2, periods=tuple(graph.periods))
    reference = propagate(graph, parameters.schedule, parameters.iterations)
    secure = {}
    for index, held in enumerate(dataset.banks):
        name = dataset.names[index]
        scores = read_scores(out / name / RESULTS_FILE, held.account_ids)
        lo, hi = int(graph.offsets[index]), int(graph.offsets[index + 1])
        assert np.max(np.abs(scores - reference[lo:hi])) < 1e-7
        secure[name] = dict(zip(held.account_ids, scores.tolist(), strict=True))
        # the nodes ran on the rules' scores: accounts.csv is what the rules wrote
        assert any(score > 0 for score in held.initial.tolist())

    # per bank: alerts and the top accounts, each with the rules that fired
    labels = read_labels(out / "raw" / "labels.csv")
    raw_ids = {b: {r["tx_id"]: r for r in rows(out / "raw" / b / "raw.csv")} for b in BANKS}
    for bank in BANKS:
        alerts = len(rows(out / "data" / bank / "alerts.csv"))
        assert any(ln.startswith(f"{bank}: ") and f"{alerts} alerts" in ln for ln in lines)
        r0 = {r["id"]: float(r["risk_score"]) for r in rows(out / "data" / bank / "accounts.csv")}
        fired: dict[str, set[str]] = {}
        for row in rows(out / "data" / bank / "explanations.csv"):
            fired.setdefault(row["account"], set()).add(row["rule"])
        shown = [ln.split() for ln in lines if ln.startswith(f"  {bank}-")]
        assert len(shown) == 5
        ranked = sorted(secure[bank].values(), reverse=True)[:5]
        assert [float(s[2]) for s in shown] == pytest.approx(ranked, abs=5e-4)
        laundering = 0
        for account, rule_score, _, level, *rest in shown:
            assert float(rule_score) == pytest.approx(r0[account], abs=5e-4)
            assert level in {"LOW", "MEDIUM", "HIGH", "CRITICAL"}
            marked = rest[:1] == ["yes"]
            assert marked == labels[(bank, account)]
            laundering += marked
            named = [word for word in rest if word in fired.get(account, set())]
            assert named and set(named) <= fired[account]  # explained by rules that fired
            # an example transaction id shown is a raw transaction of that account
            example = next(w.strip("(),") for w in rest if w.startswith("(T"))
            assert account in (raw_ids[bank][example]["source"], raw_ids[bank][example]["target"])
        assert laundering >= 1, shown  # planted launderers rank among the top
    assert "explanations.csv" in result.output


def test_raw_and_data_together_is_one_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--raw", "--data", str(tmp_path), "--key-bits", "512", "--out", str(out)])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--raw or --data, not both" in err[0], err
    assert not out.exists()
    with pytest.raises(ConfigError, match="not both"):  # the library refuses it too
        run_demo(
            data=tmp_path,
            parameters=RunParameters(1),
            key_bits=512,
            out=out,
            parties=3,
            raw=RawSpec(),
        )
    assert not out.exists()


def test_raw_data_of_other_banks_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    spec = RawSpec(accounts_per_bank=100, transactions_per_bank=300)
    made = score_raw(tmp_path, BANKS, spec)
    assert made.laundering and set(made.banks) == set(BANKS)
    periods = {r["period"] for b in BANKS for r in rows(tmp_path / "data" / b / "transactions.csv")}
    assert periods == {"0"}  # one 30-day period from the same start for every bank
    before = (tmp_path / "raw" / "alice" / "raw.csv").read_bytes()
    with pytest.raises(ConfigError, match="'charlie'"):
        score_raw(tmp_path, ("alice", "bob"), RawSpec(accounts_per_bank=100, seed=2))
    assert (tmp_path / "raw" / "alice" / "raw.csv").read_bytes() == before
