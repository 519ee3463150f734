"""The deployment files: docker-compose.yml, the Dockerfile and deploy/riskprop-node@.service.

Static checks read the files: each bank's containers mount only that bank's secrets (never the
CA key), the nodes are hardened (healthcheck on /healthz, restart policy, grace period,
read-only root, non-root user, JSON logs), the unit has its key settings and passes
``systemd-analyze``.

There is no container engine here, so the end-to-end test plays compose's part with plain
processes. It takes the services from ``docker-compose config`` (interpolated, paths absolute),
gives each container a root directory of its own whose mounts are links to the host paths, and
runs exactly each service's entry point and command: as the service's user, in the bank's own
network namespace with its own address and an /etc/hosts that resolves the service names
(``ip netns exec`` mounts /etc/netns/<ns>/hosts), or with no network for ``network_mode: none``.
Afterwards nothing may have changed in a container's root or in its read-only mounts.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from cronsim import CronSim
from helpers import REPO

from riskprop.cli.stream import produce_command
from riskprop.config import ADMIN_PORT_OFFSET, format_slot

BANKS = ("alice", "bob", "charlie")
KEYGENS = tuple(f"{bank}-keygen" for bank in BANKS)
PRODUCERS = ("producer",)
STREAMING_FILE = REPO / "docker-compose.streaming.yml"
SUBNET = "10.231.77"  # this test's own namespaces only
IN_CI = os.environ.get("CI") == "true"
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
UNIT_FILE = REPO / "deploy" / "riskprop-node@.service"
#: The node user of the image (Dockerfile) and of every bank container (docker-compose.yml).
NODE_UID = 10001
#: The key size the end-to-end test asks for through the compose file's variable.
TEST_KEY_BITS = "512"

Service = dict[str, Any]


# ----------------------------------------------------------------------- reading the files


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


def services() -> dict[str, Service]:
    found: dict[str, Service] = compose()["services"]
    return found


def dockerfile_instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(maxsplit=1)[0].upper(), line.split(maxsplit=1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def image_setting(keyword: str) -> str:
    """The last value of ``keyword`` in the Dockerfile (the final stage's)."""
    return [args for key, args in dockerfile_instructions() if key == keyword][-1]


@dataclass(frozen=True)
class Mount:
    source: Path
    target: PurePosixPath
    read_only: bool


def mounts(service: Service, base: Path = REPO) -> list[Mount]:
    """The service's bind mounts (``source:target[:mode]``), sources made absolute."""
    found = []
    for spec in service.get("volumes", []):
        source, target, *mode = str(spec).split(":")
        absolute = Path(os.path.normpath(base / source))
        found.append(Mount(absolute, PurePosixPath(target), mode == ["ro"]))
    return found


def host_path(service: Service, path: PurePosixPath, base: Path = REPO) -> Path | None:
    """Where a container path of ``service`` lives on the host (None: in the image)."""
    best: Mount | None = None
    for mount in mounts(service, base):
        inside = path == mount.target or mount.target in path.parents
        if inside and (best is None or len(mount.target.parts) > len(best.target.parts)):
            best = mount
    if best is None:
        return None
    return best.source.joinpath(*path.parts[len(best.target.parts) :])


def workdir() -> PurePosixPath:
    return PurePosixPath(image_setting("WORKDIR"))


def option(command: Sequence[str], name: str) -> str:
    return command[list(command).index(name) + 1]


def bank_config(bank: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(
        (REPO / "configs" / "compose" / f"{bank}.yaml").read_text()
    )
    return data


def container_path(config_dir: PurePosixPath, value: str) -> PurePosixPath:
    """A path of a configuration file as the node resolves it (relative to the file)."""
    return PurePosixPath(os.path.normpath(config_dir / value))


def config_dir(service: Service) -> PurePosixPath:
    command = [str(word) for word in service["command"]]
    if command and " --config " in command[0]:  # a shell line: ... --config DIR ...
        command = command[0].split()
    return workdir() / option(command, "--config")


def seconds(duration: str) -> float:
    """A compose duration such as ``10s``, ``1m30s`` or ``500ms``."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if IN_CI:
            pytest.fail(f"{tool} is missing: .ci/run installs it")
        pytest.skip(f"{tool} is not installed (Debian package {tool}); CI installs it")
    return path


# --------------------------------------------------------------------------- static checks


def test_compose_file_validates() -> None:
    tool = require("docker-compose")
    result = subprocess.run(
        [tool, "-f", str(COMPOSE_FILE), "config", "-q"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_the_streaming_override_validates_and_points_the_nodes_at_their_streams() -> None:
    tool = require("docker-compose")
    result = subprocess.run(
        [tool, "-f", str(COMPOSE_FILE), "-f", str(STREAMING_FILE), "config"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    merged: dict[str, Service] = yaml.safe_load(result.stdout)["services"]
    for bank in BANKS:
        node = merged[bank]
        configs = {m.split(":")[1]: m.split(":")[0] for m in node["volumes"]}
        own = REPO / "configs" / "compose" / "streaming" / f"{bank}.yaml"
        assert configs[f"/app/config/{bank}.yaml"] == str(own)  # replaces the batch file
        assert node["depends_on"]["redis"] == {"condition": "service_healthy"}
        streaming = yaml.safe_load(own.read_text())
        batch = bank_config(bank)
        # the batch node's configuration plus its stream, the hour closed five minutes after it
        assert {k: v for k, v in streaming.items() if k not in ("stream", "schedule")} == {
            k: v for k, v in batch.items() if k != "schedule"
        }
        assert streaming["stream"] == {
            "broker": "redis",
            "address": "redis://redis:6379/0",
            "topic": f"tx.{bank}",
            "period_length": "1h",
            "close_after": 300,
        }
        assert streaming["schedule"]["cron"] == "5 * * * *"
    # the producer is hardened like every bank container and publishes every bank's records
    producer = merged["producer"]
    assert producer["user"] == f"{NODE_UID}:{NODE_UID}" and producer["read_only"] is True
    assert producer["cap_drop"] == ["ALL"] and "volumes" not in producer
    command = [str(word) for word in producer["command"]]
    assert command[:2] == ["stream", "produce"]
    assert command[command.index("--topic") + 1] == "tx.{bank}"
    assert command[command.index("--bank") + 1] == ",".join(BANKS)
    assert "--live" in command and "--loop" in command
    # the producer's command is one riskprop accepts (parsed and type-checked, not run)
    context = produce_command.make_context("produce", command[2:])
    assert context.params["live"] is True and context.params["rate"] > 0


def test_services_are_init_then_each_banks_keygen_then_its_node() -> None:
    found = services()
    assert set(found) == {"init", *KEYGENS, *BANKS, "redis", *PRODUCERS}
    # the broker and the producers start only with the streaming profile
    assert {n for n, s in found.items() if s.get("profiles") == ["streaming"]} == {
        "redis",
        *PRODUCERS,
    }
    for bank, keygen in zip(BANKS, KEYGENS, strict=True):
        node = found[bank]
        assert node["command"] == ["--log-format", "json", "--player", bank, "--config", "config"]
        assert node["depends_on"] == {keygen: {"condition": "service_completed_successfully"}}
        generation = found[keygen]
        assert generation["depends_on"] == {"init": {"condition": "service_completed_successfully"}}
        assert generation["entrypoint"] == ["sh", "-c"]
        line = " ".join(generation["command"])
        assert f"riskprop --log-format json keygen --player {bank} --config config" in line
        # production size unless the operator sets RISKPROP_KEY_BITS (the tests do)
        assert "--key-bits ${RISKPROP_KEY_BITS:-2048}" in line
        # peers reach the generating container by the bank's name, as they later reach the node
        assert generation["networks"]["default"]["aliases"] == [bank]


def test_each_bank_mounts_only_its_own_secrets() -> None:
    found = services()
    local = REPO / "local"
    ca_key = local / "ca" / "ca.key"
    for bank in BANKS:
        own = local / bank
        configs = {REPO / "configs" / "compose" / n for n in ("network.yaml", f"{bank}.yaml")}
        for name in (bank, f"{bank}-keygen"):
            service = found[name]
            for mount in mounts(service):
                assert mount.source in configs or own in mount.source.parents, (name, mount)
                if mount.source in configs:
                    assert mount.read_only, (name, mount)
            # the files the bank's configuration names are the bank's own
            directory = config_dir(service)
            config = bank_config(bank)
            network = yaml.safe_load((REPO / "configs" / "compose" / "network.yaml").read_text())
            secrets = [config["key_share"], config["tls"]["key"], config["tls"]["certificate"]]
            for value in [*secrets, network["ca"]]:
                where = host_path(service, container_path(directory, value))
                assert where is not None and own in where.parents, (name, value, where)
            assert host_path(service, directory / f"{bank}.yaml") in configs
    # only init, the CA operator, sees the CA's key
    for name, service in found.items():
        sees_ca_key = any(m.source == ca_key or m.source in ca_key.parents for m in mounts(service))
        assert sees_ca_key == (name == "init"), name
    assert found["init"]["network_mode"] == "none"


def test_bank_containers_are_hardened() -> None:
    found = services()
    for name in (*BANKS, *KEYGENS):
        service = found[name]
        assert service["user"] == f"{NODE_UID}:{NODE_UID}", name
        assert service["read_only"] is True, name
        assert "/tmp" in service["tmpfs"], name
        assert service["cap_drop"] == ["ALL"] and "cap_add" not in service, name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert "ports" not in service, name  # peers meet on the compose network
        assert 3 <= seconds(service["stop_grace_period"]) <= 60, name  # exits in ~2 s
    for bank in BANKS:
        node, config = found[bank], bank_config(bank)
        directory = config_dir(node)
        assert node["restart"] == "unless-stopped"
        # the one writable mount is the output directory; the secrets are mounted read-only
        output = container_path(directory, config["output"])
        assert [m.target for m in mounts(node) if not m.read_only] == [output]
        keys = container_path(directory, config["key_share"]).parent
        assert [m.target for m in mounts(found[f"{bank}-keygen"]) if not m.read_only] == [keys]
        assert "restart" not in found[f"{bank}-keygen"]  # a one-shot service
        # healthcheck: the admin listener's /healthz, by the image's python (it has no curl)
        admin = config.get("admin", {})
        port = admin.get("port", config["listen"]["port"] + ADMIN_PORT_OFFSET)
        assert admin.get("host", "127.0.0.1") == "127.0.0.1"
        check = node["healthcheck"]
        assert check["test"][:3] == ["CMD", "python", "-c"]
        assert f"urlopen('http://127.0.0.1:{port}/healthz', timeout=3)" in check["test"][3]
        assert seconds(check["timeout"]) > 3 and check["retries"] >= 1
        assert seconds(check["start_period"]) >= 10
        # first run: nodes started together join the current slot's run at once
        schedule = config["schedule"]
        assert schedule["join_window"] >= 3600
        assert "{date}" in schedule["run_id"] and "{time}" in schedule["run_id"]
        assert "run_id" not in config["run"]


def test_bank_configs_run_what_the_local_configs_run() -> None:
    network = yaml.safe_load((REPO / "configs" / "compose" / "network.yaml").read_text())
    for i, bank in enumerate(BANKS):
        config = bank_config(bank)
        local = yaml.safe_load((REPO / "configs" / f"{bank}.yaml").read_text())
        assert config["player"] == bank
        # the same parameters; the run id comes from the schedule's slot
        assert config["run"] == {k: v for k, v in local["run"].items() if k != "run_id"}
        assert network["parties"][i] == {
            "name": bank,
            "url": f"https://{bank}:{config['listen']['port']}",
        }


def test_dockerfile_builds_the_kernel_and_runs_as_the_node_user_without_secrets() -> None:
    instructions = dockerfile_instructions()
    stages = [args for key, args in instructions if key == "FROM"]
    assert len(stages) == 2 and stages[0].endswith(" AS build")
    assert any(key == "RUN" and "gcc" in args for key, args in instructions)
    assert image_setting("USER") == f"{NODE_UID}:{NODE_UID}"
    assert json.loads(image_setting("ENTRYPOINT")) == ["riskprop"]
    # only the sources and the wheels built from them go in: no keys, data or configuration
    copied = [args.split()[:-1] for key, args in instructions if key == "COPY"]
    allowed = {"pyproject.toml", "setup.py", "README.md", "riskprop", "--from=build", "/wheels"}
    assert copied and all(set(sources) <= allowed for sources in copied), copied
    assert not any(key in ("ADD", "ARG") for key, _ in instructions)
    ignored = (REPO / ".dockerignore").read_text().split()
    assert "local" in ignored and "out" in ignored


# ------------------------------------------------------------------------- the systemd unit


def unit() -> dict[str, dict[str, list[str]]]:
    """deploy/riskprop-node@.service as section -> key -> values (a key may repeat)."""
    found: dict[str, dict[str, list[str]]] = {}
    section = ""
    for raw in UNIT_FILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            found[section] = {}
            continue
        key, _, value = line.partition("=")
        found[section].setdefault(key.strip(), []).append(value.strip())
    return found


def test_systemd_unit_runs_the_bank_named_by_the_instance() -> None:
    service = {key: values[-1] for key, values in unit()["Service"].items()}
    assert service["Type"] in ("exec", "simple")
    assert service["ExecStart"] == (
        "/opt/riskprop/bin/riskprop --log-format json --player %i --config /etc/riskprop"
    )
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"  # reloads certificates, schedule
    assert service["Restart"] == "on-failure"
    assert float(service["TimeoutStopSec"]) >= 5
    assert service["User"] not in ("root", "0") and "DynamicUser" not in service
    assert service["UMask"] == "0077"
    hardening = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "CapabilityBoundingSet": "",
    }
    assert {key: service.get(key) for key in hardening} == hardening
    # the one writable place is the bank's state directory, where its output goes
    assert service["StateDirectory"] == "riskprop/%i"
    assert service["ReadWritePaths"] == "/var/lib/riskprop/%i"
    assert unit()["Install"]["WantedBy"] == ["multi-user.target"]


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    """``systemd-analyze verify`` finds nothing to say, and ``security`` rates it well; the
    riskprop command is a stand-in here (verify wants the binary to exist)."""
    tool = require("systemd-analyze")
    stand_in = tmp_path / "bin" / "riskprop"
    stand_in.parent.mkdir()
    stand_in.write_text("#!/bin/sh\n")
    stand_in.chmod(0o755)
    text = UNIT_FILE.read_text().replace("/opt/riskprop/bin/riskprop", str(stand_in))
    (tmp_path / UNIT_FILE.name).write_text(text)
    instance = str(tmp_path / "riskprop-node@alice.service")
    verify = subprocess.run(
        [tool, "verify", "--man=no", "--generators=no", instance],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
    # exposure 0 (locked down) .. 10 (unprotected); --threshold is on a 0..100 scale
    security = subprocess.run(
        [tool, "security", "--offline=true", "--threshold=20", instance],
        capture_output=True,
        text=True,
        check=False,
    )
    assert security.returncode == 0, security.stdout[-2000:] + security.stderr


# ------------------------------------------------------------ the services as real processes


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


@pytest.fixture
def namespaces() -> Iterator[dict[str, str]]:
    """One network namespace per bank on a bridge; yields bank -> address."""
    require("ip")
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("network namespaces need root")
        pytest.skip("network namespaces need root")
    addresses = {bank: f"{SUBNET}.{11 + i}" for i, bank in enumerate(BANKS)}
    bridge = "rpbr0"
    hosts = "127.0.0.1 localhost\n" + "".join(f"{a} {b}\n" for b, a in addresses.items())
    try:
        sh("ip", "link", "add", bridge, "type", "bridge")
        sh("ip", "link", "set", bridge, "up")
        for bank, address in addresses.items():
            ns, outer, inner = f"rp-{bank}", f"rp{bank[:3]}h", f"rp{bank[:3]}n"
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
            sh("ip", "link", "set", outer, "master", bridge, "up")
            sh("ip", "link", "set", inner, "netns", ns)
            sh("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", inner)
            sh("ip", "-n", ns, "link", "set", inner, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            etc = Path("/etc/netns") / ns
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "hosts").write_text(hosts)
        yield addresses
    finally:
        for bank in BANKS:
            subprocess.run(["ip", "netns", "del", f"rp-{bank}"], check=False, capture_output=True)
            shutil.rmtree(Path("/etc/netns") / f"rp-{bank}", ignore_errors=True)
        subprocess.run(["ip", "link", "del", bridge], check=False, capture_output=True)


@pytest.fixture
def project() -> Iterator[Path]:
    """A project directory the node user may traverse (pytest's tmp_path is root's alone),
    with the repository's compose configuration in it."""
    path = Path(tempfile.mkdtemp(prefix="riskprop-compose-"))
    try:
        path.chmod(0o755)
        shutil.copytree(REPO / "configs" / "compose", path / "configs" / "compose")
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def resolved_services(project: Path) -> dict[str, Service]:
    """The services as compose runs them: ``docker-compose config`` for ``project``, with the
    test's key size, ``$$`` turned back into ``$``."""
    tool = require("docker-compose")
    result = subprocess.run(
        [tool, "-f", str(COMPOSE_FILE), "--project-directory", str(project), "config"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "RISKPROP_KEY_BITS": TEST_KEY_BITS},
    )
    found: dict[str, Service] = yaml.safe_load(result.stdout)["services"]
    for service in found.values():
        for key in ("command", "entrypoint"):
            if key in service:
                service[key] = [str(word).replace("$$", "$") for word in service[key]]
    return found


def snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every entry under ``root`` (links not followed): mode, size, modification time."""
    found = {}
    for directory, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            info = (Path(directory) / name).lstat()
            found[os.path.relpath(Path(directory) / name, root)] = (
                info.st_mode,
                info.st_size,
                info.st_mtime_ns,
            )
    return found


def shims(directory: Path, switch: Sequence[str]) -> Path:
    """``riskprop`` and ``python`` for a container's PATH: this checkout's interpreter, started
    through ``switch`` (the user change; setpriv finds the interpreter while still root, so a
    checkout under a directory only root may enter works too)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, target in (
        ("riskprop", [sys.executable, "-m", "riskprop"]),
        ("python", [sys.executable]),
    ):
        line = " ".join(shlex.quote(word) for word in [*switch, *target])
        (directory / name).write_text(f'#!/bin/sh\nexec {line} "$@"\n')
        (directory / name).chmod(0o755)
    return directory


def user_shims(directory: Path, uid: int, gid: int, setpriv: str) -> Path:
    """Shims that run riskprop as ``uid``, or as root when this checkout cannot run so."""
    switch = [setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
    shims(directory, switch)
    probe = subprocess.run(
        [str(directory / "python"), "-c", "import riskprop"],
        cwd="/",
        capture_output=True,
        check=False,
    )
    return directory if probe.returncode == 0 else shims(directory, [])


@dataclass
class Container:
    """One service's container, played by processes: a root directory whose mounts are links
    to their host paths (read-only files are copies), the image's entry point and environment,
    the service's user (through the PATH's shims) and network."""

    name: str
    service: Service
    root: Path
    env: dict[str, str]
    prefix: list[str]  # the network namespace

    @property
    def workdir(self) -> Path:
        return self.root / workdir().relative_to("/")

    def argv(self) -> list[str]:
        entrypoint = self.service.get("entrypoint") or json.loads(image_setting("ENTRYPOINT"))
        return [*self.prefix, *entrypoint, *self.service.get("command", [])]

    def mount_sources(self) -> None:
        """Make missing directories to mount, as the engine does when a container starts."""
        for mount in mounts(self.service, Path("/")):
            if not mount.source.is_file():
                mount.source.mkdir(parents=True, exist_ok=True)

    def start(self, log: Path) -> subprocess.Popen[bytes]:
        self.mount_sources()
        return subprocess.Popen(
            self.argv(),
            cwd=self.workdir,
            env=self.env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )

    def exec(self, argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        """``argv`` inside the running container (as ``docker exec``, or a healthcheck)."""
        return subprocess.run(
            [*self.prefix, *argv],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def untouched(self) -> dict[str, dict[str, tuple[int, int, int]]]:
        """What the container must not change: its root (``read_only``) and its read-only
        mounts."""
        self.mount_sources()
        found = {"/": snapshot(self.root)}
        for mount in mounts(self.service, Path("/")):
            if mount.read_only and mount.source.is_dir():
                found[str(mount.target)] = snapshot(mount.source)
        return found


def containers(project: Path, found: Mapping[str, Service]) -> dict[str, Container]:
    tools = {tool: require(tool) for tool in ("ip", "unshare", "setpriv")}
    made = {}
    for name, service in found.items():
        root = project / "containers" / name
        (root / workdir().relative_to("/")).mkdir(parents=True)
        home = root / "home" / "riskprop"
        home.mkdir(parents=True, mode=0o700)
        os.chown(home, NODE_UID, NODE_UID)
        for mount in mounts(service, Path("/")):
            inside = root / mount.target.relative_to("/")
            inside.parent.mkdir(parents=True, exist_ok=True)
            if mount.source.is_file():
                assert mount.read_only, (name, mount)
                shutil.copy(mount.source, inside)
            else:
                inside.symlink_to(mount.source, target_is_directory=True)
        if service.get("network_mode") == "none":
            prefix = [tools["unshare"], "--net"]
        else:
            aliases = service.get("networks", {}).get("default", {}).get("aliases", [])
            bank = next(iter(aliases), name)
            prefix = [tools["ip"], "netns", "exec", f"rp-{bank}"]
        uid, gid = (int(part) for part in str(service.get("user", "0:0")).split(":"))
        bin_dir = project / "shims" / name
        bin_dir = user_shims(bin_dir, uid, gid, tools["setpriv"]) if uid else shims(bin_dir, [])
        env = {
            "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(home),
            "PYTHONPATH": str(REPO),
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            "LANG": "C.UTF-8",
        }
        made[name] = Container(name, service, root, env, prefix)
    return made


def run_together(
    group: Sequence[Container], logs: Path, timeout: float
) -> dict[str, tuple[int, str]]:
    """Start ``group`` at once and wait for every one to end: name -> (exit code, log)."""
    processes = {c.name: c.start(logs / f"{c.name}.log") for c in group}
    try:
        codes = {name: p.wait(timeout=timeout) for name, p in processes.items()}
    finally:
        for p in processes.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    return {name: (code, (logs / f"{name}.log").read_text()) for name, code in codes.items()}


def clear_of_slot_boundary(cron: str, margin: float = 60.0) -> None:
    """Wait for the next slot when it is closer than ``margin`` s: nodes started together
    must compute the same current slot."""
    now = datetime.now(UTC)
    upcoming: datetime = next(CronSim(cron, now))
    wait = (upcoming - now).total_seconds()
    if wait < margin:
        time.sleep(wait + 2)


def current_slot(cron: str) -> datetime:
    after = datetime.now(UTC).replace(microsecond=0)
    slot: datetime = next(CronSim(cron, after, reverse=True))
    return slot


def wait_for_results(
    nodes: Mapping[str, subprocess.Popen[bytes]], outputs: Mapping[str, Path], logs: Path
) -> None:
    """Until every bank has ``OUT/latest/risk_scores.csv``; fails when a node exits first."""
    deadline = time.monotonic() + 300
    while not all((out / "latest" / "risk_scores.csv").is_file() for out in outputs.values()):
        ended = {bank: p.poll() for bank, p in nodes.items() if p.poll() is not None}
        text = {bank: (logs / f"{bank}.log").read_text()[-3000:] for bank in nodes}
        assert not ended, (ended, text)
        assert time.monotonic() < deadline, text
        time.sleep(0.5)


def scores(path: Path) -> dict[str, float]:
    with path.open() as handle:
        return {row["id"]: float(row["risk_score"]) for row in csv.DictReader(handle)}


def assert_matches_plaintext(
    data: Path, outputs: Mapping[str, Path], run: Mapping[str, Any]
) -> None:
    from riskprop.lab.simulate import simulate_plaintext

    reference = simulate_plaintext(
        data, iterations=run["iterations"], delta_a=run["delta_a"], delta_b=run["delta_b"]
    )
    start = 0
    for bank, ids in zip(reference.banks, reference.account_ids, strict=True):
        found = scores(outputs[bank] / "latest" / "risk_scores.csv")
        expected = dict(zip(ids, reference.scores[start : start + len(ids)].tolist(), strict=True))
        start += len(ids)
        assert found.keys() == expected.keys(), bank
        assert max(abs(found[k] - expected[k]) for k in expected) < 1e-7, bank


def test_compose_services_run_as_processes(project: Path, namespaces: dict[str, str]) -> None:
    """init, the three key generations together, then the three nodes: they join the current
    slot's run, match the plaintext engine, answer the healthcheck and stop on SIGTERM; a
    second start keeps what the first made. No container writes outside its writable mounts."""
    found = resolved_services(project)
    box = containers(project, found)
    logs = project / "logs"
    logs.mkdir()
    local = project / "local"

    # init: the CA operator's files stay with it; each bank's are the node user's, private
    marks = {"init": box["init"].untouched()}
    assert run_together([box["init"]], logs, timeout=120)["init"][0] == 0
    assert (local / "ca" / "ca.key").is_file()
    for bank in BANKS:
        own = local / bank
        for path in [own, *own.rglob("*")]:
            info = path.stat()
            assert (info.st_uid, info.st_gid) == (NODE_UID, NODE_UID), path
            assert stat.S_IMODE(info.st_mode) & 0o077 == 0, path
        assert {p.name for p in (own / "tls").iterdir()} == {
            "ca.pem",
            f"{bank}.pem",
            f"{bank}.key",
            f"{bank}.csr",
        }
    certificates = {p: p.read_bytes() for p in local.glob("*/tls/*")}

    # dealerless key generation: the three one-shot services together
    marks.update({name: box[name].untouched() for name in KEYGENS})
    keygens = run_together([box[k] for k in KEYGENS], logs, timeout=600)
    assert {name: code for name, (code, _) in keygens.items()} == dict.fromkeys(KEYGENS, 0), keygens
    shares = {bank: local / bank / "keys" / f"{bank}.share.json" for bank in BANKS}
    for share in shares.values():
        assert stat.S_IMODE(share.stat().st_mode) == 0o600
    written = {bank: share.read_bytes() for bank, share in shares.items()}

    # the nodes: the current slot's run at once, as on a first `docker compose up`
    config = bank_config(BANKS[0])
    cron = config["schedule"]["cron"]
    clear_of_slot_boundary(cron)
    run_id = format_slot(config["schedule"]["run_id"], current_slot(cron))
    marks.update({bank: box[bank].untouched() for bank in BANKS})
    nodes = {bank: box[bank].start(logs / f"{bank}.log") for bank in BANKS}
    outputs = {bank: local / bank / "out" for bank in BANKS}
    try:
        wait_for_results(nodes, outputs, logs)
        for out in outputs.values():
            assert (out / "latest").resolve() == (out / "runs" / run_id).resolve()
        assert_matches_plaintext(local / "sample", outputs, config["run"])

        # the healthcheck's own command, inside the bank's container
        for bank in BANKS:
            check = found[bank]["healthcheck"]
            assert check["test"][0] == "CMD"
            probe = box[bank].exec(check["test"][1:], timeout=seconds(check["timeout"]))
            assert probe.returncode == 0, probe.stderr

        # `riskprop check` in a bank's container, as docs/deployment.md tells operators
        for bank in BANKS:
            checked = box[bank].exec(
                ["riskprop", "check", "--player", bank, "--config", "config"], 60
            )
            assert checked.returncode == 0, checked.stdout + checked.stderr

        # docker stop: SIGTERM, then SIGKILL after the grace period; the node exits 0 before
        for process in nodes.values():
            process.send_signal(signal.SIGTERM)
        codes = {
            bank: p.wait(timeout=seconds(found[bank]["stop_grace_period"]))
            for bank, p in nodes.items()
        }
    finally:
        for p in nodes.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    text = {bank: (logs / f"{bank}.log").read_text() for bank in BANKS}
    assert codes == dict.fromkeys(BANKS, 0), text
    for bank in BANKS:
        # JSON logs: every line, the last one included
        lines = [line for line in text[bank].splitlines() if line.strip()]
        assert lines and all(isinstance(json.loads(line), dict) for line in lines), text[bank]
        # a stopped node fails its healthcheck: the probe really asks the node
        check = found[bank]["healthcheck"]
        assert box[bank].exec(check["test"][1:], timeout=seconds(check["timeout"])).returncode
    # read_only and :ro: nothing changed in any container's root or read-only mounts
    for name, mark in marks.items():
        assert box[name].untouched() == mark, name

    # a second `docker compose up` keeps the CA, the certificates and the key
    assert run_together([box["init"]], logs, timeout=120)["init"][0] == 0
    again = run_together([box[k] for k in KEYGENS], logs, timeout=60)
    assert {name: code for name, (code, _) in again.items()} == dict.fromkeys(KEYGENS, 0), again
    assert {p: p.read_bytes() for p in local.glob("*/tls/*")} == certificates
    assert {bank: share.read_bytes() for bank, share in shares.items()} == written
