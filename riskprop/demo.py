"""The demo: sample data, cached keys and certificates, one node process per bank, a report.

Every bank runs ``riskprop run`` in its own process, listening on a loopback port with mutual
TLS, exactly as an operator would run it. The key is generated without a dealer (one
``riskprop keygen --player NAME`` process per bank) once per party set and key length, and
cached (with a local CA and node certificates) under the user's cache directory, so a second
demo starts at once.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen

import numpy as np
import yaml

from riskprop.core.data import load_dataset
from riskprop.core.graph import build_global
from riskprop.core.plaintext import propagate
from riskprop.core.schedule import DeltaSchedule
from riskprop.core.threshold import default_threshold
from riskprop.errors import ConfigError, RiskpropError
from riskprop.keys import dealer_keygen, share_file
from riskprop.results import atomic_write_text

BANK_NAMES = ("alice", "bob", "charlie", "dave", "erin", "frank", "grace", "heidi")
SAMPLE_ACCOUNTS = 300
SAMPLE_EDGES = 1000


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "riskprop"


def party_names(count: int) -> list[str]:
    if count < 2:
        raise ConfigError(f"--parties must be at least 2 (got {count})")
    if count <= len(BANK_NAMES):
        return list(BANK_NAMES[:count])
    return [f"bank{i}" for i in range(1, count + 1)]


KEYGEN_MODES = ("distributed", "dealer")


@dataclass(frozen=True)
class DemoKeys:
    """Where the demo's key is, how it was made, and the seconds it took if made just now."""

    directory: Path
    mode: str
    seconds: float | None


def demo_keys(parties: Sequence[str], bits: int, mode: str, *, fresh: bool = False) -> DemoKeys:
    """A key for these parties and size: cached per mode, made on first use (or when
    ``fresh``). ``distributed`` runs ``riskprop keygen --player NAME`` for every party as its own
    process over mutual TLS on loopback, exactly as banks would; ``dealer`` deals in-process."""
    if mode not in KEYGEN_MODES:
        raise ConfigError(f"--keygen must be one of {', '.join(KEYGEN_MODES)} (got {mode!r})")
    suffix = "" if mode == "dealer" else "-distributed"
    directory = cache_dir() / "keys" / f"{'-'.join(parties)}-{bits}{suffix}"
    if not fresh and all(share_file(directory, p).is_file() for p in parties):
        return DemoKeys(directory, mode, None)
    started = time.perf_counter()
    if mode == "dealer":
        dealer_keygen(directory, parties, default_threshold(len(parties)), bits)
    else:
        distributed_keygen(directory, parties, bits)
    return DemoKeys(directory, mode, time.perf_counter() - started)


def distributed_keygen(directory: Path, parties: Sequence[str], bits: int) -> None:
    """Dealerless key generation by one ``riskprop keygen`` process per party; the key replaces
    ``directory`` only once every party wrote its share."""
    certs = demo_certificates(parties)
    directory.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="keygen-", dir=directory.parent) as tmp:
        work = Path(tmp)
        write_configs(
            work / "configs",
            data=work / "data",
            keys=work / "keys",
            certs=certs,
            out=work / "out",
            parties=parties,
            run={"run_id": "keygen", "iterations": 1},
        )
        command = ["keygen", "--bits", str(bits)]
        processes = start_nodes(work / "configs", parties, work / "logs", command=command)
        wait_for_nodes(processes, work / "logs", timeout=3600.0)
        if directory.exists():
            shutil.rmtree(directory)
        (work / "keys").rename(directory)


def sample_data(parties: Sequence[str]) -> Path:
    """A generated sample data set for these parties, made on first use."""
    from riskprop.synthetic import generate_dataset

    directory = cache_dir() / "data" / f"sample-{'-'.join(parties)}"
    if not all((directory / p / "transactions.csv").is_file() for p in parties):
        generate_dataset(
            directory, accounts=SAMPLE_ACCOUNTS, edges=SAMPLE_EDGES, banks=parties, seed=1
        )
    return directory


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    raise AssertionError  # unreachable


def free_ports(count: int) -> list[int]:
    """Ports the kernel reports free on loopback now (a later bind may still race)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def demo_certificates(parties: Sequence[str]) -> Path:
    """A local CA and one certificate per party, made on first use."""
    from riskprop.tls import make_ca, make_node_certificate

    directory = cache_dir() / "certs"
    ca_cert, ca_key = directory / "ca.pem", directory / "ca.key"
    if not (ca_cert.is_file() and ca_key.is_file()):
        ca_cert, ca_key = make_ca(directory)
    for name in parties:
        if not (directory / f"{name}.pem").is_file():
            make_node_certificate(directory, name, ca_cert=ca_cert, ca_key=ca_key)
    return directory


def write_configs(
    directory: Path,
    *,
    data: Path,
    keys: Path,
    certs: Path,
    out: Path,
    parties: Sequence[str],
    run: dict[str, object],
    timeouts: dict[str, float] | None = None,
) -> None:
    """A network file and one player file per party, on fresh loopback ports."""
    ports = free_ports(len(parties))
    network = {
        "ca": str(certs / "ca.pem"),
        "parties": [
            {"name": name, "url": f"https://127.0.0.1:{port}"}
            for name, port in zip(parties, ports, strict=True)
        ],
    }
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_text(directory / "network.yaml", yaml.safe_dump(network, sort_keys=False))
    for name, port in zip(parties, ports, strict=True):
        player = {
            "player": name,
            "network": "network.yaml",
            "data": str(data / name),
            "key_share": str(share_file(keys, name)),
            "output": str(out / name),
            "listen": {"host": "127.0.0.1", "port": port},
            "tls": {"certificate": str(certs / f"{name}.pem"), "key": str(certs / f"{name}.key")},
            "run": run,
            "timeouts": timeouts or {"connect": 60, "request": 120, "idle": 600, "deadline": 3600},
        }
        atomic_write_text(directory / f"{name}.yaml", yaml.safe_dump(player, sort_keys=False))


def start_nodes(
    config_dir: Path,
    parties: Sequence[str],
    logs: Path,
    *,
    command: Sequence[str] = ("run",),
) -> dict[str, Popen[bytes]]:
    """One ``riskprop COMMAND --player NAME`` process per party, logging to LOGS/<party>.log."""
    logs.mkdir(parents=True, exist_ok=True)
    processes = {}
    for name in parties:
        with (logs / f"{name}.log").open("wb") as log_file:
            processes[name] = Popen(
                [
                    sys.executable,
                    "-m",
                    "riskprop",
                    *command,
                    "--player",
                    name,
                    "--config",
                    str(config_dir),
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
    return processes


def wait_for_nodes(processes: dict[str, Popen[bytes]], logs: Path, timeout: float) -> None:
    """Wait for every node; on the first failure stop the others and report its reason."""
    deadline = time.monotonic() + timeout
    try:
        while any(p.poll() is None for p in processes.values()):
            for name, process in processes.items():
                if process.poll() not in (None, 0):
                    raise RiskpropError(f"node {name} failed: {last_error(logs / f'{name}.log')}")
            if time.monotonic() > deadline:
                raise RiskpropError(f"nodes did not finish within {timeout:g} s (logs in {logs})")
            time.sleep(0.1)
        for name, process in processes.items():
            if process.returncode != 0:
                raise RiskpropError(f"node {name} failed: {last_error(logs / f'{name}.log')}")
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
        for process in processes.values():
            process.wait()


def last_error(log_file: Path) -> str:
    lines = [ln for ln in log_file.read_text(errors="replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]
    return (errors or lines or ["no output"])[-1].strip()


@dataclass(frozen=True, eq=False)
class DemoReport:
    data: Path
    out: Path
    key_bits: int
    keys: DemoKeys
    seconds: float
    reports: dict[str, dict[str, object]]
    differences: dict[str, float]

    def table(self) -> str:
        """Per bank: accounts, seconds per phase, bytes sent, largest difference."""
        head = f"{'bank':<10}{'accounts':>9}{'handshake':>11}{'encrypt':>9}{'iterate':>9}"
        head += f"{'decrypt':>9}{'sent':>11}{'max |diff|':>12}"
        lines = [head]
        for name, report in self.reports.items():
            s: dict[str, float] = report["seconds"]  # type: ignore[assignment]
            iterate = sum(v for k, v in s.items() if k.startswith("period"))
            lines.append(
                f"{name:<10}{report['accounts']:>9}{s.get('handshake', 0.0):>10.2f}s"
                f"{s.get('encrypt', 0.0):>8.2f}s{iterate:>8.2f}s{s.get('decrypt', 0.0):>8.2f}s"
                f"{_size(int(report['bytes_sent'])):>11}{self.differences[name]:>12.2e}"  # type: ignore[call-overload]
            )
        return "\n".join(lines)


def run_demo(
    *,
    data: Path | None,
    iterations: int,
    delta_a: float,
    delta_b: float,
    key_bits: int,
    out: Path,
    parties: int,
    keygen: str = "distributed",
    fresh_key: bool = False,
    timeout: float = 3600.0,
) -> DemoReport:
    """Run one node process per bank over mutual TLS on loopback and collect the results.

    Nodes write into a staging directory; OUT/<bank>/risk_scores.csv appear only once every
    node succeeded.
    """
    schedule = DeltaSchedule(delta_a, delta_b)
    if data is None:
        data = sample_data(party_names(parties))
    dataset = load_dataset(data)  # validates every bank's files before any node starts
    names = list(dataset.names)
    graph = build_global(dataset)
    keys = demo_keys(names, key_bits, keygen, fresh=fresh_key)
    certs = demo_certificates(names)
    run = {
        "run_id": f"demo-{secrets.token_hex(4)}",
        "iterations": iterations,
        "delta": schedule.a,
        "delta_b": schedule.b,
        "periods": list(graph.periods),
    }
    with tempfile.TemporaryDirectory(prefix="riskprop-demo-") as tmp:
        work = Path(tmp)
        write_configs(
            work / "configs",
            data=data.resolve(),
            keys=keys.directory,
            certs=certs,
            out=work / "out",
            parties=names,
            run=run,
        )
        started = time.perf_counter()
        wait_for_nodes(start_nodes(work / "configs", names, work / "logs"), work / "logs", timeout)
        seconds = time.perf_counter() - started
        reference = propagate(graph, schedule, iterations)
        reports, differences, texts = {}, {}, {}
        for index, name in enumerate(names):
            node_out = work / "out" / name
            reports[name] = json.loads((node_out / "run-report.json").read_text())
            texts[name] = (node_out / "risk_scores.csv").read_text()
            scores = np.array(
                [float(r["risk_score"]) for r in csv.DictReader(texts[name].splitlines())]
            )
            lo, hi = int(graph.offsets[index]), int(graph.offsets[index + 1])
            differences[name] = float(np.max(np.abs(scores - reference[lo:hi]))) if hi > lo else 0.0
    for name in names:
        atomic_write_text(out / name / "risk_scores.csv", texts[name])
    return DemoReport(data, out, key_bits, keys, seconds, reports, differences)
