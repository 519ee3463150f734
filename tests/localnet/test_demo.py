"""``riskprop demo`` (``riskprop.localnet.demo``): one node process per bank over mutual TLS on
loopback, a dealerless key made once and cached, results equal to the plaintext engine's."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from riskprop.cli import cli
from riskprop.core.params import RunParameters
from riskprop.errors import RiskpropError
from riskprop.files.keys import PUBLIC_FILE, load_public
from riskprop.files.results import RESULTS_FILE, read_report, read_scores
from riskprop.localnet.demo import DemoReport, demo_keys, follow_nodes, last_line, run_demo


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


class Recorder:
    """A demo watcher that records what it hears."""

    def __init__(self) -> None:
        self.events: list[tuple[object, ...]] = []
        self.admin: dict[str, str] = {}

    def stage(self, stage: str, detail: str = "") -> None:
        self.events.append(("stage", stage))

    def begin(self, banks: Sequence[str], *, key_bits: int, iterations: int) -> None:
        self.events.append(("begin", tuple(banks), key_bits, iterations))

    def keygen(self, bank: str, state: str, seconds: float | None = None, detail: str = "") -> None:
        self.events.append(("keygen", bank, state))

    def nodes(self, admin: Mapping[str, str], run_id: str) -> None:
        self.admin = dict(admin)
        self.events.append(("nodes", run_id))

    def node_exited(self, bank: str, code: int, seconds: float) -> None:
        self.events.append(("exited", bank, code))

    def finished(self, report: DemoReport) -> None:
        self.events.append(("finished",))


def test_a_watched_demo_tells_each_step_and_gives_every_node_an_admin_listener(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    banks = ("alice", "bob", "charlie")
    demo_keys(banks, 512, "dealer")  # cached before the demo
    watch = Recorder()
    out = tmp_path / "out"
    report = run_demo(
        data=None,
        parameters=RunParameters(2),
        key_bits=512,
        out=out,
        parties=3,
        keygen="dealer",
        watch=watch,
        workers=2,
    )
    events = watch.events
    assert [e[1] for e in events if e[0] == "stage"] == [
        "preparing",
        "preparing",
        "keygen",
        "running",
        "comparing",
    ]
    assert ("begin", banks, 512, 2) in events
    assert [e for e in events if e[0] == "keygen"] == [("keygen", b, "cached") for b in banks]
    assert sorted(e for e in events if e[0] == "exited") == [("exited", b, 0) for b in banks]
    assert events[-1] == ("finished",)
    run_id = next(e[1] for e in events if e[0] == "nodes")
    assert all(read_report(out / b).run_id == run_id for b in banks)
    # every node's configuration names its admin listener: a loopback port of its own
    ports = set()
    for bank in banks:
        player = yaml.safe_load((out / "configs" / f"{bank}.yaml").read_text())
        assert player["admin"] == {"host": "127.0.0.1", "port": player["admin"]["port"]}
        assert player["compute"] == {"workers": 2}  # demo --workers: each node's
        assert watch.admin[bank] == f"http://127.0.0.1:{player['admin']['port']}"
        ports |= {player["admin"]["port"], player["listen"]["port"]}
    assert len(ports) == 2 * len(banks)
    # per bank its highest secure scores, next to the plaintext engine's
    for bank in banks:
        top = report.top[bank]
        assert len(top) == 5
        secure = [score for _, score, _ in top]
        assert secure == sorted(secure, reverse=True)
        assert all(abs(score - plain) < 1e-6 for _, score, plain in top)
        ids = [row.split(",")[0] for row in (out / bank / RESULTS_FILE).read_text().split()[1:]]
        scores = dict(zip(ids, read_scores(out / bank / RESULTS_FILE, ids).tolist(), strict=True))
        assert max(scores.values()) == secure[0]
        assert all(scores[account] == score for account, score, _ in top)


def test_followed_nodes_report_each_end_and_a_failure_stops_the_rest(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "bad.log").write_text("12:00:00 INFO starting\n12:00:01 ERROR bad: it broke\n")
    (logs / "slow.log").write_text("")
    processes = {
        "bad": subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5); exit(3)"]),
        "slow": subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]),
    }
    heard: list[tuple[str, int | None]] = []
    with pytest.raises(RiskpropError, match="node bad failed: 12:00:01 ERROR bad: it broke"):
        follow_nodes(processes, logs, 60.0, lambda name, code, _: heard.append((name, code)))
    assert ("bad", 3) in heard and ("slow", None) in heard
    assert processes["slow"].returncode is not None  # stopped, not left behind
    assert last_line(logs / "bad.log") == "bad: it broke"
    assert last_line(logs / "slow.log") == "" and last_line(logs / "missing.log") == ""
