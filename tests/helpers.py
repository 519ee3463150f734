"""Plain helpers shared by the tests: small data sets from Python literals (usable from
hypothesis), dealt keys, and where the repository and the AMLSim sample are."""

from __future__ import annotations

import csv
import importlib.util
import os
import secrets
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import numpy as np
import phe
import pytest
from gmpy2 import mpz

from riskprop.core.paillier import PublicKey
from riskprop.core.threshold import KeyShare, combine, deal, partial_decrypt
from riskprop.core.types import IntArray

#: The repository's root (this file is tests/helpers.py).
REPO = Path(__file__).resolve().parent.parent
#: Modulus size of the keys tests deal (fast; 2048 bits only where a test says so).
KEY_BITS = 512

ACCOUNTS_HEADER = "id,risk_score"
TRANSACTIONS_HEADER = "id_source,bank_source,id_destination,bank_destination,amount"

AccountRow = tuple[str, float | str]
#: A transaction: (id_source, bank_source, id_destination, bank_destination, amount, period)
TxRow = tuple[str, str, str, str, float, int]
BankSpec = tuple[Sequence[AccountRow], Sequence[tuple[object, ...]]]
#: the ``dataset`` fixture: writes a data set under ``tmp_path`` and returns its root
WriteDataset = Callable[[Mapping[str, BankSpec]], Path]


def field(value: object) -> str:
    """A CSV field: strings verbatim, floats at full precision (``repr``)."""
    return repr(value) if isinstance(value, float) else str(value)


def write_dataset(root: Path, banks: Mapping[str, BankSpec]) -> Path:
    """Write ``root/<bank>/accounts.csv`` and ``transactions.csv`` for every bank.

    ``banks[name] = (accounts, transactions)``: account rows ``(id, risk_score)`` and transaction
    rows ``(id_source, bank_source, id_destination, bank_destination, amount[, period])``. The
    ``period`` column is written when any row of the file has 6 fields (5-field rows get 0).
    Fields go through a CSV writer, so ids holding commas, quotes or newlines are quoted.
    Returns ``root``.
    """
    for name, (accounts, transactions) in banks.items():
        directory = root / name
        directory.mkdir(parents=True, exist_ok=True)
        with_period = any(len(row) == 6 for row in transactions)
        header = TRANSACTIONS_HEADER + (",period" if with_period else "")
        rows = [(*row, 0) if with_period and len(row) == 5 else tuple(row) for row in transactions]
        _write_csv(directory / "accounts.csv", ACCOUNTS_HEADER, accounts)
        _write_csv(directory / "transactions.csv", header, rows)
    return root


def _write_csv(path: Path, header: str, rows: Iterable[Sequence[object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header.split(","))
        writer.writerows([field(value) for value in row] for row in rows)


def bank_specs(
    accounts: Mapping[str, Sequence[AccountRow]],
    transactions: Mapping[str, Sequence[tuple[object, ...]]],
    *,
    period_column: bool = True,
) -> dict[str, BankSpec]:
    """``write_dataset``'s input from accounts and transaction files given per bank (a bank
    without transactions gets none); without ``period_column`` the rows lose their period."""
    return {
        bank: (
            rows,
            [row if period_column else row[:5] for row in transactions.get(bank, ())],
        )
        for bank, rows in accounts.items()
    }


def spread(rows: Iterable[TxRow]) -> dict[str, list[TxRow]]:
    """Each transaction in the file of every bank it touches (both, for cross-bank ones)."""
    files: dict[str, list[TxRow]] = {}
    for row in rows:
        for bank in dict.fromkeys((row[1], row[3])):
            files.setdefault(bank, []).append(row)
    return files


_DEALT: dict[tuple[tuple[str, ...], int], dict[str, KeyShare]] = {}


def dealt_shares(parties: Sequence[str], threshold: int) -> dict[str, KeyShare]:
    """A dealt ``KEY_BITS``-bit key for ``parties``: each party's share, cached per
    (parties, threshold) for the whole session."""
    cache_key = (tuple(parties), threshold)
    if cache_key not in _DEALT:
        _, private = phe.generate_paillier_keypair(n_length=KEY_BITS)
        _DEALT[cache_key] = {s.party: s for s in deal(private.p, private.q, parties, threshold)}
    return _DEALT[cache_key]


def full_decrypt(shares: Mapping[str, KeyShare], values: Sequence[mpz]) -> list[int]:
    """Decrypt with every share (what no single bank can do)."""
    key = next(iter(shares.values())).key
    return combine(key, {p: partial_decrypt(s, values) for p, s in shares.items()})


def amlsim_sample() -> Path:
    """IBM AMLSim's sample: ``$RISKPROP_AMLSIM``, else the shared folder beside the repository
    (``<repo>/../shared/data/amlsim-20K_cycle200``)."""
    override = os.environ.get("RISKPROP_AMLSIM")
    if override:
        return Path(override)
    return REPO.parent / "shared" / "data" / "amlsim-20K_cycle200"


def require_amlsim_sample() -> Path:
    """The sample's directory; skips the test where it is missing, except in CI (``CI=true``),
    where the sample is always there and a missing one is a failure."""
    sample = amlsim_sample()
    if not (sample / "nodes.csv").is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"AMLSim sample not found at {sample}")
        pytest.skip(f"AMLSim sample not found at {sample} (set RISKPROP_AMLSIM)")
    return sample


@contextmanager
def loaded_script(path: Path) -> Iterator[ModuleType]:
    """A script under ``scripts/`` imported as a module named after its file, registered in
    ``sys.modules`` while in use (its dataclasses look their module up there)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``riskprop ARGS`` in this process: exit code, stdout and stderr."""
    from riskprop.cli import main

    try:
        main(args)
        code = 0
    except SystemExit as exit_info:
        code = int(exit_info.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def random_csr(
    rng: np.random.Generator, key: PublicKey, n_rows: int, extra: int, degree: float, bits: int
) -> tuple[list[mpz], IntArray, IntArray, list[int]]:
    """A random ``linear_step`` input: ``n_rows + extra`` bases mod ``key``'s ``N**2`` (from
    ``secrets``), Poisson(``degree``) edges a row to uniform bases, ``bits``-bit exponents."""
    bases = [mpz(secrets.randbelow(key.nsquare)) for _ in range(max(1, n_rows + extra))]
    counts = rng.poisson(degree, n_rows)
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    indices = rng.integers(0, len(bases), int(indptr[-1])).astype(np.int64)
    coefs = [int(v) for v in rng.integers(0, 2**bits, int(indptr[-1]), dtype=np.int64)]
    return bases, indptr, indices, coefs
