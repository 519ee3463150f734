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
expected 13``...). Pure: no I/O.
"""

from __future__ import annotations

import calendar
import csv
import json
import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

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
    """(UTC seconds, offset seconds east) of an ISO 8601 time with its zone."""
    match = _TIME.fullmatch(value)
    if match is None:
        raise _Bad(f"timestamp {value!r} is not a time {_TIME_SHAPE}")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    days = calendar.monthrange(year, month)[1] if 1 <= month <= 12 else 0
    if not (1 <= day <= days and hour < 24 and minute < 60 and second < 60):
        raise _Bad(f"timestamp {value!r} is not a time {_TIME_SHAPE}")
    offset = 0
    if match.group(7) != "Z":
        hours, minutes = int(match.group(9)), int(match.group(10))
        offset = (-1 if match.group(8) == "-" else 1) * (hours * 3600 + minutes * 60)
        if minutes >= 60 or abs(offset) > _MAX_OFFSET:
            raise _Bad(f"timestamp {value!r} has an offset beyond +-18:00 or minutes over 59")
    local = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    return local - offset, offset


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
