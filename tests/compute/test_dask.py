"""The Dask executor on a ``LocalCluster`` of two worker processes (one thread each): the
serial integers for ``linear_step`` on random CSR inputs, for ``pack``, and on every step and
packing of secure simulations (3 banks over 3 periods, 5 banks) that match the plaintext
engine; a worker killed (SIGKILL) while batches run is retried and the results stay right;
with every worker dead, or the scheduler gone, the call fails with ``ComputeError`` instead of
hanging; an unreachable scheduler is one line naming its address.

The module's scheduler lets no task survive a dead worker (``allowed-failures: 0``): its first
death is a ``KilledWorker`` and the executor's own resubmission is what is tested."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import compute_faults
import dask
import pytest
from compute_cases import CASES, KEY, SIMULATIONS, check_secure_simulation, random_case
from distributed import Client, LocalCluster
from gmpy2 import mpz

from riskprop.compute.dask import DaskExecutor
from riskprop.core.paillier import linear_step, pack
from riskprop.errors import ComputeError


def local_cluster(workers: int = 2) -> LocalCluster:
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        return LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},  # its HTTP server: any port
        )


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with local_cluster() as running:
        yield running


@pytest.fixture(scope="module")
def executor(cluster: LocalCluster) -> Iterator[DaskExecutor]:
    with DaskExecutor(cluster.scheduler_address, no_worker_timeout=5.0) as running:
        yield running


def worker_pids(address: str) -> list[int]:
    with Client(address, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=60)
        return sorted(client.run(os.getpid).values())


def test_results_in_batch_order(executor: DaskExecutor) -> None:
    assert executor.workers == 2
    assert executor.map(compute_faults.square, list(range(23))) == [b * b for b in range(23)]
    assert executor.map(compute_faults.square, []) == []


def test_batches_longer_than_the_poll_are_waited_for(cluster: LocalCluster, tmp_path: Path) -> None:
    """A batch still running when a poll ends is not a failure (``TimeoutError`` is an
    ``OSError``, as a lost connection is)."""
    with DaskExecutor(cluster.scheduler_address, poll=0.05) as executor:
        batches = [(str(tmp_path), i) for i in range(4)]
        assert executor.map(compute_faults.slow_square, batches) == [0, 1, 4, 9]
        assert executor.retries == 0


def test_an_error_of_the_batch_function_is_reraised_not_retried(executor: DaskExecutor) -> None:
    before = executor.retries
    with pytest.raises(ValueError, match="no batch 2"):
        executor.map(compute_faults.refuse, list(range(5)))
    assert executor.retries == before


@pytest.mark.parametrize(("n_rows", "extra", "degree", "bits", "self_coef"), CASES)
def test_linear_step_gives_the_serial_integers(
    executor: DaskExecutor, n_rows: int, extra: int, degree: float, bits: int, self_coef: int
) -> None:
    bases, indptr, indices, coefs = random_case(n_rows + bits, n_rows, extra, degree, bits)
    args = (KEY, bases, n_rows, self_coef, indptr, indices, coefs)
    assert linear_step(*args, executor=executor, batch_terms=1) == linear_step(*args)


@pytest.mark.parametrize(("count", "slots"), [(7, 4), (300, 16)])
def test_pack_gives_the_serial_integers(executor: DaskExecutor, count: int, slots: int) -> None:
    values = [mpz(secrets.randbelow(KEY.nsquare)) for _ in range(count)]
    got = pack(KEY, values, 11, slots, executor=executor, batch_values=1)
    assert got == pack(KEY, values, 11, slots)


@pytest.mark.parametrize(("banks", "periods"), SIMULATIONS)
def test_secure_simulation_through_dask_is_bit_identical(
    banks: tuple[str, ...],
    periods: int,
    executor: DaskExecutor,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    check_secure_simulation(executor, banks, periods, tmp_path, monkeypatch)


def kill_while_running(
    pids: list[int], started: Path, call: threading.Thread, timeout: float = 60.0
) -> None:
    """Start ``call``; once a batch has started, SIGKILL the worker processes ``pids``."""
    call.start()
    deadline = time.monotonic() + timeout
    while not any(started.iterdir()):
        assert time.monotonic() < deadline, "no batch started"
        time.sleep(0.02)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)


@pytest.mark.timeout(180)
def test_a_worker_killed_mid_batch_is_retried(
    cluster: LocalCluster, executor: DaskExecutor, tmp_path: Path
) -> None:
    started = tmp_path / "started"
    started.mkdir()
    batches = [(str(started), i) for i in range(8)]
    got: list[list[int]] = []
    call = threading.Thread(
        target=lambda: got.append(executor.map(compute_faults.slow_square, batches))
    )
    before = executor.retries
    kill_while_running(worker_pids(cluster.scheduler_address)[:1], started, call)
    call.join(120)
    assert got == [[i * i for i in range(8)]]
    assert executor.retries == before + 1
    assert executor.map(compute_faults.square, [7]) == [49]  # the cluster works on


@pytest.mark.timeout(180)
def test_with_every_worker_dead_the_call_fails_cleanly(tmp_path: Path) -> None:
    """Workers started as an operator would (``dask worker``), without a nanny to restart
    them, all killed while batches run: the call fails, it does not wait for new workers."""
    started = tmp_path / "started"
    started.mkdir()
    env = {**os.environ, "PYTHONPATH": str(Path(compute_faults.__file__).parent)}
    with local_cluster(workers=0) as cluster:
        command = [sys.executable, "-m", "dask", "worker", cluster.scheduler_address]
        command += ["--no-nanny", "--nthreads", "1", "--no-dashboard"]
        workers = [subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL) for _ in range(2)]
        try:
            pids = worker_pids(cluster.scheduler_address)
            with DaskExecutor(cluster.scheduler_address, no_worker_timeout=2.0) as executor:
                assert sorted(pids) == sorted(w.pid for w in workers)
                failure: list[ComputeError] = []

                def call() -> None:
                    batches = [(str(started), i) for i in range(8)]
                    try:
                        executor.map(compute_faults.slow_square, batches)
                    except ComputeError as exc:
                        failure.append(exc)

                thread = threading.Thread(target=call)
                kill_while_running(pids, started, thread)
                thread.join(120)
                assert not thread.is_alive()
        finally:
            for worker in workers:
                worker.kill()
                worker.wait()
    assert len(failure) == 1
    message = str(failure[0])
    assert "8 of 8 compute batches failed twice on the Dask cluster" in message
    assert "\n" not in message


@pytest.mark.timeout(180)
def test_a_scheduler_lost_while_batches_run_fails_the_call_cleanly(tmp_path: Path) -> None:
    """The whole cluster stops mid-call: the client's tasks are cancelled, the resubmission
    finds no scheduler, and the call ends with ``ComputeError`` instead of waiting."""
    started = tmp_path / "started"
    started.mkdir()
    failure: list[ComputeError] = []
    cluster = local_cluster()
    with DaskExecutor(cluster.scheduler_address, no_worker_timeout=2.0) as executor:

        def call() -> None:
            try:
                executor.map(compute_faults.slow_square, [(str(started), i) for i in range(8)])
            except ComputeError as exc:
                failure.append(exc)

        thread = threading.Thread(target=call)
        thread.start()
        while not any(started.iterdir()):
            time.sleep(0.02)
        cluster.close()
        thread.join(120)
        assert not thread.is_alive()
    assert len(failure) == 1
    assert "8 of 8 compute batches failed twice on the Dask cluster" in str(failure[0])


@pytest.mark.timeout(60)
def test_an_unreachable_scheduler_is_one_line_naming_it() -> None:
    with pytest.raises(ComputeError) as caught:
        DaskExecutor("tcp://127.0.0.1:9", connect_timeout=1.0)
    message = str(caught.value)
    assert message.startswith("cannot reach the Dask scheduler at tcp://127.0.0.1:9")
    assert "\n" not in message


def test_a_closed_executor_refuses_work(cluster: LocalCluster) -> None:
    executor = DaskExecutor(cluster.scheduler_address)
    assert executor.map(compute_faults.square, [2]) == [4]
    executor.close()
    with pytest.raises(ComputeError, match="stopped"):
        executor.map(compute_faults.square, [2])


def test_riskprop_starts_without_dask() -> None:
    """``distributed`` is loaded only for a run on Dask (it is an optional dependency)."""
    code = (
        "import sys, riskprop, riskprop.cli, riskprop.compute, riskprop.node.runner\n"
        "from riskprop.compute import make_executor\n"
        "make_executor(2).close()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_make_executor_for_dask(cluster: LocalCluster) -> None:
    from riskprop.compute import make_executor
    from riskprop.errors import ConfigError

    with make_executor(dask=cluster.scheduler_address) as executor:
        assert isinstance(executor, DaskExecutor) and executor.workers == 2
    with pytest.raises(ConfigError, match="workers or dask, not both"):
        make_executor(2, dask=cluster.scheduler_address)
