#!/usr/bin/env python3
"""Benchmark ``riskprop sweep``: 100 settings on IBM AMLSim's 20,000-account sample.

The grid is T in {0, 1, 2, 3, 4, 5, 6, 8, 10, 12} x delta_a in {0.1, 0.2, 0.3, 0.5, 0.7} x
combine in {plain, max} (delta_b = 0): 100 settings, each evaluated on all and on unflagged
accounts (six metrics each). Times, as the median (min-max) of ``--runs`` runs:

* the sweep: splitting the sample into 3 banks (per seed), loading it in the workers and
  evaluating every setting (``run_sweep``), with one worker per core and with one worker;
* the same over 5 seeds;
* writing the files: CSV, JSON, the recommendation and 14 plots (7 figures, PNG and SVG).

    python scripts/bench_sweep.py [--src DIR] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from riskprop.lab.recommend import recommend
from riskprop.lab.sweep import AmlsimSplits, Grid, SweepResult, run_sweep, write_sweep

GRID = Grid((0, 1, 2, 3, 4, 5, 6, 8, 10, 12), (0.1, 0.2, 0.3, 0.5, 0.7), (0.0,), ("plain", "max"))
SAMPLE = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "amlsim-20K_cycle200"


def timed(runs: int, call: Callable[[], object]) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return times


def summary(name: str, times: list[float]) -> str:
    return (
        f"{name:<44} {statistics.median(times):6.2f} s  "
        f"({min(times):.2f}-{max(times):.2f}, {len(times)} runs)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--src", type=Path, default=Path(os.environ.get("RISKPROP_AMLSIM") or SAMPLE)
    )
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not (args.src / "nodes.csv").is_file():
        sys.exit(f"AMLSim sample not found at {args.src} (--src or RISKPROP_AMLSIM)")
    source = AmlsimSplits(args.src)
    cores = os.cpu_count() or 1
    print(f"{len(GRID)} settings x 2 subsets on {args.src.name}; {cores} cores")

    def sweep(seeds: int, workers: int) -> SweepResult:
        result = run_sweep(source, GRID, seeds=range(seeds), workers=workers)
        assert len(result.summaries) == 2 * len(GRID)
        return result

    print(summary(f"sweep, 1 seed, {cores} workers", timed(args.runs, lambda: sweep(1, cores))))
    print(summary("sweep, 1 seed, 1 worker", timed(args.runs, lambda: sweep(1, 1))))
    print(summary(f"sweep, 5 seeds, {cores} workers", timed(args.runs, lambda: sweep(5, cores))))
    print(summary("sweep, 5 seeds, 1 worker", timed(args.runs, lambda: sweep(5, 1))))

    result = sweep(1, cores)
    advice = recommend(result.summaries, result.baseline, source=result.source)
    with tempfile.TemporaryDirectory() as tmp:
        files = timed(args.runs, lambda: write_sweep(result, Path(tmp), advice))
        bare = timed(args.runs, lambda: write_sweep(result, Path(tmp), advice, plots=False))
    print(summary("files with 14 plots (7 figures, PNG + SVG)", files))
    print(summary("files without plots (--no-plots)", bare))


if __name__ == "__main__":  # the sweep's worker processes import this file
    main()
