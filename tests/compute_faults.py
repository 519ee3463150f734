"""Batch functions for the executor tests, in a module of their own: worker processes import
it by name (``tests/`` is on the path the pool's children inherit)."""

from __future__ import annotations

import os
import time
from pathlib import Path


def square(value: int) -> int:
    return value * value


def die_once(batch: tuple[str, int]) -> int:
    """Kills its worker the first time it sees a marker path that does not exist yet (it
    creates it first), so the retry succeeds; ``""``: no marker."""
    marker, value = batch
    if marker and not Path(marker).exists():
        Path(marker).touch()
        os._exit(3)
    return value * value


def die_always(value: int) -> int:
    if value == 3:
        os._exit(3)
    return value


def refuse(value: int) -> int:
    if value == 2:
        raise ValueError(f"no batch {value}")
    return value


def slow_square(batch: tuple[str, int]) -> int:
    """Creates ``<directory>/<value>`` when it starts, then takes about half a second: a
    test can kill the worker while batches run."""
    directory, value = batch
    Path(directory, str(value)).touch()
    time.sleep(0.5)
    return value * value
