"""Reading and validating one bank's input files.

A bank's directory holds ``accounts.csv`` (``id,risk_score``) and ``transactions.csv``
(``id_source,bank_source,id_destination,bank_destination,amount[,period]``). The files are
read with pyarrow's multi-threaded CSV reader; every check is vectorised. When a check fails,
the offending row is mapped back to its physical line so that the error names
``file:line`` and the problem. Nothing is written by this module.

Representation (see ``BankData``): accounts are positions ``0..n-1`` of the bank; the ids of
other banks' accounts are kept once per bank in ``foreign_ids`` and transactions refer to
accounts by ``(bank code, position)`` where the bank code indexes ``banks``.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.abc
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from riskprop.core.types import FloatArray, IntArray
from riskprop.errors import InputError

ACCOUNT_COLUMNS = ("id", "risk_score")
TRANSACTION_COLUMNS = ("id_source", "bank_source", "id_destination", "bank_destination", "amount")
PERIOD_COLUMN = "period"


@dataclass(frozen=True, eq=False)
class BankData:
    """One bank's validated view of the world.

    Invariants: ``len(account_ids) == len(initial)``; ``initial`` lies in [0, 1]; for each
    transaction row ``i``, ``src_bank[i] == own`` or ``dst_bank[i] == own`` where ``own =
    banks.index(name)``; an endpoint of the own bank indexes ``account_ids``, an endpoint of
    bank ``b`` indexes ``foreign_ids[banks[b]]``. Self-loops are already removed.
    """

    name: str
    banks: tuple[str, ...]
    account_ids: tuple[str, ...]
    initial: FloatArray
    foreign_ids: dict[str, tuple[str, ...]]
    src_bank: IntArray
    src: IntArray
    dst_bank: IntArray
    dst: IntArray
    amount: FloatArray
    period: IntArray
    warnings: tuple[str, ...] = field(default=())

    @property
    def own(self) -> int:
        """Code of this bank in ``banks``."""
        return self.banks.index(self.name)

    @property
    def n_accounts(self) -> int:
        return len(self.account_ids)

    def periods(self) -> list[int]:
        """Sorted distinct periods of this bank's transactions."""
        return [int(p) for p in np.unique(self.period)]


def load_bank(directory: Path, name: str, banks: Sequence[str]) -> BankData:
    """Load ``directory/accounts.csv`` and ``directory/transactions.csv`` of bank ``name``.

    ``banks`` lists every bank a transaction may name (the data set's directories or the
    run's parties); it must contain ``name``.
    """
    if name not in banks:
        raise InputError(f"bank {name!r} is not one of the known banks {', '.join(banks)}")
    accounts_path = directory / "accounts.csv"
    transactions_path = directory / "transactions.csv"
    for path in (accounts_path, transactions_path):
        if not path.is_file():
            raise InputError(f"{path}: file not found")
    ids, scores = _read_accounts(accounts_path)
    return _read_transactions(transactions_path, name, tuple(banks), ids, scores)


def data_digest(directory: Path) -> str:
    """SHA-256 (hex) over a bank's ``accounts.csv`` and ``transactions.csv`` as stored: names a
    run's input, so that a run id reused with other data is noticed."""
    digest = hashlib.sha256()
    for name in ("accounts.csv", "transactions.csv"):
        path = directory / name
        digest.update(name.encode() + b"\0")
        try:
            with path.open("rb") as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
        except OSError as exc:
            raise InputError(f"{path}: cannot read ({exc.strerror})") from None
        digest.update(b"\0")
    return digest.hexdigest()


def skip_pandas_probe() -> None:
    """Tell pyarrow, for this process, that pandas is absent, without importing it.

    On its first conversion pyarrow imports pandas if it is installed, to recognise pandas
    objects; that costs about 0.3 s of CPU per process start and riskprop never passes pandas
    objects. pyarrow probes once per process (and retries only for explicit pandas functions
    such as ``to_pandas``), so failing that one probe is enough. For command-line processes:
    a library user mixing pandas objects into pyarrow calls should not call this. A no-op
    when pandas is already imported.
    """

    class _NoPandas(importlib.abc.MetaPathFinder):
        def find_spec(self, name: str, path: object = None, target: object = None) -> None:
            if name == "pandas":
                raise ModuleNotFoundError("riskprop does not use pandas", name=name)

    blocker = _NoPandas()
    sys.meta_path.insert(0, blocker)
    try:
        pa.array([0.0])
    finally:
        sys.meta_path.remove(blocker)


# --------------------------------------------------------------------------- accounts


def _read_accounts(path: Path) -> tuple[pa.Array, FloatArray]:
    _check_header(path, ACCOUNT_COLUMNS, optional=None)
    table = _read_table(path, {"id": pa.string(), "risk_score": pa.float64()})
    ids = table.column("id").combine_chunks()
    scores = table.column("risk_score").to_numpy()
    problems: list[tuple[int, str]] = []
    _first(problems, pc.equal(pc.utf8_length(ids), 0), "empty id")
    bad = np.isnan(scores) | (scores < 0.0) | (scores > 1.0)
    if bad.any():
        row = int(np.argmax(bad))
        problems.append((row, f"risk_score {float(scores[row])!r} is outside [0, 1]"))
    dup = _first_duplicate(ids)
    if dup is not None:
        problems.append((dup, f"duplicate account id {ids[dup].as_py()!r}"))
    _raise_first(path, problems)
    return ids, scores.astype(np.float64, copy=True)


# ----------------------------------------------------------------------- transactions


def _read_transactions(
    path: Path, name: str, banks: tuple[str, ...], ids: pa.Array, scores: FloatArray
) -> BankData:
    has_period = _check_header(path, TRANSACTION_COLUMNS, optional=PERIOD_COLUMN)
    types: dict[str, pa.DataType] = {
        "id_source": pa.string(),
        "bank_source": pa.string(),
        "id_destination": pa.string(),
        "bank_destination": pa.string(),
        "amount": pa.float64(),
    }
    if has_period:
        types[PERIOD_COLUMN] = pa.int64()
    table = _read_table(path, types)
    n_rows = table.num_rows
    amount = table.column("amount").to_numpy()
    period = (
        table.column(PERIOD_COLUMN).to_numpy().astype(np.int64)
        if has_period
        else np.zeros(n_rows, dtype=np.int64)
    )
    src_id = table.column("id_source").combine_chunks()
    dst_id = table.column("id_destination").combine_chunks()
    src_bank = _bank_codes(table.column("bank_source"), banks)
    dst_bank = _bank_codes(table.column("bank_destination"), banks)
    own = banks.index(name)

    problems: list[tuple[int, str]] = []
    for column, codes in (("bank_source", src_bank), ("bank_destination", dst_bank)):
        if (codes < 0).any():
            row = int(np.argmax(codes < 0))
            value = table.column(column)[row].as_py()
            problems.append(
                (row, f"{column} {value!r} is not a bank of this data set ({', '.join(banks)})")
            )
    _first(problems, pc.equal(pc.utf8_length(src_id), 0), "empty id_source")
    _first(problems, pc.equal(pc.utf8_length(dst_id), 0), "empty id_destination")
    bad_amount = ~np.isfinite(amount) | (amount < 0.0)
    if bad_amount.any():
        row = int(np.argmax(bad_amount))
        problems.append((row, f"amount {float(amount[row])!r} is not a non-negative number"))
    if (period < 0).any():
        row = int(np.argmax(period < 0))
        problems.append((row, f"period {int(period[row])} is negative"))
    foreign = (src_bank != own) & (dst_bank != own) & (src_bank >= 0) & (dst_bank >= 0)
    if foreign.any():
        row = int(np.argmax(foreign))
        problems.append((row, f"transaction touches no account of bank {name!r}"))
    _raise_first(path, problems)

    # One dictionary for both id columns: string hashing happens once per row, everything
    # after it is integer gathers over the distinct ids.
    n_rows = len(src_bank)
    encoded = pc.dictionary_encode(pa.concat_arrays([src_id, dst_id]))
    dictionary = encoded.dictionary
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    src_code, dst_code = codes[:n_rows], codes[n_rows:]

    self_loop = (src_bank == dst_bank) & (src_code == dst_code)
    n_loops = int(self_loop.sum())
    if n_loops:
        keep = ~self_loop
        src_code, dst_code = src_code[keep], dst_code[keep]
        src_bank, dst_bank = src_bank[keep], dst_bank[keep]
        amount, period = amount[keep], period[keep]

    def used_by(code: int) -> npt.NDArray[np.bool_]:
        used = np.zeros(len(dictionary), dtype=bool)
        used[src_code[src_bank == code]] = True
        used[dst_code[dst_bank == code]] = True
        return used

    # Own accounts that occur only in the transactions join the account table at risk 0, in
    # order of first appearance as this bank's account: the id_source column, then
    # id_destination (self-loops, already dropped, do not count).
    own_pos = pc.fill_null(pc.index_in(dictionary, value_set=ids), -1).to_numpy()
    own_pos = np.asarray(own_pos, dtype=np.int64)
    own_refs = np.concatenate([src_code[src_bank == own], dst_code[dst_bank == own]])
    referenced, first_seen = np.unique(own_refs, return_index=True)
    unknown = own_pos[referenced] < 0
    implicit = referenced[unknown][np.argsort(first_seen[unknown], kind="stable")]
    n_implicit = len(implicit)
    own_pos[implicit] = len(ids) + np.arange(n_implicit)
    all_ids = pa.concat_arrays([ids, dictionary.take(pa.array(implicit, type=pa.int64()))])
    initial = np.concatenate([scores, np.zeros(n_implicit)])

    src = np.empty(len(src_bank), dtype=np.int64)
    dst = np.empty(len(dst_bank), dtype=np.int64)
    foreign_ids: dict[str, tuple[str, ...]] = {}
    for code, bank in enumerate(banks):
        if code == own:
            position = own_pos
        else:
            entries = np.flatnonzero(used_by(code))
            table = dictionary.take(pa.array(entries, type=pa.int64()))
            foreign_ids[bank] = tuple(table.to_pylist())
            position = np.full(len(dictionary), -1, dtype=np.int64)
            position[entries] = np.arange(len(entries))
        s_mask, d_mask = src_bank == code, dst_bank == code
        src[s_mask] = position[src_code[s_mask]]
        dst[d_mask] = position[dst_code[d_mask]]

    warnings = []
    if n_implicit:
        warnings.append(
            f"{path}: {n_implicit} account(s) of bank {name!r} occur in transactions but not in "
            "accounts.csv; they start at risk 0"
        )
    if n_loops:
        warnings.append(f"{path}: {n_loops} self-loop transaction(s) ignored")
    return BankData(
        name=name,
        banks=banks,
        account_ids=tuple(all_ids.to_pylist()),
        initial=initial,
        foreign_ids=foreign_ids,
        src_bank=src_bank,
        src=src,
        dst_bank=dst_bank,
        dst=dst,
        amount=amount.astype(np.float64, copy=False),
        period=period,
        warnings=tuple(warnings),
    )


# --------------------------------------------------------------------------- helpers


def _check_header(path: Path, required: Sequence[str], optional: str | None) -> bool:
    """Check the header line; return whether the optional last column is present."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        try:
            header = next(csv.reader(handle), None)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise InputError(f"{path}:1: unreadable header ({exc})") from None
    if header is None:
        raise InputError(f"{path}: file is empty (expected header {','.join(required)})")
    header = [column.strip() for column in header]
    allowed = [*required, optional] if optional else list(required)
    missing = [column for column in required if column not in header]
    extra = [column for column in header if column not in allowed]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing column(s) {', '.join(missing)}")
        if extra:
            parts.append(f"unexpected column(s) {', '.join(extra)}")
        raise InputError(f"{path}:1: {'; '.join(parts)} (expected {','.join(allowed)})")
    if header not in (list(required), allowed):
        raise InputError(f"{path}:1: columns must be in the order {','.join(allowed)}")
    return optional is not None and header == allowed


def _has_rows(path: Path) -> bool:
    """Whether anything but blank lines follows the header line."""
    with path.open("rb") as handle:
        handle.readline()
        while chunk := handle.read(1 << 16):
            if chunk.strip():
                return True
    return False


def _read_table(path: Path, types: dict[str, pa.DataType]) -> pa.Table:
    names = list(types)
    if not _has_rows(path):  # pyarrow cannot skip a header that has no line ending
        return pa.table({name: pa.array([], type=kind) for name, kind in types.items()})
    try:
        return pa_csv.read_csv(
            path,
            read_options=pa_csv.ReadOptions(column_names=names, skip_rows=1),
            parse_options=pa_csv.ParseOptions(ignore_empty_lines=True),
            convert_options=pa_csv.ConvertOptions(
                column_types=types,
                null_values=[],
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise _diagnose(path, types) or InputError(f"{path}: cannot parse ({exc})") from None


def _diagnose(path: Path, types: dict[str, pa.DataType]) -> InputError | None:
    """Find the first malformed line of a file the fast reader refused."""
    names = list(types)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            next(reader, None)
            for row in reader:
                if not row:
                    continue
                where = f"{path}:{reader.line_num}"
                if len(row) != len(names):
                    return InputError(
                        f"{where}: expected {len(names)} fields ({','.join(names)}), got {len(row)}"
                    )
                for column, value in zip(names, row, strict=True):
                    kind = types[column]
                    if kind == pa.float64() and not _parses(value, kind):
                        return InputError(f"{where}: {column} {value!r} is not a number")
                    if kind == pa.int64() and not _parses(value, kind):
                        return InputError(f"{where}: {column} {value!r} is not an integer")
    except UnicodeDecodeError as exc:
        return InputError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start})")
    except csv.Error as exc:
        return InputError(f"{path}: malformed CSV ({exc})")
    return None


def _parses(value: str, kind: pa.DataType) -> bool:
    """Whether the CSV reader accepts ``value`` as ``kind`` (its parser, surrounding blanks
    trimmed as the reader does), so a diagnosis never disagrees with the fast path."""
    try:
        pc.cast(pa.array([value.strip()], type=pa.string()), kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


def _bank_codes(column: pa.ChunkedArray, banks: tuple[str, ...]) -> IntArray:
    """Bank names to codes into ``banks``; -1 for a name that is not a known bank."""
    codes = pc.index_in(column, value_set=pa.array(banks, type=pa.string()))
    return np.asarray(pc.fill_null(codes, -1).to_numpy(), dtype=np.int64)


def _first(problems: list[tuple[int, str]], mask: Any, message: str) -> None:
    found = np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)
    if found.any():
        problems.append((int(np.argmax(found)), message))


def _first_duplicate(ids: pa.Array) -> int | None:
    """Row of the first id that already occurred on an earlier row, if any."""
    codes = pc.dictionary_encode(ids).indices.to_numpy()
    _, first_rows = np.unique(codes, return_index=True)
    if len(first_rows) == len(codes):
        return None
    repeated = np.arange(len(codes)) != first_rows[codes]
    return int(np.argmax(repeated))


def _raise_first(path: Path, problems: Iterable[tuple[int, str]]) -> None:
    ordered = sorted(problems)
    if ordered:
        row, message = ordered[0]
        raise InputError(f"{path}:{line_of_row(path, row)}: {message}")


def line_of_row(path: Path, row: int) -> int:
    """Physical line of data row ``row`` (0-based, header excluded), skipping blank lines."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        seen = -1
        for record in reader:
            if record:
                seen += 1
                if seen == row:
                    return reader.line_num
    return row + 2


# --------------------------------------------------------------------------- data set


@dataclass(frozen=True, eq=False)
class Dataset:
    """Every bank of a data set directory, each loaded from its own files only."""

    root: Path
    banks: tuple[BankData, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(bank.name for bank in self.banks)

    def periods(self) -> list[int]:
        """Sorted union of the periods that occur in any bank's transactions."""
        found: set[int] = set()
        for bank in self.banks:
            found.update(bank.periods())
        return sorted(found) or [0]


def bank_directories(root: Path) -> list[str]:
    """Names of the bank sub-directories of a data set (hidden ones skipped), sorted."""
    if not root.is_dir():
        raise InputError(f"{root}: data set directory not found")
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        raise InputError(f"{root}: no bank sub-directories (expected <bank>/accounts.csv)")
    return names


def load_dataset(root: Path) -> Dataset:
    """Load every bank of the data set at ``root`` (one sub-directory per bank)."""
    names = bank_directories(root)
    return Dataset(root=root, banks=tuple(load_bank(root / n, n, names) for n in names))
