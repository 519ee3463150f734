"""Kafka adapter of :class:`~riskprop.stream.source.StreamSource` (confluent-kafka).

The bank's payment system produces each transaction as one message (the record as its value)
to ``topic``. A bank's node is the only reader of its own transactions, so by default the
adapter **assigns** itself the topic's partitions (``partitions``) instead of joining a group
rebalance; it still commits offsets under ``group``, so a restart resumes from the committed
offsets (``OFFSET_STORED``; a partition never committed starts at the beginning). With
``partitions=None`` it subscribes through the group instead (several consumers sharing a topic).

- :meth:`KafkaStreamSource.receive` is ``consume(count, wait)``; a delivery's id is
  ``topic:partition:offset``.
- :meth:`KafkaStreamSource.ack` first flushes the dead letters, then commits, synchronously,
  the next offset of each partition in the batch (``offset + 1``): Kafka's committed offset is
  the first message not yet done, so everything before it must be in the store.
- Dead letters are produced to ``dead_topic`` with the record as value and headers
  ``delivery`` and ``reason``.
- :meth:`KafkaStreamSource.lag` is, over the assigned partitions, high watermark minus position.
- A delivery's ``appended`` time is the message's timestamp when the topic stamps log-append
  time (``message.timestamp.type=LogAppendTime``); a producer's own create time is not trusted
  (None). Alerts go to their own topic through :class:`KafkaAlertSink`.

Auto-commit and the automatic offset store are off: offsets move only through :meth:`ack`.
``config`` is librdkafka's (``bootstrap.servers``, TLS/SASL settings...).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import (
    OFFSET_STORED,
    TIMESTAMP_LOG_APPEND_TIME,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
)
from confluent_kafka import TopicPartition as Partition

from riskprop.stream.source import Delivery


class KafkaStreamSource:
    def __init__(
        self,
        config: Mapping[str, Any],
        topic: str,
        *,
        group: str,
        dead_topic: str,
        partitions: Sequence[int] | None = (0,),
    ) -> None:
        self.topic, self.dead_topic = topic, dead_topic
        self._consumer = Consumer(
            {
                **config,
                "group.id": group,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "enable.partition.eof": False,
            }
        )
        self._producer = Producer(dict(config))
        if partitions is None:
            self._consumer.subscribe([topic])
        else:
            self._consumer.assign([Partition(topic, p, OFFSET_STORED) for p in partitions])

    def receive(self, count: int, wait: float) -> list[Delivery]:
        out = []
        for message in self._consumer.consume(count, wait):
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(error)
            body = message.value()
            kind, stamp = message.timestamp()
            out.append(
                Delivery(
                    f"{message.topic()}:{message.partition()}:{message.offset()}",
                    body if isinstance(body, bytes) else b"",
                    stamp / 1000 if kind == TIMESTAMP_LOG_APPEND_TIME else None,
                )
            )
        return out

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        left = self._producer.flush(30)
        if left:
            raise KafkaException(f"{left} dead letters not delivered to {self.dead_topic}")
        following: dict[tuple[str, int], int] = {}
        for delivery in deliveries:
            topic, partition, offset = delivery.id.rsplit(":", 2)
            key = (topic, int(partition))
            following[key] = max(following.get(key, 0), int(offset) + 1)
        offsets = [Partition(t, p, o) for (t, p), o in following.items()]
        self._consumer.commit(offsets=offsets, asynchronous=False)

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        headers: list[tuple[str, str | bytes | None]] = [
            ("delivery", delivery.id),
            ("reason", reason),
        ]
        self._producer.produce(self.dead_topic, value=delivery.body, headers=headers)
        self._producer.poll(0)

    def lag(self) -> int | None:
        assigned = self._consumer.assignment()
        if not assigned:
            return None
        total = 0
        for position in self._consumer.position(assigned):
            _, high = self._consumer.get_watermark_offsets(position, timeout=5)
            total += max(0, high - position.offset) if position.offset >= 0 else high
        return total

    def close(self) -> None:
        self._producer.flush(30)
        self._consumer.close()


class KafkaAlertSink:
    """Alerts to ``topic``, keyed by ``tx_id`` (so one transaction's alerts stay in order on
    one partition); ``publish`` returns once the broker has every message of the batch."""

    def __init__(self, config: Mapping[str, Any], topic: str) -> None:
        self.topic = topic
        self._producer = Producer(dict(config))

    def publish(self, messages: Sequence[tuple[str, bytes]]) -> None:
        failed: list[str] = []

        def delivered(error: Any, message: Any) -> None:
            if error is not None:
                failed.append(str(error))

        for key, payload in messages:
            self._producer.produce(
                self.topic, key=key.encode(), value=payload, on_delivery=delivered
            )
            self._producer.poll(0)
        left = self._producer.flush(30)
        if left or failed:  # the outbox keeps the batch: it is published again
            problem = failed[0] if failed else "time-out"
            raise KafkaException(
                f"{left + len(failed)} alerts not delivered to {self.topic} ({problem})"
            )

    def close(self) -> None:
        self._producer.flush(30)
