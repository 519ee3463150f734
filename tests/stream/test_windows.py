"""Windowed rules in real time: for records arriving in time order, the accounts each windowed
rule fires on equal the accounts the batch engine flags with it over the same file (generated
files and hand-made edge cases); out of order nothing crashes and nothing alerts twice."""

from __future__ import annotations

import json
import random
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riskprop.errors import ConfigError
from riskprop.lab.rawgen import generate_raw
from riskprop.scoring.raw import RISKPROP_HEADER, read_raw
from riskprop.scoring.rules import Rule, RuleSet, default_rules_path, load_rules, score
from riskprop.stream.alerts import alerts, outbox
from riskprop.stream.records import RecordRules, Transaction, parse
from riskprop.stream.store import PeriodStore
from riskprop.stream.windows import WINDOWED, WindowAlert, Windows

DAY = 86_400
BASE = 1_767_225_600  # 2026-01-01T00:00:00Z
ALICE = RecordRules(bank="alice")


def record(
    tx_id: str,
    t: int,
    source: str,
    target: str,
    amount: float,
    *,
    source_bank: str = "alice",
    target_bank: str = "bob",
    kind: str = "wire",
    currency: str = "USD",
    status: str = "completed",
) -> bytes:
    """One CSV record in riskprop's raw layout, ``t`` seconds after BASE."""
    day, second = divmod(t, DAY)
    stamp = f"2026-01-{1 + day:02d}T{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}Z"
    fields = [tx_id, stamp, source, source_bank, target, target_bank, f"{amount:.2f}", currency]
    fields += [kind, "online", "US", "GB", status]
    return ",".join(fields).encode()


def transactions(records: Sequence[bytes]) -> list[Transaction]:
    out = [parse(r, ALICE) for r in records]
    assert all(isinstance(x, Transaction) for x in out), out
    return [x for x in out if isinstance(x, Transaction)]


def batch_flagged(path: Path, rules: RuleSet, bank: str = "alice") -> dict[str, set[str]]:
    """Per windowed rule the accounts the batch engine flags with it, reading ``path``."""
    scored = score(read_raw(path), bank, rules)
    return {
        rule.name: {str(a) for a in scored.accounts[scored.contributions[rule.name] > 0]}
        for rule in rules.rules
        if rule.kind in WINDOWED
    }


def batch_of_records(records: Sequence[bytes], folder: Path, rules: RuleSet) -> dict[str, set[str]]:
    path = folder / "raw.csv"
    path.write_bytes(b"\n".join([",".join(RISKPROP_HEADER).encode(), *records]) + b"\n")
    return batch_flagged(path, rules)


def fired(found: Sequence[WindowAlert], rules: RuleSet) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {r.name: set() for r in rules.rules if r.kind in WINDOWED}
    for alert in found:
        out[alert.rule].add(alert.account)
    return out


def stream(txs: Sequence[Transaction], rules: RuleSet, size: int) -> list[WindowAlert]:
    windows = Windows("alice", rules)
    found: list[WindowAlert] = []
    for i in range(0, len(txs), size):
        found += windows.update(txs[i : i + size])
    return found


def rule(name: str, kind: str, weight: float, **params: object) -> Rule:
    return Rule(name, kind, weight, params)


SMALL = RuleSet(
    Path("<small>"),
    (
        rule("big", "threshold", 0.5, amount=10_000),
        rule(
            "structuring",
            "structuring",
            0.7,
            amount=10_000,
            margin=0.1,
            count=3,
            window=100,
            kinds=["cash"],
        ),
        rule(
            "eur_structuring",
            "structuring",
            0.9,
            amount={"EUR": 5000},
            margin=0.2,
            count=2,
            window=50,
            side="source",
        ),
        rule("pass_through", "pass_through", 0.4, window=100, tolerance=0.1, minimum=1000),
        rule("fan_in", "fan_in", 0.3, count=3, window=100),
        rule("fan_out", "fan_out", 0.2, count=3, window=100),
        rule("velocity", "velocity", 0.3, window=100, factor=2),
    ),
)


def check_contract(records: Sequence[bytes], folder: Path, rules: RuleSet = SMALL) -> None:
    """Streamed one by one and all at once, the firing accounts equal the batch engine's."""
    expected = batch_of_records(records, folder, rules)
    txs = transactions(records)
    assert [tx.time for tx in txs] == sorted(tx.time for tx in txs)  # arriving in time order
    for size in (1, 2, len(txs)):
        assert fired(stream(txs, rules, size), rules) == expected


# ---------------------------------------------------------------------------------------------
# hand-made edge cases: each checked against the batch engine, and for where the alert falls


def test_structuring_fires_on_the_transaction_that_makes_the_window_hold(
    tmp_path: Path,
) -> None:
    near = {"kind": "cash"}
    records = [
        record("t1", 0, "a", "x", 9500, **near),
        record("t2", 0, "c", "x", 9500, **near),
        record("t3", 40, "a", "x", 9000, **near),  # 9000 = 10000 * (1 - 0.1): near
        record("t4", 50, "c", "x", 9999.99, **near),
        record("t5", 60, "a", "x", 8999.99, **near),  # below the band: not near
        record("t6", 70, "a", "x", 9500),  # a wire: not of the rule's kinds
        record("t7", 99, "a", "x", 9100, **near),  # 99 - 0 < 100: the third near one in window
        record("t8", 100, "c", "x", 9100, **near),  # 100 - 0 = 100: t2 has left c's window
        record("t9", 120, "a", "x", 10_000, **near),  # at the threshold: not near
        record("t10", 130, "a", "x", 9200, **near),  # t3, t7, t10 within 100: the same episode
        record("t11", 300, "a", "x", 9200, **near),  # the window no longer holds...
        record("t12", 310, "a", "x", 9200, **near),
        record("t13", 320, "a", "x", 9200, **near),  # ...and holds again: a new episode
    ]
    check_contract(records, tmp_path)
    found = [(w.tx_id, w.account, w.level) for w in stream(transactions(records), SMALL, 1)]
    assert found == [("t7", "a", "HIGH"), ("t13", "a", "HIGH")]


def test_equal_timestamps_in_any_arrival_order(tmp_path: Path) -> None:
    tie = [
        record("s1", 10, "a", "x", 9500, kind="cash"),
        record("s2", 10, "a", "x", 9500, kind="cash"),
        record("s3", 10, "a", "y", 9500, kind="cash"),
        record("f1", 20, "p", "b", 50, source_bank="bob", target_bank="alice"),
        record("f2", 20, "q", "b", 50, source_bank="bob", target_bank="alice"),
        record("f3", 20, "r", "b", 50, source_bank="carol", target_bank="alice"),
        record("p1", 30, "c", "x", 2000),  # out before in, same second: still a pair
        record("p2", 30, "x", "c", 2100, source_bank="bob", target_bank="alice"),
    ]
    rng = random.Random(4)
    for _ in range(6):
        shuffled = sorted(rng.sample(tie, len(tie)), key=lambda r: r.split(b",")[1])
        check_contract(shuffled, tmp_path)
    found = stream(transactions(tie), SMALL, 1)
    assert {(w.tx_id, w.rule) for w in found} == {
        ("s3", "structuring"),
        ("f3", "fan_in"),
        ("p2", "pass_through"),  # the pair's later arrival: here the incoming
    }


def test_fan_counts_distinct_counterparties_by_bank_and_account(tmp_path: Path) -> None:
    def pay(i: str, t: int, source: str, bank: str) -> bytes:
        return record(i, t, source, "a", 10, source_bank=bank, target_bank="alice")

    records = [
        pay("i1", 0, "p", "bob"),
        pay("i2", 10, "p", "bob"),  # the same counterparty again
        pay("i3", 20, "q", "bob"),
        pay("i4", 30, "q", "carol"),  # the same account name at another bank: a third one
        pay("i5", 40, "r", "bob"),  # a fourth, in the same episode: no alert
        pay("i6", 200, "p", "bob"),  # the window no longer holds...
        pay("i7", 210, "q", "bob"),
        pay("i8", 220, "r", "bob"),  # ...and holds again: a new episode
        record("o1", 0, "b", "p", 10),
        record("o2", 1, "b", "q", 10),
        record("o3", 100, "b", "r", 10),  # 100 - 0 = 100: o1 has left the window
        record("o4", 102, "b", "p", 10),
        record("o5", 103, "b", "q", 10, status="failed"),  # failed counts, as in the batch rules
    ]
    records.sort(key=lambda r: r.split(b",")[1])
    check_contract(records, tmp_path)
    found = stream(transactions(records), SMALL, 1)
    assert [(w.tx_id, w.account, w.rule) for w in found] == [
        ("i4", "a", "fan_in"),
        ("o5", "b", "fan_out"),
        ("i8", "a", "fan_in"),
    ]


def test_pass_through_window_tolerance_and_minimum(tmp_path: Path) -> None:
    def receive(i: str, t: int, account: str, amount: float) -> bytes:
        return record(i, t, "x", account, amount, source_bank="bob", target_bank="alice")

    records = [
        receive("r1", 0, "a", 5000),
        receive("r2", 0, "b", 5000),
        receive("r3", 0, "c", 900),  # below the minimum
        receive("r4", 0, "d", 5000),
        record("s1", 99, "a", "y", 5500),  # |5500 - 5000| <= 500, 99 s later: pass-through
        record("s2", 100, "b", "y", 5000),  # 100 s later: outside the window
        record("s3", 50, "c", "y", 900),
        record("s4", 50, "d", "y", 5500.01),  # just outside the tolerance
    ]
    records.sort(key=lambda r: r.split(b",")[1])
    check_contract(records, tmp_path)
    found = stream(transactions(records), SMALL, 1)
    assert [(w.tx_id, w.account, w.rule, w.level) for w in found] == [
        ("s1", "a", "pass_through", "MEDIUM")
    ]


def test_both_sides_own_and_self_transfers(tmp_path: Path) -> None:
    own = {"target_bank": "alice"}
    records = [
        record("b1", 0, "a", "b", 9500, kind="cash", **own),  # near for a and for b
        record("b2", 5, "a", "b", 9500, kind="cash", **own),
        record("b3", 6, "a", "c", 9600, kind="cash", **own),  # a's third near one
        record("m1", 10, "e", "e", 9500, kind="cash", **own),  # self-transfer: two events of e
        record("m2", 11, "e", "f", 9500, kind="cash", **own),  # so e has three near events
        record("z1", 20, "g", "g", 3000, **own),  # a self-transfer does not pass through itself
        record("z2", 30, "h", "h", 3000, **own),  # ...but pairs with a later outgoing
        record("z3", 31, "h", "y", 3100),
        record("e1", 40, "k", "l", 100, **own),  # k pays three own accounts: fan-out of k
        record("e2", 41, "k", "m", 100, **own),
        record("e3", 42, "k", "n", 100, **own),
        record("u1", 60, "q", "q", 6000, currency="EUR", **own),  # source side only: one event
        record("u2", 61, "q", "q", 4500, currency="EUR", **own),  # 4000 <= 4500 < 5000: near
        record("u3", 62, "q", "r", 4000, currency="EUR"),  # 5000 * (1 - 0.2): q's second near one
    ]
    check_contract(records, tmp_path)
    found = stream(transactions(records), SMALL, 1)
    assert sorted({(w.tx_id, w.account, w.rule) for w in found}) == sorted(
        [
            ("b3", "a", "structuring"),
            ("m2", "e", "structuring"),
            ("m2", "e", "pass_through"),  # the self-transfer's incoming half, passed on
            ("z3", "h", "pass_through"),
            ("e3", "k", "fan_out"),
            ("u3", "q", "eur_structuring"),
        ]
    )
    assert len(found) == 6  # one alert for e's self-transfer, not one per event


@st.composite
def streams(draw: st.DrawFn) -> list[bytes]:
    """Small streams with many equal times, own accounts on either or both sides, near and
    matching amounts, failed transactions; sorted by time, equal times in drawn order."""
    n = draw(st.integers(1, 40))
    out = []
    for i in range(n):
        t = draw(st.integers(0, 40)) * 10  # windows of 50 and 100: exact edges and ties
        source, target = draw(st.sampled_from("abcxy")), draw(st.sampled_from("abcxy"))
        banks = [
            "alice" if source in "abc" else draw(st.sampled_from(["bob", "carol"])),
            "alice" if target in "abc" else draw(st.sampled_from(["bob", "carol"])),
        ]
        if "alice" not in banks:
            banks[0], source = "alice", "a"
        amount = draw(st.sampled_from([8900.0, 9000.0, 9500.0, 10_000.0, 1000.0, 1050.0, 4500.0]))
        out.append(
            record(
                f"h{i}",
                t,
                source,
                target,
                amount,
                source_bank=banks[0],
                target_bank=banks[1],
                kind=draw(st.sampled_from(["cash", "wire"])),
                currency=draw(st.sampled_from(["USD", "USD", "EUR"])),
                status=draw(st.sampled_from(["completed", "completed", "failed"])),
            )
        )
    return sorted(out, key=lambda r: r.split(b",")[1])


@settings(max_examples=150, deadline=None)
@given(streams(), st.integers(1, 5))
def test_random_streams_fire_on_the_batch_engines_accounts(records: list[bytes], size: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        expected = batch_of_records(records, Path(folder), SMALL)
    assert fired(stream(transactions(records), SMALL, size), SMALL) == expected


# ---------------------------------------------------------------------------------------------
# generated files


TIGHT = RuleSet(
    Path("<tight>"),
    (
        rule("structuring", "structuring", 0.7, amount=500, margin=0.5, count=2, window="1d"),
        rule("pass_through", "pass_through", 0.4, window="12h", tolerance=0.05, minimum=100),
        rule("fan_in", "fan_in", 0.3, count=4, window="1d"),
        rule("fan_out", "fan_out", 0.3, count=4, window="2d"),
    ),
)


def generated(folder: Path, seed: int) -> tuple[Path, list[Transaction]]:
    generate_raw(folder, banks=["alice", "bob"], accounts=900, transactions=6000, days=5, seed=seed)
    path = folder / "alice" / "raw.csv"
    return path, transactions(path.read_bytes().splitlines()[1:])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_generated_files_fire_on_the_batch_engines_accounts(tmp_path: Path, seed: int) -> None:
    path, txs = generated(tmp_path / "gen", seed)
    default = load_rules(default_rules_path())
    for rules in (default, TIGHT):
        expected = batch_flagged(path, rules)
        assert all(expected.values()), expected  # every windowed rule flags someone
        found = stream(txs, rules, 97)
        assert fired(found, rules) == expected
        assert len({(w.tx_id, w.account, w.rule) for w in found}) == len(found)
    levels = {w.rule: w.level for w in stream(txs, default, 500)}
    assert levels == {
        "cash_structuring": "HIGH",
        "pass_through": "MEDIUM",
        "fan_in": "MEDIUM",
        "fan_out": "MEDIUM",
    }


def test_out_of_order_and_repeated_arrivals_never_alert_twice(tmp_path: Path) -> None:
    _, txs = generated(tmp_path / "gen", 3)
    rng = random.Random(0)
    nearly = [tx for _, tx in sorted((i + rng.uniform(0, 300), tx) for i, tx in enumerate(txs))]
    shuffled = rng.sample(txs, len(txs))
    for order in (nearly, shuffled):
        windows = Windows("alice", TIGHT)
        found: list[WindowAlert] = []
        for i in range(0, len(order), 50):
            found += windows.update(order[i : i + 50])
            found += windows.update(order[max(i - 25, 0) : i + 50])  # re-delivered, overlapping
        keys = [(w.tx_id, w.account, w.rule) for w in found]
        assert found and len(set(keys)) == len(keys)
        assert windows.update(order[-300:]) == []
    # merged into one alert per transaction: each windowed rule once per transaction, ever
    windows = Windows("alice", TIGHT)
    merged: list[tuple[str, str]] = []
    for i in range(0, len(shuffled), 50):
        for batch in (shuffled[i : i + 50], shuffled[max(i - 25, 0) : i + 50]):
            out = windows.merge(batch, [])
            assert len({a.tx_id for a in out}) == len(out)
            merged += [(a.tx_id, r) for a in out for r, _ in a.rules]
    assert merged and len(set(merged)) == len(merged)
    # a late transaction more than a window late is ignored by that rule
    windows = Windows("alice", SMALL)
    windows.update(transactions([record("now", 1000, "a", "x", 10)]))
    late = [record(f"l{i}", 900, "a", "x", 9500, kind="cash") for i in range(5)]
    assert windows.update(transactions(late)) == []
    assert windows.size() == 2  # "now" as a's fan-out counterparty and tied outgoing only
    one_late = [record(f"k{i}", 950, "b", "x", 9500, kind="cash") for i in range(3)]
    assert {w.rule for w in windows.update(transactions(one_late))} == {"structuring"}


def test_the_state_is_bounded_by_the_window(tmp_path: Path) -> None:
    _, txs = generated(tmp_path / "gen", 0)
    windows = Windows("alice", TIGHT)
    windows.update(txs)
    held = windows.size()
    assert held > 1000
    later = txs[-1].time + 3 * DAY  # past every window, and past a sweep
    last = transactions([record("last", later - BASE, "a", "x", 10)])
    windows.update(last)
    assert windows.size() == 2  # "last" only: a fan-out counterparty and a tied outgoing
    assert windows.update(txs[:10]) == []  # too late for every rule


def test_rebuilt_from_the_store_it_continues_as_if_never_stopped(tmp_path: Path) -> None:
    _, txs = generated(tmp_path / "gen", 1)
    half = len(txs) // 2
    store = PeriodStore(tmp_path / "s.db", origin=BASE, length=DAY)
    for i in range(0, half, 200):
        store.put([(tx.tx_id, tx, b"") for tx in txs[i : min(i + 200, half)]])
    whole = Windows("alice", TIGHT)
    whole.update(txs[:half])
    expected = whole.update(txs[half:])
    restored = Windows.restored("alice", TIGHT, store)
    assert restored.clock == txs[half - 1].time
    assert restored.update(txs[half:]) == expected
    assert expected
    empty = Windows.restored("alice", TIGHT, PeriodStore(tmp_path / "e.db", origin=0, length=DAY))
    assert empty.clock is None and empty.size() == 0


def test_outbox_merges_windowed_and_transaction_level_alerts(tmp_path: Path) -> None:
    _, txs = generated(tmp_path / "gen", 2)
    rules = load_rules(default_rules_path())
    store = PeriodStore(tmp_path / "s.db", origin=BASE, length=DAY)
    make = outbox("alice", rules, windows=Windows("alice", rules))
    messages: list[tuple[str, bytes]] = []
    for i in range(0, len(txs), 97):
        batch = txs[i : i + 97]
        messages += store.put([(tx.tx_id, tx, b"") for tx in batch], make).outbox
    messages += store.put([(tx.tx_id, tx, b"") for tx in txs[:97]], make).outbox  # duplicates

    # expected: per transaction the union of its transaction-level and windowed (rule, level)
    expected: dict[str, set[tuple[str, str]]] = {}
    for alert in alerts(txs, "alice", rules):
        expected[alert.tx_id] = set(alert.rules)
    for w in stream(txs, rules, 97):
        expected.setdefault(w.tx_id, set()).add((w.rule, w.level))
    got = {key: json.loads(payload) for key, payload in messages}
    assert len(got) == len(messages)  # one message per transaction
    assert got.keys() == expected.keys()
    levels = [level.name for level in rules.levels]
    names = [r.name for r in rules.rules]
    windowed = {r.name for r in rules.rules if r.kind in WINDOWED}
    assert any(windowed & {p[0] for p in pairs} for pairs in expected.values())
    for key, alert in got.items():
        pairs = [(p["rule"], p["level"]) for p in alert["rules"]]
        assert set(pairs) == expected[key]
        assert [n for n, _ in pairs] == sorted((n for n, _ in pairs), key=names.index)
        assert alert["level"] == max((lv for _, lv in pairs), key=levels.index)
        assert alert["action"] == rules.levels[levels.index(alert["level"])].action
        assert alert["accounts"] and all(a.startswith("alice-") for a in alert["accounts"])
    with pytest.raises(ConfigError, match="bob"):
        outbox("bob", rules, windows=Windows("alice", rules))


def test_a_rule_set_without_windowed_rules_holds_nothing() -> None:
    rules = RuleSet(Path("<t>"), (rule("big", "threshold", 0.5, amount=100),))
    windows = Windows("alice", rules)
    txs = transactions([record("a1", 0, "a", "x", 500)])
    assert windows.update(txs) == [] and windows.size() == 0 and windows.longest == 0
    assert [a.rules for a in windows.merge(txs, alerts(txs, "alice", rules))] == [
        (("big", "HIGH"),)
    ]
