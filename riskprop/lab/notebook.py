"""The workbench for notebooks: load once, then simulate, evaluate and sweep into tables.

These are the functions :mod:`riskprop.api` exports; each is a few lines over
:mod:`riskprop.lab.evaluate` and :mod:`riskprop.lab.sweep`, and returns a ``pyarrow.Table``
(``as_pandas=True``: a pandas DataFrame, :func:`riskprop.lab.tables.output`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from riskprop.core.data import load_dataset
from riskprop.core.graph import build_global
from riskprop.core.params import DEFAULT_ITERATIONS
from riskprop.core.schedule import DEFAULT_DELTA_A, DEFAULT_DELTA_B
from riskprop.errors import ConfigError, InputError
from riskprop.lab.evaluate import Options, Setting, Workbench, grid
from riskprop.lab.recommend import check_objective, recommend
from riskprop.lab.sweep import DEFAULT_GRID, Files, Grid, Source, run_sweep, write_sweep
from riskprop.lab.sweep_plots import require_matplotlib
from riskprop.lab.tables import output, write_tables

PathLike = str | os.PathLike[str]


def load(
    data: PathLike | None = None,
    labels: PathLike | Any | None = None,
    *,
    accounts: Any | None = None,
    transactions: Any | None = None,
) -> Workbench:
    """A :class:`Workbench`: a data set and its labels loaded and validated once.

    From files, ``load("DATA")`` (labels from ``DATA/labels.csv`` when it exists) or
    ``load("DATA", "labels.csv")``; from tables (pyarrow Tables or pandas DataFrames),
    ``load(accounts=..., transactions=..., labels=...)`` with the columns of the files:
    accounts ``bank, id, risk_score``, transactions ``id_source, bank_source, id_destination,
    bank_destination, amount[, period]``, labels ``bank, id, is_laundering``. Without labels
    every account counts as not laundering: enough to simulate, not to evaluate.
    """
    if (data is None) == (accounts is None and transactions is None):
        raise ConfigError("load: give a data directory or the accounts and transactions tables")
    if data is not None:
        root = Path(data)
        if labels is None and (root / "labels.csv").is_file():
            labels = root / "labels.csv"
        if labels is None:
            return _unlabelled(root)
        return Workbench.load(root, Path(labels))
    if accounts is None or transactions is None:
        raise ConfigError("load: give both the accounts and the transactions table")
    with tempfile.TemporaryDirectory(prefix="riskprop-tables-") as tmp:
        try:
            root, label_file = write_tables(Path(tmp), accounts, transactions, labels)
            if label_file is None:
                return _unlabelled(root)
            return Workbench.load(root, label_file)
        except InputError as exc:  # the temporary files mean nothing to the caller
            raise InputError(str(exc).replace(f"{tmp}/data/", "table ")) from None


def _unlabelled(root: Path) -> Workbench:
    dataset = load_dataset(root)
    graph = build_global(dataset)
    warnings = [w for bank in dataset.banks for w in bank.warnings]
    return Workbench(
        graph,
        np.zeros(graph.n_accounts, dtype=bool),
        unlabelled=graph.n_accounts,
        warnings=warnings,
    )


def _workbench(data: Workbench | PathLike, labels: PathLike | None = None) -> Workbench:
    return data if isinstance(data, Workbench) else load(data, labels)


def _values(value: object) -> list[Any]:
    return list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]


def simulate(
    data: Workbench | PathLike,
    *,
    iterations: int = DEFAULT_ITERATIONS,
    delta_a: float = DEFAULT_DELTA_A,
    delta_b: float = DEFAULT_DELTA_B,
    combine: str = "plain",
    as_pandas: bool = False,
) -> Any:
    """Plaintext propagation of one :class:`Setting` over a :class:`Workbench` (or a data
    directory): a table ``bank, id, initial_score, risk_score`` in the data set's order, where
    ``risk_score`` is the ranking score of ``combine`` (``plain``: the propagated score;
    ``max``: the larger of the initial and the propagated score)."""
    workbench = _workbench(data)
    scores = workbench.scores(Setting(iterations, delta_a, delta_b, combine))
    graph = workbench.graph
    return output(
        [
            {"bank": bank, "id": account, "initial_score": initial, "risk_score": score}
            for (bank, account), initial, score in zip(
                (
                    (b, i)
                    for b, ids in zip(graph.banks, graph.account_ids, strict=True)
                    for i in ids
                ),
                graph.initial.tolist(),
                scores.tolist(),
                strict=True,
            )
        ],
        as_pandas,
    )


def evaluate(
    data: Workbench | PathLike,
    labels: PathLike | None = None,
    *,
    iterations: int | Sequence[int] = DEFAULT_ITERATIONS,
    delta_a: float | Sequence[float] = DEFAULT_DELTA_A,
    delta_b: float | Sequence[float] = DEFAULT_DELTA_B,
    combine: str | Sequence[str] = "plain",
    options: Options | None = None,
    as_pandas: bool = False,
) -> Any:
    """The metrics of every setting of the grid ``iterations x delta_a x delta_b x combine``
    (the initial scores, ``T = 0``, first) on all accounts and on the unflagged ones: one row
    per setting and subset, columns as ``riskprop evaluate --csv`` writes them."""
    workbench = _workbench(data, labels)
    if workbench.unlabelled == workbench.n_accounts:
        raise ConfigError("evaluate: the data have no labels; give labels (bank,id,is_laundering)")
    settings = grid(_values(iterations), _values(delta_a), _values(delta_b), _values(combine))
    evaluations = workbench.evaluate(settings, Options() if options is None else options)
    return output([e.row() for e in evaluations], as_pandas)


def sweep(
    source: Source | PathLike,
    labels: PathLike | None = None,
    *,
    iterations: Sequence[int] = DEFAULT_GRID.iterations,
    delta_a: Sequence[float] = DEFAULT_GRID.delta_a,
    delta_b: Sequence[float] = DEFAULT_GRID.delta_b,
    combine: Sequence[str] = DEFAULT_GRID.combine,
    seeds: int | Sequence[int] = 1,
    workers: int | None = None,
    options: Options | None = None,
    out: PathLike | None = None,
    plots: bool = True,
    metric: str = "average_precision",
    max_loss: float = 0.1,
    as_pandas: bool = False,
) -> Any:
    """Evaluate a grid over several seeds in worker processes and aggregate: one row per
    setting and subset with each metric's mean over the seeds and its ``<metric>_std``.

    ``source`` is a data directory (with ``labels``, default ``DATA/labels.csv``; one seed) or
    a :class:`Files`, :class:`AmlsimSplits` or :class:`Generated` source; ``seeds`` a count
    (seeds ``0..n-1``) or the seeds themselves. With ``out`` the sweep also writes its CSV,
    JSON, ``recommendation.md`` (the best setting for ``metric`` over all accounts keeping at
    least ``1 - max_loss`` of the best on unflagged accounts) and, with ``plots``, its figures
    (needs matplotlib). Workers default to one per core.
    """
    if isinstance(source, str | os.PathLike):
        root = Path(source)
        source = Files(root, Path(labels) if labels is not None else root / "labels.csv")
    elif labels is not None:
        raise ConfigError("sweep: labels go with a data directory, not with a source")
    chosen = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    grid_ = Grid(tuple(iterations), tuple(delta_a), tuple(delta_b), tuple(combine))
    check_objective(metric, max_loss)
    if out is not None and plots:
        require_matplotlib()
    result = run_sweep(source, grid_, seeds=chosen, options=options, workers=workers)
    if out is not None:
        advice = recommend(
            result.summaries,
            result.baseline,
            metric=metric,
            max_loss=max_loss,
            source=result.source,
        )
        write_sweep(result, Path(out), advice, plots=plots)
    return output(result.rows(), as_pandas)
