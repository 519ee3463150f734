"""The receive thread (riskprop.stream.prefetch): batches in the source's order, bounded, never
acknowledged by the thread, errors handed over, close joins; on a real broker, exactly once
across consumers with a receive thread killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from stream.brokers import BROKERS, Broker

from riskprop.lab.rawgen import generate_raw
from riskprop.scoring.raw import read_raw
from riskprop.stream.consumer import Consumer
from riskprop.stream.prefetch import Prefetch
from riskprop.stream.records import RecordRules
from riskprop.stream.source import Delivery
from riskprop.stream.store import PeriodStore

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
ORIGIN, DAY = 1_764_374_400, 86_400  # as in prefetch_proc.py


class FakeSource:
    """Batches of numbered deliveries; records what was received, acknowledged, closed."""

    def __init__(self, batches: int, size: int, fail_after: int | None = None) -> None:
        self.left = [[Delivery(f"{b}-{i}", b"") for i in range(size)] for b in range(batches)]
        self.fail_after, self.received, self.closed = fail_after, 0, 0
        self.acked: list[str] = []
        self.dead: list[str] = []
        self.threads: set[str] = set()

    def receive(self, count: int, wait: float) -> list[Delivery]:
        self.threads.add(threading.current_thread().name)
        if self.fail_after is not None and self.received == self.fail_after:
            raise ConnectionError("broker gone")
        if not self.left:
            time.sleep(min(wait, 0.01))
            return []
        self.received += 1
        return self.left.pop(0)[:count]

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        self.acked += [d.id for d in deliveries]

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        assert delivery.id not in self.acked  # dead-lettered before its acknowledgement
        self.dead.append(delivery.id)

    def lag(self) -> int | None:
        return len(self.left)

    def close(self) -> None:
        self.closed += 1


def take(source: Prefetch, count: int) -> Iterator[list[Delivery]]:
    while batch := source.receive(count, 1.0):
        yield batch


def test_batches_come_in_order_split_to_the_count_and_only_the_caller_acks() -> None:
    fake = FakeSource(batches=6, size=5)
    source = Prefetch(fake, count=5, wait=0.01, depth=2)
    got = [d.id for batch in take(source, 3) for d in batch]
    assert got == [f"{b}-{i}" for b in range(6) for i in range(5)]
    assert fake.acked == []  # the thread never acknowledges
    source.ack([Delivery("0-0", b"")])
    assert fake.acked == ["0-0"]
    assert fake.threads == {"riskprop-receive"}
    source.close()
    assert fake.closed == 1
    assert not source._thread.is_alive()


def test_the_thread_holds_at_most_depth_batches_plus_one() -> None:
    fake = FakeSource(batches=20, size=2)
    source = Prefetch(fake, count=2, wait=0.01, depth=2)
    while fake.received < 3:  # a count, not a time: the thread has filled the queue
        time.sleep(0.001)
    time.sleep(0.05)  # give it room to overrun, which it must not
    assert fake.received == 3
    assert len(source.receive(2, 1.0)) == 2
    while fake.received < 4:
        time.sleep(0.001)
    time.sleep(0.05)
    assert fake.received == 4
    source.close()
    assert fake.received == 4  # closing takes nothing more


def test_an_error_of_the_source_reaches_the_consumer_after_the_batches_before_it() -> None:
    source = Prefetch(FakeSource(batches=5, size=1, fail_after=2), count=1, wait=0.01)
    assert [d.id for batch in take_until_error(source) for d in batch] == ["0-0", "1-0"]
    with pytest.raises(ConnectionError, match="broker gone"):
        while not source.receive(1, 0.01):  # [] until the thread has met the error
            pass
    with pytest.raises(ConnectionError):  # and on every later call
        source.receive(1, 0.01)
    source.close()


def take_until_error(source: Prefetch) -> Iterator[list[Delivery]]:
    for _ in range(2):
        yield source.receive(1, 1.0)


def test_a_consumer_with_a_receive_thread_acks_in_order_after_each_commit(
    tmp_path: Path,
) -> None:
    fake = FakeSource(batches=4, size=3)
    store = PeriodStore(tmp_path / "s.db", origin=ORIGIN, length=DAY)
    commits: list[list[str]] = []
    source = Prefetch(fake, count=3, wait=0.01)

    def committed(deliveries: list[Delivery], _: object) -> None:
        assert fake.acked == [i for batch in commits for i in batch]  # earlier ones only
        commits.append([d.id for d in deliveries])

    consumer = Consumer(source, store, RecordRules(bank="alice"), batch=3, committed=committed)
    while consumer.progress.received < 12:
        consumer.step(wait=1.0)
    source.close()
    assert fake.acked == fake.dead == [f"{b}-{i}" for b in range(4) for i in range(3)]
    assert store.counts()["dead"] == 12  # empty bodies: dead letters, acknowledged as any


@pytest.fixture(params=sorted(BROKERS))
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    with BROKERS[request.param](tmp_path / "broker") as running:
        yield running


def consume(
    broker: Broker, store: Path, consumer: str, expected: int, kill_at: int = 0
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE.parent)])}
    command = [sys.executable, str(HERE / "prefetch_proc.py"), broker.kind, broker.address]
    return subprocess.Popen(
        [*command, str(store), consumer, str(kill_at), str(expected)],
        env=env,
        stdin=subprocess.DEVNULL,
    )


def test_killed_consumers_with_a_receive_thread_neither_lose_nor_double_count(
    tmp_path: Path, broker: Broker
) -> None:
    generate_raw(tmp_path / "gen", banks=["alice", "bob"], accounts=300, transactions=3000, days=4)
    raw_path = tmp_path / "gen" / "alice" / "raw.csv"
    lines = raw_path.read_bytes().splitlines()[1:]
    broker.produce(lines)
    store_path = tmp_path / "store.db"

    first = consume(broker, store_path, "node-a", len(lines), kill_at=5)
    assert first.wait() == -signal.SIGKILL
    watch = PeriodStore(store_path, origin=ORIGIN, length=DAY)
    assert watch.counts()["stored"] == 5 * 37
    # the killed batch and what the thread had received ahead are pending, not lost
    assert broker.unacknowledged() == len(lines) - 4 * 37

    second = consume(broker, store_path, "node-a", len(lines))
    while second.poll() is None and watch.counts()["stored"] < 1500:
        time.sleep(0.001)
    second.send_signal(signal.SIGKILL)
    assert second.wait() in (-signal.SIGKILL, 0)

    third = consume(broker, store_path, "node-b", len(lines))
    assert third.wait() == 0
    assert broker.unacknowledged() == 0
    counts = watch.counts()
    assert counts["stored"] == len(lines)
    assert counts["duplicates"] >= 37  # at least the killed batch again
    assert sorted(t.tx_id for t in watch.transactions()) == sorted(
        read_raw(raw_path).tx_id.tolist()
    )
    watch.close()
