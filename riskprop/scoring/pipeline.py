"""One bank from raw transactions to its scored propagation input, in one call.

:func:`score_bank` reads the raw file (``riskprop.scoring.raw``), assigns periods and evaluates
the rules (``riskprop.scoring.rules``), and writes ``OUT/BANK/`` all or nothing
(``riskprop.scoring.output``). ``riskprop score``, the demo's raw mode and the workbench's
comparisons all go through it, so they score a bank the same way."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from riskprop.errors import ConfigError
from riskprop.scoring.output import PERIOD_LENGTHS, assign_periods, write_scored
from riskprop.scoring.raw import read_raw
from riskprop.scoring.rules import RuleSet, Scored, default_rules_path, load_rules, score


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
) -> BankScored:
    """Score ``bank``'s transactions in ``raw`` and write ``out/bank/``.

    ``rules``: a rules file, a loaded set, or None for the shipped TTR/CTR rules. Periods: of
    ``period_length`` (``1d``, ``7d``, ``30d``; default ``1d``) from ``origin`` (seconds since
    the epoch; default UTC midnight of the first transaction's day), or ``periods`` equal ones
    over the file's span. ConfigError/InputError name the file and the problem; on any error
    nothing is written."""
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
        out, transactions, bank, scored, period, max_examples=ruleset.max_examples
    )
    return BankScored(ruleset, scored, counts, transactions.n, time.perf_counter() - started)
