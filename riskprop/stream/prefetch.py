"""A receive thread in front of any :class:`~riskprop.stream.source.StreamSource`.

Theory of operation. :class:`Prefetch` is itself a ``StreamSource``. A daemon thread calls the
wrapped source's ``receive(count, wait)`` in a loop and puts each non-empty batch into a queue
of at most ``depth`` batches; :meth:`Prefetch.receive` takes the next batch from the queue. So
the broker round trip of batch *n + 1* overlaps the parsing and the store's commit of batch
*n* (the commit's fsync, SQLite and the socket wait release the interpreter lock).

Invariants (what the consumer's exactly-once argument needs, unchanged):

- **Order.** Batches come out in the order the source delivered them, never merged or
  reordered; a batch larger than the caller's ``count`` is handed out in order, in parts.
- **Acknowledgement.** Only the consumer acknowledges, through :meth:`Prefetch.ack`, which is
  the source's ``ack`` called on the consumer's thread, after the store's commit, in the
  consumer's order. The thread never acknowledges: a batch it received and nobody took is
  simply unacknowledged, and the broker delivers it again (after a crash or :meth:`close`).
- **Bound.** At most ``depth`` batches wait in the queue, plus the one the thread holds.
- **Close** stops the thread, joins it (at most about one ``wait`` of the source), then
  closes the source.

The wrapped source is used from two threads: ``receive`` on the receive thread, ``ack``,
``dead_letter`` and ``lag`` on the consumer's. redis-py's client is thread-safe (a connection
pool; a blocking read holds its own connection); librdkafka's consumer allows consume and
commit from different threads. With Redis's ``claim_idle``, note that a prefetched batch is
pending while it waits: ``claim_idle`` must be well above the time a batch spends in flight
(``depth + 1`` batch times), else the source claims its own in-flight entries again (harmless
duplicates, wasted work).

An error raised by the source's ``receive`` ends the thread and is raised by every later
:meth:`Prefetch.receive`, once the batches received before it are taken.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence

from riskprop.stream.source import Delivery, StreamSource


class Prefetch:
    """``source`` received ``count`` at a time (waiting up to ``wait`` s per call) by a thread
    keeping up to ``depth`` batches ready."""

    def __init__(
        self, source: StreamSource, *, count: int, wait: float = 1.0, depth: int = 1
    ) -> None:
        if count < 1 or depth < 1:
            raise ValueError(f"count and depth must be positive, got {count} and {depth}")
        self.source, self.count, self.wait = source, count, wait
        self._ready: queue.Queue[list[Delivery]] = queue.Queue(maxsize=depth)
        self._rest: list[Delivery] = []
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._ended = threading.Event()
        self._thread = threading.Thread(target=self._run, name="riskprop-receive", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                batch = self.source.receive(self.count, self.wait)
                while batch and not self._stop.is_set():
                    try:
                        self._ready.put(batch, timeout=0.05)
                        batch = []
                    except queue.Full:
                        continue
        except BaseException as error:  # handed to the consumer's thread
            self._error = error
        finally:
            self._ended.set()

    def receive(self, count: int, wait: float) -> list[Delivery]:
        """The next batch (at most ``count`` of it; the rest comes next), or [] when none is
        ready within ``wait`` seconds."""
        if not self._rest:
            self._rest = self._next(wait)
        batch, self._rest = self._rest[:count], self._rest[count:]
        return batch

    def _next(self, wait: float) -> list[Delivery]:
        try:
            return self._ready.get(timeout=wait) if wait > 0 else self._ready.get_nowait()
        except queue.Empty:
            pass
        if self._ended.is_set():
            try:  # a batch put just before the thread ended
                return self._ready.get_nowait()
            except queue.Empty:
                if self._error is not None:
                    raise self._error from None
        return []

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        self.source.ack(deliveries)

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        self.source.dead_letter(delivery, reason)

    def lag(self) -> int | None:
        return self.source.lag()

    def close(self) -> None:
        """Stop and join the thread, then close the source. Batches received and not taken
        stay unacknowledged: the broker delivers them again."""
        self._stop.set()
        self._thread.join()
        self.source.close()
