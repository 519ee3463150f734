"""Streaming nodes as real service processes on a real redis-server: each bank's transactions
are consumed from its stream, alerted on, and the run closes the period and propagates it; the
results equal the plaintext engine on ``riskprop score --periods 1`` of the same records."""

from __future__ import annotations

import functools
import json
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from nodes import Network, assert_matches_plaintext, make_network
from service.services import Services, services
from service.test_service import QUICK, metrics
from stream.brokers import RedisBroker, redis_broker

from riskprop.lab.rawgen import EPOCH, generate_raw
from riskprop.scoring.pipeline import score_bank
from riskprop.stream.produce import RedisPublisher, network_records, produce

PARTIES = ["alice", "bob", "charlie"]
WEEK = 7 * 86_400
#: Records that are no transaction of their node: each becomes a dead letter with its reason.
BAD = [b"not,enough,fields", b'{"tx_id": "x"}', b"\xff\xfe"]


@pytest.fixture
def network(tmp_path: Path) -> Network:
    return make_network(tmp_path, PARTIES, timeouts=QUICK)


def origin() -> datetime:
    """Periods of a week from a week before today's UTC midnight: the period a run started
    today closes is period 0, whatever the time of day."""
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight - timedelta(days=7)


def streaming(port: int, start: datetime, player: dict[str, Any]) -> None:
    name = player["player"]
    player["stream"] = {
        "broker": "redis",
        "address": f"redis://127.0.0.1:{port}/0",
        "topic": f"tx.{name}",
        "period_length": "7d",
        "origin": start.isoformat().replace("+00:00", "Z"),
        "close_after": 0,
        "batch": 200,
    }


def trigger(running: Services, party: str) -> None:
    request = urllib.request.Request(running.url(party, "/runs"), data=b"{}", method="POST")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 202


def stream_status(running: Services, party: str) -> dict[str, Any]:
    status = running.status(party)
    return status["stream"] if status and status["stream"] else {}


def test_streaming_nodes_alert_close_their_period_and_propagate(
    network: Network, tmp_path: Path
) -> None:
    generate_raw(tmp_path / "raw", banks=PARTIES, accounts=240, transactions=2400, days=3, seed=4)
    start = origin()
    shift = start.timestamp() - EPOCH  # the generated days move into period 0
    batch = tmp_path / "batch"
    counts = {}
    with redis_broker(tmp_path / "redis") as broker, services(network, None) as running:
        port = int(broker.address)
        url = f"redis://127.0.0.1:{port}/0"
        publishers = {p: RedisPublisher(url, f"tx.{p}") for p in PARTIES}
        files = {p: tmp_path / "raw" / p / "raw.csv" for p in PARTIES}
        items = list(network_records(files, shift=shift))  # one network, in time order
        assert produce(iter(items), publishers).records == len(items)
        header = files["alice"].read_text().splitlines()[0]
        for party in PARTIES:
            running.edit(party, functools.partial(streaming, port, start))
            publishers[party].send(BAD)
            publishers[party].close()
            # the batch input of the same records, in the order they were streamed
            bodies = [body.decode() for bank, body in items if bank == party]
            counts[party] = len(bodies)
            shifted = tmp_path / "shifted" / f"{party}.csv"
            shifted.parent.mkdir(exist_ok=True)
            shifted.write_text("\n".join([header, *bodies]) + "\n")
            score_bank(shifted, party, batch, periods=1, members=PARTIES)
        for party in PARTIES:
            running.start(party)

        def consumed() -> bool:
            return all(
                stream_status(running, p).get("records", {}).get("stored") == counts[p]
                and stream_status(running, p)["records"]["dead"] == len(BAD)
                for p in PARTIES
            )

        running.wait("every record consumed", consumed)
        for party in PARTIES:
            trigger(running, party)
        running.wait(
            "the run at every bank",
            lambda: all("test-run" in running.succeeded(p) for p in PARTIES),
        )
        # every bank's scores equal the plaintext engine's on the batch-scored files
        assert_matches_plaintext(network, lambda p: network.out / p / "runs" / "test-run", batch)
        check_alerts(running, broker, network)
        for party in PARTIES:
            status = stream_status(running, party)
            assert status["state"] == "consuming" and status["problem"] is None
            assert status["records"]["duplicates"] == 0
            assert status["last_closed"]["period"] == 0
            assert status["last_closed"]["transactions"] == counts[party]
            assert running.stop(party) == 0


def check_alerts(running: Services, broker: RedisBroker, network: Network) -> None:
    """The alert stream and the alert log hold each alert once; /metrics has the latency."""
    for party in PARTIES:
        entries: Any = broker.client.xrange(f"tx.{party}.alerts")
        streamed = [json.loads(fields[b"alert"]) for _, fields in entries]
        assert streamed, party  # the generator plants what the transaction-level rules see
        log = network.out / party / "stream" / "alerts.jsonl"
        assert [json.loads(line) for line in log.read_text().splitlines()] == streamed
        assert log.stat().st_mode & 0o077 == 0
        assert len({a["tx_id"] for a in streamed}) == len(streamed)
        assert all(a["accounts"] and a["level"] and a["rules"] for a in streamed)
        dead: Any = broker.client.xrange(f"tx.{party}.dead")
        assert len(dead) == len(BAD)
        found = metrics(running, party)
        assert found["riskprop_stream_records_total"][(("outcome", "dead"),)] == len(BAD)
        assert found["riskprop_stream_alert_latency_seconds_count"][()] == len(streamed)
        assert found["riskprop_stream_up"][()] == 1
        assert found["riskprop_stream_last_closed_period"][()] == 0
