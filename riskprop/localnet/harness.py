"""Start a network of real node processes on loopback and wait for them.

Used by ``riskprop demo``, ``riskprop setup-local``, the benchmarks and the process-level tests:
each bank runs ``python -m riskprop COMMAND --player NAME --config DIR`` exactly as an operator
would, with its log in ``LOGS/<bank>.log``.
"""

from __future__ import annotations

import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from subprocess import Popen

import yaml

from riskprop.errors import ConfigError, RiskpropError
from riskprop.files.atomic import atomic_write_text
from riskprop.files.keys import share_file

BANK_NAMES = ("alice", "bob", "charlie", "dave", "erin", "frank", "grace", "heidi")
#: Time-outs of a local network's nodes (seconds): generous, as a loaded machine is slow.
LOCAL_TIMEOUTS = {"connect": 60.0, "request": 120.0, "idle": 600.0, "deadline": 3600.0}


def party_names(count: int) -> list[str]:
    """``count`` bank names: alice, bob, ... then bank1, bank2, ... beyond eight."""
    if count < 2:
        raise ConfigError(f"--parties must be at least 2 (got {count})")
    if count <= len(BANK_NAMES):
        return list(BANK_NAMES[:count])
    return [f"bank{i}" for i in range(1, count + 1)]


#: Where the kernel keeps the ports it gives outgoing connections (Linux), and the range
#: assumed where that file is missing (IANA's dynamic ports, as macOS and Windows use).
EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
DEFAULT_EPHEMERAL = (49152, 65535)
#: The lowest port handed out: above the registered services most hosts run.
LOWEST_PORT = 10000
_handed: set[int] = set()
_handed_lock = threading.Lock()


def ephemeral_range(source: Path = EPHEMERAL_RANGE_FILE) -> tuple[int, int]:
    """The kernel's range of ports for outgoing connections (inclusive)."""
    try:
        low, high = (int(word) for word in source.read_text(encoding="ascii").split())
    except (OSError, ValueError):
        return DEFAULT_EPHEMERAL
    return low, high


def port_candidates(ephemeral: tuple[int, int]) -> list[int]:
    """Ports from ``LOWEST_PORT`` up that lie outside ``ephemeral``."""
    low, high = ephemeral
    return [port for port in range(LOWEST_PORT, 65536) if not low <= port <= high]


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on loopback now, for listeners started a moment later.

    Drawn at random outside the kernel's ephemeral range: a port inside it may be taken by any
    outgoing connection (another node's, a test's) between this check and the listener's bind.
    A port is never handed out twice by one process, so two calls (peer ports, then admin
    ports) cannot collide. Another process may still bind one first; the bind then fails with
    a clear error. Where the range leaves too few ports, the kernel's own choice is used."""
    chooser = random.Random()
    with _handed_lock:
        pool = [port for port in port_candidates(ephemeral_range()) if port not in _handed]
        chosen: list[int] = []
        while pool and len(chosen) < count:
            at = chooser.randrange(len(pool))
            pool[at], pool[-1] = pool[-1], pool[at]
            port = pool.pop()
            if _bindable(port):
                chosen.append(port)
        while len(chosen) < count:  # the pool ran out: the kernel's choice
            port = _kernel_port()
            if port not in chosen:
                chosen.append(port)
        _handed.update(chosen)
        return chosen


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _kernel_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def write_configs(
    directory: Path,
    *,
    data: Path,
    keys: Path,
    certs: Path,
    out: Path,
    parties: Sequence[str],
    run: Mapping[str, object],
    timeouts: Mapping[str, float] | None = None,
    workers: int = 1,
    dask: str | None = None,
) -> None:
    """A network file and one player file per party, on fresh loopback ports: party ``P``
    reads ``DATA/P``, its share in ``KEYS``, its certificate ``CERTS/P.pem`` and writes to
    ``OUT/P``. Every node gets ``workers`` compute workers: the nodes share this machine, so
    not the default (each node all the cores); or, with ``dask``, computes on the Dask
    cluster whose scheduler is at that address (all nodes on the same one)."""
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
            "run": dict(run),
            "timeouts": dict(timeouts or LOCAL_TIMEOUTS),
            "compute": {"dask": dask} if dask else {"workers": workers},
        }
        atomic_write_text(directory / f"{name}.yaml", yaml.safe_dump(player, sort_keys=False))


def node_command(config_dir: Path, party: str, command: Sequence[str] = ("run",)) -> list[str]:
    """The operator's command line for ``party``'s node (this interpreter's riskprop)."""
    return [
        sys.executable,
        "-m",
        "riskprop",
        *command,
        "--player",
        party,
        "--config",
        str(config_dir),
    ]


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
                node_command(config_dir, name, command),
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
    """The last line of a node's log that mentions an error (else its last line)."""
    lines = [ln for ln in log_file.read_text(errors="replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]
    return (errors or lines or ["no output"])[-1].strip()
