"""``riskprop report``: after a one-shot secure run of real node processes (``--player``), from
a service's ``OUT/latest``, and from simulated scores; the page in headless Chromium."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import run_cli, write_dataset
from nodes import ITERATIONS, Network, make_network, wait_all
from selenium.webdriver.common.by import By
from service import browser
from service.browser import Browser, script_errors

from riskprop.core.data import load_bank
from riskprop.files.results import REPORT_FILE, RESULTS_FILE, format_score, read_report
from riskprop.lab.analyst import RANKED_HEADER
from riskprop.lab.simulate import simulate_plaintext
from riskprop.service.layout import point_latest, run_folder

chromium = browser.chromium
PARTIES = ["alice", "bob", "charlie"]
#: bars of the three histograms: 20 bins for each score, 21 for the change
BARS = 20 + 20 + 21


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    """A one-shot secure run of three node processes, as operators start them."""
    net = make_network(tmp_path_factory.mktemp("net"), PARTIES)
    processes = [net.start(party) for party in PARTIES]
    try:
        codes = wait_all(processes, 180)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    assert codes == [0, 0, 0], [net.log(p)[-2000:] for p in PARTIES]
    yield net


def report(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``riskprop report ARGS``: (exit code, stdout, stderr)."""
    return run_cli(["report", *args], capsys)


def read_ranked(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == RANKED_HEADER
        return list(reader)


def test_report_of_a_node_s_one_shot_run(
    network: Network, tmp_path: Path, capsys: pytest.CaptureFixture[str], chromium: Browser
) -> None:
    out = tmp_path / "report"
    code, stdout, err = report(
        ["--player", "alice", "--config", str(network.configs), "--out", str(out)], capsys
    )
    assert code == 0, err
    assert stdout.startswith("alice, run test-run: wrote ") and "report.html" in stdout
    bank = load_bank(network.data / "alice", "alice", PARTIES)
    with (network.out / "alice" / RESULTS_FILE).open(newline="") as handle:
        final = {row["id"]: row["risk_score"] for row in csv.DictReader(handle)}
    rows = read_ranked(out / "ranked.csv")
    assert sorted(row["id"] for row in rows) == sorted(bank.account_ids)
    for row in rows:  # the run's scores, to the last digit
        assert row["final_score"] == final[row["id"]]
    initial = dict(zip(bank.account_ids, bank.initial.tolist(), strict=True))
    assert all(float(row["initial_score"]) == initial[row["id"]] for row in rows)
    ranks = [int(row["rank"]) for row in rows]
    assert ranks[0] == 1 and ranks == sorted(ranks)
    scores = [float(row["final_score"]) for row in rows]
    assert scores == sorted(scores, reverse=True)
    assert (out / "ranked.csv").stat().st_mode & 0o777 == 0o600  # as the node's results

    chromium.get((out / "report.html").as_uri())
    assert chromium.title == "Risk report: bank alice, run test-run"
    summary = chromium.find_element(By.ID, "summary").text
    assert f"iterations T per period\n{ITERATIONS}" in summary
    assert "banks\nalice, bob, charlie" in summary
    assert f"accounts\n{bank.n_accounts}" in summary
    charts = chromium.find_elements(By.CSS_SELECTOR, "svg.histogram")
    assert len(charts) == 3 and all(chart.size["height"] > 100 for chart in charts)
    bars = chromium.find_elements(By.CSS_SELECTOR, "svg.histogram rect.bar")
    assert len(bars) == BARS
    counts = [int(bar.get_attribute("data-count") or 0) for bar in bars]
    assert sum(counts[:20]) == sum(counts[20:40]) == sum(counts[40:]) == bank.n_accounts
    assert any(bar.size["height"] > 50 for bar in bars)  # drawn, not only listed
    cells = [
        [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
        for row in chromium.find_elements(By.CSS_SELECTOR, "#top-accounts tbody tr")
    ]
    top = min(25, bank.n_accounts)
    assert [(c[0], c[1]) for c in cells] == [(r["rank"], r["id"]) for r in rows[:top]]
    assert [c[3] for c in cells] == [f"{float(r['final_score']):.4f}" for r in rows[:top]]
    assert script_errors(chromium) == []
    assert chromium.execute_script("return document.scripts.length") == 0


def test_report_of_a_service_reads_latest_and_checks_what_it_reads(
    network: Network, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A service's layout (OUT/runs/<run>/, OUT/latest) made from the one-shot run's files in a
    copy of alice's configuration whose output is elsewhere."""
    output = tmp_path / "service-out"
    folder = run_folder(output, "test-run")
    folder.mkdir(parents=True)
    for name in (RESULTS_FILE, REPORT_FILE):
        shutil.copy(network.out / "alice" / name, folder / name)
    point_latest(output, "test-run")
    configs = tmp_path / "configs"
    shutil.copytree(network.configs, configs)
    player = configs / "alice.yaml"
    player.write_text(
        player.read_text().replace(str(network.out / "alice"), str(output)), encoding="utf-8"
    )
    base = ["--player", "alice", "--config", str(configs)]
    code, _, err = report([*base, "--out", str(tmp_path / "a")], capsys)
    assert code == 0, err
    expected = (network.out / "alice" / RESULTS_FILE).read_text()
    assert len(read_ranked(tmp_path / "a" / "ranked.csv")) == expected.count("\n") - 1
    code, _, err = report([*base, "--run", "test-run", "--out", str(tmp_path / "b")], capsys)
    assert code == 0, err
    assert (tmp_path / "a" / "ranked.csv").read_bytes() == (
        tmp_path / "b" / "ranked.csv"
    ).read_bytes()

    def fails(args: list[str], line: str) -> None:
        out = tmp_path / "never"
        code, _, err = report([*base, *args, "--out", str(out)], capsys)
        assert code == 1 and err.strip().splitlines() == [f"riskprop: error: {line}"], err
        assert not out.exists()

    fails(
        ["--run", "other"],
        f"{output}: no results of run 'other' (no {run_folder(output, 'other')})",
    )
    fails(["--run", "../x"], "--run: '../x' is not a run id")
    # scores with another bank's data: the run's digest of its data says no
    fails(
        ["--data", str(network.data / "bob")],
        f"{network.data / 'bob'}: not the data run test-run read (its digest in "
        f"{folder / REPORT_FILE} differs); give that run's data directory with --data",
    )
    # results changed after the run wrote them
    scores = folder / RESULTS_FILE
    scores.write_text(expected + "\n")  # one blank line more
    fails(
        [], f"{scores}: changed since run test-run wrote it (its checksum in {REPORT_FILE} differs)"
    )
    shutil.copy(network.out / "alice" / RESULTS_FILE, scores)
    # another bank's run report and scores
    for name in (RESULTS_FILE, REPORT_FILE):
        shutil.copy(network.out / "bob" / name, folder / name)
    fails([], f"{folder / REPORT_FILE}: a run of bank 'bob', not 'alice'")
    assert read_report(network.out / "alice").player == "alice"


def test_report_of_simulated_scores_shows_a_hostile_id_as_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], chromium: Browser
) -> None:
    hostile = "<script>document.title='owned'</script>"
    accounts = [(hostile, 0.95), ("<b>bold</b>", 0.6), ("plain", 0.0), ("a&amp;b", 0.1)]
    transactions = [
        (hostile, "alice", "plain", "alice", 10.0),
        ("<i>x</i>", "bob", "plain", "alice", 30.0),
        ("<i>x</i>", "bob", "a&amp;b", "alice", 1.0),
        ("<i>x</i>", "bob", hostile, "alice", 5.0),  # keeps the hostile id among the top
    ]
    data = write_dataset(
        tmp_path / "data",
        {
            "alice": (accounts, transactions),
            "bob": ([("<i>x</i>", 0.8)], transactions[1:]),
        },
    )
    result = simulate_plaintext(data, iterations=3)
    result.write(tmp_path / "scores.csv")
    out = tmp_path / "report"
    code, stdout, err = report(
        ["--data", str(data / "alice"), "--scores", str(tmp_path / "scores.csv"), "--out", str(out),
         "--bands", "calm:0,watch:0.5", "--top", "3"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert stdout.startswith("alice: wrote ")
    rows = read_ranked(out / "ranked.csv")
    scores = result.by_account()
    assert [r["id"] for r in rows] == sorted(
        (a for a, _ in accounts), key=lambda a: -scores["alice", a]
    )
    assert all(r["final_score"] == format_score(scores["alice", r["id"]]) for r in rows)
    plain = next(r for r in rows if r["id"] == "plain")
    assert (
        plain["top_sources"]
        == "bob:<i>x</i> (75.0%); <script>document.title='owned'</script> (25.0%)"
    )
    assert float(plain["foreign_share"]) == 0.75 and float(plain["flagged_share"]) == 0.25
    assert {r["band"] for r in rows} <= {"calm", "watch"}
    html = (out / "report.html").read_text()
    assert "<script>" not in html and "<b>bold" not in html and "<i>x" not in html

    chromium.get((out / "report.html").as_uri())
    assert chromium.title == "Risk report: bank alice"
    assert chromium.execute_script("return document.scripts.length") == 0
    ids = [c.text for c in chromium.find_elements(By.CSS_SELECTOR, "#top-accounts td.account")]
    assert ids == [r["id"] for r in rows[:3]]
    assert hostile in ids  # shown as the text it is
    assert "<b>bold</b>" in ids or "a&amp;b" in ids
    assert len(chromium.find_elements(By.CSS_SELECTOR, "#top-accounts tbody tr")) == 3
    assert chromium.find_elements(By.CSS_SELECTOR, "#top-accounts b, #top-accounts i") == []
    assert len(chromium.find_elements(By.CSS_SELECTOR, "svg.histogram rect.bar")) == BARS
    run = chromium.find_element(By.ID, "summary").text
    assert "not known (simulated scores)" in run and "calm < 0.5 <= watch" in run


def test_report_needs_one_of_its_two_sources(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = report(["--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "give --player NAME, or --data BANKDIR and --scores FILE" in err
    code, _, err = report(
        ["--player", "alice", "--scores", "x.csv", "--out", str(tmp_path / "o")], capsys
    )
    assert code == 2 and "--scores and --bank go without --player" in err
    assert not (tmp_path / "o").exists()
