"""Convert an IBM AMLSim sample (``nodes.csv``, ``transactions.csv``) to the multi-bank layout.

AMLSim has no banks: node ``i`` goes to bank ``banks[i % len(banks)]`` with id ``str(i)``, so a
transaction crosses banks whenever its endpoints' ids differ modulo the number of banks. The
``time`` step is mapped to ``periods`` equal-width buckets of the time range. Self-loops are
dropped; amounts are copied as written.

AMLSim knows which accounts launder (``isFraud``) but not what a bank's monitoring would
already suspect, so initial risk scores are drawn to model it: a random ``flagged_fraction`` of
the fraud accounts score high (uniform 0.6-1.0), about 1% of the other accounts are false
positives scoring just as high, and every other account gets a low background score (uniform
0-0.1). ``labels.csv`` carries ``isFraud``. Same output layout and writer as
:mod:`riskprop.lab.synthetic`.

:func:`import_amlsim` (``riskprop import amlsim``) writes the same data set all or nothing:
into a hidden directory beside the output, moved into place once complete
(:func:`staged_output`, which the AMLworld importer uses too).
"""

from __future__ import annotations

import csv
import os
import secrets
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from riskprop.errors import ConfigError, InputError
from riskprop.files.layout import check_out, write_layout
from riskprop.lab.synthetic import GenerationSummary, check_banks, check_int

NODES_HEADER: Final = ("nodeid", "isFraud", "init_balance", "fraudStep")
TRANSACTIONS_HEADER: Final = ("sourceNodeId", "targetNodeId", "value", "time")
#: Share of non-fraud accounts that the modelled monitoring flags anyway.
FALSE_POSITIVE_SHARE: Final = 0.01
HIGH_SCORE: Final = (0.6, 1.0)
BACKGROUND_SCORE: Final = (0.0, 0.1)


def split_amlsim(
    src: Path,
    out: Path,
    *,
    banks: Sequence[str] = ("alice", "bob", "charlie"),
    periods: int = 1,
    flagged_fraction: float = 0.3,
    seed: int = 0,
) -> GenerationSummary:
    """Write the AMLSim sample in directory ``src`` as a multi-bank data set to ``out``."""
    names = check_banks(banks)
    check_int("--periods", periods, 1)
    check_int("--seed", seed, 0)
    if not isinstance(flagged_fraction, int | float) or not 0.0 <= flagged_fraction <= 1.0:
        raise ConfigError(f"--flag-share must be in [0, 1] (got {flagged_fraction!r})")
    nodes_path, transactions_path = src / "nodes.csv", src / "transactions.csv"
    for path in (nodes_path, transactions_path):
        if not path.is_file():
            raise InputError(f"{path}: file not found")
    check_out(out, names)

    node_ids, fraud = _read_nodes(nodes_path)
    source, target, value, time = _read_transactions(transactions_path)
    rows_src = _node_rows(transactions_path, "sourceNodeId", source, node_ids)
    rows_dst = _node_rows(transactions_path, "targetNodeId", target, node_ids)

    keep = rows_src != rows_dst
    period = _periods(time, int(periods))
    rows_src, rows_dst, period = rows_src[keep], rows_dst[keep], period[keep]
    value = value.filter(pa.array(keep))

    k = len(names)
    account_bank = (node_ids % k).astype(np.int16)
    rng = np.random.default_rng(int(seed))
    scores = _initial_scores(rng, fraud, float(flagged_fraction))
    write_layout(
        out,
        names,
        account_bank=account_bank,
        account_ids=pa.array(node_ids).cast(pa.string()),
        scores=scores,
        laundering=fraud,
        src=rows_src,
        dst=rows_dst,
        amount=value,
        period=period,
    )
    return GenerationSummary(
        banks=names,
        accounts=len(node_ids),
        transactions=len(rows_src),
        cross_bank=int(np.count_nonzero(account_bank[rows_src] != account_bank[rows_dst])),
        laundering_accounts=int(fraud.sum()),
        periods=int(periods),
    )


def import_amlsim(
    src: Path,
    out: Path,
    *,
    banks: Sequence[str] = ("alice", "bob", "charlie"),
    periods: int = 1,
    flagged_fraction: float = 0.3,
    seed: int = 0,
) -> GenerationSummary:
    """:func:`split_amlsim` written all or nothing (see :func:`staged_output`)."""
    names = check_banks(banks)
    with staged_output(out, names) as stage:
        return split_amlsim(
            src, stage, banks=names, periods=periods, flagged_fraction=flagged_fraction, seed=seed
        )


@contextmanager
def staged_output(out: Path, banks: Sequence[str]) -> Iterator[Path]:
    """Yield a new hidden directory beside ``out`` to write a data set into; once the block
    succeeds, move it into place. When ``out`` does not exist or is an empty directory that is
    one rename, so a reader sees no data set or the whole one; over an earlier data set of the
    same banks (:func:`~riskprop.files.layout.check_out`) each file is renamed over its old
    version. On error the staging directory, and any parent directory made for it, is removed
    and ``out`` is left as it was."""
    check_out(out, banks)
    target = out.absolute()
    created = next((p for p in reversed(target.parents) if not p.exists()), None)
    target.parent.mkdir(parents=True, exist_ok=True)
    while True:
        stage = target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp"
        try:
            stage.mkdir()
            break
        except FileExistsError:  # pragma: no cover - 32 random bits colliding
            continue
    try:
        yield stage
        if not target.exists() or (target.is_dir() and not any(target.iterdir())):
            os.replace(stage, target)
        else:
            for path in sorted(stage.rglob("*")):
                if path.is_file():
                    final = target / path.relative_to(stage)
                    final.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(path, final)
    except BaseException:
        if created is not None:  # the parent directories made above hold only the stage
            shutil.rmtree(created, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _initial_scores(
    rng: np.random.Generator, fraud: npt.NDArray[np.bool_], flagged_fraction: float
) -> npt.NDArray[np.float64]:
    n = len(fraud)
    fraud_rows, normal_rows = np.flatnonzero(fraud), np.flatnonzero(~fraud)
    flagged = rng.choice(fraud_rows, round(flagged_fraction * fraud_rows.size), replace=False)
    false_pos = rng.choice(
        normal_rows, round(FALSE_POSITIVE_SHARE * normal_rows.size), replace=False
    )
    scores = rng.uniform(*BACKGROUND_SCORE, n)
    high = np.concatenate((flagged, false_pos))
    scores[high] = rng.uniform(*HIGH_SCORE, high.size)
    return scores


def _check_header(path: Path, expected: Sequence[str]) -> None:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), None)
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read header ({exc})") from None
    if header is None:
        raise InputError(f"{path}: file is empty (expected header {','.join(expected)})")
    if [column.strip() for column in header] != list(expected):
        raise InputError(f"{path}:1: header is {','.join(header)!r}, expected {','.join(expected)}")


def _read(path: Path, header: Sequence[str], types: dict[str, pa.DataType]) -> pa.Table:
    _check_header(path, header)
    try:
        return pa_csv.read_csv(
            path,
            read_options=pa_csv.ReadOptions(column_names=list(header), skip_rows=1),
            parse_options=pa_csv.ParseOptions(ignore_empty_lines=True),
            convert_options=pa_csv.ConvertOptions(
                column_types=types,
                include_columns=list(types),
                null_values=[],
                strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: cannot parse ({message})") from None


def _read_nodes(path: Path) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    table = _read(path, NODES_HEADER, {"nodeid": pa.int64(), "isFraud": pa.int64()})
    node_ids = np.asarray(table.column("nodeid").to_numpy(), dtype=np.int64)
    is_fraud = np.asarray(table.column("isFraud").to_numpy(), dtype=np.int64)
    if node_ids.size and node_ids.min() < 0:
        row = int(np.argmax(node_ids < 0))
        raise InputError(f"{path}:{row + 2}: nodeid {int(node_ids[row])} is negative")
    bad = (is_fraud != 0) & (is_fraud != 1)
    if bad.any():
        row = int(np.argmax(bad))
        raise InputError(f"{path}:{row + 2}: isFraud {int(is_fraud[row])} is not 0 or 1")
    order = np.argsort(node_ids, kind="stable")
    repeated = np.flatnonzero(np.diff(node_ids[order]) == 0)
    if repeated.size:
        row = int(order[repeated + 1].min())
        raise InputError(f"{path}:{row + 2}: duplicate nodeid {int(node_ids[row])}")
    return node_ids, is_fraud == 1


def _read_transactions(
    path: Path,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], pa.Array, npt.NDArray[np.float64]]:
    types = {
        "sourceNodeId": pa.int64(),
        "targetNodeId": pa.int64(),
        "value": pa.string(),
        "time": pa.float64(),
    }
    table = _read(path, TRANSACTIONS_HEADER, types)
    value = table.column("value").combine_chunks()
    try:
        amount = pc.cast(value, pa.float64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:
        row = next(i for i, text in enumerate(value.to_pylist()) if not _is_number(text))
        raise InputError(
            f"{path}:{row + 2}: value {value[row].as_py()!r} is not a number"
        ) from None
    bad = ~np.isfinite(amount) | (amount < 0.0)
    if bad.any():
        row = int(np.argmax(bad))
        raise InputError(
            f"{path}:{row + 2}: value {value[row].as_py()!r} is not a non-negative number"
        )
    time = np.asarray(table.column("time").to_numpy(), dtype=np.float64)
    if not np.isfinite(time).all():
        row = int(np.argmax(~np.isfinite(time)))
        raise InputError(f"{path}:{row + 2}: time {time[row]!r} is not a finite number")
    return (
        np.asarray(table.column("sourceNodeId").to_numpy(), dtype=np.int64),
        np.asarray(table.column("targetNodeId").to_numpy(), dtype=np.int64),
        value,
        time,
    )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _node_rows(
    path: Path, column: str, ids: npt.NDArray[np.int64], node_ids: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """Rows of ``nodes.csv`` of the node ids of a transaction column."""
    order = np.argsort(node_ids, kind="stable")
    sorted_ids = node_ids[order]
    at = np.minimum(np.searchsorted(sorted_ids, ids), max(len(sorted_ids) - 1, 0))
    found = sorted_ids[at] == ids if len(sorted_ids) else np.zeros(len(ids), dtype=bool)
    if not found.all():
        row = int(np.argmax(~found))
        raise InputError(f"{path}:{row + 2}: {column} {int(ids[row])} is not a nodeid of nodes.csv")
    return order[at].astype(np.int64)


def _periods(time: npt.NDArray[np.float64], periods: int) -> npt.NDArray[np.int64]:
    """Equal-width buckets ``0..periods-1`` of the time range."""
    if time.size == 0:
        return np.zeros(0, dtype=np.int64)
    low, high = float(time.min()), float(time.max())
    if high <= low:
        return np.zeros(time.size, dtype=np.int64)
    bucket = np.floor((time - low) / (high - low) * periods).astype(np.int64)
    return np.minimum(bucket, periods - 1)
