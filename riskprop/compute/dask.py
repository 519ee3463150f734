"""The Dask executor: core's batches on a Dask distributed cluster (``compute: {dask: ADDRESS}``).

Theory of operation. ``DaskExecutor(address)`` connects a ``distributed.Client`` to the
scheduler at ``address`` when it is made (the start of a run), so an unreachable scheduler
fails the run before anything is sent to a peer, with one line naming the address. ``map``
submits one task per batch (``client.submit(fn, batch, pure=False)``: ``fn`` travels by name,
the batch inside the task, through the scheduler to a worker), waits for them and returns the
results in the order of the batches. They are the integers the serial executor computes:
``fn`` is a pure function of its batch. ``distributed`` is imported here only, and this module
only when a run is configured for Dask: ``import riskprop`` never loads it.

``workers`` is the number of worker threads the scheduler reports (at connection, refreshed
after every ``map``); callers cut their work into about two batches per thread.

Failures.
- A worker that dies while running a batch: the scheduler itself reruns the task elsewhere up
  to ``distributed.scheduler.allowed-failures`` times (its configuration; Dask's default 3),
  then the task fails with ``KilledWorker``. A ``KilledWorker``, a task cancelled because the
  client lost the scheduler (``CancelledError``) or a lost connection (``OSError``) counts as a
  failed batch; those are resubmitted once, and a second failure raises ``ComputeError``.
- No workers at all for ``no_worker_timeout`` seconds while batches wait: the same failure (a
  Dask scheduler would otherwise hold the tasks until a worker joins: a hang).
- An exception ``fn`` raises on a worker is re-raised unchanged, not retried.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError
from typing import Any, TypeVar

from riskprop.compute.executors import Closing
from riskprop.errors import ComputeError

T = TypeVar("T")
R = TypeVar("R")

#: Seconds to reach the scheduler at the start of a run.
CONNECT_TIMEOUT = 10.0
#: Seconds batches may wait with no worker in the cluster before the call fails.
NO_WORKER_TIMEOUT = 60.0
#: Seconds between checks of the cluster's workers while batches run.
POLL = 1.0


class DaskExecutor(Closing):
    """Batches on the Dask cluster whose scheduler listens at ``address`` (module doc).

    ``batches`` counts the batches it was given, ``retries`` the resubmissions after a
    failure. ``close`` releases the client (the cluster keeps running); a later ``map`` raises
    ``ComputeError``."""

    def __init__(
        self,
        address: str,
        *,
        connect_timeout: float = CONNECT_TIMEOUT,
        no_worker_timeout: float = NO_WORKER_TIMEOUT,
        poll: float = POLL,
    ) -> None:
        from distributed import Client

        self.address = address
        self.no_worker_timeout = no_worker_timeout
        self.poll = poll
        self.batches = 0
        self.retries = 0
        self._closed = False
        try:
            self._client = Client(address, timeout=connect_timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            cause = " ".join(str(exc).split()) or type(exc).__name__
            raise ComputeError(
                f"cannot reach the Dask scheduler at {address} within {connect_timeout:g} s "
                f"({cause[:200]})"
            ) from None
        try:
            self._client.wait_for_workers(1, timeout=connect_timeout)
        except (OSError, TimeoutError) as exc:
            self._client.close()
            raise ComputeError(
                f"the Dask scheduler at {address} has no workers (waited {connect_timeout:g} s)"
            ) from exc
        self._workers = max(1, self._threads())

    @property
    def workers(self) -> int:
        return self._workers

    @property
    def private(self) -> bool:
        """A cluster's workers (even a ``LocalCluster``'s) are not the node's own: they get
        public batches only, never its noise."""
        return False

    def _threads(self) -> int:
        """Worker threads in the cluster now (0 when the scheduler cannot tell)."""
        try:
            return sum(self._client.nthreads().values())
        except (OSError, TimeoutError, CancelledError):
            return 0

    def map(self, fn: Callable[[T], R], batches: Sequence[T]) -> list[R]:
        if self._closed:
            raise ComputeError("the compute workers were stopped")
        self.batches += len(batches)
        results: dict[int, R] = {}
        pending = list(range(len(batches)))
        cause = ""
        for attempt in range(2):
            if not pending:
                break
            if attempt:
                self.retries += 1
            pending, cause = self._attempt(fn, batches, pending, results)
        if pending:
            raise ComputeError(
                f"{len(pending)} of {len(batches)} compute batches failed twice on the Dask "
                f"cluster at {self.address} ({cause}); the run stops"
            )
        self._workers = max(1, self._threads() or self._workers)
        return [results[i] for i in range(len(batches))]

    def _attempt(
        self, fn: Callable[[T], R], batches: Sequence[T], pending: list[int], results: dict[int, R]
    ) -> tuple[list[int], str]:
        """Run the ``pending`` batches once, into ``results``; return those that failed for
        want of a worker, with the cause."""
        from distributed import KilledWorker

        name = getattr(fn, "__name__", "batch")
        tag = uuid.uuid4().hex[:12]
        try:
            futures = {
                i: self._client.submit(fn, batches[i], pure=False, key=f"{name}-{tag}-{i}")
                for i in pending
            }
        except (OSError, CancelledError) as exc:
            return pending, _describe(exc)
        cause = ""
        gone = False  # no worker for no_worker_timeout seconds: stop waiting
        idle_since: float | None = None
        try:
            for i, future in futures.items():
                while not gone or future.done():
                    try:
                        results[i] = future.result(timeout=self.poll)
                        break
                    except TimeoutError:  # still running (an OSError: caught first)
                        if self._threads():
                            idle_since = None
                            continue
                        idle_since = idle_since or time.monotonic()
                        gone = time.monotonic() - idle_since >= self.no_worker_timeout
                    except (KilledWorker, CancelledError, OSError) as exc:
                        cause = cause or _describe(exc)
                        break
        finally:
            self._release(list(futures.values()))
        if gone:
            cause = f"no Dask workers for {self.no_worker_timeout:g} s"
        return [i for i in pending if i not in results], cause

    def _release(self, futures: list[Any]) -> None:
        """Cancel what is still running (nothing once every batch has its result)."""
        unfinished = [f for f in futures if not f.done()]
        # the scheduler may be gone: then nothing runs for us any more
        if unfinished:
            with contextlib.suppress(OSError, CancelledError, TimeoutError):
                self._client.cancel(unfinished)

    def close(self) -> None:
        """Release the client (the cluster's scheduler and workers keep running), for good."""
        if not self._closed:
            self._closed = True
            self._client.close()


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__
