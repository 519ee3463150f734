"""Cost of the windowed rules in real time (``riskprop.stream.windows``), in microseconds a record.

Makes ``--transactions`` raw transactions with planted typologies (``riskprop.lab.rawgen``, two
banks, bank alice's file), parses them as stream records, and feeds them in time order,
``--batch`` at a time, to a fresh :class:`~riskprop.stream.windows.Windows` of the shipped rules,
``--runs`` times. Prints the median microseconds a record of ``Windows.update`` and, for
comparison, of the transaction-level alerts (``alerts.alerts``), of the outbox function without
and with the windows (``alerts.outbox``: alerts encoded as JSON; with ``windows=``, both kinds
merged), the windowed alerts per rule and the state held at the end. Parsing and the store
are not included (``scripts/bench_stream.py``).

Prints numbers only. Not a test: run it on an idle machine.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from riskprop.lab.rawgen import generate_raw
from riskprop.scoring.rules import default_rules_path, load_rules
from riskprop.stream.alerts import alerts, outbox
from riskprop.stream.records import RecordRules, Transaction, parse
from riskprop.stream.windows import Windows


def per_record(
    txs: Sequence[Transaction],
    batch: int,
    runs: int,
    makers: dict[str, Callable[[], Callable[[list[Transaction]], object]]],
) -> dict[str, float]:
    """Per maker the median over ``runs`` of microseconds a record, each run with a fresh
    ``make()``; the makers take turns within a run, so a load change on a shared machine
    affects them alike."""
    times: dict[str, list[float]] = {name: [] for name in makers}
    for _ in range(runs):
        for name, make in makers.items():
            step = make()
            start = time.perf_counter()
            for i in range(0, len(txs), batch):
                step(list(txs[i : i + batch]))
            times[name].append((time.perf_counter() - start) / len(txs) * 1e6)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--transactions", type=int, default=200_000)
    parser.add_argument("--accounts", type=int, default=6_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rules = load_rules(default_rules_path())
    with tempfile.TemporaryDirectory() as folder:
        generate_raw(
            Path(folder),
            banks=["alice", "bob"],
            accounts=args.accounts,
            transactions=args.transactions,
            days=args.days,
            seed=args.seed,
        )
        lines = (Path(folder) / "alice" / "raw.csv").read_bytes().splitlines()[1:]
    parsed = [parse(line, RecordRules(bank="alice")) for line in lines]
    txs = [x for x in parsed if isinstance(x, Transaction)]
    print(f"{len(txs)} records of alice, batches of {args.batch}, median of {args.runs} runs")

    makers: dict[str, Callable[[], Callable[[list[Transaction]], object]]] = {
        "windowed rules (Windows.update)": lambda: Windows("alice", rules).update,
        "transaction-level rules (alerts.alerts)": lambda: lambda b: alerts(b, "alice", rules),
        "the same, encoded (alerts.outbox)": lambda: outbox("alice", rules),
        "both, merged (alerts.outbox, windows=)": lambda: outbox(
            "alice", rules, windows=Windows("alice", rules)
        ),
    }
    for name, us in per_record(txs, args.batch, args.runs, makers).items():
        print(f"{name + ':':42} {us:8.2f} us/record")

    windows = Windows("alice", rules)
    found = []
    for i in range(0, len(txs), args.batch):
        found += windows.update(txs[i : i + args.batch])
    counts = Counter(w.rule for w in found)
    print("windowed alerts per rule:", dict(sorted(counts.items())))
    print(f"entries held at the end: {windows.size()}")


if __name__ == "__main__":
    main()
