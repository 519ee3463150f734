"""The batch paths by columns keep the row-by-row semantics: the store's counts and outbox with
every kind of entry mixed in one batch, and the alert batch's columns as the reader codes them."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import numpy as np
from stream.test_store import DAY, ORIGIN, tx

from riskprop.scoring.raw import Coded
from riskprop.stream.alerts import as_raw
from riskprop.stream.records import DeadLetter, Transaction
from riskprop.stream.store import Entry, PeriodStore


def keys(transactions: list[Transaction]) -> list[tuple[str, bytes]]:
    return [(t.tx_id, t.source.encode()) for t in transactions]


def test_a_mixed_batch_counts_each_entry_once(tmp_path: Path) -> None:
    store = PeriodStore(tmp_path / "s.db", origin=ORIGIN, length=DAY)
    store.put([("1-0", tx(0), b""), ("1-1", tx(1, day=1), b"")], keys)
    store.close_period(0)
    batch: list[Entry] = [
        ("2-0", tx(0), b""),  # already stored
        ("2-1", tx(2), b""),  # new, late: period 0 is closed
        ("2-2", DeadLetter("record is empty"), b""),
        ("2-3", replace(tx(3, day=1), source="x"), b"a"),  # new
        ("2-4", tx(3, day=1), b"b"),  # the same id again in the batch: a duplicate
        ("1-0", DeadLetter("record is empty"), b""),
        ("2-2", DeadLetter("record is empty"), b""),  # the same delivery again
    ]
    put = store.put(batch, keys)
    assert (put.stored, put.duplicates, put.dead, put.late) == (2, 2, 2, 1)
    assert put.outbox == (("t2", b"a1"), ("t3", b"x"))  # new ones only, the first of a repeat
    assert [d for d, _, _ in put.dead_letters] == ["2-2", "1-0", "2-2"]
    assert store.counts() == {"stored": 4, "duplicates": 2, "dead": 2, "late": 1}
    assert store.periods() == {0: 1, 1: 3}
    assert [t.source for t in store.transactions(1)] == ["a1", "a1", "x"]
    db = sqlite3.connect(tmp_path / "s.db")
    assert db.execute("SELECT delivery FROM tx WHERE tx_id = 't3'").fetchall() == [("2-3",)]
    again = store.put(batch, keys)  # re-delivered: all duplicates, nothing queued
    assert (again.stored, again.duplicates, again.dead, again.outbox) == (0, 4, 0, ())
    assert [key for key, _ in store.unsent()] == ["t0", "t1", "t2", "t3"]


def test_a_batch_of_only_dead_letters_or_nothing(tmp_path: Path) -> None:
    store = PeriodStore(tmp_path / "s.db", origin=ORIGIN, length=DAY)
    assert store.put([]).stored == 0
    put = store.put([("1-0", DeadLetter("record is empty"), b"")], keys)
    assert (put.stored, put.dead, put.outbox) == (0, 1, ())


def test_the_alert_batch_is_coded_as_the_reader_codes_columns() -> None:
    batch = [
        replace(tx(n), source=f"a{n % 3}", target=f"b{n % 2}", kind=k, target_country=c)
        for n, (k, c) in enumerate([("wire", ""), ("cash", "DE"), ("wire", "US"), ("ach", "DE")])
    ]
    raw = as_raw(batch)
    expected = Coded.shared([[t.source for t in batch], [t.target for t in batch]])
    for got, want in zip((raw.source, raw.target), expected, strict=True):
        assert got.values.tolist() == want.values.tolist() == ["a0", "a1", "a2", "b0", "b1"]
        assert np.array_equal(got.codes, want.codes)
    assert raw.kind.values.tolist() == ["ach", "cash", "wire"]
    assert raw.kind.tolist() == ["wire", "cash", "wire", "ach"]
    assert raw.source_country.tolist() == ["US"] * 4
    assert raw.target_country.values.tolist() == ["", "DE", "US"]
    assert raw.tx_id.tolist() == ["t0", "t1", "t2", "t3"]
    assert raw.time.tolist() == [t.time for t in batch]
    assert raw.line.tolist() == [2, 3, 4, 5]
    assert as_raw([]).n == 0
