"""Mutual TLS material: certificates as specified, real loopback handshakes between nodes."""

from __future__ import annotations

import hashlib
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from handshake import Certs, handshake, make_set

from riskprop.errors import ConfigError
from riskprop.node.tls import (
    certificate_fingerprint,
    client_context,
    make_node_certificate,
    peer_name,
    server_context,
)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_set(tmp_path_factory.mktemp("certs"), "alice", "bob")


@pytest.fixture(scope="module")
def foreign(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """Another CA, with certificates bearing the same party names."""
    return make_set(tmp_path_factory.mktemp("foreign"), "alice", "bob")


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
