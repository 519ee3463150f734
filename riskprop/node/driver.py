"""Run a sans-I/O protocol session over a transport with asyncio.

The driver owns everything around the session that involves time and storage: time-outs,
checkpoints (after every safe point, before that step's messages go out, see
``protocol.checkpoint``), the ledger of served decryption requests (saved before a partial
decryption goes out), the outbox journal, replays to a peer that announces a restart
(``Rejoin``), and stopping cleanly when asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from riskprop.errors import ComputeError, InputError, ProtocolError, StorageError
from riskprop.logcontext import set_fields
from riskprop.node.journal import Journal
from riskprop.node.stopping import in_thread, until_stopped
from riskprop.node.transport import PeerUnavailableError, Transport
from riskprop.protocol.checkpoint import encode_checkpoint, encode_ledger
from riskprop.protocol.messages import Abort, Message, Rejoin
from riskprop.protocol.session import Phase, RunSession

log = logging.getLogger(__name__)
T = TypeVar("T")
#: How many idle time-outs a party with its result waits for its peers' completion.
FINISHING_PATIENCE = 3
#: Seconds an abort notice may take to reach a peer.
ABORT_NOTICE = 10.0


async def drive(
    session: RunSession,
    transport: Transport,
    *,
    idle_timeout: float = 600.0,
    offload: bool = False,
    journal: Journal | None = None,
    resume_with: Sequence[Message] | None = None,
    stop: asyncio.Event | None = None,
    on_result: Callable[[], None] | None = None,
) -> None:
    """Pump messages between ``session`` and ``transport`` until the session is done.

    ``idle_timeout`` bounds the wait for any single message; a decryption helper that stays
    silent that long is replaced by another party, and after our own result a peer silent for
    ``FINISHING_PATIENCE`` times as long is no longer waited for. With ``offload`` the
    session's (CPU-heavy) work runs in a worker thread so the event loop keeps serving the
    network meanwhile. With a ``journal`` the driver checkpoints and can replay; a session
    restored from a checkpoint passes that checkpoint's pending messages as ``resume_with``.
    Setting ``stop`` makes the driver raise ``StoppedError`` within ``STOP_GRACE`` seconds
    (see ``node.stopping``). ``on_result`` runs as soon as the session has its result and
    *before* it tells anyone ``Done``: once peers may leave, the result must already be safe.
    On a protocol or storage error every peer is told (best effort, bounded in time) and the
    error propagates, so nobody waits out a time-out for a node that is gone.
    """
    driver = _Driver(session, transport, journal, offload, on_result)

    def what() -> str:
        return f"{session.name}: {session.phase.value}"

    await until_stopped(_pump(driver, idle_timeout, resume_with), stop, what)


async def _pump(
    driver: _Driver, idle_timeout: float, resume_with: Sequence[Message] | None
) -> None:
    session, transport, journal = driver.session, driver.transport, driver.journal
    try:
        if journal is None or driver.restarted:
            # Ask every peer to replay what it sent us: after a crash our inbox is gone. A
            # node whose journal is new never listened before, so it lost nothing.
            await driver.send_all(
                Message(session.descriptor.run_id, session.name, peer, Rejoin())
                for peer in session.peers
            )
        first = session.start() if resume_with is None else list(resume_with)
        await driver.checkpoint_then_send(first)
        while not session.done:
            finishing = session.phase is Phase.FINISHING
            timeout = idle_timeout * (FINISHING_PATIENCE if finishing else 1)
            message = await driver.next_message(timeout)
            if message is None:
                overdue = session.overdue_peers()
                if not overdue:
                    raise ProtocolError(
                        f"{session.name}: no message for {timeout:g} s while waiting for "
                        f"{session.waiting_for()}"
                    )
                for peer in overdue:
                    log.warning("%s: %s is silent; going on without it", session.name, peer)
                    await driver.send_all(await driver.call(session.peer_unavailable, peer))
            elif isinstance(message.body, Rejoin):
                await driver.replay(message.sender)
                if driver.restarted and not message.body.answer:  # see ``Rejoin``
                    run_id, peer = session.descriptor.run_id, message.sender
                    await driver.send_all([Message(run_id, session.name, peer, Rejoin(True))])
            else:
                await driver.checkpoint_then_send(await driver.call(session.receive, message))
    except (ProtocolError, StorageError, InputError, ComputeError) as exc:
        await _abort_peers(session, transport, exc.peer_reason)
        raise


class _Driver:
    def __init__(
        self,
        session: RunSession,
        transport: Transport,
        journal: Journal | None,
        offload: bool,
        on_result: Callable[[], None] | None,
    ) -> None:
        self.session = session
        self.transport = transport
        self.journal = journal
        self.offload = offload
        self.on_result = on_result
        self.checkpointed = 0
        self.ledger_saved = 0
        self.restarted = journal is not None and journal.restarted
        self.busy = asyncio.Lock()

    async def call(self, method: Callable[[T], list[Message]], argument: T) -> list[Message]:
        """``method(argument)`` on the session, one at a time (in a daemon thread with
        ``offload``, so the event loop keeps serving the network and a stop is prompt)."""
        async with self.busy:
            set_fields(phase=self.session.phase.value)  # on the log lines it causes
            if self.offload:
                return await in_thread(method, argument)
            return method(argument)

    async def next_message(self, timeout: float) -> Message | None:
        """The next message, or None after ``timeout``."""
        try:
            return await asyncio.wait_for(self.transport.receive(), timeout)
        except TimeoutError:
            return None

    async def checkpoint_then_send(self, messages: list[Message]) -> None:
        """Checkpoint at a new safe point (the messages included), then send them."""
        session = self.session
        if (
            self.journal is not None
            and session.safe_points != self.checkpointed
            and session.can_snapshot
        ):
            width = session.public.ciphertext_bytes
            snapshot = session.snapshot()
            if self.offload:  # off the event loop, as the session's own work
                data = await in_thread(encode_checkpoint, snapshot, messages, width)
            else:
                data = encode_checkpoint(snapshot, messages, width)
            try:
                self.journal.save_checkpoint(data)
            except OSError as exc:
                raise StorageError(f"cannot save the checkpoint ({exc.strerror})") from None
            self.checkpointed = session.safe_points
        if self.on_result is not None and session.result is not None:
            self.on_result()  # before the Done among ``messages`` lets peers leave
            self.on_result = None
        await self.send_all(messages)

    def save_ledger(self) -> None:
        """Persist the session's ledger of served requests if it changed: every send goes
        through here first, so no partial decryption leaves before it is on record."""
        session = self.session
        if self.journal is None or session.ledger_changes == self.ledger_saved:
            return
        try:
            self.journal.save_ledger(encode_ledger(session.ledger()))
        except OSError as exc:
            raise StorageError(f"cannot save the served requests ({exc.strerror})") from None
        self.ledger_saved = session.ledger_changes

    async def send_all(self, messages: Iterable[Message]) -> None:
        """Send each peer its messages in order, peers concurrently; a peer found unavailable
        is reported to the session, and what is still queued for it is dropped (a peer that
        is gone after it finished does not hold this node up once per message)."""
        pending = list(messages)
        set_fields(phase=self.session.phase.value)  # the phase these messages belong to
        while pending:
            self.save_ledger()
            by_peer: dict[str, list[Message]] = {}
            for message in pending:
                by_peer.setdefault(message.recipient, []).append(message)
            outcomes = await asyncio.gather(*(self._send_in_order(q) for q in by_peer.values()))
            pending = [m for more in outcomes for m in more]

    async def _send_in_order(self, messages: list[Message]) -> list[Message]:
        """Send ``messages`` (all to one peer); returns what the session wants sent next."""
        for message in messages:
            if message.recipient in self.session.unavailable:
                continue
            try:
                await self.transport.send(message)
            except PeerUnavailableError as exc:
                log.warning("%s: %s", self.session.name, exc)
                return await self.call(self.session.peer_unavailable, exc.peer)
            if self.journal is not None and message.seq:
                try:
                    self.journal.record(message)
                except OSError as exc:
                    raise StorageError(f"cannot write the journal ({exc.strerror})") from None
        return []

    async def replay(self, peer: str) -> None:
        """Send ``peer`` again everything it got from us (it restarted)."""
        if self.journal is None:
            return
        messages = self.journal.sent_to(peer)
        if messages:
            log.info(
                "%s: %s restarted; replaying %d message(s)", self.session.name, peer, len(messages)
            )
        for message in messages:
            try:
                await self.transport.send(message)
            except PeerUnavailableError:
                log.warning("%s: %s went away during the replay", self.session.name, peer)
                return


async def _abort_peers(session: RunSession, transport: Transport, reason: str) -> None:
    """Tell every peer the run is over, concurrently and for at most ``ABORT_NOTICE`` s."""

    async def tell(peer: str) -> None:
        message = Message(session.descriptor.run_id, session.name, peer, Abort(reason[:500]))
        with contextlib.suppress(PeerUnavailableError, OSError, ProtocolError, TimeoutError):
            await asyncio.wait_for(transport.send(message), ABORT_NOTICE)

    await asyncio.gather(*(tell(peer) for peer in session.peers))
