"""Writing a multi-bank data set (the layout ``riskprop.core.data`` reads), fast and atomically.

Layout written by :func:`write_layout`::

    OUT/<bank>/accounts.csv      id,risk_score
    OUT/<bank>/transactions.csv  id_source,bank_source,id_destination,bank_destination,amount,period
    OUT/labels.csv               bank,id,is_laundering

A bank's ``transactions.csv`` holds every transaction that touches one of its accounts, so a
cross-bank transaction appears, with the same row, in both banks' files. Columns are built with
pyarrow compute kernels and streamed through pyarrow's CSV writer in batches (no Python loop
per row, bounded memory); values never need quoting, so none is written. Each file is written to
a hidden temporary file in its final directory and then renamed over the target
(``os.replace``), so a reader never sees a half-written file.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from riskprop.core.types import BoolArray, FloatArray, IntArray
from riskprop.errors import ConfigError, InputError
from riskprop.files.atomic import atomic_path

ACCOUNTS_HEADER = ("id", "risk_score")
TRANSACTIONS_HEADER = (
    "id_source",
    "bank_source",
    "id_destination",
    "bank_destination",
    "amount",
    "period",
)
LABELS_HEADER = ("bank", "id", "is_laundering")

#: Rows per batch handed to the CSV writer (bounds the memory of the formatted strings).
BATCH_ROWS = 1 << 20

_WRITE_OPTIONS = pa_csv.WriteOptions(include_header=False, quoting_style="none")


def format_fixed(scaled: npt.NDArray[np.integer], decimals: int, *, trim: bool = False) -> pa.Array:
    """Decimal strings of non-negative integers ``scaled`` divided by ``10**decimals``.

    ``format_fixed([1250, 7], 2)`` gives ``["12.50", "0.07"]``. With ``trim`` trailing zeros
    of the fraction are dropped (and the point when nothing is left): ``"0.5"``, ``"1"``.
    """
    values = np.asarray(scaled, dtype=np.int64)
    if values.size and int(values.min()) < 0:
        raise ValueError("format_fixed needs non-negative values")
    unit = 10**decimals
    whole = pa.array(values // unit, type=pa.int64()).cast(pa.string())
    if decimals == 0:
        return whole
    frac = pc.utf8_lpad(pa.array(values % unit, type=pa.int64()).cast(pa.string()), decimals, "0")
    if not trim:
        return pc.binary_join_element_wise(whole, frac, ".")
    frac = pc.utf8_rtrim(frac, characters="0")
    joined = pc.binary_join_element_wise(whole, frac, ".")
    return pc.if_else(pc.equal(pc.utf8_length(frac), 0), whole, joined)


def format_scores(scores: FloatArray) -> pa.Array:
    """Risk scores in [0, 1] as strings with at most 6 decimals (``0``, ``0.031``, ``1``)."""
    micro = np.rint(np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0) * 1e6)
    return format_fixed(micro.astype(np.int64), 6, trim=True)


def check_out(out: Path, banks: Sequence[str]) -> None:
    """Refuse an output that is a file or already holds other (non-hidden) directories.

    A reader takes every sub-directory for a bank, so stale banks of an earlier run would
    corrupt the data set. Call it before expensive work; :func:`write_layout` calls it too.
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output {out} exists and is not a directory")
    if out.is_dir():
        stale = sorted(
            p.name
            for p in out.iterdir()
            if p.is_dir() and not p.name.startswith(".") and p.name not in banks
        )
        if stale:
            raise ConfigError(
                f"output {out} already holds directory {stale[0]!r}, which is not one of the "
                f"banks ({', '.join(banks)}); use a new or empty directory"
            )


def prepare_out(out: Path, banks: Sequence[str]) -> None:
    """Check ``out`` (see :func:`check_out`), then create it and one directory per bank."""
    check_out(out, banks)
    for bank in banks:
        (out / bank).mkdir(parents=True, exist_ok=True)


def write_csv_atomic(
    path: Path,
    header: Sequence[str],
    n_rows: int,
    batch: Callable[[int, int], Sequence[pa.Array]],
) -> None:
    """Write ``header`` then rows ``0..n_rows-1`` to ``path`` atomically.

    ``batch(start, stop)`` returns the columns (in ``header`` order, castable to string) of rows
    ``start..stop-1``; it is called for consecutive slices of at most ``BATCH_ROWS`` rows.
    """
    with atomic_path(path) as tmp, pa.OSFile(str(tmp), "wb") as sink:
        sink.write((",".join(header) + "\n").encode())
        writer: pa_csv.CSVWriter | None = None
        for start in range(0, n_rows, BATCH_ROWS):
            stop = min(start + BATCH_ROWS, n_rows)
            columns = batch(start, stop)
            record = pa.record_batch(list(columns), names=list(header))
            if writer is None:
                writer = pa_csv.CSVWriter(sink, record.schema, write_options=_WRITE_OPTIONS)
            writer.write_batch(record)
        if writer is not None:
            writer.close()


def write_layout(
    out: Path,
    banks: Sequence[str],
    *,
    account_bank: npt.NDArray[np.integer],
    account_ids: pa.Array,
    scores: FloatArray,
    laundering: BoolArray,
    src: IntArray,
    dst: IntArray,
    amount: pa.Array,
    period: npt.NDArray[np.integer],
) -> None:
    """Write a data set in the multi-bank layout.

    Accounts are numbered ``0..n-1`` over all banks: account ``i`` belongs to bank
    ``banks[account_bank[i]]``, has id ``account_ids[i]`` (unique within its bank), initial
    score ``scores[i]`` and label ``laundering[i]``. Transaction ``j`` goes from account
    ``src[j]`` to account ``dst[j]`` with ``amount[j]`` (decimal strings, written as given) in
    ``period[j]``. Files list accounts and transactions in this order.
    """
    bank_code = np.asarray(account_bank, dtype=np.int16)
    bank_names = pa.array(list(banks), type=pa.string())
    period64 = np.asarray(period, dtype=np.int64)
    prepare_out(out, banks)
    src_bank = bank_code[src]
    dst_bank = bank_code[dst]
    labels_parts: list[tuple[int, pa.Array, BoolArray]] = []
    for code, bank in enumerate(banks):
        own = np.flatnonzero(bank_code == code)
        ids = account_ids.take(pa.array(own))
        text = format_scores(scores[own])

        def accounts(a: int, b: int, ids: pa.Array = ids, text: pa.Array = text) -> list[pa.Array]:
            return [ids.slice(a, b - a), text.slice(a, b - a)]

        write_csv_atomic(out / bank / "accounts.csv", ACCOUNTS_HEADER, len(own), accounts)
        labels_parts.append((code, ids, np.asarray(laundering, dtype=bool)[own]))

        rows = np.flatnonzero((src_bank == code) | (dst_bank == code))

        def transactions(a: int, b: int, rows: IntArray = rows) -> list[pa.Array]:
            part = pa.array(rows[a:b])
            s, d = src[rows[a:b]], dst[rows[a:b]]
            return [
                account_ids.take(pa.array(s)),
                pa.DictionaryArray.from_arrays(pa.array(src_bank[rows[a:b]]), bank_names),
                account_ids.take(pa.array(d)),
                pa.DictionaryArray.from_arrays(pa.array(dst_bank[rows[a:b]]), bank_names),
                amount.take(part),
                pa.array(period64[rows[a:b]]),
            ]

        write_csv_atomic(
            out / bank / "transactions.csv", TRANSACTIONS_HEADER, len(rows), transactions
        )
        del rows

    offsets = np.cumsum([0] + [len(part[1]) for part in labels_parts])

    def labels(a: int, b: int) -> list[pa.Array]:
        codes: list[npt.NDArray[np.int16]] = []
        ids: list[pa.Array] = []
        flags: list[BoolArray] = []
        for (code, bank_ids, bank_flags), lo in zip(labels_parts, offsets[:-1], strict=True):
            lo_i, hi_i = max(a - int(lo), 0), min(b - int(lo), len(bank_ids))
            if hi_i <= lo_i:
                continue
            codes.append(np.full(hi_i - lo_i, code, dtype=np.int16))
            ids.append(bank_ids.slice(lo_i, hi_i - lo_i))
            flags.append(bank_flags[lo_i:hi_i])
        return [
            pa.DictionaryArray.from_arrays(pa.array(np.concatenate(codes)), bank_names),
            pa.concat_arrays(ids),
            pa.array(np.concatenate(flags).astype(np.int8)),
        ]

    write_csv_atomic(out / "labels.csv", LABELS_HEADER, int(offsets[-1]), labels)


def label_rows(path: Path) -> Iterator[tuple[str, str, str, bool]]:
    """``(where, bank, id, is_laundering)`` for each row of a ``labels.csv`` (header
    ``bank,id,is_laundering``, values 0 or 1, each account once); ``where`` is ``file:line``.
    Errors (``InputError``) name the file and the line."""
    seen: set[tuple[str, str]] = set()
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None or [c.strip() for c in header] != list(LABELS_HEADER):
                raise InputError(f"{path}:1: expected the header {','.join(LABELS_HEADER)}")
            for row in reader:
                if not row:
                    continue
                where = f"{path}:{reader.line_num}"
                if len(row) != len(LABELS_HEADER):
                    raise InputError(f"{where}: expected 3 fields (bank,id,is_laundering)")
                bank, account, value = row
                if value.strip() not in ("0", "1"):
                    raise InputError(f"{where}: is_laundering {value!r} is not 0 or 1")
                if (bank, account) in seen:
                    raise InputError(f"{where}: account {account!r} of {bank} is labelled twice")
                seen.add((bank, account))
                yield where, bank, account, value.strip() == "1"
    except FileNotFoundError:
        raise InputError(f"{path}: labels file not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None


def read_labels(path: Path) -> dict[tuple[str, str], bool]:
    """``(bank, id) -> is_laundering`` from a ``labels.csv`` (see :func:`label_rows`)."""
    return {(bank, account): flag for _, bank, account, flag in label_rows(path)}
