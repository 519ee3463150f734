"""How good a service's time-left estimates are: predicted against actual, during real runs.

Makes a three-bank network (local CA, a dealt key, generated data), runs the banks as services
(``riskprop --player NAME``) on a daily schedule whose slot is open all day, so they start the
day's run at once, then triggers a second run at every bank. Polls alice's ``/status`` twice a
second and prints, for each run, at a quarter, half and three quarters of its duration: the
phase, the whole run's predicted time left (``current.eta_seconds``) and the actual time left.
The first run knows no earlier durations (pending phases are unknown until they start); the
second uses the first's.

    python scripts/bench_progress.py --accounts 3000 --edges 10000 --key-bits 2048
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from riskprop.core import modexp
from riskprop.core.threshold import default_threshold
from riskprop.files.keys import dealer_keygen
from riskprop.lab.synthetic import generate_dataset
from riskprop.localnet.certs import ensure_certificates
from riskprop.localnet.harness import free_ports, node_command, write_configs

PARTIES = ("alice", "bob", "charlie")
ALL_DAY = {"cron": "0 0 * * *", "run_id": "day-{date}", "join_window": 86399}
Sample = tuple[float, str, float | None]  # (seconds since the run began, phase, eta)


def get(port: int, path: str, body: bytes | None = None) -> Any:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def watch(port: int, done: int) -> list[Sample]:
    """alice's samples during the run that makes her history hold ``done`` successes."""
    samples: list[Sample] = []
    began: float | None = None
    while True:
        status = get(port, "/status")
        if status is not None:
            successes = sum(r["status"] == "succeeded" for r in status["history"])
            current = status["current"]
            if current is not None:
                began = (
                    began if began is not None else time.monotonic() - current["elapsed_seconds"]
                )
                samples.append((time.monotonic() - began, current["phase"], current["eta_seconds"]))
            elif successes >= done and began is not None:
                samples.append((time.monotonic() - began, "done", 0.0))
                return samples
        time.sleep(0.5)


def report(name: str, samples: list[Sample], port: int) -> None:
    total = samples[-1][0]
    status = get(port, "/status")
    phases = status["history"][0]["phases"] if status else {}
    spent = ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in phases.items())
    print(f"{name}: {total:.1f} s ({spent})")
    for share in (0.1, 0.25, 0.5, 0.75, 0.9):
        at, phase, eta = min(samples, key=lambda s: abs(s[0] - share * total))
        predicted = "unknown" if eta is None else f"{eta:6.1f} s"
        print(
            f"  at {share:4.0%} ({phase:<10}) predicted {predicted:>9}, actual {total - at:6.1f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--accounts", type=int, default=3000)
    parser.add_argument("--edges", type=int, default=10000)
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--samples", action="store_true", help="print every sample too")
    args = parser.parse_args()
    print(f"arithmetic: {modexp.backend()}")
    with tempfile.TemporaryDirectory(prefix="riskprop-progress-") as tmp:
        root = Path(tmp)
        ensure_certificates(root / "certs", PARTIES)
        dealer_keygen(root / "keys", PARTIES, default_threshold(len(PARTIES)), args.key_bits)
        generate_dataset(
            root / "data", accounts=args.accounts, edges=args.edges, banks=PARTIES, seed=1
        )
        run = {"iterations": args.iterations, "delta_a": 0.5}
        configs = root / "configs"
        write_configs(
            configs,
            data=root / "data",
            keys=root / "keys",
            certs=root / "certs",
            out=root / "out",
            parties=PARTIES,
            run=run,
        )
        ports = dict(zip(PARTIES, free_ports(len(PARTIES)), strict=True))
        for party in PARTIES:
            path = configs / f"{party}.yaml"
            player = yaml.safe_load(path.read_text())
            player.update(schedule=ALL_DAY, admin={"port": ports[party]})
            path.write_text(yaml.safe_dump(player, sort_keys=False))
        logs = [(root / f"{p}.log").open("wb") for p in PARTIES]
        processes = [
            subprocess.Popen(node_command(configs, p, ()), stdout=log, stderr=subprocess.STDOUT)
            for p, log in zip(PARTIES, logs, strict=True)
        ]
        try:
            report("first run (no earlier durations)", watch(ports["alice"], 1), ports["alice"])
            for party in PARTIES:
                if get(ports[party], "/runs", json.dumps({"run_id": "second"}).encode()) is None:
                    sys.exit(f"{party} refused the trigger")
            second = watch(ports["alice"], 2)
            report("second run (the first's durations)", second, ports["alice"])
            if args.samples:
                for at, phase, eta in second:
                    print(f"  {at:6.1f} s  {phase:<10}  {eta}")
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(30)


if __name__ == "__main__":
    main()
