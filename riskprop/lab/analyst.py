"""One bank's ranked and explained results: what an analyst reads after a run.

Everything here uses only what the bank holds itself: its accounts and their initial scores, its
own transactions file, and its own final scores (a run's ``risk_scores.csv`` or a simulation's
rows of this bank). No other bank's score is read or written.

Ranking. ``rank(x) = 1 + #{y : final(y) > final(x)}`` (competition ranking: accounts with equal
final scores share the best rank and the next rank skips, 1, 2, 2, 4). Rows are listed by rank,
tied accounts in input order. Scores tie only when they are equal as float64; the secure run's
fixed-point rounding (about 1e-7) can separate accounts whose plaintext scores tie.

Bands. Lower edges ``0 = e_0 < e_1 < ... < e_m <= 1`` name ``m + 1`` bands; a score ``s`` is in
band ``i`` when ``e_i <= s < e_{i+1}`` (the last band includes 1). The default is
``low < 0.3 <= medium < 0.6 <= high < 0.8 <= critical``.

Explanation, from the bank's own ``transactions.csv`` with every period added up. With
``A(x)`` the amount of all rows whose destination is own account ``x``:

* ``foreign_share(x)``: the part of ``A(x)`` sent by other banks' accounts;
* ``flagged_share(x)``: the part of ``A(x)`` sent by own accounts ``s`` with
  ``initial(s) >= flag_threshold`` (flagged before the run);
* ``top_sources(x)``: up to three senders with the largest summed amount to ``x``, largest
  first (ties: own accounts before other banks', then in the order of the bank's data), each
  as ``id (p%)`` with ``p = 100 * amount / A(x)``; another bank's account is ``bank:id``.

Both shares are undefined (an empty CSV field) when ``A(x) = 0``. The shares describe this
bank's file; the propagation counts another bank's sender only when that bank's file lists the
transaction too (see ``riskprop.core.graph``), which this bank cannot see.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from riskprop.core.data import BankData, load_bank, load_dataset
from riskprop.core.types import FloatArray, IntArray
from riskprop.errors import InputError, ParameterError
from riskprop.files.atomic import atomic_path
from riskprop.files.results import (
    GLOBAL_SCORES_HEADER,
    SCORES_HEADER,
    format_score,
    read_score_rows,
)

RANKED_FILE = "ranked.csv"
RANKED_HEADER = (
    "id",
    "rank",
    "initial_score",
    "final_score",
    "change",
    "band",
    "initial_band",
    "incoming_amount",
    "foreign_share",
    "flagged_share",
    "top_sources",
)
DEFAULT_FLAG_THRESHOLD = 0.5
#: senders listed per account in ``top_sources``
TOP_SOURCES = 3
DEFAULT_BAND_NAMES = ("low", "medium", "high", "critical")
BAND_NAME = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Bands:
    """Named score bands: ``names[i]`` holds the scores ``lower[i] <= s < lower[i + 1]``.

    Invariants (checked): at least one band, ``lower[0] == 0``, edges strictly increasing and
    at most 1, names unique and of ``[A-Za-z0-9_-]+``.
    """

    names: tuple[str, ...]
    lower: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.names or len(self.names) != len(self.lower):
            raise ParameterError("bands", "need one lower edge per band name")
        for name in self.names:
            if not BAND_NAME.fullmatch(name):
                raise ParameterError("bands", f"band name {name!r} is not of [A-Za-z0-9_-]+")
        if len(set(self.names)) != len(self.names):
            raise ParameterError("bands", "band names must differ")
        if self.lower[0] != 0.0:
            raise ParameterError(
                "bands", f"the first band must start at 0 (it starts at {self.lower[0]:g})"
            )
        for low, high in zip(self.lower, self.lower[1:], strict=False):
            if not low < high:
                raise ParameterError("bands", f"edges must increase ({low:g} then {high:g})")
        if not all(math.isfinite(e) and 0.0 <= e <= 1.0 for e in self.lower):
            raise ParameterError("bands", "edges must lie in [0, 1]")

    @classmethod
    def parse(cls, text: str) -> Bands:
        """``low:0,medium:0.3,high:0.6,critical:0.8`` (each band with its lower edge), or the
        three inner edges alone, ``0.3,0.6,0.8``, for the bands low, medium, high, critical."""
        parts = [part.strip() for part in text.split(",") if part.strip()]
        if not parts:
            raise ParameterError("bands", "empty; e.g. low:0,medium:0.3,high:0.6,critical:0.8")
        if all(":" not in part for part in parts):
            if len(parts) != len(DEFAULT_BAND_NAMES) - 1:
                raise ParameterError(
                    "bands",
                    f"{len(parts)} edge(s) without names; give NAME:LOWER for each band, e.g. "
                    "low:0,medium:0.3,high:0.6,critical:0.8",
                )
            return cls(DEFAULT_BAND_NAMES, (0.0, *(_edge(p) for p in parts)))
        names, lower = [], []
        for part in parts:
            name, sep, edge = part.partition(":")
            if not sep:
                raise ParameterError("bands", f"{part!r} is not NAME:LOWER")
            names.append(name.strip())
            lower.append(_edge(edge))
        return cls(tuple(names), tuple(lower))

    def of(self, scores: FloatArray) -> IntArray:
        """Band index of every score."""
        index = np.searchsorted(np.asarray(self.lower), scores, side="right") - 1
        return np.asarray(np.clip(index, 0, len(self.names) - 1), dtype=np.int64)

    def text(self) -> str:
        """``low:0,medium:0.3,...``: what ``parse`` reads back."""
        return ",".join(f"{n}:{e!r}" for n, e in zip(self.names, self.lower, strict=True))

    def describe(self) -> str:
        """``low < 0.3 <= medium < 0.6 <= high``."""
        out = self.names[0]
        for name, edge in zip(self.names[1:], self.lower[1:], strict=True):
            out += f" < {edge:g} <= {name}"
        return out


DEFAULT_BANDS = Bands(DEFAULT_BAND_NAMES, (0.0, 0.3, 0.6, 0.8))


def _edge(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ParameterError("bands", f"{text.strip()!r} is not a number") from None


def check_flag_threshold(value: float) -> float:
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ParameterError("flag_threshold", f"must lie in [0, 1] (got {value!r})")
    return value


@dataclass(frozen=True)
class Source:
    """A sender of money to an account: ``bank`` None for the bank's own account."""

    bank: str | None
    id: str
    share: float

    def __str__(self) -> str:
        name = self.id if self.bank is None else f"{self.bank}:{self.id}"
        return f"{name} ({100.0 * self.share:.1f}%)"


@dataclass(frozen=True, eq=False)
class Ranking:
    """One bank's accounts with their ranks and explanations; arrays in input order.

    Invariants: every array has one entry per account; ``order`` lists the positions by
    ``rank`` then position; ``rank[order]`` is non-decreasing and ``rank[order[0]] == 1``.
    """

    bank: str
    account_ids: tuple[str, ...]
    initial: FloatArray
    final: FloatArray
    rank: IntArray
    order: IntArray
    bands: Bands
    initial_band: IntArray
    final_band: IntArray
    incoming: FloatArray
    #: NaN where the account has no incoming amount
    foreign_share: FloatArray
    flagged_share: FloatArray
    top_sources: tuple[tuple[Source, ...], ...]
    flag_threshold: float

    @property
    def n_accounts(self) -> int:
        return len(self.account_ids)

    @property
    def change(self) -> FloatArray:
        return np.asarray(self.final - self.initial, dtype=np.float64)

    def row(self, position: int) -> list[str]:
        """The CSV fields of one account (``RANKED_HEADER``)."""
        i = position
        return [
            self.account_ids[i],
            str(int(self.rank[i])),
            format_score(self.initial[i]),
            format_score(self.final[i]),
            format_score(self.final[i] - self.initial[i]),
            self.bands.names[int(self.final_band[i])],
            self.bands.names[int(self.initial_band[i])],
            _amount(self.incoming[i]),
            _share(self.foreign_share[i]),
            _share(self.flagged_share[i]),
            "; ".join(str(source) for source in self.top_sources[i]),
        ]

    def rows(self) -> Iterator[list[str]]:
        """Every account's fields, by rank."""
        for position in self.order.tolist():
            yield self.row(position)


def _amount(value: float) -> str:
    """A sum of amounts to a millionth: the sum of 0.1 + 0.2 reads 0.3, not 0.30000000000000004
    (float addition's last bits are not part of any amount)."""
    return repr(round(float(value), 6))


def _share(value: float) -> str:
    return "" if math.isnan(value) else format_score(value)


def competition_ranks(scores: FloatArray) -> IntArray:
    """``1 + #{y : scores[y] > scores[x]}`` for every ``x``."""
    descending = np.sort(-scores)
    return np.asarray(np.searchsorted(descending, -scores, side="left") + 1, dtype=np.int64)


def rank_bank(
    bank: BankData,
    final: FloatArray,
    *,
    bands: Bands = DEFAULT_BANDS,
    flag_threshold: float = DEFAULT_FLAG_THRESHOLD,
    top_sources: int = TOP_SOURCES,
) -> Ranking:
    """Rank ``bank``'s accounts by ``final`` (its own scores, in account order) and explain
    each from the bank's own data (see the module header)."""
    check_flag_threshold(flag_threshold)
    n = bank.n_accounts
    final = np.asarray(final, dtype=np.float64)
    if final.shape != (n,):
        raise InputError(f"bank {bank.name!r}: {len(final)} final score(s) for {n} account(s)")
    rank = competition_ranks(final)
    order = np.asarray(np.lexsort((np.arange(n), -final)), dtype=np.int64)

    own = bank.own
    into = np.flatnonzero(bank.dst_bank == own)
    dst, src, src_bank = bank.dst[into], bank.src[into], bank.src_bank[into]
    amount = bank.amount[into]
    incoming = np.bincount(dst, weights=amount, minlength=n).astype(np.float64)
    from_own = src_bank == own
    foreign = np.bincount(dst[~from_own], weights=amount[~from_own], minlength=n)
    flagged_src = from_own.copy()
    flagged_src[from_own] = bank.initial[src[from_own]] >= flag_threshold
    flagged = np.bincount(dst[flagged_src], weights=amount[flagged_src], minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        has = incoming > 0.0
        foreign_share = np.where(has, foreign / np.where(has, incoming, 1.0), np.nan)
        flagged_share = np.where(has, flagged / np.where(has, incoming, 1.0), np.nan)

    return Ranking(
        bank=bank.name,
        account_ids=bank.account_ids,
        initial=bank.initial,
        final=final,
        rank=rank,
        order=order,
        bands=bands,
        initial_band=bands.of(bank.initial),
        final_band=bands.of(final),
        incoming=incoming,
        foreign_share=np.asarray(foreign_share, dtype=np.float64),
        flagged_share=np.asarray(flagged_share, dtype=np.float64),
        top_sources=_top_sources(bank, dst, src_bank, src, amount, incoming, top_sources),
        flag_threshold=flag_threshold,
    )


def _top_sources(
    bank: BankData,
    dst: IntArray,
    src_bank: IntArray,
    src: IntArray,
    amount: FloatArray,
    incoming: FloatArray,
    keep: int,
) -> tuple[tuple[Source, ...], ...]:
    """The ``keep`` largest senders of every account; vectorised up to the kept rows."""
    n = bank.n_accounts
    found: list[list[Source]] = [[] for _ in range(n)]
    if len(dst) and keep > 0:
        # own bank first among equal amounts: its code sorts as -1
        bank_key = np.where(src_bank == bank.own, -1, src_bank)
        order = np.lexsort((src, bank_key, dst))
        d, b, s, a = dst[order], bank_key[order], src[order], amount[order]
        start = np.flatnonzero(
            np.r_[True, (d[1:] != d[:-1]) | (b[1:] != b[:-1]) | (s[1:] != s[:-1])]
        )
        a = np.add.reduceat(a, start)
        d, b, s = d[start], b[start], s[start]
        # per destination: largest amount first, then bank, then position
        order = np.lexsort((s, b, -a, d))
        d, b, s, a = d[order], b[order], s[order], a[order]
        first = np.flatnonzero(np.r_[True, d[1:] != d[:-1]])
        place = np.arange(len(d)) - np.repeat(first, np.diff(np.r_[first, len(d)]))
        chosen = np.flatnonzero((place < keep) & (a > 0.0))
        for j in chosen.tolist():
            x, code, pos = int(d[j]), int(b[j]), int(s[j])
            if code < 0:
                source = Source(None, bank.account_ids[pos], float(a[j] / incoming[x]))
            else:
                name = bank.banks[code]
                source = Source(name, bank.foreign_ids[name][pos], float(a[j] / incoming[x]))
            found[x].append(source)
    return tuple(tuple(sources) for sources in found)


# ------------------------------------------------------------------------------- files


def _write_rows(handle: TextIO, ranking: Ranking) -> None:
    """The header and every account by rank, with a real CSV writer (lines end in ``\\n``). A
    field holding a lone ``\\r``, which the writer would not quote but a reader takes for a line
    end, makes its row quoted whole (as ``risk_scores.csv`` does)."""
    plain = csv.writer(handle, lineterminator="\n")
    quoted = csv.writer(handle, lineterminator="\n", quoting=csv.QUOTE_ALL)
    plain.writerow(RANKED_HEADER)
    for fields in ranking.rows():
        (quoted if any("\r" in field for field in fields) else plain).writerow(fields)


def write_ranked(path: Path, ranking: Ranking, *, mode: int = 0o600) -> None:
    """``ranked.csv`` (``RANKED_HEADER``, accounts by rank), atomically, readable by ``mode``."""
    with atomic_path(path, mode=mode) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        _write_rows(f, ranking)


def ranked_text(ranking: Ranking) -> str:
    """What ``write_ranked`` writes, as a string."""
    buffer = io.StringIO()
    _write_rows(buffer, ranking)
    return buffer.getvalue()


def write_ranked_dataset(
    data: Path,
    scores: Mapping[tuple[str, str], float],
    out: Path,
    *,
    bands: Bands = DEFAULT_BANDS,
    flag_threshold: float = DEFAULT_FLAG_THRESHOLD,
) -> list[Path]:
    """``OUT/<bank>/ranked.csv`` for every bank of the data set ``data``, each ranked only by its
    own accounts' ``scores`` (``(bank, id) -> score``, e.g. ``SimulationResult.by_account()``).
    Every bank is ranked before anything is written."""
    check_flag_threshold(flag_threshold)
    rankings = []
    for bank in load_dataset(data).banks:
        try:
            final = np.array([scores[bank.name, a] for a in bank.account_ids], dtype=np.float64)
        except KeyError as exc:
            raise InputError(
                f"no score for account {exc.args[0][1]!r} of bank {bank.name!r}"
            ) from None
        rankings.append(rank_bank(bank, final, bands=bands, flag_threshold=flag_threshold))
    paths = []
    for ranking in rankings:
        path = out / ranking.bank / RANKED_FILE
        write_ranked(path, ranking)
        paths.append(path)
    return paths


def transaction_banks(directory: Path) -> tuple[str, ...]:
    """The bank names ``directory/transactions.csv`` mentions (sorted; empty when the file
    cannot be read: ``load_bank`` then names the problem)."""
    path = directory / "transactions.csv"
    columns = ["bank_source", "bank_destination"]
    try:
        table = pa_csv.read_csv(
            path,
            parse_options=pa_csv.ParseOptions(ignore_empty_lines=True),
            convert_options=pa_csv.ConvertOptions(
                include_columns=columns,
                column_types=dict.fromkeys(columns, pa.string()),
                strings_can_be_null=False,
            ),
        )
    except (OSError, pa.ArrowInvalid, UnicodeDecodeError):
        return ()
    names: set[str] = set()
    for column in columns:
        names.update(str(v) for v in pc.unique(table.column(column)).to_pylist())
    return tuple(sorted(names))


def load_own_bank(directory: Path, name: str, banks: Sequence[str] | None = None) -> BankData:
    """Bank ``name``'s data from ``directory``; ``banks`` (a run's parties) defaults to the
    banks its transactions name."""
    if not (directory / "accounts.csv").is_file() and directory.is_dir():
        inside = sorted(p.name for p in directory.iterdir() if p.is_dir())
        if inside:  # probably a data set's root
            example = directory / (name if name in inside else inside[0])
            raise InputError(
                f"{directory / 'accounts.csv'}: file not found (a data set? give its bank's "
                f"directory, e.g. {example})"
            )
    if banks is None:
        named = transaction_banks(directory)
        if named and name not in named:
            raise InputError(
                f"{directory / 'transactions.csv'}: names the bank(s) {', '.join(named)} but not "
                f"{name!r}; give the bank's name (--bank)"
            )
        banks = tuple(sorted({*named, name}))
    return load_bank(directory, name, banks)


def read_bank_scores(path: Path, bank: BankData) -> FloatArray:
    """``bank``'s final scores, in its account order, from ``id,risk_score`` (a run's
    ``risk_scores.csv``) or ``bank,id,risk_score`` (``riskprop simulate``: only this bank's
    rows are read). Every account needs exactly one score in [0, 1], and every id must be one
    of the bank's accounts; else one ``InputError`` naming the file and the problem."""
    header = _header(path)
    if header == GLOBAL_SCORES_HEADER:
        rows = read_score_rows(path, GLOBAL_SCORES_HEADER)
        named = sorted({key[0] for key, _ in rows})
        pairs = [(key[1], score) for key, score in rows if key[0] == bank.name]
        if not pairs and bank.n_accounts:
            listed = ", ".join(named) if named else "none"
            raise InputError(f"{path}: no scores of bank {bank.name!r} (banks in it: {listed})")
    elif header == SCORES_HEADER:
        pairs = [(key[0], score) for key, score in read_score_rows(path, SCORES_HEADER)]
    else:
        raise InputError(
            f"{path}: expected the header {','.join(SCORES_HEADER)} (a run's risk_scores.csv) or "
            f"{','.join(GLOBAL_SCORES_HEADER)} (riskprop simulate)"
        )
    position = {account: i for i, account in enumerate(bank.account_ids)}
    scores = np.full(bank.n_accounts, np.nan)
    for account, score in pairs:
        i = position.get(account)
        if i is None:
            raise InputError(
                f"{path}: account {account!r} is not an account of bank {bank.name!r} in its "
                "data (scores of another bank, or of other data?)"
            )
        if not math.isnan(scores[i]):
            raise InputError(f"{path}: account {account!r} has more than one score")
        if not (0.0 <= score <= 1.0):
            raise InputError(f"{path}: account {account!r}: score {score!r} is outside [0, 1]")
        scores[i] = score
    missing = np.flatnonzero(np.isnan(scores))
    if missing.size:
        raise InputError(
            f"{path}: no score for account {bank.account_ids[int(missing[0])]!r} of bank "
            f"{bank.name!r} ({missing.size} of {bank.n_accounts} account(s) missing)"
        )
    return scores


def _header(path: Path) -> tuple[str, ...]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            return tuple(next(csv.reader(handle), []))
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None
