"""Everything on one machine: ``demo``, ``setup-local`` and ``certs``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from riskprop.cli.options import (
    CONTEXT,
    key_bits_option,
    parameter_options,
    split_names,
    warn_small_key,
    workers_option,
)
from riskprop.core.params import DEFAULT_ITERATIONS

if TYPE_CHECKING:
    from riskprop.localnet.demo import DemoReport


@click.command(context_settings=CONTEXT)
@click.option(
    "--data", type=click.Path(path_type=Path), help="Data set (default: generated sample)."
)
@click.option(
    "--raw",
    is_flag=True,
    help="Start from raw transactions: generate them with planted typologies (OUT/raw), score "
    "each bank with the default rules (OUT/data), run on that, show each bank's top accounts "
    "explained. Not with --data.",
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
@workers_option(
    "Compute worker processes of each bank's node (default 1: the nodes share this "
    "machine's cores; the results do not depend on it).",
    default=1,
    show_default=True,
)
@click.option(
    "--keygen",
    type=click.Choice(["distributed", "dealer"]),
    default=None,
    help="How the key is made: distributed (dealerless, the default; cached) or dealer "
    "(trusted dealer, cached). Given explicitly as distributed: always a fresh key, timed.",
)
@click.option(
    "--web",
    is_flag=True,
    help="Serve a live view on 127.0.0.1 (the banks side by side) and print its URL.",
)
@click.option(
    "--web-port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Port of the live view (0: a free one).",
)
@click.option(
    "--web-linger",
    type=click.FloatRange(min=0),
    default=None,
    help="With --web: seconds to keep showing the results (default: until Ctrl-C or SIGTERM).",
)
def demo(
    data: Path | None,
    raw: bool,
    iterations: int,
    delta_a: float,
    delta_b: float,
    precision_bits: int,
    noise: str,
    key_bits: int,
    out: Path,
    parties: int,
    workers: int,
    keygen: str | None,
    web: bool,
    web_port: int,
    web_linger: float | None,
) -> None:
    """Run every bank as its own node process over mutual TLS on loopback; compare with plaintext.

    The threshold Paillier key is generated without a dealer by one `riskprop keygen` process
    per bank (cached per party set and key length); a local CA with node certificates and,
    without --data, a sample data set are made on first use under ~/.cache/riskprop. Prints
    per bank the time per phase, bytes sent and the largest difference from the plaintext
    engine; keeps each node's log and run report under OUT.

    With --web a page on 127.0.0.1 shows the banks side by side while they run (key
    generation, each phase's progress, bytes sent) and then their results next to the
    plaintext engine's; it stays up until Ctrl-C or SIGTERM (exit 0), or --web-linger.

    With --raw the data set comes from raw transactions instead: about 5,000 per bank over 30
    days with planted structuring, pass-through chains, fan-in/out and high-risk
    counterparties (OUT/raw, with labels.csv), each bank's file scored by the shipped rules
    into OUT/data as `riskprop score` does (30-day periods from the same start). Also prints
    per bank its alerts and its top accounts after propagation with their rule score, level
    and the rules that fired (OUT/data/<bank>/explanations.csv has them all).
    """
    from riskprop.core.params import RunParameters
    from riskprop.errors import ConfigError
    from riskprop.localnet import rawdemo
    from riskprop.localnet.demo import DemoWatch, run_demo

    if raw and data is not None:
        raise ConfigError("give --raw or --data, not both: --raw makes its own data set")
    warn_small_key(key_bits)
    parameters = RunParameters(iterations, delta_a, delta_b, precision_bits, noise=noise)

    def run(watch: DemoWatch | None = None) -> DemoReport:
        return run_demo(
            data=data,
            parameters=parameters,
            key_bits=key_bits,
            out=out,
            parties=parties,
            keygen=keygen or "distributed",
            fresh_key=keygen == "distributed",
            watch=watch,
            raw=rawdemo.DEMO_RAW if raw else None,
            workers=workers,
        )

    if not web:
        _show_demo(run(), iterations)
        return
    from riskprop.localnet.web import watch_demo

    watch_demo(
        run,
        lambda report: _show_demo(report, iterations),
        port=web_port,
        linger=web_linger,
        echo=click.echo,
    )


def _show_demo(report: DemoReport, iterations: int) -> None:
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
    if report.scoring is not None:
        from riskprop.localnet.rawdemo import explained_view

        click.echo(explained_view(report.scoring, report.top, report.out))


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
    each = ", ".join(names)
    click.echo(f"ready: run `riskprop run --player NAME` in one shell for each of {each}")


class _CertsGroup(click.Group):
    """``certs``, which still reads the old ``certs OUT --parties ...`` as ``certs local``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        from riskprop.cli.options import log

        first = args[0] if args else ""
        if (
            first
            and first not in self.commands
            and not first.startswith("-")
            and any(a == "--parties" or a.startswith("--parties=") for a in args)
        ):
            log.warning(
                "`riskprop certs OUT --parties ...` is deprecated; use `riskprop certs local`"
            )
            args = ["local", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_CertsGroup, context_settings=CONTEXT)
def certs() -> None:
    """TLS certificates: a CA, a bank's own key and request, the CA operator's signature.

    Each bank makes its private key itself and sends only the request (CSR) to whoever runs
    the network's CA; both compare the request's fingerprint by phone before it is signed:

    \b
      CA operator:  riskprop certs ca ca/
      each bank:    riskprop certs request --player alice --out tls/ --host alice.bank.example
      CA operator:  riskprop certs sign alice.csr --ca ca/ --out alice.pem
    """


@certs.command("ca", context_settings=CONTEXT)
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--name", default="riskprop CA", show_default=True, help="The CA's common name.")
@click.option("--days", type=int, default=3650, show_default=True, help="Validity in days.")
@click.option("--force", is_flag=True, help="Replace an existing CA (every bank needs a new one).")
def certs_ca(directory: Path, name: str, days: int, force: bool) -> None:
    """Make the network's CA: DIRECTORY/ca.key (mode 0600) and a self-signed DIRECTORY/ca.pem.

    Whoever runs the CA keeps ca.key to themselves; ca.pem goes to every bank (the `ca` of
    network.yaml).
    """
    from riskprop.node.pki import make_ca
    from riskprop.node.tls import certificate_fingerprint

    cert, key = make_ca(directory, name=name, days=days, force=force)
    click.echo(f"wrote {key} (keep it private) and {cert} (give it to every bank)")
    click.echo(f"CA certificate SHA-256: {certificate_fingerprint(cert)}")


@certs.command("request", context_settings=CONTEXT)
@click.option("--player", "-p", required=True, help="This bank's party name (the CN).")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Directory for PLAYER.key (mode 0600) and PLAYER.csr.",
)
@click.option(
    "--host",
    "hosts",
    multiple=True,
    help="A DNS name or IP address peers reach this node at (repeat for several); the "
    "certificate names PLAYER too.",
)
@click.option("--force", is_flag=True, help="Replace an existing private key.")
@click.option("--reuse-key", is_flag=True, help="Request a certificate for the existing key.")
def certs_request(
    player: str, out: Path, hosts: tuple[str, ...], force: bool, reuse_key: bool
) -> None:
    """Make this bank's private key and a certificate signing request for the CA operator.

    The key never leaves this machine; send OUT/PLAYER.csr to the CA operator and read them
    the fingerprint below so they can confirm the request is yours before signing it.
    """
    from riskprop.node.pki import make_request

    request = make_request(out, player, hosts, force=force, reuse_key=reuse_key)
    kept = "kept" if reuse_key else "wrote"
    click.echo(f"{kept} private key {request.key} (mode 0600; it never leaves this machine)")
    click.echo(f"wrote request {request.csr} for {player} ({', '.join(request.hosts)})")
    click.echo(f"request SHA-256: {request.fingerprint}")


@certs.command("sign", context_settings=CONTEXT)
@click.argument("csr", type=click.Path(path_type=Path))
@click.option(
    "--ca",
    "ca_dir",
    type=click.Path(path_type=Path),
    required=True,
    help="Directory with the CA's ca.pem and ca.key.",
)
@click.option(
    "--out", type=click.Path(path_type=Path), required=True, help="Certificate file to write."
)
@click.option("--days", type=int, default=825, show_default=True, help="Validity in days.")
@click.option("--force", is_flag=True, help="Replace an existing certificate file.")
def certs_sign(csr: Path, ca_dir: Path, out: Path, days: int, force: bool) -> None:
    """Sign a bank's request CSR with the CA: a certificate for mutual TLS between nodes.

    Compare the request's fingerprint below with the one the bank reads you before sending
    the certificate back. The certificate gets the request's name and hosts and TLS server
    and client use; nothing else the request asks for.
    """
    from riskprop.node.pki import day, sign_request

    signed = sign_request(csr, ca=ca_dir, out=out, days=days, force=force)
    click.echo(f"request SHA-256: {signed.request_fingerprint}")
    click.echo(f"wrote {signed.certificate}: subject CN={signed.subject}")
    click.echo(f"subject alternative names: {', '.join(signed.hosts)}")
    click.echo(f"valid until {day(signed.not_after)}")
    click.echo(f"certificate SHA-256: {signed.fingerprint}")


@certs.command("local", context_settings=CONTEXT)
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--parties", required=True, help="Comma-separated party names.")
@click.option(
    "--hosts",
    default="127.0.0.1,localhost",
    show_default=True,
    help="Comma-separated host names and IP addresses every certificate is valid for.",
)
def certs_local(out: Path, parties: str, hosts: str) -> None:
    """Make a local CA in OUT (unless it has one) and a node certificate per party.

    For tests and demos on one machine: this process makes every party's private key.
    Certificates made later with the same OUT join the same network. Private keys are written
    with mode 0600. Banks make their own keys (`riskprop certs request`).
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
