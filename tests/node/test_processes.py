"""Real node processes over mutual TLS on loopback: the thin layer of networked tests."""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest
import yaml
from nodes import assert_matches_plaintext, make_network, wait_all

from riskprop.config import load_player_config
from riskprop.files.results import REPORT_FILE, NodeReport
from riskprop.node.http import PATH
from riskprop.node.tls import client_context, make_ca, make_node_certificate


@pytest.mark.parametrize("parties", [["alice", "bob", "charlie"], ["a1", "b2", "c3", "d4", "e5"]])
def test_nodes_in_reverse_order_match_plaintext(
    tmp_path: Path, parties: list[str], processes: list[subprocess.Popen[bytes]]
) -> None:
    network = make_network(tmp_path, parties)
    certs = network.certs
    for index, party in reversed(list(enumerate(parties))):
        processes.append(network.start(party))
        if index == 0:
            break  # the last to start: its run may be over before a probe reaches it
        # the next one starts once this one listens: the order is the test's, not the clock's
        prober = parties[index - 1]
        member = client_context(certs / f"{prober}.pem", certs / f"{prober}.key", certs / "ca.pem")
        wait_listening(network.url(party), member, processes[-1])
    codes = wait_all(processes, 120)
    assert codes == [0] * len(parties), [network.log(p)[-2000:] for p in parties]
    assert_matches_plaintext(network)
    assert "results in" in network.log(parties[0])
    assert "scores to" in network.log(parties[0])  # bytes per iteration are logged
    for party in parties:  # the run report: wall and session-thread CPU seconds per phase
        report = NodeReport.from_json(json.loads((network.out / party / REPORT_FILE).read_text()))
        assert report.cpu_seconds.keys() == report.seconds.keys() >= {"decrypt", "write"}
        assert all(0 <= report.cpu_seconds[k] <= v + 1e-3 for k, v in report.seconds.items())
        assert NodeReport.from_json(report.to_json()) == report


def test_nodes_with_compute_workers_match_plaintext(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    """Every node shares its linear steps (about 10,000 terms each, over the 4,096 of a batch)
    out to its own pool of two worker processes, alice her partial decryptions too (her
    operator's ``share_in_workers``); the results are the plaintext engine's."""
    parties = ["alice", "bob", "charlie"]
    network = make_network(tmp_path, parties, accounts=1000, edges=10_000, workers=2)
    path = network.configs / "alice.yaml"
    settings = yaml.safe_load(path.read_text())
    settings["compute"]["share_in_workers"] = True
    path.write_text(yaml.safe_dump(settings))
    processes += [network.start(party) for party in parties]
    codes = wait_all(processes, 300)
    assert codes == [0] * len(parties), [network.log(p)[-2000:] for p in parties]
    assert_matches_plaintext(network)
    for party in parties:
        log = network.log(party)
        assert "compute workers: 2" in log
        assert ("compute workers: 2, the key share in them" in log) == (party == "alice")
        batches = re.search(r"(\d+) compute batches in 2 worker processes", log)
        assert batches is not None and int(batches.group(1)) > 0, log[-2000:]


def test_nodes_on_a_dask_cluster_match_plaintext(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    """The three nodes send their linear steps (about 10,000 terms each) to one Dask
    ``LocalCluster`` of two worker processes; the results are the plaintext engine's."""
    from distributed import LocalCluster

    parties = ["alice", "bob", "charlie"]
    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},  # its HTTP server: any port
    ) as cluster:
        address = cluster.scheduler_address
        network = make_network(tmp_path, parties, accounts=1000, edges=10_000, dask=address)
        processes += [network.start(party) for party in parties]
        codes = wait_all(processes, 300)
    assert codes == [0] * len(parties), [network.log(p)[-2000:] for p in parties]
    assert_matches_plaintext(network)
    for party in parties:
        log = network.log(party)
        assert f"compute workers: 2 on the Dask cluster at {address}" in log
        batches = re.search(r"(\d+) compute batches in 2 worker processes on the Dask", log)
        assert batches is not None and int(batches.group(1)) > 0, log[-2000:]


def test_an_unreachable_dask_scheduler_is_one_line_naming_it(tmp_path: Path) -> None:
    """``--dask`` overrides the file's ``workers``; the node fails before its run starts."""
    network = make_network(tmp_path, ["alice", "bob"])
    command = [*network.command("alice"), "--dask", "tcp://127.0.0.1:9"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "riskprop: error: cannot reach the Dask scheduler at tcp://127.0.0.1:9 within 10 s"
    ), done.stderr


def test_missing_peer_fails_others_with_its_name(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    # connect: long enough for the two to reach each other however unevenly a busy machine
    # starts them, short enough that giving up on charlie is quick
    timeouts = {"connect": 6, "request": 6, "idle": 6, "deadline": 600}
    network = make_network(tmp_path, ["alice", "bob", "charlie"], timeouts=timeouts)
    processes.extend(network.start(p) for p in ("alice", "bob"))  # charlie never comes up
    codes = wait_all(processes, 300)
    assert codes == [1, 1]
    for party in ("alice", "bob"):
        # they gave up on charlie at the handshake (connect), not at the run's deadline
        last = network.log(party).strip().splitlines()[-1]
        assert last == "riskprop: error: peer charlie is unavailable during handshake", last
        assert "gave up after 6 s" in network.log(party)
        assert not (network.out / party / "risk_scores.csv").exists()


async def post(url: str, context: ssl.SSLContext | None, body: bytes) -> int:
    connector = aiohttp.TCPConnector(ssl=context if context is not None else False)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(url + PATH, data=body) as response,
    ):
        return response.status


def wait_listening(
    url: str,
    context: ssl.SSLContext,
    process: subprocess.Popen[bytes] | None = None,
    timeout: float = 120.0,
) -> None:
    """Until the node at ``url`` answers, or ``process`` (the node) has exited (the caller
    checks its exit code); ``timeout`` is a liveness limit for a hung node."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            asyncio.run(post(url, context, b""))
            return
        except (aiohttp.ClientError, OSError):
            if process is not None and process.poll() is not None:
                return
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_strangers_and_oversized_bodies_are_refused_and_the_run_still_completes(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    network = make_network(tmp_path, ["alice", "bob", "charlie"])
    alice_file = network.configs / "alice.yaml"
    settings = yaml.safe_load(alice_file.read_text())
    settings["limits"] = {"max_body_mb": 1}
    alice_file.write_text(yaml.safe_dump(settings))
    limit = load_player_config(network.configs, "alice").max_body_bytes
    assert limit == 2**20
    processes.append(network.start("alice"))
    url = network.url("alice")
    certs = network.certs
    member = client_context(certs / "bob.pem", certs / "bob.key", certs / "ca.pem")
    wait_listening(url, member, processes[-1])

    # a valid certificate of the same CA, but not a party of the network: 403
    ca = (certs / "ca.pem", certs / "ca.key")
    make_node_certificate(certs, "mallory", ca_cert=ca[0], ca_key=ca[1])
    stranger = client_context(certs / "mallory.pem", certs / "mallory.key", certs / "ca.pem")
    assert asyncio.run(post(url, stranger, b"x" * 100)) == 403

    # a certificate from another CA, and no certificate at all: the TLS handshake fails
    other = tmp_path / "other-ca"
    other_ca = make_ca(other)
    make_node_certificate(other, "bob", ca_cert=other_ca[0], ca_key=other_ca[1])
    foreign = client_context(other / "bob.pem", other / "bob.key", certs / "ca.pem")
    anonymous = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    for context in (foreign, anonymous):
        with pytest.raises((aiohttp.ClientError, OSError)):
            asyncio.run(post(url, context, b"x" * 100))

    # a member's request over the body limit: 413; garbage: 400
    assert asyncio.run(post(url, member, b"x" * (limit + 1))) == 413
    assert asyncio.run(post(url, member, b"garbage")) == 400

    # the node survived all of it: the run completes with the right results
    processes.extend(network.start(p) for p in ("bob", "charlie"))
    codes = wait_all(processes, 120)
    assert codes == [0, 0, 0], network.log("alice")[-2000:]
    assert_matches_plaintext(network)
    assert network.log("alice").count("rejected a request") >= 3
