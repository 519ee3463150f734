"""The secure simulation (``riskprop.lab.simulate.simulate_secure``) computes what the plaintext
engine computes: a known answer, random data sets, edge cases of ids and periods.

Keys are 512-bit (dealt once per party list and threshold, cached); one 2048-bit run is marked
slow. The protocol itself is tested in tests/protocol/, its driver in tests/node/.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cycle import CYCLE_EXPECTED_T2, TOL
from helpers import KEY_BITS, TxRow, bank_specs, dealt_shares, spread, write_dataset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riskprop.files.keys import write_keys
from riskprop.lab.simulate import SimulationResult, simulate_plaintext, simulate_secure


@pytest.fixture(scope="module")
def key_dirs(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Sequence[str], int], Path]:
    """Directories of key files (as ``riskprop keygen`` writes them), cached per party list."""
    made: dict[tuple[tuple[str, ...], int], Path] = {}

    def get(parties: Sequence[str], threshold: int) -> Path:
        cache_key = (tuple(parties), threshold)
        if cache_key not in made:
            directory = tmp_path_factory.mktemp("keys")
            write_keys(directory, list(dealt_shares(parties, threshold).values()))
            made[cache_key] = directory
        return made[cache_key]

    return get


def assert_same_result(secure: SimulationResult, plain: SimulationResult) -> None:
    """The same accounts in the same order, scores within ``TOL``, and the secure run's own
    account of its largest difference right."""
    assert secure.banks == plain.banks
    assert secure.account_ids == plain.account_ids
    assert secure.scores.shape == plain.scores.shape
    if len(plain.scores):
        difference = float(np.max(np.abs(secure.scores - plain.scores)))
        assert difference <= TOL, difference
        assert secure.max_difference == pytest.approx(difference, abs=1e-15)


# ------------------------------------------------------------------- known answer


def test_known_answer_cycle(cycle_data: Path) -> None:
    secure = simulate_secure(cycle_data, iterations=2, delta_a=0.5, key_bits=KEY_BITS)
    plain = simulate_plaintext(cycle_data, iterations=2, delta_a=0.5)
    assert_same_result(secure, plain)
    got = {
        (bank, acc): float(score)
        for (bank, acc), score in zip(
            [(b, a) for b, ids in zip(secure.banks, secure.account_ids, strict=True) for a in ids],
            secure.scores,
            strict=True,
        )
    }
    assert got.keys() == CYCLE_EXPECTED_T2.keys()
    for account, expected in CYCLE_EXPECTED_T2.items():
        assert got[account] == pytest.approx(expected, abs=TOL), account


# ----------------------------------------------------------------------- property

BANKS = ("alpha", "bravo", "charlie", "delta", "echo")
amounts = st.sampled_from([0.0, 1.0, 2.5, 1e-3, 1e6]) | st.floats(0.0, 1e4, allow_nan=False)
scores = st.sampled_from([0.0, 1.0, 0.5]) | st.floats(0.0, 1.0, allow_nan=False)


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    n_banks = draw(st.integers(2, 5))
    banks = BANKS[:n_banks]
    accounts: dict[str, list[tuple[str, float]]] = {}
    pools: dict[str, list[str]] = {}
    for bank in banks:
        n = draw(st.integers(1, 6))
        pools[bank] = [f"{bank[0]}{i}" for i in range(n + 1)]  # the last one is not listed
        accounts[bank] = [(acc, draw(scores)) for acc in pools[bank][:n]]
    files: dict[str, list[TxRow]] = {bank: [] for bank in banks}
    rows: list[TxRow] = []
    for _ in range(draw(st.integers(0, 20))):
        if rows and draw(st.integers(0, 4)) == 0:  # a parallel edge
            s, sb, d, db, _, period = draw(st.sampled_from(rows))
            row = (s, sb, d, db, draw(amounts), draw(st.sampled_from([period, 0])))
        else:
            sb, db = draw(st.sampled_from(banks)), draw(st.sampled_from(banks))
            s, d = draw(st.sampled_from(pools[sb])), draw(st.sampled_from(pools[db]))
            row = (s, sb, d, db, draw(amounts), draw(st.integers(0, 2)))
        rows.append(row)
        if row[1] == row[3]:
            files[row[1]].append(row)
        else:  # cross-bank: usually in both files, sometimes only in one (disagreement)
            where = draw(st.sampled_from(["both", "both", "both", "source", "destination"]))
            if where != "destination":
                files[row[1]].append(row)
            if where != "source":
                files[row[3]].append(row)
    return {
        "banks": banks,
        "accounts": accounts,
        "files": files,
        "period_column": draw(st.booleans()) or not rows,
        "iterations": draw(st.integers(0, 3)),
        "delta_a": draw(st.sampled_from([0.5, 0.1, 0.9]) | st.floats(0.01, 0.99)),
        "delta_b": draw(st.sampled_from([0.0, 0.0, 1.0]) | st.floats(0.0, 2.0)),
        "threshold": draw(st.integers(1, n_banks - 1)),
    }


@given(scenario=scenarios())
@settings(
    max_examples=35,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
def test_secure_equals_plaintext(
    scenario: dict[str, Any], key_dirs: Callable[[Sequence[str], int], Path]
) -> None:
    keys = key_dirs(scenario["banks"], scenario["threshold"])
    with tempfile.TemporaryDirectory() as tmp:
        banks = bank_specs(
            scenario["accounts"], scenario["files"], period_column=scenario["period_column"]
        )
        data = write_dataset(Path(tmp), banks)
        options = {
            "iterations": scenario["iterations"],
            "delta_a": scenario["delta_a"],
            "delta_b": scenario["delta_b"],
        }
        plain = simulate_plaintext(data, **options)
        secure = simulate_secure(data, keys=keys, **options)
    assert_same_result(secure, plain)
    assert np.all((secure.scores >= 0.0) & (secure.scores <= 1.0 + TOL))


EDGE_CASES: dict[str, tuple[dict[str, list[tuple[str, float]]], dict[str, list[TxRow]]]] = {
    "bank without accounts": (
        {"a": [("a1", 1.0)], "b": [], "c": [("c1", 0.5)]},
        spread([("a1", "a", "c1", "c", 1.0, 0), ("c1", "c", "a1", "a", 2.0, 0)]),
    ),
    "no accounts at all": ({"a": [], "b": []}, {}),
    "accounts only in transactions": (
        {"a": [], "b": [("b1", 0.3)]},
        spread([("a9", "a", "b1", "b", 1.0, 0), ("b1", "b", "a9", "a", 2.0, 0)]),
    ),
    "ids that need CSV quoting": (
        {"a": [('x,"y"\n1', 1.0), ("\u00fc\U0001f600", 0.2)], "b": [("b 1", 0.0)]},
        spread(
            [('x,"y"\n1', "a", "b 1", "b", 1.0, 0), ("b 1", "b", "\u00fc\U0001f600", "a", 1.0, 0)]
        ),
    ),
    "sparse large periods": (
        {"a": [("a1", 0.3)], "b": [("b1", 1.0)]},
        spread([("a1", "a", "b1", "b", 1.0, 10**12), ("b1", "b", "a1", "a", 1.0, 7)]),
    ),
}


@pytest.mark.parametrize("case", sorted(EDGE_CASES))
def test_secure_equals_plaintext_edge_cases(case: str, tmp_path: Path) -> None:
    accounts, files = EDGE_CASES[case]
    data = write_dataset(tmp_path / "data", bank_specs(accounts, files))
    for iterations in (0, 2):
        plain = simulate_plaintext(data, iterations=iterations, delta_a=0.7)
        secure = simulate_secure(
            data, iterations=iterations, delta_a=0.7, keys=None, key_bits=KEY_BITS
        )
        assert_same_result(secure, plain)


# ---------------------------------------------------------------------------- slow


@pytest.mark.slow
def test_secure_equals_plaintext_2048(tmp_path: Path) -> None:
    rng = np.random.default_rng(20240611)
    banks = ("alice", "bob", "charlie")
    ids = {b: [f"{b}-{i:03d}" for i in range(10)] for b in banks}
    accounts = {
        b: [(a, float(rng.choice([0.0, rng.random(), 1.0]))) for a in ids[b]] for b in banks
    }
    rows: list[TxRow] = []
    for _ in range(60):
        sb, db = rng.choice(banks), rng.choice(banks)
        rows.append(
            (
                str(rng.choice(ids[sb])),
                str(sb),
                str(rng.choice(ids[db])),
                str(db),
                float(rng.integers(0, 1000)),
                int(rng.integers(0, 2)),
            )
        )
    files = spread(rows)
    files["bob"].append((ids["alice"][0], "alice", ids["bob"][0], "bob", 50.0, 1))  # disagreement
    data = write_dataset(tmp_path / "data", bank_specs(accounts, files))
    plain = simulate_plaintext(data, iterations=3, delta_a=0.4, delta_b=0.5)
    secure = simulate_secure(data, iterations=3, delta_a=0.4, delta_b=0.5, key_bits=2048)
    assert sum(map(len, secure.account_ids)) == 30
    assert_same_result(secure, plain)
    assert np.any(plain.scores > 0.0)
