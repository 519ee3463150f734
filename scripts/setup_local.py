#!/usr/bin/env python3
"""Make what configs/ expects in ./local: certificates, a threshold key and sample data.

    python scripts/setup_local.py [--root local] [--parties alice,bob,charlie] [--key-bits 2048]
                                  [--accounts 300 --edges 1000 --seed 1] [--force]

ROOT/certs holds a local CA and one certificate per party (hosts 127.0.0.1, localhost and the
party name), ROOT/keys a dealt threshold key, ROOT/data a synthetic data set. Parts that exist
already, complete and for the same parties, are kept; ``--force`` makes them anew. The key
comes from a trusted dealer (as `riskprop keygen`): fine for a local set-up, not for production.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from riskprop.core.threshold import default_threshold
from riskprop.errors import RiskpropError
from riskprop.keys import PUBLIC_FILE, dealer_keygen, load_public, share_file
from riskprop.synthetic import check_banks, generate_dataset
from riskprop.tls import make_ca, make_node_certificate

REPO = Path(__file__).resolve().parent.parent


def setup_certs(certs: Path, parties: Sequence[str]) -> list[str]:
    """A CA and each party's certificate; a new CA means new certificates for everyone."""
    made: list[str] = []
    ca_cert, ca_key = certs / "ca.pem", certs / "ca.key"
    fresh_ca = not (ca_cert.is_file() and ca_key.is_file())
    if fresh_ca:
        make_ca(certs)
        made.append(f"a local CA in {certs}")
    for name in parties:
        if (
            fresh_ca
            or not (certs / f"{name}.pem").is_file()
            or not (certs / f"{name}.key").is_file()
        ):
            make_node_certificate(
                certs, name, ca_cert=ca_cert, ca_key=ca_key, hosts=("127.0.0.1", "localhost", name)
            )
            made.append(f"the certificate of {name} in {certs}")
    return made


def _keys_complete(keys: Path, parties: Sequence[str]) -> bool:
    if not (keys / PUBLIC_FILE).is_file():
        return False
    if not all(share_file(keys, p).is_file() for p in parties):
        return False
    try:
        return load_public(keys / PUBLIC_FILE).parties == tuple(parties)
    except RiskpropError:
        return False


def setup_keys(keys: Path, parties: Sequence[str], bits: int) -> list[str]:
    """A dealt threshold key with an honest-majority threshold, unless a fitting one exists."""
    if _keys_complete(keys, parties):
        return []
    shutil.rmtree(keys, ignore_errors=True)
    threshold = default_threshold(len(parties))
    dealer_keygen(keys, parties, threshold, bits)
    return [
        f"a {bits}-bit threshold key (threshold {threshold}) for {', '.join(parties)} in {keys}"
    ]


def _data_complete(data: Path, parties: Sequence[str]) -> bool:
    if not data.is_dir():
        return False
    banks = {p.name for p in data.iterdir() if p.is_dir() and not p.name.startswith(".")}
    files = ("accounts.csv", "transactions.csv")
    return banks == set(parties) and all((data / p / f).is_file() for p in parties for f in files)


def setup_data(
    data: Path, parties: Sequence[str], accounts: int, edges: int, seed: int
) -> list[str]:
    """A synthetic data set with one directory per party, unless a fitting one exists."""
    if _data_complete(data, parties):
        return []
    shutil.rmtree(data, ignore_errors=True)
    summary = generate_dataset(data, accounts=accounts, edges=edges, banks=parties, seed=seed)
    return [
        f"sample data ({summary.accounts} accounts, {summary.transactions} transactions) in {data}"
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--root",
        type=Path,
        default=REPO / "local",
        help="directory to fill (default: local/ at the repository root)",
    )
    parser.add_argument("--parties", default="alice,bob,charlie", help="comma-separated names")
    parser.add_argument("--key-bits", type=int, default=2048, help="Paillier modulus bits")
    parser.add_argument("--accounts", type=int, default=300)
    parser.add_argument("--edges", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--force", action="store_true", help="remake everything")
    args = parser.parse_args(argv)
    root: Path = args.root
    certs, keys, data = root / "certs", root / "keys", root / "data"
    try:
        parties = check_banks([p.strip() for p in args.parties.split(",") if p.strip()])
        if len(parties) < 2:
            parser.error("--parties must name at least two parties")
        if args.key_bits < 128 or args.key_bits % 8:
            parser.error("--key-bits must be a multiple of 8 and at least 128")
        if args.force:
            for directory in (certs, keys, data):
                shutil.rmtree(directory, ignore_errors=True)
        made = [
            *setup_certs(certs, parties),
            *setup_keys(keys, parties, args.key_bits),
            *setup_data(data, parties, args.accounts, args.edges, args.seed),
        ]
    except RiskpropError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for item in made:
        print(f"made {item}")
    if not made:
        print(f"{root} is complete; nothing to do (--force remakes it)")
    print(f"ready: run `riskprop --player NAME` in one shell for each of {', '.join(parties)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
