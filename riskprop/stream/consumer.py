"""The consumer: deliveries in, transactions durably stored, then acknowledged.

One :meth:`Consumer.step` is one batch: receive, parse every record
(:func:`~riskprop.stream.records.parse_batch`), store the batch in one committed transaction
(:meth:`~riskprop.stream.store.PeriodStore.put`, with the alerts of its new transactions in the
store's outbox), publish the alerts, publish its dead letters, acknowledge it. The
order is the whole guarantee: a crash before the commit loses nothing (nothing was
acknowledged, so the broker delivers the batch again); a crash after the commit and before the
acknowledgement re-delivers a batch whose transactions the store already holds, which it counts
as duplicates and otherwise ignores. Hence every transaction is stored exactly once, however
often the consumer dies. A bad record never stops the consumer: it is stored as a dead letter,
published to the dead-letter stream and acknowledged like any other.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from riskprop.stream.records import DeadLetter, RecordRules, Transaction, parse_batch
from riskprop.stream.source import Delivery, StreamSource
from riskprop.stream.store import Outbox, PeriodStore, Put

#: The youngest generation's collection threshold while a consumer runs (CPython's: 700).
GC_YOUNG: Final = 10_000


def settle_gc() -> None:
    """Make the cyclic garbage collector cheap for a long-lived consumer process.

    A batch makes many container objects a record (deliveries, transactions, alert parts),
    nearly all freed by reference counting as soon as the batch is done. At CPython's default
    thresholds the collector still ran once per ~100 records and a full collection, which
    scans every object the process holds (the windowed rules' state, the interpreter's
    modules), once per ~12,000: 11-14 us of CPU a record in all, a quarter of the consumer's,
    and pauses of about 0.1 s that the alert latency's tail shows. Here, after one full
    collection (no garbage is frozen), every object alive is moved to the permanent generation
    (:func:`gc.freeze`: still freed by reference counting, never scanned again) and the
    youngest threshold raised to :data:`GC_YOUNG` (a higher one is kept):
    under 1 us a record (``scripts/bench_stream.py``; ``docs/performance.md``). Cycles are
    still collected, later; the process-wide setting suits a node's other work as well."""
    gc.collect()
    gc.freeze()
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(young, GC_YOUNG), middle, old)


@dataclass
class Progress:
    """Running totals of this consumer's life (the store keeps the totals across lives)."""

    batches: int = 0
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    dead: int = 0
    late: int = 0
    last_id: str = ""


class Consumer:
    """Consumes ``source`` into ``store``, records checked by ``rules``, ``batch`` at a time.

    ``outbox`` (optional) makes the messages about newly stored transactions (their alerts),
    queued in the store's transaction; ``publish`` sends them (to the alert stream and log)
    after the commit; what a previous life left unsent is published first. ``committed``
    (optional) is called with each batch and what the store did with it, after the commit and
    before anything is published or acknowledged: where a test kills the process.
    ``latencies`` (optional) gets, after each publication, every published alert's end-to-end
    latency: the time it was published minus the broker's append time of its record."""

    def __init__(
        self,
        source: StreamSource,
        store: PeriodStore,
        rules: RecordRules,
        *,
        batch: int = 500,
        outbox: Outbox | None = None,
        publish: Callable[[Sequence[tuple[str, bytes]]], None] | None = None,
        committed: Callable[[list[Delivery], Put], None] | None = None,
        latencies: Callable[[list[float]], None] | None = None,
    ) -> None:
        self.source, self.store, self.rules, self.batch = source, store, rules, batch
        self.outbox, self.publish, self.committed = outbox, publish, committed
        self.latencies = latencies
        self.progress = Progress()
        self._flushed = False

    def _send(self, messages: Sequence[tuple[str, bytes]]) -> None:
        if self.publish is not None and messages:
            self.publish(messages)
            self.store.mark_sent([key for key, _ in messages])

    def step(self, wait: float = 1.0) -> Put | None:
        """One batch (None when nothing arrived within ``wait`` seconds)."""
        if not self._flushed:  # what a previous life committed and did not publish
            self._send(self.store.unsent())
            self._flushed = True
        deliveries = self.source.receive(self.batch, wait)
        if not deliveries:
            return None
        bodies = [d.body for d in deliveries]
        records = parse_batch(bodies, self.rules)
        entries = [(d.id, r, b) for d, r, b in zip(deliveries, records, bodies, strict=True)]
        put = self.store.put(entries, self.outbox)
        if self.committed is not None:
            self.committed(deliveries, put)
        self._send(put.outbox)
        if self.latencies is not None and put.outbox:
            self.latencies(_latencies(deliveries, entries, put.outbox))
        by_id = {d.id: d for d in deliveries}
        for delivery_id, reason, _ in put.dead_letters:
            self.source.dead_letter(by_id[delivery_id], reason)
        self.source.ack(deliveries)
        p = self.progress
        p.batches += 1
        p.received += len(deliveries)
        p.stored += put.stored
        p.duplicates += put.duplicates
        p.dead += put.dead
        p.late += put.late
        p.last_id = deliveries[-1].id
        return put

    def run(self, stop: Callable[[], bool], wait: float = 1.0) -> Progress:
        """Steps until ``stop()`` is true (checked between batches)."""
        while not stop():
            self.step(wait)
        return self.progress


def _latencies(
    deliveries: Sequence[Delivery],
    entries: Sequence[tuple[str, Transaction | DeadLetter, bytes]],
    published: Sequence[tuple[str, bytes]],
) -> list[float]:
    """Seconds from each published alert's record's append time (when the broker gave one)
    to now; an alert is keyed by its transaction's ``tx_id``."""
    appended = {
        record.tx_id: delivery.appended
        for delivery, (_, record, _) in zip(deliveries, entries, strict=True)
        if isinstance(record, Transaction) and delivery.appended is not None
    }
    now = time.time()
    return [now - appended[key] for key, _ in published if key in appended]
