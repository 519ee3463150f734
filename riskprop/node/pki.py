"""A bank's own TLS key and certificate request, and the CA operator's signature.

Each bank makes its private key where it stays (``make_request``: the key, mode 0600, and a
certificate signing request naming the party and its hosts) and sends only the request to
whoever runs the network's CA (``make_ca``). That operator confirms the request by its SHA-256
fingerprint (read out over the phone) and signs it (``sign_request``). So no bank's private key
is ever generated or seen elsewhere.

A signed certificate is what ``riskprop.node.tls`` expects of a node: the party's name as the
subject common name (peers identify a node by it), its hosts as subject alternative names
(peers verify the host of its URL against them), usable as TLS server and client. Of the
request only the name, the hosts and the public key are taken: extensions it asks for
(a CA flag, say) are never copied. Keys made here are EC P-256, as ``tls.py``'s.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from riskprop.errors import ConfigError, ParameterError
from riskprop.files.atomic import atomic_write_text, check_private
from riskprop.node import tls

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
DEFAULT_CA_DAYS = 3650
DEFAULT_DAYS = 825
#: The smallest RSA key a request may carry (EC keys: P-256, P-384 and P-521).
MIN_RSA_BITS = 2048
EC_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)
#: A DNS name: dot-separated labels of letters, digits and hyphens, after an optional ``*.``.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
DNS_NAME = re.compile(rf"(\*\.)?{_LABEL}(\.{_LABEL})*")
#: Private keys a CA may sign with.
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class Request:
    """What ``make_request`` wrote: the request, the private key, and the request's
    SHA-256 fingerprint (of its DER encoding) that the CA operator confirms."""

    csr: Path
    key: Path
    fingerprint: str
    hosts: tuple[str, ...]


@dataclass(frozen=True)
class Signed:
    """A certificate ``sign_request`` wrote, and what its operator reads out."""

    certificate: Path
    subject: str
    hosts: tuple[str, ...]
    not_after: datetime.datetime
    #: SHA-256 of the certificate (what ``tls.certificate_fingerprint`` and pins use)
    fingerprint: str
    #: SHA-256 of the request it was made from (what its bank read out)
    request_fingerprint: str


# ------------------------------------------------------------------------------ CA


def make_ca(
    directory: Path,
    *,
    name: str = "riskprop CA",
    days: int = DEFAULT_CA_DAYS,
    force: bool = False,
) -> tuple[Path, Path]:
    """A self-signed CA: ``directory/ca.pem`` and ``directory/ca.key`` (0600). Refuses to
    replace either unless ``force``: a new CA means new certificates for every bank."""
    if not isinstance(name, str) or not name.strip():
        raise ParameterError("name", f"the CA needs a non-empty name (got {name!r})")
    if not force:
        _refuse_existing(directory / CA_KEY, directory / CA_CERT)
    return tls.make_ca(directory, common_name=name, days=days)


def load_ca(directory: Path) -> tuple[x509.Certificate, PrivateKey]:
    """The CA certificate and key of ``directory`` (``ca.pem``, ``ca.key``): they must belong
    together, the certificate must be a CA's and still valid."""
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    if not cert_path.is_file():
        raise ConfigError(f"{cert_path}: CA certificate not found")
    cert = read_certificate(cert_path, "CA certificate")
    key = read_private_key(key_path, "CA key")
    if not same_key(cert, key):
        raise ConfigError(f"{key_path}: does not belong to the CA certificate {cert_path}")
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise ConfigError(f"{cert_path}: not a CA certificate (basic constraints lack CA:TRUE)")
    if cert.not_valid_after_utc <= _now():
        expired = day(cert.not_valid_after_utc)
        raise ConfigError(f"{cert_path}: the CA certificate expired on {expired}")
    return cert, key


# ------------------------------------------------------------------------- requests


def make_request(
    directory: Path,
    name: str,
    hosts: Sequence[str] = (),
    *,
    force: bool = False,
    reuse_key: bool = False,
) -> Request:
    """``directory/<name>.key`` (a new EC P-256 key, mode 0600) and ``<name>.csr``: a request
    with CN = ``name`` and subject alternative names ``name`` and ``hosts`` (DNS names or IP
    addresses). An existing key is never replaced unless ``force``; with ``reuse_key`` the
    request is made for it (a renewal that keeps the key)."""
    if not isinstance(name, str) or not tls.NAME.fullmatch(name):
        raise ParameterError("player", f"{name!r} is not a valid party name ([A-Za-z0-9_-]+)")
    if force and reuse_key:
        raise ConfigError("--force (a new key) and --reuse-key (keep the key) exclude each other")
    alt_names = alt_names_of([name, *hosts])
    key_path, csr_path = directory / f"{name}.key", directory / f"{name}.csr"
    key: PrivateKey
    if reuse_key:
        if not key_path.is_file():
            raise ConfigError(f"{key_path}: no key to reuse (leave out --reuse-key to make one)")
        check_private(key_path, "TLS private key")
        key = read_private_key(key_path, "TLS private key")
    else:
        if key_path.exists() and not force:
            raise ConfigError(
                f"{key_path}: a private key exists already; pass --reuse-key to request a "
                "certificate for it, or --force to replace it"
            )
        key = ec.generate_private_key(ec.SECP256R1())
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    if not reuse_key:
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        atomic_write_text(key_path, pem.decode(), mode=0o600)
    atomic_write_text(csr_path, request.public_bytes(serialization.Encoding.PEM).decode())
    return Request(csr_path, key_path, request_fingerprint(request), _host_texts(alt_names))


def read_request(path: Path) -> x509.CertificateSigningRequest:
    """A PEM certificate signing request whose signature is valid (made by the holder of
    the key it names)."""
    try:
        request = x509.load_pem_x509_csr(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the request ({exc.strerror})") from None
    except ValueError:
        raise ConfigError(f"{path}: not a PEM certificate signing request") from None
    try:
        valid = request.is_signature_valid
    except UnsupportedAlgorithm:
        valid = False
    if not valid:
        raise ConfigError(f"{path}: the request's signature is invalid (damaged or altered)")
    return request


def request_fingerprint(request: x509.CertificateSigningRequest) -> str:
    """SHA-256 (hex) of a request's DER encoding: what its bank and the CA operator compare."""
    return hashlib.sha256(request.public_bytes(serialization.Encoding.DER)).hexdigest()


# -------------------------------------------------------------------------- signing


def sign_request(
    csr: Path,
    *,
    ca: Path,
    out: Path,
    days: int = DEFAULT_DAYS,
    force: bool = False,
    start: datetime.datetime | None = None,
) -> Signed:
    """Sign the request ``csr`` with the CA in directory ``ca``; write the certificate to
    ``out``. It gets the request's common name (a party name) and subject alternative names
    (the name alone when the request has none), TLS server and client use, and validity from
    ``start`` (default: five minutes ago, for clocks a little behind) for ``days`` days, never
    beyond the CA's. Refuses to replace ``out`` unless ``force``."""
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ParameterError("days", f"must be an integer >= 1 (got {days!r})")
    request = read_request(csr)
    name = _party_of(csr, request)
    public = request.public_key()
    _check_public_key(csr, public)
    alt_names = _requested_names(csr, request, name)
    issuer, issuer_key = load_ca(ca)
    if not force:
        _refuse_existing(out)
    begin = start if start is not None else _now() - datetime.timedelta(minutes=5)
    end = min(begin + datetime.timedelta(days=days), issuer.not_valid_after_utc)
    assert isinstance(public, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)  # checked above
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(begin)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_key_usage(), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        .sign(issuer_key, hashes.SHA256())
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, cert.public_bytes(serialization.Encoding.PEM).decode())
    return Signed(
        certificate=out,
        subject=name,
        hosts=_host_texts(alt_names),
        not_after=cert.not_valid_after_utc,
        fingerprint=tls.certificate_fingerprint(der),
        request_fingerprint=request_fingerprint(request),
    )


# -------------------------------------------------------------------------- helpers


def alt_names_of(hosts: Sequence[str]) -> list[x509.GeneralName]:
    """Subject alternative names for ``hosts``, each an IP address or a DNS name (in order,
    without repeats)."""
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        if not isinstance(host, str) or not host.strip():
            raise ParameterError("host", f"invalid host {host!r}")
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            if len(host) > 253 or not DNS_NAME.fullmatch(host):
                raise ParameterError(
                    "host", f"{host!r} is neither an IP address nor a DNS name"
                ) from None
            names.append(x509.DNSName(host))
    return names


def read_private_key(path: Path, what: str) -> PrivateKey:
    """An unencrypted PEM private key (EC or RSA)."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what} ({exc.strerror})") from None
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ConfigError(
            f"{path}: not an unencrypted PEM private key (the {what} must not need a password)"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ConfigError(f"{path}: the {what} must be an EC or RSA key")
    return key


def read_certificate(path: Path, what: str) -> x509.Certificate:
    """The first certificate of a PEM file."""
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what} ({exc.strerror})") from None
    except ValueError:
        raise ConfigError(f"{path}: not a PEM certificate ({what})") from None


def _party_of(path: Path, request: x509.CertificateSigningRequest) -> str:
    names = request.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1:
        raise ConfigError(f"{path}: the request must have one common name (has {len(names)})")
    name = names[0].value
    if not isinstance(name, str) or not tls.NAME.fullmatch(name):
        raise ConfigError(f"{path}: common name {name!r} is not a party name ([A-Za-z0-9_-]+)")
    return name


def _check_public_key(path: Path, public: object) -> None:
    if isinstance(public, ec.EllipticCurvePublicKey):
        if not isinstance(public.curve, EC_CURVES):
            raise ConfigError(f"{path}: EC curve {public.curve.name} (use P-256, P-384 or P-521)")
    elif isinstance(public, rsa.RSAPublicKey):
        if public.key_size < MIN_RSA_BITS:
            raise ConfigError(
                f"{path}: a {public.key_size}-bit RSA key is too small (at least {MIN_RSA_BITS})"
            )
    else:
        raise ConfigError(f"{path}: the request's key must be EC or RSA")


def _requested_names(
    path: Path, request: x509.CertificateSigningRequest, name: str
) -> list[x509.GeneralName]:
    try:
        requested = request.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return [x509.DNSName(name)]
    names: list[x509.GeneralName] = []
    for general in requested.value:
        if not isinstance(general, x509.DNSName | x509.IPAddress):
            raise ConfigError(
                f"{path}: the request names {general!r}; only DNS names and IP addresses are signed"
            )
        names.append(general)
    if not names:
        raise ConfigError(f"{path}: the request's subject alternative names are empty")
    return names


def _host_texts(names: Sequence[x509.GeneralName]) -> tuple[str, ...]:
    return tuple(str(n.value) for n in names)


def _leaf_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def same_key(cert: x509.Certificate, key: PrivateKeyTypes) -> bool:
    """Whether ``key`` is the private key of ``cert``'s public key."""
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(*spki) == cert.public_key().public_bytes(*spki)


def _refuse_existing(*paths: Path) -> None:
    for path in paths:
        if path.exists():
            raise ConfigError(f"{path}: exists already; move it away or pass --force to replace it")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def day(moment: datetime.datetime) -> str:
    """A moment as operators read it: ``2026-11-29 02:00 UTC``."""
    return moment.strftime("%Y-%m-%d %H:%M UTC")
