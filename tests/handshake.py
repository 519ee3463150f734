"""One TLS connection over loopback between two of riskprop's contexts, and the certificate
sets it connects: the real handshake a test of certificates needs."""

from __future__ import annotations

import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

from riskprop.node.tls import (
    client_context,
    make_ca,
    make_node_certificate,
    peer_name,
    server_context,
)

#: Seconds a test handshake's sockets wait (see ``handshake``).
SOCKET_TIMEOUT = 60.0


@dataclass(frozen=True)
class Certs:
    """A directory of certificates of one CA, and the contexts its members' nodes use."""

    directory: Path
    ca: Path

    def server(self, name: str) -> ssl.SSLContext:
        d = self.directory
        return server_context(d / f"{name}.pem", d / f"{name}.key", self.ca)

    def client(self, name: str) -> ssl.SSLContext:
        d = self.directory
        return client_context(d / f"{name}.pem", d / f"{name}.key", self.ca)


def make_set(directory: Path, *names: str) -> Certs:
    ca_cert, ca_key = make_ca(directory)
    for name in names:
        make_node_certificate(directory, name, ca_cert=ca_cert, ca_key=ca_key)
    return Certs(directory, ca_cert)


@dataclass
class Outcome:
    server_peer: str | None = None
    client_peer: str | None = None
    reply: bytes = b""
    server_error: BaseException | None = None
    client_error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.reply == b"ok" and self.server_error is None and self.client_error is None


def handshake(
    server: ssl.SSLContext, client: ssl.SSLContext, server_hostname: str = "127.0.0.1"
) -> Outcome:
    """One TLS connection over loopback: the server (in a thread) names its peer and says ok.
    The socket time-outs only stop a broken test from hanging: a refused handshake fails at
    once, so they can be as generous as a loaded machine needs."""
    outcome = Outcome()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(SOCKET_TIMEOUT)
    port = listener.getsockname()[1]

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            conn.settimeout(SOCKET_TIMEOUT)
            with server.wrap_socket(conn, server_side=True) as tls:
                outcome.server_peer = peer_name(tls.getpeercert())
                tls.sendall(b"ok")
        except (ssl.SSLError, OSError) as exc:
            outcome.server_error = exc

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT) as raw,
            client.wrap_socket(raw, server_hostname=server_hostname) as tls,
        ):
            outcome.client_peer = peer_name(tls.getpeercert())
            outcome.reply = tls.recv(2)
    except (ssl.SSLError, OSError) as exc:
        outcome.client_error = exc
    finally:
        thread.join(2 * SOCKET_TIMEOUT)
        listener.close()
    assert not thread.is_alive()
    return outcome
