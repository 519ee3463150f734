"""One bank's ranked, explained results: ranks and ties, bands, shares and senders worked out by
hand on a small bank, the CSV round trip, and one-line errors."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from helpers import write_dataset

from riskprop.cli import main
from riskprop.core.data import BankData, load_bank
from riskprop.errors import InputError, ParameterError
from riskprop.files.results import format_score, global_scores_csv, scores_csv
from riskprop.lab.analyst import (
    DEFAULT_BANDS,
    RANKED_HEADER,
    Bands,
    Source,
    competition_ranks,
    load_own_bank,
    rank_bank,
    ranked_text,
    read_bank_scores,
    write_ranked,
    write_ranked_dataset,
)
from riskprop.lab.report import ReportInputs, RunInfo, make_report
from riskprop.lab.simulate import simulate_plaintext

#: alice's accounts: a1 is flagged (initial >= 0.5), the others are not
ALICE = [("a1", 0.9), ("a2", 0.1), ("a3", 0.0), ("a4", 0.2), ('odd, "one"', 0.3)]
#: alice's transactions file (as alice holds it): amounts chosen so the shares are easy
ALICE_TX = [
    # into a2: 60 + 20 from flagged a1 (two periods), 30 from bob's b1, 10 from a3 -> A = 120
    ("a1", "alice", "a2", "alice", 60.0, 0),
    ("a1", "alice", "a2", "alice", 20.0, 1),
    ("b1", "bob", "a2", "alice", 30.0, 0),
    ("a3", "alice", "a2", "alice", 10.0, 0),
    # into a3: 5 from a2 and 5 from bob's b2, a tie -> A = 10
    ("b2", "bob", "a3", "alice", 5.0, 0),
    ("a2", "alice", "a3", "alice", 5.0, 0),
    # into a1: four senders, the smallest is left out of the top three -> A = 10
    ("a2", "alice", "a1", "alice", 1.0, 0),
    ("a3", "alice", "a1", "alice", 2.0, 0),
    ("b1", "bob", "a1", "alice", 3.0, 0),
    ("b2", "bob", "a1", "alice", 4.0, 0),
    # out of alice only: no incoming amount for anybody here
    ("a4", "alice", "b1", "bob", 50.0, 0),
    # a4 receives only a zero amount: A = 0, shares undefined
    ("b1", "bob", "a4", "alice", 0.0, 0),
]
BOB = [("b1", 0.7), ("b2", 0.0)]
BOB_TX = [row for row in ALICE_TX if "bob" in (row[1], row[3])]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "data", {"alice": (ALICE, ALICE_TX), "bob": (BOB, BOB_TX)})


@pytest.fixture
def alice(data: Path) -> BankData:
    return load_bank(data / "alice", "alice", ("alice", "bob"))


def positions(bank: BankData) -> dict[str, int]:
    return {account: i for i, account in enumerate(bank.account_ids)}


def test_ranks_share_the_best_place_on_ties_and_list_ties_in_input_order(alice: BankData) -> None:
    assert competition_ranks(np.array([0.5, 0.8, 0.5, 0.2, 0.8])).tolist() == [3, 1, 3, 5, 1]
    assert competition_ranks(np.array([0.0, 0.0])).tolist() == [1, 1]
    final = np.array([0.4, 0.7, 0.4, 0.1, 0.7])
    ranking = rank_bank(alice, final)
    assert ranking.rank.tolist() == [3, 1, 3, 5, 1]
    assert ranking.order.tolist() == [1, 4, 0, 2, 3]
    assert [row[:2] for row in ranking.rows()] == [
        ["a2", "1"],
        ['odd, "one"', "1"],
        ["a1", "3"],
        ["a3", "3"],
        ["a4", "5"],
    ]


def test_bands_include_their_lower_edge() -> None:
    scores = np.array([0.0, 0.2999999, 0.3, 0.5999999, 0.6, 0.7999999, 0.8, 1.0])
    assert DEFAULT_BANDS.of(scores).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert DEFAULT_BANDS.names == ("low", "medium", "high", "critical")
    assert DEFAULT_BANDS.describe() == "low < 0.3 <= medium < 0.6 <= high < 0.8 <= critical"
    assert Bands.parse("0.3, 0.6, 0.8") == DEFAULT_BANDS
    assert Bands.parse(DEFAULT_BANDS.text()) == DEFAULT_BANDS
    two = Bands.parse("calm:0,alert:0.5")
    assert two.of(np.array([0.49, 0.5, 1.0])).tolist() == [0, 1, 1]
    assert Bands.parse("all:0").of(np.array([0.0, 1.0])).tolist() == [0, 0]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        ("0.3,0.6", "2 edge(s) without names"),
        ("low:0.1,high:0.5", "must start at 0"),
        ("low:0,high:0.5,mid:0.4", "edges must increase"),
        ("low:0,mid:0.5,high:0.5", "edges must increase"),
        ("low:0,low:0.5", "names must differ"),
        ("low:0,high:1.5", "edges must lie in [0, 1]"),
        ("low:0,high:x", "'x' is not a number"),
        ("low:0,<b>:0.5", "'<b>' is not of"),
        ("low:0,high", "'high' is not NAME:LOWER"),
    ],
)
def test_bad_bands_are_one_line_naming_the_option(
    text: str, problem: str, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ParameterError) as error:
        Bands.parse(text)
    assert error.value.name == "bands" and problem in error.value.problem
    scores = tmp_path / "scores.csv"
    scores.write_text(scores_csv(("id", "risk_score"), [(a,) for a, _ in ALICE], np.zeros(5)))
    out = tmp_path / "out"
    with pytest.raises(SystemExit):
        main(["report", "--data", str(data / "alice"), "--scores", str(scores), "--out", str(out),
              "--bands", text])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("riskprop: error: --bands: ") and problem in err[0]
    assert not out.exists()


def test_shares_of_incoming_money_worked_out_by_hand(alice: BankData) -> None:
    ranking = rank_bank(alice, np.full(5, 0.5), flag_threshold=0.5)
    at = positions(alice)
    a1, a2, a3, a4, odd = (at[a] for a in ("a1", "a2", "a3", "a4", 'odd, "one"'))
    assert ranking.incoming[[a1, a2, a3, a4, odd]].tolist() == [10.0, 120.0, 10.0, 0.0, 0.0]
    assert ranking.foreign_share[a2] == pytest.approx(30 / 120)
    assert ranking.flagged_share[a2] == pytest.approx(80 / 120)  # both periods of a1
    assert ranking.foreign_share[a3] == pytest.approx(0.5)
    assert ranking.flagged_share[a3] == 0.0
    assert ranking.foreign_share[a1] == pytest.approx(0.7)
    assert ranking.flagged_share[a1] == 0.0  # a1 does not send to itself
    for share in (ranking.foreign_share, ranking.flagged_share):
        assert math.isnan(share[a4]) and math.isnan(share[odd])  # no incoming amount
    # a lower threshold flags a2 (0.1) and a4 (0.2) as well
    lower = rank_bank(alice, np.full(5, 0.5), flag_threshold=0.1)
    assert lower.flagged_share[a3] == pytest.approx(0.5)
    assert lower.flagged_share[a1] == pytest.approx(0.1)
    rows = {row[0]: dict(zip(RANKED_HEADER, row, strict=True)) for row in ranking.rows()}
    assert rows["a4"]["foreign_share"] == rows["a4"]["flagged_share"] == ""
    assert rows["a2"]["flagged_share"] == format_score(80 / 120)


def test_top_senders_largest_first_own_before_others_on_ties(alice: BankData) -> None:
    ranking = rank_bank(alice, np.full(5, 0.5))
    at = positions(alice)
    top = {account: ranking.top_sources[at[account]] for account in ("a1", "a2", "a3", "a4")}
    assert top["a2"] == (
        Source(None, "a1", pytest.approx(80 / 120)),  # type: ignore[arg-type]
        Source("bob", "b1", pytest.approx(30 / 120)),  # type: ignore[arg-type]
        Source(None, "a3", pytest.approx(10 / 120)),  # type: ignore[arg-type]
    )
    assert [str(s) for s in top["a1"]] == ["bob:b2 (40.0%)", "bob:b1 (30.0%)", "a3 (20.0%)"]
    assert [str(s) for s in top["a3"]] == ["a2 (50.0%)", "bob:b2 (50.0%)"]
    assert top["a4"] == ()  # a zero amount names no sender
    rows = {row[0]: dict(zip(RANKED_HEADER, row, strict=True)) for row in ranking.rows()}
    assert rows["a2"]["top_sources"] == "a1 (66.7%); bob:b1 (25.0%); a3 (8.3%)"
    assert rank_bank(alice, np.full(5, 0.5), top_sources=1).top_sources[at["a1"]] == (
        Source("bob", "b2", 0.4),
    )


def test_ranked_rows_carry_scores_change_and_bands(alice: BankData) -> None:
    final = np.array([0.75, 0.3, 0.05, 0.2, 0.1 + 0.2])
    ranking = rank_bank(alice, final)
    rows = {row[0]: dict(zip(RANKED_HEADER, row, strict=True)) for row in ranking.rows()}
    a1 = rows["a1"]
    assert (a1["rank"], a1["initial_score"], a1["final_score"]) == ("1", "0.9", "0.75")
    assert float(a1["change"]) == 0.75 - 0.9
    assert (a1["band"], a1["initial_band"]) == ("high", "critical")
    assert rows["a2"]["band"] == "medium" and rows["a2"]["initial_band"] == "low"
    assert rows['odd, "one"']["final_score"] == format_score(0.1 + 0.2)  # full precision


HOSTILE = ("a,b", 'say "hi"', "two\nlines", "cr\r\nlf", "lone\rcr", "ünïcødé €", " pad ", "=1+2")


def test_the_ranked_csv_round_trips_any_id(tmp_path: Path) -> None:
    bank_dir = tmp_path / "alice"
    bank_dir.mkdir()
    with (bank_dir / "accounts.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n", quoting=csv.QUOTE_ALL)
        writer.writerow(["id", "risk_score"])
        writer.writerows([account, f"{i / 10}"] for i, account in enumerate(HOSTILE))
        (bank_dir / "transactions.csv").write_text(
            "id_source,bank_source,id_destination,bank_destination,amount\n"
            '"lone\rcr",alice,"a,b",alice,4\n"two\nlines",alice,"a,b",alice,1\n'
        )
    bank = load_bank(bank_dir, "alice", ("alice",))
    assert bank.account_ids == HOSTILE
    final = np.linspace(0.9, 0.1, len(HOSTILE))
    ranking = rank_bank(bank, final)
    write_ranked(tmp_path / "ranked.csv", ranking)
    with (tmp_path / "ranked.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == list(RANKED_HEADER)
    assert all(len(row) == len(RANKED_HEADER) for row in rows)
    assert [row[0] for row in rows[1:]] == list(HOSTILE)
    assert [float(row[3]) for row in rows[1:]] == final.tolist()
    assert rows[1][-1] == "lone\rcr (80.0%); two\nlines (20.0%)"
    assert (tmp_path / "ranked.csv").read_bytes() == ranked_text(ranking).encode()
    assert (tmp_path / "ranked.csv").stat().st_mode & 0o777 == 0o600


def test_scores_are_read_in_either_layout_and_only_the_bank_s_rows(
    alice: BankData, tmp_path: Path
) -> None:
    ids = [a for a, _ in reversed(ALICE)]  # any order
    own = tmp_path / "own.csv"
    own.write_text(scores_csv(("id", "risk_score"), [(a,) for a in ids], np.arange(5) / 10))
    expected = [0.4, 0.3, 0.2, 0.1, 0.0]  # in alice's account order
    assert read_bank_scores(own, alice).tolist() == expected
    everyone = tmp_path / "all.csv"
    everyone.write_text(
        global_scores_csv(
            ("alice", "bob"),
            (tuple(ids), ("b1", "a1")),  # bob has an account named like one of alice's
            np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.987654321, 0.123456789]),
        )
    )
    assert read_bank_scores(everyone, alice).tolist() == expected
    inputs = ReportInputs(alice, read_bank_scores(everyone, alice), RunInfo(str(everyone)))
    written = make_report(tmp_path / "out", inputs)
    for path in (written.ranked, written.html):  # bob's scores appear nowhere
        text = path.read_text(encoding="utf-8")
        assert "0.987654321" not in text and "0.123456789" not in text and "0.9877" not in text


@pytest.mark.parametrize(
    ("rows", "problem"),
    [
        ("id,risk_score\na1,0.1\na2,0.2\na3,0.3\na4,0.4\n", "no score for account 'odd, \"one\"'"),
        ("id,risk_score\nb1,0.1\nb2,0.2\n", "account 'b1' is not an account of bank 'alice'"),
        ("bank,id,risk_score\nbob,b1,0.1\n", "no scores of bank 'alice' (banks in it: bob)"),
        ("id,risk_score\na1,0.1\na1,0.2\n", "account 'a1' has more than one score"),
        ("id,risk_score\na1,1.5\n", "account 'a1': score 1.5 is outside [0, 1]"),
        ("id,risk_score\na1,nan\n", "account 'a1': score nan is outside [0, 1]"),
        ("id,risk_score\na1,high\n", "row 2: 'high' is not a number"),
        ("account,score\n", "expected the header id,risk_score"),
    ],
)
def test_bad_scores_are_one_line_and_nothing_is_written(
    rows: str, problem: str, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scores = tmp_path / "scores.csv"
    scores.write_text(rows)
    with pytest.raises(InputError) as error:
        read_bank_scores(scores, load_bank(data / "alice", "alice", ("alice", "bob")))
    assert problem in str(error.value) and str(scores) in str(error.value)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "--data", str(data / "alice"), "--scores", str(scores), "--out", str(out)])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("riskprop: error: ") and problem in err[0], err
    assert not out.exists()


def test_bad_inputs_name_the_file_or_option(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(InputError, match=r"a data set\? give its bank's directory"):
        load_own_bank(data, "alice")
    with pytest.raises(InputError, match=r"names the bank\(s\) alice, bob but not 'carol'"):
        load_own_bank(data / "alice", "carol")
    assert load_own_bank(data / "alice", "alice").banks == ("alice", "bob")
    alice = load_own_bank(data / "alice", "alice")
    with pytest.raises(ParameterError, match="flag_threshold: must lie in"):
        rank_bank(alice, np.zeros(5), flag_threshold=1.5)
    with pytest.raises(InputError, match="4 final score"):
        rank_bank(alice, np.zeros(4))
    scores = tmp_path / "scores.csv"
    scores.write_text(scores_csv(("id", "risk_score"), [(a,) for a, _ in ALICE], np.zeros(5)))
    with pytest.raises(SystemExit):
        main(["report", "--data", str(data / "alice"), "--scores", str(scores),
              "--out", str(tmp_path / "o"), "--flag-threshold", "-1"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["riskprop: error: --flag-threshold: must lie in [0, 1] (got -1.0)"]
    with pytest.raises(SystemExit):
        main(["report", "--data", str(data / "alice"), "--scores", str(tmp_path / "nope.csv"),
              "--out", str(tmp_path / "o")])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"riskprop: error: {tmp_path / 'nope.csv'}: file not found"]
    assert not (tmp_path / "o").exists()


def test_a_bank_without_accounts_still_gets_a_report(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data", {"alice": ([], [])})
    bank = load_bank(data / "alice", "alice", ("alice",))
    scores = tmp_path / "scores.csv"
    scores.write_text("id,risk_score\n")
    inputs = ReportInputs(bank, read_bank_scores(scores, bank), RunInfo(str(scores)))
    written = make_report(tmp_path / "out", inputs)
    assert written.ranked.read_text() == ",".join(RANKED_HEADER) + "\n"
    assert "Top 0 accounts" in written.html.read_text()


def test_every_bank_of_a_simulation_gets_its_own_ranked_file(data: Path, tmp_path: Path) -> None:
    result = simulate_plaintext(data, iterations=2)
    paths = write_ranked_dataset(data, result.by_account(), tmp_path / "ranked")
    assert paths == [tmp_path / "ranked" / bank / "ranked.csv" for bank in ("alice", "bob")]
    scores = result.by_account()
    for bank, path in zip(("alice", "bob"), paths, strict=True):
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        own = {account for (b, account) in scores if b == bank}
        assert {row["id"] for row in rows} == own  # its own accounts only
        assert all(row["final_score"] == format_score(scores[bank, row["id"]]) for row in rows)
    missing = dict(scores)
    del missing["bob", "b2"]
    with pytest.raises(InputError, match="no score for account 'b2' of bank 'bob'"):
        write_ranked_dataset(data, missing, tmp_path / "never")
    assert not (tmp_path / "never").exists()
