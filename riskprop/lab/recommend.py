"""Which setting to recommend from a sweep, and the trade-off it makes.

Each setting has a value of the chosen metric (average precision by default) over all accounts
(``x``) and on the unflagged accounts (``y``), both means over the seeds. Propagation trades one
for the other: it lifts the unflagged accounts' ranking but washes out the flagged accounts'
own evidence, which the all-accounts ranking relies on. The recommendation states its
objective in one line (:meth:`Recommendation.objective`): the highest ``x`` among the settings
whose ``y`` keeps at least ``1 - max_loss`` of the best ``y``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from riskprop.errors import ConfigError
from riskprop.lab.evaluate import METRICS, Setting
from riskprop.lab.sweep import Summary


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices (ascending) of the points no other point dominates; ``q`` dominates ``p`` when
    ``q >= p`` in both coordinates and ``q > p`` in one. Equal points stand or fall together;
    a point with a NaN coordinate is never on the front."""
    front = []
    for i, (x, y) in enumerate(points):
        if math.isnan(x) or math.isnan(y):
            continue
        if not any(
            qx >= x and qy >= y and (qx > x or qy > y)
            for qx, qy in points
            if not (math.isnan(qx) or math.isnan(qy))
        ):
            front.append(i)
    return front


@dataclass(frozen=True)
class Choice:
    """One setting's aggregates on both subsets."""

    setting: Setting
    all: Summary
    unflagged: Summary

    def value(self, subset: str, metric: str) -> float:
        return (self.all if subset == "all" else self.unflagged).mean[metric]


def choices(summaries: Sequence[Summary]) -> list[Choice]:
    """The settings holding both subsets, in the order of ``summaries``."""
    by_setting: dict[Setting, dict[str, Summary]] = {}
    for summary in summaries:
        by_setting.setdefault(summary.setting, {})[summary.subset] = summary
    return [
        Choice(setting, subsets["all"], subsets["unflagged"])
        for setting, subsets in by_setting.items()
        if "all" in subsets and "unflagged" in subsets
    ]


@dataclass(frozen=True)
class Recommendation:
    """The setting that maximises ``metric`` over all accounts among those keeping at least
    ``1 - max_loss`` of the best ``metric`` on unflagged accounts (the *floor*).

    The chosen setting is on the Pareto front of (all, unflagged): a setting at least as good
    on both subsets meets the floor too, so it would tie on all accounts and then win the
    tie-break on unflagged ones. Ties go to the better unflagged value, then to fewer
    iterations (cheaper under encryption), then to the grid's order. Without any defined
    unflagged value (no positives there) there is no floor.
    """

    metric: str
    max_loss: float
    floor: float
    chosen: Choice
    best_all: Choice
    best_unflagged: Choice
    baseline: Choice | None
    front: tuple[Setting, ...]
    seeds: int
    source: str = ""

    def objective(self) -> str:
        label = metric_label(self.metric)
        if math.isnan(self.floor):
            return f"the highest {label} over all accounts (no unflagged positives to keep)"
        return (
            f"the highest {label} over all accounts among the settings that keep at least "
            f"{1 - self.max_loss:.0%} of the best {label} on unflagged accounts "
            f"({self.best_unflagged.unflagged.mean[self.metric]:.3f}, so at least "
            f"{self.floor:.3f})"
        )

    def tradeoff(self) -> str:
        """One or two sentences: what the chosen setting gains and gives up."""
        m, c = self.metric, self.chosen
        sentences = []
        if self.baseline is not None and self.baseline.setting != c.setting:
            b = self.baseline
            sentences.append(
                f"Against the initial scores it moves {metric_label(m)} over all accounts "
                f"from {b.value('all', m):.3f} to {c.value('all', m):.3f} and on unflagged "
                f"accounts from {b.value('unflagged', m):.3f} to {c.value('unflagged', m):.3f}."
            )
        u = self.best_unflagged
        if u.setting != c.setting and u.setting.iterations == 0 and self.baseline is not None:
            share = c.value("unflagged", m) / u.value("unflagged", m)
            sentences.append(
                "No setting beats the initial scores on unflagged accounts; this one keeps "
                f"{share:.0%} of their value there."
            )
        elif u.setting != c.setting:
            sentences.append(
                f"The best setting for unflagged accounts ({describe(u.setting)}) reaches "
                f"{u.value('unflagged', m):.3f} there but {u.value('all', m):.3f} over all "
                "accounts."
            )
        elif self.best_all.setting != c.setting:
            a = self.best_all
            sentences.append(
                f"The best setting over all accounts ({describe(a.setting)}) reaches "
                f"{a.value('all', m):.3f} but {a.value('unflagged', m):.3f} on unflagged "
                "accounts."
            )
        else:
            sentences.append("It is also the best on both subsets: no trade-off in this grid.")
        return " ".join(sentences)

    def text(self) -> str:
        """The recommendation as Markdown: objective, setting, table, trade-off."""
        m = self.metric
        lines = [
            "# Recommended setting",
            "",
            f"Data: {self.source}; {self.seeds} seed(s), values are means"
            + (" ± standard deviation over the seeds." if self.seeds > 1 else "."),
            "",
            f"Objective: {self.objective()}.",
            "",
            f"**Recommended: {describe(self.chosen.setting)}.**",
            "",
            f"| {metric_label(m)} | all accounts | unflagged accounts |",
            "| --- | ---: | ---: |",
        ]
        rows = [("initial scores (T = 0)", self.baseline)] if self.baseline else []
        rows += [
            (f"recommended: {describe(self.chosen.setting)}", self.chosen),
            (f"best over all accounts: {describe(self.best_all.setting)}", self.best_all),
            (
                f"best on unflagged accounts: {describe(self.best_unflagged.setting)}",
                self.best_unflagged,
            ),
        ]
        for name, choice in rows:
            if choice is not None:
                lines.append(
                    f"| {name} | {_value(choice.all, m)} | {_value(choice.unflagged, m)} |"
                )
        lines += ["", f"Trade-off: {self.tradeoff()}", ""]
        return "\n".join(lines)

    def row(self) -> dict[str, object]:
        """The recommendation for JSON: objective, chosen setting and its values."""
        c = self.chosen
        return {
            "metric": self.metric,
            "max_loss": self.max_loss,
            "floor": self.floor,
            "objective": self.objective(),
            "iterations": c.setting.iterations,
            "delta_a": c.setting.delta_a,
            "delta_b": c.setting.delta_b,
            "combine": c.setting.combine,
            "all": c.value("all", self.metric),
            "unflagged": c.value("unflagged", self.metric),
            "tradeoff": self.tradeoff(),
        }


def recommend(
    summaries: Sequence[Summary],
    baseline: Sequence[Summary] = (),
    *,
    metric: str = "average_precision",
    max_loss: float = 0.1,
    source: str = "",
) -> Recommendation | None:
    """The :class:`Recommendation` over ``summaries``; None when no setting has a defined
    ``metric`` over all accounts."""
    check_objective(metric, max_loss)
    options = choices(summaries)
    order = {choice.setting: i for i, choice in enumerate(options)}

    def x(c: Choice) -> float:
        return c.value("all", metric)

    def y(c: Choice) -> float:
        return c.value("unflagged", metric)

    def rank(first: float, second: float, c: Choice) -> tuple[float, float, int, int]:
        return (-_low(first), -_low(second), c.setting.iterations, order[c.setting])

    defined = [c for c in options if not math.isnan(x(c))]
    if not defined:
        return None
    unflagged = [y(c) for c in options if not math.isnan(y(c))]
    floor = (1.0 - max_loss) * max(unflagged) if unflagged else math.nan
    feasible = [c for c in defined if not math.isnan(floor) and _low(y(c)) >= floor] or defined
    chosen = min(feasible, key=lambda c: rank(x(c), y(c), c))
    best_all = min(defined, key=lambda c: rank(x(c), y(c), c))
    best_unflagged = min(options, key=lambda c: rank(y(c), x(c), c))
    base = choices(baseline)
    front = pareto_front([(x(c), y(c)) for c in options])
    return Recommendation(
        metric=metric,
        max_loss=float(max_loss),
        floor=floor,
        chosen=chosen,
        best_all=best_all,
        best_unflagged=best_unflagged,
        baseline=base[0] if base else None,
        front=tuple(options[i].setting for i in front),
        seeds=max((s.seeds for s in summaries), default=0),
        source=source,
    )


def check_objective(metric: str, max_loss: float) -> None:
    """Refuse a metric not in :data:`METRICS` and a ``max_loss`` outside ``[0, 1)``."""
    if metric not in METRICS:
        raise ConfigError(f"--metric: {metric!r} is not one of {', '.join(METRICS)}")
    if isinstance(max_loss, bool) or not (
        isinstance(max_loss, int | float) and 0.0 <= max_loss < 1.0
    ):
        raise ConfigError(f"--max-loss: must lie in [0, 1) (got {max_loss!r})")


def _low(value: float) -> float:
    """NaN ranks below every number."""
    return -math.inf if math.isnan(value) else value


def describe(setting: Setting) -> str:
    """``T = 6, delta_a = 0.2, delta_b = 0, combine = max`` (``T = 0: the initial scores``)."""
    if setting.iterations == 0:
        return "T = 0: the initial scores"
    return (
        f"T = {setting.iterations}, delta_a = {setting.delta_a:g}, "
        f"delta_b = {setting.delta_b:g}, combine = {setting.combine}"
    )


def metric_label(metric: str) -> str:
    """``average_precision`` -> ``average precision`` (ROC AUC spelt as such)."""
    return "ROC AUC" if metric == "roc_auc" else metric.replace("_", " ")


def _value(summary: Summary, metric: str) -> str:
    mean, std = summary.mean[metric], summary.std[metric]
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.3f}" if math.isnan(std) else f"{mean:.3f} ± {std:.3f}"
