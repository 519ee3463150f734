"""The stream sources' contract on real brokers (tests/stream/brokers.py): exactly once across
consumers killed with SIGKILL (after a commit before its acknowledgement, and at an arbitrary
point), dead letters for every kind of bad record, the consumer never stopping."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from stream.brokers import BROKERS, Broker

from riskprop.lab.rawgen import generate_raw
from riskprop.scoring.output import assign_periods
from riskprop.scoring.raw import RISKPROP_HEADER, read_raw
from riskprop.stream.consumer import Consumer
from riskprop.stream.records import RecordRules
from riskprop.stream.store import PeriodStore

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
ORIGIN, DAY = 1_764_374_400, 86_400  # as in consume_proc.py


@pytest.fixture(params=sorted(BROKERS))
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    with BROKERS[request.param](tmp_path / "broker") as running:
        yield running


def consume(
    broker: Broker, store: Path, consumer: str, expected: int, kill_at: int = 0
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE.parent)])}
    command = [sys.executable, str(HERE / "consume_proc.py"), broker.kind, broker.address]
    return subprocess.Popen(
        [*command, str(store), consumer, str(kill_at), str(expected)],
        env=env,
        stdin=subprocess.DEVNULL,
    )


def test_killed_consumers_neither_lose_nor_double_count(tmp_path: Path, broker: Broker) -> None:
    generate_raw(tmp_path / "gen", banks=["alice", "bob"], accounts=300, transactions=3000, days=4)
    raw_path = tmp_path / "gen" / "alice" / "raw.csv"
    lines = raw_path.read_bytes().splitlines()[1:]
    resent = lines[100:160]  # the bank's system sends some transactions twice
    broker.produce(lines[:1000] + resent + lines[1000:])
    store_path = tmp_path / "store.db"

    # 1. killed right after a commit, before its acknowledgement
    first = consume(broker, store_path, "node-a", len(lines), kill_at=5)
    assert first.wait() == -signal.SIGKILL
    assert broker.unacknowledged() > 0  # the committed batch among them

    # 2. killed at whatever point it has reached once it has stored more (a count, not a time)
    second = consume(broker, store_path, "node-a", len(lines))
    watch = PeriodStore(store_path, origin=ORIGIN, length=DAY)
    while second.poll() is None and watch.counts()["stored"] < 1500:
        time.sleep(0.001)
    second.send_signal(signal.SIGKILL)
    assert second.wait() in (-signal.SIGKILL, 0)  # killed, or done before the count was seen

    # 3. a consumer under another name takes over what the dead ones left
    third = consume(broker, store_path, "node-b", len(lines))
    assert third.wait() == 0

    assert broker.unacknowledged() == 0
    counts = watch.counts()
    assert counts["stored"] == len(lines)
    assert counts["duplicates"] >= len(resent) + 37  # the re-sent ones and the killed batch
    assert counts["dead"] == 0

    # the store holds exactly the batch reader's transactions, period by period
    raw = read_raw(raw_path)
    stored = sorted(watch.transactions(), key=lambda t: t.tx_id)
    assert [t.tx_id for t in stored] == sorted(raw.tx_id.tolist())
    period = assign_periods(raw.time, length=DAY, origin=ORIGIN)
    batch_counts = dict(zip(*np.unique(period, return_counts=True), strict=True))
    assert watch.periods() == {int(p): int(n) for p, n in batch_counts.items()}
    for p in batch_counts:
        amounts = sorted(t.amount for t in watch.transactions(int(p)))
        assert amounts == sorted(raw.amount[period == p].tolist())
    watch.close()


BAD = [
    (b"\xff", "record is not UTF-8"),
    (b"{", "record is not valid JSON"),
    (b"", "record is empty"),
    (b"t9,2026-01-01T00:00:00Z,a1,alice", "record has 4 fields, expected 13"),
    (
        b"t9,2026-13-01T00:00:00Z,a1,alice,b1,bob,5,USD,wire,,,,completed",
        "timestamp '2026-13-01T00:00:00Z' is not a time YYYY-MM-DDTHH:MM:SS with Z or an "
        "offset +HH:MM",
    ),
    (
        b"t9,2026-01-01T00:00:00Z,a1,carol,b1,bob,5,USD,wire,,,,completed",
        "record names neither source_bank nor target_bank as this node's bank 'alice'",
    ),
    (
        b"t9,2026-01-01T00:00:00Z,a9,alice,b1,bob,5,USD,wire,,,,completed",
        "account 'a9' is not a known account of bank 'alice'",
    ),
]


def good(n: int) -> bytes:
    fields = dict.fromkeys(RISKPROP_HEADER, "")
    fields.update(tx_id=f"g{n}", timestamp="2026-01-01T00:00:00Z", source="a1")
    fields.update(source_bank="alice", target="b1", target_bank="bob", amount=str(n))
    fields.update(currency="USD", type="wire", status="completed")
    return json.dumps(fields).encode()


def test_every_bad_record_is_dead_lettered_and_the_consumer_goes_on(
    tmp_path: Path, broker: Broker
) -> None:
    bodies = [b for i, (body, _) in enumerate(BAD) for b in (good(i), body)] + [good(99)]
    broker.produce(bodies)
    broker.produce_without_record()  # a Redis entry without the field, a Kafka null value
    source = broker.source("c1")
    store = PeriodStore(tmp_path / "s.db", origin=ORIGIN, length=DAY)
    consumer = Consumer(source, store, RecordRules(bank="alice", accounts={"a1"}), batch=4)
    while store.counts()["stored"] < len(BAD) + 1 or consumer.progress.received <= len(bodies):
        consumer.step(wait=0.5)
    reasons = [reason for _, reason in BAD] + ["record is empty"]
    assert [reason for _, reason in store.dead_letters()] == reasons
    assert broker.dead_letters(len(reasons)) == [(reason, body) for body, reason in BAD] + [
        ("record is empty", b"")
    ]
    assert store.counts()["stored"] == len(BAD) + 1
    assert broker.unacknowledged() == 0
    assert consumer.progress.received == len(bodies) + 1
    source.close()
