"""A bank's node: ``riskprop --player NAME`` / ``riskprop run``, and ``riskprop keygen``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from riskprop.cli.options import (
    CONTEXT,
    F,
    apply,
    config_option,
    dask_option,
    key_bits_option,
    log,
    parameter_options,
    split_names,
    warn_small_key,
    workers_option,
)

if TYPE_CHECKING:
    from riskprop.config import PlayerConfig


def node_options(func: F) -> F:
    """Options of a bank's node (``riskprop --player NAME`` and ``riskprop run``)."""
    return apply(
        func,
        click.option(
            "--player",
            "-p",
            envvar="RISKPROP_PLAYER",
            help="This bank's party name; runs its node.",
        ),
        config_option("Directory with network.yaml and <player>.yaml."),
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
        parameter_options(overrides=True),
        workers_option(
            "Override: worker processes on this machine for the run's arithmetic "
            "(compute.workers; default: the cores available, 1: in the node process).",
            envvar="RISKPROP_WORKERS",
        ),
        dask_option(
            "Override: the Dask scheduler (tcp://host:8786) whose workers do the run's "
            "arithmetic instead (compute.dask; not with --workers).",
            envvar="RISKPROP_DASK",
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
    )


def _loader(
    config_dir: Path, player: str, insecure: bool, overrides: dict[str, Any]
) -> Callable[[], PlayerConfig]:
    from riskprop.config import load_player_config

    def load() -> PlayerConfig:
        return load_player_config(config_dir, player, overrides=overrides, insecure=insecure)

    return load


def run_node_command(
    player: str | None,
    config_dir: Path,
    insecure: bool,
    fresh: bool,
    resume: bool,
    **overrides: Any,
) -> None:
    """Load the player's configuration, make its one run, print where the results are."""
    if not player:
        raise click.UsageError("--player NAME is required to run a node")
    if fresh and resume:
        raise click.UsageError("--fresh and --resume exclude each other")
    from riskprop.cli.logs import show_progress
    from riskprop.errors import ConfigError
    from riskprop.logcontext import set_fields

    set_fields(player=player)  # on every line, the last one too
    from riskprop.service.daemon import once_sync

    load = _loader(config_dir, player, insecure, overrides)
    config = load()
    if not config.run.run_id:
        raise ConfigError(
            f"{config.path}: run.run_id: missing (a one-shot run needs it, or --run-id; the "
            "schedule names the service's runs)"
        )
    report = once_sync(lambda: config, fresh=fresh, show=show_progress)
    click.echo(
        f"{player}: run {report.run_id} complete in {report.wall_seconds:.1f} s; "
        f"results in {report.results}"
    )


def serve_node_command(
    player: str,
    config_dir: Path,
    insecure: bool,
    fresh: bool,
    resume: bool,
    **overrides: Any,
) -> None:
    """Run the player's node as a service until SIGTERM or SIGINT."""
    if fresh or resume:
        raise click.UsageError(
            "--fresh and --resume go with `riskprop run`; the service resumes a slot's run"
        )
    from riskprop.cli.logs import show_progress
    from riskprop.service.daemon import serve_sync

    serve_sync(_loader(config_dir, player, insecure, overrides), show=show_progress)


@click.command(context_settings=CONTEXT)
@click.option("--player", "-p", envvar="RISKPROP_PLAYER", required=True, help="This bank's name.")
@config_option("Directory with network.yaml and <player>.yaml.")
@click.option(
    "--run-id",
    help="The run to make (default: the latest slot's of the schedule, e.g. to retry it; "
    "without a schedule, run.run_id).",
)
@click.option(
    "--fresh",
    is_flag=True,
    help="Discard what this node kept of the run (checkpoint, journal) and start it over; "
    "every bank must do so.",
)
def trigger(player: str, config_dir: Path, run_id: str | None, fresh: bool) -> None:
    """Ask this bank's running node to start a run now, through its admin listener.

    Every bank's node must run the same run id: a slot's id (the default) is the same at
    every bank; any other id must be triggered at every bank within the join window.
    """
    from riskprop.config import load_player_config
    from riskprop.service.client import post_trigger

    config = load_player_config(config_dir, player, for_keygen=True)
    queued = post_trigger(config, run_id, fresh=fresh)
    click.echo(f"{player}: run {queued} starts now")


@click.command(context_settings=CONTEXT)
@node_options
@click.pass_context
def run(ctx: click.Context, /, **node: Any) -> None:
    """Make one run of this bank's node and exit (`riskprop --player NAME` runs the service).

    Reads CONFIG/network.yaml and CONFIG/<player>.yaml, talks to the other banks' nodes over
    HTTPS with mutual TLS, and writes OUT/risk_scores.csv for this bank's accounts only.
    Node options given before `run` (`riskprop --player alice run`) count as well.
    """
    group = ctx.parent.params if ctx.parent is not None else {}
    for name, value in group.items():
        if name not in node:
            continue
        source = ctx.get_parameter_source(name)
        mine_given = source not in (None, click.core.ParameterSource.DEFAULT)
        if not mine_given and value not in (None, False):
            node[name] = value
    run_node_command(**node)


@click.command(context_settings=CONTEXT)
@click.option("--player", "-p", envvar="RISKPROP_PLAYER", help="Distributed: this bank's name.")
@config_option("Distributed: directory with network.yaml and <player>.yaml.")
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
@click.option("--force", is_flag=True, help="Replace existing key files.")
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
@key_bits_option("Paillier modulus size in bits.")
@click.option(
    "--sigma",
    type=int,
    default=128,
    show_default=True,
    help="Distributed: statistical hiding of the key shares in bits (at least 40).",
)
@click.option(
    "--biprimality-tests",
    type=int,
    default=128,
    show_default=True,
    help="Distributed: Boneh-Franklin tests N must pass; a wrong N passes with probability "
    "2^-count (at least 40).",
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
    key_bits: int,
    sigma: int,
    biprimality_tests: int,
) -> None:
    """Generate a threshold Paillier key: dealerless (--player) or by a trusted dealer.

    With --player NAME every bank runs this command at the same time; the nodes generate
    N = pq and the decryption key shares jointly over mutual TLS (Boneh-Franklin with
    distributed sieving), so nobody ever learns p, q or the key. Each node writes only its own
    share (mode 0600) and public.json beside it, and only once every bank has confirmed that it
    wrote the same key: after any failure no bank has a new share, and the same command starts
    over. SIGTERM or Ctrl-C abandons the generation at every bank.

    With --parties and --out this process deals every share itself: whoever runs it can
    decrypt everything. Use that for tests only.
    """
    from riskprop.core.threshold import default_threshold

    warn_small_key(key_bits)
    if player and (parties or out):
        raise click.UsageError("--player (dealerless) excludes --parties/--out (dealer)")
    if not player:
        if not (parties and out):
            raise click.UsageError(
                "give --player NAME (dealerless, with --config) or --parties and --out (dealer)"
            )
        from riskprop.files.keys import PUBLIC_FILE, dealer_keygen

        names = split_names(parties)
        t = default_threshold(len(names)) if threshold is None else threshold
        log.warning("trusted dealer: this process sees every share (tests and demos only)")
        for path in dealer_keygen(out, names, t, key_bits, force=force):
            click.echo(f"wrote {path}")
        _echo_fingerprint(out / PUBLIC_FILE)
        return

    from riskprop.config import load_player_config
    from riskprop.files.keys import PUBLIC_FILE
    from riskprop.logcontext import set_fields
    from riskprop.node.keygen import keygen_node_sync, keygen_params

    set_fields(player=player)

    config = load_player_config(
        config_dir,
        player,
        overrides={"key_share": key_share, "host": host, "port": port},
        insecure=insecure,
        for_keygen=True,
    )
    t = default_threshold(len(config.network.names)) if threshold is None else threshold
    params = keygen_params(
        config,
        bits=key_bits,
        threshold=t,
        sigma=sigma,
        biprimality_tests=biprimality_tests,
        session=session,
    )
    path = keygen_node_sync(config, params, force=force)
    click.echo(f"{player}: key share written to {path}")
    _echo_fingerprint(path.parent / PUBLIC_FILE)


def _echo_fingerprint(public: Path) -> None:
    """The key's fingerprint in groups of eight, for the banks to compare by phone."""
    from riskprop.files.keys import load_public, spaced

    fingerprint = spaced(load_public(public).fingerprint())
    click.echo(f"key fingerprint (the same at every bank): {fingerprint}")
