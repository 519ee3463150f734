"""The plaintext engine against hand-computed answers and an independent reference.

Known answers are worked out by hand in exact fractions (comments show the arithmetic). The
property tests compare ``simulate_plaintext`` with ``reference`` below, a direct per-account
transcription of the semantics that shares no code with ``riskprop.core``.
"""

from __future__ import annotations

import csv
import io
import math
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Mapping, Sequence
from fractions import Fraction
from pathlib import Path

from helpers import BankSpec, WriteDataset, field, write_dataset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riskprop.lab.simulate import SimulationResult, simulate_plaintext

TOL = 1e-12
F = Fraction  # exact hand-computed values
Key = tuple[str, str]


def scores_of(result: SimulationResult) -> dict[Key, float]:
    keys = [
        (bank, i) for bank, ids in zip(result.banks, result.account_ids, strict=True) for i in ids
    ]
    assert len(keys) == len(result.scores)
    return dict(zip(keys, result.scores.tolist(), strict=True))


def assert_scores(result: SimulationResult, expected: Mapping[Key, Fraction | float]) -> None:
    got = scores_of(result)
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert math.isclose(got[key], float(value), rel_tol=0, abs_tol=TOL), (key, got[key], value)


def order_of(result: SimulationResult) -> list[Key]:
    return [
        (bank, i) for bank, ids in zip(result.banks, result.account_ids, strict=True) for i in ids
    ]


# ----------------------------------------------------------------------- known answers

# (a) alice a1 -> bob b1 -> charlie c1 -> alice a1, plus alice a2 -> a1 (internal).
CYCLE: dict[str, BankSpec] = {
    "alice": (
        [("a1", "1"), ("a2", "0.25")],
        [
            ("a1", "alice", "b1", "bob", "10"),
            ("c1", "charlie", "a1", "alice", "4"),
            ("a2", "alice", "a1", "alice", "12"),
        ],
    ),
    "bob": (
        [("b1", "0")],
        [("a1", "alice", "b1", "bob", "10"), ("b1", "bob", "c1", "charlie", "5")],
    ),
    "charlie": (
        [("c1", "0.5")],
        [("b1", "bob", "c1", "charlie", "5"), ("c1", "charlie", "a1", "alice", "4")],
    ),
}


def test_three_bank_cycle_one_iteration(dataset: WriteDataset) -> None:
    # delta = 1/2. Incoming: a1 <- c1 (4), a2 (12): weights 1/4, 3/4; b1 <- a1 (1);
    # c1 <- b1 (1); a2 has none.  r0: a1 = 1, a2 = 1/4, b1 = 0, c1 = 1/2.
    # a1 = 1/2 * 1 + 1/2 * (1/4 * 1/2 + 3/4 * 1/4) = 1/2 + 1/2 * 5/16 = 21/32
    # a2 = 1/2 * 1/4 = 1/8
    # b1 = 1/2 * 0 + 1/2 * 1 = 1/2
    # c1 = 1/2 * 1/2 + 1/2 * 0 = 1/4
    result = simulate_plaintext(dataset(CYCLE), iterations=1, delta_a=0.5)
    assert order_of(result) == [("alice", "a1"), ("alice", "a2"), ("bob", "b1"), ("charlie", "c1")]
    assert_scores(
        result,
        {
            ("alice", "a1"): F(21, 32),
            ("alice", "a2"): F(1, 8),
            ("bob", "b1"): F(1, 2),
            ("charlie", "c1"): F(1, 4),
        },
    )
    assert result.warnings == ()


def test_three_bank_cycle_two_iterations(dataset: WriteDataset) -> None:
    # r1 = (a1 21/32, a2 1/8, b1 1/2, c1 1/4), delta = 1/2:
    # a1 = 1/2 * 21/32 + 1/2 * (1/4 * 1/4 + 3/4 * 1/8) = 21/64 + 1/2 * 5/32 = 21/64 + 5/64 = 13/32
    # a2 = 1/2 * 1/8 = 1/16
    # b1 = 1/2 * 1/2 + 1/2 * 21/32 = 16/64 + 21/64 = 37/64
    # c1 = 1/2 * 1/4 + 1/2 * 1/2 = 3/8
    result = simulate_plaintext(dataset(CYCLE), iterations=2, delta_a=0.5)
    assert_scores(
        result,
        {
            ("alice", "a1"): F(13, 32),
            ("alice", "a2"): F(1, 16),
            ("bob", "b1"): F(37, 64),
            ("charlie", "c1"): F(3, 8),
        },
    )


def test_periods_carry_scores_over_and_restart_k(dataset: WriteDataset) -> None:
    # delta_k = (1/2) / k**1: delta_1 = 1/2, delta_2 = 1/4 in EVERY period (k restarts).
    # Period 0: a1 -> a2 (3).  Period 3 (1 and 2 do not occur): a2 -> b1 (2), b1 -> a1 (1).
    # r0: a1 = 1, a2 = 0, b1 = 0.
    # Period 0, k=1 (d=1/2): a1 = 1/2;  a2 = 1/2*0 + 1/2*1 = 1/2;    b1 = 0
    #           k=2 (d=1/4): a1 = 3/8;  a2 = 3/4*1/2 + 1/4*1/2 = 1/2; b1 = 0
    # Period 3 (a1 -> a2 no longer counts), from (3/8, 1/2, 0):
    #           k=1 (d=1/2): a1 = 1/2*3/8 + 1/2*0 = 3/16; a2 = 1/4; b1 = 1/2*0 + 1/2*1/2 = 1/4
    #           k=2 (d=1/4): a1 = 3/4*3/16 + 1/4*1/4 = 13/64; a2 = 3/4*1/4 = 3/16;
    #                        b1 = 3/4*1/4 + 1/4*1/4 = 1/4
    # (Without the restart period 3 would use d = 1/6, 1/8: a1 = 109/384.)
    banks: dict[str, BankSpec] = {
        "alice": (
            [("a1", "1"), ("a2", "0")],
            [
                ("a1", "alice", "a2", "alice", "3", "0"),
                ("a2", "alice", "b1", "bob", "2", "3"),
                ("b1", "bob", "a1", "alice", "1", "3"),
            ],
        ),
        "bob": (
            [("b1", "0")],
            [("a2", "alice", "b1", "bob", "2", "3"), ("b1", "bob", "a1", "alice", "1", "3")],
        ),
    }
    result = simulate_plaintext(dataset(banks), iterations=2, delta_a=0.5, delta_b=1.0)
    assert_scores(
        result, {("alice", "a1"): F(13, 64), ("alice", "a2"): F(3, 16), ("bob", "b1"): F(1, 4)}
    )
    # After period 0 alone (T=2) the scores are (3/8, 1/2, 0) ... and after both with T=1:
    # period 0: (1/2, 1/2, 0); period 3: a1 = 1/2*1/2 + 1/2*0 = 1/4, a2 = 1/4, b1 = 1/4.
    result = simulate_plaintext(dataset(banks), iterations=1, delta_a=0.5, delta_b=1.0)
    assert_scores(
        result, {("alice", "a1"): F(1, 4), ("alice", "a2"): F(1, 4), ("bob", "b1"): F(1, 4)}
    )


def test_parallel_transactions_add_up(dataset: WriteDataset) -> None:
    # t <- s1 (1 + 2 = 3), bob's b1 (0.5 + 1.5 = 2, listed by bob), s2 (4): total 9.
    # r0: s1 = 1, s2 = 0, t = 0, b1 = 1/2; delta = 1/2, T = 1:
    # t = 1/2 * 0 + 1/2 * (3/9 * 1 + 2/9 * 1/2 + 4/9 * 0) = 1/2 * 4/9 = 2/9
    banks: dict[str, BankSpec] = {
        "alice": (
            [("s1", "1"), ("s2", "0"), ("t", "0")],
            [
                ("s1", "alice", "t", "alice", "1"),
                ("b1", "bob", "t", "alice", "0.5"),
                ("s2", "alice", "t", "alice", "4"),
                ("s1", "alice", "t", "alice", "2"),
                ("b1", "bob", "t", "alice", "1.5"),
            ],
        ),
        "bob": (
            [("b1", "0.5")],
            [("b1", "bob", "t", "alice", "0.5"), ("b1", "bob", "t", "alice", "1.5")],
        ),
    }
    result = simulate_plaintext(dataset(banks), iterations=1, delta_a=0.5)
    assert_scores(
        result,
        {
            ("alice", "s1"): F(1, 2),
            ("alice", "s2"): F(0),
            ("alice", "t"): F(2, 9),
            ("bob", "b1"): F(1, 4),
        },
    )


def test_source_listed_to_any_account_of_the_bank_counts(dataset: WriteDataset) -> None:
    # bob's file: a1 -> b1 (5) and b2 -> b1 (5). alice's file lists a1 -> b3 only (a row bob's
    # file lacks): alice does list a1 as sending to bob, so a1 counts for b1, while b3 gets no
    # edge (incoming edges come from bob's own file).
    # delta = 1/2, T = 1; r0: a1 = 1, b1 = 0, b2 = 1/2, b3 = 1/2.
    # b1 = 1/2 * 0 + 1/2 * (5 * 1 + 5 * 1/2) / 10 = 1/2 * 3/4 = 3/8
    # b3 = 1/2 * 1/2 = 1/4;  a1 = 1/2;  b2 = 1/4
    banks: dict[str, BankSpec] = {
        "alice": ([("a1", "1")], [("a1", "alice", "b3", "bob", "7")]),
        "bob": (
            [("b1", "0"), ("b2", "0.5"), ("b3", "0.5")],
            [("a1", "alice", "b1", "bob", "5"), ("b2", "bob", "b1", "bob", "5")],
        ),
    }
    result = simulate_plaintext(dataset(banks), iterations=1, delta_a=0.5)
    assert_scores(
        result,
        {
            ("alice", "a1"): F(1, 2),
            ("bob", "b1"): F(3, 8),
            ("bob", "b2"): F(1, 4),
            ("bob", "b3"): F(1, 4),
        },
    )


def test_source_missing_from_its_banks_file_is_left_out(tmp_path: Path) -> None:
    # bob's file lists a1 -> b1, but alice's file lists nothing sent to bob: a1 is left out
    # of both of b1's sums.
    # delta = 1/2, T = 1; r0: a1 = 1, b1 = 0, b2 = 1/2.
    # b1 = 1/2 * 0 + 1/2 * (5 * 1/2) / 5 = 1/4   (with a1 counted it would be 3/8)
    banks: dict[str, BankSpec] = {
        "alice": ([("a1", "1")], [("a1", "alice", "a2", "alice", "1")]),
        "bob": (
            [("b1", "0"), ("b2", "0.5")],
            [("a1", "alice", "b1", "bob", "5"), ("b2", "bob", "b1", "bob", "5")],
        ),
    }
    # a2 is implicit in alice (score 0): a2 = 1/2 * 0 + 1/2 * 1 = 1/2; a1 = 1/2.
    result = simulate_plaintext(write_dataset(tmp_path, banks), iterations=1, delta_a=0.5)
    assert_scores(
        result,
        {
            ("alice", "a1"): F(1, 2),
            ("alice", "a2"): F(1, 2),
            ("bob", "b1"): F(1, 4),
            ("bob", "b2"): F(1, 4),
        },
    )


def test_listing_in_another_period_does_not_count(dataset: WriteDataset) -> None:
    # bob lists a1 -> b1 in period 0; alice lists a1 -> b1 only in period 1.
    # delta = 1/2, T = 1; r0: a1 = 1, b1 = 0, b2 = 1/2.
    # Period 0: b1 <- b2 only: b1 = 1/2*0 + 1/2*1/2 = 1/4; b2 = 1/4; a1 = 1/2.
    # Period 1: bob's file has nothing to b1 in period 1: b1 = 1/8; b2 = 1/8; a1 = 1/4.
    # (Counting a1 in period 0 would give b1 = 1/2 * (5*1 + 5*1/2)/10 = 3/8 there.)
    banks: dict[str, BankSpec] = {
        "alice": ([("a1", "1")], [("a1", "alice", "b1", "bob", "5", "1")]),
        "bob": (
            [("b1", "0"), ("b2", "0.5")],
            [("a1", "alice", "b1", "bob", "5", "0"), ("b2", "bob", "b1", "bob", "5", "0")],
        ),
    }
    result = simulate_plaintext(dataset(banks), iterations=1, delta_a=0.5)
    assert_scores(
        result, {("alice", "a1"): F(1, 4), ("bob", "b1"): F(1, 8), ("bob", "b2"): F(1, 8)}
    )


def test_destination_file_is_what_counts(dataset: WriteDataset) -> None:
    # alice lists a1 -> b1 but bob's file does not: b1 has no incoming edge and decays.
    # delta = 1/2, T = 2: b1 = 1/2 -> 1/4 -> 1/8;  a1 = 1 -> 1/2 -> 1/4.
    banks: dict[str, BankSpec] = {
        "alice": ([("a1", "1")], [("a1", "alice", "b1", "bob", "5")]),
        "bob": ([("b1", "0.5")], []),
    }
    result = simulate_plaintext(dataset(banks), iterations=2, delta_a=0.5)
    assert_scores(result, {("alice", "a1"): F(1, 4), ("bob", "b1"): F(1, 8)})


def test_account_without_sources_decays(dataset: WriteDataset) -> None:
    # x has no incoming edge; y's only source (bob's z) is not listed by bob: both decay as
    # r0 * prod_k (1 - a / k**b).
    banks: dict[str, BankSpec] = {
        "alice": (
            [("x", "0.8"), ("y", "0.6")],
            [("z", "bob", "y", "alice", "3"), ("x", "alice", "q", "bob", "1")],
        ),
        "bob": ([("z", "1"), ("q", "0")], [("x", "alice", "q", "bob", "1")]),
    }
    root = dataset(banks)
    result = simulate_plaintext(root, iterations=7, delta_a=0.3)
    got = scores_of(result)
    assert math.isclose(got["alice", "x"], 0.8 * 0.7**7, rel_tol=0, abs_tol=TOL)
    assert math.isclose(got["alice", "y"], 0.6 * 0.7**7, rel_tol=0, abs_tol=TOL)
    assert math.isclose(got["bob", "z"], 0.7**7, rel_tol=0, abs_tol=TOL)
    result = simulate_plaintext(root, iterations=5, delta_a=0.3, delta_b=0.5)
    factor = math.prod(1 - 0.3 / k**0.5 for k in range(1, 6))
    got = scores_of(result)
    assert math.isclose(got["alice", "x"], 0.8 * factor, rel_tol=0, abs_tol=TOL)
    assert math.isclose(got["alice", "y"], 0.6 * factor, rel_tol=0, abs_tol=TOL)


def test_implicit_accounts_and_self_loops(dataset: WriteDataset) -> None:
    # y (source, row 1) and x (destination, row 2) are alice accounts missing from
    # accounts.csv: they start at 0 and follow a1 in that order. The self-loop a1 -> a1 (100)
    # is ignored. bob's w is only named in alice's file, so it is no account of bob's.
    # delta = 1/2, T = 1; r0: a1 = 1, y = 0, x = 0.
    # a1 = 1/2 * 1 + 1/2 * (3 * 0) / 3 = 1/2   (counting the loop: 1/2 + 1/2 * 100/103)
    # x = 1/2 * 0 + 1/2 * 1 = 1/2; y = 0
    banks: dict[str, BankSpec] = {
        "alice": (
            [("a1", "1")],
            [
                ("y", "alice", "a1", "alice", "3"),
                ("a1", "alice", "x", "alice", "2"),
                ("a1", "alice", "a1", "alice", "100"),
                ("a1", "alice", "w", "bob", "1"),
            ],
        ),
        "bob": ([("b1", "0.5")], []),
    }
    result = simulate_plaintext(dataset(banks), iterations=1, delta_a=0.5)
    assert order_of(result) == [("alice", "a1"), ("alice", "y"), ("alice", "x"), ("bob", "b1")]
    assert_scores(
        result,
        {
            ("alice", "a1"): F(1, 2),
            ("alice", "y"): F(0),
            ("alice", "x"): F(1, 2),
            ("bob", "b1"): F(1, 4),
        },
    )
    assert len(result.warnings) == 2
    implicit, loops = result.warnings
    assert "alice" in implicit and "transactions.csv" in implicit and "2 account(s)" in implicit
    assert "transactions.csv" in loops and "1 self-loop" in loops
    # T = 0 keeps the initial scores, implicit ones at 0.
    zero = simulate_plaintext(dataset(banks), iterations=0)
    assert scores_of(zero) == {
        ("alice", "a1"): 1.0,
        ("alice", "y"): 0.0,
        ("alice", "x"): 0.0,
        ("bob", "b1"): 0.5,
    }


def test_implicit_order_ignores_other_banks_ids(dataset: WriteDataset) -> None:
    # bob's file: row 1 names alice's account "z"; bob's own implicit accounts are y (row 2)
    # and then z (row 3), both as sources, so the order is b1, y, z.
    banks: dict[str, BankSpec] = {
        "alice": ([("z", "0")], [("z", "alice", "b1", "bob", "1")]),
        "bob": (
            [("b1", "0")],
            [
                ("z", "alice", "b1", "bob", "1"),
                ("y", "bob", "b1", "bob", "1"),
                ("z", "bob", "b1", "bob", "1"),
            ],
        ),
    }
    result = simulate_plaintext(dataset(banks), iterations=1)
    assert result.account_ids[1] == ("b1", "y", "z")


def test_implicit_order_ignores_self_loops(dataset: WriteDataset) -> None:
    # Row 1 (n1 -> n1) is ignored; the first row that counts is n2 -> n1, so n2 comes first
    # (as the source, and also as the first account seen in that row).
    banks: dict[str, BankSpec] = {
        "alice": (
            [("a1", "0")],
            [("n1", "alice", "n1", "alice", "1"), ("n2", "alice", "n1", "alice", "1")],
        ),
        "bob": ([("b1", "0")], []),
    }
    result = simulate_plaintext(dataset(banks), iterations=1)
    assert result.account_ids[0] == ("a1", "n2", "n1")


def test_zero_amounts_only_give_no_weighted_term(dataset: WriteDataset) -> None:
    # t's only incoming edges have amount 0 (own s1 and bob's listed b1): weighted term 0.
    # u receives 0 from s1 (score 1) and 2 from s2 (score 0): weighted term 0 as well.
    # delta = 1/2, T = 2; r0: s1 = 1, s2 = 0, t = 0.8, u = 0.4, b1 = 1.
    # t = 0.8 * 1/2 * 1/2 = 1/5;  u = 1/2 * 0.4 + 1/2 * (2 * 0)/2 = 1/5, then 1/10.
    banks: dict[str, BankSpec] = {
        "alice": (
            [("s1", "1"), ("s2", "0"), ("t", "0.8"), ("u", "0.4")],
            [
                ("s1", "alice", "t", "alice", "0"),
                ("b1", "bob", "t", "alice", "0.00"),
                ("s1", "alice", "u", "alice", "0"),
                ("s2", "alice", "u", "alice", "2"),
            ],
        ),
        "bob": ([("b1", "1")], [("b1", "bob", "t", "alice", "0.00")]),
    }
    result = simulate_plaintext(dataset(banks), iterations=2, delta_a=0.5)
    assert_scores(
        result,
        {
            ("alice", "s1"): F(1, 4),
            ("alice", "s2"): F(0),
            ("alice", "t"): F(1, 5),
            ("alice", "u"): F(1, 10),
            ("bob", "b1"): F(1, 4),
        },
    )


def test_banks_in_sorted_directory_order(dataset: WriteDataset) -> None:
    banks: dict[str, BankSpec] = {
        "zeta": ([("z2", "0.5"), ("z1", "0")], []),
        "Beta": ([("b", "1")], []),
        "alpha": ([("a", "0.25")], []),
    }
    result = simulate_plaintext(dataset(banks), iterations=0)
    assert order_of(result) == [("Beta", "b"), ("alpha", "a"), ("zeta", "z2"), ("zeta", "z1")]
    assert result.scores.tolist() == [1.0, 0.25, 0.5, 0.0]


# ---------------------------------------------------------------------- reference model

Row = tuple[
    str, str, str, str, str, str
]  # id_source, bank_source, id_dest, bank_dest, amount, period


def parse_row(row: Sequence[object]) -> tuple[Key, Key, float, int]:
    period = int(str(row[5])) if len(row) == 6 else 0
    return (str(row[1]), str(row[0])), (str(row[3]), str(row[2])), float(str(row[4])), period


def reference(
    banks: Mapping[str, BankSpec], iterations: int, a: float, b: float
) -> tuple[list[Key], dict[Key, float], dict[str, tuple[int, int]]]:
    """Output order, final scores and per bank (implicit accounts, self-loops), from scratch."""
    names = sorted(banks)
    order: list[Key] = []
    score: dict[Key, float] = {}
    counts: dict[str, tuple[int, int]] = {}
    rows: dict[str, list[tuple[Key, Key, float, int]]] = {}
    for name in names:
        accounts, transactions = banks[name]
        for account, risk in accounts:
            order.append((name, account))
            score[name, account] = float(str(risk))
        kept: list[tuple[Key, Key, float, int]] = []
        loops = implicit = 0
        for raw in transactions:
            src, dst, amount, period = parse_row(raw)
            if src == dst:
                loops += 1
                continue
            kept.append((src, dst, amount, period))
        # implicit accounts: own-bank endpoints, id_source column first, then id_destination
        for column in (0, 1):
            for row in kept:
                key = row[1] if column else row[0]
                if key[0] == name and key not in score:
                    order.append(key)
                    score[key] = 0.0
                    implicit += 1
        rows[name] = kept
        counts[name] = (implicit, loops)
    periods = sorted({row[3] for name in names for row in rows[name]}) or [0]
    for p in periods:
        # (source account, destination bank) pairs each bank lists as sent, from its own file
        listed = {
            (src, dst[0])
            for name in names
            for src, dst, _, period in rows[name]
            if period == p and src[0] == name and dst[0] != name
        }
        incoming: dict[Key, dict[Key, float]] = defaultdict(lambda: defaultdict(float))
        for name in names:
            for src, dst, amount, period in rows[name]:
                if period != p or dst[0] != name:
                    continue
                if src[0] == name or (src, name) in listed:
                    incoming[dst][src] += amount
        for k in range(1, iterations + 1):
            delta = a / k**b
            new = {}
            for key, r in score.items():
                sources = incoming.get(key, {})
                total = sum(sources.values())
                mean = sum(amt / total * score[s] for s, amt in sources.items()) if total else 0.0
                new[key] = (1 - delta) * r + delta * mean
            score = new
    return order, score, counts


# -------------------------------------------------------------------------- strategies

BANK_POOL = ("alice", "bob", "charlie", "dave", "Eve")
ID_POOL = ("x1", "x2", "a", "b", "c", "d", "e")  # shared between banks on purpose
# Implicit ids are bank-specific here; test_implicit_order_ignores_other_banks_ids covers ids
# that other banks use too.
IMPLICIT_POOL = ("new1", "new2")

risk_scores = st.one_of(
    st.sampled_from(["0", "1", "0.5", "1.0", "0.000"]),
    st.floats(min_value=0.0, max_value=1.0).map(repr),
)
amounts = st.one_of(
    st.sampled_from(["0", "0.00", "1", "2.5", "0.1", "100", "1e3"]),
    st.decimals(min_value=0, max_value=10**6, places=2).map(str),
    st.floats(min_value=0.0, max_value=1e9).map(repr),
)


@st.composite
def datasets(draw: st.DrawFn) -> dict[str, BankSpec]:
    names = draw(st.lists(st.sampled_from(BANK_POOL), min_size=2, max_size=4, unique=True))
    accounts = {
        name: [
            (account, draw(risk_scores))
            for account in draw(
                st.lists(st.sampled_from(ID_POOL), min_size=1, max_size=6, unique=True)
            )
        ]
        for name in names
    }
    use_periods = draw(st.booleans())
    rows: dict[str, list[Row]] = {name: [] for name in names}

    def endpoint(bank: str) -> str:
        if draw(st.integers(0, 9)) == 0:
            return f"{bank}-{draw(st.sampled_from(IMPLICIT_POOL))}"
        return draw(st.sampled_from([account for account, _ in accounts[bank]]))

    for _ in range(draw(st.integers(0, 25))):
        sb, db = draw(st.sampled_from(names)), draw(st.sampled_from(names))
        period = draw(st.integers(0, 2)) if use_periods else 0
        row: Row = (endpoint(sb), sb, endpoint(db), db, draw(amounts), str(period))
        if sb == db:
            rows[sb].append(row)
            continue
        # ~80% in both files, else only one (or, with periods, another period at the destination)
        where = draw(st.sampled_from(["both"] * 8 + ["source", "destination", "shifted"]))
        if where != "destination":
            rows[sb].append(row)
        if where in ("both", "destination"):
            rows[db].append(row)
        elif where == "shifted":
            rows[db].append((*row[:5], str((period + 1) % 3)))
    banks: dict[str, BankSpec] = {}
    for name in names:
        explicit = use_periods or draw(st.booleans())
        banks[name] = (accounts[name], rows[name] if explicit else [r[:5] for r in rows[name]])
    return banks


def check_against_reference(
    banks: Mapping[str, BankSpec], iterations: int, a: float, b: float
) -> SimulationResult:
    with tempfile.TemporaryDirectory() as tmp:
        root = write_dataset(Path(tmp), banks)
        result = simulate_plaintext(root, iterations=iterations, delta_a=a, delta_b=b)
    order, expected, counts = reference(banks, iterations, a, b)
    got = scores_of(result)
    assert order_of(result) == order
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert abs(got[key] - value) <= TOL, (key, got[key], value)
        assert 0.0 <= got[key] <= 1.0, (key, got[key])
    for bank, (implicit, loops) in counts.items():
        mine = [w for w in result.warnings if f"{bank}/transactions.csv" in w]
        assert len(mine) == (implicit > 0) + (loops > 0), mine
        if implicit:
            assert any(f"{implicit} account(s) of bank {bank!r}" in w for w in mine), mine
        if loops:
            assert any(f"{loops} self-loop" in w for w in mine), mine
    return result


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    banks=datasets(),
    iterations=st.integers(0, 4),
    a=st.one_of(st.sampled_from([0.5, 0.3, 0.9]), st.floats(0.01, 0.99)),
    b=st.sampled_from([0.0, 0.5, 1.0, 2.0]),
)
def test_matches_reference(banks: dict[str, BankSpec], iterations: int, a: float, b: float) -> None:
    check_against_reference(banks, iterations, a, b)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(banks=datasets())
def test_zero_iterations_return_initial_scores(banks: dict[str, BankSpec]) -> None:
    result = check_against_reference(banks, 0, 0.5, 0.0)
    _, initial, _ = reference(banks, 0, 0.5, 0.0)
    assert scores_of(result) == initial


# ------------------------------------------------------------------------------- CLI


def riskprop_command() -> list[str]:
    script = Path(sys.executable).with_name("riskprop")
    return [str(script)] if script.exists() else [sys.executable, "-m", "riskprop"]


def parse_scores_csv(text: str) -> list[tuple[str, str, float]]:
    reader = csv.reader(io.StringIO(text))
    assert next(reader) == ["bank", "id", "risk_score"]
    return [(bank, account, float(value)) for bank, account, value in reader]


THIRDS: dict[str, BankSpec] = {
    "alice": (
        [("a1", repr(1 / 3)), ("a2", "0.7")],
        [("a1", "alice", "b1", "bob", "3", "0"), ("b1", "bob", "a2", "alice", "7", "1")],
    ),
    "bob": (
        [("b1", "0.1"), ("b2", "0.9")],
        [
            ("a1", "alice", "b1", "bob", "3", "0"),
            ("b2", "bob", "b1", "bob", "1.1", "0"),
            ("b1", "bob", "a2", "alice", "7", "1"),
            ("b1", "bob", "n", "bob", "2", "1"),
        ],
    ),
}


def test_cli_writes_library_scores_at_full_precision(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "data", THIRDS)
    library = simulate_plaintext(root, iterations=3, delta_a=0.35, delta_b=0.5)
    out = tmp_path / "scores.csv"
    args = ["simulate", str(root), "--iterations", "3", "--delta-a", "0.35", "--delta-b", "0.5"]
    done = subprocess.run(
        [*riskprop_command(), *args, "--out", str(out)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    expected = [(bank, account, score) for (bank, account), score in scores_of(library).items()]
    rows = parse_scores_csv(out.read_text())
    assert rows == expected  # exact float equality: the text round-trips
    assert out.read_text() == library.csv()
    # the numbers need full precision: 6 decimals would not do
    assert any(len(field(score)) > 10 for _, _, score in rows)
    # to stdout, same text; the implicit account n is warned about on stderr
    done = subprocess.run([*riskprop_command(), *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert parse_scores_csv(done.stdout) == expected
    assert "1 account(s) of bank 'bob'" in done.stderr
    # and both agree with the reference
    _, reference_scores, _ = reference(THIRDS, 3, 0.35, 0.5)
    for bank, account, score in rows:
        assert abs(score - reference_scores[bank, account]) <= TOL
