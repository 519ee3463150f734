#!/usr/bin/env python3
"""Benchmark of ``riskprop score`` as a whole process on generated raw transactions.

Writes ``--rows`` raw transactions of bank ``A`` in riskprop's raw layout (see
``riskprop.scoring.raw``) with counterparties at banks ``B`` and ``C``, then runs ``riskprop
score RAW --bank A --out DATA`` ``--repeat`` times in a child process and prints the rows, the
median wall-clock seconds and the largest peak resident memory of the runs in GiB (each
process's own ``ru_maxrss``).

The data: ``rows / 20`` own accounts, timestamps uniform over 90 days (a tenth written with a
``+01:00`` offset), log-normal amounts (median 300), types cash / wire / card / ach, 2 % failed
and 0.5 % reversed, and planted typologies: structuring (cash just below 10,000 a few days
apart), pass-through (in, then out again within hours at a similar amount), fan-in (many
senders to one account in a day), high-risk counterparty countries and reportable cash.

    python scripts/bench_score.py --rows 1000000
    python scripts/bench_score.py --compare-writers --rows 10000000
    python scripts/bench_score.py --rows 10000000 --write raw.csv   # only the file

``--compare-writers`` instead times writing a ``transactions.csv`` of ``--rows`` rows with
Python's ``csv`` module and with pyarrow's CSV writer (``riskprop.scoring.output``'s choice).
"""

from __future__ import annotations

import argparse
import csv
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

from riskprop.files.layout import format_fixed

HEADER = (
    "tx_id,timestamp,source,source_bank,target,target_bank,amount,currency,type,channel,"
    "source_country,target_country,status"
)
START = 1_700_006_400  # 2023-11-15T00:00:00Z
DAYS = 90


def _ids(prefix: str, numbers: np.ndarray) -> pa.Array:
    text = pa.array(numbers.astype(np.int64), type=pa.int64()).cast(pa.string())
    return pc.binary_join_element_wise(pa.scalar(prefix), text, "")


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """Write ``rows`` raw transactions of bank A with planted typologies (see module doc)."""
    rng = np.random.default_rng(seed)
    n_own = max(rows // 20, 10)
    n_foreign = max(rows // 10, 10)
    own = rng.integers(0, n_own, rows)
    other = rng.integers(0, n_foreign, rows)
    other_bank = rng.integers(0, 3, rows)  # 0: A (internal), 1: B, 2: C
    outgoing = rng.random(rows) < 0.5
    time_s = START + rng.integers(0, DAYS * 86_400, rows)
    amount = np.round(rng.lognormal(np.log(300.0), 1.2, rows), 2)
    kind = rng.choice(np.array(["wire", "card", "ach", "cash"]), rows, p=[0.4, 0.3, 0.2, 0.1])
    country = np.full(rows, "NL", dtype=object)
    status = rng.choice(
        np.array(["completed", "failed", "reversed"]), rows, p=[0.975, 0.02, 0.005]
    ).astype(object)

    # Structuring: 0.5 % of rows are cash deposits just below 10,000 by 0.2 % of accounts.
    s = rng.random(rows) < 0.005
    own[s] = rng.integers(0, max(n_own // 500, 1), int(s.sum()))
    outgoing[s] = False
    kind[s] = "cash"
    amount[s] = np.round(rng.uniform(9_000.0, 9_999.99, int(s.sum())), 2)
    # Reportable cash: 0.1 % of rows at or over 10,000.
    c = rng.random(rows) < 0.001
    kind[c] = "cash"
    amount[c] = np.round(rng.uniform(10_000.0, 50_000.0, int(c.sum())), 2)
    # Pass-through: pairs of rows (in, then out 1-5 hours later, 97-100 % of the amount).
    p = np.flatnonzero(rng.random(rows) < 0.002)
    p = p[p + 1 < rows]
    own[p + 1] = own[p]
    outgoing[p], outgoing[p + 1] = False, True
    amount[p] = np.round(rng.uniform(5_000.0, 40_000.0, len(p)), 2)
    amount[p + 1] = np.round(amount[p] * rng.uniform(0.97, 1.0, len(p)), 2)
    time_s[p + 1] = time_s[p] + rng.integers(3_600, 5 * 3_600, len(p))
    kind[p], kind[p + 1] = "wire", "wire"
    status[p], status[p + 1] = "completed", "completed"
    # Fan-in: 0.5 % of rows go to 0.02 % of accounts within one day each.
    f = rng.random(rows) < 0.005
    hub = rng.integers(0, max(n_own // 5_000, 1), int(f.sum()))
    own[f], outgoing[f] = hub, False
    time_s[f] = START + (hub % DAYS) * 86_400 + rng.integers(0, 86_400, int(f.sum()))
    # High-risk counterparty countries on 0.1 % of rows.
    h = rng.random(rows) < 0.001
    country[h] = rng.choice(np.array(["IR", "KP", "MM"], dtype=object), int(h.sum()))

    own_id = _ids("A", own)
    other_id = _ids("X", other)
    banks = np.array(["A", "B", "C"], dtype=object)[other_bank]
    a_bank = pa.array(np.full(rows, "A", dtype=object), type=pa.string())
    o_bank = pa.array(banks, type=pa.string())
    out_mask = pa.array(outgoing)
    offset = rng.random(rows) < 0.1
    stamps = np.datetime_as_string((time_s + np.where(offset, 3_600, 0)).astype("datetime64[s]"))
    zone = np.where(offset, "+01:00", "Z").astype(object)
    columns = [
        _ids("T", np.arange(rows)),
        pc.binary_join_element_wise(pa.array(stamps), pa.array(zone, type=pa.string()), ""),
        pc.if_else(out_mask, own_id, other_id),
        pc.if_else(out_mask, a_bank, o_bank),
        pc.if_else(out_mask, other_id, own_id),
        pc.if_else(out_mask, o_bank, a_bank),
        format_fixed(np.rint(amount * 100).astype(np.int64), 2),
        pa.array(np.full(rows, "USD", dtype=object), type=pa.string()),
        pa.array(kind.astype(object), type=pa.string()),
        pa.array(np.full(rows, "online", dtype=object), type=pa.string()),
        pa.array(np.full(rows, "NL", dtype=object), type=pa.string()),
        pa.array(country, type=pa.string()),
        pa.array(status, type=pa.string()),
    ]
    table = pa.table(columns, names=HEADER.split(","))
    with pa.OSFile(str(path), "wb") as sink:
        sink.write((HEADER + "\n").encode())
        pa_csv.write_csv(
            table,
            sink,
            write_options=pa_csv.WriteOptions(include_header=False, quoting_style="none"),
        )


#: runs ``riskprop`` with the arguments given and writes the process's own peak resident memory
#: (KiB) to stderr as its last line, whatever the exit
_MEASURED = (
    "import resource, runpy, sys\n"
    "sys.argv = ['riskprop', *sys.argv[1:]]\n"
    "try:\n"
    "    runpy.run_module('riskprop', run_name='__main__')\n"
    "finally:\n"
    "    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
)


def run_score(raw: Path, out: Path) -> tuple[float, float]:
    """Seconds and peak resident GiB of one ``riskprop score`` process, as the process itself
    reports it."""
    command = [sys.executable, "-c", _MEASURED, "score", str(raw), "--bank", "A", "--out", str(out)]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"riskprop score failed:\n{result.stderr}")
    print(result.stdout, end="")
    return seconds, int(result.stderr.strip().splitlines()[-1]) / 2**20


def compare_writers(rows: int, directory: Path) -> None:
    """Seconds to write a transactions.csv of ``rows`` rows: csv module against pyarrow."""
    rng = np.random.default_rng(0)
    src = _ids("A", rng.integers(0, rows // 20, rows))
    dst = _ids("X", rng.integers(0, rows // 10, rows))
    bank = pa.array(np.full(rows, "A", dtype=object), type=pa.string())
    amount = format_fixed(rng.integers(0, 10**7, rows), 2)
    period = pa.array(rng.integers(0, 90, rows), type=pa.int64())
    table = pa.table([src, bank, dst, bank, amount, period], names=list("abcdef"))

    started = time.perf_counter()
    with (directory / "csv.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(list("abcdef"))
        columns = [table.column(i).to_pylist() for i in range(6)]
        writer.writerows(zip(*columns, strict=True))
    python_s = time.perf_counter() - started

    started = time.perf_counter()
    with pa.OSFile(str(directory / "arrow.csv"), "wb") as sink:
        sink.write(b"a,b,c,d,e,f\n")
        pa_csv.write_csv(
            table,
            sink,
            write_options=pa_csv.WriteOptions(include_header=False, quoting_style="none"),
        )
    arrow_s = time.perf_counter() - started
    print(f"rows {rows}: csv module {python_s:.2f} s, pyarrow {arrow_s:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="raw rows (default 10M)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of riskprop score (median)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", type=Path, help="work directory (default: a temporary one)")
    parser.add_argument("--compare-writers", action="store_true", help="time the CSV writers")
    parser.add_argument("--write", type=Path, help="only write the raw file to this path")
    args = parser.parse_args()
    if args.write is not None:
        generate(args.write, args.rows, args.seed)
        return
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        work = Path(tmp)
        if args.compare_writers:
            compare_writers(args.rows, work)
            return
        raw = work / "raw.csv"
        started = time.perf_counter()
        # in a child: Linux keeps a process's peak memory across exec, so a score process
        # forked from a parent that had generated 10M rows would report the parent's peak
        command = [sys.executable, __file__, "--rows", str(args.rows), "--seed", str(args.seed)]
        subprocess.run([*command, "--write", str(raw)], check=True)
        size = raw.stat().st_size / 2**30
        print(
            f"generated {args.rows} rows ({size:.2f} GiB) in {time.perf_counter() - started:.1f} s"
        )
        runs = [run_score(raw, work / "data") for _ in range(args.repeat)]
    times = [seconds for seconds, _ in runs]
    peak = max(gib for _, gib in runs)
    print(
        f"rows {args.rows}  seconds {statistics.median(times):.2f} (median of {len(times)}: "
        f"{', '.join(f'{t:.2f}' for t in times)})  peak RSS {peak:.2f} GiB"
    )


if __name__ == "__main__":
    main()
