"""``generate --raw``: raw files readable, shared transactions in both banks, typologies labelled
and caught by the default rules, deterministic, and scored files propagate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from riskprop.cli import cli
from riskprop.files.layout import read_labels
from riskprop.lab.rawgen import generate_raw
from riskprop.lab.simulate import simulate_plaintext
from riskprop.scoring.raw import RawTransactions, read_raw
from riskprop.scoring.rules import Scored, default_rules_path, load_rules, score

BANKS = ("alice", "bob", "charlie")


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("raw") / "data"
    result = CliRunner().invoke(
        cli,
        ["generate", str(out), "--raw", "--accounts", "1200", "--transactions", "6000",
         "--days", "20", "--seed", "7"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return out


def _raws(out: Path) -> dict[str, RawTransactions]:
    return {bank: read_raw(out / bank / "raw.csv") for bank in BANKS}


def test_files_read_and_shared_transactions_are_in_both_banks(made: Path) -> None:
    raws = _raws(made)
    for bank, raw in raws.items():
        assert raw.n > 0
        assert np.all(raw.source_bank.equals(bank) | raw.target_bank.equals(bank))
        assert {"wire", "card", "cash", "ach"} <= set(raw.kind.tolist())
        assert 0 < np.mean(raw.status.equals("failed")) < 0.1
    a, b = raws["alice"], raws["bob"]
    cross = a.source_bank.equals("bob") | a.target_bank.equals("bob")
    assert cross.any()
    in_b = dict(zip(b.tx_id.tolist(), range(b.n), strict=True))
    for i in np.flatnonzero(cross).tolist():
        j = in_b[a.tx_id[i]]
        assert (a.time[i], a.source[i], a.target[i], a.amount[i]) == (
            b.time[j],
            b.source[j],
            b.target[j],
            b.amount[j],
        )
    assert int(a.utc_offset[0]) != int(b.utc_offset[0])  # each bank writes its own offset


def _fired(scored: Scored, rule: str) -> set[str]:
    return set(scored.accounts[scored.contributions[rule] > 0].tolist())


def test_typology_accounts_are_labelled_and_caught_by_default_rules(made: Path) -> None:
    labels = read_labels(made / "labels.csv")
    rules = load_rules(default_rules_path())
    caught: dict[str, set[str]] = {}
    bad: set[str] = set()
    for bank, raw in _raws(made).items():
        scored = score(raw, bank, rules)
        for rule in ("cash_structuring", "pass_through", "fan_in", "fan_out"):
            caught.setdefault(rule, set()).update(_fired(scored, rule))
        caught.setdefault("high_risk_jurisdiction", set()).update(
            _fired(scored, "high_risk_jurisdiction")
        )
        bad |= {a for (b, a), flag in labels.items() if b == bank and flag}
        hostile = raw.source_country.isin(["KP", "IR"]) | raw.target_country.isin(["KP", "IR"])
        hostile_accounts = set(raw.source[hostile].tolist()) | set(raw.target[hostile].tolist())
        caught.setdefault("hostile", set()).update(hostile_accounts & bad)
    assert bad
    assert caught["hostile"] == caught["high_risk_jurisdiction"]
    for rule in ("cash_structuring", "fan_in", "fan_out", "high_risk_jurisdiction"):
        assert caught[rule], rule
        assert caught[rule] <= bad, rule  # background never looks like these typologies
    assert caught["pass_through"] & bad
    # every laundering account is caught by one of the typology rules
    assert bad <= set().union(*caught.values())


def test_deterministic_per_seed(tmp_path: Path) -> None:
    def files(out: Path, seed: int) -> list[bytes]:
        generate_raw(out, banks=BANKS, accounts=300, transactions=500, days=5, seed=seed)
        return [(out / b / "raw.csv").read_bytes() for b in BANKS] + [
            (out / "labels.csv").read_bytes()
        ]

    assert files(tmp_path / "a", 3) == files(tmp_path / "b", 3)
    assert files(tmp_path / "a", 3) != files(tmp_path / "c", 4)


def test_scored_banks_propagate(made: Path, tmp_path: Path) -> None:
    data = tmp_path / "scored"
    for bank in BANKS:
        result = CliRunner().invoke(
            cli,
            ["score", str(made / bank / "raw.csv"), "--bank", bank, "--out", str(data),
             "--period-length", "7d", "--period-start", "2025-12-31"],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
    run = simulate_plaintext(data, iterations=2)
    assert run.banks == BANKS
    assert np.all((run.scores >= 0) & (run.scores <= 1))
    scores = run.by_account()
    labels = read_labels(made / "labels.csv")
    bad = [scores[key] for key, flag in labels.items() if flag]
    good = [scores[key] for key, flag in labels.items() if not flag]
    assert np.mean(bad) > np.mean(good)
