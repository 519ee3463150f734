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
from typing import Any, Final

import redis

from riskprop.stream.source import Delivery

FIELD = b"record"
#: A stream entry: its id and its fields (None: deleted while pending).
Entry = tuple[bytes, dict[bytes, bytes] | None]
#: The same from an unparsed reply: its fields as the protocol lists them, [name, value, ...].
RawEntry = tuple[bytes, list[bytes] | None]


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
        # the same connections, with XREADGROUP's reply left as the protocol gives it (nested
        # lists): redis-py's own reply parsing costs about as much as the rest of receiving
        self._raw: Any = redis.Redis(connection_pool=client.connection_pool)
        self._raw.set_response_callback("XREADGROUP", _unparsed)
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
        reply = self._raw.execute_command(
            *("XREADGROUP", "GROUP", self.group, self.consumer, "COUNT", count),
            *(("BLOCK", block) if block else ()),
            *("STREAMS", self.stream, ">"),
        )
        return self._deliveries(_raw_entries(reply))

    def _deliveries(self, entries: list[RawEntry] | list[Entry]) -> list[Delivery]:
        gone = [entry_id for entry_id, fields in entries if not fields]
        if gone:
            self.client.xack(self.stream, self.group, *gone)
        # when Redis appended the entry: an auto-generated id is <milliseconds>-<sequence>
        return [
            Delivery(
                entry_id.decode(),
                _record(fields),
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
    """Alerts to the stream ``stream``: each ``XADD <stream> [MAXLEN ~ maxlen] * tx_id <key>
    alert <json>``, a batch's in one call of a server-side script (:data:`XADD_ALL`): one
    command and one reply a batch, where a pipeline of XADDs cost the client about 9 us an
    alert in redis-py's command packing and reply reading, the script about 2 us. The entries
    are those the XADDs make, in order; the script runs atomically (the server does a batch's
    XADDs at once: 0.65 ms for 500 alerts by ``INFO commandstats``). Needs ``EVALSHA`` (and
    ``SCRIPT LOAD``) in the node's ACL."""

    def __init__(self, client: redis.Redis, stream: str, *, maxlen: int | None = None) -> None:
        self.client, self.stream, self.maxlen = client, stream, maxlen
        self._xadd_all: Any = client.register_script(XADD_ALL)

    def publish(self, messages: Sequence[tuple[str, bytes]]) -> None:
        if not messages:
            return
        args: list[str | bytes | int] = [self.maxlen or 0]
        for key, payload in messages:
            args += (key, payload)
        self._xadd_all(keys=[self.stream], args=args)

    def close(self) -> None:
        self.client.close()


#: ``KEYS[1]`` the alert stream; ``ARGV`` maxlen (0: none), then key, payload, key, ...
XADD_ALL: Final = """
local maxlen = tonumber(ARGV[1])
for i = 2, #ARGV, 2 do
  if maxlen > 0 then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'tx_id', ARGV[i], 'alert', ARGV[i + 1])
  else
    redis.call('XADD', KEYS[1], '*', 'tx_id', ARGV[i], 'alert', ARGV[i + 1])
  end
end
return (#ARGV - 1) / 2
"""


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


def _unparsed(reply: Any, **options: Any) -> Any:
    """A reply as hiredis (or redis-py's own reader) gives it."""
    return reply


def _raw_entries(reply: Any) -> list[RawEntry]:
    """The entries of an unparsed ``XREADGROUP`` reply for one stream: RESP2, a list of
    [stream, entries]; RESP3, a map stream -> entries; an entry is [id, [field, value, ...]]
    (fields nil when it was deleted while pending)."""
    if not reply:
        return []
    items = next(iter(reply.values())) if isinstance(reply, dict) else reply[0][1]
    for item in items[:1]:  # the shape, checked once a batch (every entry has the same)
        if not isinstance(item[0], bytes) or not (item[1] is None or isinstance(item[1], list)):
            raise TypeError(f"unexpected stream entry {item!r}: is decode_responses on?")
    entries: list[RawEntry] = items  # two-element lists, unpacked as the pairs they are
    return entries


def _record(fields: dict[bytes, bytes] | list[bytes]) -> bytes:
    """The ``record`` field's value (empty when the entry has none)."""
    if isinstance(fields, dict):
        return fields.get(FIELD, b"")
    if fields[0] == FIELD:  # as producers write it: the only field
        return fields[1]
    return dict(zip(fields[::2], fields[1::2], strict=False)).get(FIELD, b"")


def _entry(item: Any) -> Entry:
    entry_id, fields = item[0], item[1]
    if not isinstance(entry_id, bytes) or not (fields is None or isinstance(fields, dict)):
        raise TypeError(f"unexpected stream entry {item!r}: is decode_responses on?")
    return entry_id, fields or None
