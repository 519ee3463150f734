"""Records: a streamed record is checked and normalised exactly as the batch reader does a row,
and every bad record gets one reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from riskprop.errors import ConfigError
from riskprop.lab.rawgen import generate_raw
from riskprop.scoring.raw import RISKPROP_HEADER, read_raw
from riskprop.stream.records import DeadLetter, RecordRules, Transaction, parse

ALICE = RecordRules(bank="alice")
GOOD = {
    "tx_id": "t1",
    "timestamp": "2026-11-29T23:15:00+01:00",
    "source": "a1",
    "source_bank": "alice",
    "target": "b1",
    "target_bank": "bob",
    "amount": "1250.5",
    "currency": "eur",
    "type": "Wire",
    "channel": "Online",
    "source_country": "de",
    "target_country": "",
    "status": "Completed",
}


def csv_body(fields: dict[str, str]) -> bytes:
    return ",".join(fields[name] for name in RISKPROP_HEADER).encode()


def test_json_and_csv_records_read_alike() -> None:
    from_json = parse(json.dumps(GOOD).encode(), ALICE)
    from_csv = parse(csv_body(GOOD), ALICE)
    assert isinstance(from_json, Transaction)
    assert from_json == from_csv
    assert from_json.time == int(datetime(2026, 11, 29, 22, 15, tzinfo=UTC).timestamp())
    assert from_json.utc_offset == 3600
    assert (from_json.currency, from_json.kind, from_json.status) == ("EUR", "wire", "completed")
    assert from_json.amount == pytest.approx(1250.5 / 0.85)


def test_a_json_amount_may_be_a_number() -> None:
    record = parse(json.dumps({**GOOD, "amount": 12.5}).encode(), ALICE)
    assert isinstance(record, Transaction)
    assert record.original_amount == 12.5


def test_records_equal_the_batch_readers_rows(tmp_path: Path) -> None:
    """Every row of a generated raw file, streamed as a CSV record, is the reader's row."""
    generate_raw(tmp_path / "gen", banks=["alice", "bob"], accounts=240, transactions=600, days=4)
    path = tmp_path / "gen" / "alice" / "raw.csv"
    raw = read_raw(path)
    lines = path.read_bytes().splitlines()[1:]
    records = [parse(line, ALICE) for line in lines]
    assert all(isinstance(r, Transaction) for r in records)
    tx = [r for r in records if isinstance(r, Transaction)]
    assert [r.tx_id for r in tx] == raw.tx_id.tolist()
    assert np.array_equal([r.time for r in tx], raw.time)
    assert np.array_equal([r.utc_offset for r in tx], raw.utc_offset)
    assert np.array_equal([r.amount for r in tx], raw.amount)
    for column in ("source", "target", "kind", "currency", "status", "target_country"):
        assert [getattr(r, column) for r in tx] == getattr(raw, column).tolist(), column
    # and back: a record's fields parse to the same transaction
    assert all(parse(csv_body(r.as_fields()), ALICE) == r for r in tx[:50])


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xff\xfe", "record is not UTF-8"),
        (b"{not json", "record is not valid JSON"),
        (b"", "record is empty"),
        (b"only-one-field", "record has 1 field, expected 13"),
        (b"a,b,c", "record has 3 fields, expected 13"),
        (json.dumps([1]).encode(), "record is not a JSON object"),
        (json.dumps({**GOOD, "extra": "1"}).encode(), "record has the unknown field 'extra'"),
        (
            json.dumps({k: v for k, v in GOOD.items() if k != "status"}).encode(),
            "record lacks the field status",
        ),
        (json.dumps({**GOOD, "source": 7}).encode(), "source 7 is not a string"),
        (csv_body({**GOOD, "tx_id": ""}), "tx_id '' is empty"),
        (
            csv_body({**GOOD, "timestamp": "2026-02-30T00:00:00Z"}),
            "timestamp '2026-02-30T00:00:00Z' is not a time YYYY-MM-DDTHH:MM:SS with Z or an "
            "offset +HH:MM",
        ),
        (
            csv_body({**GOOD, "timestamp": "2026-01-30T00:00:00+19:00"}),
            "timestamp '2026-01-30T00:00:00+19:00' has an offset beyond +-18:00 or minutes over 59",
        ),
        (csv_body({**GOOD, "amount": "-5"}), "amount '-5' is negative"),
        (csv_body({**GOOD, "amount": "5,0"}), "record has 14 fields, expected 13"),
        (csv_body({**GOOD, "amount": "1e999"}), "amount '1e999' is too large"),
        (csv_body({**GOOD, "currency": "EURO"}), "currency 'EURO' is not an ISO 4217 code"),
        (csv_body({**GOOD, "currency": "XYZ"}), "currency 'XYZ' has no exchange rate"),
        (
            csv_body({**GOOD, "target_country": "GBR"}),
            "target_country 'GBR' is not an ISO 3166 alpha-2 code (or empty)",
        ),
        (
            csv_body({**GOOD, "status": "done"}),
            "status 'done' is not one of completed, failed, reversed",
        ),
        (
            csv_body({**GOOD, "source_bank": "carol"}),
            "record names neither source_bank nor target_bank as this node's bank 'alice'",
        ),
    ],
)
def test_each_bad_record_has_its_reason(body: bytes, reason: str) -> None:
    assert parse(body, ALICE) == DeadLetter(reason)


def test_the_first_bad_field_in_header_order_is_named() -> None:
    body = csv_body({**GOOD, "status": "x", "amount": "-1", "source": ""})
    assert parse(body, ALICE) == DeadLetter("source '' is empty")


def test_unknown_accounts_are_dead_when_the_node_knows_its_accounts() -> None:
    known = RecordRules(bank="alice", accounts={"a2"})
    assert parse(csv_body(GOOD), known) == DeadLetter(
        "account 'a1' is not a known account of bank 'alice'"
    )
    assert isinstance(parse(csv_body({**GOOD, "source": "a2"}), known), Transaction)
    # a transfer between two own accounts is taken when either is known
    both = {**GOOD, "target": "a2", "target_bank": "alice"}
    assert isinstance(parse(csv_body(both), known), Transaction)


def test_a_reporting_currency_without_a_rate_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="reporting currency 'XYZ'"):
        RecordRules(bank="alice", currency="XYZ")
