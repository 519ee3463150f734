"""Shared fixtures: ``dataset`` writes a data set from Python literals under ``tmp_path``."""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# test modules import the plain helpers as ``helpers``, whatever pytest's import mode
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))

from cycle import CYCLE_ACCOUNTS, CYCLE_ROWS
from helpers import BankSpec, WriteDataset, bank_specs, spread, write_dataset

# Hypothesis judges examples by their count, never by the clock: its default per-example
# deadline (200 ms) and its too-slow health check fail tests on a busy machine.
settings.register_profile("riskprop", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("riskprop")


@pytest.fixture
def dataset(tmp_path: Path) -> WriteDataset:
    """``dataset({"alice": (accounts, transactions), ...})`` writes a fresh data set under
    ``tmp_path`` (a new directory per call) and returns its root."""
    counter = itertools.count()

    def write(banks: Mapping[str, BankSpec]) -> Path:
        return write_dataset(tmp_path / f"data{next(counter)}", banks)

    return write


@pytest.fixture
def cycle_data(tmp_path: Path) -> Path:
    """The three-bank cycle of ``cycle.py``, written under ``tmp_path``."""
    return write_dataset(tmp_path / "cycle", bank_specs(CYCLE_ACCOUNTS, spread(CYCLE_ROWS)))


@pytest.fixture(params=["native", "gmp"])
def arithmetic(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test on both arithmetic paths: the native kernel (where this CPU has it; else the
    same gmpy2 path twice) and gmpy2 forced by the environment."""
    from riskprop.core import modexp

    if request.param == "gmp":
        monkeypatch.setenv(modexp.ENVIRONMENT, "gmp")
        assert modexp.backend() == "gmp"
    else:
        monkeypatch.delenv(modexp.ENVIRONMENT, raising=False)
    return str(request.param)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Node processes a test starts; any still running at the end are killed."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()
