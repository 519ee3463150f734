"""Bounded resources on the inbound side: who may hold a connection, for how long, how many.

A node's port is open to anyone who can reach it, so nothing a client does before it has
proved to be a peer may cost the node more than a bounded share of its descriptors, memory,
time or log. Theory of operation:

1. *Own accept loop.* ``Listener`` accepts on its own listening sockets (``loop.sock_accept``)
   instead of asyncio's server, so that it sees every accepted socket before any TLS byte is
   read and every failed ``accept()``.
2. *Admission.* A socket over the total limit or over its remote address's limit is closed at
   once. The total is also kept to half the descriptors the process may open
   (``connection_budget``): the node needs the rest for its own files and outbound connections.
3. *Time.* The TLS handshake must end within ``handshake_timeout`` (asyncio's
   ``ssl_handshake_timeout``); after it, aiohttp's keep-alive time-out (``idle_timeout``)
   closes a connection that sends no complete request head for that long, from its start or
   from its last response. Bodies are timed by the transport (``riskprop.node.http``).
4. *Descriptor exhaustion.* asyncio's own server (CPython 3.11, ``selector_events``'s
   ``_accept_connection``) reports each failed ``accept()`` (EMFILE, ENFILE, ENOBUFS, ENOMEM)
   through the loop's exception handler as "socket.accept() out of system resource", with a
   traceback, and keeps calling ``accept()`` for the rest of the backlog in the same tick,
   each failure scheduling another restart of the listener a second later. The restarts
   multiply: a flood of idle connections past the descriptor limit writes hundreds of records
   a second (with tracebacks) and leaves no descriptor for anything else. Here a failed ``accept()``
   pauses that listening socket for ``ACCEPT_PAUSE`` seconds (the pending connections wait in
   the kernel's backlog), the established connections are served meanwhile, and one warning
   line per ``REPORT_INTERVAL`` says how many accepts failed (``ThrottledWarning``); likewise
   for connections closed over the limits.

``Listener`` holds the counts; ``InboundLimits`` the settings, with the defaults a node uses.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import socket
import ssl
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from riskprop.protocol.messages import MAX_HEADER_BYTES

if TYPE_CHECKING:
    from riskprop.config import Limits

log = logging.getLogger(__name__)

#: Seconds a listening socket rests after a failed ``accept()`` (asyncio waits 1 s).
ACCEPT_PAUSE = 0.5
#: At most one warning line per this many seconds for each kind of refusal.
REPORT_INTERVAL = 30.0
#: Descriptors always left to the rest of the process (files, outbound connections, logs).
RESERVED_DESCRIPTORS = 64
#: Pending connections the kernel queues for a listening socket.
BACKLOG = 128
#: A message is ``MAGIC`` and a 4-byte header length before its header.
FRAME_PREFIX = 8


@dataclass(frozen=True)
class InboundLimits:
    """What one node grants the clients of its port; defaults for a network of a few banks."""

    #: connections open at once (in TLS handshake or established), further capped by
    #: ``connection_budget``
    max_connections: int = 256
    #: connections open at once from one remote address
    max_connections_per_address: int = 16
    #: seconds for a client to complete the TLS handshake
    handshake_timeout: float = 10.0
    #: seconds a connection may wait for a complete request head (from its start, or from the
    #: previous response); longer than aiohttp clients keep idle connections (15 s)
    idle_timeout: float = 75.0
    #: request bodies being read or decoded at once, in all and per peer; others wait
    max_concurrent_bodies: int = 16
    max_concurrent_bodies_per_peer: int = 4
    #: the most values one message of the run carries (None: bounded by the body cap only)
    max_values: int | None = None
    #: the largest message header (a Hello's rosters travel in it)
    max_header_bytes: int = MAX_HEADER_BYTES


def inbound_limits(config: Limits) -> InboundLimits:
    """The ``limits`` section of a node's configuration, as the transport takes it."""
    return InboundLimits(
        max_connections=config.max_connections,
        max_connections_per_address=config.max_connections_per_address,
        handshake_timeout=config.handshake_timeout,
        max_concurrent_bodies=config.max_concurrent_bodies,
        max_concurrent_bodies_per_peer=config.max_concurrent_bodies_per_peer,
        max_values=config.max_accounts,  # a message carries at most one value per account
        max_header_bytes=config.max_header_bytes,
    )


def body_limit(max_body_bytes: int, width: int, limits: InboundLimits) -> int:
    """The largest body a peer may send. A run's message is its 8-byte prefix, a header of at
    most ``max_header_bytes`` (a Hello's rosters) and at most ``max_values`` values of
    ``width`` bytes; one bound covers every kind, as none has both a large header and a
    large payload. ``max_body_bytes`` caps it, and alone bounds bodies when ``max_values`` is
    not known or the transport carries no values (key generation)."""
    if limits.max_values is None or width <= 0:
        return max_body_bytes
    run_bound = FRAME_PREFIX + min(limits.max_header_bytes, MAX_HEADER_BYTES)
    return min(max_body_bytes, run_bound + limits.max_values * width)


def connection_budget(requested: int, soft_limit: int | None = None) -> int:
    """``requested``, but at most half the descriptors the process may open (its soft
    ``RLIMIT_NOFILE``) and never within ``RESERVED_DESCRIPTORS`` of that limit."""
    if soft_limit is None:
        soft_limit, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft_limit == resource.RLIM_INFINITY:
        return requested
    return max(1, min(requested, soft_limit - max(RESERVED_DESCRIPTORS, soft_limit // 2)))


class ThrottledWarning:
    """One kind of event, logged at most once per ``interval``: the first at once, those that
    follow within the interval as one count at its end (or at ``close``).

    ``template`` gets the count, then the arguments of the latest ``note``."""

    def __init__(self, template: str, interval: float = REPORT_INTERVAL) -> None:
        self.template = template
        self.interval = interval
        self.total = 0
        self._pending = 0
        self._args: tuple[object, ...] = ()
        self._quiet_until = float("-inf")
        self._timer: asyncio.TimerHandle | None = None

    def note(self, *args: object) -> None:
        self.total += 1
        self._pending += 1
        self._args = args
        if self._timer is not None:
            return  # a line is due at the end of this interval
        loop = asyncio.get_running_loop()
        if loop.time() >= self._quiet_until:
            self._emit()
        else:
            self._timer = loop.call_at(self._quiet_until, self._emit)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._emit()

    def _emit(self) -> None:
        self._timer = None
        if self._pending:
            log.warning(self.template, self._pending, *self._args)
            self._pending = 0
            self._quiet_until = asyncio.get_running_loop().time() + self.interval


class _Slot:
    """One admitted connection's place in the counts, given back exactly once."""

    def __init__(self, counts: Counter[str], address: str) -> None:
        self._counts, self._address = counts, address
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._counts[self._address] -= 1
            if self._counts[self._address] <= 0:
                del self._counts[self._address]


class _Counted(asyncio.Protocol):
    """The application's protocol, unchanged, that gives its slot back when it is closed."""

    def __init__(self, inner: asyncio.Protocol, slot: _Slot) -> None:
        self._inner, self._slot = inner, slot

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            self._inner.connection_lost(exc)
        finally:
            self._slot.release()


class Listener:
    """Accepts connections for ``factory`` within ``limits`` (see the module doc).

    ``factory`` makes the application's protocol (aiohttp's low-level ``web.Server``);
    with ``ssl_context`` each admitted connection completes a TLS handshake first."""

    def __init__(
        self,
        name: str,
        factory: Callable[[], asyncio.Protocol],
        limits: InboundLimits,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self.name = name
        self.limits = limits
        self.max_connections = connection_budget(limits.max_connections)
        self.max_per_address = min(limits.max_connections_per_address, self.max_connections)
        self._factory = factory
        self._ssl = ssl_context
        #: open connections (in TLS handshake or established) by remote address
        self._counts: Counter[str] = Counter()
        self._sockets: list[socket.socket] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._unstarted: set[socket.socket] = set()  # admitted, not yet given to a transport
        self.over_limit = ThrottledWarning(
            f"{name}: closed %d connection(s) over the limits "
            f"({self.max_connections} in all, {self.max_per_address} per address), "
            "the latest from %s"
        )
        self.accept_failed = ThrottledWarning(
            f"{name}: could not accept %d connection(s) (%s) with %d open; "
            f"accepting again after a {ACCEPT_PAUSE:g} s pause each time"
        )

    @property
    def connections(self) -> int:
        return sum(self._counts.values())

    async def start(self, host: str, port: int) -> None:
        """Listen on every address of ``host`` (OSError if one cannot be bound)."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        try:
            for family, _, _, _, address in dict.fromkeys(infos):
                sock = socket.create_server(address, family=family, backlog=BACKLOG)
                self._sockets.append(sock)
                sock.setblocking(False)
        except OSError:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()
            raise
        for sock in self._sockets:
            self._spawn(self._accept_loop(sock))
        if self.max_connections < self.limits.max_connections:
            log.info(
                "%s: at most %d connections at once, half of the descriptors this process "
                "may open (not %d)",
                self.name,
                self.max_connections,
                self.limits.max_connections,
            )

    async def close(self) -> None:
        """Stop accepting and drop connections still in their TLS handshake (established
        ones belong to the application, which closes them)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for sock in (*self._sockets, *self._unstarted):
            sock.close()
        self._sockets.clear()
        self._unstarted.clear()
        self.over_limit.close()
        self.accept_failed.close()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept_loop(self, listening: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, address = await loop.sock_accept(listening)
            except ConnectionAbortedError:
                continue  # the client left before it was accepted
            except OSError as exc:
                # Out of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM), or anything
                # else: the socket stays readable, so accepting again at once would spin.
                reason = errno.errorcode.get(exc.errno or 0, "error")
                self.accept_failed.note(f"{reason}: {exc.strerror}", self.connections)
                await asyncio.sleep(ACCEPT_PAUSE)
                continue
            self._admit(conn, str(address[0]) if isinstance(address, tuple) else "local")

    def _admit(self, conn: socket.socket, address: str) -> None:
        if (
            self.connections >= self.max_connections
            or self._counts[address] >= self.max_per_address
        ):
            conn.close()  # before any TLS byte is read
            self.over_limit.note(address)
            return
        self._counts[address] += 1
        self._unstarted.add(conn)
        self._spawn(self._serve(conn, _Slot(self._counts, address)))

    async def _serve(self, conn: socket.socket, slot: _Slot) -> None:
        self._unstarted.discard(conn)  # from here on the transport owns (and closes) it
        loop = asyncio.get_running_loop()

        def protocol() -> asyncio.Protocol:
            return _Counted(self._factory(), slot)

        try:
            if self._ssl is None:
                await loop.connect_accepted_socket(protocol, conn)
            else:
                await loop.connect_accepted_socket(
                    protocol,
                    conn,
                    ssl=self._ssl,
                    ssl_handshake_timeout=self.limits.handshake_timeout,
                )
        except OSError as exc:  # ssl.SSLError and the handshake time-out are OSErrors
            # a stranger without a certificate, a time-out, a reset: nothing to tell anyone
            slot.release()
            log.debug("%s: connection ended in its TLS handshake: %s", self.name, exc)
        except BaseException:
            slot.release()  # idempotent: the protocol may have given it back already
            raise
