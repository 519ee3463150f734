"""The researcher's workbench commands (``evaluate``, ``sweep``), thin over the lab modules.

The list options (``-T 0,1,2``, ``--delta-a 0.1,0.3``, ``--combine plain,max``) parse with the
callbacks below; ranges are checked by the library (``Setting``, ``Options``), whose
``ParameterError`` names the flag.
"""

from __future__ import annotations

from pathlib import Path

import click

from riskprop.cli.options import CONTEXT, F, apply, log, parse_list, split_names
from riskprop.core.params import DEFAULT_ITERATIONS
from riskprop.core.schedule import DEFAULT_DELTA_A, DEFAULT_DELTA_B
from riskprop.errors import ConfigError


def int_list(ctx: click.Context, param: click.Parameter, text: str) -> list[int]:
    """Comma-separated integers (``0,1,2,4,8``)."""
    values = parse_list(text, int, "integers")
    if not values:
        raise click.BadParameter("give at least one value")
    return values


def float_list(ctx: click.Context, param: click.Parameter, text: str) -> list[float]:
    """Comma-separated numbers (``0.1,0.3,0.5``)."""
    values = parse_list(text, float, "numbers")
    if not values:
        raise click.BadParameter("give at least one value")
    return values


def metric_options(func: F) -> F:
    """The options of the metrics (``riskprop.lab.evaluate.Options``), alike in every command."""
    return apply(
        func,
        click.option(
            "--flag-threshold",
            type=float,
            default=0.5,
            show_default=True,
            help="Accounts whose initial score is below this form the 'unflagged' subset.",
        ),
        click.option("--k", type=int, default=100, show_default=True, help="k of precision at k."),
        click.option(
            "--recall",
            type=float,
            default=0.2,
            show_default=True,
            help="Recall of precision at recall.",
        ),
        click.option(
            "--top",
            type=float,
            default=0.01,
            show_default=True,
            help="Share of accounts (highest scores) for recall and lift at the top.",
        ),
    )


def name_list(ctx: click.Context, param: click.Parameter, text: str) -> list[str]:
    """Comma-separated names (``plain,max``); the library checks them."""
    values = split_names(text)
    if not values:
        raise click.BadParameter("give at least one value")
    return values


def check_output(path: Path | None, option: str) -> None:
    """Refuse an output path that is a directory before any work is done."""
    if path is not None and path.is_dir():
        raise ConfigError(f"{option} {path}: is a directory; give a file name")


@click.command(context_settings=CONTEXT)
@click.argument("data", type=click.Path(path_type=Path))
@click.option(
    "--labels",
    type=click.Path(path_type=Path),
    help="Labels CSV bank,id,is_laundering (default DATA/labels.csv). Accounts it does not "
    "name count as not laundering.",
)
@click.option(
    "--iterations",
    "-T",
    default=str(DEFAULT_ITERATIONS),
    show_default=True,
    callback=int_list,
    help="Iterations per period, comma-separated for a grid. T = 0 (the initial scores) is "
    "always evaluated first.",
)
@click.option(
    "--delta-a",
    default=f"{DEFAULT_DELTA_A:g}",
    show_default=True,
    callback=float_list,
    help="Delta a in (0, 1) of delta_k = a / k**b, comma-separated for a grid.",
)
@click.option(
    "--delta-b",
    default=f"{DEFAULT_DELTA_B:g}",
    show_default=True,
    callback=float_list,
    help="Decay exponent b >= 0 of delta_k = a / k**b, comma-separated for a grid.",
)
@click.option(
    "--combine",
    default="plain",
    show_default=True,
    callback=name_list,
    help="Ranking score, comma-separated: plain (the propagated score), max (max of initial "
    "and propagated) and/or flag-first (initially flagged accounts first, each group by the "
    "propagated score); each bank takes max or flag-first itself after decryption.",
)
@metric_options
@click.option("--json", "json_out", type=click.Path(path_type=Path), help="Write the rows as JSON.")
@click.option("--csv", "csv_out", type=click.Path(path_type=Path), help="Write the rows as CSV.")
def evaluate(
    data: Path,
    labels: Path | None,
    iterations: list[int],
    delta_a: list[float],
    delta_b: list[float],
    combine: list[str],
    flag_threshold: float,
    k: int,
    recall: float,
    top: float,
    json_out: Path | None,
    csv_out: Path | None,
) -> None:
    """How well propagation ranks the known laundering accounts of DATA.

    For every setting (T x delta a x delta b x combination), prints ROC AUC, average
    precision, precision at k and at a recall, recall and lift in the top share, on all
    accounts and on the accounts not flagged initially; then the change per iteration.
    --json and --csv write one row per setting and subset, fields named after the metrics
    (roc_auc, average_precision, precision_at_k, precision_at_recall, recall_at_top,
    lift_at_top), empty (CSV) or null (JSON) where a metric is undefined.
    """
    from riskprop.lab.evaluate import (
        Options,
        Workbench,
        describe,
        format_convergence,
        format_table,
        grid,
        write_csv,
        write_json,
    )

    options = Options(flag_threshold=flag_threshold, k=k, recall=recall, top=top)
    settings = grid(iterations, delta_a, delta_b, combine)
    check_output(json_out, "--json")
    check_output(csv_out, "--csv")
    workbench = Workbench.load(data, labels if labels is not None else data / "labels.csv")
    for warning in workbench.warnings:
        log.warning("%s", warning)
    evaluations = workbench.evaluate(settings, options)
    click.echo(f"# {data}: {describe(workbench, options)}")
    click.echo(format_table(evaluations, options))
    for line in format_convergence(workbench, settings):
        click.echo(f"# {line}")
    if csv_out is not None:
        write_csv(csv_out, evaluations)
        log.info("wrote %s", csv_out)
    if json_out is not None:
        write_json(json_out, evaluations)
        log.info("wrote %s", json_out)


@click.command(context_settings=CONTEXT)
@click.argument("data", type=click.Path(path_type=Path), required=False)
@click.option(
    "--labels",
    type=click.Path(path_type=Path),
    help="With DATA: labels CSV bank,id,is_laundering (default DATA/labels.csv).",
)
@click.option(
    "--amlsim",
    type=click.Path(path_type=Path),
    help="Instead of DATA: an IBM AMLSim sample directory (nodes.csv, transactions.csv), split "
    "into --banks banks for every seed; a seed redraws which fraud accounts the banks flag, "
    "the false positives and all initial scores.",
)
@click.option("--banks", type=int, default=3, show_default=True, help="With --amlsim: banks.")
@click.option(
    "--flag-share",
    "--flagged-fraction",
    "flagged_fraction",
    type=float,
    default=0.3,
    show_default=True,
    help="With --amlsim: share of the fraud accounts flagged initially.",
)
@click.option(
    "--iterations",
    "-T",
    default="0,1,2,3,4,6,8",
    show_default=True,
    callback=int_list,
    help="Values of T (iterations per period), comma-separated.",
)
@click.option(
    "--delta-a",
    default="0.1,0.3,0.5,0.7",
    show_default=True,
    callback=float_list,
    help="Values of delta a in (0, 1), comma-separated.",
)
@click.option(
    "--delta-b",
    default="0",
    show_default=True,
    callback=float_list,
    help="Values of the decay exponent b >= 0 (delta_k = a / k**b), comma-separated.",
)
@click.option(
    "--combine",
    default="plain,max",
    show_default=True,
    callback=name_list,
    help="Ranking scores, comma-separated: plain (propagated), max (max of initial and "
    "propagated) and/or flag-first (flagged accounts first, each group by the propagated "
    "score).",
)
@click.option(
    "--seeds",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Run seeds 0..N-1 and report means and standard deviations (needs --amlsim; fixed "
    "DATA has one).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Worker processes [default: one per core].",
)
@metric_options
@click.option(
    "--metric",
    default="average_precision",
    show_default=True,
    help="Metric of the recommendation and the trade-off plot.",
)
@click.option(
    "--max-loss",
    type=float,
    default=0.1,
    show_default=True,
    help="The recommendation keeps at least 1 - this of the best metric on unflagged accounts.",
)
@click.option("--plots/--no-plots", default=True, show_default=True, help="Write PNG and SVG.")
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True, help="Directory.")
def sweep(
    data: Path | None,
    labels: Path | None,
    amlsim: Path | None,
    banks: int,
    flagged_fraction: float,
    iterations: list[int],
    delta_a: list[float],
    delta_b: list[float],
    combine: list[str],
    seeds: int,
    workers: int | None,
    flag_threshold: float,
    k: int,
    recall: float,
    top: float,
    metric: str,
    max_loss: float,
    plots: bool,
    out: Path,
) -> None:
    """Evaluate a grid of T x delta a x delta b x combination over several seeds, in parallel.

    Writes to OUT: sweep.csv and sweep.json (one row per setting and subset, each metric's
    mean over the seeds and its <metric>_std), seeds.csv (every seed's rows),
    recommendation.md (the setting with the best --metric over all accounts among those
    keeping 1 - --max-loss of the best on unflagged accounts, and its trade-off) and plots:
    <metric>_vs_T (one line per delta a, per subset) and tradeoff (all against unflagged
    accounts, Pareto front marked), PNG and SVG.
    """
    from riskprop.lab.detection import bank_names
    from riskprop.lab.evaluate import Options
    from riskprop.lab.recommend import check_objective, recommend
    from riskprop.lab.sweep import AmlsimSplits, Files, Grid, Source, run_sweep, write_sweep
    from riskprop.lab.sweep_plots import require_matplotlib

    if (data is None) == (amlsim is None):
        raise ConfigError("give DATA (with --labels) or --amlsim SRC, not both or neither")
    source: Source
    if amlsim is not None:
        if labels is not None:
            raise ConfigError("--labels goes with DATA; --amlsim brings its own labels")
        source = AmlsimSplits(amlsim, bank_names(banks), flagged_fraction)
    else:
        assert data is not None
        source = Files(data, labels if labels is not None else data / "labels.csv")
    grid = Grid(tuple(iterations), tuple(delta_a), tuple(delta_b), tuple(combine))
    options = Options(flag_threshold=flag_threshold, k=k, recall=recall, top=top)
    check_objective(metric, max_loss)
    if plots:
        require_matplotlib()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a directory")
    if (out / "sweep.json").exists():
        raise ConfigError(f"--out {out}: holds an earlier sweep; give a new directory")
    result = run_sweep(source, grid, seeds=range(seeds), options=options, workers=workers)
    advice = recommend(
        result.summaries, result.baseline, metric=metric, max_loss=max_loss, source=result.source
    )
    written = write_sweep(result, out, advice, plots=plots)
    click.echo(advice.text() if advice is not None else "no recommendation: no metric defined")
    click.echo(
        f"# {len(grid)} settings x {len(result.seeds)} seed(s) on {result.workers} worker(s) in "
        f"{result.seconds:.1f} s; wrote {len(written)} files to {out}"
    )
