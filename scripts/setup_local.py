#!/usr/bin/env python3
"""Make what configs/ expects in ./local: certificates, a threshold key and sample data.

    python scripts/setup_local.py [--root local] [--parties alice,bob,charlie] [--key-bits 2048]

Parts that exist already are kept (``--force`` makes them anew). The key comes from the
trusted dealer (`riskprop keygen`): fine for a local set-up, not for production.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from riskprop.core.threshold import default_threshold
from riskprop.keys import dealer_keygen, share_file
from riskprop.synthetic import generate_dataset
from riskprop.tls import make_ca, make_node_certificate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("local"))
    parser.add_argument("--parties", default="alice,bob,charlie")
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--accounts", type=int, default=300)
    parser.add_argument("--edges", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--force", action="store_true", help="remake everything")
    args = parser.parse_args()
    parties = [p.strip() for p in args.parties.split(",") if p.strip()]
    certs, keys, data = args.root / "certs", args.root / "keys", args.root / "data"
    if args.force:
        for directory in (certs, keys, data):
            shutil.rmtree(directory, ignore_errors=True)

    if not (certs / "ca.pem").is_file():
        make_ca(certs)
        print(f"made a local CA in {certs}")
    for name in parties:
        if not (certs / f"{name}.pem").is_file():
            make_node_certificate(
                certs,
                name,
                ca_cert=certs / "ca.pem",
                ca_key=certs / "ca.key",
                hosts=("127.0.0.1", "localhost", name),
            )
            print(f"made the certificate of {name}")
    if not all(share_file(keys, p).is_file() for p in parties):
        dealer_keygen(keys, parties, default_threshold(len(parties)), args.key_bits)
        print(f"dealt a {args.key_bits}-bit threshold key to {', '.join(parties)} in {keys}")
    if not all((data / p / "transactions.csv").is_file() for p in parties):
        generate_dataset(
            data, accounts=args.accounts, edges=args.edges, banks=parties, seed=args.seed
        )
        print(f"generated sample data in {data}")
    print(f"ready: run `riskprop --player NAME` for each of {', '.join(parties)}")


if __name__ == "__main__":
    main()
