"""Stopping on request, promptly, whatever a node is doing, and work off the event loop.

``until_stopped`` runs a coroutine until it ends or ``stop`` is set (the CLI sets it on
SIGTERM and SIGINT); on a stop it logs one line at once, cancels the work and raises
``StoppedError`` within ``STOP_GRACE`` seconds. Cancellation reaches every await: a connection
attempt, a back-off, a wait for a message, or a computation ``in_thread`` (whose daemon
thread is abandoned: nothing it computes is written, and it does not hold the process up).
What a node keeps on disk is written before its messages are sent, so a stop at any point
leaves the last checkpoint to resume from.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

from riskprop.errors import StoppedError

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Seconds a stopped node waits for its cancelled work to unwind before it exits anyway.
STOP_GRACE = 1.5


async def until_stopped(
    work: Awaitable[T], stop: asyncio.Event | None, what: Callable[[], str]
) -> T:
    """``await work``, or ``StoppedError`` soon after ``stop`` is set; ``what()`` names what is
    being stopped for the one-line acknowledgement."""
    task = asyncio.ensure_future(work)
    if stop is None:
        return await task
    stopper = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        stopper.cancel()
    if task in done:
        return task.result()
    description = what()
    log.warning("%s: stopping on request; the same command resumes", description)
    task.cancel()
    await asyncio.wait({task}, timeout=STOP_GRACE)
    if task.done() and not task.cancelled():
        with contextlib.suppress(BaseException):
            task.result()  # it ended by itself meanwhile: its outcome no longer matters
    raise StoppedError(f"{description}: stopped on request; the same command resumes")


class DaemonThreads(Executor):
    """Runs each call in a new daemon thread (named ``riskprop-<function>``). A node that stops
    abandons a running computation; ``asyncio.to_thread``'s pool would make the process wait
    for it at exit."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()

        def work() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # handed to the awaiting task
                future.set_exception(exc)
            else:
                future.set_result(result)

        name = f"riskprop-{getattr(fn, '__name__', 'work')}"
        threading.Thread(target=work, name=name, daemon=True).start()
        return future


#: The executor of ``in_thread``.
DAEMON_THREADS = DaemonThreads()


async def in_thread(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` in a daemon thread, in a copy of the caller's context (its bound log
    fields). Awaiting it can be cancelled at once; the thread then runs to its end unobserved
    (it must not write anything that matters)."""
    context = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(
        DAEMON_THREADS, functools.partial(context.run, function, *args)
    )
