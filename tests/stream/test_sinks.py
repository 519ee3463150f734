"""Alert sinks on real brokers: the broker's alert stream (Redis, and Kafka through tansu), the
node's alert log, and both behind one ``Fanout``; and the end-to-end latency of each alert."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from stream.brokers import ALERTS, BROKERS, Broker

from riskprop.lab.rawgen import generate_raw
from riskprop.scoring.rules import default_rules_path, load_rules
from riskprop.stream.alertlog import AlertLog
from riskprop.stream.alerts import outbox
from riskprop.stream.consumer import Consumer
from riskprop.stream.records import RecordRules
from riskprop.stream.source import AlertSink, Fanout
from riskprop.stream.store import PeriodStore


@pytest.fixture(params=sorted(BROKERS))
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    with BROKERS[request.param](tmp_path / "broker") as running:
        yield running


def sink_for(broker: Broker) -> AlertSink:
    if broker.kind == "redis":
        import redis

        from riskprop.stream.redis_source import RedisAlertSink

        return RedisAlertSink(redis.Redis(host="127.0.0.1", port=int(broker.address)), ALERTS)
    from riskprop.stream.kafka_source import KafkaAlertSink

    return KafkaAlertSink({"bootstrap.servers": broker.address}, ALERTS)


def published(broker: Broker, count: int) -> list[tuple[str, bytes]]:
    """(key, payload) of the first ``count`` messages of the alert stream or topic."""
    if broker.kind == "redis":
        import redis

        with redis.Redis(host="127.0.0.1", port=int(broker.address)) as client:
            entries: Any = client.xrange(ALERTS)
        return [(f[b"tx_id"].decode(), f[b"alert"]) for _, f in entries]
    from confluent_kafka import Consumer as KafkaConsumer
    from confluent_kafka import TopicPartition

    reader = KafkaConsumer({"bootstrap.servers": broker.address, "group.id": "alert-reader"})
    try:
        reader.assign([TopicPartition(ALERTS, 0, 0)])
        messages: list[Any] = []
        for _ in range(100):  # polls, not a time limit
            if len(messages) >= count:
                break
            messages += reader.consume(count - len(messages), 0.5)
        return [(m.key().decode(), m.value()) for m in messages]
    finally:
        reader.close()


def test_alerts_reach_the_alert_stream_and_the_log_once_each(
    broker: Broker, tmp_path: Path
) -> None:
    generate_raw(tmp_path / "gen", banks=["alice", "bob"], accounts=200, transactions=1500, days=3)
    rows = (tmp_path / "gen" / "alice" / "raw.csv").read_bytes().splitlines()[1:]
    broker.produce(rows)
    store = PeriodStore(tmp_path / "store.db", origin=0, length=86400)
    log = AlertLog(tmp_path / "alerts" / "alerts.jsonl")
    latencies: list[float] = []
    consumer = Consumer(
        broker.source("alice-1"),
        store,
        RecordRules(bank="alice"),
        batch=128,
        outbox=outbox("alice", load_rules(default_rules_path())),
        publish=Fanout(sink_for(broker), log).publish,
        latencies=latencies.extend,
    )
    while consumer.progress.received < len(rows):
        consumer.step(wait=0.5)
    queued = store.unsent()
    assert queued == []  # every alert was published and marked sent
    logged = [json.loads(line) for line in log.path.read_text().splitlines()]
    assert logged and len({a["tx_id"] for a in logged}) == len(logged)
    streamed = published(broker, len(logged))
    assert [key for key, _ in streamed] == [a["tx_id"] for a in logged]
    assert [json.loads(payload) for _, payload in streamed] == logged
    assert log.path.stat().st_mode & 0o777 == 0o600
    if broker.kind == "redis":  # Redis stamps each entry: every alert has its latency
        assert len(latencies) == len(logged) and min(latencies) >= 0
    store.close()
