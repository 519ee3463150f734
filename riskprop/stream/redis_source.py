"""Redis Streams adapter of :class:`~riskprop.stream.source.StreamSource` (redis-py, Redis >= 7).

The bank's payment system appends each transaction to a stream with ``XADD <stream> * record
<body>``. The node reads through a consumer group, so that the broker keeps, per consumer, the
entries delivered and not yet acknowledged (its pending entries list, PEL):

1. On start the group is made if missing (``XGROUP CREATE ... 0 MKSTREAM``: a new group starts
   at the stream's beginning).
2. :meth:`RedisStreamSource.receive` first re-reads this consumer's own PEL (``XREADGROUP ... 0``,
   paging by id): the deliveries of a previous life of the same consumer name that were never
   acknowledged. Then, when ``claim_idle`` is set, it takes over entries that another consumer
   left pending for at least that long (``XAUTOCLAIM``; a consumer that died under another
   name). Then new entries (``XREADGROUP ... >``, blocking up to ``wait``).
3. :meth:`RedisStreamSource.ack` is ``XACK`` of the batch, after the store's commit.

An entry trimmed from the stream while pending comes back from ``XREADGROUP``/``XAUTOCLAIM``
without fields: there is nothing left to store, so it is acknowledged and skipped. An entry
without a ``record`` field is delivered with an empty body (dead-lettered as empty).
Dead letters go to ``<dead_stream>`` as ``XADD * delivery <id> reason <reason> record <body>``.
A delivery's ``appended`` time is its entry id's milliseconds (Redis' clock); alerts go to their
own stream through :class:`RedisAlertSink`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis

from riskprop.stream.source import Delivery

FIELD = b"record"
#: A stream entry: its id and its fields (None: deleted while pending).
Entry = tuple[bytes, dict[bytes, bytes] | None]


class RedisStreamSource:
    """``stream`` read by ``consumer`` of ``group`` on ``client`` (``decode_responses`` off)."""

    def __init__(
        self,
        client: redis.Redis,
        stream: str,
        group: str,
        consumer: str,
        *,
        dead_stream: str,
        claim_idle: float | None = None,
    ) -> None:
        self.client, self.stream, self.group, self.consumer = client, stream, group, consumer
        # replies are protocol data whose typed shape differs across redis-py versions and
        # protocol versions; they are taken apart, and checked, by _entries
        self._r: Any = client
        self.dead_stream, self.claim_idle = dead_stream, claim_idle
        self._own: bytes | None = b"0"  # cursor in our own PEL; None once it is read through
        self._claim = b"0-0"
        try:
            client.xgroup_create(stream, group, id="0", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    def receive(self, count: int, wait: float) -> list[Delivery]:
        if self._own is not None:
            reply = self._r.xreadgroup(self.group, self.consumer, {self.stream: self._own}, count)
            entries = _entries(reply)
            if entries:
                self._own = entries[-1][0]
                return self._deliveries(entries)
            self._own = None
        if self.claim_idle is not None:
            cursor, claimed, *rest = self._r.xautoclaim(
                self.stream,
                self.group,
                self.consumer,
                min_idle_time=int(self.claim_idle * 1000),
                start_id=self._claim,
                count=count,
            )
            self._claim = cursor
            if rest and rest[0]:  # ids of entries deleted while pending
                self.client.xack(self.stream, self.group, *rest[0])
            entries = [_entry(e) for e in claimed]
            if entries:
                return self._deliveries(entries)
        block = int(wait * 1000)
        reply = self._r.xreadgroup(
            self.group, self.consumer, {self.stream: ">"}, count, block=block or None
        )
        return self._deliveries(_entries(reply))

    def _deliveries(self, entries: list[Entry]) -> list[Delivery]:
        gone = [entry_id for entry_id, fields in entries if not fields]
        if gone:
            self.client.xack(self.stream, self.group, *gone)
        # when Redis appended the entry: an auto-generated id is <milliseconds>-<sequence>
        return [
            Delivery(
                entry_id.decode(),
                fields.get(FIELD, b""),
                int(entry_id[: entry_id.index(b"-")]) / 1000,
            )
            for entry_id, fields in entries
            if fields
        ]

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        if deliveries:
            self.client.xack(self.stream, self.group, *(d.id for d in deliveries))

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        fields = {"delivery": delivery.id, "reason": reason, "record": delivery.body}
        self._r.xadd(self.dead_stream, fields)

    def lag(self) -> int | None:
        groups: list[dict[Any, Any]] = self._r.xinfo_groups(self.stream)
        for group in groups:
            name = group.get("name", group.get(b"name"))
            if name in (self.group, self.group.encode()):
                lag = group.get("lag", group.get(b"lag"))
                return None if lag is None else int(lag)
        return None

    def close(self) -> None:
        self.client.close()


class RedisAlertSink:
    """Alerts to the stream ``stream``: ``XADD <stream> [MAXLEN ~ maxlen] * tx_id <key> alert
    <json>``, one pipelined round trip per batch."""

    def __init__(self, client: redis.Redis, stream: str, *, maxlen: int | None = None) -> None:
        self.client, self.stream, self.maxlen = client, stream, maxlen

    def publish(self, messages: Sequence[tuple[str, bytes]]) -> None:
        if not messages:
            return
        pipe: Any = self.client.pipeline(transaction=False)
        # XADD as a raw command: the same entry as ``xadd``, without its per-call argument work
        head = ("XADD", self.stream, *(("MAXLEN", "~", self.maxlen) if self.maxlen else ()), "*")
        for key, payload in messages:
            pipe.execute_command(*head, "tx_id", key, "alert", payload)
        pipe.execute()

    def close(self) -> None:
        self.client.close()


def _entries(reply: Any) -> list[Entry]:
    """The entries of an ``XREADGROUP`` reply for one stream (RESP2: a list of [stream,
    entries]; RESP3: a map stream -> entries)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        (found,) = reply.values()
        items = found[0] if found and isinstance(found[0], list) else found
    else:
        items = reply[0][1]
    return [_entry(e) for e in items]


def _entry(item: Any) -> Entry:
    entry_id, fields = item[0], item[1]
    if not isinstance(entry_id, bytes) or not (fields is None or isinstance(fields, dict)):
        raise TypeError(f"unexpected stream entry {item!r}: is decode_responses on?")
    return entry_id, fields or None
