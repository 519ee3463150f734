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
@click.option("--topic", required=True, help="The stream (Redis) or topic (Kafka) to write to.")
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
    help="Move every timestamp so the first is this time: 'now' or ISO 8601 with a zone "
    "(replays a generated month as if it were happening). [default: as written]",
)
@click.option(
    "--live",
    is_flag=True,
    help="Stamp each record with the time it is sent (a live stream for demos; with --rate).",
)
@click.option(
    "--bank",
    default="alice",
    show_default=True,
    help="Without RAW: the bank whose generated transactions are produced.",
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
    bank: str,
    banks: str,
    accounts: int,
    transactions: int,
    days: int,
    seed: int,
) -> None:
    """Publish a bank's raw transactions (RAW, in riskprop's raw layout) to its stream, one
    record per transaction. Without RAW, generates a network's transactions with planted
    typologies (as `riskprop generate --raw` does) and publishes those of --bank."""
    from riskprop.stream.produce import first_time, produce, publisher, records

    with tempfile.TemporaryDirectory(prefix="riskprop-produce-") as scratch:
        if raw is None:
            from riskprop.lab.rawgen import generate_raw

            names = split_names(banks)
            if bank not in names:
                raise ConfigError(f"--bank {bank!r} is not one of --banks ({', '.join(names)})")
            generate_raw(
                Path(scratch),
                banks=names,
                accounts=accounts,
                transactions=transactions,
                days=days,
                seed=seed,
            )
            raw = Path(scratch) / bank / "raw.csv"
        shift = 0.0
        if start is not None and live:
            raise ConfigError("--start and --live exclude each other")
        if start is not None:
            target = datetime.now(UTC) if start == "now" else _time(start)
            shift = (target - first_time(raw)).total_seconds()
        sink = publisher(broker, address, topic)
        try:
            bodies = records(raw, fmt=fmt, shift=shift, live=live)
            done = produce(bodies, sink, rate=rate, limit=count)
        except Exception as exc:  # the broker's client errors: one line, not a traceback
            if isinstance(exc, RiskpropError):
                raise
            raise ConfigError(f"{broker} {address}: {type(exc).__name__}: {exc}") from None
        finally:
            sink.close()
    per_second = done.records / done.seconds if done.seconds > 0 else float("inf")
    click.echo(
        f"produced {done.records} records to {topic} in {done.seconds:.1f} s "
        f"({per_second:,.0f} records/s)"
    )


def _time(text: str) -> datetime:
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--start: {text!r} is not 'now' or an ISO 8601 time") from None
    if stamp.tzinfo is None:
        raise ConfigError(f"--start: {text!r} has no time zone (add Z or +HH:MM)")
    return stamp
