"""An asyncio event loop whose clock moves only when nothing else can happen.

In-process protocol tests run every bank's driver in one event loop; their time-outs (a silent
helper, a party that dropped out) are what some tests are about. On a real clock such a test
depends on the machine: a loaded machine can make an honest party slower than the time-out the
test expects to fire for the silent one. Here ``loop.time()`` is virtual: it starts at 0 and
jumps to the next timer only when the loop is idle -- no callback ready, no I/O ready, and no
work in a thread that will report back (``asyncio.to_thread``, an executor, riskprop's
``in_thread``). So a time-out fires exactly when every party is waiting and the awaited message
can no longer come, whatever the machine's speed, and a test waits no real time for it.

Invariant: ``time()`` never moves while anything can still run, so the order in which time-outs
fire is the order of their deadlines, and no work is ever "too slow".
"""

from __future__ import annotations

import asyncio
import functools
import selectors
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor
from typing import Any, TypeVar, TypeVarTuple

T = TypeVar("T")
Ts = TypeVarTuple("Ts")
#: Name prefix of the threads ``riskprop.node.stopping.in_thread`` starts.
IN_THREAD_PREFIX = "riskprop-"
#: Real seconds between two looks at the worker threads while work is under way.
WORK_POLL = 0.05


class _IdleSelector(selectors.DefaultSelector):
    """Selects without waiting: when nothing is ready and no worker thread runs, the loop's
    clock jumps by the time-out the loop would have slept."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        super().__init__()
        self.loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        if self.loop.working():
            # real work is under way: wait for it to report back, but look again now and then,
            # because a worker of another loop (a task cancelled in an earlier test whose thread
            # still runs) counts as work and ends without waking this one
            return super().select(WORK_POLL)
        if timeout is None:
            return super().select(None)  # nothing is scheduled: only I/O can wake the loop
        self.loop.advance(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop on virtual time (see the module doc)."""

    def __init__(self) -> None:
        self._now = 0.0
        self.threads_running = 0
        super().__init__(_IdleSelector(self))

    def time(self) -> float:
        return self._now

    def working(self) -> bool:
        """Whether work runs outside the loop that will report back to it: a thread of the
        loop's executors, or one of the daemon threads of ``riskprop.node.stopping.in_thread``
        (named ``riskprop-*``), which hand their result over before they end."""
        return self.threads_running > 0 or any(
            thread.name.startswith(IN_THREAD_PREFIX) for thread in threading.enumerate()
        )

    def advance(self, seconds: float) -> None:
        self._now += max(0.0, seconds)

    def run_in_executor(
        self, executor: Executor | None, func: Callable[[*Ts], T], *args: *Ts
    ) -> asyncio.Future[T]:
        """``func(*args)`` in a worker thread, counted as running until its result is back in
        the loop: the count goes down in the same callback that hands over the result, so the
        loop never looks idle between the two."""
        future: asyncio.Future[T] = self.create_future()

        def work() -> None:
            try:
                result = func(*args)
            except BaseException as exc:  # handed over to the awaiting task
                self.call_soon_threadsafe(finish, functools.partial(future.set_exception, exc))
            else:
                self.call_soon_threadsafe(finish, functools.partial(future.set_result, result))

        def finish(settle: Callable[[], None]) -> None:
            self.threads_running -= 1
            if not future.cancelled():
                settle()

        self.threads_running += 1
        super().run_in_executor(executor, work)  # the executor and its shutdown as usual
        return future


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on virtual time."""
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(main)
