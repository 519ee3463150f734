"""The sweep's figures, rendered with matplotlib's Agg canvas to PNG and SVG bytes.

* ``<metric>_vs_T``: the metric against ``T``, one line per ``delta_a``, one panel per subset
  (columns) and per ``(delta_b, combine)`` (rows); a band of one standard deviation over the
  seeds where there are several, and the initial scores' value as a dashed line.
* ``tradeoff``: one point per setting, the metric over all accounts (x) against the unflagged
  accounts (y); the Pareto front joined and ringed, the initial scores and the recommended
  setting marked, and the recommendation's floor drawn.

Figures are built on :class:`matplotlib.figure.Figure` without pyplot, so rendering selects no
backend and leaves a notebook's own set-up alone. SVG output is reproducible (fixed hash salt,
no date).
"""

from __future__ import annotations

import importlib.util
import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from riskprop.errors import ConfigError
from riskprop.lab.evaluate import METRICS, SUBSETS, Setting
from riskprop.lab.recommend import Recommendation, choices, metric_label, pareto_front
from riskprop.lab.sweep import Summary, SweepResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FORMATS = ("png", "svg")
SUBSET_TITLES = {"all": "all accounts", "unflagged": "unflagged accounts"}


def render(
    result: SweepResult,
    recommendation: Recommendation | None,
    metrics: Sequence[str] = METRICS,
) -> dict[str, bytes]:
    """File name -> content for every figure in every format of :data:`FORMATS`."""
    require_matplotlib()
    figures = {f"{m}_vs_T": by_iterations(result, m) for m in metrics}
    metric = recommendation.metric if recommendation is not None else "average_precision"
    figures["tradeoff"] = tradeoff(result, metric, recommendation)
    files = {}
    for name, figure in figures.items():
        for fmt in FORMATS:
            files[f"{name}.{fmt}"] = to_bytes(figure, fmt)
            # the first save laid the figure out; the next formats keep that layout
            figure.set_layout_engine("none")
    return files


def require_matplotlib() -> None:
    """Refuse plotting early, before a sweep runs, where matplotlib is not installed."""
    if importlib.util.find_spec("matplotlib") is None:
        raise ConfigError(
            "plots need matplotlib: pip install 'riskprop[plots]' (or pass --no-plots)"
        )


def to_bytes(figure: Figure, fmt: str) -> bytes:
    """``figure`` as ``fmt`` (png or svg) through the Agg canvas."""
    from matplotlib import rc_context
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    metadata = {"Date": None} if fmt == "svg" else {"Software": None}
    with rc_context({"svg.hashsalt": "riskprop"}):
        figure.savefig(buffer, format=fmt, metadata=metadata)
    return buffer.getvalue()


def by_iterations(result: SweepResult, metric: str) -> Figure:
    """The ``<metric>_vs_T`` figure (module doc)."""
    from matplotlib.figure import Figure

    grid = result.grid
    variants = [(b, c) for b in grid.delta_b for c in grid.combine]
    figure = Figure(figsize=(5.0 * len(SUBSETS), 3.4 * len(variants) + 0.6), layout="constrained")
    axes = figure.subplots(len(variants), len(SUBSETS), squeeze=False, sharex=True)
    baseline = {s.subset: s.mean[metric] for s in result.baseline}
    index = {(s.setting, s.subset): s for s in result.summaries}
    colours = _colours(len(grid.delta_a))
    iterations = sorted(grid.iterations)
    for row, (delta_b, combine) in enumerate(variants):
        for column, subset in enumerate(SUBSETS):
            ax = axes[row][column]
            for colour, delta_a in zip(colours, grid.delta_a, strict=True):
                points = [_find(index, t, delta_a, delta_b, combine, subset) for t in iterations]
                mean = [p.mean[metric] for p in points]
                std = [p.std[metric] for p in points]
                ax.plot(iterations, mean, marker="o", ms=3, color=colour, label=f"{delta_a:g}")
                if len(result.seeds) > 1 and not all(map(math.isnan, std)):
                    spread = [0.0 if math.isnan(d) else d for d in std]
                    low = [m - d for m, d in zip(mean, spread, strict=True)]
                    high = [m + d for m, d in zip(mean, spread, strict=True)]
                    ax.fill_between(iterations, low, high, color=colour, alpha=0.15, lw=0)
            if not math.isnan(baseline.get(subset, math.nan)):
                ax.axhline(baseline[subset], color="0.4", ls="--", lw=1, label="initial")
            title = SUBSET_TITLES[subset]
            if len(variants) > 1:
                title += f" (delta_b = {delta_b:g}, {combine})"
            ax.set_title(title, fontsize=10)
            ax.grid(True, alpha=0.3)
            if row == len(variants) - 1:
                ax.set_xlabel("iterations T")
            if column == 0:
                ax.set_ylabel(metric_label(metric))
    axes[0][-1].legend(title="delta_a", fontsize=8, title_fontsize=8, loc="best")
    figure.suptitle(f"{metric_label(metric)} against T{_seeds_note(result)}")
    return figure


def tradeoff(result: SweepResult, metric: str, recommendation: Recommendation | None) -> Figure:
    """The ``tradeoff`` figure (module doc)."""
    from matplotlib.figure import Figure

    options = choices(result.summaries)
    x = [c.value("all", metric) for c in options]
    y = [c.value("unflagged", metric) for c in options]
    figure = Figure(figsize=(6.4, 5.2), layout="constrained")
    ax = figure.subplots()
    colours = dict(zip(result.grid.delta_a, _colours(len(result.grid.delta_a)), strict=True))
    markers = dict(zip(result.grid.combine, "os^vD", strict=False))
    for delta_a, colour in colours.items():
        for combine, marker in markers.items():
            at = [
                i
                for i, c in enumerate(options)
                if c.setting.delta_a == delta_a and c.setting.combine == combine
            ]
            if at:
                ax.scatter(
                    [x[i] for i in at],
                    [y[i] for i in at],
                    color=colour,
                    marker=marker,
                    s=22,
                    alpha=0.8,
                    label=f"delta_a {delta_a:g}, {combine}",
                )
    front = sorted(pareto_front(list(zip(x, y, strict=True))), key=lambda i: x[i])
    if front:
        ax.plot([x[i] for i in front], [y[i] for i in front], color="black", lw=1, zorder=1)
        ax.scatter(
            [x[i] for i in front],
            [y[i] for i in front],
            facecolors="none",
            edgecolors="black",
            s=70,
            label="Pareto front",
        )
        for i in front:
            s = options[i].setting
            ax.annotate(
                f"T{s.iterations} a{s.delta_a:g}" + (f" b{s.delta_b:g}" if s.delta_b else ""),
                (x[i], y[i]),
                xytext=(0, 7),
                textcoords="offset points",
                ha="center",
                fontsize=6,
                color="0.25",
            )
    for base in choices(result.baseline):
        ax.scatter(
            [base.value("all", metric)],
            [base.value("unflagged", metric)],
            marker="*",
            s=160,
            color="0.3",
            label="initial scores",
            zorder=3,
        )
    if recommendation is not None and recommendation.metric == metric:
        chosen = recommendation.chosen
        point = (chosen.value("all", metric), chosen.value("unflagged", metric))
        ax.scatter(*point, s=220, facecolors="none", edgecolors="red", lw=2, zorder=4)
        left = point[0] > sum(ax.get_xlim()) / 2  # keep the label inside the axes
        ax.annotate(
            "recommended",
            point,
            xytext=(-12 if left else 12, -16),
            textcoords="offset points",
            ha="right" if left else "left",
            color="red",
            fontsize=8,
        )
        if not math.isnan(recommendation.floor):
            ax.axhline(recommendation.floor, color="red", ls=":", lw=1, label="floor")
    label = metric_label(metric)
    ax.set_xlabel(f"{label}, all accounts")
    ax.set_ylabel(f"{label}, unflagged accounts")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    figure.suptitle(f"All against unflagged accounts{_seeds_note(result)}")
    return figure


def _find(
    index: dict[tuple[Setting, str], Summary],
    t: int,
    delta_a: float,
    delta_b: float,
    combine: str,
    subset: str,
) -> Summary:
    return index[Setting(t, delta_a, delta_b, combine), subset]


def _colours(n: int) -> list[str]:
    palette = [f"C{i}" for i in range(10)]
    return [palette[i % len(palette)] for i in range(n)]


def _seeds_note(result: SweepResult) -> str:
    n = len(result.seeds)
    return f" (means over {n} seeds)" if n > 1 else ""
