"""Benchmark reading raw transactions: ``riskprop.scoring.raw.read_raw`` on generated rows.

Writes N rows in riskprop's raw layout to a temporary file (100,000 accounts at two banks,
timestamps over 30 days with offsets Z, +01:00 and -05:00, four currencies, four types, some
countries, channels and failed rows), then reads it three times, each in a fresh process so
that its peak resident memory is the read's own, and prints the median time, rows per second
and the largest peak RSS (``resource.getrusage``, the child's ``ru_maxrss``).

    python scripts/bench_score_read.py 1000000
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from riskprop.scoring.raw import RISKPROP_HEADER, read_raw


def generate(path: Path, n: int, seed: int = 0) -> None:
    """N rows of riskprop's raw layout, built column by column (no loop per row)."""
    rng = np.random.default_rng(seed)

    def pick(values: list[str], p: list[float] | None = None) -> pa.Array:
        return pa.array(np.asarray(values, dtype=object)[rng.choice(len(values), n, p=p)])

    def numbered(prefix: str, numbers: np.ndarray) -> pa.Array:
        return pc.binary_join_element_wise(prefix, pc.cast(pa.array(numbers), pa.string()), "")

    seconds = 1_790_000_000 + np.sort(rng.integers(0, 30 * 86_400, n))
    zones = np.asarray(["Z", "+01:00", "-05:00"], dtype=object)
    zone_index = rng.integers(0, 3, n)
    shift = np.asarray([0, 3600, -5 * 3600])[zone_index]
    local = np.datetime_as_string((seconds + shift).astype("datetime64[s]"), unit="s")
    stamps = pc.binary_join_element_wise(pa.array(local), pa.array(zones[zone_index]), "")
    accounts = rng.integers(0, 50_000, (2, n))
    banks = np.asarray(["alice", "bob"], dtype=object)
    bank = rng.integers(0, 2, (2, n))
    cents = np.minimum(rng.lognormal(9.0, 1.5, n), 1e10).astype(np.int64)
    amounts = pc.binary_join_element_wise(
        pc.cast(pa.array(cents // 100), pa.string()),
        pc.utf8_lpad(pc.cast(pa.array(cents % 100), pa.string()), 2, "0"),
        ".",
    )
    columns = {
        "tx_id": numbered("t", np.arange(n)),
        "timestamp": stamps,
        "source": numbered("acc", accounts[0] * 2 + bank[0]),
        "source_bank": pa.array(banks[bank[0]]),
        "target": numbered("acc", accounts[1] * 2 + bank[1]),
        "target_bank": pa.array(banks[bank[1]]),
        "amount": amounts,
        "currency": pick(["USD", "EUR", "GBP", "JPY"], [0.7, 0.2, 0.05, 0.05]),
        "type": pick(["cash", "wire", "ach", "card"]),
        "channel": pick(["", "branch", "online", "atm"]),
        "source_country": pick(["", "NL", "US", "IR"], [0.5, 0.3, 0.19, 0.01]),
        "target_country": pick(["", "NL", "US", "KP"], [0.5, 0.3, 0.19, 0.01]),
        "status": pick(["completed", "failed", "reversed"], [0.97, 0.02, 0.01]),
    }
    assert tuple(columns) == RISKPROP_HEADER
    pa_csv.write_csv(
        pa.table(columns), path, write_options=pa_csv.WriteOptions(quoting_style="none")
    )


def child(path: Path) -> None:
    start = time.perf_counter()
    raw = read_raw(path)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": seconds, "rows": raw.n, "peak_rss": peak}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int, nargs="?", default=1_000_000, help="rows to generate")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "raw.csv"
        start = time.perf_counter()
        generate(path, args.n)
        size = path.stat().st_size
        print(
            f"generated {args.n:,} rows ({size / 2**20:.0f} MiB) in "
            f"{time.perf_counter() - start:.1f} s"
        )
        results = []
        for _ in range(args.runs):
            done = subprocess.run(
                [sys.executable, __file__, "--child", str(path)],
                check=True,
                capture_output=True,
                text=True,
            )
            results.append(json.loads(done.stdout))
    times = [float(r["seconds"]) for r in results]
    median = statistics.median(times)
    peak = max(r["peak_rss"] for r in results)
    print(
        f"read_raw: median {median:.2f} s of {args.runs} "
        f"({', '.join(f'{t:.2f}' for t in times)}), "
        f"{args.n / median:,.0f} rows/s, peak RSS {peak / 2**20:.0f} MiB"
    )


if __name__ == "__main__":
    main()
