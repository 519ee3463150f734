"""``riskprop demo`` (``riskprop.localnet.demo``): one node process per bank over mutual TLS on
loopback, a dealerless key made once and cached, results equal to the plaintext engine's."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from riskprop.cli import cli
from riskprop.files.keys import PUBLIC_FILE, load_public
from riskprop.files.results import RESULTS_FILE, read_report
from riskprop.localnet.demo import demo_keys


def test_demo_runs_secure_protocol_and_matches_plaintext(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    args = ["demo", "--key-bits", "512", "--out", "out", "-T", "2"]  # relative, as the default
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "results in" in result.output
    differences = []
    for line in result.output.splitlines():
        parts = line.split()
        if parts and parts[0] in {"alice", "bob", "charlie"}:
            differences.append(float(parts[-1]))
    assert len(differences) == 3 and max(differences) < 1e-7
    assert "dealerless, generated in" in result.output
    # what the nodes leave is kept: their logs, the configuration they ran with, their reports
    assert (out / "configs" / "network.yaml").is_file()
    for bank in ("alice", "bob", "charlie"):
        assert "results in" in (out / "logs" / f"{bank}.log").read_text()
        assert (out / "configs" / f"{bank}.yaml").is_file()
        report = read_report(out / bank)
        assert report.player == bank and report.results == out / bank / RESULTS_FILE
    # keys are cached: a second run reuses them
    keys = list((tmp_path / "cache" / "riskprop" / "keys").iterdir())
    assert len(keys) == 1 and keys[0].name.endswith("-distributed")
    fingerprint = json.loads((keys[0] / "public.json").read_text())["fingerprint"]
    rerun = CliRunner().invoke(cli, args)
    assert rerun.exit_code == 0, rerun.output
    assert "dealerless, cached" in rerun.output
    assert list((tmp_path / "cache" / "riskprop" / "keys").iterdir()) == keys
    # --keygen distributed given explicitly: a fresh key, timed
    fresh = CliRunner().invoke(cli, [*args, "--keygen", "distributed"])
    assert fresh.exit_code == 0, fresh.output
    assert "dealerless, generated in" in fresh.output
    assert json.loads((keys[0] / "public.json").read_text())["fingerprint"] != fingerprint
    dealt = CliRunner().invoke(cli, [*args, "--keygen", "dealer"])
    assert dealt.exit_code == 0, dealt.output
    assert "trusted-dealer, generated in" in dealt.output
    for bank in ("alice", "bob", "charlie"):
        with (out / bank / "risk_scores.csv").open() as handle:
            rows = list(csv.DictReader(handle))
        assert rows and all(0.0 <= float(r["risk_score"]) <= 1.0 for r in rows)


def test_a_cached_key_of_an_older_format_is_made_anew(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A demo key cached by a version without verification keys is replaced, not used."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    parties = ("alice", "bob", "charlie")
    made = demo_keys(parties, 512, "dealer")
    assert made.seconds is not None and demo_keys(parties, 512, "dealer").seconds is None
    public = made.directory / PUBLIC_FILE
    old = json.loads(public.read_text())
    old["format"] = "riskprop-threshold-paillier/1"
    del old["verification_keys"], old["verification_base"]
    public.write_text(json.dumps(old))
    again = demo_keys(parties, 512, "dealer")
    assert again.seconds is not None  # made anew
    assert load_public(public).verification  # and of the current format
