"""Publishing a bank's raw transactions to its stream: ``riskprop stream produce``.

For demos, tests and load tests: the rows of a raw file in riskprop's layout (such as
``riskprop generate --raw`` writes, with planted typologies) become one record each, CSV (the
row as written) or JSON (an object of the header's names), published in order to a Redis stream
(``XADD <topic> * record <body>``, pipelined) or a Kafka topic, at a given rate or as fast as
the broker takes them. ``shift`` moves every timestamp by a number of seconds (keeping its
zone), so a generated month can be replayed as if it were happening now; ``live`` stamps each
record with the time it is sent instead (a demo's endless stream of "now").
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from riskprop.errors import ConfigError, InputError
from riskprop.scoring.raw import RISKPROP_HEADER

FORMATS = ("csv", "json")


class Publisher(Protocol):
    def send(self, bodies: Sequence[bytes]) -> None: ...

    def close(self) -> None: ...


class RedisPublisher:
    """Records to the Redis stream ``topic`` at ``address`` (a redis:// URL)."""

    def __init__(self, address: str, topic: str) -> None:
        import redis

        self.client = redis.Redis.from_url(address)
        self.topic = topic

    def send(self, bodies: Sequence[bytes]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for body in bodies:
            pipe.xadd(self.topic, {"record": body})
        pipe.execute()

    def close(self) -> None:
        self.client.close()


class KafkaPublisher:
    """Records to the Kafka topic ``topic`` (``address``: bootstrap servers)."""

    def __init__(self, address: str, topic: str) -> None:
        from confluent_kafka import Producer

        self.producer = Producer({"bootstrap.servers": address, "linger.ms": 5})
        self.topic = topic

    def send(self, bodies: Sequence[bytes]) -> None:
        for body in bodies:
            self.producer.produce(self.topic, value=body)
            self.producer.poll(0)
        left = self.producer.flush(30)
        if left:
            raise ConfigError(f"{left} records not delivered to {self.topic}")

    def close(self) -> None:
        self.producer.flush(30)


def publisher(broker: str, address: str, topic: str) -> Publisher:
    """The publisher for ``broker`` (redis or kafka); ConfigError when its client is missing."""
    try:
        if broker == "redis":
            return RedisPublisher(address, topic)
        return KafkaPublisher(address, topic)
    except ImportError:
        raise ConfigError(
            f"publishing to {broker} needs its client: pip install 'riskprop[stream]'"
        ) from None


def first_time(path: Path) -> datetime:
    """The timestamp of ``path``'s first row (to shift a file to a chosen start)."""
    for fields in _rows(path):
        return _stamp(path, 2, fields["timestamp"])
    raise InputError(f"{path}: no transactions")


def records(
    path: Path, *, fmt: str = "csv", shift: float = 0.0, live: bool = False
) -> Iterator[bytes]:
    """``path``'s rows as record bodies in ``fmt`` (csv or json), timestamps moved by ``shift``
    seconds, or, ``live``, each stamped with the time it is taken from this iterator (in its
    own zone): a file replayed as a live stream. InputError names the file and line of a
    header or timestamp it cannot read; the consumer checks everything else (a bad row becomes
    a dead letter there, as it should)."""
    if fmt not in FORMATS:
        raise ConfigError(f"record format must be one of {', '.join(FORMATS)} (got {fmt!r})")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="")
    for line, fields in enumerate(_rows(path), start=2):
        if shift or live:
            stamp = _stamp(path, line, fields["timestamp"])
            if live:
                moved = datetime.now(stamp.tzinfo).replace(microsecond=0)
            else:
                moved = stamp + timedelta(seconds=shift)
            fields["timestamp"] = moved.isoformat(timespec="seconds").replace("+00:00", "Z")
        if fmt == "json":
            yield json.dumps(fields, separators=(",", ":")).encode()
        else:
            buffer.seek(0)
            buffer.truncate()
            writer.writerow([fields[name] for name in RISKPROP_HEADER])
            yield buffer.getvalue().encode()


@dataclass(frozen=True)
class Produced:
    records: int
    seconds: float


def produce(
    bodies: Iterator[bytes],
    target: Publisher,
    *,
    rate: float | None = None,
    batch: int = 500,
    limit: int | None = None,
) -> Produced:
    """Send ``bodies`` (at most ``limit``) in batches of ``batch``; with ``rate``, paced to
    that many records per second on average (each batch waits for its due time)."""
    started = time.monotonic()
    sent = 0
    chunk: list[bytes] = []
    for body in bodies:
        if limit is not None and sent + len(chunk) >= limit:
            break
        chunk.append(body)
        if len(chunk) >= batch:
            sent += _send(target, chunk, sent, started, rate)
            chunk = []
    if chunk:
        sent += _send(target, chunk, sent, started, rate)
    return Produced(sent, time.monotonic() - started)


def _send(
    target: Publisher, chunk: list[bytes], sent: int, started: float, rate: float | None
) -> int:
    if rate is not None:
        due = started + sent / rate
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    target.send(chunk)
    return len(chunk)


def _rows(path: Path) -> Iterator[dict[str, str]]:
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    with handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or tuple(header) != RISKPROP_HEADER:
            raise InputError(
                f"{path}:1: not riskprop's raw layout (header {','.join(RISKPROP_HEADER)})"
            )
        for line, row in enumerate(reader, start=2):
            if len(row) != len(RISKPROP_HEADER):
                raise InputError(f"{path}:{line}: has {len(row)} fields, expected {len(header)}")
            yield dict(zip(RISKPROP_HEADER, row, strict=True))


def _stamp(path: Path, line: int, value: str) -> datetime:
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        stamp = None
    if stamp is None or stamp.tzinfo is None:
        raise InputError(f"{path}:{line}: timestamp {value!r} is not an ISO 8601 time with a zone")
    return stamp
