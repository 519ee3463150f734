"""``riskprop score``: one bank's raw transactions to initial risk scores, explanations and
alerts, written as the bank's propagation input (``riskprop.scoring.output``)."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import click

from riskprop.cli.options import CONTEXT, split_names
from riskprop.errors import ConfigError


@click.command(context_settings=CONTEXT)
@click.argument("raw", type=click.Path(path_type=Path))
@click.option("--bank", required=True, help="The bank whose accounts are scored (its name in RAW).")
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    required=True,
    help="Data set directory: writes OUT/BANK/accounts.csv, transactions.csv, explanations.csv, "
    "alerts.csv and levels.csv (all or nothing).",
)
@click.option(
    "--rules",
    type=click.Path(path_type=Path),
    help="Rules file (YAML). [default: the shipped TTR/CTR rules]",
)
@click.option(
    "--layout",
    type=click.Choice(["auto", "riskprop", "amlworld"]),
    default="auto",
    show_default=True,
    help="Layout of RAW: riskprop's raw layout or IBM AMLworld's; auto reads the header.",
)
@click.option(
    "--currency",
    default="USD",
    show_default=True,
    help="Reporting currency: amounts are converted to it.",
)
@click.option(
    "--rates",
    type=click.Path(path_type=Path),
    help="CSV currency,rate (units per one unit of --currency) replacing the built-in table.",
)
@click.option(
    "--period-length",
    type=click.Choice(["1d", "7d", "30d"]),
    help="Periods of this length from UTC midnight of the first transaction's day "
    "(or of --period-start). [default: 1d unless --periods]",
)
@click.option(
    "--period-start",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="With --period-length: period 0 starts at UTC midnight of this date. Banks scored "
    "separately pass the same date so their shared transactions fall into the same periods.",
)
@click.option(
    "--periods",
    type=click.IntRange(min=1),
    help="Instead of a length: this many equal periods over RAW's time span.",
)
@click.option(
    "--members",
    help="The network's banks, comma-separated: transactions with a bank outside them are left "
    "out of transactions.csv (no node holds that bank's accounts). [default: keep all]",
)
def score(
    raw: Path,
    bank: str,
    out: Path,
    rules: Path | None,
    layout: str,
    currency: str,
    rates: Path | None,
    period_length: str | None,
    period_start: dt.datetime | None,
    periods: int | None,
    members: str | None,
) -> None:
    """Score one bank's raw transactions with transaction-monitoring rules.

    Writes OUT/BANK/accounts.csv (each own account's initial risk score),
    OUT/BANK/transactions.csv (completed transactions with their periods: the input of
    `riskprop simulate` and of a node), explanations.csv (per account each rule that fired,
    its contribution and the first triggering transaction ids, max_examples of the rules
    file), alerts.csv (each transaction a rule flags on its own, with the rule and level) and
    levels.csv (each account's level and recommended action, highest score first); then
    prints a summary.
    """
    from riskprop.scoring.pipeline import prefer_returning_allocator, score_bank

    prefer_returning_allocator()
    if periods is not None and (period_length or period_start):
        raise ConfigError("give --periods or --period-length/--period-start, not both")
    done = score_bank(
        raw,
        bank,
        out,
        rules=rules,
        layout=layout,
        currency=currency,
        rates=_read_rates(rates) if rates is not None else None,
        period_length=period_length,
        origin=None if period_start is None else _utc_midnight(period_start),
        periods=periods,
        members=None if members is None else split_names(members),
    )
    scored, ruleset, counts, seconds = done.scored, done.rules, done.counts, done.seconds

    click.echo(f"scored {bank} from {raw} into {out / bank} in {seconds:.2f} s")
    click.echo(f"  raw transactions     {done.raw_rows}")
    kept = "completed, within --members" if members is not None else "completed"
    click.echo(f"  written transactions {counts['transactions.csv']} ({kept})")
    click.echo(f"  own accounts         {len(scored.accounts)}")
    levels = Counter(scored.level)
    for level in ruleset.levels:
        click.echo(f"  level {level.name:<14} {levels.get(level.name, 0)}")
    alerts = scored.alerts.counts()
    for rule in ruleset.rules:
        if rule.name in alerts:
            click.echo(f"  alerts {rule.name:<13} {alerts[rule.name]}")
    click.echo(f"  alerts total         {len(scored.alerts)}")


def _utc_midnight(day: dt.datetime) -> int:
    """Seconds since the epoch of UTC midnight starting ``day``'s date."""
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())


def _read_rates(path: Path) -> dict[str, float]:
    """``currency,rate`` lines (a header line ``currency,rate`` is allowed)."""
    import csv

    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    table: dict[str, float] = {}
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        for row in reader:
            if not row or (reader.line_num == 1 and row[0].strip().lower() == "currency"):
                continue
            where = f"{path}:{reader.line_num}"
            if len(row) != 2:
                raise ConfigError(f"{where}: expected currency,rate, got {len(row)} field(s)")
            code = row[0].strip().upper()
            try:
                rate = float(row[1])
            except ValueError:
                raise ConfigError(f"{where}: rate {row[1]!r} is not a number") from None
            if not rate > 0 or rate == float("inf"):
                raise ConfigError(f"{where}: rate {row[1]!r} must be a positive number")
            table[code] = rate
    return table
