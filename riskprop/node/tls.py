"""Mutual TLS material: a local CA, node certificates and the SSL contexts nodes use.

A node's certificate names its party in the subject common name; peers are identified by it.
Certificates carry the hosts they serve as subject alternative names (DNS names and IP
addresses), so clients verify host names as usual. Keys are EC P-256, written with mode 0600.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import re
import ssl
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from riskprop.errors import ConfigError
from riskprop.files.atomic import atomic_write_text, check_private

NAME = re.compile(r"[A-Za-z0-9_-]+")


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
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ConfigError(f"days: must be an integer >= 1 (got {days!r})")
    now = datetime.datetime.now(datetime.UTC)
    return now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def make_ca(
    directory: Path, *, common_name: str = "riskprop local CA", days: int = 825
) -> tuple[Path, Path]:
    """Self-signed CA: ``directory/ca.pem`` and ``directory/ca.key`` (0600)."""
    start, end = _validity(days)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "ca.pem", directory / "ca.key"
    _write_key(key_path, key)
    _write_cert(cert_path, cert)
    return cert_path, key_path


def _load_ca(ca_cert: Path, ca_key: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        issuer = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{ca_cert}: cannot read the CA certificate ({exc})") from None
    try:
        issuer_key = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"{ca_key}: cannot read the CA key ({exc})") from None
    if not isinstance(issuer_key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{ca_key}: expected an EC private key")
    if issuer_key.public_key() != issuer.public_key():
        raise ConfigError(f"{ca_key}: does not belong to the CA certificate {ca_cert}")
    return issuer, issuer_key


def _alt_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    if isinstance(hosts, str) or not hosts:
        raise ConfigError(f"hosts: expected a non-empty list of host names (got {hosts!r})")
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        if not isinstance(host, str) or not host.strip():
            raise ConfigError(f"hosts: invalid host {host!r}")
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def make_node_certificate(
    directory: Path,
    name: str,
    *,
    ca_cert: Path,
    ca_key: Path,
    hosts: Sequence[str] = ("127.0.0.1", "localhost"),
    days: int = 825,
) -> tuple[Path, Path]:
    """``directory/<name>.pem`` and ``<name>.key`` (0600), signed by the CA: CN = ``name``,
    SANs = ``hosts`` (IP addresses and DNS names), usable as TLS server and client."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ConfigError(f"name: {name!r} is not a valid party name ([A-Za-z0-9_-]+)")
    alt_names = _alt_names(hosts)
    start, end = _validity(days)
    issuer, issuer_key = _load_ca(ca_cert, ca_key)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(min(end, issuer.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
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
    check_private(key, "TLS private key")
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{cert}: cannot load this certificate with key {key} ({exc})") from None
    try:
        context.load_verify_locations(cafile=str(ca))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{ca}: cannot load the CA certificate ({exc})") from None
    return context


def server_context(cert: Path, key: Path, ca: Path) -> ssl.SSLContext:
    """TLS (>= 1.2) server that requires a client certificate signed by ``ca``."""
    return _load_chain(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), cert, key, ca)


def client_context(
    cert: Path, key: Path, ca: Path, *, server: str | None = None, pin: str | None = None
) -> ssl.SSLContext:
    """TLS (>= 1.2) client presenting ``cert``, verifying the server and its host name
    against ``ca``. With ``server`` the handshake also fails unless the server's certificate
    names that party (common name or DNS name) and, with ``pin``, has that SHA-256
    fingerprint: a member of the network on the peer's address learns nothing, as the
    request is never sent."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = True
    if server is not None:
        context.sslobject_class = _expecting(server, pin)
    return _load_chain(context, cert, key, ca)


def certificate_names(peercert: Mapping[str, Any] | None) -> set[str]:
    """The subject common names and DNS names of ``getpeercert()``'s dictionary."""
    if not peercert:
        return set()
    names = {
        value
        for rdn in peercert.get("subject", ())
        for attribute, value in rdn
        if attribute == "commonName" and isinstance(value, str)
    }
    names.update(v for k, v in peercert.get("subjectAltName", ()) if k == "DNS")
    return names


def _expecting(party: str, pin: str | None) -> type[ssl.SSLObject]:
    """An ``SSLObject`` whose handshake fails unless the server is ``party`` (and pinned)."""

    class PartyCheck(ssl.SSLObject):
        def do_handshake(self) -> None:
            super().do_handshake()  # the chain and the host name are verified by now
            names = certificate_names(self.getpeercert())
            if party not in names:
                shown = ", ".join(sorted(names)) or "no name"
                raise ssl.SSLCertVerificationError(
                    f"the server's certificate names {shown}, not {party}"
                )
            der = self.getpeercert(binary_form=True)
            if pin is not None and (der is None or certificate_fingerprint(der) != pin):
                raise ssl.SSLCertVerificationError(
                    f"the server's certificate is not the one pinned for {party}"
                )

    return PartyCheck


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
    if isinstance(path_or_der, bytes | bytearray | memoryview):
        return hashlib.sha256(path_or_der).hexdigest()
    try:
        cert = x509.load_pem_x509_certificate(Path(path_or_der).read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path_or_der}: cannot read the certificate ({exc})") from None
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
