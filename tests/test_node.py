"""Real node processes over mutual TLS on loopback: the thin layer of networked tests."""

from __future__ import annotations

import asyncio
import csv
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import yaml

from riskprop.config import load_player_config
from riskprop.core.threshold import default_threshold
from riskprop.demo import write_configs
from riskprop.keys import dealer_keygen
from riskprop.node.http import PATH
from riskprop.simulate import simulate_plaintext
from riskprop.synthetic import generate_dataset
from riskprop.tls import client_context, make_ca, make_node_certificate

ITERATIONS = 2


@dataclass
class Network:
    root: Path
    parties: list[str]
    configs: Path
    certs: Path
    data: Path
    out: Path

    def url(self, party: str) -> str:
        network = yaml.safe_load((self.configs / "network.yaml").read_text())
        return next(p["url"] for p in network["parties"] if p["name"] == party)

    def start(self, party: str) -> subprocess.Popen[bytes]:
        log = (self.root / f"{party}.log").open("wb")
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "riskprop",
                "run",
                "--player",
                party,
                "--config",
                str(self.configs),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def log(self, party: str) -> str:
        return (self.root / f"{party}.log").read_text(errors="replace")

    def scores(self) -> dict[tuple[str, str], float]:
        found = {}
        for party in self.parties:
            with (self.out / party / "risk_scores.csv").open() as handle:
                for row in csv.DictReader(handle):
                    found[party, row["id"]] = float(row["risk_score"])
        return found


def make_network(
    root: Path, parties: Sequence[str], *, timeouts: dict[str, float] | None = None
) -> Network:
    certs, keys, data = root / "certs", root / "keys", root / "data"
    ca_cert, ca_key = make_ca(certs)
    for name in parties:
        make_node_certificate(certs, name, ca_cert=ca_cert, ca_key=ca_key)
    dealer_keygen(keys, parties, default_threshold(len(parties)), 512)
    generate_dataset(
        data, accounts=40 * len(parties), edges=120 * len(parties), banks=parties, seed=7
    )
    run = {
        "run_id": "test-run",
        "iterations": ITERATIONS,
        "delta": 0.5,
        "delta_b": 0.0,
        "periods": [0],
    }
    write_configs(
        root / "configs",
        data=data,
        keys=keys,
        certs=certs,
        out=root / "out",
        parties=parties,
        run=run,
        timeouts=timeouts,
    )
    return Network(root, list(parties), root / "configs", certs, data, root / "out")


def wait_all(processes: Sequence[subprocess.Popen[bytes]], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    codes = []
    for process in processes:
        try:
            codes.append(process.wait(max(0.1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            process.kill()
            codes.append(process.wait())
    return codes


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def assert_matches_plaintext(network: Network) -> None:
    reference = simulate_plaintext(network.data, iterations=ITERATIONS)
    expected = {
        (bank, acc): score
        for bank, ids, scores in zip(
            reference.banks,
            reference.account_ids,
            np.split(reference.scores, np.cumsum([len(i) for i in reference.account_ids])[:-1]),
            strict=True,
        )
        for acc, score in zip(ids, scores.tolist(), strict=True)
    }
    found = network.scores()
    assert found.keys() == expected.keys()
    assert max(abs(found[k] - expected[k]) for k in expected) < 1e-9


@pytest.mark.parametrize("parties", [["alice", "bob", "charlie"], ["a1", "b2", "c3", "d4", "e5"]])
def test_nodes_in_reverse_order_match_plaintext(
    tmp_path: Path, parties: list[str], processes: list[subprocess.Popen[bytes]]
) -> None:
    network = make_network(tmp_path, parties)
    for party in reversed(parties):
        processes.append(network.start(party))
        time.sleep(0.3)
    codes = wait_all(processes, 120)
    assert codes == [0] * len(parties), [network.log(p)[-2000:] for p in parties]
    assert_matches_plaintext(network)
    assert "results in" in network.log(parties[0])
    assert "scores to" in network.log(parties[0])  # bytes per iteration are logged


def test_missing_peer_fails_others_with_its_name(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    timeouts = {"connect": 3, "request": 5, "idle": 20, "deadline": 60}
    network = make_network(tmp_path, ["alice", "bob", "charlie"], timeouts=timeouts)
    processes.extend(network.start(p) for p in ("alice", "bob"))  # charlie never comes up
    started = time.monotonic()
    codes = wait_all(processes, 60)
    assert codes == [1, 1]
    assert time.monotonic() - started < 30
    for party in ("alice", "bob"):
        last = network.log(party).strip().splitlines()[-1]
        assert last.startswith("riskprop: error:") and "charlie" in last, last
        assert not (network.out / party / "risk_scores.csv").exists()


async def post(url: str, context: ssl.SSLContext | None, body: bytes) -> int:
    connector = aiohttp.TCPConnector(ssl=context if context is not None else False)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(url + PATH, data=body) as response,
    ):
        return response.status


def wait_listening(url: str, context: ssl.SSLContext, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            asyncio.run(post(url, context, b""))
            return
        except (aiohttp.ClientError, OSError):
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
    wait_listening(url, member)

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
