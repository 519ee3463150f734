"""Executors: run a pure function of core over batches of public data, in this process or in
a pool of worker processes on this machine (the Dask executor is in ``compute.dask``).

Theory of operation. A caller (``core.paillier.linear_step``) cuts its work into independent
batches and calls ``executor.map(fn, batches)``; the results come back in the order of the
batches. ``SerialExecutor`` calls ``fn`` here. ``ProcessExecutor`` keeps a
``concurrent.futures.ProcessPoolExecutor`` of ``workers`` processes for its lifetime, started
by ``forkserver`` (``spawn`` where there is none), never ``fork``: a node process holds key
shares, TLS keys and threads that a forked child would inherit. ``fn`` travels by name and the
batches by pickle, over pipes to the node's own children: never on a network.

Failures. A worker that dies (killed, out of memory, ``os._exit``) breaks the whole pool; every
batch without a result then fails with ``BrokenProcessPool``. The executor starts a new pool
and resubmits those batches once; if one fails again, ``ComputeError``. An exception ``fn``
raises is re-raised unchanged and not retried (it would fail again).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from types import TracebackType
from typing import TYPE_CHECKING, Self, TypeVar

from riskprop.errors import ComputeError, ConfigError

if TYPE_CHECKING:  # imported when a run asks for Dask: ``import riskprop`` stays without it
    from riskprop.compute.dask import DaskExecutor

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def start_method() -> str:
    """``forkserver`` where the platform has it, else ``spawn`` (never ``fork``)."""
    methods = multiprocessing.get_all_start_methods()
    return "forkserver" if "forkserver" in methods else "spawn"


class Closing:
    """``with executor:`` closes it at the end of the block (every executor's ``close``)."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class SerialExecutor(Closing):
    """Every batch in the calling process, one after the other (``workers == 1``: callers
    then do not cut their work at all). ``batches`` counts the batches it ran."""

    workers = 1
    private = True  # this process

    def __init__(self) -> None:
        self.batches = 0

    def map(self, fn: Callable[[T], R], batches: Sequence[T]) -> list[R]:
        self.batches += len(batches)
        return [fn(batch) for batch in batches]

    def close(self) -> None:
        """Nothing to release."""


class ProcessExecutor(Closing):
    """A pool of ``workers`` processes on this machine (module doc: start method, failures).

    The pool starts on the first ``map`` and lives until ``close`` (or the ``with`` block
    ends). ``batches`` counts the batches it was given, ``restarts`` the pools replaced after
    a worker died."""

    def __init__(self, workers: int, *, method: str | None = None) -> None:
        if workers < 1:
            raise ConfigError(f"compute workers must be at least 1 (got {workers})")
        self._workers = workers
        self.method = method or start_method()
        if self.method == "fork":
            raise ConfigError("compute workers are never forked from the node process")
        self._pool: ProcessPoolExecutor | None = None
        self._closed = False
        self.batches = 0
        self.restarts = 0

    @property
    def workers(self) -> int:
        return self._workers

    @property
    def private(self) -> bool:
        """The node's own children on this host, reached over pipes: they may draw its noise."""
        return True

    def _running(self) -> ProcessPoolExecutor:
        if self._closed:  # e.g. a step still running in a thread after its node stopped
            raise ComputeError("the compute workers were stopped")
        if self._pool is None:
            context = multiprocessing.get_context(self.method)
            self._pool = ProcessPoolExecutor(self._workers, mp_context=context)
        return self._pool

    def _discard(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def map(self, fn: Callable[[T], R], batches: Sequence[T]) -> list[R]:
        self.batches += len(batches)
        results: dict[int, R] = {}
        pending = list(range(len(batches)))
        cause: BaseException | None = None
        for attempt in range(2):
            if not pending:
                break
            if attempt:
                self._discard()
                self.restarts += 1
            pending, cause = self._attempt(fn, batches, pending, results)
        if pending:
            self._discard()
            raise ComputeError(
                f"{len(pending)} of {len(batches)} compute batches failed twice: a worker "
                f"process died ({cause}); the run stops"
            )
        return [results[i] for i in range(len(batches))]

    def _attempt(
        self, fn: Callable[[T], R], batches: Sequence[T], pending: list[int], results: dict[int, R]
    ) -> tuple[list[int], BaseException | None]:
        """Run the ``pending`` batches once, into ``results``; those a dead worker took down
        (the pool breaks while submitting, too) come back with the cause."""
        pool = self._running()
        futures: dict[int, Future[R]] = {}
        failed: list[int] = []
        cause: BaseException | None = None
        try:
            for i in pending:
                try:
                    futures[i] = pool.submit(fn, batches[i])
                except BrokenProcessPool as exc:
                    failed.append(i)
                    cause = exc
            for i, future in futures.items():
                try:
                    results[i] = future.result()
                except BrokenProcessPool as exc:
                    failed.append(i)
                    cause = exc
        finally:
            for future in futures.values():
                future.cancel()
        return sorted(failed), cause

    def close(self) -> None:
        """Stop the worker processes (waits for running batches; cancels the others) for
        good: a later ``map`` raises ``ComputeError``."""
        self._closed = True
        self._discard()


def make_executor(
    workers: int | None = None, dask: str | None = None
) -> SerialExecutor | ProcessExecutor | DaskExecutor:
    """The executor for ``workers`` processes (``None``: :func:`default_workers`; 1: in
    this process), or for the Dask cluster whose scheduler is at ``dask`` (connected now;
    ``ComputeError`` if it cannot be reached). Not both."""
    if dask is not None:
        if workers is not None:
            raise ConfigError("compute: give workers or dask, not both")
        from riskprop.compute.dask import DaskExecutor

        return DaskExecutor(dask)
    count = default_workers() if workers is None else workers
    if count < 1:
        raise ConfigError(f"compute workers must be at least 1 (got {count})")
    return SerialExecutor() if count == 1 else ProcessExecutor(count)
