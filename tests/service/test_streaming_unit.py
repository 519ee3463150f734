"""The service's stream worker against a real redis-server that is down, then up; and
``riskprop stream produce``."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from helpers import run_cli
from stream.brokers import ALERTS, DEAD, IN_CI, STREAM, kafka_broker, redis_broker

from riskprop.config import StreamSettings
from riskprop.errors import ConfigError
from riskprop.lab.rawgen import EPOCH, generate_raw
from riskprop.localnet.harness import free_ports
from riskprop.scoring.rules import default_rules_path
from riskprop.service.metrics import NodeMetrics
from riskprop.service.streaming import StreamWorker, known_accounts, prune_periods
from riskprop.stream.records import DeadLetter, RecordRules, parse
from riskprop.stream.store import PeriodStore
from riskprop.stream.windows import Windows

#: Polls of a condition before a test gives up (a liveness limit, not a speed assertion).
POLLS = 2000


def eventually(condition: Callable[[], bool], what: str) -> None:
    for _ in range(POLLS):
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"never: {what}")


@contextmanager
def redis_on(port: int, folder: Path) -> Iterator[redis.Redis]:
    program = shutil.which("redis-server")
    if program is None:
        if IN_CI:
            pytest.fail("redis-server is not installed (.ci/run installs it)")
        pytest.skip("redis-server not installed")
    process = subprocess.Popen(
        [
            *(program, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder)),
            *("--save", "", "--appendonly", "no"),
        ],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        eventually(lambda: _pings(client), "redis-server answers")
        yield client
    finally:
        client.close()
        process.terminate()
        process.wait(30)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


class Config:
    """The two fields of a player's configuration the worker reads."""

    def __init__(self, stream: StreamSettings) -> None:
        self.stream, self.player = stream, "alice"


def settings(tmp: Path, port: int) -> StreamSettings:
    return StreamSettings(
        broker="redis",
        address=f"redis://127.0.0.1:{port}/0",
        topic="tx",
        group="g",
        consumer="alice",
        dead_letters="tx.dead",
        alerts="tx.alerts",
        store=tmp / "stream" / "store.db",
        alert_log=tmp / "stream" / "alerts.jsonl",
        batch=100,
    )


def test_a_worker_waits_for_its_broker_and_then_consumes(tmp_path: Path) -> None:
    generate_raw(tmp_path / "gen", banks=["alice", "bob"], accounts=200, transactions=800, days=3)
    rows = (tmp_path / "gen" / "alice" / "raw.csv").read_bytes().splitlines()[1:]
    port = free_ports(1)[0]
    metrics = NodeMetrics("alice", stream=True)
    assert metrics.stream is not None
    worker = StreamWorker(Config(settings(tmp_path, port)), metrics.stream)  # type: ignore[arg-type]
    worker.start()
    try:
        eventually(lambda: "ConnectionError" in (worker.problem or ""), "the broker is down")
        assert worker.status()["state"] == "down"
        assert metrics.stream.up._value.get() == 0
        with redis_on(port, tmp_path) as client:
            for row in rows:
                client.xadd("tx", {"record": row})
            eventually(lambda: worker.status()["records"]["stored"] == len(rows), "all stored")
            status = worker.status()
            assert status["state"] == "consuming" and status["problem"] is None
            assert status["last_offset"] is not None
            assert status["records"]["dead"] == status["records"]["duplicates"] == 0
            alerts = client.xlen("tx.alerts")
            assert alerts == status["alerts"] > 0
            p50, p99 = status["alert_latency_p50_seconds"], status["alert_latency_p99_seconds"]
            assert 0 <= p50 <= p99
            lines = (tmp_path / "stream" / "alerts.jsonl").read_text().splitlines()
            assert len(lines) == alerts
    finally:
        worker.stop()
    assert worker.status()["state"] == "stopped"
    assert (tmp_path / "stream").stat().st_mode & 0o077 == 0
    assert (tmp_path / "stream" / "store.db").stat().st_mode & 0o077 == 0


def test_a_worker_consumes_from_kafka(tmp_path: Path) -> None:
    """The service's worker on the Kafka-compatible broker (tansu): every record stored once,
    each alert published to the alert topic."""
    generate_raw(tmp_path / "gen", banks=["alice", "bob"], accounts=200, transactions=800, days=3)
    rows = (tmp_path / "gen" / "alice" / "raw.csv").read_bytes().splitlines()[1:]
    metrics = NodeMetrics("alice", stream=True)
    assert metrics.stream is not None
    with kafka_broker(tmp_path / "kafka") as broker:
        broker.produce(rows)
        given = dataclasses.replace(
            settings(tmp_path, 0),
            broker="kafka",
            address=broker.address,
            topic=STREAM,
            dead_letters=DEAD,
            alerts=ALERTS,
        )
        worker = StreamWorker(Config(given), metrics.stream)  # type: ignore[arg-type]
        worker.start()
        try:
            eventually(lambda: worker.status()["records"]["stored"] == len(rows), "all stored")
            assert worker.status()["state"] == "consuming"
        finally:
            worker.stop()
        published = worker.status()["alerts"]
        lines = (tmp_path / "stream" / "alerts.jsonl").read_text().splitlines()
        assert published == len(lines) > 0


def test_records_of_accounts_the_bank_does_not_know_are_dead_letters(tmp_path: Path) -> None:
    generate_raw(tmp_path / "gen", banks=["alice", "bob"], accounts=200, transactions=800, days=3)
    rows = (tmp_path / "gen" / "alice" / "raw.csv").read_bytes().splitlines()[1:]
    known = sorted({f"alice-{i:07d}" for i in range(0, 100)})
    accounts = tmp_path / "accounts.csv"
    accounts.write_text("id,risk_score\n" + "".join(f"{a},0\n" for a in known))
    rules = RecordRules(bank="alice", accounts=frozenset(known))
    reasons = [r.reason for r in (parse(row, rules) for row in rows) if isinstance(r, DeadLetter)]
    assert reasons and all("is not a known account of bank 'alice'" in r for r in reasons)
    metrics = NodeMetrics("alice", stream=True)
    assert metrics.stream is not None
    with redis_broker(tmp_path / "redis") as broker:
        given = dataclasses.replace(
            settings(tmp_path, int(broker.address)),
            accounts=accounts,
            topic=STREAM,
            dead_letters=DEAD,
        )
        broker.produce(rows)
        worker = StreamWorker(Config(given), metrics.stream)  # type: ignore[arg-type]
        worker.start()
        try:
            eventually(
                lambda: sum(worker.status()["records"].values()) == len(rows), "all consumed"
            )
            assert worker.status()["records"]["dead"] == len(reasons)
            assert [reason for reason, _ in broker.dead_letters(len(reasons))] == reasons
        finally:
            worker.stop()
    bad = tmp_path / "bad.csv"
    bad.write_text("account\nalice-1\n")
    with pytest.raises(ConfigError, match=r"bad.csv:1: the accounts file needs an id column"):
        known_accounts(bad)


def test_old_period_folders_are_pruned(tmp_path: Path) -> None:
    for name in ("2026-11-20T0000-p3", "2026-11-21T0000-p4", "2026-11-22T0000-p5", ".tmp"):
        (tmp_path / name).mkdir()
    prune_periods(tmp_path, 2, in_use=tmp_path / "2026-11-22T0000-p5")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".tmp",
        "2026-11-21T0000-p4",
        "2026-11-22T0000-p5",
    ]


def test_produce_publishes_a_raw_file_moved_to_a_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    generate_raw(tmp_path / "gen", banks=["alice", "bob"], accounts=200, transactions=800, days=3)
    raw = tmp_path / "gen" / "alice" / "raw.csv"
    with redis_broker(tmp_path / "redis") as broker:
        url = f"redis://127.0.0.1:{broker.address}/0"
        args = ["stream", "produce", str(raw), "--to", url, "--topic", "t", "--format", "json"]
        code, out, err = run_cli([*args, "--count", "50", "--start", "2026-03-01T00:00Z"], capsys)
        assert code == 0, err
        assert out.startswith("produced 50 records to t")
        entries: Any = broker.client.xrange("t")
        assert len(entries) == 50
        first = json.loads(entries[0][1][b"record"])
        stamp = datetime.fromisoformat(first["timestamp"].replace("Z", "+00:00"))
        written = datetime.fromisoformat(raw.read_text().splitlines()[1].split(",")[1])
        written = written.astimezone(UTC)
        # the first day's UTC midnight moves to the start: times of day are kept
        midnight = written.replace(hour=0, minute=0, second=0)
        assert stamp - datetime(2026, 3, 1, tzinfo=UTC) == written - midnight
        header = raw.read_text().splitlines()[0].split(",")
        assert list(first) == header
        # --live: each record stamped with the time it was sent
        before = datetime.now(UTC).replace(microsecond=0)
        code, out, err = run_cli([*args[:-2], "--topic", "l", "--count", "20", "--live"], capsys)
        after = datetime.now(UTC)
        assert code == 0, err
        live: Any = broker.client.xrange("l")
        for _, fields in live:
            sent = datetime.fromisoformat(fields[b"record"].split(b",")[1].decode())
            assert before <= sent <= after
        # without a file: generated transactions of --bank, CSV records
        code, out, err = run_cli(["stream", "produce", "--to", url, "--topic", "g"], capsys)
        assert code == 0, err
        assert broker.client.xlen("g") > 1000
        # bad input: one line naming the file
        bad = tmp_path / "bad.csv"
        bad.write_text("a,b\n1,2\n")
        code, out, err = run_cli(
            ["stream", "produce", str(bad), "--to", url, "--topic", "t"], capsys
        )
        assert code == 1
        assert err.strip() == f"riskprop: error: {bad}:1: not riskprop's raw layout " + (
            "(header " + ",".join(header) + ")"
        )
        code, out, err = run_cli(
            ["stream", "produce", str(raw), "--to", url, "--topic", "t", "--start", "soon"], capsys
        )
        assert code == 1 and err.count("\n") == 1 and "--start: 'soon'" in err


def test_produce_streams_a_network_with_one_time_per_transaction(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Several banks from one generated network: each bank's records to its own stream, a
    transaction between two of them stamped alike in both, replayed under new ids."""
    small = ["--accounts", "180", "--transactions", "300", "--days", "3"]
    with redis_broker(tmp_path / "redis2") as broker:
        url = f"redis://127.0.0.1:{broker.address}/0"
        base = ["stream", "produce", "--to", url, *small]
        code, _, err = run_cli([*base, "--topic", "t", "--bank", "alice,bob"], capsys)
        assert code == 1 and "--topic: give {bank} in it" in err
        code, _, err = run_cli([*base, "--topic", "t.{bank}", "--loop"], capsys)
        assert code == 1 and "--loop goes with --live" in err
        command = [*base, "--topic", "t.{bank}", "--bank", "alice,bob", "--live", "--loop"]
        code, out, err = run_cli([*command, "--count", "1500"], capsys)
        assert code == 0 and out.startswith("produced 1500 records to t.alice, t.bob"), err
        times: dict[str, dict[str, str]] = {}
        for bank in ("alice", "bob"):
            entries: Any = broker.client.xrange(f"t.{bank}")
            for _, fields in entries:
                row = fields[b"record"].decode().split(",")
                utc = datetime.fromisoformat(row[1]).astimezone(UTC).isoformat()
                times.setdefault(row[0], {})[bank] = utc
        assert sum(len(t) for t in times.values()) == 1500
        shared = [t for t in times.values() if len(t) == 2]
        assert shared and all(t["alice"] == t["bob"] for t in shared)
        assert any(tx_id.endswith("~1") for tx_id in times)  # the second round


@pytest.mark.parametrize("windowed", [True, False])
def test_a_period_close_purges_what_neither_the_folders_nor_the_windows_need(
    tmp_path: Path, windowed: bool
) -> None:
    """Hourly periods, two folders kept: without windowed rules the store keeps the two newest
    closed periods; with the shipped rules (longest window 7 days) it keeps the last 14 days."""
    generate_raw(tmp_path / "gen", banks=["alice", "bob"], accounts=200, transactions=1500, days=3)
    rules = tmp_path / "rules.yaml"
    shipped = default_rules_path().read_text()
    if not windowed:  # the rules without the four windowed ones
        shipped = re.sub(
            r"  - name: (cash_structuring|pass_through|fan_in|fan_out)\n(    .*\n)+", "", shipped
        )
    rules.write_text(shipped)
    given = dataclasses.replace(
        settings(tmp_path, 0), period_length=3600, origin=EPOCH, close_after=0, rules=rules
    )
    store = PeriodStore(given.store, origin=EPOCH, length=3600)
    rows = (tmp_path / "gen" / "alice" / "raw.csv").read_bytes().splitlines()[1:]
    parsed = [parse(row, RecordRules(bank="alice")) for row in rows]
    store.put([(f"d{i}", r, b"") for i, r in enumerate(parsed)])
    held = store.periods()
    store.close()
    metrics = NodeMetrics("alice", stream=True)
    assert metrics.stream is not None
    worker = StreamWorker(Config(given), metrics.stream)  # type: ignore[arg-type]
    assert (Windows(given.consumer, worker.rules).longest > 0) == windowed
    last = max(held)
    at = datetime.fromtimestamp(EPOCH + (last + 1) * 3600, UTC)  # closes the last period
    closed = worker.close_period(at, root=tmp_path / "periods", members=["alice", "bob"], keep=2)
    assert closed.period == last
    store = PeriodStore(given.store, origin=EPOCH, length=3600)
    kept = store.periods()
    store.close()
    if windowed:  # three days of transactions lie within two 7-day windows
        assert kept == held
    else:
        assert kept == {p: n for p, n in held.items() if p >= last - 1}
    assert len(list((tmp_path / "periods").iterdir())) == 1


def test_a_node_without_a_stream_does_not_load_the_streaming_code() -> None:
    """The service imports its stream worker only for a stream section: a batch node's
    start-up pays nothing for it."""
    probe = (
        "import sys, riskprop.cli, riskprop.service.daemon; "
        "print(sorted(m for m in sys.modules if m.startswith(('riskprop.stream', "
        "'riskprop.service.streaming'))))"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert found.strip() == "[]"
