"""Mutual TLS material: certificates as specified, real loopback handshakes between nodes."""

from __future__ import annotations

import hashlib
import socket
import ssl
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from riskprop.cli import main
from riskprop.errors import ConfigError
from riskprop.localnet.certs import make_certs
from riskprop.node.tls import (
    certificate_fingerprint,
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


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_set(tmp_path_factory.mktemp("certs"), "alice", "bob")


@pytest.fixture(scope="module")
def foreign(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """Another CA, with certificates bearing the same party names."""
    return make_set(tmp_path_factory.mktemp("foreign"), "alice", "bob")


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


# ------------------------------------------------------------------------ certificates


def test_files_and_key_modes(certs: Certs) -> None:
    for name in ("ca", "alice", "bob"):
        key = certs.directory / f"{name}.key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
        assert (certs.directory / f"{name}.pem").is_file()
    assert not list(certs.directory.glob(".*.tmp"))  # atomic writes leave nothing behind


def test_node_certificate_contents(certs: Certs) -> None:
    ca = x509.load_pem_x509_certificate(certs.ca.read_bytes())
    cert = x509.load_pem_x509_certificate((certs.directory / "alice.pem").read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alice"
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usage) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    public = cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert isinstance(public.curve, ec.SECP256R1)
    key = serialization.load_pem_private_key(
        (certs.directory / "alice.key").read_bytes(), password=None
    )
    assert key.public_key() == public


def test_hosts_become_subject_alternative_names(certs: Certs, tmp_path: Path) -> None:
    ca_key = certs.directory / "ca.key"
    pem, _ = make_node_certificate(
        tmp_path, "carol", ca_cert=certs.ca, ca_key=ca_key, hosts=["::1", "carol", "10.0.0.7"]
    )
    san = x509.load_pem_x509_certificate(pem.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert san.value.get_values_for_type(x509.DNSName) == ["carol"]
    assert [str(ip) for ip in san.value.get_values_for_type(x509.IPAddress)] == ["::1", "10.0.0.7"]


def test_bad_inputs_are_config_errors(certs: Certs, tmp_path: Path) -> None:
    ca_key = certs.directory / "ca.key"
    with pytest.raises(ConfigError, match="not a valid party name"):
        make_node_certificate(tmp_path, "../evil", ca_cert=certs.ca, ca_key=ca_key)
    with pytest.raises(ConfigError, match="hosts"):
        make_node_certificate(tmp_path, "carol", ca_cert=certs.ca, ca_key=ca_key, hosts=[])
    with pytest.raises(ConfigError, match=r"nowhere\.pem: cannot read the CA certificate"):
        make_node_certificate(tmp_path, "carol", ca_cert=tmp_path / "nowhere.pem", ca_key=ca_key)
    with pytest.raises(ConfigError, match="does not belong to the CA certificate"):
        make_node_certificate(
            tmp_path, "carol", ca_cert=certs.ca, ca_key=certs.directory / "alice.key"
        )
    with pytest.raises(ConfigError, match=r"nowhere\.pem: cannot load"):
        client_context(tmp_path / "nowhere.pem", ca_key, certs.ca)
    with pytest.raises(ConfigError, match=r"alice\.key: cannot load the CA"):
        server_context(
            certs.directory / "alice.pem",
            certs.directory / "alice.key",
            certs.directory / "alice.key",
        )
    with pytest.raises(ConfigError, match=r"nowhere\.pem: cannot read the certificate"):
        certificate_fingerprint(tmp_path / "nowhere.pem")
    assert not list(tmp_path.iterdir())


def test_fingerprint_and_peer_name(certs: Certs) -> None:
    pem = certs.directory / "bob.pem"
    der = x509.load_pem_x509_certificate(pem.read_bytes()).public_bytes(serialization.Encoding.DER)
    assert certificate_fingerprint(pem) == certificate_fingerprint(der)
    assert certificate_fingerprint(der) == hashlib.sha256(der).hexdigest()
    assert certificate_fingerprint(pem) != certificate_fingerprint(certs.directory / "alice.pem")
    assert peer_name(None) is None and peer_name({}) is None
    subject = ((("countryName", "NL"),), (("commonName", "bob"),))
    assert peer_name({"subject": subject}) == "bob"
    assert peer_name({"subject": ((("organizationName", "x"),),)}) is None


# ------------------------------------------------------------------------ contexts, handshakes


def test_contexts_are_mutual_tls(certs: Certs) -> None:
    server, client = certs.server("alice"), certs.client("bob")
    for context in (server, client):
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert client.check_hostname


def test_handshake_between_nodes_of_one_ca(certs: Certs) -> None:
    outcome = handshake(certs.server("alice"), certs.client("bob"))
    assert outcome.ok, outcome
    assert outcome.server_peer == "bob" and outcome.client_peer == "alice"
    outcome = handshake(certs.server("bob"), certs.client("alice"), server_hostname="localhost")
    assert outcome.ok and outcome.server_peer == "alice", outcome


def test_client_certificate_of_another_ca_fails(certs: Certs, foreign: Certs) -> None:
    d = foreign.directory  # bob's name, but signed by the wrong CA; trusts alice's CA
    stranger = client_context(d / "bob.pem", d / "bob.key", certs.ca)
    outcome = handshake(certs.server("alice"), stranger)
    assert isinstance(outcome.server_error, ssl.SSLError), outcome
    assert outcome.server_peer is None and outcome.reply != b"ok"


def test_client_without_certificate_fails(certs: Certs) -> None:
    anonymous = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    anonymous.load_verify_locations(cafile=str(certs.ca))
    outcome = handshake(certs.server("alice"), anonymous)
    assert isinstance(outcome.server_error, ssl.SSLError), outcome
    assert outcome.server_peer is None and outcome.reply != b"ok"


def test_client_refuses_server_of_another_ca_or_host(certs: Certs, foreign: Certs) -> None:
    outcome = handshake(foreign.server("alice"), certs.client("bob"))
    assert isinstance(outcome.client_error, ssl.SSLCertVerificationError), outcome
    outcome = handshake(certs.server("alice"), certs.client("bob"), server_hostname="alice.bank")
    assert isinstance(outcome.client_error, ssl.SSLCertVerificationError), outcome
    assert "alice.bank" in str(outcome.client_error)


# ------------------------------------------------------------------------ riskprop certs


def test_certs_command_reuses_the_ca(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "certs"
    main(["certs", str(out), "--parties", "alice,bob", "--hosts", "127.0.0.1,bank-a"])
    ca = (out / "ca.pem").read_bytes()
    assert "reused the CA" not in capsys.readouterr().out
    main(["certs", str(out), "--parties", "charlie"])
    assert "reused the CA" in capsys.readouterr().out
    assert (out / "ca.pem").read_bytes() == ca
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"{n}.{e}" for n in ("alice", "bob", "ca", "charlie") for e in ("key", "pem")]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in out.glob("*.key"))
    san = x509.load_pem_x509_certificate((out / "bob.pem").read_bytes()).extensions
    dns = san.get_extension_for_class(x509.SubjectAlternativeName).value
    assert dns.get_values_for_type(x509.DNSName) == ["bank-a"]
    certs = Certs(out, out / "ca.pem")
    outcome = handshake(certs.server("charlie"), certs.client("alice"))
    assert outcome.ok and outcome.server_peer == "alice", outcome

    (out / "ca.key").unlink()
    with pytest.raises(SystemExit) as exit_info:
        main(["certs", str(out), "--parties", "dave"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("riskprop: error:") and "ca.key: missing" in err[0]
    assert not (out / "dave.pem").exists()


def test_make_certs_returns_what_it_wrote(tmp_path: Path) -> None:
    written = make_certs(tmp_path, ["alice"], ["127.0.0.1"])
    assert sorted(p.name for p in written) == ["alice.key", "alice.pem", "ca.key", "ca.pem"]
    again = make_certs(tmp_path, ["bob"], ["127.0.0.1"])
    assert sorted(p.name for p in again) == ["bob.key", "bob.pem"]  # the CA is reused
    (tmp_path / "ca.pem").unlink()
    with pytest.raises(ConfigError, match=r"ca\.pem: missing beside the other half of the CA"):
        make_certs(tmp_path, ["carol"], ["127.0.0.1"])
