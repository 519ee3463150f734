"""Alerts through the store's outbox: a consumer that dies after the commit and before
publishing loses no alert, and a re-delivered batch raises none twice (no broker needed: an
in-memory source with the StreamSource contract)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from riskprop.lab.rawgen import generate_raw
from riskprop.scoring.raw import read_raw
from riskprop.scoring.rules import default_rules_path, load_rules, score
from riskprop.stream.alerts import outbox
from riskprop.stream.consumer import Consumer
from riskprop.stream.records import RecordRules
from riskprop.stream.source import Delivery
from riskprop.stream.store import PeriodStore, Put

DAY = 86_400


class MemorySource:
    """Records in order; a delivery never acknowledged is delivered again to the next life
    (``acked`` is the broker's state, shared across lives)."""

    def __init__(self, bodies: list[bytes], acked: set[str]) -> None:
        self.bodies, self.acked, self.handed = bodies, acked, 0

    def receive(self, count: int, wait: float) -> list[Delivery]:
        out: list[Delivery] = []
        while self.handed < len(self.bodies) and len(out) < count:
            key = str(self.handed)
            if key not in self.acked:
                out.append(Delivery(key, self.bodies[self.handed]))
            self.handed += 1
        return out

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        self.acked.update(d.id for d in deliveries)

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        raise AssertionError(f"no bad records here: {reason}")

    def lag(self) -> int | None:
        return len(self.bodies) - self.handed

    def close(self) -> None:
        pass


class DiedError(Exception):
    pass


def test_no_alert_is_lost_or_raised_twice_across_a_crash(tmp_path: Path) -> None:
    generate_raw(tmp_path / "gen", banks=["alice", "bob"], accounts=600, transactions=3000, days=4)
    path = tmp_path / "gen" / "alice" / "raw.csv"
    rules = load_rules(default_rules_path())
    raw = read_raw(path)
    ids = raw.tx_id.tolist()
    expected = list(dict.fromkeys(ids[row] for row in score(raw, "alice", rules).alerts.row))
    bodies = path.read_bytes().splitlines()[1:]
    origin = int(raw.time.min()) // DAY * DAY
    store = PeriodStore(tmp_path / "s.db", origin=origin, length=DAY)
    published: list[str] = []
    acked: set[str] = set()

    def publish(messages: Sequence[tuple[str, bytes]]) -> None:
        for key, payload in messages:
            assert json.loads(payload)["tx_id"] == key
            published.append(key)

    def dies_at_third(deliveries: list[Delivery], put: Put) -> None:
        if len(acked) == 2 * 50:  # after the third batch's commit, before publish and ack
            raise DiedError

    first = Consumer(
        MemorySource(bodies, acked),
        store,
        RecordRules(bank="alice"),
        batch=50,
        outbox=outbox("alice", rules),
        publish=publish,
        committed=dies_at_third,
    )
    with pytest.raises(DiedError):
        while first.step(0) is not None:
            pass
    assert len(store.unsent()) > 0  # the third batch's alerts, committed, not yet published

    second = Consumer(
        MemorySource(bodies, acked),
        store,
        RecordRules(bank="alice"),
        batch=50,
        outbox=outbox("alice", rules),
        publish=publish,
    )
    while second.step(0) is not None:
        pass
    assert second.progress.duplicates == 50  # the third batch, delivered again
    assert store.unsent() == []
    assert published == expected  # each alert once, in the transactions' order
