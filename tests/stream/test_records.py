"""Records: a streamed record is checked and normalised exactly as the batch reader does a row,
and every bad record gets one reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riskprop.errors import ConfigError
from riskprop.lab.rawgen import generate_raw
from riskprop.scoring.raw import RISKPROP_HEADER, read_raw
from riskprop.stream.records import (
    DeadLetter,
    RecordRules,
    Transaction,
    parse,
    parse_batch,
)

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


BAD_RECORDS = [
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
]


@pytest.mark.parametrize(("body", "reason"), BAD_RECORDS)
def test_each_bad_record_has_its_reason(body: bytes, reason: str) -> None:
    assert parse(body, ALICE) == DeadLetter(reason)


def test_a_time_in_year_0000_is_the_batch_readers(tmp_path: Path) -> None:
    """Proleptic Gregorian, as the batch reader (``parse`` once raised on year 0000)."""
    body = csv_body({**GOOD, "timestamp": "0000-03-01T00:00:00-01:00"})
    (tmp_path / "raw.csv").write_bytes(",".join(RISKPROP_HEADER).encode() + b"\n" + body + b"\n")
    record = parse(body, ALICE)
    assert isinstance(record, Transaction)
    assert (
        record.time == read_raw(tmp_path / "raw.csv").time[0] == -62167219200 + 60 * 86_400 + 3600
    )


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


# ------------------------------------------------------------------ parse_batch == parse


def same_as_parse(bodies: list[bytes], rules: RecordRules = ALICE) -> None:
    assert parse_batch(bodies, rules) == [parse(body, rules) for body in bodies]


def test_a_batch_of_a_generated_file_parses_as_each_record(tmp_path: Path) -> None:
    generate_raw(tmp_path / "gen", banks=["alice", "bob"], accounts=240, transactions=2000, days=4)
    lines = (tmp_path / "gen" / "alice" / "raw.csv").read_bytes().splitlines()[1:]
    records = parse_batch(lines, ALICE)
    assert all(isinstance(r, Transaction) for r in records)
    same_as_parse(lines)
    own = {r.source for r in records if isinstance(r, Transaction) and r.source_bank == "alice"}
    known = RecordRules(bank="alice", accounts=set(sorted(own)[: len(own) // 2]))
    same_as_parse(lines, known)  # some dead as unknown accounts, the rest stored
    assert any(isinstance(r, DeadLetter) for r in parse_batch(lines, known))


def test_every_bad_record_in_a_batch_has_the_reason_parse_gives() -> None:
    """Each hand-made bad record, alone and among good ones, in a CSV and a JSON batch."""
    bodies = [body for body, _ in BAD_RECORDS]
    good = [csv_body({**GOOD, "tx_id": f"g{i}"}) for i in range(len(bodies))]
    mixed = [b for pair in zip(good, bodies, strict=True) for b in pair]
    same_as_parse(mixed)
    assert [r for r in parse_batch(mixed, ALICE) if isinstance(r, DeadLetter)] == [
        DeadLetter(reason) for _, reason in BAD_RECORDS
    ]
    same_as_parse([json.dumps({**GOOD, "tx_id": f"j{i}"}).encode() for i in range(3)])
    same_as_parse([])


EDGES = {
    "timestamp": [
        "0000-01-01T00:00:00Z",
        "2024-02-29T23:59:59-18:00",
        "2023-02-29T00:00:00Z",
        "1900-02-29T00:00:00Z",
        "2000-02-29T00:00:00+18:00",
        "2026-11-29T24:00:00Z",
        "2026-11-29T23:60:00Z",
        "2026-11-29T23:00:60Z",
        "2026-00-10T00:00:00Z",
        "2026-11-00T00:00:00Z",
        "2026-11-29T00:00:00+18:01",
        "2026-11-29T00:00:00+01:60",
        "2026-11-29T00:00:00+0100",
        "2026-11-29T00:00:00",
        "2026-11-29 00:00:00Z",
        "2026-11-29T00:00:00z",
        "2026-1a-29T00:00:00Z",
        "2026-11-29T00:00:00Z ",
        "\uff12026-11-29T00:00:00Z",  # a full-width digit: not ASCII
    ],
    "amount": ["1.", ".5", "1e5", "1E-3", "+1", "inf", "nan", "1_0", " 1", "", "0", "1e999", "."],
    "currency": ["usd", "Eur", "XYZ", "US", "€UR", ""],
    "source_country": ["", "us", "USA", "1A", "é"],
    "status": ["FAILED", "reversed ", "done"],
    "source": ["", " a1", "a 1", "a\t1"],
    "target_bank": ["alice", "ALICE"],
    "source_bank": ["bob", "alice"],
}


def test_edge_values_parse_alike_in_a_batch() -> None:
    bodies = [
        csv_body({**GOOD, "tx_id": f"e{i}", name: value})
        for i, (name, value) in enumerate(
            (name, value) for name, values in EDGES.items() for value in values
        )
    ]
    prefixed = [b"\x1c" + bodies[0], b" " + bodies[0], bodies[0] + b"\n", bodies[0] + b"\r\n"]
    same_as_parse(bodies + prefixed + [b"[" + bodies[0][1:], b'"t1"' + bodies[0][2:]])
    # a lone quote opens a quoted field that never closes: one field for CSV, not a split
    same_as_parse([b'"' + bodies[0][bodies[0].index(b",") :], b'"' + bodies[0]])
    same_as_parse(bodies, RecordRules(bank="alice", accounts={"b1"}))


_TEXT = st.text(alphabet=st.sampled_from('abAZ09.,-+:TZ "\n\r\t{[\x00\x1cé'), max_size=8)


@st.composite
def record(draw: st.DrawFn) -> bytes:
    fields = dict(GOOD)
    for name in draw(st.lists(st.sampled_from(RISKPROP_HEADER), max_size=3)):
        fields[name] = draw(st.one_of(st.sampled_from(EDGES.get(name, [""])), _TEXT))
    if draw(st.booleans()):
        y, mo, d = draw(st.integers(0, 9999)), draw(st.integers(0, 13)), draw(st.integers(0, 32))
        h, mi, s = draw(st.integers(0, 25)), draw(st.integers(0, 61)), draw(st.integers(0, 61))
        zone = draw(
            st.one_of(
                st.just("Z"),
                st.builds(
                    "{}{:02d}:{:02d}".format,
                    st.sampled_from("+-"),
                    st.integers(0, 19),
                    st.integers(0, 61),
                ),
            )
        )
        fields["timestamp"] = f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}{zone}"
    if draw(st.booleans()):
        fields["amount"] = draw(
            st.one_of(
                st.floats(allow_nan=False, allow_infinity=False).map(repr),
                st.from_regex(r"[0-9]{0,4}\.?[0-9]{0,3}([eE][+-]?[0-9]{1,3})?", fullmatch=True),
            )
        )
    body = json.dumps(fields).encode() if draw(st.integers(0, 9)) == 0 else csv_body(fields)
    return body


@settings(max_examples=300)
@given(st.lists(record(), max_size=12), st.booleans())
def test_parse_batch_is_parse_record_for_record(bodies: list[bytes], known: bool) -> None:
    same_as_parse(bodies, RecordRules(bank="alice", accounts={"a1", "b1"}) if known else ALICE)
