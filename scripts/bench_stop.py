"""How long a node takes to stop on SIGTERM, in each phase of a run (target: 2 s).

Each repetition makes a fresh three-bank network (local CA, a dealt key, generated data, configs on
loopback ports), starts nodes and sends ``bob`` SIGTERM at a point of the protocol chosen by what
his log says, then measures the wall time from the signal to his exit and checks his exit code
(0: a requested stop is not a failure) and his one-line acknowledgement. Phases:

* ``waiting``: bob alone, listening and trying to reach peers that are not up;
* ``computing``: all three banks, signal while bob computes an iteration (logged by the
  handshake) on a workload large enough that one step takes seconds;
* ``decrypting``: signal once bob has started decrypting.

Prints each stop time, then min / median / max per phase.

    python scripts/bench_stop.py --runs 5 --accounts 3000 --edges 10000 --key-bits 2048
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from riskprop.core.threshold import default_threshold
from riskprop.files.keys import dealer_keygen
from riskprop.lab.synthetic import generate_dataset
from riskprop.localnet.certs import ensure_certificates
from riskprop.localnet.harness import node_command, write_configs

PARTIES = ("alice", "bob", "charlie")
#: The log line after which each phase's signal is sent.
MARKS = {"waiting": "listening on", "computing": "handshake complete", "decrypting": "decrypted"}


def one_stop(root: Path, phase: str, accounts: int, edges: int, bits: int) -> float:
    keys, data = root / "keys", root / "data"
    ensure_certificates(root / "certs", PARTIES)
    dealer_keygen(keys, PARTIES, default_threshold(len(PARTIES)), bits)
    generate_dataset(data, accounts=accounts, edges=edges, banks=PARTIES, seed=1)
    run = {"run_id": "stop", "iterations": 3, "delta_a": 0.5}
    write_configs(
        root / "configs",
        data=data,
        keys=keys,
        certs=root / "certs",
        out=root / "out",
        parties=PARTIES,
        run=run,
    )
    starting = ["bob"] if phase == "waiting" else list(PARTIES)
    processes = {}
    for party in starting:
        log = (root / f"{party}.log").open("wb")
        command = node_command(root / "configs", party)
        processes[party] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    bob, log_path = processes["bob"], root / "bob.log"
    try:
        while MARKS[phase] not in log_path.read_text(errors="replace"):
            if bob.poll() is not None:
                raise SystemExit(f"bob exited before '{MARKS[phase]}': {log_path}")
            time.sleep(0.001)
        signalled = time.perf_counter()
        bob.send_signal(signal.SIGTERM)
        code = bob.wait(120)
        seconds = time.perf_counter() - signalled
        text = log_path.read_text(errors="replace")
        if code != 0 or "stopping on request" not in text:
            raise SystemExit(f"bob exited {code} without the acknowledgement: {log_path}")
        return seconds
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--accounts", type=int, default=3000)
    parser.add_argument("--edges", type=int, default=10000)
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--phases", default=",".join(MARKS))
    args = parser.parse_args()
    results: dict[str, list[float]] = {}
    for phase in args.phases.split(","):
        for index in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="riskprop-stop-") as tmp:
                seconds = one_stop(Path(tmp), phase, args.accounts, args.edges, args.key_bits)
            results.setdefault(phase, []).append(seconds)
            print(f"{phase:<11} run {index + 1}: SIGTERM to exit {seconds:.2f} s", flush=True)
    for phase, values in results.items():
        print(
            f"{phase:<11} min {min(values):.2f} s  median {statistics.median(values):.2f} s  "
            f"max {max(values):.2f} s  ({len(values)} runs)"
        )


if __name__ == "__main__":
    main()
