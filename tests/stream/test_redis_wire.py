"""The Redis adapter's own wire handling on a real redis-server: XREADGROUP replies read unparsed
in both protocol versions, the record field wherever an entry holds it, and the alert sink's
server-side script making the entries XADD makes, trimmed as ``MAXLEN ~`` trims."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from stream.brokers import RedisBroker, redis_broker

from riskprop.stream.consumer import GC_YOUNG, settle_gc
from riskprop.stream.redis_source import RedisAlertSink, RedisStreamSource


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[RedisBroker]:
    with redis_broker(tmp_path / "redis") as running:
        yield running


@pytest.mark.parametrize("protocol", [2, 3])
def test_entries_are_read_in_either_protocol_wherever_the_record_field_is(
    broker: RedisBroker, protocol: int
) -> None:
    producer: Any = broker.client  # replies are bytes (decode_responses off)
    ids = [
        producer.xadd("tx", {"record": b"first,row"}),
        producer.xadd("tx", {"origin": b"payments", "record": b"second,row"}),
        producer.xadd("tx", {"origin": b"payments"}),  # no record: an empty body
        producer.xadd("tx", {"record": b""}),
    ]
    client = redis.Redis(host="127.0.0.1", port=int(broker.address), protocol=protocol)
    source = RedisStreamSource(client, "tx", "node", "c1", dead_stream="dead")
    deliveries = source.receive(10, 0.5)
    assert [d.body for d in deliveries] == [b"first,row", b"second,row", b"", b""]
    assert [d.id.encode() for d in deliveries] == ids
    # the append time is the id's milliseconds
    assert [d.appended for d in deliveries] == [int(i.split(b"-")[0]) / 1000 for i in ids]
    source.ack(deliveries)
    assert source.receive(10, 0.0) == []  # nothing pending, nothing new
    info: Any = producer.xinfo_groups("tx")
    assert int(info[0]["pending"]) == 0
    source.close()


def test_the_alert_sink_adds_the_entries_xadd_adds_in_order(broker: RedisBroker) -> None:
    sink = RedisAlertSink(redis.Redis(host="127.0.0.1", port=int(broker.address)), "alerts")
    messages = [(f"tx{i}", f'{{"tx_id":"tx{i}","n":{i}}}'.encode()) for i in range(250)]
    sink.publish(messages[:1])
    sink.publish(messages[1:])
    sink.publish([])  # nothing to add: no call
    entries: Any = broker.client.xrange("alerts")
    assert [(f[b"tx_id"].decode(), f[b"alert"]) for _, f in entries] == messages
    assert all(list(fields) == [b"tx_id", b"alert"] for _, fields in entries)
    ids = [entry_id for entry_id, _ in entries]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split(b"-"))))
    sink.close()


def test_the_alert_sink_trims_to_about_maxlen(broker: RedisBroker) -> None:
    client = redis.Redis(host="127.0.0.1", port=int(broker.address))
    client.config_set("stream-node-max-entries", 10)  # whole nodes of 10 are trimmed
    sink = RedisAlertSink(client, "alerts", maxlen=50)
    messages = [(f"tx{i}", b"{}") for i in range(400)]
    for k in range(0, 400, 40):
        sink.publish(messages[k : k + 40])
    entries: Any = broker.client.xrange("alerts")
    kept = [f[b"tx_id"].decode() for _, f in entries]
    assert 50 <= len(kept) < 100  # approximate trimming keeps at least maxlen
    assert kept == [key for key, _ in messages[-len(kept) :]]  # the newest, in order
    sink.close()


def test_settle_gc_freezes_the_heap_and_raises_the_young_threshold() -> None:
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        gc.unfreeze()
        settle_gc()
        assert gc.get_threshold() == (GC_YOUNG, 10, 10)
        assert gc.get_freeze_count() > 0
        gc.set_threshold(50_000, 20, 30)  # a higher threshold set by the operator is kept
        settle_gc()
        assert gc.get_threshold() == (50_000, 20, 30)
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
