"""Real-time alerts: the transaction-level rules judged on each newly stored transaction.

A rule is *transaction-level* when it judges one transaction alone (``TRANSACTION_LEVEL``:
threshold, jurisdiction, round_amount, night, failed, type); the batch engine
(:func:`riskprop.scoring.rules.score`) already raises one alert per firing transaction and
such rule, at the level of ``weight * strength`` on its own. Here a batch of transactions is
made a small :class:`~riskprop.scoring.raw.RawTransactions` and handed to that same engine with
the rule set cut down to those rules, so a streamed alert is by construction the batch alert of
the same transaction (a test checks it over a generated file). The windowed rules (structuring,
fan-in/out, pass-through) and velocity raise no per-transaction alerts in the batch engine; see
docs/design-streaming.md for their real-time design.

One :class:`Alert` per transaction with at least one alert: the rules that fired, each with its
level, and the transaction's level (the highest of them) with that level's action. Pure.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np

from riskprop.scoring.raw import Coded, RawTransactions, Texts
from riskprop.scoring.rules import RuleSet, score
from riskprop.stream.records import Transaction

if TYPE_CHECKING:  # windows.py imports this module; outbox only calls a Windows' methods
    from riskprop.stream.windows import Windows

TRANSACTION_LEVEL: Final = ("threshold", "jurisdiction", "round_amount", "night", "failed", "type")


@dataclass(frozen=True)
class Alert:
    """An alert on ``tx_id``: the bank's own ``accounts`` it touches, ``rules`` fired as (rule,
    level) in rule order, the highest ``level`` among them and its ``action``."""

    tx_id: str
    time: int
    accounts: tuple[str, ...]
    rules: tuple[tuple[str, str], ...]
    level: str
    action: str


def realtime(rules: RuleSet) -> RuleSet:
    """``rules`` with only its transaction-level rules (levels and the rest kept)."""
    return replace(rules, rules=tuple(r for r in rules.rules if r.kind in TRANSACTION_LEVEL))


def as_raw(transactions: Sequence[Transaction]) -> RawTransactions:
    """The transactions as the batch reader's columns (line numbers are positions from 2)."""
    t = transactions

    def column(name: str) -> list[str]:
        return [getattr(x, name) for x in t]

    source, target = Coded.shared([column("source"), column("target")])
    source_bank, target_bank = Coded.shared([column("source_bank"), column("target_bank")])
    countries = Coded.shared([column("source_country"), column("target_country")])
    return RawTransactions(
        path=Path("<stream>"),
        line=np.arange(2, len(t) + 2, dtype=np.int64),
        tx_id=Texts.of(column("tx_id")),
        time=np.array([x.time for x in t], dtype=np.int64),
        utc_offset=np.array([x.utc_offset for x in t], dtype=np.int32),
        source=source,
        source_bank=source_bank,
        target=target,
        target_bank=target_bank,
        amount=np.array([x.amount for x in t], dtype=np.float64),
        currency=Coded.of(column("currency")),
        original_amount=np.array([x.original_amount for x in t], dtype=np.float64),
        kind=Coded.of(column("kind")),
        channel=Coded.of(column("channel")),
        source_country=countries[0],
        target_country=countries[1],
        status=Coded.of(column("status")),
        label=None,
    )


def alerts(transactions: Sequence[Transaction], bank: str, rules: RuleSet) -> list[Alert]:
    """The alerts of ``rules``' transaction-level rules on ``transactions`` (of ``bank``), in
    the transactions' order. ``rules`` may hold other rules: they are left out here."""
    kept = realtime(rules)
    if not transactions or not kept.rules:
        return []
    found = score(as_raw(transactions), bank, kept).alerts
    fired: dict[int, list[tuple[int, int]]] = {}
    for row, rule, level in zip(
        found.row.tolist(), found.rule.tolist(), found.level.tolist(), strict=True
    ):
        fired.setdefault(row, []).append((rule, level))
    out = []
    for row, pairs in sorted(fired.items()):
        tx = transactions[row]
        top = max(level for _, level in pairs)
        own = [
            a for a, b in ((tx.source, tx.source_bank), (tx.target, tx.target_bank)) if b == bank
        ]
        out.append(
            Alert(
                tx_id=tx.tx_id,
                time=tx.time,
                accounts=tuple(dict.fromkeys(own)),
                rules=tuple((found.rules[r], found.levels[lv]) for r, lv in sorted(pairs)),
                level=kept.levels[top].name,
                action=kept.levels[top].action,
            )
        )
    return out


def encode(alert: Alert) -> bytes:
    """The alert as one JSON object (the alert stream's record)."""
    fields = {
        "tx_id": alert.tx_id,
        "time": alert.time,
        "accounts": list(alert.accounts),
        "rules": [{"rule": rule, "level": level} for rule, level in alert.rules],
        "level": alert.level,
        "action": alert.action,
    }
    return json.dumps(fields, separators=(",", ":")).encode()


def outbox(
    bank: str, rules: RuleSet, *, windows: Windows | None = None
) -> Callable[[list[Transaction]], list[tuple[str, bytes]]]:
    """The store's outbox function: each new transaction's alert, keyed by its ``tx_id``.

    With ``windows`` (the windowed rules' state for ``bank``, made from the same ``rules``), the
    new transactions also go through the windowed rules, and a transaction's windowed alerts
    join its transaction-level ones in its one alert (:meth:`Windows.merge`)."""
    if windows is not None:
        windows.check_bank(bank)

    def messages(transactions: list[Transaction]) -> list[tuple[str, bytes]]:
        found = alerts(transactions, bank, rules)
        if windows is not None:
            found = windows.merge(transactions, found)
        return [(a.tx_id, encode(a)) for a in found]

    return messages
