"""Synthetic raw transactions per bank with planted laundering typologies (``generate --raw``).

Writes ``OUT/<bank>/raw.csv`` in riskprop's raw layout
(:data:`riskprop.scoring.raw.RISKPROP_HEADER`) and ``OUT/labels.csv`` (``bank,id,is_laundering``).
A transaction touching a bank (its source or target bank) is in that bank's file; a cross-bank
one is in both, with the same ``tx_id`` and the same UTC instant, each file writing it at its
own bank's UTC offset.

Background (vectorised, one draw per column): source uniform over the accounts of all banks,
target uniform over the source's bank (share :data:`DOMESTIC_SHARE`) or over all accounts (a
self-transfer moves the target on by the number of banks), amounts log-normal
(``exp(N(log 150, 1.1))`` US dollars, in cents), types wire/card/cash/ach, countries the banks'
home countries with a small foreign share, times uniform over ``days`` days from
:data:`EPOCH`, a small share failed.

Accounts ``<bank>-<number>``, account ``i`` in bank ``i mod len(banks)``; bank ``j`` has home
country and UTC offset :data:`HOMES` ``[j mod 5]``.

Typologies, ``max(1, accounts // (150 * len(banks)))`` instances of each (a loop per instance;
an instance uses accounts no other instance uses; only the accounts that launder are labelled 1):

- *structuring*: 3 to 5 cash deposits of 9,000 to 9,990 USD into one account within 40 hours
  (the default ``cash_structuring`` rule: 3 near-threshold cash transactions within 2 days);
- *pass-through chain*: 3 or 4 accounts in different banks where there are enough, each passing
  on what it received 1 to 6 hours later less 0 to 3 % (``pass_through``: out within 48 h,
  within 10 %); the chain's accounts are labelled, its origin and final payee are not;
- *fan-in* / *fan-out*: 12 to 20 distinct counterparties paying into (paid from) one account
  within a day (``fan_in`` / ``fan_out``: 10 distinct within 7 days);
- *high-risk counterparty*: 2 or 3 wires with one counterparty whose country on these wires is
  KP or IR (``high_risk_jurisdiction``); the counterparty is an account of one of ``banks`` (a
  data set for propagation holds only its banks) and is not labelled.

Deterministic per seed: everything is drawn from one ``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from riskprop.core.types import FloatArray, IntArray
from riskprop.errors import ConfigError
from riskprop.files.layout import LABELS_HEADER, prepare_out, write_csv_atomic
from riskprop.scoring.raw import RISKPROP_HEADER

#: first instant of the generated period (2026-01-01T00:00:00Z)
EPOCH: Final = 1_767_225_600
DAY: Final = 86_400
HOUR: Final = 3_600
#: (home country, UTC offset in seconds) of the i-th bank, cycled
HOMES: Final = (("US", -5 * HOUR), ("GB", 0), ("DE", HOUR), ("AU", 10 * HOUR), ("IN", 19_800))
FOREIGN: Final = ("FR", "NL", "JP", "CA", "CH")
KINDS: Final = ("wire", "card", "cash", "ach")
KIND_SHARE: Final = (0.25, 0.4, 0.1, 0.25)
FOREIGN_SHARE: Final = 0.03
#: share of background transactions whose target is drawn from the source's bank
DOMESTIC_SHARE: Final = 0.7
FAILED_SHARE: Final = 0.02
HIGH_RISK: Final = ("KP", "IR")


@dataclass
class _Rows:
    """Column lists of planted transactions (accounts as positions); a non-empty country
    replaces the party's home country."""

    source: list[int] = field(default_factory=list)
    target: list[int] = field(default_factory=list)
    time: list[int] = field(default_factory=list)
    amount: list[float] = field(default_factory=list)
    kind: list[str] = field(default_factory=list)
    source_country: list[str] = field(default_factory=list)
    target_country: list[str] = field(default_factory=list)

    def add(
        self,
        source: int,
        target: int,
        time: int,
        amount: float,
        kind: str,
        *,
        source_country: str = "",
        target_country: str = "",
    ) -> None:
        self.source.append(source)
        self.target.append(target)
        self.time.append(time)
        self.amount.append(amount)
        self.kind.append(kind)
        self.source_country.append(source_country)
        self.target_country.append(target_country)


@dataclass(frozen=True)
class RawSummary:
    banks: tuple[str, ...]
    accounts: int
    transactions: int
    cross_bank: int
    laundering_accounts: int


def generate_raw(
    out: Path,
    *,
    banks: Sequence[str],
    accounts: int,
    transactions: int,
    days: int = 30,
    seed: int = 0,
) -> RawSummary:
    """Generate and write the data set described in the module docstring."""
    if len(banks) < 1 or len(set(banks)) != len(banks):
        raise ConfigError("--banks: need one or more distinct bank names")
    if accounts < 60 * len(banks):
        raise ConfigError(f"--accounts: need at least {60 * len(banks)} for {len(banks)} banks")
    if transactions < 0 or days < 3:
        raise ConfigError("--transactions must be >= 0 and --days >= 3")
    prepare_out(out, banks)
    rng = np.random.default_rng(seed)
    k = len(banks)
    bank_of = np.arange(accounts, dtype=np.int64) % k  # account i belongs to bank i mod k
    bank_names = np.array(list(banks), dtype=object)
    numbers = np.char.zfill(np.arange(accounts).astype(str), 7)
    names = np.char.add(np.char.add(bank_names[bank_of].astype(str), "-"), numbers).astype(object)
    home = np.array([HOMES[b % len(HOMES)][0] for b in range(k)], dtype=object)
    offset = np.array([HOMES[b % len(HOMES)][1] for b in range(k)], dtype=np.int64)

    # background
    m = transactions
    src = rng.integers(0, accounts, m)
    dst = rng.integers(0, accounts, m)
    local = (dst // k) * k + bank_of[src]  # an account of the source's bank
    local = np.where(local >= accounts, local - k, local)
    dst = np.where(rng.random(m) < DOMESTIC_SHARE, local, dst)
    dst = np.where(dst == src, (dst + k) % accounts, dst)
    time = EPOCH + rng.integers(0, days * DAY, m)
    amount: FloatArray = np.round(np.exp(rng.normal(np.log(150.0), 1.1, m)), 2).astype(np.float64)
    kind = np.array(KINDS, dtype=object)[rng.choice(len(KINDS), m, p=KIND_SHARE)]
    src_country = dst_country = np.full(m, "", dtype=object)
    status = np.where(rng.random(m) < FAILED_SHARE, "failed", "completed").astype(object)

    # typologies
    planted, laundering = _plant(rng, bank_of, days)
    p = len(planted.source)
    src = np.concatenate([src, np.array(planted.source, dtype=np.int64)])
    dst = np.concatenate([dst, np.array(planted.target, dtype=np.int64)])
    time = np.concatenate([time, np.array(planted.time, dtype=np.int64)])
    amount = np.concatenate([amount, np.round(np.array(planted.amount, dtype=float), 2)])
    kind = np.concatenate([kind, np.array(planted.kind, dtype=object)])
    src_country = np.concatenate([src_country, np.array(planted.source_country, dtype=object)])
    dst_country = np.concatenate([dst_country, np.array(planted.target_country, dtype=object)])
    status = np.concatenate([status, np.full(p, "completed", dtype=object)])

    order = np.lexsort((np.arange(len(time)), time))
    src, dst, time, amount = src[order], dst[order], time[order], amount[order]
    kind, status = kind[order], status[order]
    src_country, dst_country = src_country[order], dst_country[order]
    n = len(time)
    tx_id = np.char.add("T", np.char.zfill(np.arange(n).astype(str), 8)).astype(object)

    columns = _Columns.build(rng, src, dst, src_country, dst_country, bank_of, names, banks, home)
    for b, bank in enumerate(banks):
        rows = np.flatnonzero((columns.source_bank_code == b) | (columns.target_bank_code == b))
        _write_bank(
            out / bank / "raw.csv", rows, tx_id, time, int(offset[b]), amount, kind, status, columns
        )
    _write_labels(out / "labels.csv", banks, names, bank_of, src, dst, laundering)
    cross = int(np.sum(columns.source_bank_code != columns.target_bank_code))
    return RawSummary(tuple(banks), accounts, n, cross, int(laundering.sum()))


@dataclass(frozen=True)
class _Columns:
    """Per transaction: source/target names, banks (names and codes) and countries."""

    source: npt.NDArray[np.object_]
    target: npt.NDArray[np.object_]
    source_bank: npt.NDArray[np.object_]
    target_bank: npt.NDArray[np.object_]
    source_bank_code: IntArray
    target_bank_code: IntArray
    source_country: npt.NDArray[np.object_]
    target_country: npt.NDArray[np.object_]

    @staticmethod
    def build(
        rng: np.random.Generator,
        src: IntArray,
        dst: IntArray,
        src_country: npt.NDArray[np.object_],
        dst_country: npt.NDArray[np.object_],
        bank_of: IntArray,
        names: npt.NDArray[np.object_],
        banks: Sequence[str],
        home: npt.NDArray[np.object_],
    ) -> _Columns:
        n = len(src)
        foreign = np.array(FOREIGN, dtype=object)

        bank_names = np.array(list(banks), dtype=object)

        def side(
            acc: IntArray, override: npt.NDArray[np.object_]
        ) -> tuple[
            npt.NDArray[np.object_], npt.NDArray[np.object_], IntArray, npt.NDArray[np.object_]
        ]:
            code = bank_of[acc]
            abroad = rng.random(n) < FOREIGN_SHARE
            country = np.where(abroad, foreign[rng.integers(0, len(foreign), n)], home[code])
            country = np.where(override != "", override, country)
            return names[acc], bank_names[code], code, country.astype(object)

        s_name, s_bank, s_code, s_country = side(src, src_country)
        t_name, t_bank, t_code, t_country = side(dst, dst_country)
        return _Columns(
            s_name,
            t_name,
            s_bank,
            t_bank,
            s_code.astype(np.int64),
            t_code.astype(np.int64),
            s_country,
            t_country,
        )


def _plant(
    rng: np.random.Generator, bank_of: IntArray, days: int
) -> tuple[_Rows, npt.NDArray[np.bool_]]:
    """Plant the typologies; returns their transactions and the laundering flag per account."""
    accounts = len(bank_of)
    k = int(bank_of.max()) + 1
    instances = max(1, accounts // (150 * k))
    laundering = np.zeros(accounts, dtype=bool)
    # accounts not yet used by a typology: per bank in random order, taken from the front
    order = rng.permutation(accounts)
    free = [order[bank_of[order] == b].tolist() for b in range(k)]
    used = [0] * k
    rows = _Rows()

    def take(bank: int | None = None) -> int:
        b = int(rng.integers(0, k)) if bank is None else bank
        if used[b] == len(free[b]):
            raise ConfigError("--accounts: too few accounts for the planted typologies")
        used[b] += 1
        return int(free[b][used[b] - 1])

    def start(span: int) -> int:
        return EPOCH + int(rng.integers(0, days * DAY - span))

    for _ in range(instances):
        # structuring: near-threshold cash deposits by distinct depositors of the same bank
        a = take()
        laundering[a] = True
        t0 = start(2 * DAY)
        for dt in np.sort(rng.integers(0, 40 * HOUR, int(rng.integers(3, 6)))).tolist():
            rows.add(take(int(bank_of[a])), a, t0 + dt, float(rng.uniform(9000, 9990)), "cash")
        # pass-through chain over different banks
        length = int(rng.integers(3, 5))
        first = int(rng.integers(0, k))
        chain = [take((first + j) % k) for j in range(length)]
        laundering[chain] = True
        t, value = start(2 * DAY), float(rng.uniform(20_000, 80_000))
        parties = [take(), *chain, take()]
        for payer, payee in itertools.pairwise(parties):
            rows.add(payer, payee, t, value, "wire")
            t += int(rng.integers(HOUR, 6 * HOUR))
            value *= 1 - float(rng.uniform(0, 0.03))
        # fan-in and fan-out
        for incoming in (True, False):
            hub = take()
            laundering[hub] = True
            t0 = start(DAY)
            for dt in rng.integers(0, 20 * HOUR, int(rng.integers(12, 21))).tolist():
                other = take()
                value = float(np.exp(rng.normal(np.log(900.0), 0.4)))
                kind = str(rng.choice(["wire", "ach"]))
                if incoming:
                    rows.add(other, hub, t0 + dt, value, kind)
                else:
                    rows.add(hub, other, t0 + dt, value, kind)
        # high-risk counterparty: an account (of any of the banks, e.g. a correspondent) in KP/IR
        a, other = take(), take()
        laundering[a] = True
        country = str(rng.choice(HIGH_RISK))
        for _ in range(int(rng.integers(2, 4))):
            value = float(rng.uniform(3_000, 30_000))
            if rng.random() < 0.5:
                rows.add(other, a, start(HOUR), value, "wire", source_country=country)
            else:
                rows.add(a, other, start(HOUR), value, "wire", target_country=country)
    return rows, laundering


def _timestamps(time: IntArray, offset: int) -> pa.Array:
    """``YYYY-MM-DDTHH:MM:SS+HH:MM`` (``Z`` at offset 0) of UTC ``time`` at ``offset``."""
    local = np.datetime_as_string((time + offset).astype("datetime64[s]"), unit="s")
    if offset == 0:
        zone = "Z"
    else:
        sign, size = ("+" if offset > 0 else "-"), abs(offset)
        zone = f"{sign}{size // HOUR:02d}:{size % HOUR // 60:02d}"
    return _text(np.char.add(local, zone))


def _text(values: npt.NDArray[np.object_] | npt.NDArray[np.str_]) -> pa.Array:
    """One string array (pyarrow chunks a large numpy string array; a batch fits one chunk)."""
    array = pa.array(values.astype(str))
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def _write_bank(
    path: Path,
    rows: IntArray,
    tx_id: npt.NDArray[np.object_],
    time: IntArray,
    offset: int,
    amount: FloatArray,
    kind: npt.NDArray[np.object_],
    status: npt.NDArray[np.object_],
    c: _Columns,
) -> None:
    def batch(a: int, b: int) -> list[pa.Array]:
        r = rows[a:b]
        fixed = np.ones(len(r), dtype=object)
        text = [
            c.source[r],
            c.source_bank[r],
            c.target[r],
            c.target_bank[r],
            np.char.mod("%.2f", amount[r]),
            fixed * "USD",
            kind[r],
            fixed * "online",
            c.source_country[r],
            c.target_country[r],
            status[r],
        ]
        head = [_text(tx_id[r]), _timestamps(time[r], offset)]
        return head + [_text(v) for v in text]

    write_csv_atomic(path, RISKPROP_HEADER, len(rows), batch)


def _write_labels(
    path: Path,
    banks: Sequence[str],
    names: npt.NDArray[np.object_],
    bank_of: IntArray,
    src: IntArray,
    dst: IntArray,
    laundering: npt.NDArray[np.bool_],
) -> None:
    """Every account that appears in a transaction, labelled under its own bank."""
    seen = np.unique(np.concatenate([src, dst]))
    seen = seen[seen >= 0]
    seen = seen[np.lexsort((names[seen].astype(str), bank_of[seen]))]
    bank_names = np.array(list(banks), dtype=object)

    def batch(a: int, b: int) -> list[pa.Array]:
        s = seen[a:b]
        return [
            _text(bank_names[bank_of[s]]),
            _text(names[s]),
            _text(laundering[s].astype(np.int64)),
        ]

    write_csv_atomic(path, LABELS_HEADER, len(seen), batch)
