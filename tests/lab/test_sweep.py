"""Sweeps: the grid, the seeds' aggregate, parallel runs equal to serial ones, the files and
plots written, and the recommendation on hand-made results."""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from helpers import require_amlsim_sample
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from riskprop.errors import ConfigError, ParameterError
from riskprop.lab.evaluate import METRICS, SUBSETS, Evaluation, Options, Setting, Workbench
from riskprop.lab.recommend import Recommendation, describe, pareto_front, recommend
from riskprop.lab.sweep import (
    AmlsimSplits,
    Files,
    Generated,
    Grid,
    Summary,
    aggregate,
    check_seeds,
    chunks,
    json_text,
    mean_std,
    run_sweep,
    write_sweep,
)
from riskprop.lab.synthetic import generate_dataset

SMALL = Generated(accounts=300, edges=1500)


# ------------------------------------------------------------------------------ grid


def test_grid_groups_share_deltas_with_t_ascending_and_combine_in_order() -> None:
    grid = Grid((4, 0, 2), (0.3, 0.1), (0.0, 0.5), ("max", "plain"))
    groups = grid.groups()
    assert len(grid) == 3 * 2 * 2 * 2 == len(grid.settings())
    assert [(g[0].delta_a, g[0].delta_b) for g in groups] == [
        (0.3, 0.0),
        (0.3, 0.5),
        (0.1, 0.0),
        (0.1, 0.5),
    ]
    assert [(s.iterations, s.combine) for s in groups[0]] == [
        (0, "max"),
        (0, "plain"),
        (2, "max"),
        (2, "plain"),
        (4, "max"),
        (4, "plain"),
    ]
    assert all(len({(s.delta_a, s.delta_b) for s in g}) == 1 for g in groups)
    assert grid.settings() == [s for g in groups for s in g]
    assert len(set(grid.settings())) == len(grid)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"iterations": ()}, "--iterations: needs at least one value"),
        ({"iterations": (1, 1)}, "--iterations: a value is repeated"),
        ({"iterations": (-1,)}, "--iterations: -1 is not an integer >= 0"),
        ({"combine": ("plain", "mean")}, "--combine: 'mean' is not one of plain, max"),
        ({"delta_a": (0.3, 0.3)}, "--delta-a: a value is repeated"),
    ],
)
def test_grid_refuses_bad_values(kwargs: dict[str, tuple[object, ...]], message: str) -> None:
    values: dict[str, tuple[object, ...]] = {"iterations": (1,), "delta_a": (0.5,)}
    values.update(kwargs)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        Grid(**values)  # type: ignore[arg-type]


def test_grid_deltas_are_checked_by_the_schedule() -> None:
    with pytest.raises(ParameterError) as info:
        Grid((1,), (0.5, 1.0))
    assert info.value.name == "delta_a"
    with pytest.raises(ParameterError) as info:
        Grid((1,), (0.5,), (-1.0,))
    assert info.value.name == "delta_b"


def test_chunks_keep_groups_whole_in_order_and_balanced() -> None:
    groups = Grid(tuple(range(5)), (0.1, 0.2, 0.3, 0.4, 0.5), (0.0,), ("plain",)).groups()
    for parts in (1, 2, 3, 5, 9):
        cut = chunks(groups, parts)
        assert len(cut) == min(parts, len(groups))
        assert [list(g) for chunk in cut for g in chunk] == groups
        sizes = [sum(len(g) for g in chunk) for chunk in cut]
        assert max(sizes) - min(sizes) <= 5  # one group of five settings at most


def test_seeds_are_checked_against_the_source(tmp_path: Path) -> None:
    fixed = Files(tmp_path, tmp_path / "labels.csv")
    assert check_seeds(fixed, [0]) == (0,)
    with pytest.raises(ConfigError, match="--seeds: 2 seeds of fixed data"):
        check_seeds(fixed, [0, 1])
    assert check_seeds(SMALL, range(3)) == (0, 1, 2)
    with pytest.raises(ConfigError, match="repeated"):
        check_seeds(SMALL, [1, 1])
    with pytest.raises(ConfigError, match="-1 is not an integer >= 0"):
        check_seeds(SMALL, [-1])
    with pytest.raises(ConfigError, match="at least one seed"):
        check_seeds(SMALL, [])


# ------------------------------------------------------------------------------ aggregate


def evaluation(setting: Setting, subset: str, value: float, positives: int = 3) -> Evaluation:
    metrics = {m: value + i / 100 for i, m in enumerate(METRICS)}
    return Evaluation(setting, subset, 100, positives, metrics)


def test_mean_std_is_the_sample_statistics_of_the_defined_values() -> None:
    values = [0.2, 0.5, 0.35, 0.9]
    mean, std = mean_std(values)
    assert mean == pytest.approx(statistics.mean(values), abs=1e-15)
    assert std == pytest.approx(statistics.stdev(values), abs=1e-15)
    mean, std = mean_std([0.2, math.nan, 0.4])
    assert mean == pytest.approx(0.3) and std == pytest.approx(statistics.stdev([0.2, 0.4]))
    mean, std = mean_std([0.7, math.nan])
    assert mean == 0.7 and math.isnan(std)
    assert all(math.isnan(v) for v in mean_std([math.nan, math.nan]))


def test_aggregate_averages_each_setting_and_subset_over_the_seeds() -> None:
    a, b = Setting(1, 0.3), Setting(2, 0.3)
    runs = [
        [evaluation(a, "all", 0.5), evaluation(a, "unflagged", 0.1, 1), evaluation(b, "all", 0.6)],
        [evaluation(a, "all", 0.7), evaluation(a, "unflagged", 0.3, 2), evaluation(b, "all", 0.6)],
        [evaluation(a, "all", 0.9), evaluation(a, "unflagged", 0.2, 6), evaluation(b, "all", 0.6)],
    ]
    summaries = aggregate(runs)
    assert [(s.setting, s.subset) for s in summaries] == [(a, "all"), (a, "unflagged"), (b, "all")]
    first, unflagged, constant = summaries
    assert first.seeds == 3
    for i, metric in enumerate(METRICS):
        assert first.mean[metric] == pytest.approx(0.7 + i / 100)
        assert first.std[metric] == pytest.approx(0.2)
        assert unflagged.mean[metric] == pytest.approx(0.2 + i / 100)
        assert constant.std[metric] == 0.0
    assert unflagged.positives == 3.0 and unflagged.accounts == 100.0
    row = first.row()
    assert list(row)[:8] == [
        "iterations",
        "delta_a",
        "delta_b",
        "combine",
        "subset",
        "seeds",
        "accounts",
        "positives",
    ]
    assert row["roc_auc"] == first.mean["roc_auc"] and row["roc_auc_std"] == first.std["roc_auc"]


def test_aggregate_refuses_seeds_with_different_settings() -> None:
    with pytest.raises(AssertionError):
        aggregate([[evaluation(Setting(1), "all", 0.5)], [evaluation(Setting(2), "all", 0.5)]])


# ------------------------------------------------------------------------------ running

GRID = Grid((0, 1, 3), (0.3, 0.6), (0.0,), ("plain", "max"))


def test_parallel_sweep_equals_serial_sweep_exactly() -> None:
    serial = run_sweep(SMALL, GRID, seeds=(0, 1), workers=1)
    parallel = run_sweep(SMALL, GRID, seeds=(0, 1), workers=2)
    assert serial.workers == 1 and parallel.workers == 2
    assert json_text(parallel.seed_rows()) == json_text(serial.seed_rows())
    assert json_text(parallel.rows()) == json_text(serial.rows())
    assert json_text([s.row() for s in parallel.baseline]) == json_text(
        [s.row() for s in serial.baseline]
    )


def test_one_seed_summary_is_the_workbench_evaluation(tmp_path: Path) -> None:
    generate_dataset(tmp_path / "data", accounts=300, edges=1500, seed=4)
    source = Files(tmp_path / "data", tmp_path / "data" / "labels.csv")
    options = Options(k=10)
    result = run_sweep(source, GRID, options=options, workers=1)
    expected = Workbench.load(source.data, source.labels).evaluate(GRID.settings(), options)
    assert [(e.setting, e.subset) for e in result.runs[0]] == [
        (e.setting, e.subset) for e in expected
    ]
    for summary, direct in zip(result.summaries, expected, strict=True):
        assert summary.seeds == 1 and summary.accounts == direct.accounts
        for metric in METRICS:
            assert summary.mean[metric] == direct.metrics[metric] or (
                math.isnan(summary.mean[metric]) and math.isnan(direct.metrics[metric])
            )
            assert math.isnan(summary.std[metric])
    assert [s.setting.iterations for s in result.baseline] == [0, 0]
    assert result.rows()[0]["k"] == 10


def test_the_baseline_is_evaluated_when_the_grid_lacks_t0() -> None:
    result = run_sweep(SMALL, Grid((2,), (0.5,)), workers=1)
    assert {s.setting.iterations for s in result.summaries} == {2}
    assert [(s.setting, s.subset) for s in result.baseline] == [
        (Setting(0, 0.5), subset) for subset in SUBSETS
    ]


def test_seeds_redraw_the_amlsim_flags_but_not_its_graph_or_labels() -> None:
    source = AmlsimSplits(require_amlsim_sample())
    result = run_sweep(source, Grid((0,), (0.5,)), seeds=(0, 1), workers=1)
    rows = {(r["seed"], r["subset"]): r for r in result.seed_rows()}
    assert rows[0, "all"]["accounts"] == rows[1, "all"]["accounts"] == 20_000
    assert rows[0, "all"]["positives"] == rows[1, "all"]["positives"]
    assert rows[0, "all"]["roc_auc"] != rows[1, "all"]["roc_auc"]
    assert rows[0, "unflagged"]["average_precision"] != rows[1, "unflagged"]["average_precision"]


# ------------------------------------------------------------------------------ files


def test_files_and_plots_are_written_and_valid(tmp_path: Path) -> None:
    result = run_sweep(SMALL, GRID, seeds=(0, 1), workers=1)
    advice = recommend(result.summaries, result.baseline, source=result.source)
    out = tmp_path / "out"
    written = write_sweep(result, out, advice)
    names = {p.name for p in written}
    plots = {f"{m}_vs_T" for m in METRICS} | {"tradeoff"}
    assert names == {"sweep.csv", "seeds.csv", "sweep.json", "recommendation.md"} | {
        f"{p}.{fmt}" for p in plots for fmt in ("png", "svg")
    }
    assert {p.name for p in out.iterdir()} == names  # no temporary files left

    rows = list(csv.DictReader(io.StringIO((out / "sweep.csv").read_text())))
    assert len(rows) == len(GRID) * len(SUBSETS)
    for row, expected in zip(rows, result.rows(), strict=True):
        assert row["subset"] == expected["subset"] and row["seeds"] == "2"
        for metric in METRICS:
            value = expected[metric]
            assert isinstance(value, float)
            assert row[metric] == ("" if math.isnan(value) else repr(value))
    assert len(list(csv.DictReader(io.StringIO((out / "seeds.csv").read_text())))) == 2 * len(rows)

    def no_constants(name: str) -> object:
        raise AssertionError(f"JSON holds {name}")

    document = json.loads((out / "sweep.json").read_text(), parse_constant=no_constants)
    assert document["seeds"] == [0, 1] and document["grid"]["combine"] == ["plain", "max"]
    assert len(document["rows"]) == len(rows) and len(document["baseline"]) == 2
    assert advice is not None
    assert document["recommendation"]["iterations"] == advice.chosen.setting.iterations
    assert (out / "recommendation.md").read_text() == advice.text()

    for plot in plots:
        with Image.open(out / f"{plot}.png") as image:
            image.verify()
            assert image.format == "PNG" and image.size[0] > 300
        root = ET.parse(out / f"{plot}.svg").getroot()
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
    svg = (out / "tradeoff.svg").read_text()  # matplotlib keeps each text as a comment
    for text in ("Pareto front", "recommended", "initial scores", "floor"):
        assert f"<!-- {text} -->" in svg
    assert "<!-- delta_a -->" in (out / "average_precision_vs_T.svg").read_text()


def test_out_that_is_a_file_writes_nothing(tmp_path: Path) -> None:
    result = run_sweep(SMALL, Grid((0, 1), (0.5,)), workers=1)
    out = tmp_path / "file"
    out.write_text("keep")
    with pytest.raises(ConfigError, match="not a directory"):
        write_sweep(result, out, None, plots=False)
    assert out.read_text() == "keep"


# ------------------------------------------------------------------------------ recommendation

BASE = Setting(0, 0.1)


def summaries(points: dict[Setting, tuple[float, float]]) -> list[Summary]:
    """Hand-made aggregates: average precision (all, unflagged) per setting."""
    out = []
    for setting, values in points.items():
        for subset, value in zip(SUBSETS, values, strict=True):
            mean = dict.fromkeys(METRICS, 0.5) | {"average_precision": value}
            std = dict.fromkeys(METRICS, math.nan)
            out.append(Summary(setting, subset, 1, 100.0, 5.0, mean, std))
    return out


A, B, C, D, E = (Setting(t, a) for t, a in ((8, 0.1), (4, 0.3), (1, 0.7), (2, 0.1), (3, 0.5)))
TABLE = {
    BASE: (0.24, 0.034),
    A: (0.30, 0.050),
    B: (0.25, 0.064),
    C: (0.20, 0.065),
    D: (0.31, 0.030),
    E: (0.22, 0.050),  # dominated by B
}


def pick(max_loss: float) -> Recommendation:
    advice = recommend(summaries(TABLE), summaries({BASE: TABLE[BASE]}), max_loss=max_loss)
    assert advice is not None
    return advice


def test_recommendation_maximises_all_accounts_above_the_unflagged_floor() -> None:
    advice = pick(0.1)  # floor 0.9 * 0.065 = 0.0585: B and C qualify, B is better on all
    assert advice.chosen.setting == B
    assert advice.floor == pytest.approx(0.0585)
    assert advice.best_all.setting == D and advice.best_unflagged.setting == C
    assert set(advice.front) == {A, B, C, D}
    assert pick(0.5).chosen.setting == A  # floor 0.0325: D (0.030) is out
    assert pick(0.99).chosen.setting == D


def test_recommendation_text_states_objective_numbers_and_tradeoff() -> None:
    advice = pick(0.1)
    text = advice.text()
    assert "at least 90% of the best average precision on unflagged accounts" in text
    assert f"**Recommended: {describe(B)}.**" in text
    assert "| initial scores (T = 0) | 0.240 | 0.034 |" in text
    assert "| 0.250 | 0.064 |" in text
    assert advice.tradeoff() == (
        "Against the initial scores it moves average precision over all accounts from 0.240 "
        "to 0.250 and on unflagged accounts from 0.034 to 0.064. The best setting for "
        f"unflagged accounts ({describe(C)}) reaches 0.065 there but 0.200 over all accounts."
    )


def test_recommendation_ties_go_to_unflagged_then_fewer_iterations() -> None:
    t2, t6, t4 = Setting(2, 0.3), Setting(6, 0.3), Setting(4, 0.3)
    advice = recommend(summaries({t6: (0.3, 0.05), t2: (0.3, 0.05), t4: (0.3, 0.04)}))
    assert advice is not None and advice.chosen.setting == t2
    assert advice.baseline is None and "Against the initial" not in advice.tradeoff()


def test_recommendation_without_unflagged_positives_has_no_floor() -> None:
    advice = recommend(summaries({A: (0.3, math.nan), B: (0.4, math.nan)}))
    assert advice is not None and advice.chosen.setting == B and math.isnan(advice.floor)
    assert recommend(summaries({A: (math.nan, math.nan)})) is None


def test_recommendation_refuses_bad_objectives() -> None:
    with pytest.raises(ConfigError, match="--metric: 'auc'"):
        recommend(summaries(TABLE), metric="auc")
    with pytest.raises(ConfigError, match="--max-loss"):
        recommend(summaries(TABLE), max_loss=1.0)


def test_pareto_front_handles_ties_and_nan() -> None:
    points = [(0.3, 0.1), (0.3, 0.1), (0.2, 0.1), (math.nan, 0.9), (0.1, 0.2), (0.3, 0.05)]
    assert pareto_front(points) == [0, 1, 4]


coordinates = st.floats(0.0, 1.0, allow_nan=False)


@given(st.lists(st.tuples(coordinates, coordinates), min_size=1, max_size=25), coordinates)
def test_the_chosen_setting_is_on_the_pareto_front(
    points: list[tuple[float, float]], max_loss: float
) -> None:
    table = {Setting(i + 1, 0.5): point for i, point in enumerate(points)}
    advice = recommend(summaries(table), max_loss=min(max_loss, 0.99))
    assert advice is not None
    assert advice.chosen.setting in advice.front
    assert advice.chosen.unflagged.mean["average_precision"] >= advice.floor
