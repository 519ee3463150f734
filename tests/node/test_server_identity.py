"""A client sends nothing to a server whose certificate does not name the party it meant to
reach: a member of the network (a certificate from the network's CA) on a peer's address, or a
certificate other than the pinned one, gets no request at all."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from riskprop.localnet.harness import free_ports
from riskprop.node.http import HttpSettings, HttpTransport
from riskprop.node.tls import (
    certificate_fingerprint,
    client_context,
    make_ca,
    make_node_certificate,
    server_context,
)
from riskprop.node.transport import PeerUnavailableError
from riskprop.protocol.messages import Done, Message


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("certs")
    ca_cert, ca_key = make_ca(directory)
    for name in ("alice", "bob", "mallory"):
        make_node_certificate(directory, name, ca_cert=ca_cert, ca_key=ca_key)
    return directory


def settings(
    certs: Path,
    name: str,
    *,
    cert_of: str,
    port: int,
    peer_port: int,
    pin: str | None = None,
    patience: float = 60.0,
) -> HttpSettings:
    """``name``'s transport presenting ``cert_of``'s certificate; its one peer is the other
    of alice and bob, at ``peer_port``."""
    cert, key, ca = certs / f"{cert_of}.pem", certs / f"{cert_of}.key", certs / "ca.pem"
    peer = "bob" if name == "alice" else "alice"
    return HttpSettings(
        name=name,
        run_id="r",
        peers={peer: f"https://127.0.0.1:{peer_port}"},
        host="127.0.0.1",
        port=port,
        server_ssl=server_context(cert, key, ca),
        client_ssl={peer: client_context(cert, key, ca, server=peer, pin=pin)},
        pinned={},
        connect_timeout=patience,
        reconnect_timeout=patience,
        request_timeout=60.0,
    )


async def exchange(
    certs: Path, *, bob_cert: str, pin: str | None = None
) -> tuple[BaseException | None, list[Message]]:
    """Alice sends bob ``Done``; returns alice's error and what bob's server received. Alice
    is patient with the real bob (a busy machine may be slow to shake hands) and gives up on
    an impostor after a second of retries (it is refused every time)."""
    alice_port, bob_port = free_ports(2)
    genuine = bob_cert == "bob" and (
        pin is None or pin == certificate_fingerprint(certs / "bob.pem")
    )
    alice = HttpTransport(
        settings(
            certs,
            "alice",
            cert_of="alice",
            port=alice_port,
            peer_port=bob_port,
            pin=pin,
            patience=60.0 if genuine else 1.0,
        )
    )
    bob = HttpTransport(
        settings(certs, "bob", cert_of=bob_cert, port=bob_port, peer_port=alice_port)
    )
    error: BaseException | None = None
    async with bob, alice:
        try:
            await alice.send(Message("r", "alice", "bob", Done(), seq=1))
        except PeerUnavailableError as exc:
            error = exc
        received = []
        while not bob._inbox.empty():
            received.append(bob._inbox.get_nowait())
    return error, received


def test_the_named_peer_gets_the_message(certs: Path) -> None:
    error, received = asyncio.run(exchange(certs, bob_cert="bob"))
    assert error is None
    assert [m.body for m in received] == [Done()]


def test_another_member_on_the_peers_address_gets_nothing(certs: Path) -> None:
    error, received = asyncio.run(exchange(certs, bob_cert="mallory"))
    assert isinstance(error, PeerUnavailableError) and error.peer == "bob"
    assert "names localhost, mallory, not bob" in str(error)
    assert received == []


def test_a_pinned_peer_must_present_the_pinned_certificate(certs: Path) -> None:
    pin = certificate_fingerprint(certs / "bob.pem")
    error, received = asyncio.run(exchange(certs, bob_cert="bob", pin=pin))
    assert error is None and len(received) == 1
    wrong = certificate_fingerprint(certs / "alice.pem")
    error, received = asyncio.run(exchange(certs, bob_cert="bob", pin=wrong))
    assert isinstance(error, PeerUnavailableError)
    assert "not the one pinned for bob" in str(error)
    assert received == []
