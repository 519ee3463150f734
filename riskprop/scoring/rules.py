"""Transaction-monitoring rules: YAML rule files, vectorised evaluation, noisy-OR scores, levels.

A rule set is a list of rules, each ``name``, ``kind``, ``weight`` in (0, 1] and ``params``, plus
score bands (levels with recommended actions). :func:`score` evaluates every rule for one bank's
own accounts and combines the contributions ``c_r = weight_r * strength_r`` by noisy-OR::

    score(a) = 1 - prod_r (1 - c_r(a))          in [0, 1]

which is non-decreasing in every contribution (so one strong rule or several weak ones both raise
it) and equals ``c`` when a single rule fires. The level is the last band whose ``minimum`` is at
most the score.

Whose transactions. A transaction touches an own account on its *source* side (outgoing; the
source bank is the bank) and/or its *target* side (incoming). Unless a rule says otherwise an
account's rule looks at every transaction touching it on either side; the *counterparty* is the
account on the other side. Windows are half-open: a transaction at time ``t`` lies "within
``window`` of" an earlier one at ``t0`` when ``0 <= t - t0 < window``.

Rules (strength in [0, 1]; transaction-level rules also raise one alert per firing transaction
on a touched own account, at the level of ``weight * strength`` on its own):

``threshold`` (transaction-level) ``amount``: a number (reporting currency, ``raw.amount``) or a
    map currency -> number (``original_amount`` in that currency; other currencies never fire);
    ``kinds`` (empty: all); ``side`` source|target|both. Fires on a transaction of the kinds with
    amount >= threshold; the account is the own account on the chosen side. Strength 1.
``structuring`` ``amount`` (as for threshold), ``margin`` in (0, 1), ``count`` >= 2, ``window``,
    ``kinds``, ``side``. A transaction is *near* when threshold * (1 - margin) <= amount <
    threshold. Fires when ``count`` near transactions of the account lie within ``window`` (last
    minus first < window). Strength 1; examples: the first such window's transactions.
``pass_through`` ``window``, ``tolerance`` >= 0, ``minimum``. Fires when an incoming transaction
    (amount >= minimum) is followed within ``window`` by an outgoing one of the same account with
    |out - in| <= tolerance * in (reporting currency). Strength 1; examples: the first pair.
``fan_in`` / ``fan_out`` ``count``, ``window``. Fires when the account's incoming (outgoing)
    transactions within one window come from (go to) at least ``count`` distinct counterparties.
    Strength 1; examples: the first firing window's transactions.
``jurisdiction`` (transaction-level) ``countries``. Fires on a transaction whose counterparty's
    country (target_country for an outgoing one, source_country for an incoming one) is listed.
``round_amount`` (transaction-level) ``unit`` > 0, ``minimum``. Fires when the amount as written
    (``original_amount``) is >= minimum and within half a cent of a multiple of ``unit``.
``night`` (transaction-level) ``start``, ``end`` hours in [0, 24]. Local time of day is
    ``(time + utc_offset) mod 24 h``; fires when it lies in [start, end), or when start > end
    (wrapping midnight) in [start, 24) or [0, end).
``velocity`` ``window``, ``factor`` > 0, ``minimum``, ``measure`` count|sum, ``baseline``
    median|mean. The file's time span is cut into consecutive windows from its first transaction
    (``(t - t_first) // window``); an account's activity (count, or sum of amounts) per window,
    empty windows counted as 0, has a baseline (median or mean over all the file's windows).
    Fires when some window holds at least ``minimum`` of its transactions and activity >
    factor * baseline. Strength 1; examples: that window's first transactions.
``failed`` (transaction-level) ``statuses`` (default failed, reversed), ``saturate`` >= 1. Fires
    on a transaction with such a status; account strength min(1, count / saturate).
``type`` (transaction-level) ``risk``: map kind -> risk in [0, 1]. A transaction's strength is the
    risk of its kind (0 when absent; fires when > 0); the account's is the maximum over its
    transactions.

For the other transaction-level rules the account's strength is 1 when any of its transactions
fires. Examples are the first ``max_examples`` triggering transaction ids in file order (windowed
rules: of the first firing window), alerts are in row order.

Cost: sorts by (account, time), ``searchsorted`` and cumulative sums, O(n log n); only
pass-through enumerates candidate (incoming, outgoing) pairs, in bounded chunks. Text columns
are compared by their integer codes (``riskprop.scoring.raw.Coded``), never as strings per row.
The rules run in threads, one per usable core (at most 4): numpy releases the interpreter lock
in its sorts and scans, and the results are combined in rule order, so the outcome does not
depend on the number of threads.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml

from riskprop.core.types import BoolArray, FloatArray, IntArray
from riskprop.errors import ConfigError
from riskprop.scoring.raw import RawTransactions, Texts, own_codes, threads

RULE_KINDS = (
    "threshold",
    "structuring",
    "pass_through",
    "fan_in",
    "fan_out",
    "jurisdiction",
    "round_amount",
    "night",
    "velocity",
    "failed",
    "type",
)
TX_LEVEL = frozenset({"threshold", "jurisdiction", "round_amount", "night", "failed", "type"})
DAY = 86_400


@dataclass(frozen=True)
class Rule:
    """One rule: ``name`` unique in its set; ``weight`` in (0, 1] is the contribution at full
    strength; ``params`` as written in YAML (windows as "2d"/"36h"/"30m" or seconds)."""

    name: str
    kind: str
    weight: float
    params: Mapping[str, object]


@dataclass(frozen=True)
class Level:
    """A score band: scores >= ``minimum`` (up to the next band's minimum) get ``action``."""

    name: str
    minimum: float
    action: str


DEFAULT_LEVELS = (
    Level("LOW", 0.0, "monitor"),
    Level("MEDIUM", 0.25, "review"),
    Level("HIGH", 0.5, "escalate"),
    Level("CRITICAL", 0.8, "escalate and file a report"),
)


@dataclass(frozen=True)
class RuleSet:
    path: Path
    rules: tuple[Rule, ...]
    levels: tuple[Level, ...] = DEFAULT_LEVELS
    max_examples: int = 3


# ---------------------------------------------------------------------------------------------
# validation


class _Bad(Exception):  # noqa: N818 (internal, always turned into a ConfigError)
    """A problem with one value; ``key`` is relative to the value that raised it."""

    def __init__(self, problem: str, key: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.key = key


def _number(v: object) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise _Bad(f"expected a number, got {v!r}")
    return float(v)


def _nonneg(v: object) -> float:
    x = _number(v)
    if x < 0:
        raise _Bad(f"must be >= 0, got {v!r}")
    return x


def _positive(v: object) -> float:
    x = _number(v)
    if x <= 0:
        raise _Bad(f"must be > 0, got {v!r}")
    return x


def _fraction(v: object) -> float:
    x = _number(v)
    if not 0 < x < 1:
        raise _Bad(f"must be in (0, 1), got {v!r}")
    return x


def _unit_interval(v: object) -> float:
    x = _number(v)
    if not 0 <= x <= 1:
        raise _Bad(f"must be in [0, 1], got {v!r}")
    return x


def _hour(v: object) -> float:
    x = _number(v)
    if not 0 <= x <= 24:
        raise _Bad(f"an hour must be in [0, 24], got {v!r}")
    return x


def _int_at_least(low: int) -> Callable[[object], int]:
    def parse(v: object) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise _Bad(f"expected an integer, got {v!r}")
        if v < low:
            raise _Bad(f"must be >= {low}, got {v}")
        return v

    return parse


_WINDOW = re.compile(r"^\s*(\d+)\s*([dhms])\s*$")
_UNIT_SECONDS = {"d": DAY, "h": 3600, "m": 60, "s": 1}


def _window(v: object) -> int:
    """A duration: "2d", "36h", "30m", "45s", or whole seconds; > 0."""
    if isinstance(v, int) and not isinstance(v, bool):
        seconds = v
    elif isinstance(v, str) and (m := _WINDOW.match(v)):
        seconds = int(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    else:
        raise _Bad(f"expected a duration like 2d, 36h or 30m, got {v!r}")
    if seconds <= 0:
        raise _Bad(f"must be positive, got {v!r}")
    return seconds


def _strings(case: Callable[[str], str]) -> Callable[[object], tuple[str, ...]]:
    def parse(v: object) -> tuple[str, ...]:
        if not isinstance(v, list):
            raise _Bad(f"expected a list of strings, got {v!r}")
        for i, item in enumerate(v):
            if not isinstance(item, str) or not item.strip():
                raise _Bad(f"expected a non-empty string, got {item!r}", f"[{i}]")
        return tuple(case(str(item).strip()) for item in v)

    return parse


def _choice(*options: str) -> Callable[[object], str]:
    def parse(v: object) -> str:
        if v not in options:
            raise _Bad(f"expected one of {', '.join(options)}, got {v!r}")
        return str(v)

    return parse


def _str_map(
    key_case: Callable[[str], str], value: Callable[[object], float]
) -> Callable[[object], dict[str, float]]:
    def parse(v: object) -> dict[str, float]:
        if not isinstance(v, dict) or not v:
            raise _Bad(f"expected a non-empty mapping, got {v!r}")
        out: dict[str, float] = {}
        for k, x in v.items():
            if not isinstance(k, str) or not k.strip():
                raise _Bad(f"expected a string key, got {k!r}")
            try:
                out[key_case(k.strip())] = value(x)
            except _Bad as exc:
                raise _Bad(exc.problem, f".{k}") from None
        return out

    return parse


def _amount(v: object) -> float | dict[str, float]:
    """A threshold in the reporting currency, or per currency (original amounts)."""
    if isinstance(v, dict):
        return _str_map(str.upper, _positive)(v)
    return _positive(v)


_REQUIRED = object()
_KINDS = _strings(str.lower)
_SIDE = _choice("source", "target", "both")

#: kind -> parameter -> (parser, default or _REQUIRED)
_SPEC: dict[str, dict[str, tuple[Callable[[object], Any], object]]] = {
    "threshold": {"amount": (_amount, _REQUIRED), "kinds": (_KINDS, []), "side": (_SIDE, "both")},
    "structuring": {
        "amount": (_amount, _REQUIRED),
        "margin": (_fraction, _REQUIRED),
        "count": (_int_at_least(2), _REQUIRED),
        "window": (_window, _REQUIRED),
        "kinds": (_KINDS, []),
        "side": (_SIDE, "both"),
    },
    "pass_through": {
        "window": (_window, _REQUIRED),
        "tolerance": (_nonneg, _REQUIRED),
        "minimum": (_nonneg, 0.0),
    },
    "fan_in": {"count": (_int_at_least(2), _REQUIRED), "window": (_window, _REQUIRED)},
    "fan_out": {"count": (_int_at_least(2), _REQUIRED), "window": (_window, _REQUIRED)},
    "jurisdiction": {"countries": (_strings(str.upper), _REQUIRED)},
    "round_amount": {"unit": (_positive, _REQUIRED), "minimum": (_nonneg, 0.0)},
    "night": {"start": (_hour, _REQUIRED), "end": (_hour, _REQUIRED)},
    "velocity": {
        "window": (_window, _REQUIRED),
        "factor": (_positive, _REQUIRED),
        "minimum": (_int_at_least(1), 1),
        "measure": (_choice("count", "sum"), "count"),
        "baseline": (_choice("median", "mean"), "median"),
    },
    "failed": {
        "statuses": (_strings(str.lower), ["failed", "reversed"]),
        "saturate": (_int_at_least(1), 1),
    },
    "type": {"risk": (_str_map(str.lower, _unit_interval), _REQUIRED)},
}


def _params(kind: str, params: Mapping[str, object]) -> dict[str, Any]:
    """The parameters of a rule of ``kind``, parsed, with defaults; _Bad with key ``.name``."""
    spec = _SPEC[kind]
    for name in params:
        if name not in spec:
            raise _Bad(f"unknown parameter for {kind} (known: {', '.join(spec)})", f".{name}")
    out: dict[str, Any] = {}
    for name, (parse, default) in spec.items():
        if name not in params:
            if default is _REQUIRED:
                raise _Bad(f"missing (required for {kind})", f".{name}")
            out[name] = parse(default)
            continue
        try:
            out[name] = parse(params[name])
        except _Bad as exc:
            raise _Bad(exc.problem, f".{name}{exc.key}") from None
    if kind == "night" and out["start"] == out["end"]:
        raise _Bad("start and end must differ", ".end")
    return out


def _rule(item: object) -> Rule:
    if not isinstance(item, dict):
        raise _Bad(f"expected a mapping, got {item!r}")
    for key in item:
        if key not in ("name", "kind", "weight", "params"):
            raise _Bad("unknown key (known: name, kind, weight, params)", f".{key}")
    for key in ("name", "kind", "weight"):
        if key not in item:
            raise _Bad("missing", f".{key}")
    name, kind = item["name"], item["kind"]
    if not isinstance(name, str) or not name.strip():
        raise _Bad(f"expected a non-empty string, got {name!r}", ".name")
    if kind not in RULE_KINDS:
        raise _Bad(f"unknown rule kind {kind!r} (known: {', '.join(RULE_KINDS)})", ".kind")
    try:
        weight = _number(item["weight"])
    except _Bad as exc:
        raise _Bad(exc.problem, ".weight") from None
    if not 0 < weight <= 1:
        raise _Bad(f"must be in (0, 1], got {item['weight']!r}", ".weight")
    params = item.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise _Bad(f"expected a mapping, got {params!r}", ".params")
    try:
        _params(str(kind), params)
    except _Bad as exc:
        raise _Bad(exc.problem, f".params{exc.key}") from None
    return Rule(name.strip(), str(kind), weight, dict(params))


def _level(item: object) -> Level:
    if not isinstance(item, dict):
        raise _Bad(f"expected a mapping, got {item!r}")
    for key in item:
        if key not in ("name", "minimum", "action"):
            raise _Bad("unknown key (known: name, minimum, action)", f".{key}")
    for key in ("name", "minimum", "action"):
        if key not in item:
            raise _Bad("missing", f".{key}")
    for key in ("name", "action"):
        if not isinstance(item[key], str) or not item[key].strip():
            raise _Bad(f"expected a non-empty string, got {item[key]!r}", f".{key}")
    try:
        minimum = _unit_interval(item["minimum"])
    except _Bad as exc:
        raise _Bad(exc.problem, ".minimum") from None
    return Level(item["name"].strip(), minimum, item["action"].strip())


def _list(data: dict[str, Any], key: str, parse: Callable[[object], Any]) -> list[Any]:
    items = data[key]
    if not isinstance(items, list) or not items:
        raise _Bad(f"expected a non-empty list, got {items!r}", key)
    out = []
    for i, item in enumerate(items):
        try:
            out.append(parse(item))
        except _Bad as exc:
            raise _Bad(exc.problem, f"{key}[{i}]{exc.key}") from None
    return out


def _ruleset(path: Path, data: object) -> RuleSet:
    if not isinstance(data, dict):
        raise _Bad(f"expected a mapping with rules, got {type(data).__name__}", "(top)")
    for key in data:
        if key not in ("rules", "levels", "max_examples"):
            raise _Bad("unknown key (known: rules, levels, max_examples)", str(key))
    if "rules" not in data:
        raise _Bad("missing", "rules")
    rules: list[Rule] = _list(data, "rules", _rule)
    seen: set[str] = set()
    for i, rule in enumerate(rules):
        if rule.name in seen:
            raise _Bad(f"duplicate rule name {rule.name!r}", f"rules[{i}].name")
        seen.add(rule.name)
    levels = tuple(_list(data, "levels", _level)) if "levels" in data else DEFAULT_LEVELS
    _check_levels(levels)
    max_examples = 3
    if "max_examples" in data:
        try:
            max_examples = _int_at_least(0)(data["max_examples"])
        except _Bad as exc:
            raise _Bad(exc.problem, "max_examples") from None
    return RuleSet(path, tuple(rules), levels, max_examples)


def _check_levels(levels: tuple[Level, ...]) -> None:
    if not levels or levels[0].minimum != 0:
        raise _Bad("the first level's minimum must be 0", "levels[0].minimum")
    for i in range(1, len(levels)):
        if levels[i].minimum <= levels[i - 1].minimum:
            raise _Bad(
                f"minimums must increase ({levels[i].minimum} after {levels[i - 1].minimum})",
                f"levels[{i}].minimum",
            )
    names = [level.name for level in levels]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise _Bad(f"duplicate level name {name!r}", f"levels[{i}].name")


def load_rules(path: Path) -> RuleSet:
    """Read and validate a YAML rule file; any problem is one ConfigError line
    ``file: rules[2].params.window: problem`` (``file:line: ...`` for YAML syntax)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the rules file ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}{where}: invalid YAML: {problem}") from None
    try:
        return _ruleset(path, data)
    except _Bad as exc:
        raise ConfigError(f"{path}: {exc.key}: {exc.problem}") from None


def default_rules_path() -> Path:
    """The TTR/CTR default rule file shipped in the package."""
    return Path(__file__).resolve().parent / "default_rules.yaml"


# ---------------------------------------------------------------------------------------------
# evaluation


@dataclass(frozen=True, eq=False)
class Examples:
    """One rule's example transactions per account: ``self[a]`` lists account ``a``'s ids in
    the rule's order. Held as (account, row) pairs sorted by account (stable) and the raw
    file's ids, so that an account costs nothing when the rule did not fire for it."""

    account: IntArray
    row: IntArray
    tx_id: Texts
    n_accounts: int

    def __len__(self) -> int:
        return self.n_accounts

    def __getitem__(self, a: int) -> list[str]:
        lo, hi = np.searchsorted(self.account, [a, a + 1])
        return [str(t) for t in self.tx_id[self.row[int(lo) : int(hi)]]]

    def tolist(self) -> list[list[str]]:
        return [self[a] for a in range(self.n_accounts)]


@dataclass(frozen=True, eq=False)
class Alerts:
    """Alerts of the transaction-level rules: per alert its raw ``row``, ``rule`` (index into
    ``rules``) and ``level`` (index into ``levels``), ordered by row, then rule order."""

    row: IntArray
    rule: IntArray
    level: IntArray
    rules: tuple[str, ...]
    levels: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.row)

    def tuples(self) -> list[tuple[int, str, str]]:
        """``(row, rule name, level name)`` per alert."""
        return [
            (r, self.rules[k], self.levels[lv])
            for r, k, lv in zip(
                self.row.tolist(), self.rule.tolist(), self.level.tolist(), strict=True
            )
        ]

    def counts(self) -> dict[str, int]:
        """Alerts per rule name (rules without alerts left out)."""
        counts = np.bincount(self.rule, minlength=len(self.rules))
        return {name: int(c) for name, c in zip(self.rules, counts, strict=True) if c}


@dataclass(frozen=True, eq=False)
class Scored:
    """Per own account (``accounts``, own_accounts order): score, level, action, per-rule
    contributions and example transaction ids; alerts per firing transaction-level rule."""

    accounts: npt.NDArray[np.object_]
    score: FloatArray
    level: list[str]
    action: list[str]
    contributions: dict[str, FloatArray]
    examples: Mapping[str, Examples | Sequence[Sequence[str]]]
    alerts: Alerts


@dataclass(frozen=True, eq=False)
class _Events:
    """Transactions as (own account, row) events sorted by (account, time, row)."""

    account: IntArray  # position in the own accounts
    row: IntArray
    time: IntArray

    @staticmethod
    def of(account: IntArray, row: IntArray, time: IntArray) -> _Events:
        """Sorted by row, then stably by the (account, time) key: two single-key sorts (the
        first a linear merge when ``row`` is ascending runs, as the sides' events are), which
        numpy does faster than one three-key ``lexsort``."""
        by_row = np.argsort(row, kind="stable")
        account, row, time = account[by_row], row[by_row], time[by_row]
        base = int(time.min()) if len(time) else 0
        span = (int(time.max()) - base if len(time) else 0) + 1
        order = np.argsort(_key(account, time, base, span), kind="stable")
        return _Events(account[order], row[order], time[order])

    def key(self, offset: IntArray | int = 0) -> IntArray:
        """Monotone int64 key (account, time + offset): time shifted to start at 0."""
        return _key(self.account, self.time + offset, self._base, self._span)

    @property
    def _base(self) -> int:
        return int(self.time.min()) if len(self.time) else 0

    @property
    def _span(self) -> int:
        return (int(self.time.max()) - self._base if len(self.time) else 0) + 1


def _key(account: IntArray, time: IntArray, base: int, span: int) -> IntArray:
    """``account * 3 * span + (time - base + span)``: monotone in (account, time) for times in
    [base - span, base + 2 span), i.e. any window up to the file's span on either side."""
    clipped = np.clip(time - base + span, 0, 3 * span - 1)
    out: IntArray = account.astype(np.int64) * (3 * span) + clipped
    return out


@dataclass(frozen=True, eq=False)
class _Context:
    raw: RawTransactions
    n_accounts: int
    src: IntArray  # own account position of each row's source, -1 when not own
    dst: IntArray

    def side_events(self, side: str, mask: BoolArray) -> tuple[IntArray, IntArray]:
        """(account, row) pairs of the masked rows touching own accounts on ``side``."""
        accounts, rows = [], []
        if side in ("source", "both"):
            r = np.flatnonzero(mask & (self.src >= 0))
            accounts.append(self.src[r])
            rows.append(r)
        if side in ("target", "both"):
            r = np.flatnonzero(mask & (self.dst >= 0))
            accounts.append(self.dst[r])
            rows.append(r)
        return np.concatenate(accounts).astype(np.int64), np.concatenate(rows).astype(np.int64)


@dataclass(frozen=True, eq=False)
class _Result:
    strength: FloatArray  # per account
    example_account: IntArray  # triggering (account, row) pairs, in the order to keep
    example_row: IntArray
    alert_rows: IntArray  # transaction-level rules: firing rows (sorted, unique)
    alert_strength: FloatArray


def score(raw: RawTransactions, bank: str, rules: RuleSet) -> Scored:
    """Evaluate ``rules`` on the bank's own accounts; see the module docstring."""
    params = []
    for i, rule in enumerate(rules.rules):
        if rule.kind not in RULE_KINDS:
            raise ConfigError(f"{rules.path}: rules[{i}].kind: unknown rule kind {rule.kind!r}")
        try:
            params.append(_params(rule.kind, rule.params))
        except _Bad as exc:
            raise ConfigError(f"{rules.path}: rules[{i}].params{exc.key}: {exc.problem}") from None
    try:
        _check_levels(rules.levels)
    except _Bad as exc:
        raise ConfigError(f"{rules.path}: {exc.key}: {exc.problem}") from None
    codes, position = own_codes(raw, bank)
    accounts: npt.NDArray[np.object_] = raw.source.values[codes]
    src = np.where(raw.source_bank.equals(bank), position[raw.source.codes], -1)
    dst = np.where(raw.target_bank.equals(bank), position[raw.target.codes], -1)
    ctx = _Context(raw, len(accounts), src, dst)
    minimums = np.array([level.minimum for level in rules.levels])

    def level_index(x: FloatArray) -> IntArray:
        out: IntArray = np.searchsorted(minimums, x, side="right").astype(np.int64) - 1
        return np.maximum(out, 0)

    total_keep = np.ones(len(accounts))
    contributions: dict[str, FloatArray] = {}
    examples: dict[str, Examples] = {}
    alert_rows: list[IntArray] = []  # per rule: firing rows, and their rule and level indices
    alert_rules: list[IntArray] = []
    alert_levels: list[IntArray] = []
    # numpy's sorts and scans release the interpreter lock: the rules run side by side on
    # the node's cores, their results taken in rule order (the same as one after another)
    with ThreadPoolExecutor(max_workers=threads()) as pool:
        kinds = [rule.kind for rule in rules.rules]
        results = list(pool.map(lambda k, p: _EVALUATORS[k](ctx, p), kinds, params))
    for r, (rule, result) in enumerate(zip(rules.rules, results, strict=True)):
        contribution = rule.weight * np.clip(result.strength, 0.0, 1.0)
        contributions[rule.name] = contribution
        total_keep *= 1.0 - contribution
        examples[rule.name] = _examples(ctx, result, contribution > 0, rules.max_examples)
        alert_rows.append(result.alert_rows)
        alert_rules.append(np.full(len(result.alert_rows), r, dtype=np.int64))
        alert_levels.append(level_index(rule.weight * result.alert_strength))
    total = np.clip(1.0 - total_keep, 0.0, 1.0)
    index = level_index(total)
    rows, rule_index, level_of = (
        np.concatenate([np.zeros(0, np.int64), *parts]).astype(np.int64)
        for parts in (alert_rows, alert_rules, alert_levels)
    )
    order = np.lexsort((rule_index, rows))  # by row, then in rule order
    alerts = Alerts(
        rows[order],
        rule_index[order],
        level_of[order],
        tuple(rule.name for rule in rules.rules),
        tuple(level.name for level in rules.levels),
    )
    return Scored(
        accounts=accounts,
        score=total,
        level=[rules.levels[int(k)].name for k in index],
        action=[rules.levels[int(k)].action for k in index],
        contributions=contributions,
        examples=examples,
        alerts=alerts,
    )


def _examples(ctx: _Context, result: _Result, fired: BoolArray, most: int) -> Examples:
    """Per account the first ``most`` example rows (in the result's order), fired only."""
    acc, row = result.example_account, result.example_row
    order = np.argsort(acc, kind="stable")
    acc, row = acc[order], row[order]
    first = np.searchsorted(acc, acc, side="left")
    keep = ((np.arange(len(acc)) - first) < most) & fired[acc]
    return Examples(acc[keep], row[keep], ctx.raw.tx_id, ctx.n_accounts)


def _tx_rule(ctx: _Context, fires: FloatArray, side: str = "both", saturate: int = 0) -> _Result:
    """A transaction-level rule with per-row strength ``fires`` (0: not firing): account
    strength the maximum over its rows on ``side``, or min(1, count / saturate)."""
    acc, row = ctx.side_events(side, fires > 0)
    strength = np.zeros(ctx.n_accounts)
    if saturate:
        counts = np.bincount(acc, minlength=ctx.n_accounts)
        strength = np.minimum(1.0, counts / saturate)
    else:
        np.maximum.at(strength, acc, fires[row])
    order = np.lexsort((row, acc))
    rows = _sorted_unique(row)
    return _Result(strength, acc[order], row[order], rows, fires[rows])


def _sorted_unique(values: IntArray) -> IntArray:
    """The distinct values, ascending, by one sort (numpy 2's ``unique`` without
    ``return_*`` hashes instead, measured 20 times slower on 10 million integers)."""
    ordered = np.sort(values)
    keep = np.ones(len(ordered), dtype=bool)
    keep[1:] = ordered[1:] != ordered[:-1]
    out: IntArray = ordered[keep]
    return out


def _threshold_mask(ctx: _Context, amount: float | dict[str, float]) -> FloatArray:
    """Per row the threshold it is judged against (inf: never)."""
    raw = ctx.raw
    if isinstance(amount, float):
        return np.full(raw.n, amount)
    return raw.currency.lookup(amount, np.inf)


def _amounts_for(ctx: _Context, amount: float | dict[str, float]) -> FloatArray:
    return ctx.raw.amount if isinstance(amount, float) else ctx.raw.original_amount


def _of_kinds(ctx: _Context, kinds: tuple[str, ...]) -> BoolArray:
    if not kinds:
        return np.ones(ctx.raw.n, dtype=bool)
    return ctx.raw.kind.isin(kinds)


def _threshold(ctx: _Context, p: Mapping[str, Any]) -> _Result:
    limit = _threshold_mask(ctx, p["amount"])
    fires = _of_kinds(ctx, p["kinds"]) & (_amounts_for(ctx, p["amount"]) >= limit)
    return _tx_rule(ctx, fires.astype(float), p["side"])


def _window_start(ev: _Events, window: int) -> IntArray:
    """For each event j, the first event i of its account with t_j - t_i < window."""
    keys = ev.key()
    out: IntArray = np.searchsorted(keys, ev.key(1 - window), side="left").astype(np.int64)
    return out


def _first_window(ev: _Events, fire: BoolArray, start: IntArray) -> tuple[IntArray, IntArray]:
    """(account, row) of the events in each account's first firing window (in time order)."""
    j = np.flatnonzero(fire)
    if len(j) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    first = j[np.unique(ev.account[j], return_index=True)[1]]
    members = _ranges(start[first], first + 1)
    return ev.account[members], ev.row[members]


def _ranges(lo: IntArray, hi: IntArray) -> IntArray:
    """Concatenation of arange(lo[k], hi[k]) over k, vectorised."""
    sizes = np.maximum(hi - lo, 0)
    if sizes.sum() == 0:
        return np.zeros(0, np.int64)
    ends = np.cumsum(sizes)
    offsets = np.repeat(lo - (ends - sizes), sizes)
    out: IntArray = np.arange(int(ends[-1]), dtype=np.int64) + offsets
    return out


def _structuring(ctx: _Context, p: Mapping[str, Any]) -> _Result:
    limit = _threshold_mask(ctx, p["amount"])
    amount = _amounts_for(ctx, p["amount"])
    near = _of_kinds(ctx, p["kinds"]) & (amount >= limit * (1 - p["margin"])) & (amount < limit)
    acc, row = ctx.side_events(p["side"], near)
    ev = _Events.of(acc, row, ctx.raw.time[row])
    start = _window_start(ev, p["window"])
    fire = (np.arange(len(ev.row)) - start + 1) >= p["count"]
    strength = np.zeros(ctx.n_accounts)
    strength[ev.account[fire]] = 1.0
    ex_acc, ex_row = _first_window(
        ev, fire, np.maximum(start, np.arange(len(ev.row)) - p["count"] + 1)
    )
    return _Result(strength, ex_acc, ex_row, np.zeros(0, np.int64), np.zeros(0))


def _fan(ctx: _Context, p: Mapping[str, Any], incoming: bool) -> _Result:
    """Distinct counterparties per window as an interval cover: event i (counterparty c) counts
    for the windows ending at events j in [i, E_i), E_i = min(next event of the account with c,
    first event at or after t_i + window); so distinct(j) = #{i: i <= j < E_i}, a cumulative
    sum of +1 at i and -1 at E_i. O(n log n), no pairs."""
    raw = ctx.raw
    own = ctx.dst if incoming else ctx.src
    rows = np.flatnonzero(own >= 0)
    ev = _Events.of(own[rows], rows, raw.time[rows])
    n = len(ev.row)
    other = raw.source if incoming else raw.target
    other_bank = raw.source_bank if incoming else raw.target_bank
    # the counterparty (bank, account) as one integer; both sides share their value tables
    cp = other_bank.codes[ev.row].astype(np.int64) * max(len(other.values), 1)
    cp += other.codes[ev.row]
    position = np.arange(n, dtype=np.int64)
    pairs = (ctx.n_accounts + 1) * (int(cp.max()) + 1 if n else 1)
    if pairs < 1 << 62:  # one stable sort on (account, counterparty); position order kept
        by_pair = np.argsort(ev.account * (pairs // (ctx.n_accounts + 1)) + cp, kind="stable")
    else:
        by_pair = np.lexsort((position, cp, ev.account))
    same = (ev.account[by_pair][1:] == ev.account[by_pair][:-1]) & (
        cp[by_pair][1:] == cp[by_pair][:-1]
    )
    following = np.full(n, n, dtype=np.int64)  # next event of the same (account, counterparty)
    following[by_pair[:-1][same]] = by_pair[1:][same]
    keys = ev.key()
    end = np.searchsorted(keys, ev.key(p["window"]), side="left").astype(np.int64)
    stop = np.minimum(following, end)
    delta = np.bincount(position, minlength=n + 1) - np.bincount(stop, minlength=n + 1)
    distinct = np.cumsum(delta)[:n]
    fire = distinct >= p["count"]
    strength = np.zeros(ctx.n_accounts)
    strength[ev.account[fire]] = 1.0
    # examples: the first firing window's events counted in it (one per counterparty)
    j = np.flatnonzero(fire)
    first = j[np.unique(ev.account[j], return_index=True)[1]]
    start = _window_start(ev, p["window"])
    members = _ranges(start[first], first + 1)
    window_end = np.repeat(first, first + 1 - start[first])
    members = members[stop[members] > window_end]
    return _Result(strength, ev.account[members], ev.row[members], position[:0], np.zeros(0))


#: at most this many (incoming, outgoing) candidate pairs are held at once
PAIR_CHUNK = 1 << 22


def _pass_through(ctx: _Context, p: Mapping[str, Any]) -> _Result:
    """Candidate pairs: per incoming event the outgoing events of its account in [t, t +
    window), found by searchsorted, checked in chunks of at most PAIR_CHUNK pairs (one busy
    incoming event may exceed it alone); time O(candidate pairs)."""
    raw = ctx.raw
    rin = np.flatnonzero((ctx.dst >= 0) & (raw.amount >= p["minimum"]))
    rout = np.flatnonzero(ctx.src >= 0)
    ein = _Events.of(ctx.dst[rin], rin, raw.time[rin])
    eout = _Events.of(ctx.src[rout], rout, raw.time[rout])
    strength = np.zeros(ctx.n_accounts)
    empty = np.zeros(0, np.int64)
    if len(ein.row) == 0 or len(eout.row) == 0:
        return _Result(strength, empty, empty, empty, np.zeros(0))
    base = min(ein._base, eout._base)
    span = max(int(ein.time.max()), int(eout.time.max())) - base + 1 + p["window"]
    kout = _key(eout.account, eout.time, base, span)
    lo = np.searchsorted(kout, _key(ein.account, ein.time, base, span), side="left")
    hi = np.searchsorted(kout, _key(ein.account, ein.time + p["window"], base, span), side="left")
    lo, hi = lo.astype(np.int64), hi.astype(np.int64)
    total = np.cumsum(hi - lo)
    cuts = np.searchsorted(total, np.arange(PAIR_CHUNK, int(total[-1]), PAIR_CHUNK), "left")
    bounds = np.unique(np.concatenate([[0], cuts + 1, [len(lo)]]).clip(0, len(lo)))
    found_in, found_out = [empty], [empty]
    for first, last in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        k = np.repeat(np.arange(first, last, dtype=np.int64), hi[first:last] - lo[first:last])
        o = _ranges(lo[first:last], hi[first:last])
        a_in, a_out = raw.amount[ein.row[k]], raw.amount[eout.row[o]]
        # a transfer from the account to itself is not money passing through
        match = (np.abs(a_out - a_in) <= p["tolerance"] * a_in) & (ein.row[k] != eout.row[o])
        k, o = k[match], o[match]
        _, once = np.unique(ein.account[k], return_index=True)  # the first pair per account
        found_in.append(k[once])
        found_out.append(o[once])
    k, o = np.concatenate(found_in), np.concatenate(found_out)
    _, once = np.unique(ein.account[k], return_index=True)
    k, o = k[once], o[once]
    strength[ein.account[k]] = 1.0
    ex_acc = np.concatenate([ein.account[k], ein.account[k]])
    ex_row = np.concatenate([ein.row[k], eout.row[o]])
    order = np.argsort(ex_acc, kind="stable")
    return _Result(strength, ex_acc[order], ex_row[order], empty, np.zeros(0))


def _jurisdiction(ctx: _Context, p: Mapping[str, Any]) -> _Result:
    raw = ctx.raw
    out_hit = (ctx.src >= 0) & raw.target_country.isin(p["countries"])
    in_hit = (ctx.dst >= 0) & raw.source_country.isin(p["countries"])
    acc = np.concatenate([ctx.src[out_hit], ctx.dst[in_hit]]).astype(np.int64)
    row = np.concatenate([np.flatnonzero(out_hit), np.flatnonzero(in_hit)]).astype(np.int64)
    strength = np.zeros(ctx.n_accounts)
    strength[acc] = 1.0
    order = np.lexsort((row, acc))
    rows = _sorted_unique(row)
    return _Result(strength, acc[order], row[order], rows, np.ones(len(rows)))


def _round_amount(ctx: _Context, p: Mapping[str, Any]) -> _Result:
    x = ctx.raw.original_amount
    unit = p["unit"]
    fires = (x >= p["minimum"]) & (np.abs(x - unit * np.round(x / unit)) < 0.005)
    return _tx_rule(ctx, fires.astype(float))


def _night(ctx: _Context, p: Mapping[str, Any]) -> _Result:
    raw = ctx.raw
    second = (raw.time.astype(np.int64) + raw.utc_offset.astype(np.int64)) % DAY
    start, end = p["start"] * 3600, p["end"] * 3600
    if start < end:
        fires = (second >= start) & (second < end)
    else:
        fires = (second >= start) | (second < end)
    return _tx_rule(ctx, fires.astype(float))


def _failed(ctx: _Context, p: Mapping[str, Any]) -> _Result:
    fires = ctx.raw.status.isin(p["statuses"])
    return _tx_rule(ctx, fires.astype(float), saturate=p["saturate"])


def _type(ctx: _Context, p: Mapping[str, Any]) -> _Result:
    return _tx_rule(ctx, ctx.raw.kind.lookup(p["risk"]))


def _velocity(ctx: _Context, p: Mapping[str, Any]) -> _Result:
    raw = ctx.raw
    acc, row = ctx.side_events("both", np.ones(raw.n, dtype=bool))
    strength = np.zeros(ctx.n_accounts)
    empty = np.zeros(0, np.int64)
    if len(row) == 0:
        return _Result(strength, empty, empty, empty, np.zeros(0))
    t0 = int(raw.time.min())
    n_windows = (int(raw.time.max()) - t0) // p["window"] + 1
    bucket = (raw.time[row].astype(np.int64) - t0) // p["window"]
    cell = acc * n_windows + bucket
    cells, inverse, counts = np.unique(cell, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    if p["measure"] == "count":
        value = counts.astype(float)
    else:
        value = np.bincount(inverse, weights=raw.amount[row], minlength=len(cells))
    cell_acc = cells // n_windows
    if p["baseline"] == "mean":
        base = np.bincount(cell_acc, weights=value, minlength=ctx.n_accounts) / n_windows
    else:
        base = _median_with_zeros(cell_acc, value, ctx.n_accounts, n_windows)
    fire_cell = (counts >= p["minimum"]) & (value > p["factor"] * base[cell_acc])
    strength[cell_acc[fire_cell]] = 1.0
    firing = np.flatnonzero(fire_cell)
    first_cell = firing[np.unique(cell_acc[firing], return_index=True)[1]]
    pick = np.isin(inverse, first_cell)
    order = np.lexsort((raw.time[row[pick]], acc[pick]))
    return _Result(strength, acc[pick][order], row[pick][order], empty, np.zeros(0))


def _median_with_zeros(
    account: IntArray, value: FloatArray, n_accounts: int, n_windows: int
) -> FloatArray:
    """Per account the median of ``n_windows`` values: the given (account, value) cells (one per
    non-empty window) and zeros for the rest."""
    order = np.lexsort((value, account))
    account, value = account[order], value[order]
    nonzero = np.bincount(account, minlength=n_accounts)
    zeros = n_windows - nonzero
    first = np.concatenate([[0], np.cumsum(nonzero)[:-1]])

    def at(position: int) -> FloatArray:
        k = position - zeros  # index among the account's sorted non-empty values
        idx = np.clip(first + k, 0, max(len(value) - 1, 0))
        got = value[idx] if len(value) else np.zeros(n_accounts)
        out: FloatArray = np.where(k >= 0, got, 0.0)
        return out

    result: FloatArray = (at((n_windows - 1) // 2) + at(n_windows // 2)) / 2
    return result


_EVALUATORS: dict[str, Callable[[_Context, Mapping[str, Any]], _Result]] = {
    "threshold": _threshold,
    "structuring": _structuring,
    "pass_through": _pass_through,
    "fan_in": lambda ctx, p: _fan(ctx, p, incoming=True),
    "fan_out": lambda ctx, p: _fan(ctx, p, incoming=False),
    "jurisdiction": _jurisdiction,
    "round_amount": _round_amount,
    "night": _night,
    "velocity": _velocity,
    "failed": _failed,
    "type": _type,
}
