"""Mutual TLS material: a local CA, node certificates and the SSL contexts nodes use.

A node's certificate names its party in the subject common name; peers are identified by it.
Certificates carry the hosts they serve as subject alternative names (DNS names and IP
addresses), so clients verify host names as usual. Keys are EC P-256, written with mode 0600.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import ssl
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from riskprop.errors import ConfigError
from riskprop.results import atomic_write_text


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    atomic_write_text(path, pem.decode(), mode=0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    atomic_write_text(path, cert.public_bytes(serialization.Encoding.PEM).decode())


def _validity(days: int) -> tuple[datetime.datetime, datetime.datetime]:
    now = datetime.datetime.now(datetime.UTC)
    return now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)


def make_ca(
    directory: Path, *, common_name: str = "riskprop local CA", days: int = 825
) -> tuple[Path, Path]:
    """Self-signed CA: ``directory/ca.pem`` and ``directory/ca.key`` (0600)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start, end = _validity(days)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "ca.pem", directory / "ca.key"
    _write_key(key_path, key)
    _write_cert(cert_path, cert)
    return cert_path, key_path


def make_node_certificate(
    directory: Path,
    name: str,
    *,
    ca_cert: Path,
    ca_key: Path,
    hosts: Sequence[str] = ("127.0.0.1", "localhost"),
    days: int = 825,
) -> tuple[Path, Path]:
    """``directory/<name>.pem`` and ``<name>.key`` (0600), signed by the CA, CN = ``name``."""
    issuer = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    issuer_key = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    if not isinstance(issuer_key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{ca_key}: expected an EC private key")
    key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = []
    for host in dict.fromkeys([*hosts, name]):
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt_names.append(x509.DNSName(host))
    start, end = _validity(days)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(issuer_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    _write_key(key_path, key)
    _write_cert(cert_path, cert)
    return cert_path, key_path


def _load_chain(context: ssl.SSLContext, cert: Path, key: Path, ca: Path) -> ssl.SSLContext:
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
        context.load_verify_locations(cafile=str(ca))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load TLS material {cert}, {key}, {ca}: {exc}") from None
    return context


def server_context(cert: Path, key: Path, ca: Path) -> ssl.SSLContext:
    """TLS server that requires a client certificate signed by ``ca``."""
    context = _load_chain(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), cert, key, ca)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(cert: Path, key: Path, ca: Path) -> ssl.SSLContext:
    """TLS client presenting ``cert``, verifying the server and its host name against ``ca``."""
    context = _load_chain(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), cert, key, ca)
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def peer_name(peercert: Mapping[str, Any] | None) -> str | None:
    """The subject common name from ``ssl.SSLSocket.getpeercert()``'s dictionary."""
    if not peercert:
        return None
    for rdn in peercert.get("subject", ()):
        for attribute, value in rdn:
            if attribute == "commonName" and isinstance(value, str):
                return value
    return None


def certificate_fingerprint(path_or_der: Path | bytes) -> str:
    """SHA-256 (hex) of a certificate's DER encoding, from a PEM file or DER bytes."""
    if isinstance(path_or_der, Path):
        der = x509.load_pem_x509_certificate(path_or_der.read_bytes()).public_bytes(
            serialization.Encoding.DER
        )
    else:
        der = path_or_der
    return hashlib.sha256(der).hexdigest()
