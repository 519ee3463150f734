"""Parameter sweeps: a grid of propagation settings, evaluated over several seeds in parallel.

A :class:`Grid` is the product ``iterations x delta_a x delta_b x combine``. A :class:`Source`
says what a *seed* changes (the data are redrawn per seed, the grid is not):

* :class:`Files`: one fixed data set and its labels; nothing to redraw, so exactly one seed.
* :class:`AmlsimSplits`: IBM AMLSim's sample split into banks (``split_amlsim``). The graph,
  the amounts and the labels are the same for every seed; the seed redraws the modelled
  monitoring: which ``flagged_fraction`` of the fraud accounts is flagged, which 1% of the
  other accounts are false positives, and every account's initial score. So the "unflagged"
  subset changes from seed to seed.
* :class:`Generated`: ``generate_dataset`` with the seed: graph, laundering motifs, labels and
  initial scores all redrawn.

Running: a ``ProcessPoolExecutor`` of ``os.cpu_count()`` workers (``spawn``: no threads
inherited from the caller) first prepares each seed's data in a temporary directory, one seed
per task. Then every seed's settings are cut into ``ceil(workers / seeds)`` chunks of whole
*groups* (the settings sharing ``(delta_a, delta_b)``: every ``T`` and ``combine`` of a group
comes out of one pass over ``T``, see :func:`evaluate_group`), one task per seed and chunk: with
at least as many seeds as workers a task is a whole seed, loaded once; with fewer, the seeds'
settings are shared out and each worker loads the data it works on. Tasks go out seed-major and
a worker keeps its last :class:`Workbench`, so it loads a seed once however many of that
seed's chunks it takes in a row. ``workers=1`` runs the same functions in this process; the
results are bit-identical either way (same code, same inputs, same order of summation).

Aggregation over the seeds, per setting and subset: for each metric the mean and the sample
standard deviation (``ddof = 1``) of the seeds where the metric is defined (not NaN); NaN when
no seed defines it, and a standard deviation of NaN from fewer than two such seeds. ``accounts``
and ``positives`` are averaged likewise (they vary with the seed on the unflagged subset).
"""

from __future__ import annotations

import csv
import io
import json
import math
import multiprocessing
import os
import tempfile
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from riskprop.core.schedule import DeltaSchedule
from riskprop.errors import ConfigError
from riskprop.files.atomic import atomic_write_bytes
from riskprop.lab.evaluate import (
    COMBINES,
    METRICS,
    Evaluation,
    Options,
    Setting,
    Workbench,
)

if TYPE_CHECKING:
    from riskprop.lab.recommend import Recommendation


# ------------------------------------------------------------------------------ the grid


@dataclass(frozen=True)
class Grid:
    """The settings ``iterations x delta_a x delta_b x combine`` (values kept in given order)."""

    iterations: tuple[int, ...]
    delta_a: tuple[float, ...]
    delta_b: tuple[float, ...] = (0.0,)
    combine: tuple[str, ...] = ("plain",)

    def __post_init__(self) -> None:
        for name in ("iterations", "delta_a", "delta_b", "combine"):
            values = tuple(getattr(self, name))
            object.__setattr__(self, name, values)
            if not values:
                raise ConfigError(f"--{_flag(name)}: needs at least one value")
            if len(set(values)) != len(values):
                raise ConfigError(f"--{_flag(name)}: a value is repeated ({_join(values)})")
        for t in self.iterations:
            if isinstance(t, bool) or not isinstance(t, int | np.integer) or t < 0:
                raise ConfigError(f"--iterations: {t!r} is not an integer >= 0")
        for a in self.delta_a:
            for b in self.delta_b:
                DeltaSchedule(float(a), float(b))  # ParameterError names delta_a or delta_b
        for c in self.combine:
            if c not in COMBINES:
                raise ConfigError(f"--combine: {c!r} is not one of {', '.join(COMBINES)}")

    def __len__(self) -> int:
        return len(self.iterations) * len(self.delta_a) * len(self.delta_b) * len(self.combine)

    def groups(self) -> list[list[Setting]]:
        """The settings, one list per ``(delta_a, delta_b)``: ``T`` ascending, then ``combine``
        in the grid's order. Concatenated they are :meth:`settings`."""
        return [
            [
                Setting(int(t), float(a), float(b), c)
                for t in sorted(self.iterations)
                for c in self.combine
            ]
            for a in self.delta_a
            for b in self.delta_b
        ]

    def settings(self) -> list[Setting]:
        """Every setting of the grid, in the order of :meth:`groups`."""
        return [s for group in self.groups() for s in group]


#: The grid ``riskprop sweep`` and ``riskprop.api.sweep`` run unless told otherwise.
DEFAULT_GRID = Grid((0, 1, 2, 3, 4, 6, 8), (0.1, 0.3, 0.5, 0.7), (0.0,), ("plain", "max"))


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _join(values: Iterable[object]) -> str:
    return ",".join(str(v) for v in values)


# ------------------------------------------------------------------------------ sources


class Source(Protocol):
    """Where a seed's data set and labels come from (module doc: what a seed changes)."""

    @property
    def resampled(self) -> bool:
        """Whether different seeds give different data (else only one seed makes sense)."""
        ...

    def describe(self) -> str: ...

    def prepare(self, seed: int, directory: Path) -> tuple[Path, Path]:
        """Make the data for ``seed`` (in ``directory`` if anything is written); return the
        data directory and the labels file."""
        ...


@dataclass(frozen=True)
class Files:
    """A fixed data set ``data`` with labels ``labels`` (``bank,id,is_laundering``)."""

    data: Path
    labels: Path

    @property
    def resampled(self) -> bool:
        return False

    def describe(self) -> str:
        return f"data {self.data}, labels {self.labels}"

    def prepare(self, seed: int, directory: Path) -> tuple[Path, Path]:
        return self.data, self.labels


@dataclass(frozen=True)
class AmlsimSplits:
    """The AMLSim sample in ``src`` split into ``banks`` banks, modelled flags redrawn per seed."""

    src: Path
    banks: tuple[str, ...] = ("alice", "bob", "charlie")
    flagged_fraction: float = 0.3
    periods: int = 1

    @property
    def resampled(self) -> bool:
        return True

    def describe(self) -> str:
        return (
            f"AMLSim {self.src} split into {len(self.banks)} banks, {self.flagged_fraction:g} "
            "of the fraud accounts flagged (redrawn per seed)"
        )

    def prepare(self, seed: int, directory: Path) -> tuple[Path, Path]:
        from riskprop.lab.amlsim import split_amlsim

        split_amlsim(
            self.src,
            directory,
            banks=self.banks,
            periods=self.periods,
            flagged_fraction=self.flagged_fraction,
            seed=seed,
        )
        return directory, directory / "labels.csv"


@dataclass(frozen=True)
class Generated:
    """Synthetic data (``generate_dataset``), everything redrawn per seed."""

    accounts: int
    edges: int
    banks: tuple[str, ...] = ("alice", "bob", "charlie")
    periods: int = 1
    #: initial scores: "realistic" (a share of launderers flagged, the rest noise: propagation's
    #: gain is measurable) or "informed" (they already rank the launderers)
    scores: str = "realistic"

    @property
    def resampled(self) -> bool:
        return True

    def describe(self) -> str:
        return (
            f"generated: {self.accounts} accounts, {self.edges} transactions, "
            f"{len(self.banks)} banks, {self.scores} initial scores (redrawn per seed)"
        )

    def prepare(self, seed: int, directory: Path) -> tuple[Path, Path]:
        from riskprop.lab.synthetic import generate_dataset

        generate_dataset(
            directory,
            accounts=self.accounts,
            edges=self.edges,
            banks=self.banks,
            periods=self.periods,
            seed=seed,
            scores=self.scores,
        )
        return directory, directory / "labels.csv"


def check_seeds(source: Source, seeds: Sequence[int]) -> tuple[int, ...]:
    """The seeds as a tuple: at least one, distinct, >= 0; one only for fixed data."""
    values = tuple(seeds)
    if not values:
        raise ConfigError("--seeds: needs at least one seed")
    for seed in values:
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ConfigError(f"--seeds: {seed!r} is not an integer >= 0")
    if len(set(values)) != len(values):
        raise ConfigError(f"--seeds: a seed is repeated ({_join(values)})")
    if len(values) > 1 and not source.resampled:
        raise ConfigError(
            f"--seeds: {len(values)} seeds of fixed data would repeat one result; "
            "seeds need data that is redrawn (--amlsim)"
        )
    return tuple(int(s) for s in values)


# ------------------------------------------------------------------------------ evaluation


def evaluate_group(
    workbench: Workbench, group: Sequence[Setting], options: Options
) -> list[Evaluation]:
    """Evaluate settings that share ``(delta_a, delta_b)`` (``T`` ascending) in one pass."""
    return workbench.evaluate(group, options)


@dataclass(frozen=True)
class _Task:
    seed: int
    data: Path
    labels: Path
    groups: tuple[tuple[Setting, ...], ...]


@dataclass
class _WorkerState:
    """What a worker process keeps between tasks: the options and its last data's Workbench."""

    options: Options
    inputs: tuple[Path, Path] | None = None
    workbench: Workbench | None = None

    def run(self, task: _Task) -> list[Evaluation]:
        if self.workbench is None or self.inputs != (task.data, task.labels):
            self.workbench = None  # free the previous seed's arrays before loading the next
            self.workbench = Workbench.load(task.data, task.labels)
            self.inputs = (task.data, task.labels)
        return [
            e for group in task.groups for e in evaluate_group(self.workbench, group, self.options)
        ]


#: The worker process's state, set by ``_init_worker`` (the pool's initializer) in worker
#: processes only; the process that runs the sweep never sets it.
_WORKER: _WorkerState | None = None


def _init_worker(options: Options) -> None:
    global _WORKER  # noqa: PLW0603 - a pool initializer's only way to hand state to its tasks
    _WORKER = _WorkerState(options)


def _run_task(task: _Task) -> list[Evaluation]:
    if _WORKER is None:
        raise RuntimeError("a sweep task outside a sweep worker")
    return _WORKER.run(task)


def _prepare(source: Source, seed: int, directory: Path) -> tuple[Path, Path]:
    return source.prepare(seed, directory)


def chunks(
    groups: Sequence[Sequence[Setting]], parts: int
) -> list[tuple[tuple[Setting, ...], ...]]:
    """Cut ``groups`` (kept whole and in order) into at most ``parts`` contiguous chunks of
    about equal numbers of settings."""
    total = sum(len(g) for g in groups)
    parts = max(1, min(parts, len(groups)))
    out: list[tuple[tuple[Setting, ...], ...]] = []
    current: list[tuple[Setting, ...]] = []
    done = 0
    for group in groups:
        current.append(tuple(group))
        done += len(group)
        if done * parts >= total * (len(out) + 1) and len(out) < parts - 1:
            out.append(tuple(current))
            current = []
    if current:
        out.append(tuple(current))
    return out


# ------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class Summary:
    """One setting on one subset, aggregated over the seeds (module doc: the maths)."""

    setting: Setting
    subset: str
    seeds: int
    accounts: float
    positives: float
    mean: dict[str, float]
    std: dict[str, float]

    def row(self) -> dict[str, object]:
        """Flat row: the setting, ``subset``, ``seeds``, ``accounts``, ``positives``, then per
        metric its mean under the metric's name and its deviation as ``<metric>_std``."""
        row: dict[str, object] = {
            "iterations": self.setting.iterations,
            "delta_a": self.setting.delta_a,
            "delta_b": self.setting.delta_b,
            "combine": self.setting.combine,
            "subset": self.subset,
            "seeds": self.seeds,
            "accounts": self.accounts,
            "positives": self.positives,
        }
        for metric in METRICS:
            row[metric] = self.mean[metric]
            row[f"{metric}_std"] = self.std[metric]
        return row


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (``ddof = 1``) of the non-NaN ``values``; NaN mean
    without any, NaN deviation with fewer than two."""
    defined = np.array([v for v in values if not math.isnan(v)], dtype=np.float64)
    if defined.size == 0:
        return math.nan, math.nan
    mean = float(defined.mean())
    std = float(defined.std(ddof=1)) if defined.size > 1 else math.nan
    return mean, std


def aggregate(runs: Sequence[Sequence[Evaluation]]) -> list[Summary]:
    """Per (setting, subset) in the order of the first seed's evaluations: mean and deviation
    over the seeds. Every seed must hold the same (setting, subset) pairs."""
    if not runs:
        return []
    keys = [(e.setting, e.subset) for e in runs[0]]
    by_key: dict[tuple[Setting, str], list[Evaluation]] = {key: [] for key in keys}
    for evaluations in runs:
        if sorted(map(_key_order, evaluations)) != sorted(_key_order(e) for e in runs[0]):
            raise AssertionError("seeds evaluated different settings")
        for e in evaluations:
            by_key[e.setting, e.subset].append(e)
    summaries = []
    for setting, subset in keys:
        group = by_key[setting, subset]
        mean: dict[str, float] = {}
        std: dict[str, float] = {}
        for metric in METRICS:
            mean[metric], std[metric] = mean_std([e.metrics[metric] for e in group])
        summaries.append(
            Summary(
                setting,
                subset,
                len(group),
                float(np.mean([e.accounts for e in group])),
                float(np.mean([e.positives for e in group])),
                mean,
                std,
            )
        )
    return summaries


def _key_order(e: Evaluation) -> tuple[int, float, float, str, str]:
    s = e.setting
    return (s.iterations, s.delta_a, s.delta_b, s.combine, e.subset)


@dataclass(frozen=True)
class SweepResult:
    """A finished sweep: per-seed evaluations, their aggregate, and the initial scores'."""

    grid: Grid
    seeds: tuple[int, ...]
    source: str
    options: Options
    #: per seed (in ``seeds`` order) the evaluations of every setting, in ``grid.settings()``
    #: order, each on every subset
    runs: tuple[tuple[Evaluation, ...], ...]
    summaries: tuple[Summary, ...]
    #: the initial scores (``T = 0``) per subset, aggregated like the grid
    baseline: tuple[Summary, ...]
    workers: int
    seconds: float = field(compare=False)

    def rows(self) -> list[dict[str, object]]:
        """One flat row per setting and subset: :meth:`Summary.row`, then the options."""
        options = self.options.row()
        return [{**s.row(), **options} for s in self.summaries]

    def seed_rows(self) -> list[dict[str, object]]:
        """One flat row per seed, setting and subset: ``seed`` then ``Evaluation.row()``."""
        return [
            {"seed": seed, **e.row()}
            for seed, evaluations in zip(self.seeds, self.runs, strict=True)
            for e in evaluations
        ]


def run_sweep(
    source: Source,
    grid: Grid,
    *,
    seeds: Sequence[int] = (0,),
    options: Options | None = None,
    workers: int | None = None,
) -> SweepResult:
    """Evaluate every setting of ``grid`` on every seed's data of ``source`` and aggregate.

    ``workers`` defaults to ``os.cpu_count()``; 1 runs in this process. The initial scores are
    evaluated too (``baseline``: ``Setting(0, delta_a[0], delta_b[0])``, a group of its own
    unless the grid holds it).
    """
    options = Options() if options is None else options
    seeds = check_seeds(source, seeds)
    if workers is None:
        workers = os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"--workers: {workers!r} is not an integer >= 1")
    settings = grid.settings()
    first = settings[0]
    base = Setting(0, first.delta_a, first.delta_b, "plain")
    groups = grid.groups() if base in settings else [*grid.groups(), [base]]
    parts = chunks(groups, -(-workers // len(seeds)))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="riskprop-sweep-") as tmp:
        directories = [Path(tmp) / f"seed-{seed}" for seed in seeds]
        if workers == 1 or len(seeds) * len(parts) == 1:
            workers = 1
            inputs = [source.prepare(s, d) for s, d in zip(seeds, directories, strict=True)]
            tasks = _tasks(seeds, inputs, parts)
            state = _WorkerState(options)
            results = [state.run(task) for task in tasks]
        else:
            workers = min(workers, len(seeds) * len(parts))
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(
                workers, mp_context=context, initializer=_init_worker, initargs=(options,)
            ) as pool:
                inputs = list(pool.map(_prepare, [source] * len(seeds), seeds, directories))
                tasks = _tasks(seeds, inputs, parts)
                results = list(pool.map(_run_task, tasks))
    runs: dict[int, list[Evaluation]] = {seed: [] for seed in seeds}
    for task, evaluations in zip(tasks, results, strict=True):
        runs[task.seed].extend(evaluations)
    wanted = set(settings)
    grid_runs = [[e for e in runs[seed] if e.setting in wanted] for seed in seeds]
    base_runs = [[e for e in runs[seed] if e.setting == base] for seed in seeds]
    return SweepResult(
        grid=grid,
        seeds=seeds,
        source=source.describe(),
        options=options,
        runs=tuple(tuple(run) for run in grid_runs),
        summaries=tuple(aggregate(grid_runs)),
        baseline=tuple(aggregate(base_runs)),
        workers=workers,
        seconds=time.perf_counter() - started,
    )


def _tasks(
    seeds: Sequence[int],
    inputs: Sequence[tuple[Path, Path]],
    parts: Sequence[tuple[tuple[Setting, ...], ...]],
) -> list[_Task]:
    """Seed-major: a worker meets each seed's data in one run of consecutive tasks."""
    return [
        _Task(seed, data, labels, part)
        for seed, (data, labels) in zip(seeds, inputs, strict=True)
        for part in parts
    ]


# ------------------------------------------------------------------------------ files


def write_sweep(
    result: SweepResult,
    out: Path,
    recommendation: Recommendation | None,
    *,
    plots: bool = True,
) -> list[Path]:
    """Write ``sweep.csv`` (one row per setting and subset, aggregated), ``seeds.csv`` (per
    seed), ``sweep.json`` (both, the grid, options and recommendation), ``recommendation.md``
    and, with ``plots``, the figures of :mod:`riskprop.lab.sweep_plots` (PNG and SVG) to
    ``out``. Everything is rendered first, then each file is written atomically: an error
    leaves no file half-written, and none written at all when rendering fails. A directory
    that holds an earlier sweep is refused, so no earlier figure is taken for this one's."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out: {out} exists and is not a directory")
    if (out / "sweep.json").exists():  # its figures would mix with this sweep's
        raise ConfigError(f"--out: {out} holds an earlier sweep; give a new directory")
    rows = result.rows()
    files: dict[str, bytes] = {
        "sweep.csv": csv_text(rows).encode(),
        "seeds.csv": csv_text(result.seed_rows()).encode(),
        "sweep.json": json_text(
            {
                "source": result.source,
                "seeds": list(result.seeds),
                "grid": {
                    "iterations": list(result.grid.iterations),
                    "delta_a": list(result.grid.delta_a),
                    "delta_b": list(result.grid.delta_b),
                    "combine": list(result.grid.combine),
                },
                "options": result.options.row(),
                "workers": result.workers,
                "seconds": round(result.seconds, 3),
                "recommendation": None if recommendation is None else recommendation.row(),
                "baseline": [s.row() for s in result.baseline],
                "rows": rows,
                "seed_rows": result.seed_rows(),
            }
        ).encode(),
        "recommendation.md": (
            recommendation.text()
            if recommendation is not None
            else "# Recommended setting\n\nNone: no setting has a defined metric.\n"
        ).encode(),
    }
    if plots:
        from riskprop.lab.sweep_plots import render

        files.update(render(result, recommendation))
    written = []
    for name, content in files.items():
        atomic_write_bytes(out / name, content)
        written.append(out / name)
    return written


def csv_text(rows: Sequence[dict[str, object]]) -> str:
    """CSV with a header from the first row's keys; NaN as an empty field."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if rows:
        names = list(rows[0])
        writer.writerow(names)
        for row in rows:
            writer.writerow(["" if _is_nan(row[name]) else row[name] for name in names])
    return buffer.getvalue()


def json_text(document: object) -> str:
    """Indented JSON with every NaN (at any depth) as null."""
    return json.dumps(_no_nan(document), indent=1, allow_nan=False) + "\n"


def _no_nan(value: object) -> object:
    if _is_nan(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_no_nan(v) for v in value]
    return value


def _is_nan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)
