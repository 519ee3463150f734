"""``riskprop setup-local``: what ``configs/`` expects in ``ROOT`` (default ``./local``).

``ROOT/certs`` holds a local CA and one certificate per party (hosts 127.0.0.1, localhost and
the party name), ``ROOT/keys`` a dealt threshold key, ``ROOT/data`` a synthetic data set. Parts
that exist already, complete and for the same parties, are kept; ``force`` makes them anew. The
key comes from a trusted dealer: fine for a local set-up, not for production.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from riskprop.core.threshold import default_threshold
from riskprop.errors import ConfigError, RiskpropError
from riskprop.files.keys import PUBLIC_FILE, dealer_keygen, load_public, share_file
from riskprop.lab.synthetic import check_banks, generate_dataset
from riskprop.localnet.certs import ensure_certificates


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


def setup_local(
    root: Path,
    parties: Sequence[str],
    *,
    key_bits: int,
    accounts: int,
    edges: int,
    seed: int,
    force: bool = False,
) -> list[str]:
    """Fill ``root`` (see the module doc); returns what was made, for people."""
    parties = check_banks(list(parties))
    if len(parties) < 2:
        raise ConfigError("--parties must name at least two parties")
    if key_bits < 128 or key_bits % 8:
        raise ConfigError("--key-bits must be a multiple of 8 and at least 128")
    certs, keys, data = root / "certs", root / "keys", root / "data"
    if force:
        for directory in (certs, keys, data):
            shutil.rmtree(directory, ignore_errors=True)
    return [
        *ensure_certificates(certs, parties),
        *setup_keys(keys, parties, key_bits),
        *setup_data(data, parties, accounts, edges, seed),
    ]
