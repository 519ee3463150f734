"""The demo's raw mode (``riskprop demo --raw``): raw transactions, rule scores, explanations.

Instead of the sample data set, the demo generates raw transactions with planted typologies for
its banks (``riskprop.lab.rawgen``, as ``riskprop generate OUT --raw`` does), scores each bank's
file with the shipped default rules (``riskprop.scoring.pipeline.score_bank``, as ``riskprop
score`` does) and runs the secure demo on the scored data set::

    OUT/raw/<bank>/raw.csv       the bank's raw transactions (riskprop's raw layout)
    OUT/raw/labels.csv           bank,id,is_laundering: the accounts that launder
    OUT/data/<bank>/             accounts.csv (rule scores), transactions.csv, explanations.csv,
                                 alerts.csv: what ``riskprop score`` writes
    OUT/data/labels.csv          a copy of the labels, so ``riskprop evaluate OUT/data`` works

Periods: every bank is scored with the same period length (:data:`PERIOD_LENGTH`) from the
same origin (:data:`PERIOD_ORIGIN`, UTC midnight where the generated activity starts), so a
cross-bank transaction, which is in both banks' files, falls into the same period in both.

The explained view joins, per bank, the accounts the secure run ranks highest with what the
rules said of them: the rule score r0, the propagated score, the level of r0's band and each
rule that fired with its contribution (largest first), as in ``explanations.csv``.
"""

from __future__ import annotations

import csv
import datetime as dt
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from riskprop.files.layout import check_out, read_labels
from riskprop.lab.rawgen import EPOCH, RawSummary, generate_raw
from riskprop.scoring.pipeline import BankScored, score_bank

#: Period length every bank's raw file is scored with.
PERIOD_LENGTH: Final = "30d"
#: Start of period 0 for every bank (seconds since the epoch): UTC midnight of the first
#: generated day, so the default 30 days of activity are one period.
PERIOD_ORIGIN: Final = EPOCH
#: Rules shown per account in the explained view (explanations.csv has them all).
SHOWN_RULES: Final = 3


@dataclass(frozen=True)
class RawSpec:
    """Size of the generated raw data: per bank, accounts and background transactions (planted
    typologies come on top); the days of activity and the generator's seed (fixed: the same
    data in every demo)."""

    accounts_per_bank: int = 500
    transactions_per_bank: int = 5000
    days: int = 30
    seed: int = 1


#: What ``riskprop demo --raw`` generates: 1,500 accounts and about 15,000 transactions over
#: 30 days for the three default banks.
DEMO_RAW: Final = RawSpec()


@dataclass(frozen=True, eq=False)
class RawScoring:
    """The generated raw data, each bank's scoring and the labelled (laundering) accounts."""

    raw: Path
    data: Path
    summary: RawSummary
    banks: dict[str, BankScored]
    laundering: frozenset[tuple[str, str]]


def score_raw(out: Path, banks: Sequence[str], spec: RawSpec = DEMO_RAW) -> RawScoring:
    """Generate ``spec``'s raw transactions for ``banks`` into ``out/raw`` and score every bank
    with the default rules into ``out/data`` (see the module doc). Files of an earlier raw demo
    with the same banks are replaced; an ``out/raw`` or ``out/data`` holding another bank's
    directory is refused (ConfigError) before anything is written."""
    raw, data = out / "raw", out / "data"
    check_out(raw, banks)
    check_out(data, banks)
    summary = generate_raw(
        raw,
        banks=banks,
        accounts=spec.accounts_per_bank * len(banks),
        transactions=spec.transactions_per_bank * len(banks),
        days=spec.days,
        seed=spec.seed,
    )
    scored = {
        bank: score_bank(
            raw / bank / "raw.csv",
            bank,
            data,
            period_length=PERIOD_LENGTH,
            origin=PERIOD_ORIGIN,
        )
        for bank in banks
    }
    shutil.copyfile(raw / "labels.csv", data / "labels.csv")
    labels = read_labels(raw / "labels.csv")
    laundering = frozenset(key for key, flag in labels.items() if flag)
    return RawScoring(raw, data, summary, scored, laundering)


@dataclass(frozen=True)
class Explained:
    """One ranked account: its rule score r0, its propagated score, the level of r0's band,
    whether it launders (labels.csv) and the rules that fired: (rule, contribution, example
    transaction ids), largest contribution first."""

    account: str
    rule_score: float
    propagated: float
    level: str
    laundering: bool
    rules: tuple[tuple[str, float, tuple[str, ...]], ...]


def explain(scoring: RawScoring, bank: str, ranked: Sequence[tuple[str, float]]) -> list[Explained]:
    """What the rules said of ``ranked`` accounts ((id, propagated score), in rank order)."""
    done = scoring.banks[bank].scored
    position = {str(account): i for i, account in enumerate(done.accounts.tolist())}
    shown = []
    for account, propagated in ranked:
        i = position[account]
        fired = [
            (rule, float(values[i]), tuple(done.examples[rule][i]))
            for rule, values in done.contributions.items()
            if values[i] > 0
        ]
        fired.sort(key=lambda item: (-item[1], item[0]))
        shown.append(
            Explained(
                account,
                float(done.score[i]),
                propagated,
                done.level[i],
                (bank, account) in scoring.laundering,
                tuple(fired),
            )
        )
    return shown


def alert_counts(scoring: RawScoring, bank: str) -> Counter[str]:
    """Alerts per rule in the bank's ``alerts.csv``."""
    with (scoring.data / bank / "alerts.csv").open(newline="", encoding="utf-8") as handle:
        return Counter(row["rule"] for row in csv.DictReader(handle))


def explained_view(
    scoring: RawScoring, top: dict[str, list[tuple[str, float, float]]], results: Path
) -> str:
    """Per bank: its alerts per rule and its top accounts after propagation (``top``: id, secure
    score, plaintext score), each with r0, the propagated score, level, label and rules."""
    lines = [
        f"raw mode: {scoring.summary.transactions} generated transactions "
        f"({scoring.summary.cross_bank} cross-bank) in {scoring.raw}/<bank>/raw.csv, "
        f"{len(scoring.laundering)} laundering accounts in {scoring.raw}/labels.csv; "
        f"each bank scored by the default rules into {scoring.data}/<bank>/, "
        f"periods of {PERIOD_LENGTH} from {_day(PERIOD_ORIGIN)} for every bank"
    ]
    for bank, ranked in top.items():
        alerts = alert_counts(scoring, bank)
        most = ", ".join(f"{rule} {n}" for rule, n in alerts.most_common(3))
        more = ", ..." if len(alerts) > 3 else ""
        accounts = len(scoring.banks[bank].scored.accounts)
        lines.append("")
        lines.append(
            f"{bank}: {accounts} accounts, {alerts.total()} alerts ({most}{more}); "
            f"top {len(ranked)} after propagation ({results / bank}/risk_scores.csv):"
        )
        shown = explain(scoring, bank, [(account, secure) for account, secure, _ in ranked])
        width = max([len("account"), *(len(e.account) for e in shown)])
        lines.append(
            f"  {'account':<{width}}  {'rule score':>10}  {'propagated':>10}  {'level':<8}  "
            f"{'launders':<8}  rules that fired (contribution, first transaction)"
        )
        for e in shown:
            fired = ", ".join(
                f"{rule} {value:.2f}" + (f" ({examples[0]})" if examples else "")
                for rule, value, examples in e.rules[:SHOWN_RULES]
            )
            if len(e.rules) > SHOWN_RULES:
                fired += f", {len(e.rules) - SHOWN_RULES} more"
            lines.append(
                f"  {e.account:<{width}}  {e.rule_score:>10.3f}  {e.propagated:>10.3f}  "
                f"{e.level:<8}  {'yes' if e.laundering else '':<8}  {fired or '-'}"
            )
    lines.append("")
    lines.append(
        f"every rule that fired, with up to {_examples(scoring)} transaction ids each: "
        f"{scoring.data}/<bank>/explanations.csv; those ids are the tx_id column of "
        f"{scoring.raw}/<bank>/raw.csv"
    )
    return "\n".join(lines)


def _examples(scoring: RawScoring) -> int:
    return max((done.rules.max_examples for done in scoring.banks.values()), default=0)


def _day(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%d")
