"""Exact type checks for values parsed from JSON or YAML, with errors that say what was found.

``bool`` is not accepted as a number (JSON ``true`` is not ``1`` here). Errors are
``TypeError``/``ValueError``; callers turn them into errors that name their file or message.
"""

from __future__ import annotations

from typing import Any


def kind(value: Any) -> str:
    """What a value is, for messages: ``nothing``, ``str 'three'``, ``list``."""
    if value is None:
        return "nothing"
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        shown = repr(value)
        return f"{type(value).__name__} {shown[:40]}{'...' if len(shown) > 40 else ''}"
    return type(value).__name__


def expect_str(value: Any, *, non_empty: bool = False) -> str:
    if not isinstance(value, str) or (non_empty and not value.strip()):
        raise TypeError(f"expected a {'non-empty ' if non_empty else ''}string, got {kind(value)}")
    return value


def expect_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {kind(value)}")
    return value


def expect_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {kind(value)}")
    return float(value)


def expect_list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {kind(value)}")
    return value
