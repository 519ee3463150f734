"""How long a node takes to stop on SIGTERM, in each phase of a run (target: 2 s).

Each repetition makes a fresh three-bank network (local CA, a dealt key, generated data, configs on
loopback ports), starts nodes and sends ``bob`` SIGTERM at a point of the protocol chosen by what
his log says, then measures the wall time from the signal to his exit and checks his exit code
(0: a requested stop is not a failure) and his one-line acknowledgement. Phases:

* ``waiting``: bob alone, listening and trying to reach peers that are not up;
* ``computing``: all three banks, signal while bob computes an iteration (logged by the
  handshake) on a workload large enough that one step takes seconds;
* ``decrypting``: signal once bob has started decrypting.

* ``idle`` (``--service`` only): the service between runs, its next slot far away.

With ``--service`` the nodes run as services (``riskprop --player NAME``) on a daily schedule
whose slot is open all day, so they start the day's run at once; without it, ``riskprop run``.
Prints each stop time, then min / median / max per phase.

    python scripts/bench_stop.py --runs 5 --accounts 3000 --edges 10000 --key-bits 2048
    python scripts/bench_stop.py --service --phases idle,waiting,computing,decrypting
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from riskprop.core.threshold import default_threshold
from riskprop.files.keys import dealer_keygen
from riskprop.lab.synthetic import generate_dataset
from riskprop.localnet.certs import ensure_certificates
from riskprop.localnet.harness import node_command, write_configs

PARTIES = ("alice", "bob", "charlie")
#: The log line after which each phase's signal is sent.
MARKS = {
    "waiting": "listening on",
    "computing": "handshake complete",
    "decrypting": "decrypted",
    "idle": "next run",
}
#: The schedules of ``--service``: the day's slot open all day, or one that is far away.
ALL_DAY = {"cron": "0 0 * * *", "run_id": "day-{date}", "join_window": 86399}
FAR_AWAY = {"cron": "0 0 1 1 *", "run_id": "year-{date}", "join_window": 60}


def as_service(configs: Path, phase: str) -> None:
    """Give every player file a schedule (and no fixed run id)."""
    for path in configs.glob("*.yaml"):
        player = yaml.safe_load(path.read_text())
        if "player" not in player:
            continue
        player["schedule"] = FAR_AWAY if phase == "idle" else ALL_DAY
        player["run"].pop("run_id", None)
        path.write_text(yaml.safe_dump(player, sort_keys=False))


def one_stop(
    root: Path, phase: str, accounts: int, edges: int, bits: int, service: bool = False
) -> float:
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
    if service:
        as_service(root / "configs", phase)
    starting = ["bob"] if phase in ("waiting", "idle") else list(PARTIES)
    processes = {}
    for party in starting:
        log = (root / f"{party}.log").open("wb")
        command = node_command(root / "configs", party, () if service else ("run",))
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
        acknowledged = "stopping on request" in text or "service stopped on request" in text
        if code != 0 or not acknowledged:
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
    parser.add_argument("--phases", default="waiting,computing,decrypting")
    parser.add_argument("--service", action="store_true", help="stop service nodes")
    args = parser.parse_args()
    if "idle" in args.phases and not args.service:
        parser.error("the idle phase is a service's (--service)")
    results: dict[str, list[float]] = {}
    for phase in args.phases.split(","):
        for index in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="riskprop-stop-") as tmp:
                seconds = one_stop(
                    Path(tmp), phase, args.accounts, args.edges, args.key_bits, args.service
                )
            results.setdefault(phase, []).append(seconds)
            print(f"{phase:<11} run {index + 1}: SIGTERM to exit {seconds:.2f} s", flush=True)
    for phase, values in results.items():
        print(
            f"{phase:<11} min {min(values):.2f} s  median {statistics.median(values):.2f} s  "
            f"max {max(values):.2f} s  ({len(values)} runs)"
        )


if __name__ == "__main__":
    main()
