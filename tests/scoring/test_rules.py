"""Rules on hand-made transactions: each fires exactly at its boundaries; noisy-OR properties;
explanations; levels; one-line validation errors; the default rule file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from riskprop.errors import ConfigError
from riskprop.scoring import rules as rules_module
from riskprop.scoring.raw import Coded, RawTransactions, Texts
from riskprop.scoring.rules import (
    RULE_KINDS,
    Examples,
    Level,
    Rule,
    RuleSet,
    Scored,
    default_rules_path,
    load_rules,
    score,
)

T0 = 1_699_920_000  # 2023-11-14 00:00:00 UTC
HOUR = 3600
DAY = 86_400
BANK = "B"


def tx(
    tx_id: str,
    source: str = "a",
    target: str = "x",
    *,
    time: int = T0 + 12 * HOUR,
    amount: float = 100.0,
    kind: str = "wire",
    **extra: Any,
) -> dict[str, Any]:
    """One transaction; an account named with one letter a-m is the bank's own, others are at X."""
    row: dict[str, Any] = {
        "tx_id": tx_id,
        "source": source,
        "target": target,
        "time": time,
        "amount": amount,
        "kind": kind,
    }
    row.update(extra)
    return row


def raw_of(rows: list[dict[str, Any]]) -> RawTransactions:
    def col(name: str, default: Any) -> list[Any]:
        return [r.get(name, default) for r in rows]

    def bank(account: str) -> str:
        return BANK if account <= "m" else "X"

    amount = np.array(col("amount", 0.0), dtype=np.float64)
    sources, targets = Coded.shared([col("source", ""), col("target", "")])
    banks = Coded.shared([[bank(a) for a in col(side, "")] for side in ("source", "target")])
    countries = Coded.shared([col("source_country", ""), col("target_country", "")])
    return RawTransactions(
        path=Path("raw.csv"),
        line=np.arange(2, len(rows) + 2, dtype=np.int64),
        tx_id=Texts.of(col("tx_id", "")),
        time=np.array(col("time", T0), dtype=np.int64),
        utc_offset=np.array(col("utc_offset", 0), dtype=np.int32),
        source=sources,
        source_bank=banks[0],
        target=targets,
        target_bank=banks[1],
        amount=amount,
        currency=Coded.of(col("currency", "USD")),
        original_amount=np.array(
            [r.get("original_amount", r["amount"]) for r in rows], dtype=np.float64
        ),
        kind=Coded.of(col("kind", "wire")),
        channel=Coded.of(col("channel", "")),
        source_country=countries[0],
        target_country=countries[1],
        status=Coded.of(col("status", "completed")),
        label=None,
    )


def run(rows: list[dict[str, Any]], kind: str, weight: float = 1.0, **params: Any) -> Scored:
    rules = RuleSet(Path("rules.yaml"), (Rule("r", kind, weight, params),))
    return score(raw_of(rows), BANK, rules)


def strength(scored: Scored, account: str) -> float:
    return float(scored.contributions["r"][list(scored.accounts).index(account)])


def list_of(examples: Examples | Sequence[Sequence[str]]) -> list[list[str]]:
    """Every account's examples, as lists."""
    return [list(examples[a]) for a in range(len(examples))]


def fired(scored: Scored) -> dict[str, list[str]]:
    """Own accounts the rule fired for -> their example transaction ids."""
    return {
        str(a): list(scored.examples["r"][i])
        for i, a in enumerate(scored.accounts)
        if scored.contributions["r"][i] > 0
    }


# --- threshold -------------------------------------------------------------------------------


def test_threshold_fires_at_10000_not_at_9999_99() -> None:
    rows = [
        tx("t1", "a", "x", amount=9_999.99, kind="cash"),
        tx("t2", "b", "x", amount=10_000.00, kind="cash"),
        tx("t3", "c", "x", amount=50_000.00, kind="wire"),
    ]
    s = run(rows, "threshold", amount=10_000, kinds=["cash"])
    assert fired(s) == {"b": ["t2"]}
    assert s.alerts.tuples() == [(1, "r", "CRITICAL")]


def test_threshold_side_picks_the_account() -> None:
    rows = [tx("t1", "a", "b", amount=12_000, kind="cash")]
    assert fired(run(rows, "threshold", amount=10_000, side="source")) == {"a": ["t1"]}
    assert fired(run(rows, "threshold", amount=10_000, side="target")) == {"b": ["t1"]}
    assert set(fired(run(rows, "threshold", amount=10_000))) == {"a", "b"}


def test_threshold_per_currency_uses_the_amount_as_written() -> None:
    rows = [
        tx("t1", "a", amount=6_500.0, original_amount=10_000.0, currency="AUD"),
        tx("t2", "b", amount=6_499.0, original_amount=9_999.99, currency="AUD"),
        tx("t3", "c", amount=20_000.0, original_amount=20_000.0, currency="USD"),
    ]
    assert fired(run(rows, "threshold", amount={"aud": 10_000})) == {"a": ["t1"]}


# --- structuring -----------------------------------------------------------------------------


def structuring_rows(last: int) -> list[dict[str, Any]]:
    return [
        tx("s1", "a", amount=9_000.00, kind="cash", time=T0),
        tx("s2", "a", amount=9_999.99, kind="cash", time=T0 + DAY),
        tx("s3", "a", amount=9_500.00, kind="cash", time=last),
    ]


def test_structuring_window_edge() -> None:
    params: dict[str, Any] = {
        "amount": 10_000,
        "margin": 0.1,
        "count": 3,
        "window": "2d",
        "kinds": ["cash"],
    }
    inside = run(structuring_rows(T0 + 2 * DAY - 1), "structuring", **params)
    assert fired(inside) == {"a": ["s1", "s2", "s3"]}
    assert fired(run(structuring_rows(T0 + 2 * DAY), "structuring", **params)) == {}


def test_structuring_band_is_half_open() -> None:
    params: dict[str, Any] = {"amount": 10_000, "margin": 0.1, "count": 2, "window": "1d"}
    near = [tx("s1", amount=9_000.0, time=T0), tx("s2", amount=9_999.99, time=T0 + 60)]
    assert fired(run(near, "structuring", **params)) == {"a": ["s1", "s2"]}
    below = [tx("s1", amount=8_999.99, time=T0), tx("s2", amount=9_999.99, time=T0 + 60)]
    assert fired(run(below, "structuring", **params)) == {}
    at = [tx("s1", amount=10_000.0, time=T0), tx("s2", amount=9_999.99, time=T0 + 60)]
    assert fired(run(at, "structuring", **params)) == {}


# --- pass-through ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("delay", "out_amount", "fires"),
    [
        (48 * HOUR - 1, 4_500.0, True),
        (48 * HOUR, 4_500.0, False),
        (0, 5_500.0, True),
        (HOUR, 4_499.99, False),
        (-1, 5_000.0, False),
    ],
)
def test_pass_through(delay: int, out_amount: float, fires: bool) -> None:
    rows = [
        tx("in", "x", "a", amount=5_000.0, time=T0 + DAY),
        tx("out", "a", "y", amount=out_amount, time=T0 + DAY + delay),
    ]
    s = run(rows, "pass_through", window="48h", tolerance=0.1)
    assert fired(s) == ({"a": ["in", "out"]} if fires else {})


def test_pass_through_ignores_a_transfer_to_itself() -> None:
    rows = [tx("self", "a", "a", amount=5_000.0)]
    assert fired(run(rows, "pass_through", window="1h", tolerance=0.1)) == {}


# --- fan-in / fan-out ------------------------------------------------------------------------


def test_fan_in_counts_distinct_counterparties_in_the_window() -> None:
    rows = [
        tx("f1", "x", "a", time=T0),
        tx("f2", "y", "a", time=T0 + HOUR),
        tx("f3", "y", "a", time=T0 + 2 * HOUR),
        tx("f4", "z", "a", time=T0 + DAY - 1),
    ]
    # one example per counterparty: its latest transaction in the first firing window
    assert fired(run(rows, "fan_in", count=3, window="1d")) == {"a": ["f1", "f3", "f4"]}
    rows[3] = tx("f4", "z", "a", time=T0 + DAY)  # x left the window: y and z only
    assert fired(run(rows, "fan_in", count=3, window="1d")) == {}
    rows[3] = tx("f4", "y", "a", time=T0 + 3 * HOUR)
    assert fired(run(rows, "fan_in", count=3, window="1d")) == {}


def test_fan_out_looks_at_outgoing_only() -> None:
    rows = [tx("o1", "a", "x"), tx("o2", "a", "y"), tx("i1", "z", "a")]
    assert fired(run(rows, "fan_out", count=2, window="1h")) == {"a": ["o1", "o2"]}
    assert fired(run(rows, "fan_out", count=3, window="1h")) == {}


def random_rows(seed: int, n: int = 60) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    people = ["a", "b", "c", "x", "y", "z", "w"]
    return [
        tx(
            f"t{k}",
            people[int(rng.integers(0, 7))],
            people[int(rng.integers(0, 7))],
            time=T0 + int(rng.integers(0, 20)) * HOUR,
            amount=float(rng.choice([900.0, 1000.0, 1050.0, 1200.0])),
        )
        for k in range(n)
    ]


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("incoming", [True, False])
def test_fan_matches_a_brute_force_count(seed: int, incoming: bool) -> None:
    rows = random_rows(seed)
    window, count = 5 * HOUR, 3
    expected = set()
    for own in "abc":
        mine = [r for r in rows if r["target" if incoming else "source"] == own]
        for end in mine:
            others = {
                r["source" if incoming else "target"]
                for r in mine
                if 0 <= end["time"] - r["time"] < window
            }
            if len(others) >= count:
                expected.add(own)
    kind = "fan_in" if incoming else "fan_out"
    s = run(rows, kind, count=count, window=window)
    assert set(fired(s)) == expected
    by_id = {r["tx_id"]: r for r in rows}
    for examples in fired(s).values():
        times = [by_id[t]["time"] for t in examples]
        assert max(times) - min(times) < window
        sides = [by_id[t]["source" if incoming else "target"] for t in examples]
        assert len(set(sides)) == len(sides)


@pytest.mark.parametrize("seed", range(8))
def test_pass_through_matches_a_brute_force_search_in_any_chunking(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = random_rows(seed)
    window, tolerance = 3 * HOUR, 0.1
    expected = {
        own
        for own in "abc"
        for i in rows
        for o in rows
        if i["target"] == own
        and o["source"] == own
        and i is not o
        and 0 <= o["time"] - i["time"] < window
        and abs(o["amount"] - i["amount"]) <= tolerance * i["amount"]
    }
    whole = fired(run(rows, "pass_through", window=window, tolerance=tolerance))
    assert set(whole) == expected
    monkeypatch.setattr(rules_module, "PAIR_CHUNK", 3)
    assert fired(run(rows, "pass_through", window=window, tolerance=tolerance)) == whole


# --- transaction-level rules -----------------------------------------------------------------


def test_jurisdiction_looks_at_the_counterparty_country() -> None:
    rows = [
        tx("j1", "a", "x", target_country="IR"),
        tx("j2", "y", "b", source_country="IR", target_country="NL"),
        tx("j3", "c", "x", source_country="IR", target_country="NL"),
    ]
    s = run(rows, "jurisdiction", weight=0.4, countries=["ir", "KP"])
    assert fired(s) == {"a": ["j1"], "b": ["j2"]}
    assert s.alerts.tuples() == [(0, "r", "MEDIUM"), (1, "r", "MEDIUM")]


def test_round_amount() -> None:
    rows = [
        tx("r1", "a", amount=5_000.0),
        tx("r2", "b", amount=5_000.01),
        tx("r3", "c", amount=4_000.0),
        tx("r4", "d", amount=123_000.0),
    ]
    assert fired(run(rows, "round_amount", unit=1000, minimum=5000)) == {
        "a": ["r1"],
        "d": ["r4"],
    }


def test_night_uses_local_time() -> None:
    afternoon_utc = T0 + 15 * HOUR + 30 * 60  # 01:30 the next day at +10:00
    rows = [
        tx("n1", "a", time=afternoon_utc, utc_offset=10 * HOUR),
        tx("n2", "b", time=afternoon_utc, utc_offset=0),
    ]
    assert fired(run(rows, "night", start=0, end=5)) == {"a": ["n1"]}


@pytest.mark.parametrize(
    ("second", "fires"),
    [
        (22 * HOUR - 1, False),
        (22 * HOUR, True),
        (DAY - 1, True),
        (0, True),
        (6 * HOUR - 1, True),
        (6 * HOUR, False),
        (12 * HOUR, False),
    ],
)
def test_night_wraps_midnight(second: int, fires: bool) -> None:
    s = run([tx("n", time=T0 + second)], "night", start=22, end=6)
    assert fired(s) == ({"a": ["n"]} if fires else {})


def test_failed_saturates() -> None:
    rows = [
        tx("f1", "a", status="failed"),
        tx("f2", "b", status="reversed"),
        tx("f3", "b", status="failed"),
        tx("f4", "c", status="completed"),
    ]
    s = run(rows, "failed", weight=0.5, saturate=2)
    assert strength(s, "a") == pytest.approx(0.25)
    assert strength(s, "b") == pytest.approx(0.5)
    assert strength(s, "c") == 0.0
    assert fired(s) == {"a": ["f1"], "b": ["f2", "f3"]}
    assert [a[0] for a in s.alerts.tuples()] == [0, 1, 2]


def test_type_takes_the_riskiest_transaction() -> None:
    rows = [tx("c1", "a", kind="cash"), tx("k1", "a", kind="crypto"), tx("w1", "b", kind="wire")]
    s = run(rows, "type", weight=0.6, risk={"cash": 0.5, "crypto": 1.0})
    assert strength(s, "a") == pytest.approx(0.6)
    assert strength(s, "b") == 0.0
    assert s.alerts.tuples() == [(0, "r", "MEDIUM"), (1, "r", "HIGH")]


# --- velocity --------------------------------------------------------------------------------


def velocity_rows(burst: int) -> list[dict[str, Any]]:
    rows = [tx(f"d{d}", "a", time=T0 + d * DAY + HOUR) for d in range(10)]
    rows += [tx(f"b{k}", "a", time=T0 + 9 * DAY + 2 * HOUR + k) for k in range(burst)]
    rows += [tx(f"c{d}", "b", time=T0 + d * DAY) for d in range(10)]
    return rows


def test_velocity_against_the_accounts_own_baseline() -> None:
    # a: nine days with 1, the last with 1 + burst; mean (10 + burst) / 10
    params: dict[str, Any] = {"window": "1d", "factor": 3, "minimum": 5, "baseline": "mean"}
    s = run(velocity_rows(4), "velocity", **params)  # 5 > 3 * 1.4
    assert fired(s) == {"a": ["d9", "b0", "b1"]}
    assert fired(run(velocity_rows(3), "velocity", **params)) == {}  # 4 < minimum 5
    median: dict[str, Any] = {**params, "baseline": "median", "minimum": 2, "factor": 1}
    assert fired(run(velocity_rows(1), "velocity", **median)) == {"a": ["d9", "b0"]}  # 2 > 1
    assert fired(run(velocity_rows(0), "velocity", **median)) == {}


# --- combination, levels, explanations -------------------------------------------------------


def scored_with_weights(weights: list[float]) -> Scored:
    rules = tuple(Rule(f"r{i}", "round_amount", w, {"unit": 100}) for i, w in enumerate(weights))
    return score(raw_of([tx("t", "a", amount=500.0)]), BANK, RuleSet(Path("r.yaml"), rules))


@given(
    st.lists(st.floats(0.01, 1.0), min_size=1, max_size=6),
    st.integers(0, 5),
    st.floats(0.0, 1.0),
)
def test_noisy_or_is_in_unit_interval_and_monotone(
    weights: list[float], which: int, increase: float
) -> None:
    before = float(scored_with_weights(weights).score[0])
    assert 0.0 <= before <= 1.0
    assert before == pytest.approx(1 - np.prod([1 - w for w in weights]))
    assert before >= max(weights) - 1e-12
    raised = list(weights)
    k = which % len(raised)
    raised[k] = min(1.0, raised[k] + increase * (1.0 - raised[k]))
    assert float(scored_with_weights(raised).score[0]) >= before - 1e-12
    assert float(scored_with_weights([*weights, 0.5]).score[0]) >= before - 1e-12


@pytest.mark.parametrize(
    ("weight", "level", "action"),
    [
        (0.2499, "LOW", "monitor"),
        (0.25, "MEDIUM", "review"),
        (0.4999, "MEDIUM", "review"),
        (0.5, "HIGH", "escalate"),
        (0.8, "CRITICAL", "escalate and file a report"),
        (1.0, "CRITICAL", "escalate and file a report"),
    ],
)
def test_levels_at_band_edges(weight: float, level: str, action: str) -> None:
    s = scored_with_weights([weight])
    assert s.level[0] == level
    assert s.action[0] == action


def test_alerts_by_row_then_rule_with_each_rules_own_level() -> None:
    s = scored_with_weights([0.3, 0.6])
    assert s.alerts.tuples() == [(0, "r0", "MEDIUM"), (0, "r1", "HIGH")]
    assert s.level == ["HIGH"]  # 1 - 0.7 * 0.4 = 0.72


def test_unfired_accounts_are_low_with_empty_explanations() -> None:
    rows = [tx("t1", "a", "b", amount=10_000, kind="cash"), tx("t2", "c", "x")]
    s = run(rows, "threshold", amount=10_000, kinds=["cash"], side="source")
    assert list(s.accounts) == ["a", "b", "c"]
    assert s.score.tolist() == [1.0, 0.0, 0.0]
    assert s.level == ["CRITICAL", "LOW", "LOW"]
    assert list_of(s.examples["r"]) == [["t1"], [], []]


def test_examples_are_capped_and_in_file_order() -> None:
    rows = [tx(f"t{k}", "a", amount=1000.0, time=T0 + 100 - k) for k in range(5)]
    rules = RuleSet(
        Path("r.yaml"), (Rule("r", "round_amount", 0.5, {"unit": 1000}),), max_examples=2
    )
    s = score(raw_of(rows), BANK, rules)
    assert list_of(s.examples["r"]) == [["t0", "t1"]]
    assert [a[0] for a in s.alerts.tuples()] == [0, 1, 2, 3, 4]


def test_other_banks_accounts_are_not_scored() -> None:
    rows = [tx("t1", "x", "y", amount=50_000, kind="cash")]
    s = run(rows, "threshold", amount=10_000)
    assert len(s.accounts) == 0
    assert s.alerts.tuples() == []


def test_every_rule_on_an_empty_file() -> None:
    rules = load_rules(default_rules_path())
    s = score(raw_of([]), BANK, rules)
    assert len(s.accounts) == 0
    assert s.score.shape == (0,)
    assert all(len(c) == 0 for c in s.contributions.values())


# --- validation ------------------------------------------------------------------------------

RULE = "rules:\n  - {name: a, kind: night, weight: 0.1, params: {start: 0, end: 5}}\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "rules:\n  - {name: a, kind: nightly, weight: 0.1}\n",
            f"rules[0].kind: unknown rule kind 'nightly' (known: {', '.join(RULE_KINDS)})",
        ),
        (
            RULE + "  - {name: b, kind: fan_in, weight: 0.3, params: {count: 3, window: 2w}}\n",
            "rules[1].params.window: expected a duration like 2d, 36h or 30m, got '2w'",
        ),
        (
            RULE + "  - {name: b, kind: fan_in, weight: 0.3, params: {count: 3}}\n",
            "rules[1].params.window: missing (required for fan_in)",
        ),
        (
            RULE
            + "  - {name: b, kind: fan_in, weight: 0.3, params: {count: 3, window: 1d, x: 1}}\n",
            "rules[1].params.x: unknown parameter for fan_in (known: count, window)",
        ),
        (
            RULE + "  - {name: b, kind: fan_in, weight: 0.3, params: {count: '3', window: 1d}}\n",
            "rules[1].params.count: expected an integer, got '3'",
        ),
        (
            RULE + "  - {name: b, kind: round_amount, weight: 0, params: {unit: 100}}\n",
            "rules[1].weight: must be in (0, 1], got 0",
        ),
        (
            RULE + "  - {name: b, kind: round_amount, weight: 1.5, params: {unit: 100}}\n",
            "rules[1].weight: must be in (0, 1], got 1.5",
        ),
        (RULE + RULE.removeprefix("rules:\n"), "rules[1].name: duplicate rule name 'a'"),
        (
            RULE + "  - {name: b, kind: type, weight: 0.3, params: {risk: {cash: 2}}}\n",
            "rules[1].params.risk.cash: must be in [0, 1], got 2",
        ),
        (
            RULE + "  - {name: b, kind: jurisdiction, weight: 0.3, params: {countries: [IR, 3]}}\n",
            "rules[1].params.countries[1]: expected a non-empty string, got 3",
        ),
        (
            RULE + "levels:\n  - {name: LOW, minimum: 0, action: monitor}\n"
            "  - {name: HIGH, minimum: 0.5, action: escalate}\n"
            "  - {name: MID, minimum: 0.5, action: review}\n",
            "levels[2].minimum: minimums must increase (0.5 after 0.5)",
        ),
        (
            RULE + "levels:\n  - {name: LOW, minimum: 0.1, action: monitor}\n",
            "levels[0].minimum: the first level's minimum must be 0",
        ),
        ("rule: []\n", "rule: unknown key (known: rules, levels, max_examples)"),
    ],
)
def test_validation_errors_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_rules(path)
    assert str(info.value) == f"{path}: {message}"
    assert "\n" not in str(info.value)


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - {name: a, kind: night\n")
    with pytest.raises(ConfigError, match=rf"^{path}:3: invalid YAML: "):
        load_rules(path)


def test_windows_are_parsed(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "rules:\n"
        "  - {name: a, kind: fan_in, weight: 0.3, params: {count: 2, window: 30m}}\n"
        "  - {name: b, kind: fan_in, weight: 0.3, params: {count: 2, window: 36h}}\n"
    )
    rows = [tx("f1", "x", "a", time=T0), tx("f2", "y", "a", time=T0 + 31 * 60)]
    s = score(raw_of(rows), BANK, load_rules(path))
    assert s.contributions["a"].tolist() == [0.0]
    assert s.contributions["b"].tolist() == [0.3]


def test_default_rules_load_and_score() -> None:
    rules = load_rules(default_rules_path())
    assert {rule.kind for rule in rules.rules} == set(RULE_KINDS)
    assert [level.name for level in rules.levels] == ["LOW", "MEDIUM", "HIGH", "CRITICAL"]
    rows = [
        tx("t1", "a", amount=10_000.0, kind="cash"),
        tx("t2", "b", amount=9_500.0, kind="cash", time=T0),
        tx("t3", "b", amount=9_400.0, kind="cash", time=T0 + HOUR),
        tx("t4", "b", amount=9_300.0, kind="cash", time=T0 + 2 * HOUR),
        tx("t5", "c", amount=10.0),
    ]
    s = score(raw_of(rows), BANK, rules)
    by = dict(zip(s.accounts, s.score, strict=True))
    assert by["b"] > by["a"] > by["c"] == 0.0
    assert s.examples["cash_structuring"][1] == ["t2", "t3", "t4"]
    assert s.examples["cash_threshold"][0] == ["t1"]


def test_rule_built_in_code_is_validated() -> None:
    rules = RuleSet(Path("r.yaml"), (Rule("r", "night", 0.1, {"start": 25, "end": 3}),))
    with pytest.raises(ConfigError, match=r"^r.yaml: rules\[0\].params.start: an hour"):
        score(raw_of([tx("t")]), BANK, rules)


def test_level_type_is_exported() -> None:
    assert Level("LOW", 0.0, "monitor").minimum == 0.0
