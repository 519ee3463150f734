"""The researcher's commands: ``simulate``, ``generate`` and ``detection``."""

from __future__ import annotations

import os
from pathlib import Path

import click

from riskprop.cli.options import (
    CONTEXT,
    dask_option,
    key_bits_option,
    log,
    parameter_options,
    parse_list,
    split_names,
    warn_small_key,
    workers_option,
)


@click.command(context_settings=CONTEXT)
@click.argument("data", type=click.Path(path_type=Path))
@parameter_options()
@click.option("--out", "-o", type=click.Path(path_type=Path), help="Output CSV (default stdout).")
@click.option(
    "--secure",
    is_flag=True,
    help="Run the encrypted multi-party protocol (all banks in this process) instead.",
)
@key_bits_option("With --secure and no --keys: modulus size of a freshly dealt key.")
@click.option(
    "--keys",
    type=click.Path(path_type=Path),
    help="With --secure: directory of key share files from `riskprop keygen`.",
)
@workers_option(
    "With --secure: worker processes for the arithmetic of all banks together (default: the "
    "cores available; 1: in this process). The results do not depend on it."
)
@dask_option(
    "With --secure: the Dask scheduler (tcp://host:8786) whose workers do the arithmetic "
    "instead of --workers."
)
@click.option(
    "--ranked",
    type=click.Path(path_type=Path),
    help="Also write DIR/<bank>/ranked.csv for every bank, each ranked on its own scores "
    "(the columns of `riskprop report`).",
)
def simulate(
    data: Path,
    iterations: int,
    delta_a: float,
    delta_b: float,
    precision_bits: int,
    noise: str,
    out: Path | None,
    secure: bool,
    key_bits: int,
    keys: Path | None,
    workers: int | None,
    dask: str | None,
    ranked: Path | None,
) -> None:
    """Propagate over every bank of DATA in one process.

    Writes CSV `bank,id,risk_score` for every account of every bank, at full float precision.
    With --secure the banks run the encrypted protocol over an in-memory transport and the
    output has the same form, so it can be compared with the plaintext run.
    """
    from riskprop.lab.simulate import simulate_plaintext, simulate_secure

    if secure:
        if keys is None:
            warn_small_key(key_bits)
        from riskprop.compute import make_executor

        with make_executor(workers, dask) as executor:
            result = simulate_secure(
                data,
                iterations=iterations,
                delta_a=delta_a,
                delta_b=delta_b,
                precision_bits=precision_bits,
                noise=noise,
                key_bits=key_bits,
                keys=keys,
                executor=executor,
                # every bank's share is in this process already: its own workers may hold them
                share_in_workers=True,
            )
        log.info("largest difference from the plaintext engine: %.3g", result.max_difference)
    else:
        result = simulate_plaintext(data, iterations=iterations, delta_a=delta_a, delta_b=delta_b)
    for warning in result.warnings:
        log.warning("%s", warning)
    result.write(out)
    if ranked is not None:
        from riskprop.lab.analyst import write_ranked_dataset

        for path in write_ranked_dataset(data, result.by_account(), ranked):
            log.info("wrote %s", path)
    if out is not None:
        log.info("wrote %s", out)


@click.command(context_settings=CONTEXT)
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--accounts", type=int, required=True, help="Number of accounts over all banks.")
@click.option("--edges", type=int, help="Number of transactions (required without --raw).")
@click.option(
    "--raw",
    is_flag=True,
    help="Write raw transactions instead: OUT/<bank>/raw.csv (riskprop's raw layout, for "
    "`riskprop score`) with planted typologies, and OUT/labels.csv.",
)
@click.option(
    "--transactions",
    type=int,
    default=10_000,
    show_default=True,
    help="With --raw: number of background transactions.",
)
@click.option(
    "--days", type=int, default=30, show_default=True, help="With --raw: days of activity."
)
@click.option(
    "--banks",
    default="alice,bob,charlie",
    show_default=True,
    help="Comma-separated bank names (one sub-directory each).",
)
@click.option("--periods", type=int, default=1, show_default=True, help="Number of periods.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option(
    "--scores",
    type=click.Choice(["informed", "realistic"]),
    default="informed",
    show_default=True,
    help="Initial scores: informed (unflagged launderers still score above clean accounts) or "
    "realistic (a share flagged, false positives, noise that tells the rest nothing).",
)
@click.option(
    "--flag-share",
    type=click.FloatRange(0.0, 1.0),
    help="With --scores realistic: share of laundering accounts flagged [default: 0.3].",
)
@click.option(
    "--false-positive-share",
    type=click.FloatRange(0.0, 1.0),
    help="With --scores realistic: share of clean accounts flagged [default: 0.01].",
)
def generate(
    out: Path,
    accounts: int,
    edges: int | None,
    raw: bool,
    transactions: int,
    days: int,
    banks: str,
    periods: int,
    seed: int,
    scores: str,
    flag_share: float | None,
    false_positive_share: float | None,
) -> None:
    """Write a synthetic multi-bank data set with planted laundering motifs to OUT.

    Also writes OUT/labels.csv (`bank,id,is_laundering`) for evaluation. Deterministic for a seed.
    The --scores modes draw the same transactions; only the initial scores differ.
    With --raw: raw transactions per bank instead (structuring, pass-through chains across
    banks, fan-in, fan-out, high-risk counterparties), to be scored with `riskprop score`.
    """
    if raw:
        from riskprop.lab.rawgen import generate_raw

        made = generate_raw(
            out,
            banks=split_names(banks),
            accounts=accounts,
            transactions=transactions,
            days=days,
            seed=seed,
        )
        click.echo(
            f"wrote {out}: {made.accounts} accounts in {len(made.banks)} banks, "
            f"{made.transactions} raw transactions ({made.cross_bank} cross-bank), "
            f"{made.laundering_accounts} laundering accounts"
        )
        return
    if edges is None:
        raise click.UsageError("give --edges (or --raw)")
    from riskprop.lab.synthetic import ScoreModel, generate_dataset

    model = None
    if flag_share is not None or false_positive_share is not None:
        if scores != "realistic":
            raise click.UsageError(
                "--flag-share and --false-positive-share need --scores realistic"
            )
        defaults = ScoreModel()
        model = ScoreModel(
            flag_share=defaults.flag_share if flag_share is None else flag_share,
            false_positive_share=(
                defaults.false_positive_share
                if false_positive_share is None
                else false_positive_share
            ),
        )
    summary = generate_dataset(
        out,
        accounts=accounts,
        edges=edges,
        banks=split_names(banks),
        periods=periods,
        seed=seed,
        scores=scores,
        score_model=model,
    )
    click.echo(
        f"wrote {out}: {summary.accounts} accounts in {len(summary.banks)} banks, "
        f"{summary.transactions} transactions ({summary.cross_bank} cross-bank), "
        f"{summary.laundering_accounts} laundering accounts, {summary.periods} period(s)"
    )


def _ints(ctx: click.Context, param: click.Parameter, text: str) -> list[int]:
    values = parse_list(text, int, "integers")
    if not values or min(values) < 1:
        raise click.BadParameter(f"need integers >= 1: {text!r}")
    return values


def _deltas(ctx: click.Context, param: click.Parameter, text: str) -> list[float]:
    values = parse_list(text, float, "numbers")
    if not values or not all(0.0 < v < 1.0 for v in values):
        raise click.BadParameter(f"deltas must lie strictly between 0 and 1: {text!r}")
    return values


@click.command(context_settings=CONTEXT)
@click.option(
    "--src",
    type=click.Path(path_type=Path),
    default=lambda: os.environ.get("RISKPROP_AMLSIM"),
    help="IBM AMLSim sample directory (nodes.csv, transactions.csv) [env RISKPROP_AMLSIM].",
)
@click.option("--banks", type=int, default=3, show_default=True, help="Number of banks k.")
@click.option(
    "--iterations",
    default="1,2,3,5",
    show_default=True,
    callback=_ints,
    help="Values of T, comma-separated.",
)
@click.option(
    "--deltas",
    default="0.3,0.5,0.8",
    show_default=True,
    callback=_deltas,
    help="Values of delta a, comma-separated.",
)
@click.option("--delta-b", type=float, default=0.0, show_default=True, help="delta_k = a / k**b.")
@click.option("--periods", type=int, default=1, show_default=True, help="Periods of the split.")
@click.option(
    "--flag-share",
    "--flagged-fraction",
    "flagged_fraction",
    type=float,
    default=0.3,
    show_default=True,
    help="Share of fraud accounts the banks already flag.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the initial scores.")
@click.option(
    "--flag-threshold",
    type=float,
    default=0.5,
    show_default=True,
    help="Accounts with an initial score below this count as not yet flagged.",
)
@click.option(
    "--recall", type=float, default=0.2, show_default=True, help="Recall of the precision metric."
)
def detection(
    src: Path | None,
    banks: int,
    iterations: list[int],
    deltas: list[float],
    delta_b: float,
    periods: int,
    flagged_fraction: float,
    seed: int,
    flag_threshold: float,
    recall: float,
) -> None:
    """How well plaintext propagation ranks fraud on IBM AMLSim's sample.

    Splits the sample over --banks banks, propagates for every T and delta a, and prints ROC
    AUC and precision at --recall, on the accounts not yet flagged and on all accounts.
    """
    import time

    from riskprop.errors import ConfigError
    from riskprop.lab.detection import format_table, run_experiment

    if src is None:
        raise click.UsageError("give --src DIR (or set RISKPROP_AMLSIM) with the AMLSim sample")
    if not (src / "nodes.csv").is_file():
        raise ConfigError(f"{src}: no nodes.csv here; --src must be an AMLSim sample directory")
    started = time.perf_counter()
    e = run_experiment(
        src,
        banks=banks,
        iterations=iterations,
        deltas=deltas,
        delta_b=delta_b,
        periods=periods,
        flagged_fraction=flagged_fraction,
        seed=seed,
        flag_threshold=flag_threshold,
        recall=recall,
    )
    click.echo(
        f"# {e.accounts} accounts, {e.fraud} fraud; not flagged (initial score < "
        f"{flag_threshold:g}): {e.unflagged} accounts, {e.unflagged_fraud} fraud "
        f"(base rate {e.unflagged_fraud / max(e.unflagged, 1):.3f}); "
        f"delta_k = a / k**{delta_b:g}"
    )
    click.echo(format_table(e, recall))
    click.echo(
        f"# split {e.split_s:.1f} s, propagation and metrics {e.propagate_s:.1f} s, "
        f"total {time.perf_counter() - started:.1f} s"
    )
