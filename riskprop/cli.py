"""Command-line interface: thin click commands over the library."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from riskprop import __version__
from riskprop.core.fixedpoint import DEFAULT_FRACTION_BITS
from riskprop.errors import RiskpropError

F = TypeVar("F", bound=Callable[..., Any])
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
log = logging.getLogger("riskprop")


def schedule_options(func: F) -> F:
    """The propagation parameters shared by every command that propagates."""
    func = click.option(
        "--delta-b",
        "delta_b",
        type=float,
        default=0.0,
        show_default=True,
        help="Decay exponent b of delta_k = a / k**b (0: constant delta).",
    )(func)
    func = click.option(
        "--delta",
        "delta_a",
        type=float,
        default=0.5,
        show_default=True,
        help="Delta a in (0, 1): how strongly incoming risk pulls a score.",
    )(func)
    func = click.option(
        "--iterations",
        "-T",
        type=click.IntRange(min=0),
        required=True,
        help="Iterations per period.",
    )(func)
    return func


def node_options(func: F) -> F:
    """Options of a bank's node (`riskprop --player NAME` and `riskprop run`)."""
    options = [
        click.option(
            "--player",
            "-p",
            envvar="RISKPROP_PLAYER",
            help="This bank's party name; runs its node.",
        ),
        click.option(
            "--config",
            "config_dir",
            type=click.Path(path_type=Path),
            default=Path("configs"),
            show_default=True,
            envvar="RISKPROP_CONFIG",
            help="Directory with network.yaml and <player>.yaml.",
        ),
        click.option(
            "--data",
            type=click.Path(path_type=Path),
            envvar="RISKPROP_DATA",
            help="Override: this bank's data directory.",
        ),
        click.option(
            "--out",
            type=click.Path(path_type=Path),
            envvar="RISKPROP_OUT",
            help="Override: output directory for risk_scores.csv.",
        ),
        click.option(
            "--key-share",
            type=click.Path(path_type=Path),
            envvar="RISKPROP_KEY_SHARE",
            help="Override: this bank's key share file.",
        ),
        click.option("--host", envvar="RISKPROP_HOST", help="Override: listen address."),
        click.option(
            "--port",
            type=click.IntRange(1, 65535),
            envvar="RISKPROP_PORT",
            help="Override: listen port.",
        ),
        click.option(
            "--run-id",
            envvar="RISKPROP_RUN_ID",
            help="Override: run id (every party must use the same).",
        ),
        click.option(
            "--insecure",
            is_flag=True,
            help="Plain HTTP without authentication, for local experiments only.",
        ),
        click.option(
            "--fresh",
            is_flag=True,
            help="Discard this run's checkpoint and start over (default: resume).",
        ),
        click.option(
            "--resume",
            is_flag=True,
            help="Resume from this run's checkpoint when there is one (the default).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def run_node_command(
    player: str | None,
    config_dir: Path,
    insecure: bool,
    fresh: bool,
    resume: bool,
    **overrides: Any,
) -> None:
    """Load the player's configuration, run its node, print where the results are."""
    if not player:
        raise click.UsageError("--player NAME is required to run a node")
    from riskprop.config import load_player_config
    from riskprop.node.runner import run_node_sync

    config = load_player_config(config_dir, player, overrides=overrides, insecure=insecure)
    if fresh and resume:
        raise click.UsageError("--fresh and --resume exclude each other")
    report = run_node_sync(config, fresh=fresh)
    click.echo(
        f"{player}: run {report.run_id} complete in {report.wall_seconds:.1f} s; "
        f"results in {report.results}"
    )


@click.group(context_settings=CONTEXT, invoke_without_command=True)
@click.version_option(__version__, "-V", "--version")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log lines for people or one JSON object per line.",
)
@node_options
@click.pass_context
def cli(ctx: click.Context, /, verbose: int, log_format: str, **node: Any) -> None:
    """riskprop: banks propagate AML risk scores over their joint transaction network
    without seeing each other's data (threshold Paillier MPC).

    `riskprop --player NAME` runs that bank's node (same as `riskprop run --player NAME`).
    """
    from riskprop.logsetup import configure

    running_node = ctx.invoked_subcommand in (None, "run")
    base = logging.INFO if running_node else logging.WARNING
    configure(max(logging.DEBUG, base - 10 * verbose), log_format)
    if ctx.invoked_subcommand is None:
        if not node["player"]:
            click.echo(ctx.get_help())
            return
        run_node_command(**node)
    elif node["player"] and ctx.invoked_subcommand != "run":
        raise click.UsageError("--player goes with running a node, not with a command")


@cli.command(context_settings=CONTEXT)
@node_options
def run(**node: Any) -> None:
    """Run this bank's node until the run completes (same as `riskprop --player NAME`).

    Reads CONFIG/network.yaml and CONFIG/<player>.yaml, talks to the other banks' nodes over
    HTTPS with mutual TLS, and writes OUT/risk_scores.csv for this bank's accounts only.
    """
    run_node_command(**node)


@cli.command(context_settings=CONTEXT)
@click.argument("data", type=click.Path(path_type=Path))
@schedule_options
@click.option("--out", "-o", type=click.Path(path_type=Path), help="Output CSV (default stdout).")
@click.option(
    "--secure",
    is_flag=True,
    help="Run the encrypted multi-party protocol (all banks in this process) instead.",
)
@click.option(
    "--key-bits",
    type=int,
    default=2048,
    show_default=True,
    help="With --secure and no --keys: modulus size of a freshly dealt key.",
)
@click.option(
    "--keys",
    type=click.Path(path_type=Path),
    help="With --secure: directory of key share files from `riskprop keygen`.",
)
@click.option(
    "--precision-bits",
    type=int,
    default=DEFAULT_FRACTION_BITS,
    show_default=True,
    help="With --secure: fractional bits of the fixed-point encoding per iteration.",
)
def simulate(
    data: Path,
    iterations: int,
    delta_a: float,
    delta_b: float,
    out: Path | None,
    secure: bool,
    key_bits: int,
    keys: Path | None,
    precision_bits: int,
) -> None:
    """Propagate over every bank of DATA in one process.

    Writes CSV `bank,id,risk_score` for every account of every bank, at full float precision.
    With --secure the banks run the encrypted protocol over an in-memory transport and the
    output has the same form, so it can be compared with the plaintext run.
    """
    from riskprop.simulate import simulate_plaintext, simulate_secure

    if secure:
        if key_bits < 2048 and keys is None:
            log.warning("--key-bits %d is below the production size 2048: for tests only", key_bits)
        result = simulate_secure(
            data,
            iterations=iterations,
            delta_a=delta_a,
            delta_b=delta_b,
            key_bits=key_bits,
            keys=keys,
            precision_bits=precision_bits,
        )
        log.info("largest difference from the plaintext engine: %.3g", result.max_difference)
    else:
        result = simulate_plaintext(data, iterations=iterations, delta_a=delta_a, delta_b=delta_b)
    for warning in result.warnings:
        log.warning("%s", warning)
    result.write(out)


@cli.command(context_settings=CONTEXT)
@click.option("--player", "-p", envvar="RISKPROP_PLAYER", help="Distributed: this bank's name.")
@click.option(
    "--config",
    "config_dir",
    type=click.Path(path_type=Path),
    default=Path("configs"),
    show_default=True,
    envvar="RISKPROP_CONFIG",
    help="Distributed: directory with network.yaml and <player>.yaml.",
)
@click.option(
    "--key-share",
    type=click.Path(path_type=Path),
    help="Distributed: write the share here (default: key_share of the player's file).",
)
@click.option("--host", help="Distributed: override the listen address.")
@click.option("--port", type=click.IntRange(1, 65535), help="Distributed: override the port.")
@click.option(
    "--insecure", is_flag=True, help="Distributed: plain HTTP, unauthenticated (tests only)."
)
@click.option(
    "--session",
    help="Distributed: name of this key generation, the same at every node "
    "(default: derived from parties, threshold and size).",
)
@click.option("--force", is_flag=True, help="Distributed: replace an existing key share.")
@click.option("--parties", help="Dealer: comma-separated party names, e.g. alice,bob,charlie.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Dealer: directory for public.json and <party>.share.json (mode 0600).",
)
@click.option(
    "--threshold",
    "-t",
    type=int,
    default=None,
    help="t: any t+1 parties decrypt, no t can (default: largest t with n >= 2t+1, at least 1).",
)
@click.option("--bits", type=int, default=2048, show_default=True, help="Modulus size in bits.")
@click.option(
    "--sigma",
    type=int,
    default=64,
    show_default=True,
    help="Distributed: statistical security in bits (share hiding, biprimality tests).",
)
def keygen(
    player: str | None,
    config_dir: Path,
    key_share: Path | None,
    host: str | None,
    port: int | None,
    insecure: bool,
    session: str | None,
    force: bool,
    parties: str | None,
    out: Path | None,
    threshold: int | None,
    bits: int,
    sigma: int,
) -> None:
    """Generate a threshold Paillier key: dealerless (--player) or by a trusted dealer.

    With --player NAME every bank runs this command at the same time; the nodes generate
    N = pq and the decryption key shares jointly over mutual TLS (Boneh-Franklin with
    distributed sieving), so nobody ever learns p, q or the key. Each node writes only its own
    share (mode 0600) and public.json beside it.

    With --parties and --out this process deals every share itself: whoever runs it can
    decrypt everything. Use that for tests only.
    """
    from riskprop.core.threshold import default_threshold

    if bits < 2048:
        log.warning("--bits %d is below the production size 2048: for tests only", bits)
    if player and (parties or out):
        raise click.UsageError("--player (dealerless) excludes --parties/--out (dealer)")
    if not player:
        if not (parties and out):
            raise click.UsageError(
                "give --player NAME (dealerless, with --config) or --parties and --out (dealer)"
            )
        from riskprop.keys import dealer_keygen

        names = [p.strip() for p in parties.split(",") if p.strip()]
        t = default_threshold(len(names)) if threshold is None else threshold
        log.warning("trusted dealer: this process sees every share (tests and demos only)")
        for path in dealer_keygen(out, names, t, bits):
            click.echo(f"wrote {path}")
        return

    import asyncio

    from riskprop.config import load_player_config
    from riskprop.node.keygen import keygen_node, keygen_params

    config = load_player_config(
        config_dir,
        player,
        overrides={"key_share": key_share, "host": host, "port": port},
        insecure=insecure,
        for_keygen=True,
    )
    t = default_threshold(len(config.network.names)) if threshold is None else threshold
    params = keygen_params(config, bits=bits, threshold=t, sigma=sigma, session=session)
    path = asyncio.run(keygen_node(config, params, force=force))
    click.echo(f"{player}: key share written to {path}")


@cli.command(context_settings=CONTEXT)
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--accounts", type=int, required=True, help="Number of accounts over all banks.")
@click.option("--edges", type=int, required=True, help="Number of transactions.")
@click.option(
    "--banks",
    default="alice,bob,charlie",
    show_default=True,
    help="Comma-separated bank names (one sub-directory each).",
)
@click.option("--periods", type=int, default=1, show_default=True, help="Number of periods.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
def generate(out: Path, accounts: int, edges: int, banks: str, periods: int, seed: int) -> None:
    """Write a synthetic multi-bank data set with planted laundering motifs to OUT.

    Also writes OUT/labels.csv (`bank,id,is_laundering`) for evaluation. Deterministic for a seed.
    """
    from riskprop.synthetic import generate_dataset

    names = [b.strip() for b in banks.split(",")]
    summary = generate_dataset(
        out, accounts=accounts, edges=edges, banks=names, periods=periods, seed=seed
    )
    click.echo(
        f"wrote {out}: {summary.accounts} accounts in {len(summary.banks)} banks, "
        f"{summary.transactions} transactions ({summary.cross_bank} cross-bank), "
        f"{summary.laundering_accounts} laundering accounts, {summary.periods} period(s)"
    )


@cli.command(context_settings=CONTEXT)
@click.option(
    "--data", type=click.Path(path_type=Path), help="Data set (default: generated sample)."
)
@click.option("--iterations", "-T", type=click.IntRange(min=0), default=3, show_default=True)
@click.option("--delta", "delta_a", type=float, default=0.5, show_default=True, help="Delta a.")
@click.option("--delta-b", "delta_b", type=float, default=0.0, show_default=True, help="Delta b.")
@click.option("--key-bits", type=int, default=2048, show_default=True, help="Modulus size.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("out/demo"),
    show_default=True,
    help="Results go to OUT/<bank>/risk_scores.csv.",
)
@click.option("--parties", type=int, default=3, show_default=True, help="Banks in the sample.")
@click.option(
    "--keygen",
    type=click.Choice(["distributed", "dealer"]),
    default=None,
    help="How the key is made: distributed (dealerless, the default; cached) or dealer "
    "(trusted dealer, cached). Given explicitly as distributed: always a fresh key, timed.",
)
def demo(
    data: Path | None,
    iterations: int,
    delta_a: float,
    delta_b: float,
    key_bits: int,
    out: Path,
    parties: int,
    keygen: str | None,
) -> None:
    """Run every bank as its own node process over mutual TLS on loopback; compare with plaintext.

    The threshold Paillier key is generated without a dealer by one `riskprop keygen` process
    per bank (cached per party set and key length); a local CA with node certificates and,
    without --data, a sample data set are made on first use under ~/.cache/riskprop. Prints
    per bank the time per phase, bytes sent and the largest difference from the plaintext
    engine.
    """
    from riskprop.demo import run_demo

    if key_bits < 2048:
        log.warning("--key-bits %d is below the production size 2048: for tests only", key_bits)
    report = run_demo(
        data=data,
        iterations=iterations,
        delta_a=delta_a,
        delta_b=delta_b,
        key_bits=key_bits,
        out=out,
        parties=parties,
        keygen=keygen or "distributed",
        fresh_key=keygen == "distributed",
    )
    made = report.keys
    how = "dealerless" if made.mode == "distributed" else "trusted-dealer"
    when = f"generated in {made.seconds:.1f} s" if made.seconds is not None else "cached"
    click.echo(
        f"riskprop demo: {len(report.reports)} banks, {report.key_bits}-bit threshold Paillier "
        f"key ({how}, {when}: {made.directory}), {iterations} iteration(s), data {report.data}"
    )
    click.echo(report.table())
    click.echo(
        f"secure run took {report.seconds:.1f} s; results in {report.out}/<bank>/risk_scores.csv"
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI; a RiskpropError becomes one line on stderr and exit code 1."""
    from riskprop.core.data import skip_pandas_probe

    skip_pandas_probe()
    try:
        cli.main(args=argv, prog_name="riskprop", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except RiskpropError as exc:
        click.echo(f"riskprop: error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
