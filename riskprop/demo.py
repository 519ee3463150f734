"""The demo: sample data, cached keys, a secure run of every bank, and a report.

Until the networked node lands, the banks run in this process over the in-memory transport
(the same protocol code and wire format the nodes use). Keys are dealt once per party set and
key length and cached under the user's cache directory, so a second demo starts at once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from riskprop.core.data import load_dataset
from riskprop.core.graph import build_global
from riskprop.core.plaintext import propagate
from riskprop.core.schedule import DeltaSchedule
from riskprop.core.threshold import default_threshold
from riskprop.errors import ConfigError
from riskprop.keys import dealer_keygen, load_share, share_file
from riskprop.node.inprocess import PartyOutcome, make_descriptor, run_in_process
from riskprop.results import atomic_write_text, scores_csv

BANK_NAMES = ("alice", "bob", "charlie", "dave", "erin", "frank", "grace", "heidi")
SAMPLE_ACCOUNTS = 300
SAMPLE_EDGES = 1000


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "riskprop"


def party_names(count: int) -> list[str]:
    if count < 2:
        raise ConfigError(f"--parties must be at least 2 (got {count})")
    if count <= len(BANK_NAMES):
        return list(BANK_NAMES[:count])
    return [f"bank{i}" for i in range(1, count + 1)]


def cached_keys(parties: Sequence[str], bits: int) -> Path:
    """Directory of a dealt key for these parties and this size, made on first use."""
    directory = cache_dir() / "keys" / f"{'-'.join(parties)}-{bits}"
    if not all(share_file(directory, p).is_file() for p in parties):
        dealer_keygen(directory, parties, default_threshold(len(parties)), bits)
    return directory


def sample_data(parties: Sequence[str]) -> Path:
    """A generated sample data set for these parties, made on first use."""
    from riskprop.synthetic import generate_dataset

    directory = cache_dir() / "data" / f"sample-{'-'.join(parties)}"
    if not all((directory / p / "transactions.csv").is_file() for p in parties):
        generate_dataset(
            directory, accounts=SAMPLE_ACCOUNTS, edges=SAMPLE_EDGES, banks=parties, seed=1
        )
    return directory


@dataclass(frozen=True, eq=False)
class DemoReport:
    data: Path
    out: Path
    key_bits: int
    seconds: float
    outcomes: dict[str, PartyOutcome]
    differences: dict[str, float]

    def table(self) -> str:
        """Per bank: accounts, seconds per phase, bytes sent, largest difference."""
        head = f"{'bank':<10}{'accounts':>9}{'handshake':>11}{'encrypt':>9}{'iterate':>9}"
        head += f"{'decrypt':>9}{'sent':>11}{'max |diff|':>12}"
        lines = [head]
        for name, o in self.outcomes.items():
            s = o.stats.seconds
            iterate = sum(v for k, v in s.items() if k.startswith("period"))
            lines.append(
                f"{name:<10}{len(o.account_ids):>9}{s.get('handshake', 0.0):>10.2f}s"
                f"{s.get('encrypt', 0.0):>8.2f}s{iterate:>8.2f}s{s.get('decrypt', 0.0):>8.2f}s"
                f"{_size(o.bytes_sent):>11}{self.differences[name]:>12.2e}"
            )
        return "\n".join(lines)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    raise AssertionError  # unreachable


def run_demo(
    *,
    data: Path | None,
    iterations: int,
    delta_a: float,
    delta_b: float,
    key_bits: int,
    out: Path,
    parties: int,
) -> DemoReport:
    """Run every bank of ``data`` (or of a generated sample) securely and write their results."""
    schedule = DeltaSchedule(delta_a, delta_b)
    if data is None:
        data = sample_data(party_names(parties))
    dataset = load_dataset(data)
    names = list(dataset.names)
    keys = cached_keys(names, key_bits)
    shares = {name: load_share(share_file(keys, name), name) for name in names}
    graph = build_global(dataset)
    descriptor = make_descriptor(
        shares[names[0]].key,
        iterations=iterations,
        delta_a=schedule.a,
        delta_b=schedule.b,
        periods=graph.periods,
    )
    started = time.perf_counter()
    outcomes = run_in_process(descriptor, dataset.banks, shares)
    seconds = time.perf_counter() - started
    reference = propagate(graph, schedule, iterations)
    differences = {}
    for index, name in enumerate(names):
        lo, hi = int(graph.offsets[index]), int(graph.offsets[index + 1])
        diff = np.abs(outcomes[name].scores - reference[lo:hi])
        differences[name] = float(diff.max()) if len(diff) else 0.0
    for name in names:  # only after every bank succeeded: nothing partial is written
        o = outcomes[name]
        text = scores_csv(("id", "risk_score"), [(i,) for i in o.account_ids], o.scores)
        atomic_write_text(out / name / "risk_scores.csv", text)
    return DemoReport(data, out, key_bits, seconds, outcomes, differences)
