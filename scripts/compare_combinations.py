#!/usr/bin/env python3
"""Does keeping a flagged account's own evidence beat plain propagation on both subsets?

Ranking scores compared, for every setting ``T x delta_a`` (``delta_b = 0``), with ``r_0`` the
initial and ``r_T`` the propagated score and "flagged" meaning ``r_0 >= `` the flag threshold:

* ``plain``: ``r_T``;
* ``max``: ``max(r_0, r_T)`` (``riskprop evaluate --combine max``);
* ``keep``: ``r_0`` for the flagged accounts, ``r_T`` for the rest;
* ``flag-first``: ``r_T + 1`` for the flagged accounts, ``r_T`` for the rest: every flagged
  account above every unflagged one (scores lie in [0, 1]), each group ordered by ``r_T``.

``keep`` and ``flag-first`` are built here from :class:`~riskprop.lab.evaluate.Workbench`'s
public pieces (``scores``, ``initial``, ``unflagged``, ``labels``) and
:func:`~riskprop.lab.evaluate.measure`. Among the unflagged accounts both *are* ``plain``, score
for score (checked), so they can differ from it only on all accounts. Like ``max``, a bank
computes them after the joint decryption from what it holds: its own accounts' initial and
propagated scores; it learns nothing new.

Data sets, each imported once per seed (the seed redraws the initial scores: 30% of the
launderers and 1% of the other accounts flagged):

* ``AMLSim``: ``riskprop import amlsim SRC DST --banks 3 --seed S`` (one period);
* ``AMLworld layout``: the same sample written in AMLworld's layout by
  ``scripts/amlworld_from_amlsim.py`` (30 bank ids), then ``riskprop import amlworld FILE DST
  --banks 3 --period-length 30d --seed S`` (six 30-day periods, T iterations in each);
* the same with ``--periods 1``: a control that separates the layout (bank dealing, score
  model, labels) from the split into periods.

For each data set it prints the initial scores and the best setting of each combination on
each of AP (all accounts), AP (unflagged), ROC AUC (unflagged) and ROC AUC among the flagged
accounts (how well a score orders the accounts already flagged: launderers against false
positives), as means over the seeds ``±`` their standard deviation; then, per combination,
the gain over plain best against best (mean ``±`` standard deviation of the per-seed
difference), whether it beats plain on both subsets, at how many settings its AP is at least
plain's on both, and AP (all) at the setting where plain does best on the unflagged accounts.

    python scripts/compare_combinations.py [--src DIR] [--seeds 5] [-T 0,1,2,3,4,8]
        [--delta-a 0.1,0.3,0.5] [--period-length 30d] [--settings]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Final

import numpy as np

from riskprop.core.types import BoolArray, FloatArray
from riskprop.errors import RiskpropError
from riskprop.lab.amlsim import import_amlsim
from riskprop.lab.amlworld import import_amlworld
from riskprop.lab.detection import bank_names
from riskprop.lab.evaluate import Options, Setting, Workbench, grid, measure

DEFAULT_SRC: Final = (
    Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "amlsim-20K_cycle200"
)
COMBINATIONS: Final = ("plain", "max", "keep", "flag-first")
#: The table's columns: (subset, metric, heading).
COLUMNS: Final = (
    ("all", "average_precision", "AP all"),
    ("unflagged", "average_precision", "AP unflagged"),
    ("unflagged", "roc_auc", "AUC unflagged"),
    ("flagged", "roc_auc", "AUC flagged"),
)
HEADINGS: Final = tuple(heading for _, _, heading in COLUMNS)
#: A setting: (combination, T, delta_a); the initial scores are ("initial", 0, 0.0).
Key = tuple[str, int, float]
INITIAL: Final[Key] = ("initial", 0, 0.0)
#: Per setting and heading, the value of every seed.
Table = dict[Key, dict[str, list[float]]]


def converter() -> ModuleType:
    """``scripts/amlworld_from_amlsim.py``, loaded from beside this file."""
    path = Path(__file__).resolve().with_name("amlworld_from_amlsim.py")
    spec = importlib.util.spec_from_file_location("amlworld_from_amlsim", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class DataSet:
    name: str
    prepare: Callable[[int, Path], None]  #: (seed, new directory): write data and labels


def combined(
    combine: str, initial: FloatArray, propagated: FloatArray, flagged: BoolArray
) -> FloatArray:
    """The ranking score of ``keep`` or ``flag-first`` (module description)."""
    if combine == "keep":
        return np.where(flagged, initial, propagated)
    if combine == "flag-first":
        return propagated + flagged
    raise ValueError(f"not computed here: {combine!r}")


def measure_seed(
    data: Path, iterations: Sequence[int], deltas: Sequence[float], options: Options
) -> dict[Key, dict[str, float]]:
    """Every combination and setting on one imported data set: heading -> value."""
    wb = Workbench.load(data, data / "labels.csv")
    found: dict[Key, dict[str, float]] = {}
    for e in wb.evaluate(grid(iterations, deltas, (0.0,), ("plain", "max")), options):
        s = e.setting
        key = INITIAL if s.iterations == 0 else (s.combine, s.iterations, s.delta_a)
        for subset, metric, heading in COLUMNS:
            if subset == e.subset:  # "flagged" is measured below
                found.setdefault(key, {})[heading] = e.metrics[metric]
    unflagged = wb.unflagged(options)
    flagged = ~unflagged

    def on_flagged(scores: FloatArray) -> float:
        return measure(scores[flagged], wb.labels[flagged], options)["roc_auc"]

    found[INITIAL]["AUC flagged"] = on_flagged(wb.initial)
    for t in (t for t in iterations if t > 0):
        for a in deltas:
            propagated = wb.scores(Setting(t, a))
            found[("plain", t, a)]["AUC flagged"] = on_flagged(propagated)
            found[("max", t, a)]["AUC flagged"] = on_flagged(wb.scores(Setting(t, a, 0.0, "max")))
            for combine in ("keep", "flag-first"):
                scores = combined(combine, wb.initial, propagated, flagged)
                by_subset = {
                    "all": measure(scores, wb.labels, options),
                    "unflagged": measure(scores[unflagged], wb.labels[unflagged], options),
                    "flagged": measure(scores[flagged], wb.labels[flagged], options),
                }
                row = {h: by_subset[subset][m] for subset, m, h in COLUMNS}
                for subset, _, heading in COLUMNS:
                    if subset == "unflagged" and row[heading] != found[("plain", t, a)][heading]:
                        raise AssertionError(f"{combine} differs from plain on unflagged accounts")
                found[(combine, t, a)] = row
    return found


def collect(runs: Sequence[dict[Key, dict[str, float]]]) -> Table:
    return {key: {h: [run[key][h] for run in runs] for h in HEADINGS} for key in runs[0]}


def mean(values: Sequence[float]) -> float:
    return statistics.fmean(values)


def spread(values: Sequence[float]) -> str:
    """``mean±std`` over the seeds."""
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean(values):.3f}±{std:.3f}"


def best(table: Table, combine: str, heading: str) -> Key:
    """The setting of ``combine`` with the highest mean in column ``heading`` (ties: the
    smallest T, then the smallest delta_a)."""
    keys = [key for key in table if key[0] == combine]
    return max(keys, key=lambda key: (mean(table[key][heading]), -key[1], -key[2]))


def verdict(gain_all: float, gain_unflagged: float) -> str:
    if gain_all > 0 and gain_unflagged > 0:
        return "yes"
    if gain_unflagged == 0 and gain_all > 0:
        return "no: identical on unflagged, better on all"
    return "no"


def report(name: str, table: Table) -> list[str]:
    """The table's lines for one data set."""
    width = 28
    lines = [f"## {name}", f"{'':<16}" + "".join(f"{h:>{width}}" for h in HEADINGS)]
    lines.append(
        f"{'initial':<16}" + "".join(f"{spread(table[INITIAL][h]):>{width}}" for h in HEADINGS)
    )
    for combine in COMBINATIONS:
        cells = []
        for heading in HEADINGS:
            key = best(table, combine, heading)
            cells.append(f"{spread(table[key][heading])} (T={key[1]},a={key[2]:g})")
        lines.append(f"{'best ' + combine:<16}" + "".join(f"{c:>{width}}" for c in cells))
    settings = [(t, a) for c, t, a in table if c == "plain"]
    plain_unflagged = best(table, "plain", "AP unflagged")
    at = {c: mean(table[(c, *plain_unflagged[1:])]["AP all"]) for c in COMBINATIONS}
    for combine in COMBINATIONS[1:]:
        gains = []
        for heading in HEADINGS[:3]:
            ours, theirs = (
                table[best(table, combine, heading)],
                table[best(table, "plain", heading)],
            )
            gains.append([x - y for x, y in zip(ours[heading], theirs[heading], strict=True)])
        at_least = sum(
            all(
                mean(table[(combine, t, a)][h]) >= mean(table[("plain", t, a)][h])
                for h in HEADINGS[:2]
            )
            for t, a in settings
        )
        lines.append(
            f"{combine} - plain, best against best: AP all {spread(gains[0])}, AP unflagged "
            f"{spread(gains[1])}, AUC unflagged {spread(gains[2])}; beats plain on both "
            f"subsets: {verdict(mean(gains[0]), mean(gains[1]))}; at least plain's AP on both "
            f"at {at_least} of {len(settings)} settings"
        )
    lines.append(
        f"AP all at plain's best setting for AP unflagged (T={plain_unflagged[1]},"
        f"a={plain_unflagged[2]:g}): " + ", ".join(f"{c} {v:.3f}" for c, v in at.items())
    )
    return lines


def setting_lines(table: Table) -> list[str]:
    """Every setting's means, for --settings."""
    lines = [f"{'combine':>10} {'T':>3} {'a':>4}" + "".join(f"{h:>15}" for h in HEADINGS)]
    order = {c: i for i, c in enumerate(("initial", *COMBINATIONS))}
    for key in sorted(table, key=lambda k: (order[k[0]], k[2], k[1])):
        combine, t, a = key
        lines.append(
            f"{combine:>10} {t:>3} {a:>4g}"
            + "".join(f"{mean(table[key][h]):>15.3f}" for h in HEADINGS)
        )
    return lines


def data_sets(src: Path, work: Path, banks: int, period_length: str) -> list[DataSet]:
    names = bank_names(banks)
    layout = work / "amlworld-layout.csv"
    summary: Any = converter().convert(src, layout)
    print(
        f"# {layout.name}: {summary.rows} rows, {summary.accounts} accounts of {summary.banks} "
        f"bank ids, {summary.laundering_accounts} of {summary.fraud_accounts} fraud accounts "
        f"in a laundering row"
    )

    def amlsim(seed: int, out: Path) -> None:
        import_amlsim(src, out, banks=names, seed=seed)

    def amlworld(seed: int, out: Path) -> None:
        import_amlworld(layout, out, banks=names, period_length=period_length, seed=seed)

    def amlworld_one(seed: int, out: Path) -> None:
        import_amlworld(layout, out, banks=names, periods=1, seed=seed)

    return [
        DataSet(f"AMLSim (import amlsim --banks {banks})", amlsim),
        DataSet(
            f"AMLworld layout (import amlworld --banks {banks} --period-length {period_length})",
            amlworld,
        ),
        DataSet(f"AMLworld layout (import amlworld --banks {banks} --periods 1)", amlworld_one),
    ]


def numbers(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip()]


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--src", type=Path, default=Path(os.environ.get("RISKPROP_AMLSIM") or DEFAULT_SRC)
    )
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 of the imports")
    parser.add_argument("-T", "--iterations", default="0,1,2,3,4,8")
    parser.add_argument("--delta-a", default="0.1,0.3,0.5")
    parser.add_argument("--banks", type=int, default=3)
    parser.add_argument("--period-length", default="30d")
    parser.add_argument("--flag-threshold", type=float, default=0.5)
    parser.add_argument("--settings", action="store_true", help="also print every setting")
    args = parser.parse_args()
    if not (args.src / "nodes.csv").is_file():
        print(f"error: AMLSim sample not found at {args.src} (--src or RISKPROP_AMLSIM)")
        return 1
    iterations = sorted({int(t) for t in numbers(args.iterations)} | {0})
    deltas = numbers(args.delta_a)
    try:
        options = Options(flag_threshold=args.flag_threshold)
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            for i, data in enumerate(data_sets(args.src, work, args.banks, args.period_length)):
                runs = []
                for seed in range(args.seeds):
                    out = work / f"data-{i}-{seed}"
                    data.prepare(seed, out)
                    runs.append(measure_seed(out, iterations, deltas, options))
                table = collect(runs)
                print()
                print("\n".join(report(f"{data.name}, {args.seeds} seeds", table)))
                if args.settings:
                    print("\n".join(setting_lines(table)))
    except RiskpropError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
