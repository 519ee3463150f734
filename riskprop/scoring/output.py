"""Writing a scored bank: the propagation input plus its explanations and alerts.

Files written for bank ``B`` into ``DATA/B/`` (the layout ``riskprop.core.data`` reads)::

    accounts.csv      id,risk_score        every own account, its rule score (6 decimals)
    transactions.csv  id_source,bank_source,id_destination,bank_destination,amount,period
    explanations.csv  account,rule,contribution,transactions
    alerts.csv        tx_id,timestamp,source,target,amount,rule,level

``transactions.csv`` keeps the *completed* raw rows that touch one of ``B``'s accounts, in
file order: a failed or reversed transaction moved no money, so it carries no risk along the
network (the ``failed`` rule still scores it). Amounts are in the reporting currency, rounded
to cents. ``explanations.csv`` has one row per account and rule that fired (contribution
``weight * strength > 0``), with up to ``max_examples`` triggering transaction ids joined by
``;``; rows are sorted by the account's score (descending), then the contribution
(descending), then account id and rule name. ``alerts.csv`` has one row per transaction and
transaction-level rule that flagged it, in file order, timestamps in ISO 8601 UTC
(``2024-01-31T23:05:00Z``).

Periods (:func:`assign_periods`): with a period length ``L`` (1, 7 or 30 days) period ``p``
holds the times ``t`` with ``origin + p*L <= t < origin + (p+1)*L``, where ``origin`` is the
UTC midnight starting the day of the first transaction in the file (any status) unless given.
Banks scored separately must agree on the origin for their cross-bank transactions to land in
the same period (pass the same ``origin``). With ``count = N`` the span ``[t_min, t_max]`` of
the file is cut into ``N`` equal buckets: ``p = floor((t - t_min) * N / (t_max - t_min + 1))``.

All or nothing: the four files are written into a hidden temporary directory beside
``DATA/B`` (readers skip hidden directories), fsynced, and only then moved into place: the
directory itself when ``DATA/B`` does not exist yet (one rename), else file by file
(``os.replace``). On any error before the moves the temporary directory is removed and
``DATA/B`` is untouched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from riskprop.core.types import IntArray
from riskprop.errors import ConfigError, InputError
from riskprop.files.layout import ACCOUNTS_HEADER, TRANSACTIONS_HEADER, format_fixed, format_scores

if TYPE_CHECKING:
    from riskprop.scoring.raw import RawTransactions
    from riskprop.scoring.rules import Scored

DAY = 86_400
#: Period lengths the command accepts, in seconds.
PERIOD_LENGTHS = {"1d": DAY, "7d": 7 * DAY, "30d": 30 * DAY}
EXPLANATIONS_HEADER = ("account", "rule", "contribution", "transactions")
ALERTS_HEADER = ("tx_id", "timestamp", "source", "target", "amount", "rule", "level")
OUTPUT_FILES = ("accounts.csv", "transactions.csv", "explanations.csv", "alerts.csv")

#: Rows per batch handed to the CSV writer (bounds the memory of the formatted strings).
BATCH_ROWS = 1 << 20
# Ids rarely need quotes: write without quoting, and only when a value holds a comma, quote or
# line break (the writer refuses it) write the file again quoting every string.
_PLAIN = pa_csv.WriteOptions(include_header=False, quoting_style="none")
_QUOTED = pa_csv.WriteOptions(include_header=False, quoting_style="needed")


def assign_periods(
    time: npt.NDArray[np.int64],
    *,
    length: int | None = None,
    count: int | None = None,
    origin: int | None = None,
) -> IntArray:
    """Period of each time (seconds since the epoch, UTC), by ``length`` seconds from
    ``origin`` (default: UTC midnight of the earliest time) or by ``count`` equal buckets over
    the span of ``time``; exactly one of ``length`` and ``count``. See the module doc."""
    if (length is None) == (count is None):
        raise ConfigError("give either a period length or a number of periods, not both")
    t = np.asarray(time, dtype=np.int64)
    if t.size == 0:
        return np.zeros(0, dtype=np.int64)
    first, last = int(t.min()), int(t.max())
    if length is not None:
        if length <= 0:
            raise ConfigError(f"period length must be positive, got {length} s")
        start = (first // DAY) * DAY if origin is None else origin
        if first < start:
            raise ConfigError(
                f"the period origin {_iso(start)} is after the first transaction ({_iso(first)})"
            )
        return (t - start) // length
    assert count is not None
    if count < 1:
        raise ConfigError(f"number of periods must be at least 1, got {count}")
    span = last - first + 1
    return ((t - first) * count) // span


def write_scored(
    out: Path,
    raw: RawTransactions,
    bank: str,
    scored: Scored,
    period: IntArray,
    *,
    max_examples: int = 3,
) -> dict[str, int]:
    """Write ``out/bank/`` as the module doc states, all or nothing; ``period`` holds the
    period of every raw row. Returns the row count of each file."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output {out} exists and is not a directory")
    if not bank or bank.startswith(".") or "/" in bank or bank in (".", ".."):
        raise ConfigError(f"bank name {bank!r} cannot name a directory of the data set")
    if len(period) != raw.n:
        raise ValueError("one period per raw row expected")
    _check_amounts(raw)
    out.mkdir(parents=True, exist_ok=True)
    target = out / bank
    staging = Path(tempfile.mkdtemp(prefix=f".{bank}.", suffix=".tmp", dir=out))
    try:
        counts = {
            "accounts.csv": _write_accounts(staging / "accounts.csv", scored),
            "transactions.csv": _write_transactions(
                staging / "transactions.csv", raw, bank, period
            ),
            "explanations.csv": _write_explanations(
                staging / "explanations.csv", scored, max_examples
            ),
            "alerts.csv": _write_alerts(staging / "alerts.csv", raw, scored),
        }
        for name in OUTPUT_FILES:
            _fsync(staging / name)
        if not target.exists():
            os.chmod(staging, 0o755)
            os.replace(staging, target)
        else:
            if not target.is_dir():
                raise ConfigError(f"output {target} exists and is not a directory")
            for name in OUTPUT_FILES:
                os.replace(staging / name, target / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return counts


# --------------------------------------------------------------------------- the files


def _write_accounts(path: Path, scored: Scored) -> int:
    ids = pa.array(scored.accounts, type=pa.string())
    scores = format_scores(scored.score)
    _write_csv(path, ACCOUNTS_HEADER, [ids, scores])
    return len(ids)


def _write_transactions(path: Path, raw: RawTransactions, bank: str, period: IntArray) -> int:
    """Completed rows touching ``bank``, in file order, amounts rounded to cents."""
    keep = (raw.status == "completed") & ((raw.source_bank == bank) | (raw.target_bank == bank))
    rows = np.flatnonzero(keep)
    cents = np.rint(np.asarray(raw.amount, dtype=np.float64)[rows] * 100.0).astype(np.int64)
    columns = [
        pa.array(raw.source[rows], type=pa.string()),
        pa.array(raw.source_bank[rows], type=pa.string()),
        pa.array(raw.target[rows], type=pa.string()),
        pa.array(raw.target_bank[rows], type=pa.string()),
        format_fixed(cents, 2),
        pa.array(np.asarray(period, dtype=np.int64)[rows], type=pa.int64()),
    ]
    _write_csv(path, TRANSACTIONS_HEADER, columns)
    return len(rows)


def _write_explanations(path: Path, scored: Scored, max_examples: int) -> int:
    """One row per (account, fired rule), sorted as the module doc states."""
    names = sorted(scored.contributions)
    accounts_idx, rule_idx, contrib = [], [], []
    for r, name in enumerate(names):
        values = np.asarray(scored.contributions[name], dtype=np.float64)
        fired = np.flatnonzero(values > 0.0)
        accounts_idx.append(fired)
        rule_idx.append(np.full(len(fired), r, dtype=np.int64))
        contrib.append(values[fired])
    acc = np.concatenate(accounts_idx) if accounts_idx else np.zeros(0, dtype=np.int64)
    rul = np.concatenate(rule_idx) if rule_idx else np.zeros(0, dtype=np.int64)
    con = np.concatenate(contrib) if contrib else np.zeros(0)
    score = np.asarray(scored.score, dtype=np.float64)
    # Ties on score and contribution fall back to the account's position (own_accounts order:
    # sorted ids), then the rule name (``names`` is sorted).
    order = np.lexsort((rul, acc, -con, -score[acc]))
    acc, rul, con = acc[order], rul[order], con[order]
    examples = []
    for a, r in zip(acc.tolist(), rul.tolist(), strict=True):
        per_account = scored.examples.get(names[r])
        examples.append(";".join(per_account[a][:max_examples]) if per_account else "")
    columns = [
        pa.array(np.asarray(scored.accounts, dtype=object)[acc], type=pa.string()),
        pa.array([names[r] for r in rul.tolist()], type=pa.string()),
        format_scores(con),
        pa.array(examples, type=pa.string()),
    ]
    _write_csv(path, EXPLANATIONS_HEADER, columns)
    return len(acc)


def _write_alerts(path: Path, raw: RawTransactions, scored: Scored) -> int:
    """One row per flagged (transaction, rule), ordered by raw row then rule name."""
    n = len(scored.alerts)
    rows_t, rules_t, levels_t = zip(*scored.alerts, strict=True) if n else ((), (), ())
    rows = np.array(rows_t, dtype=np.int64)
    rules = pc.dictionary_encode(pa.array(rules_t, type=pa.string()))
    names = np.array(rules.dictionary.to_pylist(), dtype=object)
    rank = np.argsort(np.argsort(names, kind="stable"))
    codes = rules.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    order = np.lexsort((rank[codes], rows))
    rows = rows[order]
    at = np.asarray(raw.time, dtype=np.int64)[rows].astype("datetime64[s]")
    stamps = pc.binary_join_element_wise(pa.array(np.datetime_as_string(at, unit="s")), "Z", "")
    cents = np.rint(np.asarray(raw.amount, dtype=np.float64)[rows] * 100.0).astype(np.int64)
    reorder = pa.array(order, type=pa.int64())
    columns = [
        pa.array(raw.tx_id[rows], type=pa.string()),
        stamps,
        pa.array(raw.source[rows], type=pa.string()),
        pa.array(raw.target[rows], type=pa.string()),
        format_fixed(cents, 2),
        rules.take(reorder).cast(pa.string()),
        pa.array(levels_t, type=pa.string()).take(reorder),
    ]
    _write_csv(path, ALERTS_HEADER, columns)
    return n


# --------------------------------------------------------------------------- helpers


def _check_amounts(raw: RawTransactions) -> None:
    """Amounts must be finite and non-negative (the data layout's rule), named by line."""
    amount = np.asarray(raw.amount, dtype=np.float64)
    bad = ~np.isfinite(amount) | (amount < 0.0)
    if bad.any():
        row = int(np.argmax(bad))
        raise InputError(
            f"{raw.path}:{int(raw.line[row])}: amount {float(amount[row])!r} is not a "
            "non-negative number"
        )


def _write_csv(
    path: Path, header: Sequence[str], columns: Sequence[pa.Array | pa.ChunkedArray]
) -> None:
    """``header`` then the rows of ``columns``, streamed through pyarrow's CSV writer in
    batches of ``BATCH_ROWS`` rows (measured against Python's csv module: see
    scripts/bench_score.py). Unquoted unless a value needs quotes."""
    try:
        _stream_csv(path, header, columns, _PLAIN)
    except pa.ArrowInvalid:
        _stream_csv(path, header, columns, _QUOTED)


def _stream_csv(
    path: Path,
    header: Sequence[str],
    columns: Sequence[pa.Array | pa.ChunkedArray],
    options: pa_csv.WriteOptions,
) -> None:
    # A table takes chunked columns too (pyarrow chunks a large numpy string array).
    table = pa.table(list(columns), names=list(header))
    with pa.OSFile(str(path), "wb") as sink:
        sink.write((",".join(header) + "\n").encode())
        with pa_csv.CSVWriter(sink, table.schema, write_options=options) as writer:
            for start in range(0, table.num_rows, BATCH_ROWS):
                writer.write_table(table.slice(start, BATCH_ROWS))


def _fsync(path: Path) -> None:
    with path.open("rb+") as handle:
        os.fsync(handle.fileno())
    os.chmod(path, 0o644)


def _iso(seconds: int) -> str:
    return f"{np.datetime_as_string(np.datetime64(seconds, 's'), unit='s')}Z"
