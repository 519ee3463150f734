"""Import an IBM AMLworld transactions file (Altman et al., NeurIPS 2023) as a multi-bank data set.

Source: one AMLworld transactions CSV (``HI-Small_Trans.csv`` and its siblings) with exactly the
header ``Timestamp,From Bank,Account,To Bank,Account,Amount Received,Receiving Currency,Amount
Paid,Payment Currency,Payment Format,Is Laundering`` (the first ``Account`` is the payer's, the
second the payee's), timestamps ``YYYY/MM/DD HH:MM`` (zero-padded; impossible dates such as
09/31 are refused), decimal amounts and ``Is Laundering`` 0/1. It is read with pyarrow's
multi-threaded CSV reader, the columns it uses as text, then checked column by column with
vectorised kernels.

The mapping, deterministic throughout:

- **Accounts.** AMLworld numbers accounts within their bank, so an account's id is ``<bank
  id>:<account>`` (``010:8000EBD30``), unique over the file. Bank ids are kept as written:
  ``010`` and ``10`` are two banks. The accounts are every payer and payee of the file. The
  data layout writes ids unquoted, so an id may not hold a comma, quote or line break, nor a
  bank id a colon.
- **Parties.** AMLworld's many bank ids are dealt to the ``n`` parties (riskprop's banks), each
  bank id whole to one party (:func:`assign_parties`). ``volume`` (default): bank ids by
  decreasing volume (transaction endpoints: a row counts for its payer's bank and for its
  payee's), ties by id, each to the party with the least volume so far (ties: the first such
  party): the greedy balanced split. ``hash``: party ``blake2b(bank id) mod n`` (8-byte digest,
  big-endian), which depends on nothing else in the file, so a bank id lands on the same party
  in every file and every subset, but parties may be unequal. Every party must get a bank id.
- **Periods.** ``periods=N``: N equal-width buckets of the time range (as the AMLSim importer).
  ``period_length`` (``30m``, ``12h``, ``1d``, ``1w``): period ``floor(t / L) - floor(t0 / L)``
  with ``t`` the timestamp in seconds since 1970 (read as UTC) and ``t0`` the earliest, so
  ``1d`` periods are calendar days numbered from 0.
- **Amounts.** ``Amount Paid`` in ``Payment Currency`` (``Amount Received`` and ``Receiving
  Currency`` are not used), converted to US dollars with the fixed table :data:`RATES` (units
  of the currency per US dollar; ``rates`` replaces it) and written with 2 decimals. With
  ``currency`` instead, only rows paid in that currency are kept and amounts are copied as
  written, unconverted.
- **Transactions.** The rows in file order, without self-transfers (payer = payee: AMLworld's
  ``Reinvestment`` rows) and, with ``currency``, rows paid in another currency.
- **Labels.** An account is laundering when it pays or receives in at least one row with ``Is
  Laundering`` 1; every row counts, also the self-transfers and rows that ``currency`` drops.
- **Initial scores.** :class:`~riskprop.lab.synthetic.ScoreModel` on those labels, drawn from
  ``numpy.random.default_rng(seed)``: a share of the laundering accounts flagged with a high
  score, some false positives among the clean ones, and background noise that is the same for
  both among the rest.

Bad input (header, a row with too few or too many fields, an empty or unusable id, an unparsable
timestamp, amount or label, a currency without a rate) stops the import with one line naming the
file, the line and the field, before anything is written. Output is written all or nothing
(:func:`~riskprop.lab.amlsim.staged_output`).
"""

from __future__ import annotations

import csv
import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from riskprop.core.data import line_of_row
from riskprop.core.types import BoolArray, IntArray
from riskprop.errors import ConfigError, InputError
from riskprop.files.layout import format_fixed, write_layout
from riskprop.lab.amlsim import staged_output
from riskprop.lab.synthetic import ScoreModel, check_banks, check_int, realistic_scores
from riskprop.scoring.raw import (
    AMLWORLD_COLUMNS,
    AMLWORLD_CURRENCIES,
    AMLWORLD_FIELD,
    AMLWORLD_HEADER,
    DECIMAL_NUMBER,
    DEFAULT_RATES,
    read_text_table,
)

HEADER: Final = AMLWORLD_HEADER
#: Internal column names, in file order (the two ``Account`` columns told apart).
COLUMNS: Final = AMLWORLD_COLUMNS
_USED: Final = (
    "timestamp",
    "from_bank",
    "from_account",
    "to_bank",
    "to_account",
    "amount_paid",
    "payment_currency",
    "is_laundering",
)
TIMESTAMP_FORMAT: Final = "%Y/%m/%d %H:%M"

#: Units of each AMLworld currency per US dollar: riskprop.scoring.raw's fixed table under
#: AMLworld's currency names, so that an import is reproducible and agrees with ``riskprop
#: score``. Check them against the file's rows paid and received in different currencies, or
#: pass another table (``--rates FILE``: ``currency,units_per_usd``).
RATES: Final[Mapping[str, float]] = {
    name: DEFAULT_RATES[code] for name, code in AMLWORLD_CURRENCIES.items()
}
RATES_HEADER: Final = ("currency", "units_per_usd")

VOLUME, HASH = "volume", "hash"
BANK_MAPS: Final = (VOLUME, HASH)

_DURATION: Final = re.compile(r"([1-9][0-9]*)([mhdw])")
_UNIT_SECONDS: Final = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
#: Characters an id may not hold: the data layout writes ids unquoted; ':' joins bank and account.
_BAD_ID: Final = r'[,"\r\n]'
_BAD_BANK: Final = r'[,"\r\n:]'
#: Largest amount in cents that fits the fixed-point writer (int64) with room to spare.
_MAX_CENTS: Final = 2.0**62


@dataclass(frozen=True)
class AmlworldSummary:
    """What :func:`import_amlworld` wrote."""

    banks: tuple[str, ...]  #: the parties
    party_of_bank: dict[str, str]  #: AMLworld bank id -> party
    accounts: int
    transactions: int  #: rows written (each once)
    cross_bank: int  #: of them between two parties
    self_transfers: int  #: rows dropped: payer = payee
    other_currency: int  #: rows dropped: paid in another currency than ``currency``
    laundering_accounts: int
    flagged: int  #: accounts with an initial score at or above the model's threshold
    flagged_laundering: int  #: laundering accounts among them
    periods: int


def import_amlworld(
    src: Path,
    out: Path,
    *,
    banks: Sequence[str],
    periods: int | None = None,
    period_length: str | None = None,
    bank_map: str = VOLUME,
    currency: str | None = None,
    rates: Mapping[str, float] | None = None,
    score_model: ScoreModel | None = None,
    seed: int = 0,
) -> AmlworldSummary:
    """Write the AMLworld transactions file ``src`` as a data set of ``banks`` to ``out``.

    See the module's description for the mapping. ``periods`` and ``period_length`` exclude
    each other (neither: one period); ``currency`` and ``rates`` too.
    """
    names = check_banks(banks)
    check_int("--seed", seed, 0)
    if periods is not None and period_length is not None:
        raise ConfigError("give --periods or --period-length, not both")
    if periods is not None:
        check_int("--periods", periods, 1)
    length = parse_duration(period_length) if period_length is not None else None
    if bank_map not in BANK_MAPS:
        raise ConfigError(f"--bank-map must be one of {', '.join(BANK_MAPS)} (got {bank_map!r})")
    if currency is not None and rates is not None:
        raise ConfigError("give --currency or --rates, not both")
    if currency is not None and not currency:
        raise ConfigError("--currency must name a currency (e.g. 'US Dollar')")
    table_rates = dict(RATES if rates is None else rates)
    for name, rate in table_rates.items():
        if not (isinstance(rate, int | float) and math.isfinite(rate) and rate > 0):
            raise ConfigError(f"rate of {name!r} must be a positive number (got {rate!r})")
    model = score_model if score_model is not None else ScoreModel()
    model.check()
    if not src.is_file():
        what = "is a directory, not" if src.is_dir() else "not found; expected"
        raise InputError(f"{src}: {what} an AMLworld transactions CSV file")

    table = read_transactions(src)
    rows = Rows.check(src, table, None if currency is not None else table_rates)

    account_ids, src_code, dst_code, account_bank, bank_ids, volume = _accounts(table)
    party_of_bank = assign_parties(bank_ids, volume, len(names), bank_map)
    empty = np.setdiff1d(np.arange(len(names)), party_of_bank)
    if empty.size:
        raise ConfigError(
            f"{src}: no AMLworld bank goes to party {names[int(empty[0])]!r} "
            f"({len(bank_ids)} bank ids, --bank-map {bank_map}); use fewer --banks"
            + (" or --bank-map volume" if bank_map == HASH and len(bank_ids) >= len(names) else "")
        )
    account_party = party_of_bank[account_bank]

    laundering = np.zeros(len(account_ids), dtype=bool)
    laundering[src_code[rows.laundering]] = True
    laundering[dst_code[rows.laundering]] = True

    self_transfer = src_code == dst_code
    keep = ~self_transfer
    other_currency = np.zeros(len(keep), dtype=bool)
    if currency is not None:
        other_currency = ~np.asarray(
            pc.equal(table.column("payment_currency"), currency).to_numpy(zero_copy_only=False),
            dtype=bool,
        )
        if other_currency.all():
            found = sorted(str(c) for c in pc.unique(table.column("payment_currency")).to_pylist())
            raise ConfigError(
                f"--currency {currency!r}: no row of {src} is paid in it "
                f"(its currencies: {', '.join(found)})"
            )
        keep &= ~other_currency
        amount = table.column("amount_paid").combine_chunks().filter(pa.array(keep))
    else:
        amount = format_fixed(rows.cents[keep], 2)
    period, n_periods = _periods(rows.seconds, periods, length)

    scores = realistic_scores(np.random.default_rng(int(seed)), laundering, model)
    s, d = src_code[keep], dst_code[keep]
    with staged_output(out, names) as stage:
        write_layout(
            stage,
            names,
            account_bank=account_party,
            account_ids=account_ids,
            scores=scores,
            laundering=laundering,
            src=s,
            dst=d,
            amount=amount,
            period=period[keep],
        )
    flagged = scores >= model.threshold
    return AmlworldSummary(
        banks=names,
        party_of_bank={
            bank: names[int(p)] for bank, p in zip(bank_ids, party_of_bank, strict=True)
        },
        accounts=len(account_ids),
        transactions=len(s),
        cross_bank=int(np.count_nonzero(account_party[s] != account_party[d])),
        self_transfers=int(self_transfer.sum()),
        other_currency=int(np.count_nonzero(other_currency & ~self_transfer)),
        laundering_accounts=int(laundering.sum()),
        flagged=int(flagged.sum()),
        flagged_laundering=int((flagged & laundering).sum()),
        periods=n_periods,
    )


# ------------------------------------------------------------------------------ reading


def read_transactions(path: Path) -> pa.Table:
    """The used columns of an AMLworld transactions file, as text (names: :data:`COLUMNS`)."""
    _check_header(path)
    unused = tuple(name for name in COLUMNS if name not in _USED)
    return read_text_table(path, COLUMNS, skip=unused, header=HEADER)


def _check_header(path: Path) -> None:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), None)
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the header ({exc})") from None
    if header is None:
        raise InputError(f"{path}: file is empty (expected the AMLworld header)")
    got = [column.strip() for column in header]
    for i, want in enumerate(HEADER):
        if i >= len(got):
            raise InputError(
                f"{path}:1: header has {len(got)} columns, expected {len(HEADER)} "
                f"(column {i + 1} {want!r} is missing)"
            )
        if got[i] != want:
            raise InputError(f"{path}:1: header column {i + 1} is {got[i]!r}, expected {want!r}")
    if len(got) > len(HEADER):
        raise InputError(
            f"{path}:1: header has {len(got)} columns, expected {len(HEADER)} "
            f"(extra column {got[len(HEADER)]!r})"
        )


@dataclass(frozen=True)
class Rows:
    """The checked values of every row: seconds since 1970, amounts in cents of a US dollar
    (with a rate table) and the ``Is Laundering`` flags."""

    seconds: IntArray
    cents: IntArray
    laundering: BoolArray

    @classmethod
    def check(cls, path: Path, table: pa.Table, rates: Mapping[str, float] | None) -> Rows:
        """Check every used field; raise InputError naming the first bad one's line and column.
        Without ``rates`` currencies are not checked and ``cents`` is empty."""
        problems: list[tuple[int, str]] = []

        def first(mask: pa.Array | pa.ChunkedArray, column: str, problem: str) -> None:
            flags = np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)
            if flags.any():
                row = int(np.argmax(flags))
                value = table.column(column)[row].as_py()
                problems.append((row, f"{AMLWORLD_FIELD[column]} {value!r} {problem}"))

        for column in ("from_bank", "from_account", "to_bank", "to_account"):
            values = table.column(column)
            first(pc.equal(pc.binary_length(values), 0), column, "is empty")
            if column.endswith("bank"):
                bad, reason = _BAD_BANK, "holds a comma, quote, colon or line break"
            else:
                bad, reason = _BAD_ID, "holds a comma, quote or line break"
            first(pc.match_substring_regex(values, bad), column, reason)

        text = table.column("timestamp")
        stamp = pc.strptime(text, format=TIMESTAMP_FORMAT, unit="s", error_is_null=True)
        # The parser takes "2022/9/1 0:20" and rolls impossible dates over (09/31 becomes
        # 10/01): a time must also have 16 characters and keep its day.
        day = pc.utf8_lpad(pc.cast(pc.day(stamp), pa.string()), 2, "0")
        wrong = pc.or_kleene(
            pc.or_kleene(pc.is_null(stamp), pc.not_equal(pc.binary_length(text), 16)),
            pc.not_equal(pc.utf8_slice_codeunits(text, 8, 10), day),
        )
        first(pc.fill_null(wrong, True), "timestamp", "is not a time YYYY/MM/DD HH:MM")
        amount_text = table.column("amount_paid")
        number = pc.match_substring_regex(amount_text, DECIMAL_NUMBER)
        first(pc.invert(number), "amount_paid", "is not a non-negative decimal number")
        label = table.column("is_laundering")
        first(pc.invert(pc.is_in(label, pa.array(["0", "1"]))), "is_laundering", "is not 0 or 1")

        cents = np.zeros(0, dtype=np.int64)
        if not problems:
            amount = np.asarray(
                pc.cast(amount_text, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64
            )
            if rates is not None:
                currency = pc.dictionary_encode(table.column("payment_currency").combine_chunks())
                known = [str(name) for name in currency.dictionary.to_pylist()]
                lookup = np.array([rates.get(name, math.nan) for name in known])
                rate = lookup[currency.indices.to_numpy(zero_copy_only=False)]
                first(
                    pa.array(np.isnan(rate)),
                    "payment_currency",
                    "has no exchange rate (give --rates FILE with it, or --currency)",
                )
                usd = np.rint(amount / np.where(np.isnan(rate), 1.0, rate) * 100.0)
                first(
                    pa.array(~(usd < _MAX_CENTS)),
                    "amount_paid",
                    "is too large (at most 4.6e16 US dollars)",
                )
                cents = usd.astype(np.int64)
        if problems:
            row, message = min(problems)
            raise InputError(f"{path}:{line_of_row(path, row)}: {message}")
        seconds = np.asarray(stamp.cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)
        flags = np.asarray(pc.equal(label, "1").to_numpy(zero_copy_only=False), dtype=bool)
        return cls(seconds=seconds, cents=cents, laundering=flags)


def read_rates(path: Path) -> dict[str, float]:
    """A rate table ``currency,units_per_usd`` (units of the currency per US dollar)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None or tuple(h.strip() for h in header) != RATES_HEADER:
                raise InputError(f"{path}:1: expected the header {','.join(RATES_HEADER)}")
            rates: dict[str, float] = {}
            for record in reader:
                if not record:
                    continue
                line = reader.line_num
                if len(record) != 2:
                    raise InputError(f"{path}:{line}: {len(record)} fields, expected 2")
                name, text = record[0].strip(), record[1].strip()
                try:
                    rate = float(text)
                except ValueError:
                    rate = math.nan
                if not (math.isfinite(rate) and rate > 0):
                    raise InputError(f"{path}:{line}: units_per_usd {text!r} is not positive")
                if not name or name in rates:
                    problem = "is empty" if not name else "is listed twice"
                    raise InputError(f"{path}:{line}: currency {name!r} {problem}")
                rates[name] = rate
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None
    return rates


# ------------------------------------------------------------------------------ mapping


def _accounts(
    table: pa.Table,
) -> tuple[pa.Array, IntArray, IntArray, IntArray, list[str], IntArray]:
    """The account ids (in order of first appearance among all payers, then all payees), each
    row's payer and payee (positions in those ids), each account's AMLworld bank (a position in
    the sorted bank ids), the sorted bank ids and each one's volume (transaction endpoints)."""
    m = table.num_rows

    def ids(bank: str, account: str) -> pa.Array:
        joined = pc.binary_join_element_wise(
            table.column(bank).cast(pa.large_string()),
            table.column(account).cast(pa.large_string()),
            pa.scalar(":", pa.large_string()),
        )
        return joined.combine_chunks()

    encoded = pc.dictionary_encode(
        pa.concat_arrays([ids("from_bank", "from_account"), ids("to_bank", "to_account")])
    )
    account_ids = encoded.dictionary.cast(pa.string())
    codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    banks = pa.concat_arrays(
        [table.column(c).cast(pa.large_string()).combine_chunks() for c in ("from_bank", "to_bank")]
    )
    bank_ids = sorted(str(b) for b in pc.unique(banks).to_pylist())
    bank_code = np.asarray(
        pc.index_in(banks, value_set=pa.array(bank_ids, type=pa.large_string())).to_numpy(
            zero_copy_only=False
        ),
        dtype=np.int64,
    )
    volume = np.bincount(bank_code, minlength=len(bank_ids)).astype(np.int64)
    _, first = np.unique(codes, return_index=True)
    return account_ids, codes[:m], codes[m:], bank_code[first], bank_ids, volume


def assign_parties(
    bank_ids: Sequence[str], volume: npt.ArrayLike, n: int, mode: str = VOLUME
) -> IntArray:
    """Party ``0..n-1`` of each bank id (see the module's description of ``volume`` and
    ``hash``); ``volume[i]`` is bank ``bank_ids[i]``'s number of transaction endpoints."""
    check_int("--banks", n, 1)
    if mode == HASH:
        return np.array(
            [
                int.from_bytes(hashlib.blake2b(b.encode(), digest_size=8).digest(), "big") % n
                for b in bank_ids
            ],
            dtype=np.int64,
        )
    if mode != VOLUME:
        raise ConfigError(f"--bank-map must be one of {', '.join(BANK_MAPS)} (got {mode!r})")
    weight = np.asarray(volume, dtype=np.int64)
    ids = list(bank_ids)
    order = sorted(range(len(ids)), key=lambda i: (-int(weight[i]), ids[i]))
    load = [0] * n
    party = np.zeros(len(ids), dtype=np.int64)
    for i in order:
        lightest = min(range(n), key=lambda p: (load[p], p))
        party[i] = lightest
        load[lightest] += int(weight[i])
    return party


def parse_duration(text: str) -> int:
    """Seconds of a period length ``<count><unit>``, unit ``m``, ``h``, ``d`` or ``w``."""
    match = _DURATION.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ConfigError(
            f"--period-length must be a count and a unit m, h, d or w, like 1d or 12h "
            f"(got {text!r})"
        )
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _periods(seconds: IntArray, periods: int | None, length: int | None) -> tuple[IntArray, int]:
    """Each row's period and the number of periods (see the module's description)."""
    if length is not None:
        bucket = seconds // length
        period = bucket - bucket.min()
        return period, int(period.max()) + 1
    count = 1 if periods is None else int(periods)
    low, high = int(seconds.min()), int(seconds.max())
    if high <= low:
        return np.zeros(seconds.size, dtype=np.int64), count
    scaled = np.floor((seconds - low) / (high - low) * count).astype(np.int64)
    return np.minimum(scaled, count - 1), count
