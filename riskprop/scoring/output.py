"""Writing a scored bank: the propagation input plus its explanations and alerts.

Files written for bank ``B`` into ``DATA/B/`` (the layout ``riskprop.core.data`` reads)::

    accounts.csv      id,risk_score        every own account, its rule score (6 decimals)
    transactions.csv  id_source,bank_source,id_destination,bank_destination,amount,period
    explanations.csv  account,rule,contribution,transactions
    alerts.csv        tx_id,timestamp,source,target,amount,rule,level
    levels.csv        account,risk_score,level,action   every own account, highest score first

``transactions.csv`` keeps the *completed* raw rows that touch one of ``B``'s accounts, in file
order: a failed or reversed transaction moved no money, so it carries no risk along the network (the
``failed`` rule still scores it). Given the network's ``members`` (its banks), it keeps only the
rows whose two banks are ``B`` or members: a bank outside the network holds no node, so risk cannot
flow through its accounts (the rules still see those rows). Amounts are in the reporting currency,
rounded to cents. ``explanations.csv`` has one row per account and rule that fired (contribution
``weight * strength > 0``), with up to ``max_examples`` triggering transaction ids joined by ``;``;
rows are sorted by the account's score (descending), then the contribution (descending), then
account id and rule name. ``alerts.csv`` has one row per transaction and transaction-level rule that
flagged it, in file order, timestamps in ISO 8601 UTC (``2024-01-31T23:05:00Z``). ``levels.csv``
gives every own account its level and recommended action (the rules file's score bands), sorted by
score (descending), then account id.

Periods (:func:`assign_periods`): with a period length ``L`` (1, 7 or 30 days) period ``p``
holds the times ``t`` with ``origin + p*L <= t < origin + (p+1)*L``, where ``origin`` is the
UTC midnight starting the day of the first transaction in the file (any status) unless given.
Banks scored separately must agree on the origin for their cross-bank transactions to land in
the same period (pass the same ``origin``). With ``count = N`` the span ``[t_min, t_max]`` of
the file is cut into ``N`` equal buckets: ``p = floor((t - t_min) * N / (t_max - t_min + 1))``.

All or nothing: the five files are written into a hidden temporary directory beside
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
from riskprop.scoring.rules import Examples

if TYPE_CHECKING:
    from riskprop.scoring.raw import RawTransactions
    from riskprop.scoring.rules import Scored

DAY = 86_400
#: Period lengths the command accepts, in seconds.
PERIOD_LENGTHS = {"1d": DAY, "7d": 7 * DAY, "30d": 30 * DAY}
EXPLANATIONS_HEADER = ("account", "rule", "contribution", "transactions")
ALERTS_HEADER = ("tx_id", "timestamp", "source", "target", "amount", "rule", "level")
LEVELS_HEADER = ("account", "risk_score", "level", "action")
OUTPUT_FILES = ("accounts.csv", "transactions.csv", "explanations.csv", "alerts.csv", "levels.csv")

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
    members: Sequence[str] | None = None,
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
                staging / "transactions.csv", raw, bank, period, members
            ),
            "explanations.csv": _write_explanations(
                staging / "explanations.csv", scored, max_examples
            ),
            "alerts.csv": _write_alerts(staging / "alerts.csv", raw, scored),
            "levels.csv": _write_levels(staging / "levels.csv", scored),
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


def _write_levels(path: Path, scored: Scored) -> int:
    """Every own account's score, level and action, highest score first (ties by id)."""
    score = np.asarray(scored.score, dtype=np.float64)
    order = pa.array(np.lexsort((np.arange(len(score)), -score)), pa.int64())
    columns = [
        pa.array(np.asarray(scored.accounts, dtype=object), type=pa.string()).take(order),
        format_scores(score).take(order),
        pa.array(scored.level, type=pa.string()).take(order),
        pa.array(scored.action, type=pa.string()).take(order),
    ]
    _write_csv(path, LEVELS_HEADER, columns)
    return len(score)


def _write_transactions(
    path: Path, raw: RawTransactions, bank: str, period: IntArray, members: Sequence[str] | None
) -> int:
    """Completed rows touching ``bank`` (with both banks ``members`` when given), in file
    order, amounts rounded to cents."""
    ours = raw.source_bank.equals(bank) | raw.target_bank.equals(bank)
    keep = raw.status.equals("completed") & ours
    if members is not None:
        network = {bank, *members}
        keep &= raw.source_bank.isin(network) & raw.target_bank.isin(network)
    rows = np.flatnonzero(keep)
    cents = np.rint(np.asarray(raw.amount, dtype=np.float64)[rows] * 100.0).astype(np.int64)
    columns = [
        raw.source.take(rows),
        raw.source_bank.take(rows),
        raw.target.take(rows),
        raw.target_bank.take(rows),
        format_fixed(cents, 2),
        pa.array(np.asarray(period, dtype=np.int64)[rows], type=pa.int64()),
    ]
    _write_csv(path, TRANSACTIONS_HEADER, columns)
    return len(rows)


def _write_explanations(path: Path, scored: Scored, max_examples: int) -> int:
    """One row per (account, fired rule), sorted as the module doc states."""
    names = sorted(scored.contributions)
    accounts_idx, rule_idx, contrib, joined = [], [], [], []
    for r, name in enumerate(names):
        values = np.asarray(scored.contributions[name], dtype=np.float64)
        fired = np.flatnonzero(values > 0.0)
        accounts_idx.append(fired)
        rule_idx.append(np.full(len(fired), r, dtype=np.int64))
        contrib.append(values[fired])
        joined.append(_joined_examples(scored.examples.get(name), fired, max_examples))
    acc = np.concatenate(accounts_idx) if accounts_idx else np.zeros(0, dtype=np.int64)
    rul = np.concatenate(rule_idx) if rule_idx else np.zeros(0, dtype=np.int64)
    con = np.concatenate(contrib) if contrib else np.zeros(0)
    score = np.asarray(scored.score, dtype=np.float64)
    # Ties on score and contribution fall back to the account's position (own_accounts order:
    # sorted ids), then the rule name (``names`` is sorted).
    order = np.lexsort((rul, acc, -con, -score[acc]))
    acc, rul, con = acc[order], rul[order], con[order]
    rule_names = pa.array(names, type=pa.string()) if names else pa.array([], pa.string())
    columns = [
        pa.array(np.asarray(scored.accounts, dtype=object), type=pa.string()).take(
            pa.array(acc, pa.int64())
        ),
        rule_names.take(pa.array(rul, pa.int64())),
        format_scores(con),
        pa.concat_arrays([pa.array([], pa.string()), *joined]).take(pa.array(order, pa.int64())),
    ]
    _write_csv(path, EXPLANATIONS_HEADER, columns)
    return len(acc)


def _joined_examples(
    examples: Examples | Sequence[Sequence[str]] | None, accounts: IntArray, most: int
) -> pa.Array:
    """Per account in ``accounts`` its first ``most`` example ids joined by ``;``."""
    if examples is None or most == 0:
        return pa.array([""] * len(accounts), pa.string())
    if not isinstance(examples, Examples):
        return pa.array([";".join(examples[a][:most]) for a in accounts.tolist()], pa.string())
    acc, row = examples.account, examples.row  # sorted by account, in the rule's order
    keep = (np.arange(len(acc)) - np.searchsorted(acc, acc, side="left")) < most
    acc, row = acc[keep], row[keep]
    if len(acc) == 0:
        return pa.array([""] * len(accounts), pa.string())
    # one list of ids per account that has examples, joined; then looked up per account asked
    starts = np.flatnonzero(np.r_[True, acc[1:] != acc[:-1]])
    offsets = pa.array(np.r_[starts, len(acc)].astype(np.int32), pa.int32())
    joined = pc.binary_join(pa.ListArray.from_arrays(offsets, examples.tx_id.take(row)), ";")
    where = np.searchsorted(acc[starts], accounts)
    found = where < len(starts)
    found[found] = acc[starts][where[found]] == accounts[found]
    index = pa.array(np.where(found, where, 0), pa.int64(), mask=~found)
    return pc.fill_null(joined.take(index), "")


def _write_alerts(path: Path, raw: RawTransactions, scored: Scored) -> int:
    """One row per flagged (transaction, rule), ordered by raw row then rule name."""
    alerts = scored.alerts
    rank = np.argsort(np.argsort(np.array(alerts.rules, dtype=object), kind="stable"))
    order = np.lexsort((rank[alerts.rule] if len(alerts.rules) else alerts.rule, alerts.row))
    rows, rule, level = alerts.row[order], alerts.rule[order], alerts.level[order]
    at = np.asarray(raw.time, dtype=np.int64)[rows].astype("datetime64[s]")
    stamps = pc.binary_join_element_wise(pa.array(np.datetime_as_string(at, unit="s")), "Z", "")
    cents = np.rint(np.asarray(raw.amount, dtype=np.float64)[rows] * 100.0).astype(np.int64)
    columns = [
        raw.tx_id.take(rows),
        stamps,
        raw.source.take(rows),
        raw.target.take(rows),
        format_fixed(cents, 2),
        pa.array(list(alerts.rules), pa.string()).take(pa.array(rule, pa.int64())),
        pa.array(list(alerts.levels), pa.string()).take(pa.array(level, pa.int64())),
    ]
    _write_csv(path, ALERTS_HEADER, columns)
    return len(rows)


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
