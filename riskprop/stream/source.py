"""What the consumer needs from a broker: :class:`StreamSource`, one interface for every adapter.

Contract (the consumer relies on it; each adapter's tests check it against a real broker):

- :meth:`~StreamSource.receive` returns up to ``count`` deliveries, each the broker's id for the
  record (a Redis stream entry id, ``topic:partition:offset`` for Kafka) and its body, waiting
  at most ``wait`` seconds when none is ready. After a restart it first returns what was
  delivered to this consumer (or to a consumer that died) and never acknowledged, then new
  records.
- :meth:`~StreamSource.ack` tells the broker the deliveries are done; the consumer calls it only
  after the store has committed them. A delivery never acknowledged is delivered again.
- :meth:`~StreamSource.dead_letter` publishes a bad record with its reason to the dead-letter
  stream (at least once: a re-delivered bad record may appear there twice, with the same
  ``delivery`` id); the consumer calls it before acknowledging the record.
- :meth:`~StreamSource.lag` is how many records wait (None when the broker cannot say).

An :class:`AlertSink` takes the alerts (key ``tx_id``, JSON payload) the consumer publishes after
each commit: the broker's alert stream, the node's alert log, or both (:class:`Fanout`).

Synchronous: the service runs a consumer in a worker thread; the store is synchronous too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol


class Delivery(NamedTuple):
    """One record as the broker delivered it: its broker id, its body, and when the broker
    appended it (UTC seconds by the broker's clock; None when the broker does not say): the
    start of the record's end-to-end latency, so no producer clock is trusted. A named tuple:
    one is made per record, at half a frozen dataclass's cost."""

    id: str
    body: bytes
    appended: float | None = None


class StreamSource(Protocol):
    def receive(self, count: int, wait: float) -> list[Delivery]: ...

    def ack(self, deliveries: Sequence[Delivery]) -> None: ...

    def dead_letter(self, delivery: Delivery, reason: str) -> None: ...

    def lag(self) -> int | None: ...

    def close(self) -> None: ...


class AlertSink(Protocol):
    def publish(self, messages: Sequence[tuple[str, bytes]]) -> None: ...

    def close(self) -> None: ...


class Fanout:
    """Publishes to each sink in turn (an error stops the rest: the outbox keeps the batch
    unsent, so it is published again, to every sink, by the next attempt)."""

    def __init__(self, *sinks: AlertSink) -> None:
        self.sinks = sinks

    def publish(self, messages: Sequence[tuple[str, bytes]]) -> None:
        for sink in self.sinks:
            sink.publish(messages)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
