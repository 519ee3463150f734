"""Synthetic multi-bank transaction data with planted laundering motifs.

The generator produces data sets for tests and benchmarks of risk propagation that look like
what banks really hold, at any size (10 million transactions in seconds):

- Accounts are split unequally over the banks (Dirichlet shares: a big bank and smaller ones).
- Account activity is heavy-tailed (Pareto weights): a few hubs (merchants, payroll accounts)
  take part in many transactions, most accounts in a few. Sources are drawn by an out-weight,
  destinations by an in-weight, both derived from the account's activity.
- Most traffic stays inside a bank; about a fifth of the background transactions cross banks,
  which is what makes joint (multi-party) propagation worthwhile. Amounts are log-normal.
- Laundering is planted as the textbook motifs: fan-in (smurfs paying into a collector just
  below a reporting threshold), fan-out (a distributor paying many mules), cycles (round
  tripping) and layering chains whose hops change bank. About 1% of the accounts belong to a
  motif; their members come from all banks and also do ordinary business, so they hide in the
  background traffic.
- Initial risk scores model a bank's own monitoring: most normal accounts score near 0 (some
  exactly 0, a few false positives high); motif accounts score higher, many of them in
  0.5-1.0, but a good part of them look harmless, which is what propagation should uncover.
  ``labels.csv`` gives the ground truth (1 for every motif account) for evaluation.
  With ``scores="realistic"`` the scores follow :class:`ScoreModel` instead: a share of the
  launderers flagged, some false positives, and noise that says nothing about the rest, so
  that what propagation adds can be measured.

Everything is drawn from ``numpy.random.default_rng(seed)`` in a fixed order, so the same
arguments give byte-identical files. Per-edge work is vectorised; only motifs are planted one
by one. Files are written by :mod:`riskprop.files.layout`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from riskprop.core.types import FloatArray, IntArray
from riskprop.errors import ConfigError
from riskprop.files.layout import check_out, format_fixed, write_layout

BANK_NAME: Final = re.compile(r"[A-Za-z0-9_-]+")

#: Share of background transactions whose destination is in another bank than the source.
CROSS_BANK_SHARE: Final = 0.2
#: Pareto tail index of account activity (smaller: heavier tail, bigger hubs).
ACTIVITY_ALPHA: Final = 1.5
#: Log-normal amount parameters (median exp(4.5) ~ 90).
AMOUNT_MU: Final = 4.5
AMOUNT_SIGMA: Final = 1.3
#: Structuring amounts stay just below this reporting threshold.
REPORTING_THRESHOLD: Final = 10_000.0
#: Share of accounts planted in motifs, and the size below which no motif is planted.
MOTIF_SHARE: Final = 0.01
MIN_ACCOUNTS_FOR_MOTIFS: Final = 50

FAN_IN, FAN_OUT, CYCLE, CHAIN = "fan_in", "fan_out", "cycle", "chain"
MOTIF_KINDS: Final = (FAN_IN, FAN_OUT, CYCLE, CHAIN)
#: Inclusive ranges: fan width (members besides the hub), cycle length, chain length.
_SIZE_RANGE: Final = {FAN_IN: (5, 12), FAN_OUT: (5, 12), CYCLE: (3, 7), CHAIN: (4, 8)}


#: Initial-score models of ``generate_dataset``: ``informed`` (the default) also scores the
#: launderers it does not flag above the clean accounts; ``realistic`` is :class:`ScoreModel`.
INFORMED, REALISTIC = "informed", "realistic"
SCORE_MODES: Final = (INFORMED, REALISTIC)


@dataclass(frozen=True)
class ScoreModel:
    """Initial scores of a bank's monitoring that knows part of the laundering and no more.

    With ``L`` laundering and ``C`` clean accounts, exactly ``round(flag_share * L)`` laundering
    accounts and ``round(false_positive_share * C)`` clean ones, drawn without replacement, are
    *flagged*: their score is ``t + (1 - t) * Beta(*flagged_beta)``, in ``[t, 1]``, with ``t =
    threshold``. Every other account, laundering or not, scores ``t * Beta(*background_beta)``,
    below ``t``: the same distribution for both, so among the unflagged accounts the initial
    scores carry no signal (expected ROC AUC 0.5) and whatever propagation adds there is its
    own. Scores are rounded to 6 decimals (what the files hold) and stay on their side of
    ``t``, so "initial score >= t" is exactly "flagged". Defaults: 30% of the launderers
    flagged, 1% false positives (with 1% launderers, three alerts in four are false), flagged
    scores of mean 0.75 (Beta(2, 2) on [0.5, 1]), background of mean 0.038 (Beta(1, 12) on
    [0, 0.5]).
    """

    flag_share: float = 0.3
    false_positive_share: float = 0.01
    flagged_beta: tuple[float, float] = (2.0, 2.0)
    background_beta: tuple[float, float] = (1.0, 12.0)
    threshold: float = 0.5

    def check(self) -> None:
        """Raise ConfigError naming the option of a parameter out of its range."""
        for option, share in (
            ("--flag-share", self.flag_share),
            ("--false-positive-share", self.false_positive_share),
        ):
            if isinstance(share, bool) or not isinstance(share, int | float):
                raise ConfigError(f"{option} must be a number in [0, 1] (got {share!r})")
            if not 0.0 <= share <= 1.0:
                raise ConfigError(f"{option} must be in [0, 1] (got {share!r})")
        for name, (a, b) in (
            ("flagged_beta", self.flagged_beta),
            ("background_beta", self.background_beta),
        ):
            if not (a > 0.0 and b > 0.0 and np.isfinite(a) and np.isfinite(b)):
                raise ConfigError(f"{name}: Beta parameters must be positive (got {a!r}, {b!r})")
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"threshold must lie strictly between 0 and 1 (got {self.threshold})")


def realistic_scores(
    rng: np.random.Generator, laundering: npt.NDArray[np.bool_], model: ScoreModel
) -> FloatArray:
    """Initial scores of :class:`ScoreModel` for the accounts with labels ``laundering``.

    Draws, in this order: the flagged launderers, the false positives, every account's
    background score, the flagged scores.
    """
    model.check()
    bad, good = np.flatnonzero(laundering), np.flatnonzero(~np.asarray(laundering, dtype=bool))
    flagged = rng.choice(bad, round(model.flag_share * bad.size), replace=False)
    false_pos = rng.choice(good, round(model.false_positive_share * good.size), replace=False)
    t = model.threshold
    below, above = _grid_neighbours(t)
    scores = np.round(t * rng.beta(*model.background_beta, len(laundering)), 6)
    scores = np.minimum(scores, below)
    high = np.concatenate((flagged, false_pos)).astype(np.int64)
    high_scores = np.round(t + (1.0 - t) * rng.beta(*model.flagged_beta, high.size), 6)
    scores[high] = np.clip(high_scores, above, 1.0)
    return scores


def _grid_neighbours(t: float) -> tuple[float, float]:
    """The largest 6-decimal value below ``t`` and the smallest one at or above it."""
    below = above = round(t, 6)
    while below >= t:
        below = round(below - 1e-6, 6)
    while above < t:
        above = round(above + 1e-6, 6)
    return below, above


@dataclass(frozen=True)
class GenerationSummary:
    """What a generator or converter wrote."""

    banks: tuple[str, ...]
    accounts: int  #: total accounts over all banks
    transactions: int  #: distinct transactions (a cross-bank one counts once)
    cross_bank: int  #: how many of them cross banks
    laundering_accounts: int
    periods: int


# ------------------------------------------------------------------------------ checks


def check_banks(banks: Sequence[str]) -> tuple[str, ...]:
    """Validate bank names (non-empty, unique, usable as directory names)."""
    if isinstance(banks, str):
        raise ConfigError(f"--banks must be a list of bank names, not the string {banks!r}")
    names = tuple(banks)
    if not names:
        raise ConfigError("--banks must name at least one bank")
    for name in names:
        if not isinstance(name, str) or not BANK_NAME.fullmatch(name):
            raise ConfigError(
                f"--banks: invalid bank name {name!r} (use letters, digits, '_' and '-')"
            )
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"--banks: bank {name!r} is named twice")
        seen.add(name)
    return names


def check_int(option: str, value: int, minimum: int) -> None:
    """Raise ConfigError naming ``option`` unless ``value`` is an int >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ConfigError(f"{option} must be an integer (got {value!r})")
    if value < minimum:
        raise ConfigError(f"{option} must be >= {minimum} (got {value})")


# ------------------------------------------------------------------------------ generator


def generate_dataset(
    out: Path,
    *,
    accounts: int,
    edges: int,
    banks: Sequence[str] = ("alice", "bob", "charlie"),
    periods: int = 1,
    seed: int = 0,
    scores: str = INFORMED,
    score_model: ScoreModel | None = None,
) -> GenerationSummary:
    """Write a synthetic data set of ``accounts`` accounts and exactly ``edges`` transactions.

    Layout: ``OUT/<bank>/accounts.csv``, ``OUT/<bank>/transactions.csv`` (every transaction
    touching the bank; cross-bank ones in both banks' files) and ``OUT/labels.csv``.
    ``scores`` picks the initial-score model (``SCORE_MODES``); ``score_model`` parameterises
    ``"realistic"`` (default :class:`ScoreModel`). Both modes draw the same transactions.
    """
    if scores not in SCORE_MODES:
        raise ConfigError(f"--scores must be one of {', '.join(SCORE_MODES)} (got {scores!r})")
    if score_model is not None and scores != REALISTIC:
        raise ConfigError(f"a score model goes with --scores {REALISTIC} only")
    model = score_model if score_model is not None else ScoreModel()
    model.check()
    names = check_banks(banks)
    check_int("--accounts", accounts, 1)
    check_int("--edges", edges, 0)
    check_int("--periods", periods, 1)
    check_int("--seed", seed, 0)
    n, k = int(accounts), len(names)
    if n < k:
        raise ConfigError(
            f"--accounts must be >= the number of banks ({k}) so that no bank is empty (got {n})"
        )
    if n < 2 and edges > 0:
        raise ConfigError(f"--accounts must be >= 2 when --edges > 0 (got {n})")
    check_out(out, names)

    rng = np.random.default_rng(int(seed))
    sizes = _bank_sizes(rng, n, k)
    starts = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    account_bank = np.repeat(np.arange(k, dtype=np.int16), sizes)
    activity = rng.pareto(ACTIVITY_ALPHA, n) + 1.0
    w_out = activity * rng.lognormal(0.0, 0.5, n)
    w_in = activity * rng.lognormal(0.0, 0.5, n)
    del activity

    motifs = _plant_motifs(rng, sizes, starts, int(edges), int(periods))
    n_motif_edges = len(motifs.src)
    n_background = int(edges) - n_motif_edges
    src, dst = _background_edges(
        rng, n_background, w_out=w_out, w_in=w_in, starts=starts, account_bank=account_bank
    )
    del w_out, w_in
    cents = np.maximum(np.rint(rng.lognormal(AMOUNT_MU, AMOUNT_SIGMA, n_background) * 100), 1)
    period_dtype = np.int16 if periods <= np.iinfo(np.int16).max else np.int64
    period: npt.NDArray[np.integer[Any]] = rng.integers(0, periods, n_background).astype(
        period_dtype
    )

    src = np.concatenate((src, motifs.src))
    dst = np.concatenate((dst, motifs.dst))
    cents = np.concatenate((cents.astype(np.int64), motifs.cents))
    period = np.concatenate((period, motifs.period.astype(period_dtype)))
    order = rng.permutation(len(src))
    if periods > 1:
        order = order[np.argsort(period[order], kind="stable")]
    src, dst, cents, period = src[order], dst[order], cents[order], period[order]
    del order

    laundering = np.zeros(n, dtype=bool)
    laundering[motifs.members] = True
    if scores == REALISTIC:
        initial = realistic_scores(rng, laundering, model)
    else:
        initial = _initial_scores(rng, laundering)
    cross = int(np.count_nonzero(account_bank[src] != account_bank[dst]))

    write_layout(
        out,
        names,
        account_bank=account_bank,
        account_ids=_account_ids(sizes, starts, account_bank),
        scores=initial,
        laundering=laundering,
        src=src,
        dst=dst,
        amount=format_fixed(cents, 2),
        period=period,
    )
    return GenerationSummary(
        banks=names,
        accounts=n,
        transactions=len(src),
        cross_bank=cross,
        laundering_accounts=int(laundering.sum()),
        periods=int(periods),
    )


def _bank_sizes(rng: np.random.Generator, n: int, k: int) -> IntArray:
    """Unequal, deterministic split of ``n`` accounts over ``k`` banks, each at least 1."""
    shares = rng.dirichlet(np.full(k, 2.0))
    extra = n - k
    exact = shares * extra
    base = np.floor(exact).astype(np.int64)
    remainder = extra - int(base.sum())
    bonus = np.zeros(k, dtype=np.int64)
    bonus[np.argsort(-(exact - base), kind="stable")[:remainder]] = 1
    return 1 + base + bonus


def _account_ids(
    sizes: IntArray, starts: IntArray, account_bank: npt.NDArray[np.int16]
) -> pa.Array:
    """Ids ``a0000000``, ``a0000001``, ... numbered within each bank."""
    largest = int(sizes.max())
    width = max(7, len(str(largest - 1)))
    digits = pc.utf8_lpad(pa.array(np.arange(largest)).cast(pa.string()), width, "0")
    table = pc.utf8_replace_slice(digits, start=0, stop=0, replacement="a")
    local = np.arange(len(account_bank), dtype=np.int64) - starts[account_bank]
    return table.take(pa.array(local))


def _background_edges(
    rng: np.random.Generator,
    count: int,
    *,
    w_out: FloatArray,
    w_in: FloatArray,
    starts: IntArray,
    account_bank: npt.NDArray[np.int16],
) -> tuple[IntArray, IntArray]:
    """Ordinary transactions: heavy-tailed endpoints, mostly within the source's bank.

    Sources are drawn by out-weight as multinomial counts (edges come out grouped by source;
    the caller shuffles them). Each edge then gets a destination bank (its own, or with
    probability ``CROSS_BANK_SHARE`` another bank in proportion to in-weight) and a destination
    by in-weight inside that bank, again as shuffled multinomial counts. A drawn self-loop is
    redrawn from the bank without the source, which is exactly sampling conditioned on
    ``dst != src``.
    """
    n, k = len(w_out), len(starts) - 1
    sizes = np.diff(starts)
    src = np.repeat(np.arange(n, dtype=np.int64), _multinomial(rng, count, w_out))
    src_bank = account_bank[src].astype(np.int64)

    cum_in0 = np.concatenate(([0.0], np.cumsum(w_in)))  # in-weight of the accounts before i
    bank_in = cum_in0[starts[1:]] - cum_in0[starts[:-1]]
    dst_bank = src_bank.copy()
    if k > 1:
        cross = rng.random(count) < CROSS_BANK_SHARE
        cross |= sizes[src_bank] == 1  # a lone account can only pay another bank
        chosen = np.flatnonzero(cross)
        del cross
        # Another bank in proportion to its in-weight: draw over the total without the source
        # bank's share and step over that share.
        bank_cum0 = np.concatenate(([0.0], np.cumsum(bank_in)))
        own = src_bank[chosen]
        t = rng.random(chosen.size) * (bank_cum0[-1] - bank_in[own])
        t += np.where(t >= bank_cum0[own], bank_in[own], 0.0)
        other = np.minimum(np.searchsorted(bank_cum0[1:], t, side="right"), k - 1)
        other = np.where(other == own, (own + 1) % k, other)  # float rounding guard
        dst_bank[chosen] = other
        del chosen, own, t, other

    dst = np.empty(count, dtype=np.int64)
    for bank in range(k):
        rows = np.flatnonzero(dst_bank == bank)
        first, end = int(starts[bank]), int(starts[bank + 1])
        picks = np.repeat(
            np.arange(first, end, dtype=np.int64), _multinomial(rng, rows.size, w_in[first:end])
        )
        dst[rows] = rng.permutation(picks)
    del dst_bank

    loops = np.flatnonzero(dst == src)
    if loops.size:  # only intra-bank edges, whose bank has at least two accounts
        s = src[loops]
        s_bank = account_bank[s].astype(np.int64)
        lo, hi = starts[s_bank], starts[s_bank + 1]
        base, skip = cum_in0[lo], w_in[s]
        t = rng.random(loops.size) * (cum_in0[hi] - base - skip)
        t += np.where(t >= cum_in0[s] - base, skip, 0.0)
        d = np.clip(np.searchsorted(cum_in0[1:], base + t, side="right"), lo, hi - 1)
        dst[loops] = np.where(d != s, d, np.where(s + 1 < hi, s + 1, s - 1))  # rounding guard
    return src, dst


def _multinomial(rng: np.random.Generator, count: int, weights: FloatArray) -> IntArray:
    """How many of ``count`` draws fall on each index, drawn in proportion to ``weights``."""
    total = float(weights.sum())
    if count == 0 or total <= 0.0:
        return np.zeros(len(weights), dtype=np.int64)
    pvals = weights / total
    pvals[-1] = max(0.0, 1.0 - float(pvals[:-1].sum()))
    return rng.multinomial(count, pvals).astype(np.int64)


@dataclass
class _Motifs:
    src: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    dst: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    cents: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    period: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    members: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


def _motif_plan(n: int) -> list[str]:
    """Kinds of the motifs to try, interleaved so that a tight budget still gets each kind."""
    if n < MIN_ACCOUNTS_FOR_MOTIFS:
        return []
    per_kind = MOTIF_SHARE * n / len(MOTIF_KINDS)
    counts = {}
    for kind in MOTIF_KINDS:
        low, high = _SIZE_RANGE[kind]
        mean_members = (low + high) / 2 + (1 if kind in (FAN_IN, FAN_OUT) else 0)
        counts[kind] = max(1, round(per_kind / mean_members))
    rounds = max(counts.values())
    return [kind for i in range(rounds) for kind in MOTIF_KINDS if i < counts[kind]]


def _plant_motifs(
    rng: np.random.Generator, sizes: IntArray, starts: IntArray, edges: int, periods: int
) -> _Motifs:
    """Laundering motifs over distinct accounts of all banks.

    At most half of the accounts and half of the transactions go to motifs; a motif that does
    not fit is skipped.
    """
    n_accounts = int(sizes.sum())
    plan = _motif_plan(n_accounts)
    if not plan:
        return _Motifs()
    k = len(sizes)
    pools = [rng.permutation(int(size)) for size in sizes]
    taken = np.zeros(k, dtype=np.int64)
    account_budget, edge_budget = n_accounts // 2, edges // 2
    used_accounts = used_edges = 0
    srcs: list[IntArray] = []
    dsts: list[IntArray] = []
    amounts: list[npt.NDArray[np.floating[Any]]] = []
    hop_periods: list[IntArray] = []
    members: list[IntArray] = []
    for kind in plan:
        low, high = _SIZE_RANGE[kind]
        # Small data sets get small motifs, so that one of each kind fits in half the accounts.
        high = min(high, low + max(0, (n_accounts - MIN_ACCOUNTS_FOR_MOTIFS) // 25))
        size = int(rng.integers(low, high + 1))
        n_members = size + 1 if kind in (FAN_IN, FAN_OUT) else size
        n_edges = size - 1 if kind == CHAIN else size
        if used_accounts + n_members > account_budget or used_edges + n_edges > edge_budget:
            continue
        who = np.empty(n_members, dtype=np.int64)
        previous = -1
        for i in range(n_members):
            left = (sizes - taken).astype(np.float64)
            if kind == CHAIN and previous >= 0 and left.sum() > left[previous]:
                left[previous] = 0.0  # each layering hop changes bank
            bank = int(np.searchsorted(np.cumsum(left), rng.random() * left.sum(), side="right"))
            bank = min(bank, k - 1)
            while left[bank] <= 0:  # float rounding guard
                bank = (bank + 1) % k
            who[i] = starts[bank] + pools[bank][taken[bank]]
            taken[bank] += 1
            previous = bank
        p0 = int(rng.integers(periods))
        amount: npt.NDArray[np.floating[Any]]
        if kind == FAN_IN:
            s, d = who[1:], np.full(size, who[0])
            amount = REPORTING_THRESHOLD * rng.uniform(0.80, 0.999, size)
        elif kind == FAN_OUT:
            s, d = np.full(size, who[0]), who[1:]
            amount = REPORTING_THRESHOLD * rng.uniform(0.80, 0.999, size)
        else:
            s, d = (who, np.roll(who, -1)) if kind == CYCLE else (who[:-1], who[1:])
            start = rng.lognormal(np.log(8_000.0), 0.6)
            amount = start * np.cumprod(rng.uniform(0.93, 0.99, n_edges))  # fees per hop
        hop = np.full(n_edges, p0, dtype=np.int64)
        if kind == CHAIN:
            hop = np.minimum(p0 + np.arange(n_edges) // 2, periods - 1)
        srcs.append(s)
        dsts.append(d)
        amounts.append(amount)
        hop_periods.append(hop)
        members.append(who)
        used_accounts += n_members
        used_edges += n_edges
    if not members:
        return _Motifs()
    cents = np.maximum(np.rint(np.concatenate(amounts) * 100), 1).astype(np.int64)
    return _Motifs(
        src=np.concatenate(srcs),
        dst=np.concatenate(dsts),
        cents=cents,
        period=np.concatenate(hop_periods),
        members=np.concatenate(members),
    )


def _initial_scores(rng: np.random.Generator, laundering: npt.NDArray[np.bool_]) -> FloatArray:
    """Scores of a bank's own monitoring: low for most, high for many (not all) launderers."""
    n = len(laundering)
    scores = rng.beta(1.0, 30.0, n)
    scores[rng.random(n) < 0.3] = 0.0
    false_positive = rng.random(n) < 0.002
    scores[false_positive] = rng.uniform(0.5, 0.9, int(false_positive.sum()))
    bad = np.flatnonzero(laundering)
    known = rng.random(bad.size) < 0.6
    scores[bad] = np.where(known, rng.uniform(0.5, 1.0, bad.size), rng.beta(2.0, 6.0, bad.size))
    return np.round(scores, 6)
