"""Writing small data sets from Python literals (plain functions, usable from hypothesis)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

ACCOUNTS_HEADER = "id,risk_score"
TRANSACTIONS_HEADER = "id_source,bank_source,id_destination,bank_destination,amount"

AccountRow = tuple[str, float | str]
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
    Returns ``root``.
    """
    for name, (accounts, transactions) in banks.items():
        directory = root / name
        directory.mkdir(parents=True, exist_ok=True)
        lines = [ACCOUNTS_HEADER, *(f"{field(i)},{field(r)}" for i, r in accounts)]
        (directory / "accounts.csv").write_text("\n".join(lines) + "\n")
        with_period = any(len(row) == 6 for row in transactions)
        header = TRANSACTIONS_HEADER + (",period" if with_period else "")
        rows = [(*row, 0) if with_period and len(row) == 5 else tuple(row) for row in transactions]
        lines = [header, *(",".join(field(v) for v in row) for row in rows)]
        (directory / "transactions.csv").write_text("\n".join(lines) + "\n")
    return root
