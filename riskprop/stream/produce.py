"""Publishing a bank's raw transactions to its stream: ``riskprop stream produce``.

For demos, tests and load tests: the rows of a raw file in riskprop's layout (such as
``riskprop generate --raw`` writes, with planted typologies) become one record each, CSV (the
row as written) or JSON (an object of the header's names), published in order to a Redis stream
(``XADD <topic> * record <body>``, pipelined) or a Kafka topic, at a given rate or as fast as
the broker takes them. Several banks' files (one generated network) are merged in time order,
each bank's rows to its own stream. ``shift`` moves every timestamp by a number of seconds
(keeping its zone), so a generated month can be replayed as if it were happening now; ``live``
stamps each transaction with the time it is sent instead, and ``loop`` replays forever under
new ids (a demo's endless stream of "now"). Either way a transaction that two banks' files
hold gets the same time in both, so both banks put it in the same period.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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


def first_day(paths: Iterable[Path]) -> datetime:
    """UTC midnight starting the day of the earliest first row of ``paths`` (the reference a
    ``--start`` moves: every bank's file of one generated network shifts alike)."""
    firsts = []
    for path in paths:
        for fields in _rows(path):
            firsts.append(_stamp(path, 2, fields["timestamp"]).astimezone(UTC))
            break
    if not firsts:
        raise InputError(f"{', '.join(map(str, paths))}: no transactions")
    return min(firsts).replace(hour=0, minute=0, second=0, microsecond=0)


def records(
    path: Path, *, fmt: str = "csv", shift: float = 0.0, live: bool = False
) -> Iterator[bytes]:
    """``path``'s rows as record bodies (see :func:`network_records`)."""
    for _, body in network_records({"": path}, fmt=fmt, shift=shift, live=live):
        yield body


def network_records(
    files: Mapping[str, Path],
    *,
    fmt: str = "csv",
    shift: float = 0.0,
    live: bool = False,
    loop: bool = False,
) -> Iterator[tuple[str, bytes]]:
    """(bank, record body) for the rows of every bank's file in ``files``, merged in time order
    (a file's own order among equal times), in ``fmt`` (csv or json). Timestamps are moved by
    ``shift`` seconds, or, ``live``, stamped with the time the transaction is first taken from
    this iterator; a transaction in two banks' files (same ``tx_id``) gets one time, kept in
    each row's own zone. ``loop`` replays the files forever, ids suffixed ``~1``, ``~2``...
    InputError names the file and line of a header or timestamp it cannot read; the consumer
    checks everything else (a bad row becomes a dead letter there, as it should)."""
    if fmt not in FORMATS:
        raise ConfigError(f"record format must be one of {', '.join(FORMATS)} (got {fmt!r})")
    rows: list[tuple[datetime, int, str, datetime, dict[str, str]]] = []
    for bank, path in files.items():
        for line, fields in enumerate(_rows(path), start=2):
            stamp = _stamp(path, line, fields["timestamp"])
            rows.append((stamp.astimezone(UTC), len(rows), bank, stamp, fields))
    rows.sort(key=lambda row: (row[0], row[1]))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="")
    for round_ in itertools.count():
        stamped: dict[str, datetime] = {}
        for utc, _, bank, stamp, original in rows:
            fields = dict(original)
            if round_:
                fields["tx_id"] = f"{fields['tx_id']}~{round_}"
            if live or shift:
                moved = stamped.get(fields["tx_id"])
                if moved is None:
                    now = datetime.now(UTC).replace(microsecond=0)
                    moved = now if live else utc + timedelta(seconds=shift)
                    stamped[fields["tx_id"]] = moved
                local = moved.astimezone(stamp.tzinfo)
                fields["timestamp"] = local.isoformat(timespec="seconds").replace("+00:00", "Z")
            if fmt == "json":
                yield bank, json.dumps(fields, separators=(",", ":")).encode()
            else:
                buffer.seek(0)
                buffer.truncate()
                writer.writerow([fields[name] for name in RISKPROP_HEADER])
                yield bank, buffer.getvalue().encode()
        if not loop or not rows:
            return


@dataclass(frozen=True)
class Produced:
    records: int
    seconds: float


def produce(
    items: Iterator[tuple[str, bytes]],
    targets: Mapping[str, Publisher],
    *,
    rate: float | None = None,
    batch: int = 500,
    limit: int | None = None,
) -> Produced:
    """Send each (bank, body) of ``items`` (at most ``limit``) to ``targets[bank]``, in batches
    of up to ``batch``; with ``rate``, paced to that many records per second on average (each
    batch waits for its due time)."""
    started = time.monotonic()
    sent = 0
    chunk: list[tuple[str, bytes]] = []
    for item in items:
        if limit is not None and sent + len(chunk) >= limit:
            break
        chunk.append(item)
        if len(chunk) >= batch:
            sent += _send(targets, chunk, sent, started, rate)
            chunk = []
    if chunk:
        sent += _send(targets, chunk, sent, started, rate)
    return Produced(sent, time.monotonic() - started)


def _send(
    targets: Mapping[str, Publisher],
    chunk: list[tuple[str, bytes]],
    sent: int,
    started: float,
    rate: float | None,
) -> int:
    if rate is not None:
        due = started + sent / rate
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    by_bank: dict[str, list[bytes]] = {}
    for bank, body in chunk:
        by_bank.setdefault(bank, []).append(body)
    for bank, bodies in by_bank.items():
        targets[bank].send(bodies)
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
