#!/usr/bin/env python3
"""Benchmark the plaintext engine: loading, graph building and time per iteration.

Each run is a fresh process, so the peak resident memory it reports is that run's alone.
Prints the median (and min/max) over the runs, and the time plain CSV readers need for the
same files (pyarrow's reader and, when pandas is installed, ``pandas.read_csv``).

    python scripts/bench_plaintext.py --accounts 1000000 --edges 10000000 --runs 3
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path


def worker(data: Path, iterations: int) -> dict[str, float]:
    """One measured run inside this process."""
    from riskprop.core.data import load_dataset
    from riskprop.core.graph import build_global
    from riskprop.core.plaintext import PreparedPeriod, step
    from riskprop.core.schedule import DeltaSchedule

    t0 = time.perf_counter()
    dataset = load_dataset(data)
    t1 = time.perf_counter()
    graph = build_global(dataset)
    period = PreparedPeriod.from_csr(graph.incoming[0])
    t2 = time.perf_counter()
    scores = graph.initial.copy()
    schedule = DeltaSchedule(0.5, 0.0)
    per_iteration = []
    for k in range(1, iterations + 1):
        started = time.perf_counter()
        scores = step(period, scores, schedule.delta(k))
        per_iteration.append(time.perf_counter() - started)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "load_s": t1 - t0,
        "build_s": t2 - t1,
        "iteration_s": statistics.median(per_iteration),
        "peak_gib": peak_kib / 2**20,
        "accounts": float(graph.n_accounts),
        "edges": float(graph.incoming[0].nnz),
    }


def reader_worker(data: Path, reader: str) -> dict[str, float]:
    """Time a plain CSV reader over every bank's two files (strings as strings)."""
    files = sorted(data.glob("*/accounts.csv")) + sorted(data.glob("*/transactions.csv"))
    started = time.perf_counter()
    if reader == "pandas":
        import pandas as pd

        for f in files:
            pd.read_csv(f)
    else:
        import pyarrow.csv as pa_csv

        for f in files:
            pa_csv.read_csv(f)
    return {"read_s": time.perf_counter() - started}


def run(args: list[str]) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, *args], check=True, capture_output=True, text=True
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def summary(name: str, values: list[float], unit: str) -> str:
    med = statistics.median(values)
    return f"{name:<28}{med:>10.3f} {unit}   (min {min(values):.3f}, max {max(values):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--edges", type=int, default=10_000_000)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--data", type=Path, help="data set (generated here when missing)")
    parser.add_argument("--worker", choices=["engine", "pyarrow", "pandas"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    data = args.data or Path(f"/tmp/riskprop-bench-{args.accounts}-{args.edges}")

    if args.worker == "engine":
        print(json.dumps(worker(data, args.iterations)))
        return
    if args.worker:
        print(json.dumps(reader_worker(data, args.worker)))
        return

    if not (data / "labels.csv").is_file():
        from riskprop.lab.synthetic import generate_dataset

        print(f"generating {args.accounts} accounts, {args.edges} transactions into {data} ...")
        generate_dataset(data, accounts=args.accounts, edges=args.edges, seed=1)

    engine = [
        run(["--worker", "engine", "--data", str(data), "--iterations", str(args.iterations)])
        for _ in range(args.runs)
    ]
    readers = {}
    for reader in ("pyarrow", "pandas"):
        try:
            readers[reader] = [
                run(["--worker", reader, "--data", str(data)])["read_s"] for _ in range(args.runs)
            ]
        except subprocess.CalledProcessError:
            print(f"({reader} reader not available; skipped)")
    first = engine[0]
    print(
        f"data set: {int(first['accounts']):,} accounts, {int(first['edges']):,} counted edges, "
        f"{args.runs} runs, each in a fresh process"
    )
    print(summary("load (validate + index)", [r["load_s"] for r in engine], "s"))
    print(summary("build graph", [r["build_s"] for r in engine], "s"))
    print(summary("one iteration", [r["iteration_s"] for r in engine], "s"))
    print(summary("peak memory", [r["peak_gib"] for r in engine], "GiB"))
    for reader, times in readers.items():
        print(summary(f"plain read ({reader})", times, "s"))


if __name__ == "__main__":
    main()
