"""Options shared by several commands, and deprecated spellings of renamed ones.

Every run parameter has one name (``riskprop.core.params``): ``--iterations``, ``--delta-a``,
``--delta-b``, ``--precision-bits``, ``--key-bits``. Old spellings (``--delta``, ``--bits``)
still work, hidden from the help, with one deprecation line.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from riskprop.core.fixedpoint import DEFAULT_PRECISION_BITS
from riskprop.core.params import DEFAULT_KEY_BITS, DEFAULT_NOISE, NOISE_KINDS
from riskprop.core.schedule import DEFAULT_DELTA_A, DEFAULT_DELTA_B

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
log = logging.getLogger("riskprop")


def apply(func: F, *decorators: Callable[[F], F]) -> F:
    """``func`` with ``decorators`` applied so that their options show in the given order."""
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def renamed(old: str, new: str, dest: str, **attrs: Any) -> Callable[[F], F]:
    """A hidden option ``old`` that sets ``dest`` as ``new`` does, with a deprecation line."""
    hidden_dest = f"deprecated_{dest}"

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            value = kwargs.pop(hidden_dest)
            if value is not None:
                log.warning("%s is deprecated; use %s", old, new)
                kwargs[dest] = value
            return func(*args, **kwargs)

        option = click.option(old, hidden_dest, hidden=True, default=None, **attrs)
        return option(wrapper)  # type: ignore[return-value]

    return decorate


def parameter_options(
    *, iterations_default: int | None = None, overrides: bool = False
) -> Callable[[F], F]:
    """``--iterations/-T``, ``--delta-a``, ``--delta-b``, ``--precision-bits``. With
    ``overrides`` every default is None (a node's configuration supplies the values)."""

    def default(value: object) -> object:
        return None if overrides else value

    show = not overrides
    source = " Overrides run.{} of the player's file." if overrides else ""

    def decorate(func: F) -> F:
        return apply(
            func,
            click.option(
                "--iterations",
                "-T",
                type=click.IntRange(min=0),
                default=iterations_default,
                required=iterations_default is None and not overrides,
                show_default=show,
                help="Iterations per period." + source.format("iterations"),
            ),
            click.option(
                "--delta-a",
                "delta_a",
                type=float,
                default=default(DEFAULT_DELTA_A),
                show_default=show,
                help="Delta a in (0, 1) of delta_k = a / k**b: how strongly incoming risk pulls "
                "a score." + source.format("delta_a"),
            ),
            renamed("--delta", "--delta-a", "delta_a", type=float),
            click.option(
                "--delta-b",
                "delta_b",
                type=float,
                default=default(DEFAULT_DELTA_B),
                show_default=show,
                help="Decay exponent b >= 0 of delta_k = a / k**b (0: constant delta)."
                + source.format("delta_b"),
            ),
            click.option(
                "--precision-bits",
                type=int,
                default=default(DEFAULT_PRECISION_BITS),
                show_default=show,
                help="Fractional bits of the fixed-point encoding per iteration (secure runs)."
                + source.format("precision_bits"),
            ),
            click.option(
                "--noise",
                type=click.Choice(NOISE_KINDS),
                default=default(DEFAULT_NOISE),
                show_default=show,
                help="Re-randomisation of ciphertexts (secure runs): djn, short-exponent "
                "fixed-base noise (fast; DCRA plus a short-exponent assumption) or full, r**N "
                "per ciphertext (DCRA alone; slower)." + source.format("noise"),
            ),
        )

    return decorate


def workers_option(help_text: str, **attrs: Any) -> Callable[[F], F]:
    """``--workers N``: worker processes for the encrypted arithmetic (docs/design-compute.md)."""
    return click.option("--workers", type=click.IntRange(min=1), help=help_text, **attrs)


def dask_option(help_text: str, **attrs: Any) -> Callable[[F], F]:
    """``--dask ADDRESS``: the Dask scheduler for the encrypted arithmetic (not with
    ``--workers``; docs/design-compute.md)."""
    return click.option("--dask", metavar="ADDRESS", help=help_text, **attrs)


def key_bits_option(help_text: str) -> Callable[[F], F]:
    """``--key-bits`` (old spelling ``--bits``)."""

    def decorate(func: F) -> F:
        return apply(
            func,
            click.option(
                "--key-bits",
                type=int,
                default=DEFAULT_KEY_BITS,
                show_default=True,
                help=help_text,
            ),
            renamed("--bits", "--key-bits", "key_bits", type=int),
        )

    return decorate


def warn_small_key(key_bits: int) -> None:
    if key_bits < DEFAULT_KEY_BITS:
        log.warning(
            "--key-bits %d is below the production size %d: for tests only",
            key_bits,
            DEFAULT_KEY_BITS,
        )


def config_option(help_text: str) -> Callable[[F], F]:
    return click.option(
        "--config",
        "config_dir",
        type=click.Path(path_type=Path),
        default=Path("configs"),
        show_default=True,
        envvar="RISKPROP_CONFIG",
        help=help_text,
    )


def split_names(text: str) -> list[str]:
    """Comma-separated names, blanks dropped."""
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_list(text: str, convert: Callable[[str], T], what: str) -> list[T]:
    """``text``'s comma-separated values converted (possibly none); a value that does not
    convert is a usage error naming ``what`` ("integers", "numbers")."""
    try:
        return [convert(part) for part in split_names(text)]
    except ValueError:
        raise click.BadParameter(f"not a comma-separated list of {what}: {text!r}") from None
