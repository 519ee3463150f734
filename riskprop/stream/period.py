"""Period close: a streamed period frozen from the store, scored, ready for the secure run.

:func:`close_and_score` is what a streaming node does before each run (the service calls it with
the period :meth:`~riskprop.config.StreamSettings.period_to_close` gives for the run's slot):

1. **Close.** Period ``p`` and every earlier period are closed in the store (one transaction
   each; :meth:`~riskprop.stream.store.PeriodStore.put` reads the closed set inside its own
   write transaction, so a record committed after the close lands in the first open period
   after its own: the late rule). From then on ``p``'s content never changes, so closing and
   scoring again (a retried run, a restart) gives the same files.
2. **Freeze.** ``p``'s transactions (those whose event time lies in ``p`` and the late ones the
   store moved into ``p``) are written in arrival order as ``raw.csv`` in riskprop's raw layout
   (:meth:`~riskprop.stream.records.Transaction.as_fields`), owner-only.
3. **Score.** :func:`~riskprop.scoring.pipeline.score_bank` on that file, with ``periods=1``
   (the whole file is the run's one period, late records included), the node's rules and
   reporting currency, and the network's members: exactly ``riskprop score raw.csv --periods 1
   --bank B --members ...``. The run reads ``<folder>/<bank>/``.

So a streamed period's propagation input is, by construction, the batch input of a file holding
the same records; the tests check it byte for byte. Windowed patterns that straddle a period
boundary are scored by neither (each period is scored on its own transactions), as with a
batch file per period; the real-time windowed alerts keep their state across periods.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from riskprop.config import StreamSettings
from riskprop.errors import ConfigError
from riskprop.files.atomic import atomic_path, atomic_write_text
from riskprop.scoring.pipeline import BankScored, score_bank
from riskprop.scoring.raw import RISKPROP_HEADER
from riskprop.stream.store import PeriodStore

RAW_FILE = "raw.csv"
SUMMARY_FILE = "period.json"


@dataclass(frozen=True)
class ClosedPeriod:
    """A closed, scored period: its index, UTC bounds, the folder the run reads (``data``;
    the bank's files are in ``data/<bank>/``), transactions, late ones among them, and the
    periods this close closed that had never been closed (``p`` itself when it was open)."""

    period: int
    start: int
    end: int
    data: Path
    transactions: int
    late: int
    newly_closed: tuple[int, ...]
    scored: BankScored


def close_through(store: PeriodStore, period: int) -> tuple[int, ...]:
    """Close ``period`` and every earlier period from the store's first (stored or closed)
    one, so no late record can land in a period no run will read. Returns the periods that
    were open."""
    known = set(store.periods()) | set(store.closed())
    first = min(known | {period})
    closed = set(store.closed())
    opened = tuple(p for p in range(first, period + 1) if p not in closed)
    for p in opened:
        store.close_period(p)
    return opened


def period_folder(root: Path, period: int, settings: StreamSettings) -> Path:
    """``root/<UTC start>-p<index>``, e.g. ``2026-11-29T0000-p20421``."""
    start = datetime.fromtimestamp(settings.period_start(period), UTC)
    return root / f"{start:%Y-%m-%dT%H%M}-p{period}"


def write_period_raw(store: PeriodStore, period: int, path: Path) -> tuple[int, int]:
    """``period``'s transactions in arrival order as a raw file (owner-only, atomic).
    Returns (transactions, late ones among them)."""
    count = late = 0
    with atomic_path(path, mode=0o600) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(RISKPROP_HEADER)
        for tx, event_period in store.transactions_with_event(period):
            fields = tx.as_fields()
            writer.writerow([fields[name] for name in RISKPROP_HEADER])
            count += 1
            late += event_period != period
    return count, late


def close_and_score(
    store: PeriodStore,
    settings: StreamSettings,
    period: int,
    *,
    bank: str,
    root: Path,
    members: Sequence[str],
) -> ClosedPeriod:
    """Close ``period`` (and those before it), freeze it into ``root/<folder>/raw.csv`` and
    score it into ``root/<folder>/<bank>/`` (see the module doc). ConfigError when the period
    holds no transaction of ``bank``; nothing is scored then."""
    if (store.origin, store.length) != (settings.origin, settings.period_length):
        raise ConfigError(
            f"{store.path}: the store's periods (origin {store.origin}, length {store.length} s)"
            f" differ from the configuration's ({settings.origin}, {settings.period_length} s)"
        )
    opened = close_through(store, period)
    folder = period_folder(root, period, settings)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    root.chmod(0o700)
    folder.mkdir(exist_ok=True, mode=0o700)
    raw = folder / RAW_FILE
    transactions, late = write_period_raw(store, period, raw)
    start = settings.period_start(period)
    end = start + settings.period_length
    if transactions == 0:
        raise ConfigError(
            f"{store.path}: period {period} ({_iso(start)} to {_iso(end)}) holds no "
            f"transaction of bank {bank!r}: nothing to propagate"
        )
    scored = score_bank(
        raw,
        bank,
        folder,
        rules=settings.rules,
        layout="riskprop",
        currency=settings.currency,
        periods=1,
        members=members,
    )
    _private(folder)  # the bank's transactions and scores: owner-only, whatever the umask
    summary = {
        "period": period,
        "start": _iso(start),
        "end": _iso(end),
        "transactions": transactions,
        "late": late,
        "accounts": scored.counts.get("accounts.csv"),
    }
    atomic_write_text(folder / SUMMARY_FILE, json.dumps(summary, indent=1) + "\n", mode=0o600)
    return ClosedPeriod(period, start, end, folder, transactions, late, opened, scored)


def _iso(seconds: int) -> str:
    return f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%dT%H:%M:%SZ}"


def _private(folder: Path) -> None:
    """``folder`` and everything in it: directories 0700, files 0600."""
    folder.chmod(0o700)
    for path in folder.rglob("*"):
        path.chmod(0o700 if path.is_dir() else 0o600)
