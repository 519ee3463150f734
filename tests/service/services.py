"""Service node processes for tests: ``riskprop --player NAME`` on a test network."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import yaml
from nodes import Network

from riskprop.localnet.harness import free_ports, node_command

#: A liveness limit for what a test waits for (a hung node, not a slow one, runs into it).
PATIENCE = 240.0


class Services:
    """One service process per bank of ``network``, with admin listeners on free ports."""

    def __init__(self, network: Network, schedule: Mapping[str, object] | None) -> None:
        self.network = network
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        ports = free_ports(len(network.parties))
        self.admin = dict(zip(network.parties, ports, strict=True))
        for party in network.parties:
            path = network.configs / f"{party}.yaml"
            player = yaml.safe_load(path.read_text())
            player["admin"] = {"port": self.admin[party]}
            if schedule is not None:
                player["schedule"] = dict(schedule)
                player["run"].pop("run_id", None)
            path.write_text(yaml.safe_dump(player, sort_keys=False))

    def edit(self, party: str, change: Callable[[dict[str, Any]], None]) -> None:
        path = self.network.configs / f"{party}.yaml"
        player = yaml.safe_load(path.read_text())
        change(player)
        path.write_text(yaml.safe_dump(player, sort_keys=False))

    def command(self, party: str, *extra: str) -> list[str]:
        """``riskprop [EXTRA] --player PARTY --config CONFIGS`` (no extra: the service)."""
        return node_command(self.network.configs, party, extra)

    def start(self, party: str, *extra: str) -> subprocess.Popen[bytes]:
        log = (self.network.root / f"{party}.log").open("ab")
        process = subprocess.Popen(
            self.command(party, *extra), stdout=log, stderr=subprocess.STDOUT
        )
        self.processes[party] = process
        return process

    def url(self, party: str, path: str) -> str:
        return f"http://127.0.0.1:{self.admin[party]}{path}"

    def get(self, party: str, path: str) -> tuple[int, bytes]:
        """(status, body) of an admin request; (0, b"") while nothing listens."""
        try:
            with urllib.request.urlopen(self.url(party, path), timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except (urllib.error.URLError, OSError):
            return 0, b""

    def status(self, party: str) -> dict[str, Any] | None:
        code, body = self.get(party, "/status")
        return json.loads(body) if code == 200 else None

    def wait(self, what: str, condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + PATIENCE
        while not condition():
            for party, process in self.processes.items():
                assert process.poll() is None, f"{party} exited: {self.log(party)[-2000:]}"
            assert time.monotonic() < deadline, f"not within {PATIENCE:g} s: {what}"
            time.sleep(0.2)

    def succeeded(self, party: str) -> list[str]:
        """Run ids of ``party``'s successful runs, oldest first."""
        status = self.status(party)
        if status is None:
            return []
        runs = [r["run_id"] for r in status["history"] if r["status"] == "succeeded"]
        return runs[::-1]

    def log(self, party: str) -> str:
        path = self.network.root / f"{party}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, party: str) -> int:
        """SIGTERM; the exit code (a hung node is killed and fails the test)."""
        process = self.processes[party]
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError(f"{party} did not stop on SIGTERM") from None

    def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGCONT)
                process.kill()
            process.wait()


@contextlib.contextmanager
def services(network: Network, schedule: Mapping[str, object] | None) -> Iterator[Services]:
    running = Services(network, schedule)
    try:
        yield running
    finally:
        running.close()
