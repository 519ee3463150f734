"""Raw transaction layouts and their reader: one bank's raw transactions, normalised to columns.

Two layouts, told apart by the header line (``layout="auto"``); a header that matches neither
is refused. Fields are taken as written (no surrounding blanks are trimmed, except in the
header); blank lines are skipped; a field with a comma, quote or line break is CSV-quoted.

**riskprop** (this project's own raw layout), exactly the header::

    tx_id,timestamp,source,source_bank,target,target_bank,amount,currency,type,channel,
    source_country,target_country,status

(one line) and one transaction per row:

- ``tx_id``: the transaction's id, non-empty, unique over the file.
- ``timestamp``: ISO 8601 ``YYYY-MM-DDTHH:MM:SS`` followed by the zone: ``Z`` (UTC) or an offset
  ``+HH:MM`` / ``-HH:MM`` (at most 18:00), e.g. ``2026-11-29T23:15:00+01:00`` (that is
  ``2026-11-29T22:15:00Z``). ``time`` is UTC seconds since 1970 and ``utc_offset`` the offset
  in seconds east of UTC, so ``time + utc_offset`` is the local wall-clock time as written.
  Impossible dates (``02-30``) are refused.
- ``source``, ``source_bank``, ``target``, ``target_bank``: account ids and bank names,
  non-empty, without comma, quote or line break (they go unquoted into the data layout).
- ``amount``: a non-negative decimal number (``1250``, ``9999.99``, ``1.5e3``) in ``currency``.
- ``currency``: ISO 4217 code, three letters (upper-cased).
- ``type``: free text (the payment type: ``cash``, ``wire``, ...), lower-cased into ``kind``.
- ``channel``: free text or empty, lower-cased.
- ``source_country``, ``target_country``: ISO 3166 alpha-2 (two letters, upper-cased) or empty.
- ``status``: ``completed``, ``failed`` or ``reversed`` (any case).

**amlworld** (IBM AMLworld, Altman et al. 2023), the header ``Timestamp,From Bank,Account,To
Bank,Account,Amount Received,Receiving Currency,Amount Paid,Payment Currency,Payment
Format[,Is Laundering]`` (the first ``Account`` is the payer's, the second the payee's):

- ``tx_id`` is the row's physical line number (``"2"`` for the first row).
- ``Timestamp`` ``YYYY/MM/DD HH:MM`` taken as UTC (``utc_offset`` 0).
- Account ids ``<bank id>:<account>`` and bank ``<bank id>``, bank ids as written (``010`` and
  ``10`` are two banks), as riskprop's AMLworld importer does.
- The amount is ``Amount Paid`` in ``Payment Currency`` (the received pair is not used); the
  currency names map to codes by :data:`AMLWORLD_CURRENCIES` (``US Dollar`` -> ``USD``,
  ``Bitcoin`` -> ``BTC``, not an ISO code but the common one).
- ``kind`` is ``Payment Format`` lower-cased (``cash``, ``wire``, ``ach``, ``cheque``, ``credit
  card``, ``bitcoin``, ``reinvestment``); status ``completed``; no channel or countries.
- ``label`` is ``Is Laundering`` (0/1) when the column is present, else None. Rows are kept as
  they are, self-transfers (``Reinvestment``) too.

**Conversion.** ``amount = original_amount / rate[currency] * rate[reporting currency]`` with
``rate[c]`` the units of ``c`` per one unit of a common base (codes compared upper-cased); the
default table :data:`DEFAULT_RATES` has US dollars as base (fixed approximate rates, so that a run
is reproducible). A table given with ``rates`` may have any base, e.g. the reporting currency
at 1.

**Errors.** The file is read with pyarrow's multi-threaded CSV reader (every column as text) and
checked column by column (groups of columns in threads, one per usable core) with vectorised kernels
(times and amounts block by block of the reader); columns of few distinct values (accounts, banks,
currencies, types, channels, countries, statuses) are checked and normalised once per distinct
value. The first bad field in file order (on one row: the first column in file order, and in it the
first check) stops the read with one :class:`~riskprop.errors.InputError` line ``file:line: <field>
<value> <problem>``; so do a header that matches no layout (``file:1: unknown column set``) and a
row with the wrong number of fields. ``line`` is each row's physical line: blank lines and line
breaks inside quoted fields are counted. Nothing is written by this module.

**Memory.** Text columns are not Python strings per row: ``tx_id`` stays an Arrow string
column (:class:`Texts`), and every other text column is :class:`Coded`, its distinct values
(sorted by code point) and an ``int32`` code per row. ``source``/``target`` share one table of
values, as do ``source_bank``/``target_bank`` and the two country columns, so equal codes are
equal values across the two sides. A row then costs some 80 bytes of numbers plus its id's
bytes; each column's text is released as soon as it is converted.
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, overload

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from riskprop.core.types import BoolArray, FloatArray, IntArray
from riskprop.errors import ConfigError, InputError

RISKPROP, AMLWORLD = "riskprop", "amlworld"
LAYOUTS: Final = (RISKPROP, AMLWORLD)

RISKPROP_HEADER: Final = (
    "tx_id",
    "timestamp",
    "source",
    "source_bank",
    "target",
    "target_bank",
    "amount",
    "currency",
    "type",
    "channel",
    "source_country",
    "target_country",
    "status",
)
AMLWORLD_HEADER: Final = (
    "Timestamp",
    "From Bank",
    "Account",
    "To Bank",
    "Account",
    "Amount Received",
    "Receiving Currency",
    "Amount Paid",
    "Payment Currency",
    "Payment Format",
    "Is Laundering",
)
#: Internal names of AMLworld's columns, in file order (the two ``Account`` columns told apart).
AMLWORLD_COLUMNS: Final = (
    "timestamp",
    "from_bank",
    "from_account",
    "to_bank",
    "to_account",
    "amount_received",
    "receiving_currency",
    "amount_paid",
    "payment_currency",
    "payment_format",
    "is_laundering",
)
#: How an error names an AMLworld column: the file's name, the two ``Account`` columns by position.
AMLWORLD_FIELD: Final = {
    **dict(zip(AMLWORLD_COLUMNS, AMLWORLD_HEADER, strict=True)),
    "from_account": "Account (column 3, the payer's)",
    "to_account": "Account (column 5, the payee's)",
}
STATUSES: Final = ("completed", "failed", "reversed")

#: AMLworld's currency names -> currency codes (ISO 4217; Bitcoin's common code BTC).
AMLWORLD_CURRENCIES: Final[Mapping[str, str]] = {
    "US Dollar": "USD",
    "Euro": "EUR",
    "UK Pound": "GBP",
    "Swiss Franc": "CHF",
    "Yen": "JPY",
    "Yuan": "CNY",
    "Rupee": "INR",
    "Ruble": "RUB",
    "Canadian Dollar": "CAD",
    "Australian Dollar": "AUD",
    "Brazil Real": "BRL",
    "Mexican Peso": "MXN",
    "Saudi Riyal": "SAR",
    "Shekel": "ILS",
    "Bitcoin": "BTC",
}
#: Units of each currency per US dollar: approximate market rates, rounded, fixed so that a run
#: is reproducible (AMLworld's currencies; the table riskprop's AMLworld importer uses).
DEFAULT_RATES: Final[Mapping[str, float]] = {
    "USD": 1.0,
    "EUR": 0.85,
    "GBP": 0.77,
    "CHF": 0.92,
    "JPY": 105.0,
    "CNY": 6.7,
    "INR": 73.0,
    "RUB": 78.0,
    "CAD": 1.36,
    "AUD": 1.41,
    "BRL": 5.6,
    "MXN": 21.0,
    "SAR": 3.75,
    "ILS": 3.36,
    "BTC": 0.0000847,
}

#: A non-negative decimal number; pyarrow's cast to float64 accepts every match.
DECIMAL_NUMBER: Final = r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_ISO_TIME: Final = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(Z|[+-][0-9]{2}:[0-9]{2})$"
)
_AMLWORLD_TIME: Final = r"^[0-9]{4}/[0-9]{2}/[0-9]{2} [0-9]{2}:[0-9]{2}$"
_MAX_OFFSET: Final = 18 * 3600
_BAD_ID: Final = re.compile(r'[,"\r\n]')
_BAD_BANK: Final = re.compile(r'[,"\r\n:]')
_CURRENCY: Final = re.compile(r"[A-Z]{3}")
_COUNTRY: Final = re.compile(r"[A-Z]{2}")

ObjectArray = npt.NDArray[np.object_]
Rows = npt.NDArray[np.integer[Any]] | npt.NDArray[np.bool_] | slice


class _TextColumn:
    """Indexing shared by the text columns: ``column[i]`` is row ``i``'s value (a ``str``),
    ``column[rows]`` the values of an index array, mask or slice as a numpy object array."""

    def _one(self, row: int) -> str:
        raise NotImplementedError

    def _many(self, rows: Rows) -> ObjectArray:
        raise NotImplementedError

    @overload
    def __getitem__(self, rows: int) -> str: ...
    @overload
    def __getitem__(self, rows: Rows) -> ObjectArray: ...
    def __getitem__(self, rows: int | Rows) -> str | ObjectArray:
        if isinstance(rows, int | np.integer):
            return self._one(int(rows))
        return self._many(rows)


@dataclass(frozen=True, eq=False)
class Coded(_TextColumn):
    """A text column as its distinct ``values`` (sorted by code point, no repeats) and a code per
    row: row ``i`` holds ``values[codes[i]]``. Code order is value order."""

    values: ObjectArray
    codes: npt.NDArray[np.int32]

    @staticmethod
    def of(texts: Sequence[str]) -> Coded:
        """The column of ``texts`` (Python strings: tests, small data)."""
        return Coded.shared([texts])[0]

    @staticmethod
    def shared(columns: Sequence[Sequence[str] | pa.Array | pa.ChunkedArray]) -> list[Coded]:
        """``columns`` coded over one table of values (the union of their values)."""
        arrays = [_chunked(column) for column in columns]
        distinct = pc.unique(pa.chunked_array([c for a in arrays for c in a.chunks], pa.string()))
        distinct = distinct.take(pc.sort_indices(distinct))
        values = np.empty(len(distinct), dtype=object)
        values[:] = distinct.to_pylist()
        return [Coded(values, _index_in(a, distinct)) for a in arrays]

    def __len__(self) -> int:
        return len(self.codes)

    def _one(self, row: int) -> str:
        return str(self.values[self.codes[row]])

    def _many(self, rows: Rows) -> ObjectArray:
        out: ObjectArray = self.values[self.codes[rows]]
        return out

    def tolist(self) -> list[str]:
        return [str(v) for v in self.values[self.codes]]

    def code(self, value: str) -> int:
        """The code of ``value``; -1 when no row holds it."""
        at = int(np.searchsorted(self.values, value)) if len(self.values) else 0
        return at if at < len(self.values) and self.values[at] == value else -1

    def isin(self, wanted: Collection[str]) -> npt.NDArray[np.bool_]:
        """Per row: is its value in ``wanted``? One test per distinct value."""
        chosen = set(wanted)
        table = np.fromiter((v in chosen for v in self.values), bool, len(self.values))
        out: npt.NDArray[np.bool_] = table[self.codes]
        return out

    def equals(self, value: str) -> npt.NDArray[np.bool_]:
        """Per row: is its value ``value``?"""
        out: npt.NDArray[np.bool_] = self.codes == self.code(value)
        return out

    def lookup(self, table: Mapping[str, float], default: float = 0.0) -> npt.NDArray[np.float64]:
        """Per row ``table[value]`` (``default`` when absent)."""
        per_value = np.array([table.get(v, default) for v in self.values], dtype=np.float64)
        out: npt.NDArray[np.float64] = per_value[self.codes]
        return out

    def take(self, rows: Rows | None = None) -> pa.Array:
        """The values of ``rows`` (all when None) as an Arrow string array."""
        codes = self.codes if rows is None else self.codes[rows]
        return pa.array(self.values, pa.string()).take(pa.array(codes, pa.int32()))


@dataclass(frozen=True, eq=False)
class Texts(_TextColumn):
    """A text column of mostly distinct values (``tx_id``) kept as Arrow strings."""

    array: pa.ChunkedArray

    @staticmethod
    def of(texts: Sequence[str]) -> Texts:
        return Texts(_chunked(texts))

    def __len__(self) -> int:
        return len(self.array)

    def _one(self, row: int) -> str:
        return str(self.array[row].as_py())

    def _many(self, rows: Rows) -> ObjectArray:
        picked = self.take(rows)
        out = np.empty(len(picked), dtype=object)
        out[:] = picked.to_pylist()
        return out

    def tolist(self) -> list[str]:
        return [str(v) for v in self.array.to_pylist()]

    def take(self, rows: Rows | None = None) -> pa.Array:
        """The values of ``rows`` (all when None) as an Arrow string array."""
        if rows is None:
            return self.array.combine_chunks()
        if isinstance(rows, slice) or rows.dtype == np.bool_:
            positions = np.arange(len(self))[rows]
        else:  # an index array as numpy takes it: negative positions count from the end
            positions = np.where(rows < 0, rows + len(self), rows)
        return self.array.take(pa.array(positions, pa.int64())).combine_chunks()


def _chunked(column: Sequence[str] | pa.Array | pa.ChunkedArray) -> pa.ChunkedArray:
    if isinstance(column, pa.ChunkedArray):
        return column
    if isinstance(column, pa.Array):
        return pa.chunked_array([column])
    return pa.chunked_array([pa.array(list(column), pa.string())], pa.string())


def _index_in(column: pa.ChunkedArray, values: pa.Array) -> npt.NDArray[np.int32]:
    """Each row's position in ``values`` (which holds every value of ``column``): one call
    over all chunks, so that the hash table of ``values`` is built once."""
    found = pc.index_in(column, value_set=values)
    return _joined([np.asarray(c.to_numpy(zero_copy_only=False)) for c in found.chunks], np.int32)


@dataclass(frozen=True, eq=False)
class RawTransactions:
    """One bank's raw transactions, normalised; columns of equal length n, in file order.

    ``time`` is UTC seconds since 1970 and ``time + utc_offset`` the local time as written;
    ``amount = original_amount`` converted to the reporting currency (see the module's
    description); ``line`` is each row's physical line in ``path`` (the header is line 1).
    ``source.values is target.values`` and likewise for the banks and the countries."""

    path: Path
    line: IntArray
    tx_id: Texts
    time: npt.NDArray[np.int64]
    utc_offset: npt.NDArray[np.int32]
    source: Coded
    source_bank: Coded
    target: Coded
    target_bank: Coded
    amount: FloatArray
    currency: Coded
    original_amount: FloatArray
    kind: Coded
    channel: Coded
    source_country: Coded
    target_country: Coded
    status: Coded
    label: BoolArray | None

    @property
    def n(self) -> int:
        return len(self.time)


def read_raw(
    path: Path,
    *,
    layout: str = "auto",
    rates: Mapping[str, float] | None = None,
    currency: str = "USD",
) -> RawTransactions:
    """Read and check a raw transactions file of ``layout`` (``auto``: by its header), amounts
    converted to ``currency`` with ``rates`` (units per one unit of a common base; default
    :data:`DEFAULT_RATES`). Raises InputError naming ``file:line`` and the field at the first
    bad one, ConfigError for a bad layout, rate table or reporting currency."""
    if layout != "auto" and layout not in LAYOUTS:
        raise ConfigError(f"layout must be auto or one of {', '.join(LAYOUTS)} (got {layout!r})")
    table_rates = _check_rates(DEFAULT_RATES if rates is None else rates, currency)
    if not path.is_file():
        what = "is a directory, not" if path.is_dir() else "not found; expected"
        raise InputError(f"{path}: {what} a raw transactions CSV file")
    found, labelled = _detect(path, layout)
    # the table is handed on without a name here, so that its columns are freed one by one
    if found == RISKPROP:
        return _riskprop(
            path, read_text_table(path, RISKPROP_HEADER), table_rates, currency.upper()
        )
    names = AMLWORLD_COLUMNS if labelled else AMLWORLD_COLUMNS[:-1]
    unused = ("amount_received", "receiving_currency")
    return _amlworld(
        path, read_text_table(path, names, skip=unused), table_rates, currency.upper(), labelled
    )


def own_accounts(raw: RawTransactions, bank: str) -> ObjectArray:
    """The bank's accounts: every source with ``source_bank == bank`` and every target with
    ``target_bank == bank``, unique, sorted by code point."""
    values, _ = own_codes(raw, bank)
    out: ObjectArray = raw.source.values[values]
    return out


def own_codes(raw: RawTransactions, bank: str) -> tuple[IntArray, IntArray]:
    """The bank's accounts as codes into ``raw.source.values`` (ascending, so in
    :func:`own_accounts` order), and per code its position among them (-1: not the bank's)."""
    present = np.zeros(len(raw.source.values), dtype=bool)
    present[raw.source.codes[raw.source_bank.equals(bank)]] = True
    present[raw.target.codes[raw.target_bank.equals(bank)]] = True
    codes = np.flatnonzero(present).astype(np.int64)
    position = np.full(len(present), -1, dtype=np.int64)
    position[codes] = np.arange(len(codes), dtype=np.int64)
    return codes, position


# ------------------------------------------------------------------------------ header, table


def _check_rates(rates: Mapping[str, float], currency: str) -> dict[str, float]:
    table: dict[str, float] = {}
    for name, rate in rates.items():
        if not (isinstance(rate, int | float) and math.isfinite(rate) and rate > 0):
            raise ConfigError(f"rate of {name!r} must be a positive number (got {rate!r})")
        table[str(name).upper()] = float(rate)
    if currency.upper() not in table:
        raise ConfigError(f"reporting currency {currency!r} has no rate in the rate table")
    return table


def _detect(path: Path, layout: str) -> tuple[str, bool]:
    """The file's layout by its header, and whether an AMLworld file has ``Is Laundering``."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), None)
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        raise InputError(f"{path}:1: cannot read the header ({exc})") from None
    if header is None:
        raise InputError(f"{path}: file is empty (expected a raw transactions header)")
    got = tuple(column.strip() for column in header)
    if got == RISKPROP_HEADER and layout in ("auto", RISKPROP):
        return RISKPROP, False
    if got in (AMLWORLD_HEADER, AMLWORLD_HEADER[:-1]) and layout in ("auto", AMLWORLD):
        return AMLWORLD, got == AMLWORLD_HEADER
    expected = {
        RISKPROP: ",".join(RISKPROP_HEADER),
        AMLWORLD: ",".join(AMLWORLD_HEADER) + " (Is Laundering optional)",
    }
    wanted = LAYOUTS if layout == "auto" else (layout,)
    raise InputError(
        f"{path}:1: unknown column set {','.join(got)!r}; expected "
        + " or ".join(f"{name}: {expected[name]}" for name in wanted)
    )


def read_text_table(
    path: Path,
    names: Sequence[str],
    *,
    skip: Sequence[str] = (),
    header: Sequence[str] | None = None,
) -> pa.Table:
    """The columns of a CSV file with a header line, all but ``skip`` as text, named ``names``
    (one per column, in file order). A row of another width is one line naming its line and,
    when it is short, the first column it lacks (``header``: the file's own column names,
    default ``names``)."""
    width = len(names)
    written = tuple(header) if header is not None else tuple(names)
    wrong: list[int] = []

    def invalid(row: pa_csv.InvalidRow) -> str:
        wrong.append(row.actual_columns)
        return "skip"

    try:
        table = pa_csv.read_csv(
            path,
            read_options=pa_csv.ReadOptions(column_names=list(names), skip_rows=1),
            parse_options=pa_csv.ParseOptions(invalid_row_handler=invalid),
            convert_options=pa_csv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                include_columns=[name for name in names if name not in skip],
                null_values=[],
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: cannot parse ({message})") from None
    if wrong:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            next(reader, None)
            for record in reader:
                if record and len(record) != width:
                    count = len(record)
                    missing = f" (no {written[count]!r})" if count < width else ""
                    raise InputError(
                        f"{path}:{reader.line_num}: {count} fields, expected {width}{missing}"
                    )
    if table.num_rows == 0:
        raise InputError(f"{path}: no transactions after the header")
    return table


def _lines(path: Path, rows: int) -> IntArray:
    """Physical line of each data row. Without blank lines or quoted line breaks (counted by
    the file's line endings) row ``i`` is on line ``i + 2``; otherwise the file is scanned."""
    newlines, last = 0, b""
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 24):
            newlines += chunk.count(b"\n")
            last = chunk[-1:]
    physical = newlines + (0 if last == b"\n" else 1)
    if physical == rows + 1:
        return np.arange(2, rows + 2, dtype=np.int64)
    line = np.empty(rows, dtype=np.int64)
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        row = 0
        for record in reader:
            if record:
                # line_num is where the record ends; a quoted field may hold line breaks
                line[row] = reader.line_num - sum(field.count("\n") for field in record)
                row += 1
    return line


# ------------------------------------------------------------------------------ checks


class _Problems:
    """The problems found so far as (row, message); :meth:`raise_first` reports the first.

    The columns are popped from ``columns`` as they are converted, so that each one's text is
    freed once its values are out (the peak holds the text of the columns not yet converted)."""

    def __init__(self, path: Path, table: pa.Table, field: Mapping[str, str]) -> None:
        self.path, self.field, self.rows = path, field, table.num_rows
        self.columns = {name: table.column(name) for name in table.column_names}
        self.rank = {name: i for i, name in enumerate(table.column_names)}
        self.found: list[tuple[int, int, int, str]] = []

    def add(self, row: int, column: str, value: object, problem: str) -> None:
        """A problem at ``row``; on one row the first column in file order is reported, and
        within a column the first check made."""
        message = f"{self.field.get(column, column)} {value!r} {problem}"
        rank = self.rank.get(column, len(self.rank))
        self.found.append((row, rank, len(self.found), message))

    def mask(self, column: str, flags: BoolArray, problem: str, text: pa.ChunkedArray) -> None:
        """Report the first row flagged (``text`` is the column, for the value)."""
        if flags.any():
            row = int(np.argmax(flags))
            self.add(row, column, text[row].as_py(), problem)

    def raise_first(self) -> None:
        if self.found:
            row, _, _, message = min(self.found)
            line = _lines(self.path, self.rows)[row]
            raise InputError(f"{self.path}:{line}: {message}")

    def coded(
        self,
        columns: Sequence[str],
        problems: Mapping[str, Check] | None = None,
        normal: Callable[[str], str] | None = None,
    ) -> list[Coded]:
        """Text columns of few distinct values, coded over one table of values (the union
        of theirs, each ``normal(value)``), checked once per distinct value as written:
        ``problems`` maps each problem to its test over the distinct values. One hashing
        pass over the rows (pyarrow's dictionary encoder, whose table grows over the chunks:
        every chunk's dictionary is the whole one)."""
        texts = [self.columns.pop(column) for column in columns]
        sizes = [len(text) for text in texts]
        encoded = pc.dictionary_encode(
            pa.chunked_array([c for t in texts for c in t.chunks], pa.string())
        )
        del texts
        written = encoded.chunk(encoded.num_chunks - 1).dictionary
        every = _joined([np.asarray(c.indices.to_numpy()) for c in encoded.chunks], np.int32)
        del encoded
        codes = np.split(every, np.cumsum(sizes)[:-1])
        for problem, test in (problems or {}).items():
            bad = np.asarray(test(written), dtype=bool)
            if bad.any():
                for column, code in zip(columns, codes, strict=True):
                    flags = bad[code]
                    if flags.any():
                        row = int(np.argmax(flags))
                        self.add(row, column, written[int(code[row])].as_py(), problem)
        if normal is None:  # sort by code point: code order is value order
            order = np.asarray(pc.sort_indices(written).to_numpy(), dtype=np.int64)
            values = np.asarray(written.take(pa.array(order)).to_numpy(zero_copy_only=False))
            remap = np.empty(len(order), dtype=np.int32)
            remap[order] = np.arange(len(order), dtype=np.int32)
        else:
            shown = np.empty(len(written), dtype=object)
            shown[:] = [normal(str(v)) for v in written.to_pylist()]
            values, inverse = np.unique(shown, return_inverse=True)
            remap = np.asarray(inverse, dtype=np.int32).reshape(-1)
        table = values.astype(object, copy=False)
        return [Coded(table, remap[code]) for code in codes]


#: A test of the distinct values of a column: per value, is it bad?
Check = Callable[[pa.Array], npt.NDArray[np.bool_]]


def _each(test: Callable[[str], bool]) -> Check:
    """A test of one value, made a test of the distinct values (columns of few values)."""

    def check(values: pa.Array) -> npt.NDArray[np.bool_]:
        texts = [str(v) for v in values.to_pylist()]
        return np.fromiter((test(v) for v in texts), dtype=bool, count=len(texts))

    return check


def _id_problems(pattern: re.Pattern[str]) -> dict[str, Check]:
    """Ids: not empty, no comma, quote or line break (nor a colon in a bank id); vectorised,
    as an id column has about as many values as accounts."""
    colon = ", colon" if ":" in pattern.pattern else ""
    return {
        "is empty": lambda v: _numpy(pc.equal(pc.binary_length(v), 0)),
        f"holds a comma, quote{colon} or line break": lambda v: _numpy(
            pc.match_substring_regex(v, pattern.pattern)
        ),
    }


def _amount(problems: _Problems, column: str) -> FloatArray:
    """The column's amounts; a negative, unparsable or infinite one is reported. Chunk by
    chunk (the reader's blocks), so that the intermediate arrays stay small."""
    text = problems.columns.pop(column)
    values, negative, wrong = [], [], []
    for chunk in text.chunks:
        number = pc.match_substring_regex(chunk, DECIMAL_NUMBER)
        minus = pc.and_(
            pc.starts_with(chunk, "-"), pc.match_substring_regex(chunk, "^-" + DECIMAL_NUMBER[1:])
        )
        negative.append(_numpy(minus))
        wrong.append(~_numpy(number) & ~negative[-1])
        values.append(_numpy(pc.cast(pc.if_else(number, chunk, "0"), pa.float64())))
    amount: FloatArray = _joined(values, np.float64)
    problems.mask(column, _joined(negative, np.bool_), "is negative", text)
    problems.mask(column, _joined(wrong, np.bool_), "is not a decimal number", text)
    problems.mask(column, ~np.isfinite(amount), "is too large", text)
    return amount


def _times(
    problems: _Problems, column: str, shape: str, fmt: str, width: int, what: str
) -> tuple[IntArray, npt.NDArray[np.int32]]:
    """Local seconds since 1970 of each time's first ``width`` characters, which must read by
    ``fmt`` and keep their day (the parser rolls 02-30 over to 03-02), and the offset in seconds
    of the zone that follows (``Z`` or ``+HH:MM``; 0 without one). ``shape`` is the whole
    pattern. Chunk by chunk (the reader's blocks), so that the intermediates stay small."""
    text = problems.columns.pop(column)
    seconds, offsets, wrong, far = [], [], [], []
    for chunk in text.chunks:
        stamp = pc.strptime(
            pc.utf8_slice_codeunits(chunk, 0, width), format=fmt, unit="s", error_is_null=True
        )
        day = pc.utf8_lpad(pc.cast(pc.day(stamp), pa.string()), 2, "0")
        ok = pc.and_kleene(
            pc.match_substring_regex(chunk, shape),
            pc.equal(pc.utf8_slice_codeunits(chunk, 8, 10), day),
        )
        good = pc.fill_null(ok, False)
        wrong.append(~_numpy(good))
        seconds.append(_numpy(pc.fill_null(stamp.cast(pa.int64()), 0)))
        zone = pc.utf8_slice_codeunits(chunk, width, width + 6)
        # a good time's zone is "", Z or +HH:MM; anything else reads as +00:00
        plain = pc.if_else(pc.and_(good, pc.greater(pc.utf8_length(zone), 1)), zone, "+00:00")
        hours = _numpy(pc.cast(pc.utf8_slice_codeunits(plain, 1, 3), pa.int32()))
        minutes = _numpy(pc.cast(pc.utf8_slice_codeunits(plain, 4, 6), pa.int32()))
        sign = np.where(_numpy(pc.starts_with(plain, "-")), -1, 1).astype(np.int32)
        offset = sign * (hours * 3600 + minutes * 60)
        offsets.append(offset)
        far.append((minutes >= 60) | (np.abs(offset) > _MAX_OFFSET))
    problems.mask(column, _joined(wrong, np.bool_), f"is not a time {what}", text)
    problems.mask(
        column, _joined(far, np.bool_), "has an offset beyond +-18:00 or minutes over 59", text
    )
    return _joined(seconds, np.int64), _joined(offsets, np.int32)


def _repeated(text: pa.ChunkedArray) -> BoolArray:
    """Per row: does an earlier row hold the same value?"""
    encoded = pc.dictionary_encode(text).combine_chunks()
    codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False))
    _, first_rows = np.unique(codes, return_index=True)
    out: BoolArray = np.arange(len(codes)) != first_rows[codes]
    return out


def threads() -> int:
    """Threads for the reader's columns and for the rules: the cores this process may use (the
    machine's where the system has no affinity call: macOS, Windows), at most 4, since the
    memory held at once grows with the threads."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, min(4, len(os.sched_getaffinity(0))))
    return max(1, min(4, os.cpu_count() or 1))


def _numpy(values: pa.Array) -> npt.NDArray[Any]:
    return np.asarray(values.to_numpy(zero_copy_only=False))


def _joined(parts: list[npt.NDArray[Any]], dtype: type[Any]) -> npt.NDArray[Any]:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)


def _converted(
    problems: _Problems,
    column: str,
    original: FloatArray,
    currency: Coded,
    rates: Mapping[str, float],
    report: str,
    written: Mapping[str, str] | None = None,
) -> FloatArray:
    """``original / rate[currency] * rate[report]``; a currency without a rate is reported
    (by its code, or as ``written[code]`` when given)."""
    rate = np.array([rates.get(code, math.nan) for code in currency.values], dtype=np.float64)
    missing = np.isnan(rate)
    if missing.any():
        row = int(np.argmax(missing[currency.codes]))
        code = str(currency.values[int(currency.codes[row])])
        shown = code if written is None else written[code]
        problems.add(
            row, column, shown, "has no exchange rate" + ("" if shown == code else f" ({code})")
        )
    converted: FloatArray = original / np.where(missing, 1.0, rate)[currency.codes]
    converted *= rates[report]
    return converted


# ------------------------------------------------------------------------------ layouts


def _riskprop(path: Path, table: pa.Table, rates: dict[str, float], report: str) -> RawTransactions:
    problems = _Problems(path, table, {})
    del table
    tx = problems.columns.pop("tx_id")

    def check_ids(tx: pa.ChunkedArray) -> None:
        problems.mask("tx_id", _numpy(pc.equal(pc.binary_length(tx), 0)), "is empty", tx)
        bad = _numpy(pc.match_substring_regex(tx, _BAD_ID.pattern))
        problems.mask("tx_id", bad, "holds a comma, quote or line break", tx)
        if pc.count_distinct(tx).as_py() != len(tx):
            repeated = _repeated(tx)
            problems.mask("tx_id", repeated, "is not unique (an earlier row has it)", tx)

    def times() -> tuple[IntArray, npt.NDArray[np.int32]]:
        return _times(
            problems,
            "timestamp",
            _ISO_TIME,
            "%Y-%m-%dT%H:%M:%S",
            19,
            "YYYY-MM-DDTHH:MM:SS with Z or an offset +HH:MM",
        )

    def accounts() -> list[Coded]:
        return problems.coded(("source", "target"), _id_problems(_BAD_ID))

    def rest() -> tuple[Coded, ...]:
        banks = problems.coded(("source_bank", "target_bank"), _id_problems(_BAD_ID))
        (kind,) = problems.coded(("type",), None, str.lower)
        (channel,) = problems.coded(("channel",), None, str.lower)
        country = {
            "is not an ISO 3166 alpha-2 code (or empty)": _each(
                lambda v: bool(v) and _COUNTRY.fullmatch(v.upper()) is None
            )
        }
        countries = problems.coded(("source_country", "target_country"), country, str.upper)
        (status,) = problems.coded(
            ("status",),
            {f"is not one of {', '.join(STATUSES)}": _each(lambda v: v.lower() not in STATUSES)},
            str.lower,
        )
        return (*banks, kind, channel, *countries, status)

    def money() -> tuple[FloatArray, Coded, FloatArray]:
        original = _amount(problems, "amount")
        (currency,) = problems.coded(
            ("currency",),
            {"is not an ISO 4217 code": _each(lambda v: _CURRENCY.fullmatch(v.upper()) is None)},
            str.upper,
        )
        return (
            original,
            currency,
            _converted(problems, "currency", original, currency, rates, report),
        )

    # pyarrow's kernels release the interpreter lock: the columns convert side by side
    with ThreadPoolExecutor(max_workers=threads()) as pool:
        ids = pool.submit(check_ids, tx)
        pairs, stamps = pool.submit(accounts), pool.submit(times)
        cash, others = pool.submit(money), pool.submit(rest)
        source, target = pairs.result()
        local, offset = stamps.result()
        original, currency, amount = cash.result()
        banks_etc: tuple[Coded, ...] = others.result()
    source_bank, target_bank, kind, channel, source_country, target_country, status = banks_etc
    ids.result()
    tx_id = Texts(tx)
    problems.raise_first()
    return RawTransactions(
        path=path,
        line=_lines(path, len(tx_id)),
        tx_id=tx_id,
        time=local - offset.astype(np.int64),
        utc_offset=offset,
        source=source,
        source_bank=source_bank,
        target=target,
        target_bank=target_bank,
        amount=amount,
        currency=currency,
        original_amount=original,
        kind=kind,
        channel=channel,
        source_country=source_country,
        target_country=target_country,
        status=status,
        label=None,
    )


def _amlworld(
    path: Path, table: pa.Table, rates: dict[str, float], report: str, labelled: bool
) -> RawTransactions:
    problems = _Problems(path, table, AMLWORLD_FIELD)
    del table
    n = problems.rows
    local, _ = _times(
        problems, "timestamp", _AMLWORLD_TIME, "%Y/%m/%d %H:%M", 16, "YYYY/MM/DD HH:MM"
    )
    columns = problems.columns
    for side in ("from", "to"):
        # bank ids (no colon) and account numbers are checked on their own, the ids joined
        columns[f"{side}_id"] = pc.binary_join_element_wise(
            columns[f"{side}_bank"], columns[f"{side}_account"], ":"
        )
    problems.coded(("from_account", "to_account"), _id_problems(_BAD_ID))
    source, target = problems.coded(("from_id", "to_id"))
    source_bank, target_bank = problems.coded(("from_bank", "to_bank"), _id_problems(_BAD_BANK))
    original = _amount(problems, "amount_paid")
    known = f"is not an AMLworld currency ({', '.join(AMLWORLD_CURRENCIES)})"
    (currency,) = problems.coded(
        ("payment_currency",),
        {known: _each(lambda v: v not in AMLWORLD_CURRENCIES)},
        lambda v: AMLWORLD_CURRENCIES.get(v, ""),
    )
    amount = np.zeros(n)
    if all(currency.values):
        names = {code: name for name, code in AMLWORLD_CURRENCIES.items()}
        amount = _converted(problems, "payment_currency", original, currency, rates, report, names)
    (kind,) = problems.coded(("payment_format",), None, str.lower)
    label: BoolArray | None = None
    if labelled:
        (flag,) = problems.coded(
            ("is_laundering",), {"is not 0 or 1": _each(lambda v: v not in ("0", "1"))}
        )
        label = flag.equals("1")
    problems.raise_first()

    line = _lines(path, n)
    nothing = Coded(np.array([""], dtype=object), np.zeros(n, dtype=np.int32))
    return RawTransactions(
        path=path,
        line=line,
        tx_id=Texts(pa.chunked_array([pc.cast(pa.array(line), pa.string())])),
        time=local,
        utc_offset=np.zeros(n, dtype=np.int32),
        source=source,
        source_bank=source_bank,
        target=target,
        target_bank=target_bank,
        amount=amount,
        currency=currency,
        original_amount=original,
        kind=kind,
        channel=nothing,
        source_country=nothing,
        target_country=nothing,
        status=Coded(np.array(["completed"], dtype=object), np.zeros(n, dtype=np.int32)),
        label=label,
    )
