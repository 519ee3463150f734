"""``riskprop import``: public AML data sets converted to the multi-bank layout with labels."""

from __future__ import annotations

from pathlib import Path

import click

from riskprop.cli.options import CONTEXT, split_names

_BANKS_HELP = (
    "The parties: comma-separated bank names (one sub-directory each), or a count "
    "(1-3: alice, bob, charlie; more: bank0, bank1, ...)."
)


def _banks(ctx: click.Context, param: click.Parameter, text: str) -> tuple[str, ...]:
    from riskprop.lab.detection import bank_names

    stripped = text.strip()
    if stripped.isdigit():
        count = int(stripped)
        if count < 1:
            raise click.BadParameter(f"need at least one bank (got {text!r})")
        return bank_names(count)
    return tuple(split_names(text))


@click.group("import", context_settings=CONTEXT)
def import_group() -> None:
    """Convert a public AML data set to riskprop's data layout, with labels.

    Writes DST/<bank>/accounts.csv and transactions.csv for every bank and DST/labels.csv
    (`bank,id,is_laundering`) for `riskprop evaluate`; all or nothing.
    """


@import_group.command(context_settings=CONTEXT)
@click.argument("src", type=click.Path(path_type=Path))
@click.argument("dst", type=click.Path(path_type=Path))
@click.option(
    "--banks", default="alice,bob,charlie", show_default=True, callback=_banks, help=_BANKS_HELP
)
@click.option(
    "--periods", type=int, default=1, show_default=True, help="Equal-width periods of the time."
)
@click.option(
    "--flag-share",
    type=click.FloatRange(0.0, 1.0),
    default=0.3,
    show_default=True,
    help="Share of fraud accounts the banks already flag (score 0.6-1.0).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the initial scores.")
def amlsim(
    src: Path, dst: Path, banks: tuple[str, ...], periods: int, flag_share: float, seed: int
) -> None:
    """Convert IBM AMLSim output SRC to a multi-bank data set DST.

    SRC holds nodes.csv and transactions.csv. Node i goes to bank i mod k with id i; labels
    are isFraud. Initial scores: --flag-share of the fraud accounts and 1% of the others score
    0.6-1.0, every other account 0-0.1.
    """
    from riskprop.lab.amlsim import import_amlsim

    summary = import_amlsim(
        src, dst, banks=banks, periods=periods, flagged_fraction=flag_share, seed=seed
    )
    click.echo(
        f"wrote {dst}: {summary.accounts} accounts in {len(summary.banks)} banks, "
        f"{summary.transactions} transactions ({summary.cross_bank} cross-bank), "
        f"{summary.laundering_accounts} laundering accounts, {summary.periods} period(s)"
    )


@import_group.command(context_settings=CONTEXT)
@click.argument("src", type=click.Path(path_type=Path))
@click.argument("dst", type=click.Path(path_type=Path))
@click.option("--banks", required=True, callback=_banks, help=_BANKS_HELP)
@click.option(
    "--bank-map",
    type=click.Choice(["volume", "hash"]),
    default="volume",
    show_default=True,
    help="How AMLworld's bank ids go to the parties: balanced by transaction volume, or by a "
    "stable hash of the id.",
)
@click.option("--periods", type=int, help="Equal-width periods of the time range [default: 1].")
@click.option(
    "--period-length", help="Periods of this length instead, like 1d, 12h, 1w (calendar-aligned)."
)
@click.option(
    "--currency",
    help="Keep only transactions paid in this currency (e.g. 'US Dollar'), amounts unconverted. "
    "Default: convert every amount to US dollars with a fixed rate table.",
)
@click.option(
    "--rates",
    type=click.Path(path_type=Path),
    help="CSV `currency,units_per_usd` replacing the built-in rate table.",
)
@click.option(
    "--flag-share",
    type=click.FloatRange(0.0, 1.0),
    default=0.3,
    show_default=True,
    help="Share of laundering accounts flagged (initial score 0.5-1.0).",
)
@click.option(
    "--false-positive-share",
    type=click.FloatRange(0.0, 1.0),
    default=0.01,
    show_default=True,
    help="Share of clean accounts flagged as well (false positives).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the initial scores.")
def amlworld(
    src: Path,
    dst: Path,
    banks: tuple[str, ...],
    bank_map: str,
    periods: int | None,
    period_length: str | None,
    currency: str | None,
    rates: Path | None,
    flag_share: float,
    false_positive_share: float,
    seed: int,
) -> None:
    """Convert an IBM AMLworld transactions file SRC to a multi-bank data set DST.

    SRC is one AMLworld transactions CSV such as HI-Small_Trans.csv. AMLworld's bank ids are
    dealt to the --banks parties; account ids are `<bank id>:<account>`; self-transfers are
    dropped. An account is laundering when it takes part in a transaction
    marked Is Laundering. Initial scores: --flag-share of the laundering accounts and
    --false-positive-share of the others are flagged (0.5-1.0), the rest get the same low
    noise (0-0.5) whether laundering or not. Deterministic for a seed.
    """
    from riskprop.lab.amlworld import import_amlworld, read_rates
    from riskprop.lab.synthetic import ScoreModel

    summary = import_amlworld(
        src,
        dst,
        banks=banks,
        periods=periods,
        period_length=period_length,
        bank_map=bank_map,
        currency=currency,
        rates=read_rates(rates) if rates is not None else None,
        score_model=ScoreModel(flag_share=flag_share, false_positive_share=false_positive_share),
        seed=seed,
    )
    dropped = f"{summary.self_transfers} self-transfers"
    if currency is not None:
        dropped += f" and {summary.other_currency} transactions in other currencies"
    click.echo(
        f"wrote {dst}: {summary.accounts} accounts of {len(summary.party_of_bank)} AMLworld banks "
        f"in {len(summary.banks)} banks, {summary.transactions} transactions "
        f"({summary.cross_bank} cross-bank; {dropped} dropped), "
        f"{summary.laundering_accounts} laundering accounts "
        f"({summary.flagged_laundering} flagged, {summary.flagged} accounts flagged in all), "
        f"{summary.periods} period(s)"
    )
