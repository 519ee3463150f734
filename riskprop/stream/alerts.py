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

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from riskprop.errors import ConfigError
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
    """The transactions as the batch reader's columns (line numbers are positions from 2).

    By columns: one pass takes every field of every transaction (``zip`` of ``attrgetter``
    rows), and the text columns are coded with a dict over their distinct values, sorted by
    code point as :class:`~riskprop.scoring.raw.Coded` requires (no Arrow call per column: a
    batch is small and Arrow's set-up per call would dominate)."""
    n = len(transactions)
    if n == 0:
        columns: list[tuple[Any, ...]] = [() for _ in _FIELDS]
    else:
        columns = list(zip(*map(_ROW, transactions), strict=True))
    c = dict(zip(_FIELDS, columns, strict=True))
    source, target = _coded(c["source"], c["target"])
    source_bank, target_bank = _coded(c["source_bank"], c["target_bank"])
    source_country, target_country = _coded(c["source_country"], c["target_country"])
    (currency,), (kind,), (channel,), (status,) = (
        _coded(c[name]) for name in ("currency", "kind", "channel", "status")
    )
    return RawTransactions(
        path=Path("<stream>"),
        line=np.arange(2, n + 2, dtype=np.int64),
        tx_id=Texts.of(list(c["tx_id"])),
        time=np.array(c["time"], dtype=np.int64),
        utc_offset=np.array(c["utc_offset"], dtype=np.int32),
        source=source,
        source_bank=source_bank,
        target=target,
        target_bank=target_bank,
        amount=np.array(c["amount"], dtype=np.float64),
        currency=currency,
        original_amount=np.array(c["original_amount"], dtype=np.float64),
        kind=kind,
        channel=channel,
        source_country=source_country,
        target_country=target_country,
        status=status,
        label=None,
    )


_FIELDS: Final = tuple(f.name for f in fields(Transaction))
_ROW: Final = attrgetter(*_FIELDS)


def _coded(*columns: Sequence[Any]) -> list[Coded]:
    """The columns coded over one table of their distinct values, sorted (code point order,
    as Arrow's sort of strings: so code order is value order)."""
    values: list[str] = sorted({v for column in columns for v in column})
    index = {v: i for i, v in enumerate(values)}
    table = np.empty(len(values), dtype=object)
    table[:] = values
    return [
        Coded(table, np.fromiter(map(index.__getitem__, column), np.int32, len(column)))
        for column in columns
    ]


def alerts(transactions: Sequence[Transaction], bank: str, rules: RuleSet) -> list[Alert]:
    """The alerts of ``rules``' transaction-level rules on ``transactions`` (of ``bank``), in
    the transactions' order, each alert's rules in rule order. ``rules`` may hold other rules:
    they are left out here."""
    kept = realtime(rules)
    if not transactions or not kept.rules:
        return []
    found = score(as_raw(transactions), bank, kept).alerts
    if not len(found.row):
        return []
    order = np.lexsort((found.level, found.rule, found.row))  # by row, then rule
    row, rule, level = found.row[order], found.rule[order], found.level[order]
    rows, starts = np.unique(row, return_index=True)
    tops = np.maximum.reduceat(level, starts).tolist()
    ends = [*starts[1:].tolist(), len(row)]
    names = [found.rules[r] for r in rule.tolist()]
    levels = [found.levels[lv] for lv in level.tolist()]
    out = []
    for r, start, end, top in zip(rows.tolist(), starts.tolist(), ends, tops, strict=True):
        tx = transactions[r]
        own = [
            a for a, b in ((tx.source, tx.source_bank), (tx.target, tx.target_bank)) if b == bank
        ]
        out.append(
            Alert(
                tx_id=tx.tx_id,
                time=tx.time,
                accounts=tuple(dict.fromkeys(own)),
                rules=tuple(zip(names[start:end], levels[start:end], strict=True)),
                level=kept.levels[top].name,
                action=kept.levels[top].action,
            )
        )
    return out


def encode(alert: Alert) -> bytes:
    """The alert as one JSON object (the alert stream's record): ``tx_id``, ``time``,
    ``accounts``, ``rules`` (``[{"rule": ..., "level": ...}]``), ``level``, ``action``; compact,
    the same text ``json.dumps(..., separators=(",", ":"))`` gives (a test checks). The parts
    a rule set repeats (a rule with its level, a level with its action) are encoded once."""
    rules = ",".join([_rule_json(rule, level) for rule, level in alert.rules])
    return (
        f'{{"tx_id":{_dumps(alert.tx_id)},"time":{alert.time},'
        f'"accounts":[{",".join(map(_dumps, alert.accounts))}],"rules":[{rules}],'
        f"{_level_json(alert.level, alert.action)}}}"
    ).encode()


_dumps = json.JSONEncoder(separators=(",", ":")).encode


@functools.lru_cache(maxsize=1024)
def _rule_json(rule: str, level: str) -> str:
    return f'{{"rule":{_dumps(rule)},"level":{_dumps(level)}}}'


@functools.lru_cache(maxsize=64)
def _level_json(level: str, action: str) -> str:
    return f'"level":{_dumps(level)},"action":{_dumps(action)}'


def outbox(
    bank: str, rules: RuleSet, *, windows: Windows | None = None, minimum: str | None = None
) -> Callable[[list[Transaction]], list[tuple[str, bytes]]]:
    """The store's outbox function: each new transaction's alert, keyed by its ``tx_id``.

    With ``windows`` (the windowed rules' state for ``bank``, made from the same ``rules``), the
    new transactions also go through the windowed rules, and a transaction's windowed alerts
    join its transaction-level ones in its one alert (:meth:`Windows.merge`). With ``minimum``
    (a level of ``rules``), only alerts of that level or above are published; every transaction
    is judged all the same (the windows see it), and the period's scores count every rule."""
    if windows is not None:
        windows.check_bank(bank)
    names = [level.name for level in rules.levels]
    if minimum is not None and minimum not in names:
        raise ConfigError(f"alert level {minimum!r} is not one of the rules' ({', '.join(names)})")
    kept = set(names[names.index(minimum) :]) if minimum is not None else set(names)

    def messages(transactions: list[Transaction]) -> list[tuple[str, bytes]]:
        found = alerts(transactions, bank, rules)
        if windows is not None:
            found = windows.merge(transactions, found)
        return [(a.tx_id, encode(a)) for a in found if a.level in kept]

    return messages
