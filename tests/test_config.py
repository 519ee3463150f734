"""Node configuration: the shipped set loads, every mistake is one line naming file and key."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from riskprop.config import ComputeSettings, PlayerConfig, Timeouts, load_player_config
from riskprop.core.fixedpoint import DEFAULT_PRECISION_BITS
from riskprop.core.params import RunParameters
from riskprop.errors import ConfigError
from riskprop.localnet.setup import setup_local

REPO = Path(__file__).resolve().parent.parent
PARTIES = ("alice", "bob", "charlie")


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of configs/ beside a `local/` made by ``setup_local`` (512-bit key)."""
    root = tmp_path_factory.mktemp("repo")
    shutil.copytree(REPO / "configs", root / "configs")
    made = setup_local(root / "local", PARTIES, key_bits=512, accounts=30, edges=60, seed=1)
    assert len(made) == len(PARTIES) + 3  # a CA, the certificates, the key and the data
    return root


@pytest.fixture
def configs(local: Path, tmp_path: Path) -> Path:
    """A fresh, editable copy of the config directory (its paths still reach `local/`)."""
    target = local / f"configs-{tmp_path.name}"
    shutil.copytree(local / "configs", target)
    return target


def edit(path: Path, change: Callable[[dict[str, Any]], object]) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def failure(configs: Path, player: str = "alice", **kwargs: Any) -> str:
    """The one-line message of the ConfigError that loading raises."""
    with pytest.raises(ConfigError) as error:
        load_player_config(configs, player, **kwargs)
    text = str(error.value)
    assert "\n" not in text, text
    return text


# ------------------------------------------------------------------------ happy paths


def test_shipped_configs_load(local: Path) -> None:
    for name in PARTIES:
        config = load_player_config(local / "configs", name)
        assert isinstance(config, PlayerConfig)
        assert config.player == name and not config.insecure
        assert config.path == (local / "configs" / f"{name}.yaml").resolve()
        assert config.network.path == (local / "configs" / "network.yaml").resolve()
        assert config.network.names == PARTIES
        assert config.network.ca == (local / "local" / "certs" / "ca.pem").resolve()
        assert config.network.party("bob").url == "https://127.0.0.1:8442"
        assert config.data == (local / "local" / "data" / name).resolve()
        assert config.key_share == (local / "local" / "keys" / f"{name}.share.json").resolve()
        assert config.output == (local / "local" / "out" / name).resolve()
        assert config.tls_certificate == (local / "local" / "certs" / f"{name}.pem").resolve()
        assert config.tls_key == (local / "local" / "certs" / f"{name}.key").resolve()
        assert (config.listen_host, config.listen_port) == ("127.0.0.1", 8441 + PARTIES.index(name))
        assert config.run.run_id == "local-demo-1"
        assert config.run.parameters == RunParameters(
            iterations=3, delta_a=0.5, delta_b=0.0, precision_bits=32, periods=(0,)
        )
        assert config.max_body_bytes == 256 * 2**20
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.player = "mallory"  # type: ignore[misc]


def test_compose_configs_are_consistent() -> None:
    for name in PARTIES:
        player = yaml.safe_load((REPO / "configs" / "compose" / f"{name}.yaml").read_text())
        local = yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())
        assert player["player"] == name
        assert player["run"] == {k: v for k, v in local["run"].items() if k != "run_id"}
    network = yaml.safe_load((REPO / "configs" / "compose" / "network.yaml").read_text())
    assert [p["url"] for p in network["parties"]] == [
        f"https://{n}:{8441 + i}" for i, n in enumerate(PARTIES)
    ]


def test_overrides_apply(
    configs: Path, tmp_path: Path, local: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(local / "local")  # relative override paths are relative to the cwd
    config = load_player_config(
        configs,
        "bob",
        overrides={
            "port": 9000,
            "host": "0.0.0.0",
            "run_id": "other-1",
            "output": str(tmp_path),
            "key_share": "keys/bob.share.json",
            "data": Path("data/bob"),
            "iterations": 5,
            "delta_a": 0.25,
            "delta_b": 1.5,
            "precision_bits": 40,
        },
    )
    assert (config.listen_host, config.listen_port) == ("0.0.0.0", 9000)
    assert config.run.run_id == "other-1"
    assert config.run.parameters == RunParameters(
        iterations=5, delta_a=0.25, delta_b=1.5, precision_bits=40, periods=(0,)
    )
    assert config.output == tmp_path.resolve()
    assert config.key_share == (local / "local" / "keys" / "bob.share.json").resolve()
    assert config.data == (local / "local" / "data" / "bob").resolve()

    unchanged = load_player_config(configs, "bob", overrides=dict.fromkeys(("port", "data", "out")))
    assert unchanged == load_player_config(configs, "bob")
    assert load_player_config(configs, "bob", overrides={"out": "x"}).output == Path("x").resolve()


OVERRIDE_ERRORS = [
    ({"port": "9000"}, "listen.port (override): expected an integer, got str '9000'"),
    ({"port": 0}, "listen.port (override): must lie in 1..65535"),
    ({"host": ""}, "listen.host (override): expected a non-empty string"),
    ({"iterations": -1}, "run.iterations (override): must be >= 0"),
    ({"delta_a": 1.5}, "run.delta_a (override): must lie strictly between 0 and 1 (got 1.5)"),
    ({"delta_b": -1.0}, "run.delta_b (override): must be a finite number >= 0 (got -1)"),
    ({"precision_bits": 7}, "run.precision_bits (override): must lie in 8..52 (got 7)"),
    ({"noise": "none"}, "run.noise (override): must be one of djn, full (got 'none')"),
    ({"run_id": "a/b"}, "run.run_id (override): 'a/b' must match"),
    ({"data": "/nowhere/at/all"}, "data (override): directory not found: /nowhere/at/all"),
    ({"key_share": 3}, "key_share (override): expected a path, got int 3"),
    ({"workers": 0}, "compute.workers (override): must be >= 1 (got 0)"),
    ({"dask": "8786"}, "compute.dask (override): '8786' is not a Dask scheduler address"),
    ({"colour": "blue"}, "colour: unknown override (allowed: data, output"),
]


@pytest.mark.parametrize(("overrides", "message"), OVERRIDE_ERRORS)
def test_override_errors(configs: Path, overrides: dict[str, object], message: str) -> None:
    text = failure(configs, overrides=overrides)
    assert text.startswith(f"{configs / 'alice.yaml'}: ") and message in text, text


def test_noise_flows_from_the_file_and_the_command_line(configs: Path) -> None:
    assert load_player_config(configs, "alice").run.parameters.noise == "djn"  # the default
    edit(configs / "alice.yaml", lambda d: d["run"].update(noise="full"))
    assert load_player_config(configs, "alice").run.parameters.noise == "full"
    overridden = load_player_config(configs, "alice", overrides={"noise": "djn"})
    assert overridden.run.parameters.noise == "djn"
    edit(configs / "alice.yaml", lambda d: d["run"].update(noise="short"))
    text = failure(configs)
    assert "run.noise: must be one of djn, full (got 'short')" in text, text


def test_compute_workers_from_the_file_and_the_command_line(configs: Path) -> None:
    assert load_player_config(configs, "alice").compute == ComputeSettings(workers=None)
    edit(configs / "alice.yaml", lambda d: d.update(compute={"workers": 3}))
    assert load_player_config(configs, "alice").compute.workers == 3
    assert load_player_config(configs, "alice", overrides={"workers": 1}).compute.workers == 1
    edit(configs / "alice.yaml", lambda d: d.update(compute={"workers": 0}))
    assert "compute.workers: must be >= 1 (got 0)" in failure(configs)
    edit(configs / "alice.yaml", lambda d: d.update(compute={"threads": 2}))
    assert "compute.threads: unknown key (allowed: workers, dask, share_in_workers)" in failure(
        configs
    )


def test_the_key_share_goes_to_local_workers_only_when_the_operator_says_so(
    configs: Path,
) -> None:
    assert load_player_config(configs, "alice").compute.share_in_workers is False
    edit(configs / "alice.yaml", lambda d: d.update(compute={"workers": 4}))
    assert load_player_config(configs, "alice").compute.share_in_workers is False
    shared = {"workers": 4, "share_in_workers": True}
    edit(configs / "alice.yaml", lambda d: d.update(compute=shared))
    assert load_player_config(configs, "alice").compute == ComputeSettings(4, None, True)
    edit(configs / "alice.yaml", lambda d: d.update(compute={"share_in_workers": "yes"}))
    assert "compute.share_in_workers:" in failure(configs)
    address = "tcp://scheduler.bank.internal:8786"
    remote = {"dask": address, "share_in_workers": True}
    edit(configs / "alice.yaml", lambda d: d.update(compute=remote))
    text = failure(configs)
    assert text.endswith(
        "compute.share_in_workers: the key share goes only to the node's own worker processes, "
        "never to a Dask cluster"
    ), text
    # nor through a --dask override of a file that allows it for its local workers
    edit(configs / "alice.yaml", lambda d: d.update(compute=shared))
    assert "never to a Dask cluster" in failure(configs, overrides={"dask": address})


def test_compute_on_dask_from_the_file_and_the_command_line(configs: Path) -> None:
    """``dask`` and ``workers`` exclude each other in the file; an override of one replaces
    the file's other."""
    address = "tcp://scheduler.bank.internal:8786"
    edit(configs / "alice.yaml", lambda d: d.update(compute={"dask": address}))
    assert load_player_config(configs, "alice").compute == ComputeSettings(dask=address)
    local = load_player_config(configs, "alice", overrides={"workers": 2}).compute
    assert local == ComputeSettings(workers=2)
    edit(configs / "alice.yaml", lambda d: d.update(compute={"workers": 3}))
    other = "tls://10.0.0.5:8786"
    remote = load_player_config(configs, "alice", overrides={"dask": other}).compute
    assert remote == ComputeSettings(dask=other)
    text = failure(configs, overrides={"dask": other, "workers": 2})
    assert "compute.dask (override): give workers or dask, not both" in text, text
    edit(configs / "alice.yaml", lambda d: d.update(compute={"workers": 3, "dask": address}))
    assert "compute.dask: give workers or dask, not both" in failure(configs)
    for bad in ("scheduler:8786", "http://scheduler:8786", "tcp://scheduler", "tcp://:8786"):
        compute = {"dask": bad}
        edit(configs / "alice.yaml", lambda d: d.update(compute=compute))  # noqa: B023 (called at once)
        text = failure(configs)
        assert f"compute.dask: {bad!r} is not a Dask scheduler address" in text, text
        assert "\n" not in text


def test_periods_as_count(configs: Path) -> None:
    edit(configs / "alice.yaml", lambda d: d["run"].update(periods=3))
    assert load_player_config(configs, "alice").run.parameters.periods == (0, 1, 2)
    edit(configs / "alice.yaml", lambda d: d["run"].update(periods=[4, 0, 2]))
    assert load_player_config(configs, "alice").run.parameters.periods == (0, 2, 4)


def test_optional_sections_take_defaults(configs: Path) -> None:
    def minimal(data: dict[str, Any]) -> None:
        for key in ("timeouts", "limits", "network"):
            data.pop(key, None)
        data["run"] = {"run_id": "r", "iterations": 0}
        data["listen"] = {"port": 8441}

    edit(configs / "alice.yaml", minimal)
    config = load_player_config(configs, "alice")
    assert config.timeouts == Timeouts() == Timeouts(60.0, 60.0, 600.0, 86400.0)
    assert config.max_body_bytes == 256 * 2**20 and config.listen_host == "127.0.0.1"
    parameters = config.run.parameters
    assert (parameters.delta_a, parameters.delta_b, parameters.periods) == (0.5, 0.0, (0,))
    assert parameters.precision_bits == DEFAULT_PRECISION_BITS == 32

    edit(
        configs / "alice.yaml", lambda d: d.update(timeouts={"idle": 5}, limits={"max_body_mb": 1})
    )
    config = load_player_config(configs, "alice")
    assert config.timeouts == Timeouts(idle=5.0) and config.max_body_bytes == 2**20


def test_relative_paths_resolve_against_their_file(configs: Path, local: Path) -> None:
    """The network file lives elsewhere: its paths resolve against its own directory."""
    elsewhere = local / f"net-{configs.name}" / "deep"
    elsewhere.mkdir(parents=True)
    network = yaml.safe_load((configs / "network.yaml").read_text())
    network["ca"] = "../../local/certs/ca.pem"
    network["parties"][1]["certificate"] = "../../local/certs/bob.pem"
    (elsewhere / "net.yaml").write_text(yaml.safe_dump(network))
    (configs / "network.yaml").unlink()
    edit(
        configs / "alice.yaml",
        lambda d: d.update(network=f"../{elsewhere.parent.name}/deep/net.yaml"),
    )
    config = load_player_config(configs, "alice")
    assert config.network.path == (elsewhere / "net.yaml").resolve()
    assert config.network.ca == (local / "local" / "certs" / "ca.pem").resolve()
    assert config.network.party("bob").certificate == (local / "local/certs/bob.pem").resolve()
    assert config.network.party("alice").certificate is None
    assert config.data == (local / "local" / "data" / "alice").resolve()
    assert all(p.is_absolute() for p in (config.data, config.key_share, config.output))
    with pytest.raises(ConfigError, match=r"net\.yaml: parties: no party named 'dave'"):
        config.network.party("dave")


# ------------------------------------------------------------------------ player file errors


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
    (set_in("colour", value="blue"), "colour: unknown key (allowed: player, network, data"),
    (drop("data"), "data: missing required key"),
    (drop("player"), "player: missing required key"),
    (drop("run"), "run: missing required key"),
    (drop("run", "run_id"), "run.run_id: missing required key"),
    (drop("listen", "port"), "listen.port: missing required key"),
    (set_in("player", value="bob"), "player: file is for 'bob', not 'alice'"),
    (set_in("run", "iterations", value="three"), "run.iterations: expected an integer, got str"),
    (set_in("run", "iterations", value=True), "run.iterations: expected an integer, got bool"),
    (set_in("run", "iterations", value=2.0), "run.iterations: expected an integer, got float"),
    (set_in("run", "iterations", value=-1), "run.iterations: must be >= 0 (got -1)"),
    (set_in("run", "delta_a", value=1.5), "run.delta_a: must lie strictly between 0 and 1"),
    (set_in("run", "delta_a", value=0), "run.delta_a: must lie strictly between 0 and 1"),
    (set_in("run", "delta_a", value="half"), "run.delta_a: expected a number, got str 'half'"),
    (
        set_in("run", "delta_b", value=-0.1),
        "run.delta_b: must be a finite number >= 0 (got -0.1)",
    ),
    (set_in("run", "delta_b", value=float("inf")), "run.delta_b: expected a finite number"),
    (set_in("run", "run_id", value="a b"), "run.run_id: 'a b' must match"),
    (set_in("run", "run_id", value="x" * 65), "run.run_id: "),
    (set_in("run", "run_id", value=42), "run.run_id: expected a non-empty string, got int 42"),
    (
        set_in("run", "periods", value=[1, 1]),
        "run.periods: must be distinct integers >= 0 (got [1, 1])",
    ),
    (
        set_in("run", "periods", value=[-1]),
        "run.periods: must be distinct integers >= 0 (got [-1])",
    ),
    (set_in("run", "periods", value=0), "run.periods: a period count must be >= 1"),
    (set_in("run", "periods", value="all"), "run.periods: expected a non-empty list"),
    (set_in("run", "precision_bits", value=60), "run.precision_bits: must lie in 8..52 (got 60)"),
    (set_in("run", "precision_bits", value=7), "run.precision_bits: must lie in 8..52 (got 7)"),
    (set_in("run", "speed", value=1), "run.speed: unknown key"),
    (set_in("listen", "port", value=70000), "listen.port: must lie in 1..65535 (got 70000)"),
    (set_in("listen", "port", value=0), "listen.port: must lie in 1..65535 (got 0)"),
    (set_in("listen", "port", value=True), "listen.port: expected an integer, got bool"),
    (set_in("listen", "port", value="8441"), "listen.port: expected an integer, got str"),
    (set_in("listen", "speed", value=1), "listen.speed: unknown key (allowed: host, port)"),
    (set_in("listen", value="127.0.0.1:8441"), "listen: expected a mapping, got str"),
    (set_in("timeouts", "connect", value=0), "timeouts.connect: must be > 0 (got 0)"),
    (set_in("timeouts", "idle", value="long"), "timeouts.idle: expected a number, got str"),
    (set_in("timeouts", "forever", value=1), "timeouts.forever: unknown key"),
    (set_in("limits", "max_body_mb", value=-1), "limits.max_body_mb: must be > 0"),
    (set_in("limits", "max_body_kb", value=1), "limits.max_body_kb: unknown key"),
    (set_in("data", value="../nowhere"), "data: directory not found"),
    (set_in("data", value=["a"]), "data: expected a non-empty string, got list"),
    (set_in("key_share", value="../nowhere.json"), "key_share: file not found"),
    (drop("tls"), "tls: missing required key"),
    (set_in("tls", "key", value="../nowhere.key"), "tls.key: file not found"),
    (set_in("tls", "certificate", value="../nowhere.pem"), "tls.certificate: file not found"),
    (set_in("tls", "chain", value="x"), "tls.chain: unknown key"),
    (set_in("run", value=[1, 2]), "run: expected a mapping, got list"),
    (set_in("network", value="missing.yaml"), "missing.yaml: configuration file not found"),
]


@pytest.mark.parametrize(("change", "message"), PLAYER_ERRORS)
def test_player_file_errors(
    configs: Path, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    edit(configs / "alice.yaml", change)
    text = failure(configs)
    if "missing.yaml" not in message:
        assert text.startswith(f"{configs / 'alice.yaml'}: "), text
    assert message in text, text


def rename_delta(value: object) -> Callable[[dict[str, Any]], None]:
    """The run section as older files wrote it: ``delta`` instead of ``delta_a``."""

    def change(data: dict[str, Any]) -> None:
        del data["run"]["delta_a"]
        data["run"]["delta"] = value

    return change


def test_an_override_replaces_the_deprecated_delta_key(configs: Path) -> None:
    edit(configs / "alice.yaml", rename_delta(0.3))
    assert load_player_config(configs, "alice").run.parameters.delta_a == 0.3
    overridden = load_player_config(configs, "alice", overrides={"delta_a": 1.5 / 2})
    assert overridden.run.parameters.delta_a == 0.75
    text = failure(configs, overrides={"delta_a": 1.5})
    assert "run.delta_a (override): must lie strictly between 0 and 1 (got 1.5)" in text, text


def test_deprecated_delta_key_errors_name_the_key_as_written(configs: Path) -> None:
    edit(configs / "alice.yaml", rename_delta(1.5))
    text = failure(configs)
    assert text == (
        f"{configs / 'alice.yaml'}: run.delta: must lie strictly between 0 and 1 (got 1.5)"
    )
    edit(configs / "alice.yaml", set_in("run", "delta_a", value=0.5))  # both names given
    text = failure(configs)
    assert text.startswith(f"{configs / 'alice.yaml'}: ") and "run.delta: give delta_a only" in text


# ------------------------------------------------------------------------ network file errors


def add_party(data: dict[str, Any]) -> None:
    data["parties"].append({"name": "alice", "url": "https://127.0.0.1:9999"})


def url(index: int, value: object) -> Callable[[dict[str, Any]], None]:
    return lambda d: d["parties"][index].update(url=value)


NETWORK_ERRORS = [
    (add_party, "parties[3].name: duplicate party 'alice'"),
    (
        set_in(
            "parties",
            value=[
                {"name": "bob", "url": "https://h:1"},
                {"name": "charlie", "url": "https://h:2"},
            ],
        ),
        "parties: 'alice' is not listed",
    ),
    (url(0, "http://127.0.0.1:8441"), "parties[0].url: URL 'http://127.0.0.1:8441' must start"),
    (url(0, "ftp://127.0.0.1:8441"), "parties[0].url: URL 'ftp://127.0.0.1:8441' must start"),
    (url(0, "127.0.0.1:8441"), "parties[0].url: URL '127.0.0.1:8441' must start with https://"),
    (
        url(1, "https://127.0.0.1"),
        "parties[1].url: URL 'https://127.0.0.1' needs a host and a port",
    ),
    (url(1, "https://:8442"), "parties[1].url: URL 'https://:8442' needs a host and a port"),
    (url(2, "https://h:70000"), "parties[2].url: URL 'https://h:70000': port must lie in 1..65535"),
    (url(2, "https://h:0"), "parties[2].url: URL 'https://h:0': port must lie in 1..65535"),
    (url(2, "https://h:1?x=1"), "parties[2].url: URL 'https://h:1?x=1' must not carry"),
    (url(2, 8443), "parties[2].url: expected a non-empty string, got int 8443"),
    (lambda d: d["parties"][2].pop("url"), "parties[2].url: missing required key"),
    (lambda d: d["parties"][0].update(name="al ice"), "parties[0].name: 'al ice' is not a valid"),
    (lambda d: d["parties"][0].update(port=1), "parties[0].port: unknown key"),
    (lambda d: d["parties"].append("dave"), "parties[3]: expected a mapping, got str 'dave'"),
    (drop("ca"), "ca: missing required key"),
    (set_in("ca", value="../nowhere.pem"), "ca: file not found"),
    (drop("parties"), "parties: missing required key"),
    (set_in("parties", value={"alice": 1}), "parties: expected a list of parties, got dict"),
    (lambda d: d.update(parties=d["parties"][:1]), "parties: need at least two parties (got 1)"),
    (set_in("peers", value=[]), "peers: unknown key (allowed: ca, parties)"),
    (
        lambda d: d["parties"][1].update(certificate="../nope.pem"),
        "parties[1].certificate: file not found",
    ),
]


@pytest.mark.parametrize(("change", "message"), NETWORK_ERRORS)
def test_network_file_errors(
    configs: Path, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    edit(configs / "network.yaml", change)
    text = failure(configs)
    assert text.startswith(f"{configs / 'network.yaml'}: ") and message in text, text


# ------------------------------------------------------------------------ files and modes


def test_missing_and_malformed_files(configs: Path, tmp_path: Path) -> None:
    assert "dave.yaml: configuration file not found" in failure(configs, "dave")
    assert "configuration directory not found" in failure(tmp_path / "nowhere")
    assert "player: '../alice' is not a valid party name" in failure(configs, "../alice")
    (configs / "alice.yaml").write_text("player: alice\nrun: [unclosed\n")
    assert f"{configs / 'alice.yaml'}: not valid YAML at line 3" in failure(configs)
    (configs / "alice.yaml").write_text("player: alice\nplayer: bob\n")
    text = failure(configs)
    assert "alice.yaml: not valid YAML at line 2: duplicate key 'player'" in text, text
    (configs / "alice.yaml").write_text("- just\n- a list\n")
    assert "alice.yaml: top level: expected a mapping, got list" in failure(configs)
    (configs / "alice.yaml").write_text("")
    assert "alice.yaml: top level: expected a mapping, got nothing" in failure(configs)
    (configs / "network.yaml").write_text("ca: [\n")
    (configs / "alice.yaml").write_text((configs.parent / "configs" / "alice.yaml").read_text())
    assert "network.yaml: not valid YAML at line 2" in failure(configs)


def test_insecure_allows_http_without_tls(configs: Path) -> None:
    edit(
        configs / "network.yaml",
        lambda d: [p.update(url=p["url"].replace("https", "http")) for p in d["parties"]],
    )
    edit(configs / "alice.yaml", drop("tls"))
    assert "tls: missing required key" in failure(configs)
    config = load_player_config(configs, "alice", insecure=True)
    assert config.insecure and config.tls_certificate is None and config.tls_key is None

    # without TLS, the CA and the node's certificate need not exist (nor be given)
    edit(configs / "network.yaml", set_in("ca", value="../nowhere.pem"))
    edit(configs / "alice.yaml", set_in("tls", value={"certificate": "a.pem", "key": "a.key"}))
    config = load_player_config(configs, "alice", insecure=True)
    assert config.network.ca == (configs.parent / "nowhere.pem").resolve()
    assert config.tls_certificate == (configs / "a.pem").resolve()
    edit(configs / "network.yaml", drop("ca"))
    assert load_player_config(configs, "alice", insecure=True).network.ca is None

    # ... but the data, the key share and the URLs still must be right
    edit(configs / "network.yaml", url(1, "ftp://h:1"))
    text = failure(configs, insecure=True)
    assert "parties[1].url: URL 'ftp://h:1' must start with http:// or https://" in text


def test_constant_time_noise_is_a_local_flag(configs: Path) -> None:
    assert load_player_config(configs, "alice").constant_time_noise is False
    edit(configs / "alice.yaml", lambda d: d.update(constant_time_noise=True))
    assert load_player_config(configs, "alice").constant_time_noise is True
    edit(configs / "alice.yaml", lambda d: d.update(constant_time_noise="yes"))
    text = failure(configs)
    assert "constant_time_noise: expected true or false, got str 'yes'" in text, text


def test_a_parameter_error_survives_pickling() -> None:
    """A worker process of a sweep hands its error back to the parent by pickle."""
    import pickle

    from riskprop.errors import ParameterError

    error = pickle.loads(pickle.dumps(ParameterError("delta_a", "must lie in (0, 1)")))
    assert isinstance(error, ParameterError)
    assert (error.name, error.problem, str(error)) == (
        "delta_a",
        "must lie in (0, 1)",
        "delta_a: must lie in (0, 1)",
    )


# ------------------------------------------------------------------------ stream section

STREAM = {"broker": "redis", "address": "redis://127.0.0.1:6379/0", "topic": "tx.alice"}


def test_a_stream_section_takes_defaults(configs: Path) -> None:
    edit(configs / "alice.yaml", set_in("stream", value=dict(STREAM)))
    stream = load_player_config(configs, "alice").stream
    assert stream is not None
    assert (stream.group, stream.consumer) == ("riskprop-alice", "alice")
    assert (stream.dead_letters, stream.alerts) == ("tx.alice.dead", "tx.alice.alerts")
    output = load_player_config(configs, "alice").output
    assert stream.store == output / "stream" / "store.db"
    assert stream.alert_log == output / "stream" / "alerts.jsonl"
    assert (stream.period_length, stream.origin, stream.close_after) == (86400, 0, 900.0)
    # a run at 00:10 on day d closes day d-2 (day d-1 is in its grace); at 00:20, day d-1
    day = 20_000 * 86400
    assert stream.period_to_close(day + 600) == 19_998
    assert stream.period_to_close(day + 1200) == 19_999


def test_a_stream_section_reads_durations_and_times(configs: Path) -> None:
    given = {
        **STREAM,
        "period_length": "7d",
        "origin": "2026-11-23T00:00:00+01:00",
        "close_after": "15m",
    }
    edit(configs / "alice.yaml", set_in("stream", value=given))
    stream = load_player_config(configs, "alice").stream
    assert stream is not None
    assert stream.period_length == 7 * 86400
    assert stream.close_after == 900
    assert stream.origin == 1_795_388_400  # 2026-11-22T23:00:00Z
    assert stream.period_start(2) == stream.origin + 14 * 86400
    for written in ("origin: 2026-11-23", "origin: 2026-11-23T00:00:00Z"):  # unquoted YAML
        text = (configs / "alice.yaml").read_text()
        text = "\n".join(x for x in text.splitlines() if "origin:" not in x)
        text = text.replace("  topic: tx.alice", f"  topic: tx.alice\n  {written}")
        (configs / "alice.yaml").write_text(text + "\n")
        stream = load_player_config(configs, "alice").stream
        assert stream is not None and stream.origin == 1_795_392_000, written


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"broker": "rabbit"}, "stream.broker: 'rabbit' is not one of redis, kafka"),
        ({"address": "127.0.0.1:6379"}, "stream.address: '127.0.0.1:6379' is not a redis://"),
        ({"topic": None}, "stream.topic: missing required key"),
        ({"alerts": "tx.alice"}, "stream.alerts: the topic, dead_letters and alerts must be"),
        ({"period_length": "3w"}, "stream.period_length: expected seconds or <n>s"),
        ({"period_length": 0}, "stream.period_length: must be > 0"),
        ({"origin": "2026-11-23T00:00:00"}, "stream.origin: '2026-11-23T00:00:00' has no time"),
        ({"origin": "monday"}, "stream.origin: expected an ISO 8601 time"),
        ({"close_after": -1}, "stream.close_after: must be >= 0"),
        ({"close_after": "soon"}, "stream.close_after: expected seconds or <n>s"),
        ({"batch": 0}, "stream.batch: must be >= 1"),
        ({"currency": "euro"}, "stream.currency: 'EURO' is not an ISO 4217 code"),
        ({"rules": "missing.yaml"}, "stream.rules: file not found"),
        ({"partitions": 3}, "stream.partitions: unknown key"),
    ],
)
def test_stream_section_errors(configs: Path, change: dict[str, Any], message: str) -> None:
    edit(configs / "alice.yaml", set_in("stream", value={**STREAM, **change}))
    assert message in failure(configs)


def test_a_stream_and_a_snapshot_per_slot_exclude_each_other(configs: Path) -> None:
    def both(data: dict[str, Any]) -> None:
        data["stream"] = dict(STREAM)
        data["schedule"] = {"cron": "0 2 * * *", "data": "snapshots/{date}"}
        data["run"].pop("run_id", None)

    edit(configs / "alice.yaml", both)
    assert "schedule.data: not with a stream" in failure(configs)


def test_a_stream_may_name_the_banks_accounts(configs: Path, tmp_path: Path) -> None:
    accounts = tmp_path / "accounts.csv"
    accounts.write_text("id\nalice-1\n")
    edit(configs / "alice.yaml", set_in("stream", value={**STREAM, "accounts": str(accounts)}))
    stream = load_player_config(configs, "alice").stream
    assert stream is not None and stream.accounts == accounts
    accounts.unlink()
    assert "stream.accounts: file not found" in failure(configs)


def test_a_kafka_stream_takes_partitions_and_client_settings(configs: Path) -> None:
    kafka = {
        **STREAM,
        "broker": "kafka",
        "address": "k1:9092,k2:9092",
        "kafka": {
            "partitions": [2, 0, 1],
            "settings": {"security.protocol": "SSL", "enable.ssl.certificate.verification": True},
        },
    }
    edit(configs / "alice.yaml", set_in("stream", value=kafka))
    stream = load_player_config(configs, "alice").stream
    assert stream is not None and stream.partitions == (0, 1, 2)
    assert stream.kafka_settings == (
        ("enable.ssl.certificate.verification", "true"),
        ("security.protocol", "SSL"),
    )
    edit(
        configs / "alice.yaml", set_in("stream", value={**kafka, "kafka": {"partitions": "group"}})
    )
    stream = load_player_config(configs, "alice").stream
    assert stream is not None and stream.partitions is None


@pytest.mark.parametrize(
    ("kafka", "broker", "message"),
    [
        ({"partitions": []}, "kafka", "stream.kafka.partitions: expected a list of partition"),
        ({"partitions": [-1]}, "kafka", "stream.kafka.partitions: expected a list of partition"),
        ({"settings": {"group.id": "x"}}, "kafka", "stream.kafka.settings.group.id: given by"),
        ({"settings": {"a": [1]}}, "kafka", "stream.kafka.settings.a: expected a librdkafka"),
        ({"partitions": [0]}, "redis", "stream.kafka: only for stream.broker kafka"),
    ],
)
def test_kafka_section_errors(
    configs: Path, kafka: dict[str, Any], broker: str, message: str
) -> None:
    address = "k:9092" if broker == "kafka" else STREAM["address"]
    given = {**STREAM, "broker": broker, "address": address, "kafka": kafka}
    edit(configs / "alice.yaml", set_in("stream", value=given))
    assert message in failure(configs)


def test_a_stream_may_publish_alerts_from_a_level_up(configs: Path) -> None:
    edit(configs / "alice.yaml", set_in("stream", value={**STREAM, "alert_level": "HIGH"}))
    stream = load_player_config(configs, "alice").stream
    assert stream is not None and stream.alert_level == "HIGH"
