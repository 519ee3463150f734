"""``riskprop report``: one bank's ranked CSV and HTML report, from a node's results or from
simulated scores."""

from __future__ import annotations

from pathlib import Path

import click

from riskprop.cli.options import CONTEXT, config_option

BANDS_HELP = (
    "Score bands, each NAME:LOWER (its lowest score), or the three inner edges for low, medium, "
    "high, critical. [default: low:0,medium:0.3,high:0.6,critical:0.8]"
)


@click.command(context_settings=CONTEXT)
@click.option(
    "--player", "-p", help="Report this bank's node's results (with --config); else --scores."
)
@config_option("With --player: directory with network.yaml and <player>.yaml.")
@click.option(
    "--run",
    "run_id",
    help="With --player: this run's results (default: OUT/latest of a service, else OUT of a "
    "one-shot run).",
)
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    help="The bank's data directory (accounts.csv, transactions.csv); with --player it "
    "overrides the configuration's (e.g. the snapshot a scheduled run read).",
)
@click.option(
    "--scores",
    type=click.Path(path_type=Path),
    help="Without --player: the bank's final scores, id,risk_score (a run's risk_scores.csv) or "
    "bank,id,risk_score (riskprop simulate; only this bank's rows are read).",
)
@click.option(
    "--bank",
    help="Without --player: the bank's name in its transactions and scores (default: the name "
    "of the --data directory).",
)
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    required=True,
    help="Directory for ranked.csv and report.html.",
)
@click.option("--bands", help=BANDS_HELP)
@click.option(
    "--flag-threshold",
    type=float,
    default=0.5,
    show_default=True,
    help="Own accounts with an initial score at least this count as flagged before the run.",
)
@click.option(
    "--top",
    type=click.IntRange(min=0),
    default=25,
    show_default=True,
    help="Accounts in the report's top table.",
)
def report(
    player: str | None,
    config_dir: Path,
    run_id: str | None,
    data: Path | None,
    scores: Path | None,
    bank: str | None,
    out: Path,
    bands: str | None,
    flag_threshold: float,
    top: int,
) -> None:
    """Write one bank's ranked results (OUT/ranked.csv) and a report page (OUT/report.html).

    `riskprop report --player NAME --out DIR` reads the node's configuration and its latest
    results; `riskprop report --data BANKDIR --scores FILE --out DIR` takes simulated scores.
    ranked.csv lists every account by rank: initial and final score, change, band, and what the
    bank's own transactions say (share of incoming money from other banks and from accounts it
    had flagged, the top senders). report.html is one self-contained file (no scripts, nothing
    fetched): summary, score and change distributions, the top accounts.
    """
    from riskprop.lab.analyst import DEFAULT_BANDS, Bands, check_flag_threshold
    from riskprop.lab.report import make_report, node_inputs, simulated_inputs

    chosen = DEFAULT_BANDS if bands is None else Bands.parse(bands)  # before reading anything
    check_flag_threshold(flag_threshold)
    if player:
        if scores is not None or bank is not None:
            raise click.UsageError("--scores and --bank go without --player")
        inputs = node_inputs(config_dir, player, run_id=run_id, data=data)
    else:
        if data is None or scores is None:
            raise click.UsageError("give --player NAME, or --data BANKDIR and --scores FILE")
        if run_id is not None:
            raise click.UsageError("--run goes with --player")
        inputs = simulated_inputs(data, scores, bank)
    written = make_report(
        out,
        inputs,
        bands=chosen,
        flag_threshold=flag_threshold,
        top=top,
    )
    run = f", run {inputs.run.run_id}" if inputs.run.run_id else ""
    click.echo(
        f"{inputs.bank.name}{run}: wrote {written.ranked} ({written.ranking.n_accounts} "
        f"accounts) and {written.html}"
    )
