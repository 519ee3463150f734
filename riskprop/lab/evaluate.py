"""Evaluate propagation settings against known labels: the researcher's workbench.

A :class:`Workbench` loads a data set and its labels once, builds the global graph once and
prepares each period's CSR once (:class:`riskprop.core.plaintext.PreparedPeriod`); every
:class:`Setting` is then a few vector operations. Settings that share ``(delta_a, delta_b)``
share one pass: with one period, the scores after ``T`` iterations are a prefix of the run to
the largest ``T``, so every requested ``T`` is read off on the way.

Subsets (:data:`SUBSETS`): ``all`` accounts, and the ``unflagged`` ones, whose *initial* score
lies below ``Options.flag_threshold``: the accounts the banks do not already suspect, which
propagation is meant to surface. The metrics (:data:`METRICS`, maths in
:mod:`riskprop.core.metrics`) rank one subset's scores against its labels.

Combination (``Setting.combine``): ``plain`` ranks by the propagated score ``r_T``; ``max``
ranks by ``max(r_0, r_T)``, so an account keeps its own evidence however its neighbours pull
it down. ``max`` needs no change to the secure protocol: each bank holds its accounts' initial
scores (its own input) and, after the joint decryption, their propagated scores, and nothing
else; it takes the maximum locally, account by account, and learns nothing new. (A
maximum cannot be taken on Paillier ciphertexts without a comparison protocol; here it need
not be.) ``flag-first`` ranks every flagged account (``r_0 >= Options.flag_threshold``) above
every other one, each group by ``r_T`` (score ``r_T + 1`` when flagged; ``r_T`` lies in [0, 1]):
the flag is kept whatever the neighbours do, while propagation still orders the flagged
accounts (launderers above false positives) and, unchanged, the unflagged ones. Like ``max``,
each bank computes it locally after decryption (docs/combinations.md compares them).

Labels (``bank,id,is_laundering``, the format ``generate`` and ``split_amlsim`` write): every
row must name an account of the data set, once, with ``is_laundering`` 0 or 1; an account that
no row names counts as not laundering (a file may list only the known launderers) and is
counted in ``Workbench.unlabelled``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np

from riskprop.core.data import load_dataset
from riskprop.core.graph import GlobalGraph, build_global
from riskprop.core.metrics import Ranking
from riskprop.core.plaintext import PreparedPeriod, step
from riskprop.core.schedule import DEFAULT_DELTA_A, DEFAULT_DELTA_B, DeltaSchedule
from riskprop.core.types import BoolArray, FloatArray
from riskprop.errors import InputError, ParameterError
from riskprop.files.atomic import atomic_write_text
from riskprop.files.layout import label_rows

COMBINES: Final = ("plain", "max", "flag-first")
SUBSETS: Final = ("all", "unflagged")
METRICS: Final = (
    "roc_auc",
    "average_precision",
    "precision_at_k",
    "precision_at_recall",
    "recall_at_top",
    "lift_at_top",
)


@dataclass(frozen=True)
class Setting:
    """One propagation setting: ``iterations`` per period with ``delta_k = delta_a /
    k**delta_b``, ranked by ``combine`` (module doc). ``iterations == 0`` is the initial
    scores, whatever the other fields."""

    iterations: int
    delta_a: float = DEFAULT_DELTA_A
    delta_b: float = DEFAULT_DELTA_B
    combine: str = "plain"

    def __post_init__(self) -> None:
        if isinstance(self.iterations, bool) or self.iterations < 0:
            raise ParameterError("iterations", f"must be >= 0 (got {self.iterations})")
        if self.combine not in COMBINES:
            raise ParameterError(
                "combine", f"must be one of {', '.join(COMBINES)} (got {self.combine!r})"
            )
        self.schedule  # noqa: B018 -- checks delta_a and delta_b

    @property
    def schedule(self) -> DeltaSchedule:
        return DeltaSchedule(self.delta_a, self.delta_b)


@dataclass(frozen=True)
class Options:
    """How the metrics are taken: ``flag_threshold`` splits the subsets (initial score ``>=``
    it: flagged), ``k`` for precision at k, ``recall`` for precision at a recall, ``top`` the
    share of accounts for recall and lift at the top."""

    flag_threshold: float = 0.5
    k: int = 100
    recall: float = 0.2
    top: float = 0.01

    def __post_init__(self) -> None:
        if not math.isfinite(self.flag_threshold):
            raise ParameterError(
                "flag_threshold", f"must be a finite number (got {self.flag_threshold})"
            )
        if isinstance(self.k, bool) or self.k < 1:
            raise ParameterError("k", f"must be >= 1 (got {self.k})")
        if not 0.0 < self.recall <= 1.0:
            raise ParameterError("recall", f"must lie in (0, 1] (got {self.recall:g})")
        if not 0.0 < self.top <= 1.0:
            raise ParameterError("top", f"must lie in (0, 1] (got {self.top:g})")

    def row(self) -> dict[str, object]:
        return {
            "flag_threshold": self.flag_threshold,
            "k": self.k,
            "recall": self.recall,
            "top": self.top,
        }


@dataclass(frozen=True)
class Evaluation:
    """One setting on one subset: its size, its positives and every metric of
    :data:`METRICS` (NaN where undefined), taken with ``options``."""

    setting: Setting
    subset: str
    accounts: int
    positives: int
    metrics: dict[str, float]
    options: Options = field(default_factory=Options)

    def row(self) -> dict[str, object]:
        """One flat row: the setting, the subset, its counts, the metrics, then the options."""
        return {
            "iterations": self.setting.iterations,
            "delta_a": self.setting.delta_a,
            "delta_b": self.setting.delta_b,
            "combine": self.setting.combine,
            "subset": self.subset,
            "accounts": self.accounts,
            "positives": self.positives,
            **{name: self.metrics[name] for name in METRICS},
            **self.options.row(),
        }


def measure(scores: FloatArray, labels: BoolArray, options: Options) -> dict[str, float]:
    """Every metric of :data:`METRICS` for one score vector (sorted once)."""
    ranking = Ranking.of(scores, labels)
    return {
        "roc_auc": ranking.roc_auc(),
        "average_precision": ranking.average_precision(),
        "precision_at_k": ranking.precision_at_k(options.k),
        "precision_at_recall": ranking.precision_at_recall(options.recall),
        "recall_at_top": ranking.recall_at_top(options.top),
        "lift_at_top": ranking.lift_at_top(options.top),
    }


class Workbench:
    """A data set's graph and labels, loaded once; settings evaluated on prepared arrays.

    Scores are in the graph's global order (banks in data set order, each bank's accounts in
    file order), like :func:`riskprop.lab.simulate.simulate_plaintext`.
    """

    def __init__(
        self,
        graph: GlobalGraph,
        labels: BoolArray,
        *,
        unlabelled: int = 0,
        warnings: Sequence[str] = (),
    ) -> None:
        if labels.shape != (graph.n_accounts,):
            raise ValueError(f"need {graph.n_accounts} labels (got {labels.shape})")
        self.graph = graph
        self.labels = np.asarray(labels, dtype=bool)
        self.unlabelled = unlabelled
        self.warnings = tuple(warnings)
        self._periods = tuple(PreparedPeriod.from_csr(csr) for csr in graph.incoming)

    @classmethod
    def load(cls, data: Path, labels: Path) -> Workbench:
        """Load the data set at ``data`` and the labels file ``labels`` (module doc)."""
        dataset = load_dataset(data)
        graph = build_global(dataset)
        vector, unlabelled = read_label_vector(labels, graph)
        warnings = [w for bank in dataset.banks for w in bank.warnings]
        return cls(graph, vector, unlabelled=unlabelled, warnings=warnings)

    @property
    def initial(self) -> FloatArray:
        return self.graph.initial

    @property
    def n_accounts(self) -> int:
        return self.graph.n_accounts

    def unflagged(self, options: Options = Options()) -> BoolArray:
        """Accounts whose initial score lies below ``options.flag_threshold``."""
        mask: BoolArray = self.initial < options.flag_threshold
        return mask

    def scores(self, setting: Setting, options: Options = Options()) -> FloatArray:
        """The ranking scores of ``setting`` for every account (``options.flag_threshold``
        for ``flag-first``)."""
        ((_, propagated),) = self._propagated(setting.schedule, [setting.iterations])
        return np.array(self._combine(setting, propagated, options), copy=True)

    def convergence(self, setting: Setting, *, statistic: str = "mean") -> list[float]:
        """``mean_x |r_k(x) - r_{k-1}(x)|`` (``statistic="max"``: the largest change) for every
        iteration of every period, in order (``iterations x periods`` values). The
        combination is not applied: it acts once, after the last iteration."""
        if statistic not in ("mean", "max"):
            raise ValueError(f"statistic must be mean or max (got {statistic!r})")
        reduce = np.mean if statistic == "mean" else np.max
        changes = []
        scores = self.initial
        for period in self._periods:
            for delta in setting.schedule.deltas(setting.iterations):
                updated = step(period, scores, delta)
                changes.append(float(reduce(np.abs(updated - scores))) if len(scores) else 0.0)
                scores = updated
        return changes

    def evaluate(
        self, settings: Sequence[Setting], options: Options = Options()
    ) -> list[Evaluation]:
        """Every setting on every subset of :data:`SUBSETS`, in the order given."""
        masks = {"all": None, "unflagged": self.unflagged(options)}
        found: dict[Setting, list[Evaluation]] = {}
        groups: dict[tuple[float, float], list[Setting]] = {}
        for setting in settings:
            groups.setdefault((setting.delta_a, setting.delta_b), []).append(setting)
        for (delta_a, delta_b), group in groups.items():
            wanted = sorted({s.iterations for s in group})
            for t, propagated in self._propagated(DeltaSchedule(delta_a, delta_b), wanted):
                for setting in group:
                    if setting.iterations != t or setting in found:
                        continue
                    scores = self._combine(setting, propagated, options)
                    found[setting] = [
                        self._evaluation(setting, subset, scores, masks[subset], options)
                        for subset in SUBSETS
                    ]
        return [evaluation for setting in settings for evaluation in found[setting]]

    def _evaluation(
        self,
        setting: Setting,
        subset: str,
        scores: FloatArray,
        mask: BoolArray | None,
        options: Options,
    ) -> Evaluation:
        s, y = (scores, self.labels) if mask is None else (scores[mask], self.labels[mask])
        return Evaluation(setting, subset, len(s), int(y.sum()), measure(s, y, options), options)

    def _combine(self, setting: Setting, propagated: FloatArray, options: Options) -> FloatArray:
        if setting.combine == "max":
            return np.maximum(self.initial, propagated)
        if setting.combine == "flag-first":
            flagged: FloatArray = propagated + (self.initial >= options.flag_threshold)
            return flagged
        return propagated

    def _propagated(
        self, schedule: DeltaSchedule, iterations: Sequence[int]
    ) -> Iterator[tuple[int, FloatArray]]:
        """``(T, r_T)`` for every ``T`` of the ascending ``iterations``: one pass to the
        largest ``T`` with one period, one run per ``T`` otherwise (``k`` restarts every
        period, so a shorter run is no prefix of a longer one)."""
        if len(self._periods) == 1:
            period = self._periods[0]
            scores, done = self.initial, 0
            for t in iterations:
                while done < t:
                    done += 1
                    scores = step(period, scores, schedule.delta(done))
                yield t, scores
            return
        for t in iterations:
            scores = self.initial
            for period in self._periods:
                for delta in schedule.deltas(t):
                    scores = step(period, scores, delta)
            yield t, scores


def grid(
    iterations: Sequence[int],
    deltas_a: Sequence[float] = (DEFAULT_DELTA_A,),
    deltas_b: Sequence[float] = (DEFAULT_DELTA_B,),
    combines: Sequence[str] = ("plain",),
) -> list[Setting]:
    """Every combination, the initial scores first and once (``T = 0`` with the first
    ``delta_a``, ``delta_b`` and ``plain``: they do not matter there), repeats dropped."""
    first = Setting(0, deltas_a[0], deltas_b[0], "plain")
    settings = [first]
    for a in deltas_a:
        for b in deltas_b:
            for combine in combines:
                for t in iterations:
                    setting = Setting(t, a, b, combine)
                    if t > 0 and setting not in settings:
                        settings.append(setting)
    return settings


# --------------------------------------------------------------------------- labels


def read_label_vector(path: Path, graph: GlobalGraph) -> tuple[BoolArray, int]:
    """The labels of ``path`` in the graph's global order, and how many accounts no row
    names (counted as not laundering). Errors name the file, the line and the problem."""
    position: dict[str, dict[str, int]] = {}
    for b, (bank, ids) in enumerate(zip(graph.banks, graph.account_ids, strict=True)):
        offset = int(graph.offsets[b])
        position[bank] = {account: offset + i for i, account in enumerate(ids)}
    labels = np.zeros(graph.n_accounts, dtype=bool)
    seen = np.zeros(graph.n_accounts, dtype=bool)
    for where, bank, account, flag in label_rows(path):
        accounts = position.get(bank)
        if accounts is None:
            raise InputError(
                f"{where}: bank {bank!r} is not a bank of the data set ({', '.join(graph.banks)})"
            )
        at = accounts.get(account)
        if at is None:
            raise InputError(f"{where}: {bank} has no account {account!r}")
        seen[at] = True
        labels[at] = flag
    return labels, int(graph.n_accounts - seen.sum())


# --------------------------------------------------------------------------- output


def rows(evaluations: Sequence[Evaluation]) -> list[dict[str, object]]:
    return [evaluation.row() for evaluation in evaluations]


def write_csv(path: Path, evaluations: Sequence[Evaluation]) -> None:
    """One row per evaluation (:meth:`Evaluation.row`), NaN as an empty field; atomic."""
    table = rows(evaluations)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    names = list(table[0]) if table else _columns()
    writer.writerow(names)
    for row in table:
        writer.writerow(["" if _is_nan(row[name]) else row[name] for name in names])
    atomic_write_text(path, buffer.getvalue())


def write_json(path: Path, evaluations: Sequence[Evaluation]) -> None:
    """A JSON array of the rows (:meth:`Evaluation.row`), NaN as null; atomic."""
    table = [
        {name: None if _is_nan(value) else value for name, value in row.items()}
        for row in rows(evaluations)
    ]
    atomic_write_text(path, json.dumps(table, indent=1, allow_nan=False) + "\n")


def _columns() -> list[str]:
    setting = ["iterations", "delta_a", "delta_b", "combine", "subset", "accounts", "positives"]
    return [*setting, *METRICS, *Options().row()]


def _is_nan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)


# --------------------------------------------------------------------------- text


def describe(workbench: Workbench, options: Options) -> str:
    """One line on the accounts, the positives and the subsets."""
    unflagged = workbench.unflagged(options)
    labels = workbench.labels
    text = (
        f"{workbench.n_accounts} accounts, {int(labels.sum())} laundering; "
        f"unflagged (initial score < {options.flag_threshold:g}): {int(unflagged.sum())} "
        f"accounts, {int((labels & unflagged).sum())} laundering"
    )
    if workbench.unlabelled:
        text += f"; {workbench.unlabelled} accounts without a label count as not laundering"
    return text


def format_table(evaluations: Sequence[Evaluation], options: Options) -> str:
    """One line per evaluation; ``T = 0`` shows ``init`` for its delta and combination."""
    top = f"{options.top * 100:g}%"
    heads = (
        "AUC",
        "AP",
        f"P@{options.k}",
        f"P@{options.recall * 100:g}%R",
        f"R@{top}",
        f"lift@{top}",
    )
    widths = [max(7, len(h)) for h in heads]
    header = f"{'T':>3} {'delta_a':>7} {'delta_b':>7} {'combine':>10} {'subset':>9} " + " ".join(
        f"{h:>{w}}" for h, w in zip(heads, widths, strict=True)
    )
    lines = [header, "-" * len(header)]
    for e in evaluations:
        s = e.setting
        if s.iterations == 0:
            a, b, combine = "init", "", ""
        else:
            a, b, combine = f"{s.delta_a:g}", f"{s.delta_b:g}", s.combine
        values = " ".join(f"{e.metrics[m]:>{w}.3f}" for m, w in zip(METRICS, widths, strict=True))
        lines.append(f"{s.iterations:>3} {a:>7} {b:>7} {combine:>10} {e.subset:>9} {values}")
    return "\n".join(lines)


def format_convergence(workbench: Workbench, settings: Sequence[Setting]) -> list[str]:
    """Per ``(delta_a, delta_b)`` of ``settings``: the mean absolute change of every iteration
    up to the largest ``T`` asked for, and the largest change of the last iteration."""
    longest: dict[tuple[float, float], int] = {}
    for s in settings:
        key = (s.delta_a, s.delta_b)
        longest[key] = max(longest.get(key, 0), s.iterations)
    lines = []
    periods = len(workbench.graph.periods)
    for (a, b), t in longest.items():
        if t == 0:
            continue
        setting = Setting(t, a, b)
        mean = workbench.convergence(setting)
        largest = workbench.convergence(setting, statistic="max")
        each = " per period" if periods > 1 else ""
        lines.append(
            f"change per iteration (mean |r_k - r_(k-1)|, k = 1..{t}{each}), a={a:g} b={b:g}: "
            + " ".join(f"{v:.4f}" for v in mean)
            + f"; largest at k={t}: {largest[-1]:.4f}"
        )
    return lines
