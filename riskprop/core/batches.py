"""What the maths needs from an executor: run a pure function over a list of batches.

The heavy calls of a secure session (``paillier.linear_step`` first) cut their work into
independent *batches*, frozen dataclasses of bytes, integers and numpy arrays, and hand them
with a module-level function of core to an :class:`Executor`. The executors themselves live in
``riskprop.compute`` (in-process, a local process pool); core only declares the interface, so
it imports nothing above it. A batch holds public data only (see docs/design-compute.md): its
function's result depends on nothing else, which is why every executor gives the same result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeGuard, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    """Runs ``fn`` on every batch and returns the results in the order of the batches.

    ``workers`` is how many batches run at once (1: in the calling process, and callers then
    skip cutting their work into batches). ``private``: every worker is a process of this node
    on this host (the calling process or its own children over pipes), so a batch may hold the
    node's secrets other than key shares (its noise: ``paillier.PooledNoise``); a cluster's
    workers are not. ``map`` raises ``riskprop.errors.ComputeError`` when a batch cannot be
    run (its worker died twice); an exception ``fn`` raises is re-raised.
    """

    @property
    def workers(self) -> int: ...

    @property
    def private(self) -> bool: ...

    def map(self, fn: Callable[[T], R], batches: Sequence[T]) -> list[R]: ...


def own_pool(executor: Executor | None) -> TypeGuard[Executor]:
    """Whether ``executor`` is a pool of this node's own worker processes (private, more than
    one worker): where its noise, and with the operator's leave its key share, may go."""
    return executor is not None and executor.private and executor.workers > 1
