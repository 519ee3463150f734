"""In-memory tables as a data set, and results as tables: the notebook side of the workbench.

Input tables (a ``pyarrow.Table`` or a pandas ``DataFrame``):

* accounts: ``bank, id, risk_score``;
* transactions: ``id_source, bank_source, id_destination, bank_destination, amount`` and
  optionally ``period``;
* labels: ``bank, id, is_laundering`` (0/1 or booleans).

:func:`write_tables` writes them in the data set layout (``<bank>/accounts.csv`` with the
bank's accounts; ``<bank>/transactions.csv`` with every transaction touching the bank, so a
cross-bank one lands in both banks' files; ``labels.csv``), where the loader validates them as
it validates files. Floats are written by Arrow's CSV writer, which prints the shortest text
that reads back as the same double, so loading returns the tables' exact values.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from riskprop.errors import ConfigError, InputError
from riskprop.files.layout import ACCOUNTS_HEADER, LABELS_HEADER
from riskprop.lab.synthetic import check_banks

ACCOUNT_COLUMNS = ("bank", "id", "risk_score")
TRANSACTION_COLUMNS = ("id_source", "bank_source", "id_destination", "bank_destination", "amount")
PERIOD = "period"


def as_table(value: object, what: str) -> pa.Table:
    """``value`` as a pyarrow Table: a Table as is, a pandas DataFrame converted (its index
    dropped); anything else is an InputError naming ``what``."""
    if isinstance(value, pa.Table):
        return value
    if type(value).__module__.split(".")[0] == "pandas" and hasattr(value, "columns"):
        return pa.Table.from_pandas(value, preserve_index=False)
    raise InputError(f"{what}: expected a pyarrow Table or a pandas DataFrame, not {type(value)}")


def _columns(table: pa.Table, what: str, required: Sequence[str]) -> None:
    missing = [c for c in required if c not in table.column_names]
    if missing:
        raise InputError(
            f"{what}: missing column(s) {', '.join(missing)} (needs {', '.join(required)})"
        )


def _strings(table: pa.Table, column: str, what: str) -> pa.ChunkedArray:
    values = table.column(column)
    if values.null_count:
        raise InputError(f"{what}: column {column} has {values.null_count} empty value(s)")
    try:
        return pc.cast(values, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise InputError(f"{what}: column {column} cannot be read as text") from None


def _numbers(table: pa.Table, column: str, what: str, kind: pa.DataType) -> pa.ChunkedArray:
    values = table.column(column)
    if values.null_count:
        raise InputError(f"{what}: column {column} has {values.null_count} empty value(s)")
    try:
        return pc.cast(values, kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise InputError(f"{what}: column {column} is not {kind}") from None


def write_tables(
    out: Path, accounts: object, transactions: object, labels: object | None = None
) -> tuple[Path, Path | None]:
    """Write the tables as a data set under ``out`` (module doc); return the data directory
    and the labels file (None without labels). Banks come from the accounts table."""
    acc = as_table(accounts, "accounts")
    txs = as_table(transactions, "transactions")
    _columns(acc, "accounts", ACCOUNT_COLUMNS)
    _columns(txs, "transactions", TRANSACTION_COLUMNS)
    bank = _strings(acc, "bank", "accounts")
    names = check_banks(sorted(pc.unique(bank).to_pylist()))
    account_table = pa.table(
        {
            "id": _strings(acc, "id", "accounts"),
            "risk_score": _numbers(acc, "risk_score", "accounts", pa.float64()),
        }
    )
    columns: dict[str, pa.ChunkedArray] = {
        "id_source": _strings(txs, "id_source", "transactions"),
        "bank_source": _strings(txs, "bank_source", "transactions"),
        "id_destination": _strings(txs, "id_destination", "transactions"),
        "bank_destination": _strings(txs, "bank_destination", "transactions"),
        "amount": _numbers(txs, "amount", "transactions", pa.float64()),
    }
    if PERIOD in txs.column_names:
        columns[PERIOD] = _numbers(txs, PERIOD, "transactions", pa.int64())
    tx_table = pa.table(columns)
    for column in ("bank_source", "bank_destination"):
        unknown = set(pc.unique(tx_table.column(column)).to_pylist()) - set(names)
        if unknown:
            raise InputError(
                f"transactions: {column} {sorted(unknown)[0]!r} has no accounts in the accounts "
                f"table (banks: {', '.join(names)})"
            )
    data = out / "data"
    for name in names:
        directory = data / name
        directory.mkdir(parents=True)
        own = pc.equal(bank, name)
        _write(directory / "accounts.csv", account_table.filter(own), ACCOUNTS_HEADER)
        touching = pc.or_(
            pc.equal(tx_table.column("bank_source"), name),
            pc.equal(tx_table.column("bank_destination"), name),
        )
        _write(directory / "transactions.csv", tx_table.filter(touching), tx_table.column_names)
    if labels is None:
        return data, None
    lab = as_table(labels, "labels")
    _columns(lab, "labels", LABELS_HEADER)
    flags = lab.column("is_laundering")
    if pa.types.is_boolean(flags.type):
        flags = pc.cast(flags, pa.int8())
    lab = lab.set_column(lab.column_names.index("is_laundering"), "is_laundering", flags)
    value = _numbers(lab, "is_laundering", "labels", pa.int8())
    if len(value) and not pc.all(pc.is_in(value, pa.array([0, 1], pa.int8()))).as_py():
        raise InputError("labels: column is_laundering holds a value other than 0 and 1")
    label_table = pa.table(
        {
            "bank": _strings(lab, "bank", "labels"),
            "id": _strings(lab, "id", "labels"),
            "is_laundering": value,
        }
    )
    path = out / "labels.csv"
    _write(path, label_table, LABELS_HEADER)
    return data, path


def _write(path: Path, table: pa.Table, header: Sequence[str]) -> None:
    table = table.rename_columns(list(header))
    pa_csv.write_csv(table, path, pa_csv.WriteOptions(quoting_style="needed"))


def output(rows: Sequence[dict[str, object]], as_pandas: bool) -> Any:
    """``rows`` as a pyarrow Table, or with ``as_pandas`` a pandas DataFrame."""
    table = pa.Table.from_pylist(list(rows))
    if not as_pandas:
        return table
    if importlib.util.find_spec("pandas") is None:
        raise ConfigError("as_pandas=True needs pandas: pip install pandas")
    return table.to_pandas()
