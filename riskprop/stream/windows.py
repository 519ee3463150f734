"""Windowed rules in real time: structuring, fan-in, fan-out and pass-through judged as each
transaction arrives.

The batch engine (:mod:`riskprop.scoring.rules`) flags an *account* with a windowed rule when
some window of its transactions satisfies the rule; it raises no per-transaction alert for these
rules. Here the same rules are judged incrementally: :class:`Windows` holds, per own account,
only what each rule needs from the last ``window`` seconds, and :meth:`Windows.update` takes a
batch of newly stored transactions and returns a :class:`WindowAlert` for each (transaction,
account, rule) that fires.

Events, as in the batch engine. A transaction is an *outgoing* event of its source account when
the source bank is this bank, an *incoming* event of its target account when the target bank
is; a transaction between two own accounts is an event of each, a self-transfer two events of
one account. Status is not looked at: a failed or reversed transaction counts, as in the batch
rules. Amounts are ``amount`` (reporting currency) unless a threshold is given per currency
(then ``original_amount`` in that currency). Windows are half-open: ``t`` lies within
``window`` of an earlier ``t0`` when ``0 <= t - t0 < window``.

Account ``a``'s window **holds** at one of its events ``j`` (time ``t``) when, over ``a``'s
events that arrived up to and including ``j``:

- ``structuring``: at least ``count`` *near* events (of ``kinds``, on ``side``, threshold *
  (1 - margin) <= amount < threshold) have times in ``(t - window, t]``;
- ``fan_in`` / ``fan_out``: the incoming (outgoing) events with times in ``(t - window, t]``
  come from (go to) at least ``count`` distinct counterparties, a counterparty being the pair
  (bank, account) on the other side.

A structuring or fan rule **fires on** ``j`` for ``a`` when the window holds at ``j`` and did
not hold at ``a``'s previous event of the rule: the transaction that *makes* the window hold
(the ``count``-th near transaction within the window, the ``count``-th distinct counterparty).
The further transactions of the same episode raise no alert; the account's next alert for the
rule comes after its window has stopped holding (the period-close score flags the account in
any case). ``pass_through`` fires on ``j`` for ``a`` when ``j`` completes a pair of ``a``'s
events from two transactions, an incoming ``i`` with amount >= ``minimum`` and an outgoing
``o`` with ``0 <= t_o - t_i < window`` and ``|amount_o - amount_i| <= tolerance * amount_i``:
``j`` is the pair's later arrival (the outgoing, or the incoming when both have the same time
and the outgoing came first); each completing transaction is an alert.

The level is the one the batch engine gives the rule at full strength (``weight * 1``: a
windowed rule's strength is 1 when it fires). At most one alert per (transaction, account,
rule).

**Invariant** (the contract; ``tests/stream/test_windows.py``): when transactions arrive in time
order (equal times in any order, in batches of any size), the set of accounts a rule fires on
equals the set the batch engine flags with that rule over the same transactions. The batch
engine flags ``a`` when at some event ``j`` of ``a``, in (time, row) order, the window holds
counting the events before it; in time-ordered arrival the events that arrived before ``j`` are
those of earlier times and some of equal time, and the last arrival of each group of equal
times sees them all, as the group's last row does in the batch; and the first event at which a
window holds always fires.

State and cost, per own account: the times of the last ``count`` near events (structuring);
counterparty -> time of its last event, oldest first, and whether the window held (fan);
(time, amount) of the incoming events with amount >= ``minimum`` (pass-through) and the amounts
of the outgoing events at the current time (the only ones a later incoming can pair with).
Entries leave when they fall out of the window: on the account's next event, and by a sweep of
all accounts every quarter window, so the state holds at most the events of the last 1.25
windows. A transaction costs O(1) amortised per rule, pass-through O(incoming events of the
account held). Python dictionaries and deques, not numpy: an event's verdict depends on the
events before it in the same batch, and per event the work is a few dictionary operations.

Out of order and repeats. The *clock* is the latest transaction time seen. A transaction older
than the clock is **late**: more than a rule's ``window`` late it cannot lie in any window still
to come and that rule ignores it; otherwise it is judged against the window as it stands and
held as if it arrived at the clock (its *effective time*; the held entries stay in time order),
so it may count up to its lateness longer than its own time allows. A late transaction may thus
raise an alert the batch engine would not, or miss one; the period-close batch score remains the
authoritative score. A transaction id already held (a re-delivery, or a batch retried after its
store transaction rolled back) is skipped: no (transaction, account, rule) alerts twice.

On start, :meth:`Windows.restored` replays the store's transactions of the last two longest
windows in time order (no alerts): the state an in-order consumer would have built. Two
windows, not one: whether an account's window held at its last event (the episode, above)
depends on the window before that event.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from riskprop.errors import ConfigError
from riskprop.scoring.rules import Rule, RuleSet

# the batch engine's own parser: a window or a threshold means here what it means there
from riskprop.scoring.rules import _params as rule_params
from riskprop.stream.alerts import Alert
from riskprop.stream.records import Transaction
from riskprop.stream.store import PeriodStore

WINDOWED: Final = ("structuring", "fan_in", "fan_out", "pass_through")
#: transactions replayed per update call when the state is rebuilt
_REPLAY_BATCH: Final = 5_000


@dataclass(frozen=True)
class WindowAlert:
    """Windowed rule ``rule`` fired for own ``account`` on transaction ``tx_id`` (at its
    ``time``), at ``level`` (the batch engine's level of the rule's weight)."""

    tx_id: str
    time: int
    account: str
    rule: str
    level: str


class _Judge(Protocol):
    name: str
    level: str
    window: int
    sides: tuple[bool, bool]  # looks at (outgoing, incoming) events

    def judge(self, tx: Transaction, now: int, src: str | None, dst: str | None) -> list[str]:
        """Add the transaction's events at effective time ``now``; the accounts it fires for."""

    def sweep(self, horizon: int) -> None:
        """Forget what lies at or before ``horizon`` (= clock - window)."""

    def size(self) -> int:
        """Entries held."""


_NONE: Final[list[str]] = []  # the common answer; never mutated


class _Structuring:
    """Per account the effective times of its last ``count`` near events (oldest first): the
    rule holds at ``now`` iff ``count`` are held and the oldest is > now - window."""

    def __init__(self, name: str, level: str, p: dict[str, Any]) -> None:
        self.name, self.level, self.window = name, level, int(p["window"])
        self.count = int(p["count"])
        amount = p["amount"]
        self.limit: float | None = amount if isinstance(amount, float) else None
        self.per_currency: dict[str, float] = {} if isinstance(amount, float) else amount
        self.low = 1 - p["margin"]  # as the batch engine writes it: limit * (1 - margin)
        self.kinds = frozenset(p["kinds"])
        self.source = p["side"] in ("source", "both")
        self.target = p["side"] in ("target", "both")
        self.sides = (self.source, self.target)
        self.near: dict[str, deque[int]] = {}

    def judge(self, tx: Transaction, now: int, src: str | None, dst: str | None) -> list[str]:
        if self.kinds and tx.kind not in self.kinds:
            return _NONE
        if self.limit is not None:
            limit, x = self.limit, tx.amount
        else:
            limit, x = self.per_currency.get(tx.currency, math.inf), tx.original_amount
        if not limit * self.low <= x < limit:
            return _NONE
        fired: list[str] = []
        count, window = self.count, self.window
        for account in (src if self.source else None, dst if self.target else None):
            if account is None:
                continue
            times = self.near.get(account)
            if times is None:
                times = self.near[account] = deque(maxlen=count)
            # held at the previous event: did the window hold then? (a self-transfer's second
            # event finds its first one's answer: one alert)
            before = len(times) == count and times[-1] - times[0] < window
            times.append(now)
            if not before and len(times) == count and now - times[0] < window:
                fired.append(account)
        return fired

    def sweep(self, horizon: int) -> None:
        for account in [a for a, times in self.near.items() if times[-1] <= horizon]:
            del self.near[account]

    def size(self) -> int:
        return sum(len(times) for times in self.near.values())


class _Counterparties:
    """One account's counterparties -> effective time of their last event, oldest first;
    ``bound`` <= every time held (so nothing has expired while now - bound < window) and
    ``holding``: whether the window held at the account's last event."""

    __slots__ = ("bound", "holding", "times")

    def __init__(self, now: int) -> None:
        # a plain dict: re-inserting a key moves it to the end; it is small, so finding the
        # first live entry after deletions at the front is cheap (measured faster than
        # OrderedDict)
        self.times: dict[tuple[str, str], int] = {}
        self.bound = now
        self.holding = False

    def drop(self, horizon: int) -> None:
        """Forget the counterparties last seen at or before ``horizon``."""
        times = self.times
        while times:
            oldest = next(iter(times))
            if times[oldest] > horizon:
                self.bound = times[oldest]
                return
            del times[oldest]


class _Fan:
    """Per account its counterparties (:class:`_Counterparties`): the window holds at ``now``
    iff at least ``count`` remain after dropping those last seen <= now - window."""

    def __init__(self, name: str, level: str, p: dict[str, Any], incoming: bool) -> None:
        self.name, self.level, self.window = name, level, int(p["window"])
        self.count = int(p["count"])
        self.incoming = incoming
        self.sides = (not incoming, incoming)
        self.last: dict[str, _Counterparties] = {}

    def judge(self, tx: Transaction, now: int, src: str | None, dst: str | None) -> list[str]:
        if self.incoming:
            account, other = dst, (tx.source_bank, tx.source)
        else:
            account, other = src, (tx.target_bank, tx.target)
        if account is None:
            return _NONE
        entry = self.last.get(account)
        if entry is None:
            entry = self.last[account] = _Counterparties(now)
        times = entry.times
        times.pop(other, None)  # re-inserted at the end: the dict stays in time order
        times[other] = now
        # dropping can only lower the count: needed only when it could decide the answer
        if len(times) >= self.count and now - entry.bound >= self.window:
            entry.drop(now - self.window)
        holds = len(times) >= self.count
        fires = holds and not entry.holding
        entry.holding = holds
        return [account] if fires else _NONE

    def sweep(self, horizon: int) -> None:
        for account, entry in list(self.last.items()):
            entry.drop(horizon)
            if not entry.times:
                del self.last[account]

    def size(self) -> int:
        return sum(len(entry.times) for entry in self.last.values())


class _PassThrough:
    """Per account the (effective time, amount) of its incoming events with amount >= minimum,
    oldest first, and the amounts of its outgoing events at the latest effective time (in
    arrival order an incoming pairs only with an outgoing of its own time that came first)."""

    def __init__(self, name: str, level: str, p: dict[str, Any]) -> None:
        self.name, self.level, self.window = name, level, int(p["window"])
        self.tolerance, self.minimum = float(p["tolerance"]), float(p["minimum"])
        self.sides = (True, True)
        self.incoming: dict[str, deque[tuple[int, float]]] = {}
        self.tie_time: int | None = None
        self.tie_out: dict[str, list[float]] = {}

    def judge(self, tx: Transaction, now: int, src: str | None, dst: str | None) -> list[str]:
        x, tolerance = tx.amount, self.tolerance
        fired: list[str] = []
        # both events are judged before either is held: a self-transfer never pairs with itself
        if src is not None and (held := self.incoming.get(src)):
            horizon = now - self.window
            while held and held[0][0] <= horizon:
                held.popleft()
            if any(abs(x - a_in) <= tolerance * a_in for _, a_in in held):
                fired.append(src)
        if dst is not None and x >= self.minimum:
            outs = self.tie_out.get(dst) if self.tie_time == now else None
            if outs and dst not in fired and any(abs(a - x) <= tolerance * x for a in outs):
                fired.append(dst)
            held = self.incoming.get(dst)
            if held is None:
                held = self.incoming[dst] = deque()
            held.append((now, x))
        if src is not None:
            if self.tie_time != now:
                self.tie_time = now
                self.tie_out.clear()
            outs = self.tie_out.get(src)
            if outs is None:
                self.tie_out[src] = [x]
            else:
                outs.append(x)
        return fired or _NONE

    def sweep(self, horizon: int) -> None:
        for account, held in list(self.incoming.items()):
            while held and held[0][0] <= horizon:
                held.popleft()
            if not held:
                del self.incoming[account]
        if self.tie_time is not None and self.tie_time <= horizon:
            self.tie_out.clear()

    def size(self) -> int:
        return sum(len(h) for h in self.incoming.values()) + sum(map(len, self.tie_out.values()))


def _judge(rule: Rule, level: str) -> _Judge:
    p = rule_params(rule.kind, rule.params)
    if rule.kind == "structuring":
        return _Structuring(rule.name, level, p)
    if rule.kind == "pass_through":
        return _PassThrough(rule.name, level, p)
    return _Fan(rule.name, level, p, incoming=rule.kind == "fan_in")


class Windows:
    """The windowed rules of ``rules`` (others ignored) for ``bank``'s own accounts; see the
    module docstring for what fires and the invariant. Not thread-safe: one consumer."""

    def __init__(self, bank: str, rules: RuleSet) -> None:
        self.bank, self.rules = bank, rules
        minimums = [level.minimum for level in rules.levels]
        self._judges: list[_Judge] = []
        for rule in rules.rules:
            if rule.kind in WINDOWED:
                # the batch engine's level of weight * strength 1 (searchsorted, side right)
                level = rules.levels[max(bisect.bisect_right(minimums, rule.weight) - 1, 0)]
                self._judges.append(_judge(rule, level.name))
        self.longest = max((j.window for j in self._judges), default=0)
        self.clock: int | None = None
        self._held: dict[str, int] = {}  # id -> effective time of the transactions held
        self._swept = [0] * (len(self._judges) + 1)  # clock at each judge's last sweep, ids'

    def update(self, transactions: Sequence[Transaction]) -> list[WindowAlert]:
        """Judge and hold ``transactions`` in order; the alerts in transaction order, then rule
        order, then account (source side first)."""
        out: list[WindowAlert] = []
        if not self._judges:
            return out
        bank, held, longest = self.bank, self._held, self.longest
        plan = [(j.window, *j.sides, j.judge, j.name, j.level) for j in self._judges]
        clock = self.clock
        for tx in transactions:
            tx_id = tx.tx_id
            if tx_id in held:
                continue
            t = tx.time
            if clock is None or t > clock:
                clock = t
            late = clock - t
            if late >= longest:
                continue
            held[tx_id] = clock
            src = tx.source if tx.source_bank == bank else None
            dst = tx.target if tx.target_bank == bank else None
            for window, outgoing, incoming, judge, name, level in plan:
                if late < window and (
                    (outgoing and src is not None) or (incoming and dst is not None)
                ):
                    for account in judge(tx, clock, src, dst):
                        out.append(WindowAlert(tx_id, t, account, name, level))
        self.clock = clock
        if clock is not None:
            self._forget(clock)
        return out

    def _forget(self, clock: int) -> None:
        """Every quarter window: each judge forgets what has left its window, and the ids of
        transactions beyond the longest window are forgotten."""
        for k, judge in enumerate(self._judges):
            if clock - self._swept[k] >= max(judge.window // 4, 1):
                judge.sweep(clock - judge.window)
                self._swept[k] = clock
        if clock - self._swept[-1] >= max(self.longest // 4, 1):
            horizon = clock - self.longest
            self._held = {k: t for k, t in self._held.items() if t > horizon}
            self._swept[-1] = clock

    def restore(self, transactions: Iterable[Transaction]) -> None:
        """Hold ``transactions`` (in time order for the in-order state) without alerting."""
        batch: list[Transaction] = []
        for tx in transactions:
            batch.append(tx)
            if len(batch) == _REPLAY_BATCH:
                self.update(batch)
                batch.clear()
        self.update(batch)

    @classmethod
    def restored(cls, bank: str, rules: RuleSet, store: PeriodStore) -> Windows:
        """The state rebuilt from ``store``: its transactions of the last two longest windows
        before its latest transaction time, replayed in time order."""
        windows = cls(bank, rules)
        latest = store.latest_time()
        if latest is not None and windows.longest:
            windows.restore(store.transactions_since(latest - 2 * windows.longest + 1))
        return windows

    def check_bank(self, bank: str) -> None:
        """ConfigError unless these windows judge ``bank``'s accounts."""
        if bank != self.bank:
            raise ConfigError(f"the windowed rules are kept for bank {self.bank!r}, not {bank!r}")

    def size(self) -> int:
        """Entries held over all rules (transaction ids not counted)."""
        return sum(judge.size() for judge in self._judges)

    def merge(self, transactions: Sequence[Transaction], found: Sequence[Alert]) -> list[Alert]:
        """:meth:`update` with ``transactions``, its alerts joined with ``found`` (the
        transaction-level alerts of the same transactions, :func:`riskprop.stream.alerts.alerts`)
        into one :class:`Alert` per transaction, in transaction order: the rules of both in rule
        order, each once, the highest level and its action; accounts as in ``found`` (the own
        accounts the transaction touches)."""
        windowed = self.update(transactions)
        if not windowed:
            return list(found)
        rule_rank = {rule.name: k for k, rule in enumerate(self.rules.rules)}
        level_rank = {level.name: k for k, level in enumerate(self.rules.levels)}
        extra: dict[str, set[tuple[str, str]]] = {}
        for w in windowed:
            extra.setdefault(w.tx_id, set()).add((w.rule, w.level))
        given = {a.tx_id: a for a in found}
        out: list[Alert] = []
        for tx in transactions:
            alert, more = given.pop(tx.tx_id, None), extra.pop(tx.tx_id, None)
            if more is None:
                if alert is not None:
                    out.append(alert)
                continue
            pairs = sorted(more.union(alert.rules if alert else ()), key=lambda p: rule_rank[p[0]])
            top = self.rules.levels[max(level_rank[level] for _, level in pairs)]
            if alert is not None:
                accounts = alert.accounts
            else:
                sides = ((tx.source, tx.source_bank), (tx.target, tx.target_bank))
                accounts = tuple(dict.fromkeys(a for a, b in sides if b == self.bank))
            out.append(Alert(tx.tx_id, tx.time, accounts, tuple(pairs), top.name, top.action))
        return out
