"""Local certificate authorities and node certificates for mutual TLS on one machine."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from riskprop.errors import ConfigError
from riskprop.node.tls import make_ca, make_node_certificate

#: Hosts every local node certificate is valid for.
LOCAL_HOSTS = ("127.0.0.1", "localhost")


def cache_dir() -> Path:
    """riskprop's cache: ``$XDG_CACHE_HOME/riskprop`` or ``~/.cache/riskprop``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "riskprop"


def make_certs(out: Path, parties: Sequence[str], hosts: Sequence[str]) -> list[Path]:
    """The CA (unless ``out`` has one) and each party's certificate, made anew; returns what
    was written. An existing CA is reused, so certificates made later join the same network."""
    ca_cert, ca_key = out / "ca.pem", out / "ca.key"
    written: list[Path] = []
    if ca_cert.is_file() != ca_key.is_file():
        missing = ca_key if ca_cert.is_file() else ca_cert
        raise ConfigError(f"{missing}: missing beside the other half of the CA; remove both")
    if not ca_cert.is_file():
        written.extend(make_ca(out))
    for name in parties:
        written.extend(
            make_node_certificate(out, name, ca_cert=ca_cert, ca_key=ca_key, hosts=hosts)
        )
    return written


def ensure_certificates(directory: Path, parties: Sequence[str]) -> list[str]:
    """A CA and each party's certificate in ``directory`` (valid for ``LOCAL_HOSTS`` and the
    party's name, as compose's service names), keeping those that exist; a new CA means new
    certificates for everyone. Returns what was made, for people."""
    made: list[str] = []
    ca_cert, ca_key = directory / "ca.pem", directory / "ca.key"
    fresh_ca = not (ca_cert.is_file() and ca_key.is_file())
    if fresh_ca:
        make_ca(directory)
        made.append(f"a local CA in {directory}")
    for name in parties:
        pem, key = directory / f"{name}.pem", directory / f"{name}.key"
        if fresh_ca or not pem.is_file() or not key.is_file():
            hosts = (*LOCAL_HOSTS, name)
            make_node_certificate(directory, name, ca_cert=ca_cert, ca_key=ca_key, hosts=hosts)
            made.append(f"the certificate of {name} in {directory}")
    return made


def demo_certificates(parties: Sequence[str]) -> Path:
    """A cached local CA and one certificate per party (``cache_dir()/certs``)."""
    directory = cache_dir() / "certs"
    ensure_certificates(directory, parties)
    return directory
