"""One name per parameter: new flags and keys work, old ones still work with one warning line,
and range errors name the flag or key the user wrote."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import WriteDataset

from riskprop.config import load_player_config
from riskprop.lab.synthetic import generate_dataset


def riskprop(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "riskprop", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        timeout=600,
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("names") / "data"
    generate_dataset(root, accounts=60, edges=150, seed=3)
    return root


def test_delta_is_an_alias_of_delta_a_with_a_deprecation_line(data: Path) -> None:
    new = riskprop("simulate", str(data), "-T", "2", "--delta-a", "0.3")
    old = riskprop("simulate", str(data), "-T", "2", "--delta", "0.3")
    other = riskprop("simulate", str(data), "-T", "2", "--delta-a", "0.5")
    assert new.returncode == old.returncode == other.returncode == 0, old.stderr
    assert old.stdout == new.stdout != other.stdout
    assert "--delta is deprecated; use --delta-a" in old.stderr
    assert "deprecated" not in new.stderr


def test_out_of_range_parameters_name_the_flag(data: Path) -> None:
    done = riskprop("simulate", str(data), "-T", "2", "--delta-a", "1.5")
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "riskprop: error: --delta-a: must lie strictly between 0 and 1 (got 1.5)"
    )
    done = riskprop("simulate", str(data), "-T", "1", "--secure", "--precision-bits", "60")
    assert done.returncode == 1 and "--precision-bits: must lie in 8..52 (got 60)" in done.stderr
    assert "Traceback" not in done.stderr


def test_keygen_takes_key_bits_and_the_old_bits_and_refuses_to_overwrite(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    first = riskprop("keygen", "--parties", "a,b,c", "--out", str(keys), "--key-bits", "512")
    assert first.returncode == 0, first.stderr
    assert first.stderr.count("below the production size") == 1
    public = (keys / "public.json").read_text()
    again = riskprop("keygen", "--parties", "a,b,c", "--out", str(keys), "--bits", "512")
    assert again.returncode == 1
    assert "--bits is deprecated; use --key-bits" in again.stderr
    assert "exists already" in again.stderr and "--force" in again.stderr
    assert (keys / "public.json").read_text() == public
    dealer = ("keygen", "--parties", "a,b,c", "--out", str(keys))
    forced = riskprop(*dealer, "--bits", "512", "--force")
    assert forced.returncode == 0, forced.stderr
    assert (keys / "public.json").read_text() != public


def write_player(tmp_path: Path, run: dict[str, object]) -> Path:
    configs = tmp_path / "configs"
    (tmp_path / "data" / "alice").mkdir(parents=True)
    configs.mkdir()
    network = {
        "parties": [
            {"name": "alice", "url": "http://127.0.0.1:9"},
            {"name": "bob", "url": "http://127.0.0.1:10"},
        ]
    }
    (configs / "network.yaml").write_text(yaml.safe_dump(network))
    player = {
        "player": "alice",
        "data": "../data/alice",
        "key_share": "../keys/alice.share.json",
        "output": "../out/alice",
        "listen": {"port": 9},
        "run": run,
    }
    (configs / "alice.yaml").write_text(yaml.safe_dump(player))
    return configs


def test_run_delta_in_yaml_is_read_as_delta_a_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    configs = write_player(tmp_path, {"run_id": "r1", "iterations": 2, "delta": 0.25})
    with caplog.at_level(logging.WARNING):
        config = load_player_config(configs, "alice", insecure=True, for_keygen=True)
    assert config.run.parameters.delta_a == 0.25
    assert "run.delta is deprecated; call it delta_a" in caplog.text


def test_yaml_errors_name_the_key_as_written(tmp_path: Path) -> None:
    configs = write_player(tmp_path, {"run_id": "r1", "iterations": 2, "delta": 1.5})
    done = riskprop("--player", "alice", "run", "--config", str(configs), "--insecure")
    assert done.returncode == 1
    assert "alice.yaml: run.delta: must lie strictly between 0 and 1 (got 1.5)" in done.stderr


def test_both_names_at_once_are_refused(tmp_path: Path) -> None:
    configs = write_player(
        tmp_path, {"run_id": "r1", "iterations": 2, "delta": 0.2, "delta_a": 0.3}
    )
    done = riskprop("run", "--player", "alice", "--config", str(configs), "--insecure")
    assert done.returncode == 1 and "run.delta: give delta_a only" in done.stderr


def test_player_before_run_reaches_the_run_command(tmp_path: Path) -> None:
    configs = write_player(tmp_path, {"run_id": "r1", "iterations": 2})
    done = riskprop("--player", "alice", "run", "--config", str(configs), "--insecure")
    assert done.returncode == 1
    assert "--player NAME is required" not in done.stderr
    assert "key_share: file not found" in done.stderr  # the player's file was read


@pytest.mark.parametrize(
    ("flag", "value", "key", "problem"),
    [
        ("--delta-a", "1.5", "delta_a", "must lie strictly between 0 and 1"),
        ("--delta-b", "-1", "delta_b", "must be a finite number >= 0"),
        ("--precision-bits", "7", "precision_bits", "must lie in 8..52"),
    ],
)
def test_run_overrides_every_parameter(
    tmp_path: Path, flag: str, value: str, key: str, problem: str
) -> None:
    configs = write_player(tmp_path, {"run_id": "r1", "iterations": 2})
    done = riskprop("run", "--player", "alice", "--config", str(configs), "--insecure", flag, value)
    assert done.returncode == 1
    assert f"run.{key} (override): {problem}" in done.stderr


def test_run_overrides_reach_the_configuration(tmp_path: Path) -> None:
    configs = write_player(tmp_path, {"run_id": "r1", "iterations": 2})
    overrides = {"iterations": 7, "delta_a": 0.2, "delta_b": 0.5, "precision_bits": 40}
    config = load_player_config(
        configs, "alice", overrides=overrides, insecure=True, for_keygen=True
    )
    parameters = config.run.parameters
    assert (parameters.iterations, parameters.delta_a) == (7, 0.2)
    assert (parameters.delta_b, parameters.precision_bits) == (0.5, 40)


def test_verbose_simulate_says_what_it_did(dataset: WriteDataset) -> None:
    root = dataset({"alice": ([("a1", 0.5)], []), "bob": ([("b1", 0.1)], [])})
    quiet = riskprop("simulate", str(root), "-T", "1")
    loud = riskprop("-vv", "simulate", str(root), "-T", "1")
    assert quiet.returncode == loud.returncode == 0
    assert quiet.stderr == ""
    assert "loaded" in loud.stderr and "propagated 1 iteration(s)" in loud.stderr
    assert loud.stdout == quiet.stdout
