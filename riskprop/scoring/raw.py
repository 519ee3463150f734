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

**Conversion.** ``amount = original_amount / rate[currency as written] * rate[reporting
currency]`` with ``rate[c]`` the units of ``c`` per one unit of a common base; the default table
:data:`DEFAULT_RATES` has US dollars as base (fixed approximate rates, so a run is
reproducible). A table given with ``rates`` should have the reporting currency at 1, but any
consistent base works.

**Errors.** The file is read with pyarrow's multi-threaded CSV reader (all columns as text) and
checked column by column with vectorised kernels; low-cardinality columns (banks, accounts,
currencies, types, countries, statuses) are checked and normalised once per distinct value. The
first bad field in file order stops the read with one :class:`~riskprop.errors.InputError` line
``file:line: <field> <value> <problem>``. Nothing is written by this module.

**Memory.** The text columns are numpy object arrays; every column but ``tx_id`` is built from
its distinct values, so equal strings share one Python object (a pointer per row).
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

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
_AMLWORLD_COLUMNS: Final = (
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
_AMLWORLD_FIELD: Final = {
    **dict(zip(_AMLWORLD_COLUMNS, AMLWORLD_HEADER, strict=True)),
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
_NUMBER: Final = r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"
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


@dataclass(frozen=True, eq=False)
class RawTransactions:
    """One bank's raw transactions, normalised; numpy columns of equal length n, in file order.

    ``time`` is UTC seconds since 1970 and ``time + utc_offset`` the local time as written;
    ``amount = original_amount`` converted to the reporting currency (see the module's
    description); ``line`` is each row's physical line in ``path`` (the header is line 1)."""

    path: Path
    line: IntArray
    tx_id: ObjectArray
    time: npt.NDArray[np.int64]
    utc_offset: npt.NDArray[np.int32]
    source: ObjectArray
    source_bank: ObjectArray
    target: ObjectArray
    target_bank: ObjectArray
    amount: FloatArray
    currency: ObjectArray
    original_amount: FloatArray
    kind: ObjectArray
    channel: ObjectArray
    source_country: ObjectArray
    target_country: ObjectArray
    status: ObjectArray
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
    if found == RISKPROP:
        table = _read_table(path, RISKPROP_HEADER, len(RISKPROP_HEADER))
        return _riskprop(path, table, table_rates, currency.upper())
    names = _AMLWORLD_COLUMNS if labelled else _AMLWORLD_COLUMNS[:-1]
    table = _read_table(path, names, len(names))
    return _amlworld(path, table, table_rates, currency.upper(), labelled)


def own_accounts(raw: RawTransactions, bank: str) -> ObjectArray:
    """The bank's accounts: every source with ``source_bank == bank`` and every target with
    ``target_bank == bank``, unique, sorted by code point."""
    ids = np.concatenate([raw.source[raw.source_bank == bank], raw.target[raw.target_bank == bank]])
    if ids.size == 0:
        return np.zeros(0, dtype=object)
    unique = pc.unique(pa.array(ids, type=pa.string()))
    ordered = unique.take(pc.sort_indices(unique))
    return np.array(ordered.to_pylist(), dtype=object)


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


def _read_table(path: Path, names: tuple[str, ...], width: int) -> pa.Table:
    """Every column as text, named ``names``; a row of another width is reported by line."""
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
                    raise InputError(
                        f"{path}:{reader.line_num}: {len(record)} fields, expected {width}"
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
    """The problems found so far as (row, message); :meth:`raise_first` reports the first."""

    def __init__(self, path: Path, table: pa.Table, field: Mapping[str, str]) -> None:
        self.path, self.table, self.field = path, table, field
        self.found: list[tuple[int, str]] = []

    def mask(self, column: str, mask: pa.Array | pa.ChunkedArray | BoolArray, problem: str) -> None:
        flags = np.asarray(
            mask if isinstance(mask, np.ndarray) else mask.to_numpy(zero_copy_only=False),
            dtype=bool,
        )
        if flags.any():
            row = int(np.argmax(flags))
            value = self.table.column(column)[row].as_py()
            self.found.append((row, f"{self.field.get(column, column)} {value!r} {problem}"))

    def raise_first(self) -> None:
        if self.found:
            row, message = min(self.found)
            line = _lines(self.path, self.table.num_rows)[row]
            raise InputError(f"{self.path}:{line}: {message}")


@dataclass(frozen=True)
class _Distinct:
    """A text column as its distinct values (a Python list) and each row's index into them."""

    values: list[str]
    codes: IntArray

    @classmethod
    def of(cls, column: pa.ChunkedArray) -> _Distinct:
        encoded = pc.dictionary_encode(column.combine_chunks())
        codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
        return cls([str(v) for v in encoded.dictionary.to_pylist()], codes)

    def check(self, problems: _Problems, column: str, bad: list[bool], problem: str) -> None:
        """Report the first row whose value is flagged in ``bad`` (one flag per value)."""
        if any(bad):
            problems.mask(column, np.asarray(bad, dtype=bool)[self.codes], problem)

    def objects(self, values: list[str] | None = None) -> ObjectArray:
        """The column as an object array (``values`` in place of the distinct values)."""
        table = np.empty(len(self.values), dtype=object)
        table[:] = self.values if values is None else values
        out: ObjectArray = table[self.codes]
        return out


def _ids(problems: _Problems, column: str, pattern: re.Pattern[str]) -> _Distinct:
    distinct = _Distinct.of(problems.table.column(column))
    distinct.check(problems, column, [not v for v in distinct.values], "is empty")
    reason = "holds a comma, quote" + (", colon" if ":" in pattern.pattern else "")
    bad = [pattern.search(v) is not None for v in distinct.values]
    distinct.check(problems, column, bad, reason + " or line break")
    return distinct


def _amount(problems: _Problems, column: str) -> None:
    text = problems.table.column(column)
    number = pc.match_substring_regex(text, _NUMBER)
    negative = pc.and_(
        pc.starts_with(text, "-"), pc.match_substring_regex(text, "^-" + _NUMBER[1:])
    )
    problems.mask(column, negative, "is negative")
    problems.mask(column, pc.invert(pc.or_(number, negative)), "is not a decimal number")


def _floats(text: pa.ChunkedArray) -> FloatArray:
    return np.asarray(pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def _seconds(
    problems: _Problems, column: str, shape: str, fmt: str, width: int, day_at: int, what: str
) -> tuple[pa.ChunkedArray, IntArray]:
    """Local seconds since 1970 of the first ``width`` characters, which must read by ``fmt``
    and keep their day (the parser rolls 02-30 over to 03-02); ``shape`` is the full pattern."""
    text = problems.table.column(column)
    local = pc.utf8_slice_codeunits(text, 0, width)
    stamp = pc.strptime(local, format=fmt, unit="s", error_is_null=True)
    day = pc.utf8_lpad(pc.cast(pc.day(stamp), pa.string()), 2, "0")
    wrong = pc.or_kleene(
        pc.invert(pc.match_substring_regex(text, shape)),
        pc.or_kleene(
            pc.is_null(stamp), pc.not_equal(pc.utf8_slice_codeunits(text, day_at, day_at + 2), day)
        ),
    )
    problems.mask(column, pc.fill_null(wrong, True), f"is not a time {what}")
    seconds = np.asarray(
        pc.fill_null(stamp.cast(pa.int64()), 0).to_numpy(zero_copy_only=False), dtype=np.int64
    )
    return text, seconds


def _rates_of(
    problems: _Problems, column: str, codes: _Distinct, iso: list[str], rates: dict[str, float]
) -> FloatArray:
    """Each row's rate (units per base) by its currency code ``iso[code]``."""
    rate = [rates.get(code, math.nan) for code in iso]
    codes.check(problems, column, [math.isnan(r) for r in rate], "has no exchange rate")
    return np.asarray(rate, dtype=np.float64)[codes.codes]


# ------------------------------------------------------------------------------ layouts


def _riskprop(path: Path, table: pa.Table, rates: dict[str, float], report: str) -> RawTransactions:
    problems = _Problems(path, table, {})
    tx = table.column("tx_id")
    problems.mask("tx_id", pc.equal(pc.binary_length(tx), 0), "is empty")
    problems.mask(
        "tx_id", pc.match_substring_regex(tx, _BAD_ID.pattern), "holds a comma, quote or line break"
    )
    tx_codes = np.asarray(
        pc.dictionary_encode(tx.combine_chunks()).indices.to_numpy(zero_copy_only=False),
        dtype=np.int64,
    )
    _, first_rows = np.unique(tx_codes, return_index=True)
    if len(first_rows) != len(tx_codes):
        repeated = np.arange(len(tx_codes)) != first_rows[tx_codes]
        problems.mask("tx_id", repeated, "is not unique (an earlier row has it)")

    text, local = _seconds(
        problems,
        "timestamp",
        _ISO_TIME,
        "%Y-%m-%dT%H:%M:%S",
        19,
        8,
        "YYYY-MM-DDTHH:MM:SS with Z or an offset +HH:MM",
    )
    zone = pc.utf8_slice_codeunits(text, 19, 25)
    accounts = {c: _ids(problems, c, _BAD_ID) for c in ("source", "target")}
    banks = {c: _ids(problems, c, _BAD_ID) for c in ("source_bank", "target_bank")}
    _amount(problems, "amount")

    currency = _Distinct.of(table.column("currency"))
    iso = [v.upper() for v in currency.values]
    currency.check(
        problems,
        "currency",
        [_CURRENCY.fullmatch(v) is None for v in iso],
        "is not an ISO 4217 code",
    )
    kind = _Distinct.of(table.column("type"))
    channel = _Distinct.of(table.column("channel"))
    countries = {c: _Distinct.of(table.column(c)) for c in ("source_country", "target_country")}
    for column, distinct in countries.items():
        bad = [bool(v) and _COUNTRY.fullmatch(v.upper()) is None for v in distinct.values]
        distinct.check(problems, column, bad, "is not an ISO 3166 alpha-2 code (or empty)")
    status = _Distinct.of(table.column("status"))
    status.check(
        problems,
        "status",
        [v.lower() not in STATUSES for v in status.values],
        f"is not one of {', '.join(STATUSES)}",
    )
    problems.raise_first()

    # shapes are checked: the zone is Z or +HH:MM
    plain = pc.if_else(pc.equal(zone, "Z"), "+00:00", zone)
    hours = np.asarray(pc.cast(pc.utf8_slice_codeunits(plain, 1, 3), pa.int32()), dtype=np.int32)
    minutes = np.asarray(pc.cast(pc.utf8_slice_codeunits(plain, 4, 6), pa.int32()), dtype=np.int32)
    sign = np.where(np.asarray(pc.starts_with(plain, "-"), dtype=bool), -1, 1).astype(np.int32)
    offset = (sign * (hours * 3600 + minutes * 60)).astype(np.int32)
    problems.mask(
        "timestamp",
        (minutes >= 60) | (np.abs(offset) > _MAX_OFFSET),
        "has an offset beyond +-18:00 or minutes over 59",
    )
    original = _floats(table.column("amount"))
    problems.mask("amount", ~np.isfinite(original), "is too large")
    rate = _rates_of(problems, "currency", currency, iso, rates)
    problems.raise_first()

    return RawTransactions(
        path=path,
        line=_lines(path, table.num_rows),
        tx_id=np.asarray(tx.to_numpy(zero_copy_only=False), dtype=object),
        time=local - offset.astype(np.int64),
        utc_offset=offset,
        source=accounts["source"].objects(),
        source_bank=banks["source_bank"].objects(),
        target=accounts["target"].objects(),
        target_bank=banks["target_bank"].objects(),
        amount=original / rate * rates[report],
        currency=currency.objects(iso),
        original_amount=original,
        kind=kind.objects([v.lower() for v in kind.values]),
        channel=channel.objects([v.lower() for v in channel.values]),
        source_country=countries["source_country"].objects(
            [v.upper() for v in countries["source_country"].values]
        ),
        target_country=countries["target_country"].objects(
            [v.upper() for v in countries["target_country"].values]
        ),
        status=status.objects([v.lower() for v in status.values]),
        label=None,
    )


def _amlworld(
    path: Path, table: pa.Table, rates: dict[str, float], report: str, labelled: bool
) -> RawTransactions:
    problems = _Problems(path, table, _AMLWORLD_FIELD)
    _, local = _seconds(
        problems, "timestamp", _AMLWORLD_TIME, "%Y/%m/%d %H:%M", 16, 8, "YYYY/MM/DD HH:MM"
    )
    banks = {c: _ids(problems, c, _BAD_BANK) for c in ("from_bank", "to_bank")}
    for column in ("from_account", "to_account"):
        _ids(problems, column, _BAD_ID)
    _amount(problems, "amount_paid")
    currency = _Distinct.of(table.column("payment_currency"))
    iso = [AMLWORLD_CURRENCIES.get(v, "") for v in currency.values]
    currency.check(
        problems,
        "payment_currency",
        [not code for code in iso],
        f"is not an AMLworld currency ({', '.join(AMLWORLD_CURRENCIES)})",
    )
    label: BoolArray | None = None
    if labelled:
        flag = table.column("is_laundering")
        problems.mask(
            "is_laundering", pc.invert(pc.is_in(flag, pa.array(["0", "1"]))), "is not 0 or 1"
        )
        label = np.asarray(pc.equal(flag, "1").to_numpy(zero_copy_only=False), dtype=bool)
    problems.raise_first()

    original = _floats(table.column("amount_paid"))
    problems.mask("amount_paid", ~np.isfinite(original), "is too large")
    rate = _rates_of(problems, "payment_currency", currency, iso, rates)
    problems.raise_first()

    def account(bank: str, number: str) -> ObjectArray:
        joined = pc.binary_join_element_wise(table.column(bank), table.column(number), ":")
        return _Distinct.of(joined).objects()

    line = _lines(path, table.num_rows)
    kind = _Distinct.of(table.column("payment_format"))
    n = table.num_rows
    empty = np.empty(1, dtype=object)
    empty[0] = ""
    completed = np.empty(1, dtype=object)
    completed[0] = "completed"
    nothing: ObjectArray = empty[np.zeros(n, dtype=np.int64)]
    return RawTransactions(
        path=path,
        line=line,
        tx_id=np.asarray(
            pc.cast(pa.array(line), pa.string()).to_numpy(zero_copy_only=False), dtype=object
        ),
        time=local,
        utc_offset=np.zeros(n, dtype=np.int32),
        source=account("from_bank", "from_account"),
        source_bank=banks["from_bank"].objects(),
        target=account("to_bank", "to_account"),
        target_bank=banks["to_bank"].objects(),
        amount=original / rate * rates[report],
        currency=currency.objects(iso),
        original_amount=original,
        kind=kind.objects([v.lower() for v in kind.values]),
        channel=nothing,
        source_country=nothing,
        target_country=nothing,
        status=completed[np.zeros(n, dtype=np.int64)],
        label=label,
    )
