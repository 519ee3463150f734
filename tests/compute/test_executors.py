"""The executors (``riskprop.compute``): results in batch order, the same in-process and in a
pool of worker processes; a worker that dies mid-batch is retried once, and a second death
stops the call with ``ComputeError``, never a hang; an error of the batch function itself is
re-raised, not retried. Process-pool tests share one pool of two workers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import compute_faults
import pytest

from riskprop.compute import ProcessExecutor, SerialExecutor, default_workers, make_executor
from riskprop.core.batches import Executor
from riskprop.errors import ComputeError, ConfigError


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessExecutor]:
    with ProcessExecutor(2) as executor:
        yield executor


def test_serial_and_pool_give_the_results_in_batch_order(pool: ProcessExecutor) -> None:
    batches = list(range(23))
    expected = [b * b for b in batches]
    serial: Executor = SerialExecutor()
    assert serial.map(compute_faults.square, batches) == expected
    assert pool.map(compute_faults.square, batches) == expected
    assert pool.map(compute_faults.square, []) == []


def test_a_worker_that_dies_once_is_retried(pool: ProcessExecutor, tmp_path: Path) -> None:
    marker = str(tmp_path / "died")
    batches = [(marker if i == 5 else "", i) for i in range(12)]
    before = pool.restarts
    assert pool.map(compute_faults.die_once, batches) == [i * i for i in range(12)]
    assert Path(marker).exists()  # the worker did die
    assert pool.restarts == before + 1
    assert pool.map(compute_faults.square, [7]) == [49]  # the new pool works


def test_a_worker_that_dies_twice_stops_the_call_cleanly(pool: ProcessExecutor) -> None:
    with pytest.raises(ComputeError, match="failed twice: a worker process died"):
        pool.map(compute_faults.die_always, list(range(6)))
    assert pool.map(compute_faults.square, [3, 4]) == [9, 16]  # usable afterwards


def test_an_error_of_the_batch_function_is_reraised_not_retried(pool: ProcessExecutor) -> None:
    before = pool.restarts
    with pytest.raises(ValueError, match="no batch 2"):
        pool.map(compute_faults.refuse, list(range(5)))
    assert pool.restarts == before


def test_a_closed_pool_refuses_work() -> None:
    executor = ProcessExecutor(2)
    assert executor.map(compute_faults.square, [2]) == [4]
    executor.close()
    with pytest.raises(ComputeError, match="stopped"):
        executor.map(compute_faults.square, [2])


def test_make_executor_and_its_limits() -> None:
    assert isinstance(make_executor(1), SerialExecutor)
    many = make_executor(3)
    assert isinstance(many, ProcessExecutor) and many.workers == 3
    many.close()  # never started: nothing to stop
    assert default_workers() >= 1
    with pytest.raises(ConfigError, match="at least 1"):
        make_executor(0)
    with pytest.raises(ConfigError, match="never forked"):
        ProcessExecutor(2, method="fork")
