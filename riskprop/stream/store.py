"""The node's durable store of streamed transactions: one SQLite file in WAL mode.

Theory of operation. A consumer hands :meth:`PeriodStore.put` a batch of deliveries, each a
broker id (the stream entry id or Kafka topic:partition:offset) with its parsed record, and
acknowledges the batch to the broker only after ``put`` returns, i.e. after the batch's single
SQLite transaction has committed with ``synchronous=FULL`` (in WAL mode a commit is then on disk
when it returns; ``NORMAL`` could lose the last commits on a power cut, after the broker was told
they were safe). Delivery is at least once: a consumer that dies between the commit and the
acknowledgement gets the batch again. It is made effectively exactly once by the keys:

- ``tx(tx_id PRIMARY KEY)``: a transaction id is stored once; a re-delivered or re-sent one is
  counted as a duplicate and changes nothing (``ON CONFLICT (tx_id) DO NOTHING``);
- ``dead(delivery PRIMARY KEY)``: a dead-lettered record is kept once per broker id with its
  reason and body, so the store's counts are exact even though the dead-letter *stream* may get
  a re-delivered record twice.

Periods. A transaction's ``event_period`` is ``(time - origin) // length``. Periods are
closed by :meth:`PeriodStore.close_period` (the service's schedule); a transaction that arrives
for a closed period is **late**: it is stored in the first period not closed at or after its
own (``period``), keeps its ``event_period``, and is counted as late. So a closed period's
content never changes, and nothing that arrives is dropped.

Outbox. Messages about newly stored transactions (their alerts) are queued in the ``outbox``
table in the batch's own transaction, published after the commit and then marked sent; what a
crash left unsent is published on the next start. A re-delivered batch is all duplicates and
queues nothing, so a message is published at least once and made at most once per key.

The store never decides what is acknowledged: it only says what it committed (:class:`Put`).
Synchronous (``sqlite3``); the service runs it in a worker thread.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from operator import attrgetter
from pathlib import Path
from typing import Final

from riskprop.errors import ConfigError
from riskprop.stream.records import DeadLetter, Transaction

_TX_COLUMNS: Final = tuple(f.name for f in fields(Transaction))
_REAL: Final = {"amount", "original_amount"}
_INTEGER: Final = {"time", "utc_offset"}
_TX_SQL: Final = ", ".join(
    f"{c} {'REAL' if c in _REAL else 'INTEGER' if c in _INTEGER else 'TEXT'} NOT NULL"
    for c in _TX_COLUMNS[1:]
)
# rowid order is arrival order: SQLite's rowid only grows (purge deletes old periods' rows,
# never the newest)
_SCHEMA: Final = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS tx (
    tx_id TEXT PRIMARY KEY, {_TX_SQL},
    period INTEGER NOT NULL, event_period INTEGER NOT NULL, delivery TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tx_period ON tx (period);
CREATE TABLE IF NOT EXISTS dead (
    delivery TEXT PRIMARY KEY, reason TEXT NOT NULL, body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS closed (period INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS outbox (
    key TEXT PRIMARY KEY, payload BLOB NOT NULL, sent INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
# only a repeated tx_id is ignored (INSERT OR IGNORE would skip a NOT NULL failure silently)
_INSERT_TX: Final = (
    f"INSERT INTO tx VALUES ({', '.join('?' * (len(_TX_COLUMNS) + 3))})"
    " ON CONFLICT (tx_id) DO NOTHING"
)
_INSERT_DEAD: Final = "INSERT INTO dead VALUES (?, ?, ?) ON CONFLICT (delivery) DO NOTHING"
# which of a batch's ids (a JSON array: one parameter, however long the batch) are stored
_HELD: Final = "SELECT tx_id FROM tx WHERE tx_id IN (SELECT value FROM json_each(?))"
_ROW: Final = attrgetter(*_TX_COLUMNS)
COUNTERS: Final = ("stored", "duplicates", "dead", "late")


@dataclass(frozen=True)
class Put:
    """What one committed batch did: transactions stored (new ids), duplicates (ids already
    stored), dead letters newly recorded, late ones among the stored, the dead letters of the
    batch (broker id, reason, body) for the dead-letter stream, re-delivered ones included, and
    the outbox messages queued for the newly stored transactions."""

    stored: int
    duplicates: int
    dead: int
    late: int
    dead_letters: tuple[tuple[str, str, bytes], ...]
    outbox: tuple[tuple[str, bytes], ...] = ()


#: Messages (key, payload) to publish about newly stored transactions, e.g. their alerts.
Outbox = Callable[[list[Transaction]], list[tuple[str, bytes]]]


#: One delivery for :meth:`PeriodStore.put`: broker id, parsed record, the body as received.
Entry = tuple[str, Transaction | DeadLetter, bytes]


class PeriodStore:
    """Streamed transactions by period in ``path`` (created when missing). ``origin`` (UTC
    seconds) and ``length`` (seconds) fix the periods; a store keeps the ones it was made with
    and refuses others (ConfigError), since they decide every stored ``period``."""

    def __init__(self, path: Path, *, origin: int, length: int) -> None:
        if length <= 0:
            raise ConfigError(f"period length must be positive, got {length} s")
        self.path = path
        # the bank's transactions: owner-only folder and file (SQLite gives its -wal and -shm
        # files the database file's mode)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.touch(mode=0o600, exist_ok=True)
        os.chmod(path, 0o600)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for key, value in (("origin", origin), ("length", length)):
                self._db.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (key, value))
                (kept,) = self._db.execute(
                    "SELECT value FROM meta WHERE key = ?", (key,)
                ).fetchone()
                if kept != value:
                    raise ConfigError(
                        f"{path}: the store's period {key} is {kept}, not {value}; "
                        "use a new store for other periods"
                    )
            self._db.executemany(
                "INSERT OR IGNORE INTO counters VALUES (?, 0)", [(c,) for c in COUNTERS]
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            self._db.close()
            raise
        self.origin, self.length = origin, length

    def close(self) -> None:
        self._db.close()

    def event_period(self, time: int) -> int:
        """The period a transaction at ``time`` falls in by its own time (before the late
        rule moves it past closed periods)."""
        return (time - self.origin) // self.length

    def put(self, entries: Sequence[Entry], outbox: Outbox | None = None) -> Put:
        """Store a batch in one transaction, committed when this returns (see the module doc).
        ``outbox`` makes the messages about the newly stored transactions (never about
        duplicates), queued in the same transaction: see :meth:`unsent`.

        By columns: one query finds which of the batch's ids the store already holds, and the
        new rows (a repeated id within the batch: its first) and the dead letters are each
        inserted by one ``executemany``; the conflict clauses stay, and the insert's row count
        must equal the rows found new (else the transaction is rolled back)."""
        db = self._db
        letters = [(d, r.reason, body) for d, r, body in entries if isinstance(r, DeadLetter)]
        records = [(d, r) for d, r, _ in entries if not isinstance(r, DeadLetter)]
        messages: list[tuple[str, bytes]] = []
        db.execute("BEGIN IMMEDIATE")
        try:
            # inside the write transaction: a period closed by another connection is seen
            closed = {p for (p,) in db.execute("SELECT period FROM closed")}
            ids = json.dumps([r.tx_id for _, r in records])
            seen = {i for (i,) in db.execute(_HELD, (ids,))}
            new: list[Transaction] = []
            rows: list[tuple[object, ...]] = []
            late = 0
            for delivery, record in records:
                if record.tx_id in seen:
                    continue
                seen.add(record.tx_id)
                event = period = self.event_period(record.time)
                while period in closed:
                    period += 1
                late += period != event
                new.append(record)
                rows.append((*_ROW(record), period, event, delivery))
            inserted = db.executemany(_INSERT_TX, rows).rowcount if rows else 0
            if inserted != len(rows):
                raise RuntimeError(f"stored {inserted} of {len(rows)} new transactions")
            dead = db.executemany(_INSERT_DEAD, letters).rowcount if letters else 0
            if outbox is not None and new:
                messages = outbox(new)
                db.executemany(
                    "INSERT INTO outbox (key, payload) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                    messages,
                )
            stored, duplicates = len(rows), len(records) - len(rows)
            db.executemany(
                "UPDATE counters SET value = value + ? WHERE name = ?",
                [(v, n) for n, v in zip(COUNTERS, (stored, duplicates, dead, late), strict=True)],
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return Put(stored, duplicates, dead, late, tuple(letters), tuple(messages))

    def unsent(self) -> list[tuple[str, bytes]]:
        """Outbox messages not yet marked sent, in the order they were queued."""
        query = "SELECT key, payload FROM outbox WHERE sent = 0 ORDER BY rowid"
        return self._db.execute(query).fetchall()

    def mark_sent(self, keys: Sequence[str]) -> None:
        """Mark outbox messages sent, in one transaction (one commit, not one per key)."""
        if not keys:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute(
                "UPDATE outbox SET sent = 1 WHERE key IN (SELECT value FROM json_each(?))",
                (json.dumps(list(keys)),),
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def close_period(self, period: int) -> None:
        """Close ``period``: from now on a transaction for it (or for an earlier closed one
        followed by it) is late and goes into the next period that is open."""
        self._db.execute("INSERT OR IGNORE INTO closed VALUES (?)", (period,))

    def purge(self, before: int) -> int:
        """Delete the transactions of closed periods before ``before`` and the outbox's sent
        messages, in one transaction; returns the transactions deleted. Their ids are
        forgotten: a record of theirs delivered again (long after it was acknowledged, so only
        if a producer sends it again) is stored as a new, late transaction. SQLite reuses the
        freed pages, so the file stops growing rather than shrinks."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            cursor = db.execute(
                "DELETE FROM tx WHERE period < ? AND period IN (SELECT period FROM closed)",
                (before,),
            )
            deleted = cursor.rowcount
            db.execute("DELETE FROM outbox WHERE sent = 1")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return deleted

    def closed(self) -> list[int]:
        return [p for (p,) in self._db.execute("SELECT period FROM closed ORDER BY period")]

    def counts(self) -> dict[str, int]:
        """Totals since the store was made: stored, duplicates, dead, late."""
        return dict(self._db.execute("SELECT name, value FROM counters").fetchall())

    def transactions(self, period: int | None = None) -> Iterator[Transaction]:
        """The stored transactions (of ``period`` when given) in arrival order."""
        where, args = ("WHERE period = ?", (period,)) if period is not None else ("", ())
        query = f"SELECT {', '.join(_TX_COLUMNS)} FROM tx {where} ORDER BY rowid"
        for row in self._db.execute(query, args):
            yield Transaction(*row)

    def transactions_with_event(self, period: int) -> Iterator[tuple[Transaction, int]]:
        """``period``'s stored transactions with each one's event period, in arrival order
        (a late one's event period is an earlier, closed one)."""
        query = (
            f"SELECT {', '.join(_TX_COLUMNS)}, event_period FROM tx WHERE period = ? ORDER BY rowid"
        )
        for row in self._db.execute(query, (period,)):
            yield Transaction(*row[:-1]), row[-1]

    def latest_time(self) -> int | None:
        """The latest transaction time stored (UTC seconds), None when the store is empty."""
        (latest,) = self._db.execute("SELECT max(time) FROM tx").fetchone()
        return None if latest is None else int(latest)

    def transactions_since(self, time: int) -> Iterator[Transaction]:
        """The stored transactions at ``time`` (UTC seconds) or later, in time order, equal
        times in arrival order (one scan of the table: for rebuilding state on start)."""
        query = f"SELECT {', '.join(_TX_COLUMNS)} FROM tx WHERE time >= ? ORDER BY time, rowid"
        for row in self._db.execute(query, (time,)):
            yield Transaction(*row)

    def periods(self) -> dict[int, int]:
        """Stored transactions per period."""
        query = "SELECT period, count(*) FROM tx GROUP BY period ORDER BY period"
        return dict(self._db.execute(query).fetchall())

    def dead_letters(self) -> list[tuple[str, str]]:
        """(broker id, reason) of every dead-lettered record, in arrival order."""
        return self._db.execute("SELECT delivery, reason FROM dead ORDER BY rowid").fetchall()
