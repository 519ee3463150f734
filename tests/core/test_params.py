"""Run parameters (``riskprop.core.params``, ``core.schedule``, ``core.fixedpoint``): one name
each, checked once when constructed, with errors that name the parameter."""

from __future__ import annotations

import math
from typing import Any

import pytest

from riskprop.core.fixedpoint import DEFAULT_PRECISION_BITS, FixedPoint
from riskprop.core.params import RunParameters, check_periods
from riskprop.core.schedule import DEFAULT_DELTA_A, DEFAULT_DELTA_B, DeltaSchedule
from riskprop.errors import ConfigError, ParameterError


def test_defaults() -> None:
    parameters = RunParameters(3)
    assert (
        (parameters.delta_a, parameters.delta_b) == (DEFAULT_DELTA_A, DEFAULT_DELTA_B) == (0.5, 0)
    )
    assert parameters.precision_bits == DEFAULT_PRECISION_BITS == 32
    assert parameters.periods == (0,)
    assert parameters.schedule == DeltaSchedule(0.5, 0.0)
    assert parameters.total_iterations == 3


def test_periods_are_sorted_and_count_every_iteration() -> None:
    parameters = RunParameters(2, periods=(7, 0, 3))
    assert parameters.periods == (0, 3, 7)
    assert parameters.total_iterations == 6
    assert check_periods([5, 1]) == (1, 5)


@pytest.mark.parametrize(
    ("arguments", "name", "message"),
    [
        ({"iterations": -1}, "iterations", "iterations: must be >= 0 (got -1)"),
        (
            {"iterations": 1, "delta_a": 1.5},
            "delta_a",
            "delta_a: must lie strictly between 0 and 1 (got 1.5)",
        ),
        ({"iterations": 1, "delta_a": 0.0}, "delta_a", "delta_a: must lie strictly between 0"),
        ({"iterations": 1, "delta_a": 1.0}, "delta_a", "delta_a: must lie strictly between 0"),
        ({"iterations": 1, "delta_a": math.nan}, "delta_a", "delta_a: must lie strictly"),
        (
            {"iterations": 1, "delta_b": -0.1},
            "delta_b",
            "delta_b: must be a finite number >= 0 (got -0.1)",
        ),
        ({"iterations": 1, "delta_b": math.inf}, "delta_b", "delta_b: must be a finite number"),
        (
            {"iterations": 1, "precision_bits": 60},
            "precision_bits",
            "precision_bits: must lie in 8..52 (got 60)",
        ),
        (
            {"iterations": 1, "precision_bits": 7},
            "precision_bits",
            "precision_bits: must lie in 8..52 (got 7)",
        ),
        (
            {"iterations": 1, "periods": (1, 1)},
            "periods",
            "periods: must be distinct integers >= 0 (got [1, 1])",
        ),
        (
            {"iterations": 1, "periods": (-2,)},
            "periods",
            "periods: must be distinct integers >= 0 (got [-2])",
        ),
        ({"iterations": 1, "periods": ()}, "periods", "periods: need at least one period"),
    ],
)
def test_a_parameter_out_of_range_is_named(
    arguments: dict[str, Any], name: str, message: str
) -> None:
    with pytest.raises(ParameterError) as info:
        RunParameters(**arguments)
    assert info.value.name == name
    assert str(info.value).startswith(message), str(info.value)
    assert str(info.value) == f"{info.value.name}: {info.value.problem}"
    assert isinstance(info.value, ConfigError)  # commands report it like any bad setting


def test_schedule_and_fixed_point_check_their_own_parameters() -> None:
    with pytest.raises(ParameterError, match=r"^delta_a: "):
        DeltaSchedule(delta_a=2.0)
    with pytest.raises(ParameterError, match=r"^delta_b: "):
        DeltaSchedule(delta_a=0.5, delta_b=-1.0)
    with pytest.raises(ParameterError, match=r"^precision_bits: "):
        FixedPoint(precision_bits=4)


def test_delta_decays_as_a_over_k_to_the_b() -> None:
    schedule = DeltaSchedule(delta_a=0.8, delta_b=1.0)
    assert schedule.deltas(4) == pytest.approx([0.8, 0.4, 0.8 / 3, 0.2])
    assert DeltaSchedule(0.3, 0.0).deltas(3) == [0.3, 0.3, 0.3]
    assert all(0.0 < d < 1.0 for d in DeltaSchedule(0.99, 0.0).deltas(5))
    with pytest.raises(ValueError, match="start at 1"):
        schedule.delta(0)
