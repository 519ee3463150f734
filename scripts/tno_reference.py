#!/usr/bin/env python3
"""Run TNO's secure risk propagation on a riskprop data set, as a measured reference.

This script drives the public API of the PyPI package ``tno.mpc.protocols.risk_propagation``
(threshold Paillier with a distributively generated key, one ``Player`` per bank). It does
*not* run under the riskprop venv: TNO's dependency set conflicts with ours, so it needs a
separate venv, e.g. (pins as in ``scripts/README-tno.md``)::

    python3.11 -m venv /tmp/tno-venv && /tmp/tno-venv/bin/pip install \\
        'tno.mpc.protocols.risk_propagation[gmpy]==2.3.4' \\
        'tno.mpc.encryption_schemes.utils[gmpy]==0.15.0'
    /tmp/tno-venv/bin/python scripts/tno_reference.py /tmp/bench/a --key-bits 2048 \\
        --iterations 3 --delta 0.5 --out /tmp/bench/a-tno.csv

What it does:

* reads a riskprop data set with exactly three banks (``DATA_DIR/<bank>/accounts.csv`` and
  ``transactions.csv``) using the csv module only (riskprop is not importable here);
* converts it to TNO's input arrays: account labels become ``<bank>/<id>`` because TNO keys
  accounts by label alone, amounts become integer cents (TNO wants int32), accounts that
  occur only in transactions join at risk 0 and self-loops are dropped (as riskprop does),
  parallel transactions are added up (riskprop's rule; TNO keeps incoming edges in a set of
  ``(sender, amount)`` pairs, which would silently drop exact duplicates from the numerator);
* runs the three parties as three processes talking HTTP over 127.0.0.1 -- TNO's normal
  deployment (its example runs one process per player), which also lets the parties use
  both cores as separate banks would;
* uses a distributed key cached under ``--key-cache`` (one file per party); if it is absent
  it is generated first with TNO's distributed key generation and saved, and the generation
  time is reported separately;
* writes ``bank,id,risk_score`` (the form of ``riskprop simulate -o``) and prints one JSON
  line with ``wall_s`` and ``cpu_s`` of the propagation run (user+sys of this process and all
  its children, from ``resource.getrusage``), plus ``keygen_s``/``keygen_cpu_s`` when a key
  was generated.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

N_PARTIES = 3
PARTY_NAMES = tuple(f"party{i}" for i in range(N_PARTIES))
CENTS = 100
INT32_MAX = 2**31 - 1
DEFAULT_KEY_CACHE = Path.home() / ".cache" / "riskprop-bench" / "tno"
# TNO's distributed key generation parameters (its defaults, except precision).
CORRUPTION_THRESHOLD = 1
PRIME_THRESHOLD = 2000
BIPRIME_PARAM = 40
STAT_SEC_SHAMIR = 40


# ------------------------------------------------------------------------------ data


@dataclass(frozen=True)
class BankInput:
    """One bank converted to TNO's vocabulary (plain Python values, JSON-friendly)."""

    name: str
    party: str
    accounts: list[tuple[str, float]]
    # per period index: (id_source, bank_source, id_destination, bank_destination, amount)
    transactions: list[list[tuple[str, str, str, str, int]]]
    merged_parallel: int
    dropped_self_loops: int


def bank_names(root: Path) -> list[str]:
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(names) != N_PARTIES:
        raise SystemExit(f"{root}: expected {N_PARTIES} bank directories, found {names}")
    return names


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return [row for row in csv.DictReader(handle) if any(row.values())]


def all_periods(root: Path, banks: Sequence[str]) -> list[int]:
    found: set[int] = set()
    for bank in banks:
        for row in read_rows(root / bank / "transactions.csv"):
            found.add(int(row.get("period") or 0))
    return sorted(found) or [0]


def label(bank: str, account: str) -> str:
    return f"{bank}/{account}"


def load_bank(root: Path, bank: str, banks: Sequence[str], periods: Sequence[int]) -> BankInput:
    """Read one bank's files and convert them to TNO's input (see module doc)."""
    party_of = dict(zip(banks, PARTY_NAMES, strict=True))
    accounts = [
        (label(bank, row["id"]), float(row["risk_score"]))
        for row in read_rows(root / bank / "accounts.csv")
    ]
    known = {name for name, _ in accounts}
    period_index = {p: i for i, p in enumerate(periods)}
    merged: list[dict[tuple[str, str, str, str], int]] = [{} for _ in periods]
    n_rows = 0
    loops = 0
    for row in read_rows(root / bank / "transactions.csv"):
        src_bank, dst_bank = row["bank_source"], row["bank_destination"]
        src, dst = label(src_bank, row["id_source"]), label(dst_bank, row["id_destination"])
        if src == dst:
            loops += 1
            continue
        n_rows += 1
        for account, owner in ((src, src_bank), (dst, dst_bank)):
            if owner == bank and account not in known:
                known.add(account)
                accounts.append((account, 0.0))
        cents = round(float(row["amount"]) * CENTS)
        key = (src, party_of[src_bank], dst, party_of[dst_bank])
        edges = merged[period_index[int(row.get("period") or 0)]]
        edges[key] = edges.get(key, 0) + cents
    transactions = []
    for edges in merged:
        rows = [(*key, amount) for key, amount in edges.items()]
        if any(amount > INT32_MAX for *_, amount in rows):
            raise SystemExit(f"{bank}: an amount does not fit TNO's int32 after scaling")
        transactions.append(rows)
    n_kept = sum(len(edges) for edges in merged)
    return BankInput(
        name=bank,
        party=party_of[bank],
        accounts=accounts,
        transactions=transactions,
        merged_parallel=n_rows - n_kept,
        dropped_self_loops=loops,
    )


# --------------------------------------------------------------------- party processes


def make_pool(index: int, base_port: int) -> Any:
    from tno.mpc.communication import Pool

    pool = Pool()
    pool.add_http_server(port=base_port + index, addr="127.0.0.1")
    for other, name in enumerate(PARTY_NAMES):
        if other != index:
            pool.add_http_client(name, "127.0.0.1", port=base_port + other)
    return pool


async def barrier(pool: Any, tag: str) -> None:
    """Wait until every party got here, so that no party closes its server while a message
    to it is still in flight (TNO's decryption broadcasts without waiting)."""
    msg_id = f"barrier-{tag}"
    await asyncio.gather(
        *(pool.send(name, "done", msg_id=msg_id) for name in pool.pool_handlers),
        pool.recv_all(msg_id=msg_id),
    )


async def keygen_party(
    index: int, base_port: int, bits: int, precision: int, prime_threshold: int, out: Path
) -> None:
    from tno.mpc.protocols.distributed_keygen import DistributedPaillier

    pool = make_pool(index, base_port)
    scheme = await DistributedPaillier.from_security_parameter(
        pool,
        corruption_threshold=CORRUPTION_THRESHOLD,
        key_length=bits,
        prime_threshold=prime_threshold,
        correct_param_biprime=BIPRIME_PARAM,
        stat_sec_shamir=STAT_SEC_SHAMIR,
        distributed=True,
        precision=precision,
    )
    partial = out.with_suffix(".tmp")
    partial.write_bytes(scheme.store_private_key())
    partial.replace(out)
    await barrier(pool, "keygen")
    scheme.shut_down()
    await pool.shutdown()


async def run_party(
    index: int, base_port: int, key_file: Path, bank: BankInput, iterations: int, delta: float
) -> dict[str, Any]:
    import numpy as np
    from tno.mpc.protocols.distributed_keygen import DistributedPaillier
    from tno.mpc.protocols.risk_propagation import Player
    from tno.mpc.protocols.risk_propagation.accounts import nodes_expected_dtype
    from tno.mpc.protocols.risk_propagation.bank import transactions_expected_dtype

    started = time.perf_counter()
    pool = make_pool(index, base_port)
    scheme = await DistributedPaillier.load_private_key_from_bytes(
        key_file.read_bytes(), pool, True
    )
    accounts = np.array(bank.accounts, dtype=nodes_expected_dtype)
    transactions = [np.array(rows, dtype=transactions_expected_dtype) for rows in bank.transactions]
    player = Player(
        name=bank.party,
        accounts=accounts,
        transactions=transactions,
        pool=pool,
        paillier=scheme,
        delta_func=lambda _iteration: delta,
    )
    loaded = time.perf_counter()
    await player.run_protocol(iterations=iterations)
    done = time.perf_counter()
    scores = {name: float(value) for name, value in player.risk_scores.items()}
    await barrier(pool, "run")
    await pool.shutdown()
    return {"setup_s": loaded - started, "protocol_s": done - loaded, "scores": scores}


def child_main(config: dict[str, Any]) -> None:
    """Entry point of one party process (``--child CONFIG_JSON``)."""
    import logging
    import warnings

    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")
    index, base_port = int(config["index"]), int(config["base_port"])
    if config["role"] == "keygen":
        asyncio.run(
            keygen_party(
                index,
                base_port,
                int(config["bits"]),
                int(config["precision"]),
                int(config["prime_threshold"]),
                Path(config["key_file"]),
            )
        )
        return
    bank_fields = json.loads(Path(config["bank_file"]).read_text())
    bank = BankInput(
        name=bank_fields["name"],
        party=bank_fields["party"],
        accounts=[tuple(a) for a in bank_fields["accounts"]],
        transactions=[[tuple(t) for t in rows] for rows in bank_fields["transactions"]],
        merged_parallel=bank_fields["merged_parallel"],
        dropped_self_loops=bank_fields["dropped_self_loops"],
    )
    result = asyncio.run(
        run_party(
            index,
            base_port,
            Path(config["key_file"]),
            bank,
            int(config["iterations"]),
            float(config["delta"]),
        )
    )
    Path(config["result_file"]).write_text(json.dumps(result))


# --------------------------------------------------------------------------- driver


def cpu_seconds() -> float:
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def run_children(configs: Sequence[dict[str, Any]]) -> None:
    """Start one process per party and wait for all; fail if any fails."""
    script = str(Path(__file__).resolve())
    procs = [
        subprocess.Popen([sys.executable, script, "--child", json.dumps(config)])
        for config in configs
    ]
    running = list(procs)
    while running:
        time.sleep(0.2)
        for proc in list(running):
            code = proc.poll()
            if code is None:
                continue
            running.remove(proc)
            if code:  # the others would wait for it forever
                for other in running:
                    other.kill()
                    other.wait()
                raise SystemExit(f"party process {procs.index(proc)} failed (exit code {code})")


def key_files(cache: Path, bits: int, precision: int) -> list[Path]:
    return [cache / f"key-{bits}bit-prec{precision}-{name}.bin" for name in PARTY_NAMES]


def ensure_key(
    cache: Path, bits: int, precision: int, base_port: int, prime_threshold: int = PRIME_THRESHOLD
) -> dict[str, float]:
    """Generate and store the distributed key unless every party's file is cached."""
    files = key_files(cache, bits, precision)
    if all(f.is_file() for f in files):
        return {}
    cache.mkdir(parents=True, exist_ok=True)
    wall0, cpu0 = time.perf_counter(), cpu_seconds()
    run_children(
        [
            {
                "role": "keygen",
                "index": i,
                "base_port": base_port,
                "bits": bits,
                "precision": precision,
                "prime_threshold": prime_threshold,
                "key_file": str(files[i]),
            }
            for i in range(N_PARTIES)
        ]
    )
    return {"keygen_s": time.perf_counter() - wall0, "keygen_cpu_s": cpu_seconds() - cpu0}


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path, metavar="DATA_DIR")
    parser.add_argument("--key-bits", type=int, required=True)
    parser.add_argument("--iterations", type=int, required=True)
    parser.add_argument("--delta", type=float, required=True)
    parser.add_argument("--out", type=Path, required=True, metavar="CSV")
    parser.add_argument("--key-cache", type=Path, default=DEFAULT_KEY_CACHE, metavar="DIR")
    parser.add_argument(
        "--precision",
        type=int,
        default=8,
        help="decimal digits of TNO's fixed-point encoding (part of the key; TNO's example: 8)",
    )
    parser.add_argument("--base-port", type=int, default=18731, help="ports base..base+2")
    parser.add_argument(
        "--keygen-only", action="store_true", help="only make sure the key is cached"
    )
    parser.add_argument(
        "--prime-threshold",
        type=int,
        default=PRIME_THRESHOLD,
        help="key generation: trial-divide candidate moduli by the primes below this bound "
        "(TNO's default 2000). Only the search speed changes, not the key's distribution.",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> None:
    if len(argv) == 2 and argv[0] == "--child":
        child_main(json.loads(argv[1]))
        return
    args = parse_args(argv)
    report: dict[str, Any] = {"key_bits": args.key_bits, "precision": args.precision}
    report.update(
        ensure_key(
            args.key_cache, args.key_bits, args.precision, args.base_port, args.prime_threshold
        )
    )
    if args.keygen_only:
        print(json.dumps(report), flush=True)
        return

    wall0, cpu0 = time.perf_counter(), cpu_seconds()
    banks = bank_names(args.data_dir)
    periods = all_periods(args.data_dir, banks)
    files = key_files(args.key_cache, args.key_bits, args.precision)
    with tempfile.TemporaryDirectory(prefix="tno-ref-") as tmp:
        configs = []
        merged = loops = 0
        for i, bank in enumerate(banks):
            data = load_bank(args.data_dir, bank, banks, periods)
            merged += data.merged_parallel
            loops += data.dropped_self_loops
            bank_file = Path(tmp) / f"{bank}.json"
            bank_file.write_text(json.dumps(asdict(data)))
            configs.append(
                {
                    "role": "run",
                    "index": i,
                    "base_port": args.base_port,
                    "key_file": str(files[i]),
                    "bank_file": str(bank_file),
                    "iterations": args.iterations,
                    "delta": args.delta,
                    "result_file": str(Path(tmp) / f"{bank}.result.json"),
                }
            )
        run_children(configs)
        results = [json.loads(Path(c["result_file"]).read_text()) for c in configs]
    with args.out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["bank", "id", "risk_score"])
        for bank, result in zip(banks, results, strict=True):
            prefix = f"{bank}/"
            for name, score in result["scores"].items():
                writer.writerow([bank, name.removeprefix(prefix), repr(score)])
    report.update(
        {
            "wall_s": round(time.perf_counter() - wall0, 3),
            "cpu_s": round(cpu_seconds() - cpu0, 3),
            "protocol_s": round(max(r["protocol_s"] for r in results), 3),
            "setup_s": round(max(r["setup_s"] for r in results), 3),
            "periods": len(periods),
            "merged_parallel": merged,
            "dropped_self_loops": loops,
        }
    )
    for key in ("keygen_s", "keygen_cpu_s"):
        if key in report:
            report[key] = round(report[key], 3)
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main(sys.argv[1:])
