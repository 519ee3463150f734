"""Node configuration: the shipped set loads, every mistake is one line naming file and key."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from riskprop.config import load_player_config
from riskprop.errors import ConfigError
from riskprop.keys import dealer_keygen
from riskprop.synthetic import generate_dataset
from riskprop.tls import make_ca, make_node_certificate

REPO = Path(__file__).resolve().parent.parent
PARTIES = ("alice", "bob", "charlie")


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of configs/ beside a `local/` made as scripts/setup_local.py makes it."""
    root = tmp_path_factory.mktemp("repo")
    shutil.copytree(REPO / "configs", root / "configs")
    certs = root / "local" / "certs"
    ca = make_ca(certs)
    for name in PARTIES:
        make_node_certificate(certs, name, ca_cert=ca[0], ca_key=ca[1])
    dealer_keygen(root / "local" / "keys", PARTIES, 1, 512)
    generate_dataset(root / "local" / "data", accounts=30, edges=60, banks=PARTIES)
    return root


@pytest.fixture
def configs(local: Path, tmp_path: Path) -> Path:
    """A fresh, editable copy of the config directory (its paths still reach `local/`)."""
    target = local / f"configs-{tmp_path.name}"
    shutil.copytree(local / "configs", target)
    return target


def edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_shipped_configs_load(local: Path) -> None:
    for name in PARTIES:
        config = load_player_config(local / "configs", name)
        assert config.player == name
        assert config.network.names == PARTIES
        assert config.data == (local / "local" / "data" / name).resolve()
        assert config.key_share.is_file() and config.tls_certificate is not None
        assert config.run.iterations == 3 and config.run.periods == (0,)
        assert config.listen_port == 8441 + PARTIES.index(name)


def test_compose_configs_are_consistent() -> None:
    for name in PARTIES:
        player = yaml.safe_load((REPO / "configs" / "compose" / f"{name}.yaml").read_text())
        local = yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())
        assert player["player"] == name
        assert player["run"] == {**local["run"], "run_id": player["run"]["run_id"]}
    network = yaml.safe_load((REPO / "configs" / "compose" / "network.yaml").read_text())
    assert [p["url"] for p in network["parties"]] == [
        f"https://{n}:{8441 + i}" for i, n in enumerate(PARTIES)
    ]


def test_overrides_apply(configs: Path, tmp_path: Path) -> None:
    config = load_player_config(
        configs,
        "bob",
        overrides={
            "port": 9000,
            "run_id": "other-1",
            "out": str(tmp_path),
            "iterations": 5,
            "data": None,
        },
    )
    assert config.listen_port == 9000 and config.run.run_id == "other-1"
    assert config.output == tmp_path.resolve() and config.run.iterations == 5


def test_periods_as_count(configs: Path) -> None:
    edit(configs / "alice.yaml", lambda d: d["run"].update(periods=3))
    assert load_player_config(configs, "alice").run.periods == (0, 1, 2)


def set_in(*keys: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        target = data
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        target[keys[-1]] = value

    return change


def drop(*keys: str) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        target = data
        for key in keys[:-1]:
            target = target[key]
        del target[keys[-1]]

    return change


PLAYER_ERRORS = [
    (set_in("colour", value="blue"), "alice.yaml: colour: unknown key"),
    (drop("data"), "alice.yaml: data: missing"),
    (set_in("player", value="bob"), "alice.yaml: player: file is for 'bob'"),
    (set_in("run", "iterations", value="three"), "alice.yaml: run.iterations: expected an integer"),
    (set_in("run", "iterations", value=True), "alice.yaml: run.iterations: expected an integer"),
    (set_in("run", "iterations", value=-1), "alice.yaml: run.iterations: must be >= 0"),
    (set_in("run", "delta", value=1.5), "alice.yaml: run.delta: must lie strictly between"),
    (set_in("run", "run_id", value="a b"), "alice.yaml: run.run_id:"),
    (set_in("run", "periods", value=[1, 1]), "alice.yaml: run.periods: periods must be distinct"),
    (set_in("run", "precision_bits", value=60), "alice.yaml: run.precision_bits: must lie"),
    (set_in("listen", "port", value=70000), "alice.yaml: listen.port: must lie in 1..65535"),
    (set_in("listen", "speed", value=1), "alice.yaml: listen.speed: unknown key"),
    (set_in("timeouts", "connect", value=0), "alice.yaml: timeouts.connect: must be > 0"),
    (set_in("data", value="../nowhere"), "alice.yaml: data: directory not found"),
    (set_in("key_share", value="../nowhere.json"), "alice.yaml: key_share: file not found"),
    (set_in("tls", "key", value="../nowhere.key"), "alice.yaml: tls.key: file not found"),
    (set_in("run", value=[1, 2]), "alice.yaml: run: expected a mapping, got list"),
]


@pytest.mark.parametrize(("change", "message"), PLAYER_ERRORS)
def test_player_file_errors(
    configs: Path, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    edit(configs / "alice.yaml", change)
    with pytest.raises(ConfigError) as error:
        load_player_config(configs, "alice")
    text = str(error.value)
    assert message in text and "\n" not in text, text


def add_party(data: dict[str, Any]) -> None:
    data["parties"].append({"name": "alice", "url": "https://127.0.0.1:9999"})


NETWORK_ERRORS = [
    (add_party, "network.yaml: parties[3].name: duplicate party 'alice'"),
    (
        set_in(
            "parties",
            value=[
                {"name": "bob", "url": "https://h:1"},
                {"name": "charlie", "url": "https://h:2"},
            ],
        ),
        "network.yaml: parties: 'alice' is not listed",
    ),
    (
        lambda d: d["parties"][0].update(url="http://127.0.0.1:8441"),
        "network.yaml: parties[0].url: URL 'http://127.0.0.1:8441' must start with https://",
    ),
    (
        lambda d: d["parties"][0].update(url="https://127.0.0.1"),
        "network.yaml: parties[0].url: URL 'https://127.0.0.1' needs a host and a port",
    ),
    (lambda d: d["parties"][0].update(name="al ice"), "network.yaml: parties[0].name:"),
    (drop("ca"), "network.yaml: ca: missing"),
    (
        lambda d: d["parties"][1].update(certificate="../nope.pem"),
        "network.yaml: parties[1].certificate: file not found",
    ),
]


@pytest.mark.parametrize(("change", "message"), NETWORK_ERRORS)
def test_network_file_errors(
    configs: Path, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    edit(configs / "network.yaml", change)
    with pytest.raises(ConfigError) as error:
        load_player_config(configs, "alice")
    assert message in str(error.value), str(error.value)


def test_missing_and_malformed_files(configs: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"dave\.yaml: configuration file not found"):
        load_player_config(configs, "dave")
    with pytest.raises(ConfigError, match="configuration directory not found"):
        load_player_config(tmp_path / "nowhere", "alice")
    (configs / "alice.yaml").write_text("player: [unclosed\n")
    with pytest.raises(ConfigError, match=r"alice\.yaml: not valid YAML at line \d"):
        load_player_config(configs, "alice")
    (configs / "alice.yaml").write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match=r"alice\.yaml: top level: expected a mapping"):
        load_player_config(configs, "alice")


def test_insecure_allows_http_without_tls(configs: Path) -> None:
    edit(
        configs / "network.yaml",
        lambda d: [p.update(url=p["url"].replace("https", "http")) for p in d["parties"]],
    )
    edit(configs / "alice.yaml", drop("tls"))
    with pytest.raises(ConfigError):
        load_player_config(configs, "alice")
    config = load_player_config(configs, "alice", insecure=True)
    assert config.insecure and config.tls_certificate is None
