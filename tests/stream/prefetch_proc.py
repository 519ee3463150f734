"""A consumer process with a receive thread for the kill tests:
``python prefetch_proc.py KIND ADDRESS STORE CONSUMER KILL_AT EXPECTED``.

As ``consume_proc.py`` (37 records a batch until the store holds EXPECTED transactions; with
KILL_AT > 0 a SIGKILL of itself right after the store's commit of batch KILL_AT, before its
acknowledgement), but its source is wrapped in :class:`~riskprop.stream.prefetch.Prefetch` of
depth 2, so when it dies up to three more batches are received and not acknowledged. On Redis
``claim_idle`` is 0.5 s, not 0: a consumer with a receive thread would otherwise claim its own
in-flight entries again (see prefetch.py)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import redis
from stream.brokers import DEAD, GROUP, STREAM, make_source

from riskprop.stream.consumer import Consumer
from riskprop.stream.prefetch import Prefetch
from riskprop.stream.records import RecordRules
from riskprop.stream.redis_source import RedisStreamSource
from riskprop.stream.source import Delivery, StreamSource
from riskprop.stream.store import PeriodStore, Put

ORIGIN, DAY, BATCH = 1_764_374_400, 86_400, 37


def main(
    kind: str, address: str, store_path: Path, consumer: str, kill_at: int, expected: int
) -> None:
    inner: StreamSource
    if kind == "redis":
        client = redis.Redis(host="127.0.0.1", port=int(address))
        inner = RedisStreamSource(client, STREAM, GROUP, consumer, dead_stream=DEAD, claim_idle=0.5)
    else:
        inner = make_source(kind, address, consumer)
    source = Prefetch(inner, count=BATCH, wait=0.2, depth=2)
    store = PeriodStore(store_path, origin=ORIGIN, length=DAY)
    batches = [0]

    def committed(deliveries: list[Delivery], put: Put) -> None:
        batches[0] += 1
        if batches[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    run = Consumer(source, store, RecordRules(bank="alice"), batch=BATCH, committed=committed)
    while store.counts()["stored"] < expected:
        run.step(wait=0.5)
    store.close()
    source.close()


if __name__ == "__main__":
    kind, address, store, consumer, kill_at, expected = sys.argv[1:]
    main(kind, address, Path(store), consumer, int(kill_at), int(expected))
