#!/usr/bin/env python3
"""Make a local CA and one node certificate per party for mutual TLS.

    python scripts/make_certs.py OUT_DIR --parties alice,bob,charlie [--hosts 127.0.0.1,localhost]

An existing CA in OUT_DIR (``ca.pem`` and ``ca.key``) is reused, so certificates made later
join the same network. Private keys are written with mode 0600.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from riskprop.errors import ConfigError, RiskpropError
from riskprop.tls import make_ca, make_node_certificate


def split(text: str) -> list[str]:
    """Comma-separated items, blanks dropped."""
    return [item.strip() for item in text.split(",") if item.strip()]


def make_certs(out: Path, parties: Sequence[str], hosts: Sequence[str]) -> list[Path]:
    """The CA (unless ``out`` has one) and each party's certificate; returns what was written."""
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("out", type=Path, metavar="OUT_DIR", help="directory for the PEM files")
    parser.add_argument("--parties", required=True, help="comma-separated party names")
    parser.add_argument(
        "--hosts",
        default="127.0.0.1,localhost",
        help="comma-separated host names and IP addresses every certificate is valid for",
    )
    args = parser.parse_args(argv)
    parties, hosts = split(args.parties), split(args.hosts)
    if not parties:
        parser.error("--parties must name at least one party")
    if not hosts:
        parser.error("--hosts must name at least one host")
    reused = (args.out / "ca.pem").is_file() and (args.out / "ca.key").is_file()
    try:
        written = make_certs(args.out, parties, hosts)
    except RiskpropError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if reused:
        print(f"reused the CA in {args.out / 'ca.pem'}")
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
