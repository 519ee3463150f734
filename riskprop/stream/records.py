"""One streamed transaction record, checked: a :class:`Transaction` or a dead-letter reason.

A record is riskprop's raw layout (``riskprop.scoring.raw``, the ``riskprop`` header) as one
message body, either

- **JSON**: an object whose keys are exactly the header's names, each value a string (``amount``
  may also be a JSON number); or
- **CSV**: one row of the header's 13 fields in header order, CSV-quoted where needed, no header
  line.

Told apart by the first non-blank character (``{`` or ``[``: JSON). The checks are the batch
reader's, one record at a time: a record the stream accepts is one that
:func:`~riskprop.scoring.raw.read_raw` accepts in a file, normalised the same way (currency and
countries upper-cased; kind, channel and status lower-cased; ``time`` in UTC seconds,
``utc_offset`` seconds east of UTC; ``amount`` in the reporting currency). Two checks only a
stream has: the record must name the node's bank on at least one side (**wrong bank**) and,
when the node knows its accounts, an own side's account must be one of them (**unknown
account**). Uniqueness of ``tx_id`` is the store's (a repeated id is a re-delivery, not an
error).

A bad record is never an exception: :func:`parse` returns a :class:`DeadLetter` whose ``reason``
is one line, ``<field> <value> <problem>`` as the batch reader words it (the first bad field in
header order), or a record-level reason (``not UTF-8``, ``not a JSON object``, ``has 12 fields,
expected 13``...). :func:`parse_batch` is ``parse`` over a batch, by columns for the common
case (the consumer's path). Pure: no I/O.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, TypeVar

import numpy as np
import numpy.typing as npt

from riskprop.errors import ConfigError
from riskprop.scoring.raw import DEFAULT_RATES, RISKPROP_HEADER, STATUSES

_NUMBER: Final = re.compile(r"([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
_TIME: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(Z|([+-])([0-9]{2}):([0-9]{2}))"
)
_MAX_OFFSET: Final = 18 * 3600
_BAD_ID: Final = re.compile(r'[,"\r\n]')
_CURRENCY: Final = re.compile(r"[A-Z]{3}")
_COUNTRY: Final = re.compile(r"[A-Z]{2}")
_TIME_SHAPE: Final = "YYYY-MM-DDTHH:MM:SS with Z or an offset +HH:MM"


@dataclass(frozen=True, slots=True)
class Transaction:
    """One checked transaction, normalised as the batch reader normalises a row."""

    tx_id: str
    time: int
    utc_offset: int
    source: str
    source_bank: str
    target: str
    target_bank: str
    amount: float
    currency: str
    original_amount: float
    kind: str
    channel: str
    source_country: str
    target_country: str
    status: str

    def as_fields(self) -> dict[str, str]:
        """The record in riskprop's raw layout (header name -> field), the timestamp in its
        own zone, as a file would hold it (``parse`` of these fields gives it back)."""
        sign = "-" if self.utc_offset < 0 else "+"
        minutes = abs(self.utc_offset) // 60
        local = datetime.fromtimestamp(self.time + self.utc_offset, UTC)
        stamp = f"{local:%Y-%m-%dT%H:%M:%S}{sign}{minutes // 60:02d}:{minutes % 60:02d}"
        return {
            "tx_id": self.tx_id,
            "timestamp": stamp,
            "source": self.source,
            "source_bank": self.source_bank,
            "target": self.target,
            "target_bank": self.target_bank,
            "amount": repr(self.original_amount),
            "currency": self.currency,
            "type": self.kind,
            "channel": self.channel,
            "source_country": self.source_country,
            "target_country": self.target_country,
            "status": self.status,
        }


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record the node cannot take, with the one-line reason it is dead-lettered."""

    reason: str


@dataclass(frozen=True)
class RecordRules:
    """What a record is checked against: the node's ``bank``, its known ``accounts`` (None: any
    account of the bank is taken), exchange ``rates`` (units per one unit of a common base, as
    the batch reader's) and the reporting ``currency``."""

    bank: str
    accounts: Collection[str] | None = None
    rates: Mapping[str, float] = field(default_factory=lambda: DEFAULT_RATES)
    currency: str = "USD"

    def __post_init__(self) -> None:
        if self.currency.upper() not in self.rates:
            raise ConfigError(f"reporting currency {self.currency!r} has no exchange rate")


class _Bad(Exception):  # noqa: N818 (internal: always turned into a DeadLetter)
    pass


def parse(body: bytes, rules: RecordRules) -> Transaction | DeadLetter:
    """The transaction in ``body`` (JSON or CSV, see the module doc), or why it is dead."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return DeadLetter("record is not UTF-8")
    if not text.strip():
        return DeadLetter("record is empty")
    try:
        json_like = text.lstrip().startswith(("{", "["))
        fields = _json_fields(text) if json_like else _csv_fields(text)
        return _transaction(fields, rules)
    except _Bad as bad:
        return DeadLetter(str(bad))


def _json_fields(text: str) -> dict[str, str]:
    try:
        data = json.loads(text)
    except ValueError:
        raise _Bad("record is not valid JSON") from None
    if not isinstance(data, dict):
        raise _Bad("record is not a JSON object")
    missing = [name for name in RISKPROP_HEADER if name not in data]
    if missing:
        raise _Bad(f"record lacks the field {missing[0]}")
    extra = sorted(set(data) - set(RISKPROP_HEADER))
    if extra:
        raise _Bad(f"record has the unknown field {extra[0]!r}")
    fields: dict[str, str] = {}
    for name in RISKPROP_HEADER:
        value = data[name]
        if name == "amount" and isinstance(value, int | float) and not isinstance(value, bool):
            value = repr(value)
        if not isinstance(value, str):
            raise _Bad(f"{name} {value!r} is not a string")
        fields[name] = value
    return fields


def _csv_fields(text: str) -> dict[str, str]:
    line = text[:-1] if text.endswith("\n") else text
    line = line[:-1] if line.endswith("\r") else line
    try:
        rows = list(csv.reader([line] if "\n" not in line else line.splitlines(keepends=True)))
    except csv.Error as error:
        raise _Bad(f"record is not one CSV row ({error})") from None
    if len(rows) != 1:
        raise _Bad(f"record holds {len(rows)} CSV rows, expected 1")
    row = rows[0]
    if len(row) != len(RISKPROP_HEADER):
        plural = "" if len(row) == 1 else "s"
        raise _Bad(f"record has {len(row)} field{plural}, expected {len(RISKPROP_HEADER)}")
    return dict(zip(RISKPROP_HEADER, row, strict=True))


def _id(name: str, value: str) -> str:
    if not value:
        raise _Bad(f"{name} {value!r} is empty")
    if _BAD_ID.search(value):
        raise _Bad(f"{name} {value!r} holds a comma, quote or line break")
    return value


def _time(value: str) -> tuple[int, int]:
    """(UTC seconds, offset seconds east) of an ISO 8601 time with its zone (proleptic
    Gregorian from year 0000, as the batch reader)."""
    match = _TIME.fullmatch(value)
    if match is None:
        raise _Bad(f"timestamp {value!r} is not a time {_TIME_SHAPE}")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    days = _month_days(year, month) if 1 <= month <= 12 else 0
    if not (1 <= day <= days and hour < 24 and minute < 60 and second < 60):
        raise _Bad(f"timestamp {value!r} is not a time {_TIME_SHAPE}")
    offset = 0
    if match.group(7) != "Z":
        hours, minutes = int(match.group(9)), int(match.group(10))
        offset = (-1 if match.group(8) == "-" else 1) * (hours * 3600 + minutes * 60)
        if minutes >= 60 or abs(offset) > _MAX_OFFSET:
            raise _Bad(f"timestamp {value!r} has an offset beyond +-18:00 or minutes over 59")
    local = _civil_days(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
    return local - offset, offset


_Int = TypeVar("_Int", int, npt.NDArray[np.int64])
_DAYS: Final = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _month_days(year: _Int, month: _Int) -> _Int:
    """Days in the month (1-12) of the proleptic Gregorian calendar; ints or arrays alike."""
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    if isinstance(month, int):
        return _DAYS[month - 1] + int(month == 2 and bool(leap))
    out: npt.NDArray[np.int64] = np.asarray(_DAYS, dtype=np.int64)[month - 1] + (
        (month == 2) & leap
    )
    return out


def _civil_days(year: _Int, month: _Int, day: _Int) -> _Int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil, floor
    division throughout); ints or arrays alike, so both parsers compute the same numbers."""
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    days: _Int = era * 146_097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719_468
    return days


def _amount(value: str) -> float:
    if _NUMBER.fullmatch(value) is None:
        problem = "is negative" if value.startswith("-") and _NUMBER.fullmatch(value[1:]) else None
        raise _Bad(f"amount {value!r} {problem or 'is not a decimal number'}")
    amount = float(value)
    if not math.isfinite(amount):
        raise _Bad(f"amount {value!r} is too large")
    return amount


def _country(name: str, value: str) -> str:
    if value and _COUNTRY.fullmatch(value.upper()) is None:
        raise _Bad(f"{name} {value!r} is not an ISO 3166 alpha-2 code (or empty)")
    return value.upper()


def _transaction(f: Mapping[str, str], rules: RecordRules) -> Transaction:
    """Checks in header order, so the reason names the first bad field as the reader would."""
    tx_id = _id("tx_id", f["tx_id"])
    time, offset = _time(f["timestamp"])
    source = _id("source", f["source"])
    source_bank = _id("source_bank", f["source_bank"])
    target = _id("target", f["target"])
    target_bank = _id("target_bank", f["target_bank"])
    original = _amount(f["amount"])
    currency = f["currency"].upper()
    if _CURRENCY.fullmatch(currency) is None:
        raise _Bad(f"currency {f['currency']!r} is not an ISO 4217 code")
    if currency not in rules.rates:
        raise _Bad(f"currency {currency!r} has no exchange rate")
    source_country = _country("source_country", f["source_country"])
    target_country = _country("target_country", f["target_country"])
    status = f["status"].lower()
    if status not in STATUSES:
        raise _Bad(f"status {f['status']!r} is not one of {', '.join(STATUSES)}")
    own = [a for a, b in ((source, source_bank), (target, target_bank)) if b == rules.bank]
    if not own:
        raise _Bad(
            f"record names neither source_bank nor target_bank as this node's bank {rules.bank!r}"
        )
    if rules.accounts is not None and not any(a in rules.accounts for a in own):
        raise _Bad(f"account {own[0]!r} is not a known account of bank {rules.bank!r}")
    report = rules.rates[rules.currency.upper()]
    return Transaction(
        tx_id=tx_id,
        time=time,
        utc_offset=offset,
        source=source,
        source_bank=source_bank,
        target=target,
        target_bank=target_bank,
        amount=original / rules.rates[currency] * report,
        currency=currency,
        original_amount=original,
        kind=f["type"].lower(),
        channel=f["channel"].lower(),
        source_country=source_country,
        target_country=target_country,
        status=status,
    )


# ------------------------------------------------------------------------------ batches

# a plain record's bytes: ASCII, no quote, line break or NUL, not starting with blank, { or [
_PLAIN: Final = re.compile(rb'[^\x00-\x20"{\[\x7f-\xff][^"\r\n\x00\x80-\xff]*')
_FIELDS: Final = len(RISKPROP_HEADER)
_DIGITS: Final = (0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18)
_SEPARATORS: Final = ((4, ord("-")), (7, ord("-")), (10, ord("T")), (13, ord(":")), (16, ord(":")))
_ZONE_DIGITS: Final = (20, 21, 23, 24)


def parse_batch(bodies: Sequence[bytes], rules: RecordRules) -> list[Transaction | DeadLetter]:
    """``[parse(body, rules) for body in bodies]``, the common case by columns.

    A *plain* record (ASCII, exactly 12 commas, no quote, line break or NUL, not starting with
    blank, ``{`` or ``[``) is a CSV row whose fields are its comma-separated parts, so the
    plain records of the batch are split at once and checked column by column (the checks of
    :func:`parse`, as array operations or once per distinct value). Every record that is not
    plain, or fails any check, is handed to :func:`parse` itself, so a dead letter's reason is
    always the one :func:`parse` gives (a test compares the two record for record)."""
    out: list[Transaction | DeadLetter | None] = [None] * len(bodies)
    plain = [i for i, body in enumerate(bodies) if _plain(body)]
    if plain:
        good = _columns([bodies[i] for i in plain], rules)
        for i, record in zip(plain, good, strict=True):
            out[i] = record
    return [parse(bodies[i], rules) if r is None else r for i, r in enumerate(out)]


def _plain(body: bytes) -> bool:
    return body.count(b",") == _FIELDS - 1 and _PLAIN.fullmatch(body) is not None


def _columns(bodies: list[bytes], rules: RecordRules) -> list[Transaction | None]:
    """The transactions of plain records (None where any check fails: :func:`parse` says why)."""
    n = len(bodies)
    rows = [body.decode("ascii").split(",") for body in bodies]
    (tx_id, stamp, source, source_bank, target, target_bank, amount_text, currency_text,
     kind, channel, source_country_text, target_country_text, status_text) = (
        list(column) for column in zip(*rows, strict=True)
    )  # fmt: skip
    bad = np.zeros(n, dtype=bool)
    for ids in (tx_id, source, source_bank, target, target_bank):
        if "" in ids:
            bad |= np.array([not v for v in ids], dtype=bool)
    time, offset = _times(stamp, bad)
    original = np.array(
        [float(v) if _NUMBER.fullmatch(v) else math.nan for v in amount_text], dtype=np.float64
    )
    bad |= ~np.isfinite(original)
    currency = _distinct(currency_text, str.upper)
    bad |= _flags(currency, lambda c: _CURRENCY.fullmatch(c) is None or c not in rules.rates)
    source_country = _distinct(source_country_text, str.upper)
    target_country = _distinct(target_country_text, str.upper)
    for countries in (source_country, target_country):
        bad |= _flags(countries, lambda c: bool(c) and _COUNTRY.fullmatch(c) is None)
    status = _distinct(status_text, str.lower)
    bad |= _flags(status, lambda s: s not in STATUSES)
    bank, accounts = rules.bank, rules.accounts
    bad |= np.array(
        [
            bank not in (sb, tb)
            or (
                accounts is not None
                and not ((sb == bank and s in accounts) or (tb == bank and t in accounts))
            )
            for s, sb, t, tb in zip(source, source_bank, target, target_bank, strict=True)
        ],
        dtype=bool,
    )
    report = rules.rates[rules.currency.upper()]
    rate = np.array([rules.rates.get(c, 1.0) for c in currency], dtype=np.float64)
    with np.errstate(over="ignore"):  # as Python's float division: inf, no error
        amount = (original / rate * report).tolist()
    columns = (
        tx_id, time.tolist(), offset.tolist(), source, source_bank, target, target_bank, amount,
        currency, original.tolist(), _distinct(kind, str.lower), _distinct(channel, str.lower),
        source_country, target_country, status,
    )  # fmt: skip
    return [
        None if flagged else Transaction(*fields)
        for flagged, fields in zip(bad.tolist(), zip(*columns, strict=True), strict=True)
    ]


def _distinct(values: list[str], normal: Callable[[str], str]) -> list[str]:
    """``[normal(v) for v in values]``, computed once per distinct value."""
    table = {v: normal(v) for v in set(values)}
    return [table[v] for v in values]


def _flags(values: list[str], test: Callable[[str], bool]) -> npt.NDArray[np.bool_]:
    """``test`` of each value as a mask, computed once per distinct value."""
    wrong = {v for v in set(values) if test(v)}
    if not wrong:
        return np.zeros(len(values), dtype=bool)
    return np.array([v in wrong for v in values], dtype=bool)


def _times(
    stamps: list[str], bad: npt.NDArray[np.bool_]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """:func:`_time` of each stamp as arrays over the characters; ``bad`` gains the stamps it
    refuses (their values are then meaningless)."""
    n = len(stamps)
    length = np.array([len(s) for s in stamps], dtype=np.int64)
    chars = (
        np.frombuffer(np.array(stamps, dtype="S25").tobytes(), dtype=np.uint8)
        .reshape(n, 25)
        .astype(np.int64)
    )
    digit = chars - ord("0")
    zulu = (length == 20) & (chars[:, 19] == ord("Z"))
    zoned = (
        (length == 25)
        & ((chars[:, 19] == ord("+")) | (chars[:, 19] == ord("-")))
        & (chars[:, 22] == ord(":"))
    )
    ok = zulu | zoned
    for i in _DIGITS:
        ok &= (digit[:, i] >= 0) & (digit[:, i] <= 9)
    for i in _ZONE_DIGITS:
        ok &= zulu | ((digit[:, i] >= 0) & (digit[:, i] <= 9))
    for i, char in _SEPARATORS:
        ok &= chars[:, i] == char
    digit = np.where(ok[:, None], digit, 0)
    year = digit[:, 0] * 1000 + digit[:, 1] * 100 + digit[:, 2] * 10 + digit[:, 3]
    month, day, hour, minute, second, zone_hours, zone_minutes = (
        digit[:, i] * 10 + digit[:, i + 1] for i in (5, 8, 11, 14, 17, 20, 23)
    )
    month_ok = (month >= 1) & (month <= 12)
    month = np.where(month_ok, month, 1)
    ok &= month_ok & (day >= 1) & (day <= _month_days(year, month))
    ok &= (hour < 24) & (minute < 60) & (second < 60)
    sign = np.where(chars[:, 19] == ord("-"), -1, 1)
    offset = np.where(zulu, 0, sign * (zone_hours * 3600 + zone_minutes * 60))
    ok &= (zone_minutes < 60) & (np.abs(offset) <= _MAX_OFFSET)
    bad |= ~ok
    local = _civil_days(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
    return local - offset, offset
