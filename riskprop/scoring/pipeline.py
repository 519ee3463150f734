"""One bank from raw transactions to its scored propagation input, in one call.

:func:`score_bank` reads the raw file (``riskprop.scoring.raw``), assigns periods and evaluates
the rules (``riskprop.scoring.rules``), and writes ``OUT/BANK/`` all or nothing
(``riskprop.scoring.output``). ``riskprop score``, the demo's raw mode and the workbench's
comparisons all go through it, so they score a bank the same way."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from riskprop.errors import ConfigError
from riskprop.scoring.output import PERIOD_LENGTHS, assign_periods, write_scored
from riskprop.scoring.raw import read_raw
from riskprop.scoring.rules import RuleSet, Scored, default_rules_path, load_rules, score


def prefer_returning_allocator() -> None:
    """Make jemalloc pyarrow's default memory pool where pyarrow has it. The reader's text
    columns are large and short-lived; jemalloc hands freed pages back to the system within
    about a second, while mimalloc (pyarrow's default on Linux) keeps them: on 10 million rows
    the process peaks at 2.95 GiB instead of 4.33 GiB (``scripts/bench_score.py``)."""
    import pyarrow as pa

    # a pyarrow built without jemalloc keeps its default
    with contextlib.suppress(NotImplementedError):
        pa.set_memory_pool(pa.jemalloc_memory_pool())


@dataclass(frozen=True, eq=False)
class BankScored:
    """What :func:`score_bank` did: the rule set, the scores, row counts of the files written
    (``counts["transactions.csv"]`` etc.), the raw rows read and the seconds it took."""

    rules: RuleSet
    scored: Scored
    counts: dict[str, int]
    raw_rows: int
    seconds: float


def score_bank(
    raw: Path,
    bank: str,
    out: Path,
    *,
    rules: Path | RuleSet | None = None,
    layout: str = "auto",
    currency: str = "USD",
    rates: Mapping[str, float] | None = None,
    period_length: str | None = None,
    origin: int | None = None,
    periods: int | None = None,
    members: Sequence[str] | None = None,
) -> BankScored:
    """Score ``bank``'s transactions in ``raw`` and write ``out/bank/``.

    ``rules``: a rules file, a loaded set, or None for the shipped TTR/CTR rules. Periods: of
    ``period_length`` (``1d``, ``7d``, ``30d``; default ``1d``) from ``origin`` (seconds since
    the epoch; default UTC midnight of the first transaction's day), or ``periods`` equal ones
    over the file's span. ``members``: the network's banks; transactions with a bank outside it
    are left out of ``transactions.csv`` (the rules still see them). ConfigError/InputError
    name the file and the problem; on any error nothing is written."""
    if periods is not None and (period_length is not None or origin is not None):
        raise ConfigError("give a number of periods or a period length/start, not both")
    if period_length is not None and period_length not in PERIOD_LENGTHS:
        raise ConfigError(
            f"period length must be one of {', '.join(PERIOD_LENGTHS)} (got {period_length!r})"
        )
    started = time.perf_counter()
    ruleset = rules if isinstance(rules, RuleSet) else load_rules(rules or default_rules_path())
    transactions = read_raw(raw, layout=layout, rates=rates, currency=currency.upper())
    if periods is None:
        length = PERIOD_LENGTHS[period_length or "1d"]
        period = assign_periods(transactions.time, length=length, origin=origin)
    else:
        period = assign_periods(transactions.time, count=periods)
    scored = score(transactions, bank, ruleset)
    if len(scored.accounts) == 0:
        raise ConfigError(f"{raw}: no transaction names bank {bank!r}")
    counts = write_scored(
        out,
        transactions,
        bank,
        scored,
        period,
        max_examples=ruleset.max_examples,
        members=members,
    )
    return BankScored(ruleset, scored, counts, transactions.n, time.perf_counter() - started)
