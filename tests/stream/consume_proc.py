"""A consumer process for the kill tests: ``python consume_proc.py PORT STORE CONSUMER KILL_AT``.

Consumes the ``tx`` stream of the redis-server on PORT into the store at STORE as CONSUMER of
group ``node`` (claiming entries other consumers left pending), 37 records a batch, until a
receive finds nothing. With KILL_AT > 0 it kills itself with SIGKILL right after the store's
commit of batch KILL_AT, before the acknowledgement: the worst moment for the guarantee."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import redis

from riskprop.stream.consumer import Consumer
from riskprop.stream.records import RecordRules
from riskprop.stream.redis_source import RedisStreamSource
from riskprop.stream.source import Delivery
from riskprop.stream.store import PeriodStore, Put

ORIGIN, DAY = 1_764_374_400, 86_400


def main(port: int, store_path: Path, consumer: str, kill_at: int) -> None:
    client = redis.Redis(host="127.0.0.1", port=port)
    source = RedisStreamSource(client, "tx", "node", consumer, dead_stream="tx-dead", claim_idle=0)
    store = PeriodStore(store_path, origin=ORIGIN, length=DAY)
    batches = [0]

    def committed(deliveries: list[Delivery], put: Put) -> None:
        batches[0] += 1
        if batches[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    run = Consumer(source, store, RecordRules(bank="alice"), batch=37, committed=committed)
    while run.step(wait=0.05) is not None:
        pass
    store.close()
    source.close()


if __name__ == "__main__":
    main(int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
