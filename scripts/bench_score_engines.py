#!/usr/bin/env python3
"""Three column engines on one task of ``riskprop score``: pyarrow + numpy (riskprop's), DuckDB
and Polars, each in its own process on the same raw file.

The task, the core of the reader and of the windowed rules: read the CSV (riskprop's raw
layout), parse the timestamps (with their zone) and the amounts, code the account ids, sort the
rows by (target, time) and count for each target its distinct sources. Every engine must give
the same total of distinct (target, source) pairs, which is printed to check it. DuckDB and
Polars are not riskprop's dependencies: install them into the environment to measure them
(``pip install duckdb polars``); an engine that is missing is reported as such.

    python scripts/bench_score.py --rows 10000000 --write /tmp/raw.csv
    python scripts/bench_score_engines.py /tmp/raw.csv --runs 3

Prints per engine the median wall-clock seconds of ``--runs`` processes and the largest peak
resident memory among them (each process's own ``ru_maxrss``).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import time
from pathlib import Path

ENGINES = ("pyarrow", "duckdb", "polars")

_PYARROW = """
import sys
import numpy as np
import pyarrow as pa, pyarrow.compute as pc, pyarrow.csv as pa_csv
t = pa_csv.read_csv(sys.argv[1], convert_options=pa_csv.ConvertOptions(
    column_types={c: pa.string() for c in ("tx_id", "source", "target", "timestamp", "amount")},
    include_columns=["source", "target", "timestamp", "amount"]))
stamp = pc.strptime(pc.utf8_slice_codeunits(t["timestamp"], 0, 19), format="%Y-%m-%dT%H:%M:%S",
                    unit="s")
amount = pc.cast(t["amount"], pa.float64())
codes = pc.dictionary_encode(pa.chunked_array(t["source"].chunks + t["target"].chunks))
every = np.concatenate([c.indices.to_numpy() for c in codes.chunks]).astype(np.int64)
source, target = every[: t.num_rows], every[t.num_rows :]
seconds = np.concatenate([c.to_numpy().astype(np.int64) for c in stamp.cast(pa.int64()).chunks])
order = np.lexsort((seconds, target))
pair = np.sort(target[order] * (int(every.max()) + 1) + source[order])
total = float(np.sum(np.concatenate([c.to_numpy() for c in amount.chunks])))
print(int(np.count_nonzero(pair[1:] != pair[:-1])) + 1, total)
"""

_DUCKDB = """
import sys, duckdb
con = duckdb.connect()
con.execute("SET threads TO 2")
con.execute("SET enable_progress_bar = false")
row = con.execute(f'''
  WITH raw AS (
    SELECT source, target, CAST(amount AS DOUBLE) AS amount,
           CAST(strptime(substr(timestamp, 1, 19), '%Y-%m-%dT%H:%M:%S') AS TIMESTAMP) AS t
    FROM read_csv('{sys.argv[1]}', header = true, all_varchar = true)
  ), sorted AS (SELECT * FROM raw ORDER BY target, t)
  SELECT (SELECT count(*) FROM (SELECT DISTINCT target, source FROM sorted)), sum(amount)
  FROM raw''').fetchone()
print(row[0], row[1])
"""

_POLARS = """
import sys, polars as pl
df = pl.read_csv(sys.argv[1], infer_schema=False, columns=["source", "target", "timestamp",
                                                            "amount"])
df = df.with_columns(
    pl.col("timestamp").str.slice(0, 19).str.strptime(pl.Datetime, "%Y-%m-%dT%H:%M:%S"),
    pl.col("amount").cast(pl.Float64),
    pl.col("source").cast(pl.Categorical), pl.col("target").cast(pl.Categorical))
df = df.sort(["target", "timestamp"])
pairs = df.select(["target", "source"]).unique().height
print(pairs, df["amount"].sum())
"""

PROGRAMS = {"pyarrow": _PYARROW, "duckdb": _DUCKDB, "polars": _POLARS}
#: appended to every program: its own peak resident memory in KiB, as the last line
_PEAK = "\nimport resource\nprint(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"


def run(engine: str, raw: Path) -> tuple[float, float, str]:
    """Seconds and peak GiB of one process running ``engine``'s program on ``raw``, and what
    it printed."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", PROGRAMS[engine] + _PEAK, str(raw)],
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{engine} failed:\n{done.stderr}")
    printed, peak = done.stdout.strip().rsplit("\n", 1)
    return seconds, int(peak) / 2**20, printed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("raw", type=Path, help="a raw file in riskprop's layout")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--engines", default=",".join(ENGINES))
    args = parser.parse_args()
    for engine in args.engines.split(","):
        module = "pyarrow" if engine == "pyarrow" else engine
        if importlib.util.find_spec(module) is None:
            print(f"{engine:8} not installed")
            continue
        results = [run(engine, args.raw) for _ in range(args.runs)]
        times = [seconds for seconds, _, _ in results]
        print(
            f"{engine:8} median {statistics.median(times):.2f} s "
            f"({', '.join(f'{t:.2f}' for t in times)}), "
            f"peak RSS {max(peak for _, peak, _ in results):.2f} GiB; "
            f"distinct pairs and amount sum: {results[0][2]}"
        )


if __name__ == "__main__":
    main()
