"""Benchmark the dealerless key generation: three (or more) node processes over mutual TLS.

Each repetition starts ``riskprop keygen --player NAME`` for every party at once in a fresh
directory (its own certificates and configuration on loopback ports) and waits for all of them.
Prints, per repetition, the wall time until the last node wrote its share, the CPU time of all
node processes together, and what the first node logged about the search (candidate pairs,
pairs left after trial division, biprimality tests, rounds, bytes); then min / median / max.

    python scripts/bench_keygen.py --key-bits 2048 --runs 5
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from riskprop.files.keys import PUBLIC_FILE, load_public
from riskprop.localnet.harness import write_configs
from riskprop.node.tls import make_ca, make_node_certificate
from riskprop.protocol.keygen import DEFAULT_BIPRIMALITY_TESTS, DEFAULT_SIGMA

NAMES = ("alice", "bob", "charlie", "dave", "erin")
SUMMARY = re.compile(r"generated in [0-9.]+ s \((?P<summary>[^)]*)\)")


def one_run(
    root: Path, parties: list[str], bits: int, sigma: int, biprimality_tests: int
) -> dict[str, object]:
    certs, keys = root / "certs", root / "keys"
    ca_cert, ca_key = make_ca(certs)
    for name in parties:
        make_node_certificate(certs, name, ca_cert=ca_cert, ca_key=ca_key)
    write_configs(
        root / "configs",
        data=root / "data",
        keys=keys,
        certs=certs,
        out=root / "out",
        parties=parties,
        run={"run_id": "bench", "iterations": 1},
        timeouts={"connect": 60, "request": 300, "idle": 600, "deadline": 3600},
    )
    started = time.perf_counter()
    before = os.times()
    processes = []
    for name in parties:
        log = (root / f"{name}.log").open("wb")
        command = [sys.executable, "-m", "riskprop", "-v", "keygen", "--player", name]
        command += [
            "--config",
            str(root / "configs"),
            "--key-bits",
            str(bits),
            "--sigma",
            str(sigma),
            "--biprimality-tests",
            str(biprimality_tests),
        ]
        processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
    codes = [p.wait() for p in processes]
    wall = time.perf_counter() - started
    after = os.times()
    if codes != [0] * len(parties):
        logs = "\n".join((root / f"{n}.log").read_text()[-2000:] for n in parties)
        raise SystemExit(f"key generation failed ({codes}):\n{logs}")
    key = load_public(keys / PUBLIC_FILE)
    assert key.public.bits == bits
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    found = SUMMARY.search((root / f"{parties[0]}.log").read_text())
    return {"wall": wall, "cpu": cpu, "summary": found["summary"] if found else "?"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key-bits", "--bits", dest="bits", type=int, default=2048)
    parser.add_argument("--parties", type=int, default=3)
    parser.add_argument("--sigma", type=int, default=DEFAULT_SIGMA)
    parser.add_argument("--biprimality-tests", type=int, default=DEFAULT_BIPRIMALITY_TESTS)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    parties = list(NAMES[: args.parties])
    print(
        f"dealerless key generation: {args.bits}-bit N, {args.parties} node processes, TLS; "
        f"sigma {args.sigma}, {args.biprimality_tests} biprimality tests"
    )
    results = []
    for run in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory(prefix="riskprop-keygen-") as tmp:
            result = one_run(Path(tmp), parties, args.bits, args.sigma, args.biprimality_tests)
        results.append(result)
        print(
            f"run {run}: wall {result['wall']:.1f} s, cpu (all nodes) {result['cpu']:.1f} s; "
            f"{result['summary']}",
            flush=True,
        )
    for label in ("wall", "cpu"):
        values = sorted(float(r[label]) for r in results)  # type: ignore[arg-type]
        print(
            f"{label}: min {values[0]:.1f} s, median {statistics.median(values):.1f} s, "
            f"max {values[-1]:.1f} s over {len(values)} runs"
        )


if __name__ == "__main__":
    main()
