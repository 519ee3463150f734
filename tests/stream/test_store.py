"""The period store: idempotent by transaction id, dead letters once per delivery, the late
rule, and periods fixed at creation."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from riskprop.errors import ConfigError
from riskprop.stream.records import DeadLetter, Transaction
from riskprop.stream.store import Entry, PeriodStore

DAY = 86_400
ORIGIN = 1_764_374_400  # 2025-11-29T00:00:00Z
TX = Transaction(
    tx_id="t0",
    time=ORIGIN + 10,
    utc_offset=0,
    source="a1",
    source_bank="alice",
    target="b1",
    target_bank="bob",
    amount=100.0,
    currency="USD",
    original_amount=100.0,
    kind="wire",
    channel="",
    source_country="US",
    target_country="",
    status="completed",
)


def tx(n: int, day: int = 0) -> Transaction:
    return replace(TX, tx_id=f"t{n}", time=ORIGIN + day * DAY + n)


def test_a_redelivered_batch_changes_nothing(tmp_path: Path) -> None:
    store = PeriodStore(tmp_path / "s.db", origin=ORIGIN, length=DAY)
    batch = [(f"1-{n}", tx(n, day=n % 2), b"body") for n in range(10)]
    first = store.put(batch)
    again = store.put(batch)
    assert (first.stored, first.duplicates, again.stored, again.duplicates) == (10, 0, 0, 10)
    assert store.periods() == {0: 5, 1: 5}
    assert [t.tx_id for t in store.transactions(1)] == [f"t{n}" for n in range(1, 10, 2)]
    assert next(store.transactions(0)) == tx(0)
    assert store.counts() == {"stored": 10, "duplicates": 10, "dead": 0, "late": 0}


def test_dead_letters_are_kept_once_per_delivery(tmp_path: Path) -> None:
    store = PeriodStore(tmp_path / "s.db", origin=ORIGIN, length=DAY)
    batch: list[Entry] = [("1-0", DeadLetter("record is empty"), b""), ("1-1", tx(1), b"x")]
    first, again = store.put(batch), store.put(batch)
    assert (first.dead, again.dead) == (1, 0)
    # the stream gets them each time (at least once); the store counts them once
    assert first.dead_letters == again.dead_letters == (("1-0", "record is empty", b""),)
    assert store.dead_letters() == [("1-0", "record is empty")]


def test_a_late_transaction_goes_into_the_next_open_period(tmp_path: Path) -> None:
    store = PeriodStore(tmp_path / "s.db", origin=ORIGIN, length=DAY)
    store.put([("1-0", tx(0, day=0), b""), ("1-1", tx(1, day=1), b"")])
    store.close_period(0)
    store.close_period(1)
    put = store.put([("1-2", tx(2, day=0), b""), ("1-3", tx(3, day=2), b"")])
    assert (put.stored, put.late) == (2, 1)
    assert store.periods() == {0: 1, 1: 1, 2: 2}
    assert store.closed() == [0, 1]
    db = sqlite3.connect(tmp_path / "s.db")
    assert db.execute("SELECT period, event_period FROM tx WHERE tx_id = 't2'").fetchall() == [
        (2, 0)
    ]


def test_the_store_survives_a_reopen_and_keeps_its_periods(tmp_path: Path) -> None:
    store = PeriodStore(tmp_path / "s.db", origin=ORIGIN, length=DAY)
    store.put([("1-0", tx(0), b"")])
    store.close()
    again = PeriodStore(tmp_path / "s.db", origin=ORIGIN, length=DAY)
    assert again.put([("1-0", tx(0), b"")]).duplicates == 1
    assert again.counts()["stored"] == 1
    again.close()
    with pytest.raises(ConfigError, match="period length is 86400, not 3600"):
        PeriodStore(tmp_path / "s.db", origin=ORIGIN, length=3600)


def test_a_failed_batch_stores_nothing(tmp_path: Path) -> None:
    store = PeriodStore(tmp_path / "s.db", origin=ORIGIN, length=DAY)
    bad = replace(tx(1), amount=None)  # type: ignore[arg-type]  # NOT NULL fails mid-batch
    with pytest.raises(sqlite3.IntegrityError):
        store.put([("1-0", tx(0), b""), ("1-1", bad, b"")])
    assert store.periods() == {}
    assert store.counts()["stored"] == 0
