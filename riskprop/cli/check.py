"""``riskprop check --player NAME``: validate a node's set-up without running it."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from riskprop.cli.options import CONTEXT, config_option


@click.command(context_settings=CONTEXT)
@click.option(
    "--player", "-p", required=True, envvar="RISKPROP_PLAYER", help="The bank whose node to check."
)
@config_option("Directory with network.yaml and <player>.yaml.")
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    envvar="RISKPROP_DATA",
    help="Override: this bank's data directory.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    envvar="RISKPROP_OUT",
    help="Override: output directory.",
)
@click.option(
    "--key-share",
    type=click.Path(path_type=Path),
    envvar="RISKPROP_KEY_SHARE",
    help="Override: this bank's key share file.",
)
@click.option("--host", envvar="RISKPROP_HOST", help="Override: listen address.")
@click.option(
    "--port", type=click.IntRange(1, 65535), envvar="RISKPROP_PORT", help="Override: listen port."
)
@click.option("--insecure", is_flag=True, help="The node runs plain HTTP (local experiments).")
@click.option("--no-network", is_flag=True, help="Do not ping the peers.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="Seconds each peer has to answer the ping.",
)
def check(
    player: str,
    config_dir: Path,
    data: Path | None,
    out: Path | None,
    key_share: Path | None,
    host: str | None,
    port: int | None,
    insecure: bool,
    no_network: bool,
    timeout: float,
) -> None:
    """Check a node's configuration, files, key, certificates and peers without running it.

    One line per check: ok, warning (a certificate expiring within 30 days, a peer that does
    not answer) or error (a run would fail), then a summary. Exit code 1 when there is an
    error. Peers are pinged over mutual TLS (GET /riskprop/v1/ping) unless --no-network.
    """
    from riskprop.node.check import check_node

    overrides = {"data": data, "output": out, "key_share": key_share, "host": host, "port": port}
    report = check_node(
        config_dir,
        player,
        overrides=overrides,
        insecure=insecure,
        network=not no_network,
        timeout=timeout,
        emit=lambda finding: click.echo(str(finding)),
    )
    click.echo(report.summary(player))
    if report.failed:
        sys.exit(1)
