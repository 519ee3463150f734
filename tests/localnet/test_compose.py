"""docker-compose.yml: it validates, and the exact commands its services run complete a run.

There is no container engine here, so the services' commands run as plain processes, each
bank in its own network namespace with its own address and an /etc/hosts that resolves the
service names, as compose's network would (``ip netns exec`` mounts /etc/netns/<ns>/hosts).
"""

from __future__ import annotations

import csv
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import REPO

BANKS = ("alice", "bob", "charlie")
SUBNET = "10.231.77"  # this test's own namespaces only
IN_CI = os.environ.get("CI") == "true"


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return data


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if IN_CI:
            pytest.fail(f"{tool} is missing: .ci/run installs it")
        pytest.skip(f"{tool} is not installed (Debian package {tool}); CI installs it")
    return path


def test_compose_file_validates() -> None:
    tool = require("docker-compose")
    result = subprocess.run(
        [tool, "-f", str(REPO / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_compose_services_are_the_three_banks_after_init() -> None:
    services = compose()["services"]
    assert set(services) == {"init", *BANKS}
    for bank in BANKS:
        assert services[bank]["command"] == ["--player", bank, "--config", "configs/compose"]
        assert services[bank]["depends_on"]["init"]["condition"] == (
            "service_completed_successfully"
        )
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "USER riskprop" in dockerfile and 'ENTRYPOINT ["riskprop"]' in dockerfile


def run(*args: str) -> None:
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
        run("ip", "link", "add", bridge, "type", "bridge")
        run("ip", "link", "set", bridge, "up")
        for bank, address in addresses.items():
            ns, outer, inner = f"rp-{bank}", f"rp{bank[:3]}h", f"rp{bank[:3]}n"
            run("ip", "netns", "add", ns)
            run("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
            run("ip", "link", "set", outer, "master", bridge, "up")
            run("ip", "link", "set", inner, "netns", ns)
            run("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", inner)
            run("ip", "-n", ns, "link", "set", inner, "up")
            run("ip", "-n", ns, "link", "set", "lo", "up")
            etc = Path("/etc/netns") / ns
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "hosts").write_text(hosts)
        yield addresses
    finally:
        for bank in BANKS:
            subprocess.run(["ip", "netns", "del", f"rp-{bank}"], check=False, capture_output=True)
            shutil.rmtree(Path("/etc/netns") / f"rp-{bank}", ignore_errors=True)
        subprocess.run(["ip", "link", "del", bridge], check=False, capture_output=True)


def test_compose_commands_complete_a_run(tmp_path: Path, namespaces: dict[str, str]) -> None:
    services = compose()["services"]
    app = tmp_path / "app"  # the image's /app: its configs, with ./local mounted
    shutil.copytree(REPO / "configs", app / "configs")
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    init = services["init"]["command"][0]
    setup = shlex.split(init.split("&&")[0])  # the chown after it only matters inside the image
    assert setup[0] == "riskprop"  # the image's entry point, here this interpreter's riskprop
    subprocess.run(
        [sys.executable, "-m", "riskprop", *setup[1:]],
        cwd=app,
        env=env,
        check=True,
        capture_output=True,
    )

    processes = {}
    for bank in reversed(BANKS):
        command = [sys.executable, "-m", "riskprop", *services[bank]["command"]]
        log = (tmp_path / f"{bank}.log").open("wb")
        processes[bank] = subprocess.Popen(
            ["ip", "netns", "exec", f"rp-{bank}", *command],
            cwd=app,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        codes = {bank: p.wait(timeout=300) for bank, p in processes.items()}
    finally:
        for p in processes.values():
            if p.poll() is None:
                p.kill()
    logs = {bank: (tmp_path / f"{bank}.log").read_text() for bank in BANKS}
    assert codes == dict.fromkeys(BANKS, 0), logs

    from riskprop.lab.simulate import simulate_plaintext

    reference = simulate_plaintext(app / "local" / "data", iterations=3, delta_a=0.5)
    start = 0
    for bank, ids in zip(reference.banks, reference.account_ids, strict=True):
        with (app / "local" / "out" / bank / "risk_scores.csv").open() as handle:
            found = {row["id"]: float(row["risk_score"]) for row in csv.DictReader(handle)}
        expected = dict(zip(ids, reference.scores[start : start + len(ids)].tolist(), strict=True))
        start += len(ids)
        assert found.keys() == expected.keys()
        assert max(abs(found[k] - expected[k]) for k in expected) < 1e-7
    # the banks really talked across namespaces, by service name
    for bank in BANKS:
        assert "results in" in logs[bank]
