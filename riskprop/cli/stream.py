"""``riskprop stream``: what runs beside a streaming node (``produce`` for demos and load tests)."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

import click

from riskprop.cli.options import CONTEXT, split_names
from riskprop.errors import ConfigError, RiskpropError


@click.group("stream", context_settings=CONTEXT)
def stream_group() -> None:
    """A bank's transaction stream (see docs/guide-operator.md, "Streaming")."""


@stream_group.command("produce", context_settings=CONTEXT)
@click.argument("raw", type=click.Path(path_type=Path), required=False)
@click.option(
    "--to",
    "address",
    required=True,
    help="The broker: redis://host:port/db for Redis, host:port[,...] for Kafka.",
)
@click.option(
    "--broker",
    type=click.Choice(["redis", "kafka"]),
    default="redis",
    show_default=True,
    help="The kind of broker.",
)
@click.option(
    "--topic",
    required=True,
    help="The stream (Redis) or topic (Kafka) to write to; {bank} in it stands for each bank's "
    "name (needed with several --bank).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "json"]),
    default="csv",
    show_default=True,
    help="Each record as one CSV row or one JSON object.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    help="Records per second. [default: as fast as the broker takes them]",
)
@click.option("--count", type=click.IntRange(min=1), help="Stop after this many records.")
@click.option(
    "--start",
    help="Move every timestamp alike so that UTC midnight of the first transaction's day is "
    "this time: 'now' or ISO 8601 with a zone (replays a generated month as if it were "
    "happening). [default: as written]",
)
@click.option(
    "--live",
    is_flag=True,
    help="Stamp each transaction with the time it is sent (a live stream for demos).",
)
@click.option(
    "--loop",
    is_flag=True,
    help="With --live: replay forever, ids suffixed ~1, ~2, ... (stop with Ctrl-C or --count).",
)
@click.option(
    "--bank",
    default="alice",
    show_default=True,
    help="Without RAW: the banks whose generated transactions are produced, comma-separated, "
    "each to its own topic; a transaction between two of them gets one time in both.",
)
@click.option(
    "--banks",
    default="alice,bob,charlie",
    show_default=True,
    help="Without RAW: the generated network's banks.",
)
@click.option("--accounts", type=click.IntRange(min=60), default=3000, show_default=True)
@click.option("--transactions", type=click.IntRange(min=1), default=20000, show_default=True)
@click.option("--days", type=click.IntRange(min=3), default=7, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def produce_command(
    raw: Path | None,
    address: str,
    broker: str,
    topic: str,
    fmt: str,
    rate: float | None,
    count: int | None,
    start: str | None,
    live: bool,
    loop: bool,
    bank: str,
    banks: str,
    accounts: int,
    transactions: int,
    days: int,
    seed: int,
) -> None:
    """Publish a bank's raw transactions (RAW, in riskprop's raw layout) to its stream, one
    record per transaction. Without RAW, generates a network's transactions with planted
    typologies (as `riskprop generate --raw` does) and publishes those of each --bank."""
    from riskprop.stream.produce import first_day, network_records, produce, publisher

    chosen = split_names(bank)
    if raw is not None and len(chosen) > 1:
        raise ConfigError("--bank: one bank with RAW (the file is one bank's)")
    if len(chosen) > 1 and "{bank}" not in topic:
        raise ConfigError("--topic: give {bank} in it to publish several banks")
    if start is not None and live:
        raise ConfigError("--start and --live exclude each other")
    if loop and not live:
        raise ConfigError("--loop goes with --live (a replay under new ids at the current time)")
    with tempfile.TemporaryDirectory(prefix="riskprop-produce-") as scratch:
        if raw is None:
            from riskprop.lab.rawgen import generate_raw

            names = split_names(banks)
            for name in chosen:
                if name not in names:
                    raise ConfigError(f"--bank {name!r} is not one of --banks ({', '.join(names)})")
            generate_raw(
                Path(scratch),
                banks=names,
                accounts=accounts,
                transactions=transactions,
                days=days,
                seed=seed,
            )
            files = {name: Path(scratch) / name / "raw.csv" for name in chosen}
        else:
            files = {chosen[0]: raw}
        shift = 0.0
        if start is not None:
            target = datetime.now(UTC) if start == "now" else _time(start)
            shift = (target - first_day(files.values())).total_seconds()
        topics = {name: topic.replace("{bank}", name) for name in files}
        sinks = {name: publisher(broker, address, topics[name]) for name in files}
        try:
            items = network_records(files, fmt=fmt, shift=shift, live=live, loop=loop)
            done = produce(items, sinks, rate=rate, limit=count)
        except Exception as exc:  # the broker's client errors: one line, not a traceback
            if isinstance(exc, RiskpropError):
                raise
            raise ConfigError(f"{broker} {address}: {type(exc).__name__}: {exc}") from None
        finally:
            for sink in sinks.values():
                sink.close()
    per_second = done.records / done.seconds if done.seconds > 0 else float("inf")
    click.echo(
        f"produced {done.records} records to {', '.join(topics.values())} in "
        f"{done.seconds:.1f} s ({per_second:,.0f} records/s)"
    )


def _time(text: str) -> datetime:
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--start: {text!r} is not 'now' or an ISO 8601 time") from None
    if stamp.tzinfo is None:
        raise ConfigError(f"--start: {text!r} has no time zone (add Z or +HH:MM)")
    return stamp
