"""Command-line interface: thin click commands over the library.

``node`` runs a bank's node and makes keys, ``lab`` holds the researcher's commands, ``local``
what runs on one machine (demo, local set-up, certificates). ``main`` turns every riskprop
error into one line on stderr.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from typing import Any

import click

from riskprop import __version__
from riskprop.cli import _env  # noqa: F401  (before anything imports numpy)
from riskprop.cli.check import check
from riskprop.cli.data import import_group
from riskprop.cli.lab import detection, generate, simulate
from riskprop.cli.local import certs, demo, setup_local
from riskprop.cli.node import keygen, node_options, run, serve_node_command, trigger
from riskprop.cli.options import CONTEXT
from riskprop.cli.report import report
from riskprop.cli.score import score
from riskprop.cli.stream import stream_group
from riskprop.cli.workbench import evaluate, sweep
from riskprop.errors import ParameterError, RiskpropError, StoppedError


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

    `riskprop --player NAME` runs that bank's node as a service: on its schedule and when
    triggered, until SIGTERM; `riskprop run --player NAME` makes one run and exits.
    """
    from riskprop.cli.logs import configure
    from riskprop.logcontext import set_fields

    running_node = ctx.invoked_subcommand in (None, "run", "keygen")
    base = logging.INFO if running_node else logging.WARNING
    configure(max(logging.DEBUG, base - 10 * verbose), log_format)
    if node["player"]:
        set_fields(player=node["player"])  # on every line, the last one too
    if ctx.invoked_subcommand is None:
        if not node["player"]:
            click.echo(ctx.get_help())
            return
        serve_node_command(**node)
    elif (
        ctx.get_parameter_source("player") == click.core.ParameterSource.COMMANDLINE
        and ctx.invoked_subcommand != "run"
    ):
        raise click.UsageError("--player goes with running a node, not with a command")


for command in (
    run,
    trigger,
    keygen,
    simulate,
    generate,
    detection,
    evaluate,
    sweep,
    import_group,
    demo,
    setup_local,
    certs,
    check,
    report,
    score,
    stream_group,
):
    cli.add_command(command)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI; a RiskpropError becomes one line on stderr and exit code 1.
    The log fields a command binds (its player) stay with this call, its last line included."""
    contextvars.copy_context().run(_main, argv)


def _main(argv: list[str] | None) -> None:
    from riskprop.cli.logs import fatal
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
    except StoppedError as exc:
        fatal(f"riskprop: {exc}", logging.WARNING)
        sys.exit(0)
    except ParameterError as exc:
        flag = "--" + exc.name.replace("_", "-")
        fatal(f"riskprop: error: {flag}: {exc.problem}")
        sys.exit(1)
    except RiskpropError as exc:
        fatal(f"riskprop: error: {exc}")
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
