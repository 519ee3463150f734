"""Insert throughput of the candidate period stores for streaming ingestion (issue 21).

Each store takes ``--rows`` transactions (riskprop's raw columns plus period and stream id) in
batches of ``--batch``, one commit per batch, with tx_id unique; then the same rows again
(a full re-delivery, all duplicates). SQLite in WAL mode (synchronous NORMAL and FULL), DuckDB
when installed (PRIMARY KEY, INSERT OR IGNORE), Parquet (one file per batch; no uniqueness,
so a re-delivery would need a dedup pass at period close). Prints rows per second only.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

COLUMNS = (
    "tx_id TEXT NOT NULL UNIQUE, time INTEGER, utc_offset INTEGER, source TEXT, source_bank TEXT,"
    " target TEXT, target_bank TEXT, amount REAL, currency TEXT, original_amount REAL,"
    " kind TEXT, channel TEXT, source_country TEXT, target_country TEXT, status TEXT,"
    " period INTEGER, stream_id TEXT"
)
Row = tuple[Any, ...]


def rows(n: int) -> list[Row]:
    return [
        (
            f"t{i:09d}",
            1_764_000_000 + i,
            0,
            f"a{i % 5000}",
            "alice",
            f"b{(i * 7) % 9000}",
            "bob" if i % 3 else "alice",
            100.0 + i % 9000,
            "USD",
            100.0 + i % 9000,
            "wire",
            "online",
            "US",
            "GB",
            "completed",
            i // 50_000,
            f"{1_764_000_000_000 + i}-0",
        )
        for i in range(n)
    ]


def batches(data: list[Row], size: int) -> Iterator[list[Row]]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def sqlite_store(folder: Path, synchronous: str) -> Callable[[list[Row]], None]:
    db = sqlite3.connect(folder / f"store-{synchronous}.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute(f"CREATE TABLE tx ({COLUMNS})")
    marks = ",".join("?" * 17)

    def insert(batch: list[Row]) -> None:
        db.execute("BEGIN")
        db.executemany(f"INSERT OR IGNORE INTO tx VALUES ({marks})", batch)
        db.execute("COMMIT")

    return insert


def duckdb_store(folder: Path) -> Callable[[list[Row]], None] | None:
    try:
        import duckdb  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return None
    db = duckdb.connect(str(folder / "store.duckdb"))
    import pyarrow as pa

    db.execute(f"CREATE TABLE tx ({COLUMNS.replace('NOT NULL UNIQUE', 'PRIMARY KEY')})")
    names = [c.split()[0] for c in COLUMNS.split(",")]

    def insert(batch: list[Row]) -> None:
        # executemany binds row by row (minutes for 200k rows); an Arrow batch is its fast path
        table = pa.table({name: [r[i] for r in batch] for i, name in enumerate(names)})
        db.register("batch", table)
        db.execute("BEGIN")
        db.execute("INSERT OR IGNORE INTO tx SELECT * FROM batch")
        db.execute("COMMIT")
        db.unregister("batch")

    return insert


def parquet_store(folder: Path) -> Callable[[list[Row]], None]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = [c.split()[0] for c in COLUMNS.split(",")]
    count = [0]

    def insert(batch: list[Row]) -> None:
        table = pa.table({name: [r[i] for r in batch] for i, name in enumerate(names)})
        count[0] += 1
        pq.write_table(table, folder / f"part-{count[0]:06d}.parquet")

    return insert


def measure(insert: Callable[[list[Row]], None], data: list[Row], size: int) -> float:
    started = time.perf_counter()
    for batch in batches(data, size):
        insert(batch)
    return len(data) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    data = rows(args.rows)
    print(f"rows {args.rows} batch {args.batch}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        stores: dict[str, Callable[[list[Row]], None] | None] = {
            "sqlite-wal-normal": sqlite_store(folder, "NORMAL"),
            "sqlite-wal-full": sqlite_store(folder, "FULL"),
            "duckdb": duckdb_store(folder),
        }
        for name, insert in stores.items():
            if insert is None:
                print(f"{name:20s} not installed")
                continue
            first = measure(insert, data, args.batch)
            again = measure(insert, data, args.batch)
            print(f"{name:20s} new {first:10.0f} rows/s   re-delivered {again:10.0f} rows/s")
        pq_folder = folder / "parquet"
        pq_folder.mkdir()
        rate = measure(parquet_store(pq_folder), data, args.batch)
        print(f"{'parquet-per-batch':20s} new {rate:10.0f} rows/s   (no uniqueness)")


if __name__ == "__main__":
    main()
