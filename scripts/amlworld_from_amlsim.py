#!/usr/bin/env python3
"""Write an IBM AMLSim sample (``nodes.csv``, ``transactions.csv``) as an IBM AMLworld file.

The output has AMLworld's exact header (``Timestamp,From Bank,Account,To Bank,Account,Amount
Received,Receiving Currency,Amount Paid,Payment Currency,Payment Format,Is Laundering``), so
``riskprop import amlworld`` can be tried, and measured, on real laundering typologies while no
AMLworld file is at hand. The mapping is deterministic (no random numbers; the same sample
gives the same bytes):

- **Banks.** AMLSim has no banks. Node ``i`` goes to AMLworld bank ``j`` (``--banks`` ids,
  default 30, written ``001``, ``002``, ...) by a hash of its id: ``u = blake2b(str(i))`` as
  an 8-byte big-endian integer over ``2**64``, and ``j`` the first bank whose cumulative share
  exceeds ``u``, with shares ``proportional to 1 / (j + 1)`` (Zipf). Bank ``001`` holds about a
  quarter of the accounts and ``030`` under 1%, as real banks differ in size, so ``import
  amlworld --banks 3`` has a real dealing of bank ids to parties to do.
- **Accounts.** Node ``i``'s account number is ``8`` and eight upper-case hex digits of
  ``(i * 0x9E3779B1 + 0x7F4A7C15) mod 2**32`` (AMLworld's style, ``8000EBD30``). The
  multiplier is odd, so the map is one to one: no two nodes share an account number.
- **Time.** AMLSim's integer step ``s`` is a day: ``2022/09/01 00:00`` (the first day of
  AMLworld's HI-Small) plus ``s - 1`` days. A step's transactions, in file order, are spread
  over its day: the ``r``-th of ``n`` gets minute ``floor(r * 1440 / n)``. Rows are written in
  time order (the file order within a step), as AMLworld's are.
- **Amounts.** AMLSim's ``value`` is read as US dollars. Every fifth bank (``005``, ``010``,
  ...: 12% of the sample's accounts) keeps its accounts in euros, the others in US dollars
  (23% of the rows pay or receive euros).
  ``Amount Paid`` is the value in the payer bank's currency and ``Amount Received`` in the
  payee bank's, converted with the rate ``riskprop import amlworld`` uses by default
  (:data:`riskprop.lab.amlworld.RATES`) and rounded to cents, so importing converts back to the
  value within a cent.
- **Payment Format.** ``Reinvestment`` for a self-transfer (AMLworld's self-transfers are
  Reinvestment rows; AMLSim's few self-loops become those and the importer drops them),
  ``Wire`` between a euro and a dollar bank, ``ACH`` otherwise. Not used by riskprop.
- **Is Laundering.** 1 when *both* endpoints are fraud accounts (``isFraud`` 1 in
  ``nodes.csv``), else 0. AMLSim marks laundering per account, as members of an alert group (a
  cycle here), and its transactions carry no flag or group id; the transfers of a cycle run
  between its members, so "both endpoints fraud" is the transaction flag closest to it. It never
  labels an innocent account (the importer's label of an account is "takes part in a row marked
  1", and both ends of such a row are fraud accounts), and it labels every fraud account that
  deals with another fraud account: 942 of the 945 in the 20K_cycle200 sample (three deal only
  with clean accounts). Marking rows with *either* endpoint fraud would label some 10,000 clean
  counterparties; ``fraudStep`` (-1 for half the fraud accounts) cannot be the basis either.
- **Accounts without transactions** (20 in the sample) do not appear: an AMLworld file lists
  transactions only.

Usage::

    python scripts/amlworld_from_amlsim.py SRC OUT.csv [--banks 30]

Bad input stops with one line naming the file, the line and the field; ``OUT`` is written
atomically (all or nothing).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

import numpy as np

from riskprop.core.types import BoolArray, FloatArray, IntArray
from riskprop.errors import ConfigError, InputError, RiskpropError
from riskprop.files.atomic import atomic_write_text
from riskprop.lab.amlworld import HEADER, RATES, TIMESTAMP_FORMAT

NODES_HEADER: Final = ("nodeid", "isFraud", "init_balance", "fraudStep")
TRANSACTIONS_HEADER: Final = ("sourceNodeId", "targetNodeId", "value", "time")
START: Final = datetime(2022, 9, 1)
MINUTES_PER_DAY: Final = 1440
DOLLAR, EURO = "US Dollar", "Euro"
#: Every EURO_EVERY-th bank id (005, 010, ...) keeps its accounts in euros.
EURO_EVERY: Final = 5
DEFAULT_BANKS: Final = 30
_ACCOUNT_MULTIPLIER: Final = 0x9E3779B1  # odd: i -> (a i + c) mod 2**32 is one to one
_ACCOUNT_OFFSET: Final = 0x7F4A7C15


@dataclass(frozen=True)
class Amlsim:
    """An AMLSim sample: nodes (id, fraud flag) and transactions as node positions."""

    node_ids: IntArray
    fraud: BoolArray
    source: IntArray  #: position in ``node_ids`` of each transaction's payer
    target: IntArray  #: ... and payee
    value: FloatArray
    step: IntArray


@dataclass(frozen=True)
class Conversion:
    """What :func:`convert` wrote."""

    rows: int
    laundering_rows: int
    banks: int
    accounts: int  #: nodes that appear in a transaction
    fraud_accounts: int  #: fraud nodes in ``nodes.csv``
    laundering_accounts: int  #: accounts in a row marked Is Laundering 1
    euro_rows: int  #: rows paid or received in euros


# ------------------------------------------------------------------------------ reading


def _records(path: Path, header: tuple[str, ...]) -> list[tuple[int, list[str]]]:
    """``(line, fields)`` of every non-empty record after the checked header."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            got = next(reader, None)
            if got is None or tuple(h.strip() for h in got) != header:
                raise InputError(f"{path}:1: expected the header {','.join(header)}")
            out = []
            for record in reader:
                if not record:
                    continue
                if len(record) != len(header):
                    raise InputError(
                        f"{path}:{reader.line_num}: {len(record)} fields, expected {len(header)}"
                    )
                out.append((reader.line_num, record))
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None
    return out


def _int(path: Path, line: int, name: str, text: str, low: int = 0) -> int:
    """The integer ``text`` (``7`` or ``7.0``), at least ``low``."""
    try:
        number = float(text)
    except ValueError:
        number = float("nan")
    if not (number >= low and number.is_integer()):  # False for NaN
        raise InputError(f"{path}:{line}: {name} {text!r} is not an integer >= {low}")
    return int(number)


def read_amlsim(src: Path) -> Amlsim:
    """Read and check ``src/nodes.csv`` and ``src/transactions.csv``."""
    nodes_path, transactions_path = src / "nodes.csv", src / "transactions.csv"
    ids: list[int] = []
    fraud: list[bool] = []
    where: dict[int, int] = {}
    for line, record in _records(nodes_path, NODES_HEADER):
        node = _int(nodes_path, line, "nodeid", record[0])
        if record[1].strip() not in ("0", "1"):
            raise InputError(f"{nodes_path}:{line}: isFraud {record[1]!r} is not 0 or 1")
        if node in where:
            raise InputError(f"{nodes_path}:{line}: duplicate nodeid {node}")
        where[node] = len(ids)
        ids.append(node)
        fraud.append(record[1].strip() == "1")
    source: list[int] = []
    target: list[int] = []
    value: list[float] = []
    step: list[int] = []
    for line, record in _records(transactions_path, TRANSACTIONS_HEADER):
        for column, text, out in (
            ("sourceNodeId", record[0], source),
            ("targetNodeId", record[1], target),
        ):
            node = _int(transactions_path, line, column, text)
            if node not in where:
                raise InputError(
                    f"{transactions_path}:{line}: {column} {node} is not a nodeid of nodes.csv"
                )
            out.append(where[node])
        try:
            amount = float(record[2])
        except ValueError:
            amount = float("nan")
        if not (0.0 <= amount < 1e15):
            raise InputError(
                f"{transactions_path}:{line}: value {record[2]!r} is not a non-negative number"
            )
        value.append(amount)
        step.append(_int(transactions_path, line, "time", record[3], low=1))  # days 1, 2, ...
    if not source:
        raise InputError(f"{transactions_path}: no transactions after the header")
    return Amlsim(
        node_ids=np.array(ids, dtype=np.int64),
        fraud=np.array(fraud, dtype=bool),
        source=np.array(source, dtype=np.int64),
        target=np.array(target, dtype=np.int64),
        value=np.array(value, dtype=np.float64),
        step=np.array(step, dtype=np.int64),
    )


# ------------------------------------------------------------------------------ mapping


def bank_of(node_ids: IntArray, banks: int) -> IntArray:
    """Bank position ``0..banks-1`` of every node: a blake2b hash of its id against Zipf shares
    ``1 / (j + 1)`` (module description)."""
    shares = 1.0 / np.arange(1, banks + 1)
    cumulative = np.cumsum(shares) / shares.sum()
    u = np.array(
        [
            int.from_bytes(hashlib.blake2b(str(int(i)).encode(), digest_size=8).digest(), "big")
            / 2.0**64
            for i in node_ids
        ]
    )
    found: IntArray = np.minimum(np.searchsorted(cumulative, u, side="right"), banks - 1)
    return found.astype(np.int64)


def bank_id(j: int) -> str:
    return f"{j + 1:03d}"


def account_number(node: int) -> str:
    """``8`` and eight hex digits of a one-to-one scramble of the node id."""
    return f"8{(node * _ACCOUNT_MULTIPLIER + _ACCOUNT_OFFSET) % 2**32:08X}"


def currency_of(j: int) -> str:
    return EURO if (j + 1) % EURO_EVERY == 0 else DOLLAR


def minutes(step: IntArray) -> IntArray:
    """Minutes since START of every row of a step-sorted array: day ``s - 1``, then the
    ``r``-th of the day's ``n`` rows at minute ``floor(r * 1440 / n)``."""
    _, first, count = np.unique(step, return_index=True, return_counts=True)
    rank = np.arange(step.size) - np.repeat(first, count)
    return (step - 1) * MINUTES_PER_DAY + rank * MINUTES_PER_DAY // np.repeat(count, count)


# ------------------------------------------------------------------------------ writing


def amlworld_text(sample: Amlsim, banks: int = DEFAULT_BANKS) -> tuple[str, Conversion]:
    """The AMLworld file of ``sample`` (module description) and its summary."""
    if isinstance(banks, bool) or not 1 <= banks <= 999:
        raise ConfigError(f"--banks must be 1-999 AMLworld bank ids (got {banks!r})")
    order = np.argsort(sample.step, kind="stable")
    src, dst = sample.source[order], sample.target[order]
    value, step = sample.value[order], sample.step[order]
    bank = bank_of(sample.node_ids, banks)
    account = [account_number(int(i)) for i in sample.node_ids]
    bank_ids = [bank_id(j) for j in range(banks)]
    currency = [currency_of(j) for j in range(banks)]
    laundering = sample.fraud[src] & sample.fraud[dst]
    stamp = [(START + timedelta(minutes=int(m))).strftime(TIMESTAMP_FORMAT) for m in minutes(step)]

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HEADER)
    euro_rows = 0
    for r in range(src.size):
        s, d = int(src[r]), int(dst[r])
        paid_in, received_in = currency[bank[s]], currency[bank[d]]
        euro_rows += EURO in (paid_in, received_in)
        if s == d:
            kind = "Reinvestment"
        elif paid_in != received_in:
            kind = "Wire"
        else:
            kind = "ACH"
        writer.writerow(
            (
                stamp[r],
                bank_ids[bank[s]],
                account[s],
                bank_ids[bank[d]],
                account[d],
                f"{value[r] * RATES[received_in]:.2f}",
                received_in,
                f"{value[r] * RATES[paid_in]:.2f}",
                paid_in,
                kind,
                int(laundering[r]),
            )
        )
    seen = np.zeros(sample.node_ids.size, dtype=bool)
    seen[src] = seen[dst] = True
    marked = np.zeros(sample.node_ids.size, dtype=bool)
    marked[src[laundering]] = marked[dst[laundering]] = True
    summary = Conversion(
        rows=int(src.size),
        laundering_rows=int(laundering.sum()),
        banks=int(np.unique(bank[seen]).size),
        accounts=int(seen.sum()),
        fraud_accounts=int(sample.fraud.sum()),
        laundering_accounts=int(marked.sum()),
        euro_rows=euro_rows,
    )
    return buffer.getvalue(), summary


def convert(src: Path, out: Path, banks: int = DEFAULT_BANKS) -> Conversion:
    """Write the AMLSim sample in directory ``src`` as the AMLworld file ``out`` (atomic)."""
    if out.is_dir():
        raise ConfigError(f"{out}: is a directory; give a file name")
    text, summary = amlworld_text(read_amlsim(src), banks)
    atomic_write_text(out, text)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("src", type=Path, help="AMLSim directory (nodes.csv, transactions.csv)")
    parser.add_argument("out", type=Path, help="AMLworld transactions CSV to write")
    parser.add_argument("--banks", type=int, default=DEFAULT_BANKS, help="AMLworld bank ids")
    args = parser.parse_args(argv)
    try:
        summary = convert(args.src, args.out, args.banks)
    except RiskpropError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"wrote {args.out}: {summary.rows} transactions ({summary.laundering_rows} laundering, "
        f"{summary.euro_rows} in euros) between {summary.accounts} accounts of "
        f"{summary.banks} banks; {summary.laundering_accounts} of {summary.fraud_accounts} "
        f"fraud accounts in a laundering row"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
