"""Real-time alerts equal the batch engine's alerts of the same transactions, batch by batch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from riskprop.errors import ConfigError
from riskprop.lab.rawgen import generate_raw
from riskprop.scoring.raw import read_raw
from riskprop.scoring.rules import default_rules_path, load_rules, score
from riskprop.stream.alerts import TRANSACTION_LEVEL, Alert, alerts, encode, outbox, realtime
from riskprop.stream.records import RecordRules, Transaction, parse
from riskprop.stream.windows import Windows


def test_streamed_alerts_equal_the_batch_alerts(tmp_path: Path) -> None:
    generate_raw(tmp_path / "gen", banks=["alice", "bob"], accounts=600, transactions=4000, days=4)
    path = tmp_path / "gen" / "alice" / "raw.csv"
    rules = load_rules(default_rules_path())
    raw = read_raw(path)
    batch = score(raw, "alice", rules).alerts
    ids = raw.tx_id.tolist()
    expected = [(ids[row], rule, level) for row, rule, level in batch.tuples()]
    assert len({rule for _, rule, _ in expected}) >= 3  # the generator plants several kinds

    records = [
        parse(line, RecordRules(bank="alice")) for line in path.read_bytes().splitlines()[1:]
    ]
    transactions = [r for r in records if isinstance(r, Transaction)]
    streamed = []
    for i in range(0, len(transactions), 97):  # batches of the consumer's kind of size
        for alert in alerts(transactions[i : i + 97], "alice", rules):
            streamed += [(alert.tx_id, rule, level) for rule, level in alert.rules]
            levels = [lv.name for lv in rules.levels]
            assert alert.level == max((lv for _, lv in alert.rules), key=levels.index)
            assert alert.accounts and all(a.startswith("alice-") for a in alert.accounts)
    assert streamed == expected


def test_only_transaction_level_rules_run_in_real_time() -> None:
    rules = load_rules(default_rules_path())
    kept = realtime(rules)
    assert {r.kind for r in kept.rules} == set(TRANSACTION_LEVEL)
    assert {r.name for r in rules.rules} - {r.name for r in kept.rules} == {
        "cash_structuring",
        "pass_through",
        "fan_in",
        "fan_out",
        "velocity",
    }
    assert alerts([], "alice", rules) == []


@given(
    st.text(min_size=1),
    st.integers(min_value=-(2**62), max_value=2**62),
    st.lists(st.text(), max_size=3),
    st.lists(st.tuples(st.text(), st.text()), max_size=4),
    st.text(),
    st.text(),
)
def test_an_alert_encodes_as_compact_json(
    tx_id: str,
    time: int,
    accounts: list[str],
    rules: list[tuple[str, str]],
    level: str,
    action: str,
) -> None:
    alert = Alert(tx_id, time, tuple(accounts), tuple(rules), level, action)
    fields = {
        "tx_id": tx_id,
        "time": time,
        "accounts": accounts,
        "rules": [{"rule": rule, "level": lv} for rule, lv in rules],
        "level": level,
        "action": action,
    }
    assert encode(alert) == json.dumps(fields, separators=(",", ":")).encode()
    assert json.loads(encode(alert)) == fields


def test_the_outbox_publishes_alerts_of_a_minimum_level_only(tmp_path: Path) -> None:
    generate_raw(tmp_path / "gen", banks=["alice", "bob"], accounts=600, transactions=4000, days=4)
    path = tmp_path / "gen" / "alice" / "raw.csv"
    rules = load_rules(default_rules_path())
    records = [
        parse(line, RecordRules(bank="alice")) for line in path.read_bytes().splitlines()[1:]
    ]
    transactions = [r for r in records if isinstance(r, Transaction)]
    every = outbox("alice", rules, windows=Windows("alice", rules))(transactions)
    some = outbox("alice", rules, windows=Windows("alice", rules), minimum="MEDIUM")(transactions)
    levels = {key: json.loads(payload)["level"] for key, payload in every}
    assert set(levels.values()) >= {"LOW", "MEDIUM"}  # both kinds occur
    assert some == [(k, p) for k, p in every if levels[k] != "LOW"]
    with pytest.raises(ConfigError, match="alert level 'URGENT' is not one of the rules'"):
        outbox("alice", rules, minimum="URGENT")
