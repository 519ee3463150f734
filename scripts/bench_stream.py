"""Streaming ingestion through a real redis-server: records per second and end-to-end latency.

Starts ``redis-server`` (Debian's) on a free loopback port in a temporary directory, makes
``--transactions`` raw transactions with planted typologies (``riskprop.lab.rawgen``, bank
alice's file, CSV records) and measures two things with the consumer of ``riskprop.stream``
(Redis Streams adapter, SQLite period store, real-time alerts, ``--batch`` records a batch):

- **backlog**: every record is produced first, then consumed: the consumer's records/s, and
  the seconds spent receiving, parsing, storing (commit) and acknowledging;
- **live**: a producer process publishes at ``--rate`` records/s while the consumer runs:
  p50/p99/max of the alert latency, the time an alert was published minus the broker's append
  time of its record (the entry id's milliseconds, the same machine's clock).

By default the consumer is the service's (``Consumer``: batch parse, store and commit, the
shipped rules' transaction-level and windowed alerts in the outbox, published to a Redis alert
stream and an alert log, acknowledged). ``--stages`` runs a hand-written loop instead that times
each stage (receive, parse, store+alerts, publish, ack) with the transaction-level alerts only,
marked sent without being published; its latency is then every record's.

Prints numbers only. Not a test: run it on an idle machine.
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import redis
from prometheus_client import CollectorRegistry

from riskprop.lab.rawgen import EPOCH, generate_raw
from riskprop.localnet.harness import free_ports
from riskprop.scoring.rules import default_rules_path, load_rules
from riskprop.service.metrics import StreamMetrics
from riskprop.stream.alertlog import AlertLog
from riskprop.stream.alerts import outbox
from riskprop.stream.consumer import Consumer, settle_gc
from riskprop.stream.records import RecordRules, parse_batch
from riskprop.stream.redis_source import RedisAlertSink, RedisStreamSource
from riskprop.stream.source import Fanout, StreamSource
from riskprop.stream.store import PeriodStore
from riskprop.stream.windows import Windows

DAY = 86_400


def start_redis(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    program = shutil.which("redis-server")
    if program is None:
        raise SystemExit("redis-server is not installed (Debian package redis-server)")
    port = free_ports(1)[0]
    process = subprocess.Popen(
        [
            *(program, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder)),
            *("--save", "", "--appendonly", "no", "--logfile", str(folder / "redis.log")),
        ]
    )
    client = redis.Redis(port=port)
    for _ in range(500):
        try:
            client.ping()
            return process, port
        except redis.ConnectionError:
            time.sleep(0.02)
    raise SystemExit("redis-server did not start")


def produce(port: int, stream: str, lines: list[bytes], rate: float) -> None:
    """Publish ``lines`` in pipelines of 100, at ``rate`` records/s (0: as fast as possible)."""
    client = redis.Redis(port=port)
    started = time.perf_counter()
    for i in range(0, len(lines), 100):
        if rate:
            due = started + i / rate
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        pipe = client.pipeline(transaction=False)
        for line in lines[i : i + 100]:
            pipe.xadd(stream, {"record": line})
        pipe.execute()


def consume(
    port: int, stream: str, store: PeriodStore, total: int, batch: int
) -> tuple[float, dict[str, float], list[float]]:
    """Consume ``total`` records; (seconds, seconds per stage and the process's CPU seconds
    (``cpu``: both threads; other load on the machine changes it less than wall time), latency of
    each record in s)."""
    source: StreamSource = RedisStreamSource(
        redis.Redis(port=port), stream, "node", "c1", dead_stream="dead"
    )
    rules = RecordRules(bank="alice")
    ruleset = load_rules(default_rules_path())
    stages = dict.fromkeys(("receive", "parse", "store+alerts", "publish", "ack"), 0.0)
    messages = outbox("alice", ruleset)
    published = 0
    latencies: list[float] = []
    done = 0
    started: float | None = None
    cpu = 0.0
    while done < total:
        t0 = time.perf_counter()
        deliveries = source.receive(batch, 1.0)
        if not deliveries:
            continue
        if started is None:
            started, cpu = t0, time.process_time()
        t1 = time.perf_counter()
        bodies = [d.body for d in deliveries]
        records = parse_batch(bodies, rules)
        entries = [(d.id, r, b) for d, r, b in zip(deliveries, records, bodies, strict=True)]
        t2 = time.perf_counter()
        put = store.put(entries, messages)
        t3 = time.perf_counter()
        published += len(put.outbox)  # stands for the alert stream: published, marked sent
        store.mark_sent([key for key, _ in put.outbox])
        alerted = time.time()
        t4 = time.perf_counter()
        source.ack(deliveries)
        t5 = time.perf_counter()
        spent = (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)
        for name, seconds in zip(stages, spent, strict=True):
            stages[name] += seconds
        latencies += [alerted - int(d.id.split("-")[0]) / 1000 for d in deliveries]
        done += len(deliveries)
    assert started is not None
    seconds = time.perf_counter() - started
    stages["cpu"] = time.process_time() - cpu
    source.close()
    return seconds, stages, latencies


def consume_as_the_service(
    port: int,
    stream: str,
    store: PeriodStore,
    total: int,
    batch: int,
    log: Path,
    minimum: str | None,
) -> tuple[float, dict[str, float], list[float]]:
    """Consume ``total`` records as a streaming node does (``riskprop.service.streaming``): the
    ``Consumer`` with the shipped rules' transaction-level and windowed alerts in the outbox,
    published to a Redis alert stream and the alert log, latencies of the published alerts
    from the broker's append time, each observed by the ``/metrics`` histogram. (seconds,
    {"cpu": s}, alert latencies in s)."""
    client = redis.Redis(port=port)
    source = RedisStreamSource(client, stream, "node", "c1", dead_stream=f"{stream}.dead")
    ruleset = load_rules(default_rules_path())
    latencies: list[float] = []
    histogram = StreamMetrics(CollectorRegistry()).latency

    def observe(seconds: list[float]) -> None:
        """What the service does with them (``StreamWorker._observe``): kept, and each one
        observed by the ``/metrics`` latency histogram."""
        latencies.extend(seconds)
        for x in seconds:
            histogram.observe(x)

    consumer = Consumer(
        source,
        store,
        RecordRules(bank="alice"),
        batch=batch,
        outbox=outbox("alice", ruleset, windows=Windows("alice", ruleset), minimum=minimum),
        publish=Fanout(
            RedisAlertSink(redis.Redis(port=port), f"{stream}.alerts"), AlertLog(log)
        ).publish,
        latencies=observe,
    )
    settle_gc()  # as the service does once its consumer is built
    while consumer.step(1.0) is None:  # the first batch starts the clock
        pass
    started = time.perf_counter()
    cpu = time.process_time()
    first = consumer.progress.received
    while consumer.progress.received < total:
        consumer.step(1.0)
    seconds = time.perf_counter() - started
    # the first batch is left out of the rate (it ran before the clock), not of the latencies
    scale = (total - first) / total
    source.close()
    return seconds / scale, {"cpu": (time.process_time() - cpu) / scale}, latencies


def consume_with(
    args: argparse.Namespace, port: int, stream: str, store: PeriodStore, total: int, folder: Path
) -> tuple[float, dict[str, float], list[float]]:
    """``total`` records of ``stream`` through the consumer ``args`` chose: the hand loop
    (``--stages``) or the service's, whose alert log is ``folder/<stream>.jsonl``."""
    if args.stages:
        return consume(port, stream, store, total, args.batch)
    log = folder / f"{stream}.jsonl"
    return consume_as_the_service(port, stream, store, total, args.batch, log, args.alert_level)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--transactions", type=int, default=200_000)
    parser.add_argument("--rate", type=float, default=20_000, help="live producer records/s")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument(
        "--stages",
        action="store_true",
        help="the hand-written loop timing each stage (transaction-level alerts only, not "
        "published) instead of the service's consumer (all alerts, published)",
    )
    parser.add_argument(
        "--alert-level",
        help="publish alerts of this level or above only (stream.alert_level; default: all)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        accounts = max(600, args.transactions // 20)
        generate_raw(
            folder / "gen",
            banks=["alice", "bob"],
            accounts=accounts,
            transactions=args.transactions,
            days=7,
        )
        lines = (folder / "gen" / "alice" / "raw.csv").read_bytes().splitlines()[1:]
        origin = EPOCH // DAY * DAY - DAY  # the generator's times start at EPOCH, in any zone
        process, port = start_redis(folder)
        try:
            mode = "stages (hand loop)" if args.stages else "the service's consumer, all alerts"
            print(f"records {len(lines)} batch {args.batch}; {mode}")
            started = time.perf_counter()
            produce(port, "backlog", lines, 0)
            produced = time.perf_counter() - started
            print(f"producer (one process, pipelines of 100): {len(lines) / produced:.0f} rec/s")
            store = PeriodStore(folder / "backlog.db", origin=origin, length=DAY)
            seconds, stages, _ = consume_with(args, port, "backlog", store, len(lines), folder)
            print(f"backlog consumer: {len(lines) / seconds:.0f} rec/s")
            for name, spent in stages.items():
                print(f"  {name:12s} {spent:7.2f} s  {spent / len(lines) * 1e6:6.1f} us/record")
            store.close()

            store = PeriodStore(folder / "live.db", origin=origin, length=DAY)
            producer = multiprocessing.Process(
                target=produce, args=(port, "live", lines, args.rate)
            )
            producer.start()
            seconds, live, latency = consume_with(args, port, "live", store, len(lines), folder)
            producer.join()
            store.close()
            p50, p99 = np.percentile(latency, [50, 99])
            print(
                f"live at {args.rate:.0f} rec/s offered: consumed {len(lines) / seconds:.0f}"
                f" rec/s; alert latency p50 {p50 * 1000:.1f} ms p99 {p99 * 1000:.1f} ms"
                f" max {max(latency) * 1000:.1f} ms;"
                f" consumer CPU {live['cpu'] / len(lines) * 1e6:.1f} us/record"
            )
        finally:
            process.terminate()
            process.wait()


if __name__ == "__main__":
    main()
