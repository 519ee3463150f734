"""A consumer process for the kill tests:
``python consume_proc.py KIND ADDRESS STORE CONSUMER KILL_AT EXPECTED``.

Consumes the ``tx`` stream of the KIND broker (redis, kafka) at ADDRESS into the store at STORE
as CONSUMER (``brokers.make_source``), 37 records a batch, until the store holds EXPECTED
transactions (an empty receive is no proof of the end: a Kafka fetch may come back empty while
the partition is being assigned, and tansu's end offsets are wrong, see brokers.py). With
KILL_AT > 0 it kills itself with SIGKILL right after the store's commit of batch KILL_AT, before
the acknowledgement: the worst moment for the guarantee."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from stream.brokers import make_source

from riskprop.stream.consumer import Consumer
from riskprop.stream.records import RecordRules
from riskprop.stream.source import Delivery
from riskprop.stream.store import PeriodStore, Put

ORIGIN, DAY = 1_764_374_400, 86_400


def main(
    kind: str, address: str, store_path: Path, consumer: str, kill_at: int, expected: int
) -> None:
    source = make_source(kind, address, consumer)
    store = PeriodStore(store_path, origin=ORIGIN, length=DAY)
    batches = [0]

    def committed(deliveries: list[Delivery], put: Put) -> None:
        batches[0] += 1
        if batches[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    run = Consumer(source, store, RecordRules(bank="alice"), batch=37, committed=committed)
    while store.counts()["stored"] < expected:
        run.step(wait=0.5)
    store.close()
    source.close()


if __name__ == "__main__":
    kind, address, store, consumer, kill_at, expected = sys.argv[1:]
    main(kind, address, Path(store), consumer, int(kill_at), int(expected))
