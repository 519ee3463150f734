"""Hostile input against a live node: fuzzed bodies, forged senders, other runs, bad data.

A node under attack must answer every bad request with a 4xx and a log line, never crash, and
still complete the run in progress with the right results. Secrets never reach its logs.
"""

from __future__ import annotations

import http.client
import json
import ssl
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from nodes import Network, assert_matches_plaintext, make_network, wait_all

from riskprop.core.paillier import Rerandomized
from riskprop.core.threshold import PartialProof
from riskprop.errors import ProtocolError
from riskprop.files.keys import load_public, load_share
from riskprop.node.http import PATH
from riskprop.node.tls import client_context
from riskprop.protocol.messages import (
    Abort,
    Body,
    DecryptRequest,
    Done,
    Hello,
    Message,
    Partial,
    Rejoin,
    RunDescriptor,
    Scores,
    decode,
    encode,
)

FUZZ_CASES = 3000
JUNK = b"\xff" * 128  # one value of a 512-bit key's ciphertext width (128 bytes), >= N^2
#: alice waits for bob and charlie while the fuzzing runs: however long a busy machine takes for
#: it, she must not give up on them (connect) nor on the run (deadline) before they start.
PATIENT = {"connect": 600, "request": 60, "idle": 120, "deadline": 900}


class Client:
    """A keep-alive HTTPS client of one node, as bank ``bob`` (a member of the network)."""

    def __init__(self, url: str, context: ssl.SSLContext) -> None:
        host, port = url.removeprefix("https://").rsplit(":", 1)
        self.host, self.port, self.context = host, int(port), context
        self.connection: http.client.HTTPSConnection | None = None
        self.statuses: list[int] = []

    def post(self, body: bytes) -> int:
        for _ in range(3):
            if self.connection is None:
                self.connection = http.client.HTTPSConnection(
                    self.host, self.port, context=self.context, timeout=60
                )
            try:
                self.connection.request("POST", PATH, body=body)
                response = self.connection.getresponse()
                response.read()
                self.statuses.append(response.status)
                return response.status
            except (OSError, http.client.HTTPException):
                self.connection.close()
                self.connection = None
        raise AssertionError("the node stopped answering")


@dataclass
class Attacked:
    """alice's node, started alone, and a client of it holding bob's certificate."""

    network: Network
    client: Client
    alice: subprocess.Popen[bytes]


@pytest.fixture(scope="module")
def attacked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Attacked]:
    """alice's node up and waiting for its peers; a client holding bob's certificate."""
    network = make_network(
        tmp_path_factory.mktemp("hostile"), ["alice", "bob", "charlie"], timeouts=PATIENT
    )
    alice = network.start("alice")
    try:
        certs = network.certs
        client = Client(
            network.url("alice"),
            client_context(certs / "bob.pem", certs / "bob.key", certs / "ca.pem"),
        )
        deadline = time.monotonic() + 120
        while True:
            try:
                client.post(b"")
                break
            except AssertionError:
                assert time.monotonic() < deadline, "alice's node did not come up"
                time.sleep(0.2)
        yield Attacked(network, client, alice)
    finally:
        if alice.poll() is None:
            alice.kill()
            alice.wait()


def frame(header: object, payload: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return b"RPM1" + struct.pack(">I", len(raw)) + raw + payload


def valid_header(**changes: object) -> dict[str, object]:
    header: dict[str, object] = {
        "version": 1,
        "run_id": "test-run",
        "sender": "bob",
        "recipient": "alice",
        "kind": "scores",
        "period": 0,
        "iteration": 1,
        "seq": 10_000,
        "count": 1,
        "width": 128,
    }
    header.update(changes)
    return header


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
header_field = st.sampled_from(
    [
        "version",
        "run_id",
        "sender",
        "recipient",
        "kind",
        "period",
        "iteration",
        "seq",
        "count",
        "width",
    ]
)


def hostile_bodies() -> st.SearchStrategy[bytes]:
    """Bodies no correct peer sends: each is malformed, forged or of another run."""
    garbage = st.binary(max_size=400)
    truncated = st.integers(0, 60).map(lambda cut: frame(valid_header())[:cut])
    # every payload is JUNK (>= N^2), so a frame whose header happens to be right is refused
    # too; hostile() below discards the rare body that would be a genuine message of bob's
    well_formed = st.just(frame(valid_header(), JUNK))
    wrong_type = st.tuples(header_field, json_values).map(
        lambda fv: frame(valid_header(**{fv[0]: fv[1]}), JUNK)
    )
    bad_size = (
        st.tuples(st.integers(-5, 10**12), st.integers(-5, 10**9))
        .filter(lambda cw: cw != (1, 128))
        .map(lambda cw: frame(valid_header(count=cw[0], width=cw[1]), JUNK))
    )
    other_run = st.sampled_from(["an-earlier-run", "", "test-run-2"]).map(
        lambda run: frame(valid_header(run_id=run), JUNK)
    )
    forged = st.sampled_from(["charlie", "alice", "mallory"]).map(
        lambda who: frame(valid_header(sender=who), JUNK)
    )
    misrouted = st.sampled_from(["bob", "charlie", ""]).map(
        lambda who: frame(valid_header(recipient=who), JUNK)
    )
    huge_header = st.just(b"RPM1" + struct.pack(">I", 2**31) + b"{}")
    return st.one_of(
        garbage,
        truncated,
        well_formed,
        wrong_type,
        bad_size,
        other_run,
        forged,
        misrouted,
        huge_header,
    )


def genuine(body: bytes, nsquare: int) -> bool:
    """Whether ``body`` is a message bob could really send alice in this run (values in
    range): such a body is not hostile, it is bob speaking."""
    try:
        message = decode(body, max_width=128)
    except ProtocolError:
        return False
    values = getattr(message.body, "values", ())
    return (
        message.run_id == "test-run"
        and message.sender == "bob"
        and message.recipient == "alice"
        and all(0 < v < nsquare for v in values)
    )


@settings(
    max_examples=FUZZ_CASES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=hostile_bodies())
def test_fuzzed_requests_get_4xx(attacked: Attacked, body: bytes) -> None:
    network, client = attacked.network, attacked.client
    assume(not genuine(body, load_public(network.keys / "public.json").public.nsquare))
    status = client.post(body)
    assert 400 <= status < 500, (status, body[:200])


def test_replays_from_an_earlier_run_are_rejected(attacked: Attacked) -> None:
    client = attacked.client
    descriptor = RunDescriptor(
        "an-earlier-run", ("alice", "bob", "charlie"), 1, "0" * 64, 2, 0.5, 0.0, (0,), 48
    )
    bodies: list[Body] = [
        Hello(descriptor, 3, ((),)),
        Scores(Rerandomized((5,))),
        DecryptRequest(Rerandomized((5,))),
        Partial((5,), PartialProof(1, 2)),
        Done(),
        Abort("x"),
        Rejoin(),
    ]
    for seq, body in enumerate(bodies, start=1):
        message = Message("an-earlier-run", "bob", "alice", body, seq=seq)
        assert client.post(encode(message, 128)) == 409


def test_the_attacked_run_still_completes(attacked: Attacked) -> None:
    network, client = attacked.network, attacked.client
    assert len(client.statuses) >= FUZZ_CASES
    processes = [attacked.alice, *(network.start(p) for p in ("bob", "charlie"))]
    assert wait_all(processes, 120) == [0, 0, 0], network.log("alice")[-2000:]
    assert_matches_plaintext(network)
    log = network.log("alice")
    assert log.count("rejected a request") >= sum(s >= 400 for s in client.statuses) - 1
    # no secret in any log: neither a key share nor a private key
    for party in network.parties:
        share = load_share(network.keys / f"{party}.share.json")
        secret = format(share.secret, "x")
        key_pem = (network.certs / f"{party}.key").read_text()
        for name in network.parties:
            text = network.log(name)
            assert secret[:32] not in text and str(share.secret)[:32] not in text
            assert key_pem.splitlines()[1] not in text


def test_bad_data_and_config_through_the_node(tmp_path: Path) -> None:
    network = make_network(tmp_path, ["alice", "bob", "charlie"], timeouts=PATIENT)
    transactions = network.data / "bob" / "transactions.csv"
    lines = transactions.read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 2)[0] + ",-5,0"  # a negative amount on line 4
    transactions.write_text("\n".join(lines) + "\n")
    process = network.start("bob")
    assert process.wait(60) == 1
    last = network.log("bob").strip().splitlines()[-1]
    assert last == f"riskprop: error: {transactions}:4: amount -5.0 is not a non-negative number"

    share = network.keys / "charlie.share.json"
    share.chmod(0o644)
    process = network.start("charlie")
    assert process.wait(60) == 1
    last = network.log("charlie").strip().splitlines()[-1]
    assert last.startswith("riskprop: error:") and "chmod 600" in last
    assert format(load_share_unchecked(share), "x")[:16] not in network.log("charlie")


def load_share_unchecked(path: Path) -> int:
    return int(json.loads(path.read_text())["share"], 16)
