"""Everything on one machine: ``demo``, ``setup-local`` and ``certs``."""

from __future__ import annotations

from pathlib import Path

import click

from riskprop.cli.options import (
    CONTEXT,
    key_bits_option,
    parameter_options,
    split_names,
    warn_small_key,
)
from riskprop.core.params import DEFAULT_ITERATIONS


@click.command(context_settings=CONTEXT)
@click.option(
    "--data", type=click.Path(path_type=Path), help="Data set (default: generated sample)."
)
@parameter_options(iterations_default=DEFAULT_ITERATIONS)
@key_bits_option("Paillier modulus size in bits.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("out/demo"),
    show_default=True,
    help="Results go to OUT/<bank>/risk_scores.csv, node logs to OUT/logs.",
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
    precision_bits: int,
    noise: str,
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
    engine; keeps each node's log and run report under OUT.
    """
    from riskprop.core.params import RunParameters
    from riskprop.localnet.demo import run_demo

    warn_small_key(key_bits)
    parameters = RunParameters(iterations, delta_a, delta_b, precision_bits, noise=noise)
    report = run_demo(
        data=data,
        parameters=parameters,
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
        f"secure run took {report.seconds:.1f} s; results in {report.out}/<bank>/risk_scores.csv, "
        f"node logs in {report.out}/logs, run reports in {report.out}/<bank>/run-report.json"
    )


@click.command("setup-local", context_settings=CONTEXT)
@click.option(
    "--root",
    type=click.Path(path_type=Path),
    default=Path("local"),
    show_default=True,
    help="Directory to fill (configs/ expects ./local).",
)
@click.option("--parties", default="alice,bob,charlie", show_default=True, help="Comma-separated.")
@key_bits_option("Paillier modulus size of the dealt key.")
@click.option("--accounts", type=int, default=300, show_default=True, help="Sample accounts.")
@click.option("--edges", type=int, default=1000, show_default=True, help="Sample transactions.")
@click.option("--seed", type=int, default=1, show_default=True, help="Sample data seed.")
@click.option("--force", is_flag=True, help="Make everything anew.")
def setup_local(
    root: Path, parties: str, key_bits: int, accounts: int, edges: int, seed: int, force: bool
) -> None:
    """Make what configs/ expects under ROOT: certificates, a dealt key and sample data.

    ROOT/certs holds a local CA and one certificate per party, ROOT/keys a threshold key from
    a trusted dealer (fine on one machine, not for production: banks use `riskprop keygen
    --player NAME`), ROOT/data a synthetic data set. Complete parts are kept.
    """
    from riskprop.localnet.setup import setup_local as fill

    warn_small_key(key_bits)
    names = split_names(parties)
    made = fill(
        root, names, key_bits=key_bits, accounts=accounts, edges=edges, seed=seed, force=force
    )
    for item in made:
        click.echo(f"made {item}")
    if not made:
        click.echo(f"{root} is complete; nothing to do (--force remakes it)")
    click.echo(f"ready: run `riskprop --player NAME` in one shell for each of {', '.join(names)}")


@click.command(context_settings=CONTEXT)
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--parties", required=True, help="Comma-separated party names.")
@click.option(
    "--hosts",
    default="127.0.0.1,localhost",
    show_default=True,
    help="Comma-separated host names and IP addresses every certificate is valid for.",
)
def certs(out: Path, parties: str, hosts: str) -> None:
    """Make a local CA in OUT (unless it has one) and a node certificate per party.

    Certificates made later with the same OUT join the same network. Private keys are written
    with mode 0600. For production, use certificates from the banks' own PKI.
    """
    from riskprop.localnet.certs import make_certs

    names, host_names = split_names(parties), split_names(hosts)
    if not names:
        raise click.BadParameter("must name at least one party", param_hint="--parties")
    if not host_names:
        raise click.BadParameter("must name at least one host", param_hint="--hosts")
    reused = (out / "ca.pem").is_file() and (out / "ca.key").is_file()
    written = make_certs(out, names, host_names)
    if reused:
        click.echo(f"reused the CA in {out / 'ca.pem'}")
    for path in written:
        click.echo(f"wrote {path}")
