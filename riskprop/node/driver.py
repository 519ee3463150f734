"""Run a sans-I/O protocol session over a transport with asyncio.

The driver owns everything around the session that involves time and storage: time-outs,
checkpoints (after every safe point, before that step's messages go out, see
``protocol.checkpoint``), the outbox journal, replays to a peer that announces a restart
(``Rejoin``), and stopping cleanly when asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import NoReturn, TypeVar

from riskprop.errors import ProtocolError, RiskpropError
from riskprop.node.journal import Journal
from riskprop.node.transport import PeerUnavailableError, Transport
from riskprop.protocol.checkpoint import encode_checkpoint
from riskprop.protocol.messages import Abort, Message, Rejoin
from riskprop.protocol.session import Phase, RunSession

log = logging.getLogger(__name__)
T = TypeVar("T")
#: How many idle time-outs a party with its result waits for its peers' completion.
FINISHING_PATIENCE = 3


class StoppedError(RiskpropError):
    """The node was asked to stop (SIGTERM); its last checkpoint lets it resume."""


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
    Setting ``stop`` makes the driver raise ``StoppedError`` at the next message boundary.
    ``on_result`` runs as soon as the session has its result and *before* it tells anyone
    ``Done``: once peers may leave, the result must already be safe. On a protocol error every
    peer is told (best effort) and the error propagates.
    """
    driver = _Driver(session, transport, journal, offload, on_result)
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
            message = await driver.next_message(timeout, stop)
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
    except ProtocolError as exc:
        await _abort_peers(session, transport, str(exc))
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
        self.restarted = journal is not None and journal.restarted

    async def call(self, method: Callable[[T], list[Message]], argument: T) -> list[Message]:
        if self.offload:
            return await asyncio.to_thread(method, argument)
        return method(argument)

    async def next_message(self, timeout: float, stop: asyncio.Event | None) -> Message | None:
        """The next message, or None after ``timeout``; raises ``StoppedError`` when asked to."""
        if stop is not None and stop.is_set():
            self.stopped()
        receive = asyncio.ensure_future(self.transport.receive())
        waiters: set[asyncio.Future[object]] = {receive}  # type: ignore[arg-type]
        stopper = asyncio.ensure_future(stop.wait()) if stop is not None else None
        if stopper is not None:
            waiters.add(stopper)  # type: ignore[arg-type]
        done, _ = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if stopper is not None:
            stopper.cancel()
        if receive in done:
            return receive.result()
        receive.cancel()
        if stopper is not None and stopper in done:
            self.stopped()
        return None

    def stopped(self) -> NoReturn:
        raise StoppedError(
            f"{self.session.name}: stopped on request during {self.session.phase.value}; "
            "the same command resumes the run"
        )

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
            data = await asyncio.to_thread(encode_checkpoint, snapshot, messages, width)
            self.journal.save_checkpoint(data)
            self.checkpointed = session.safe_points
        if self.on_result is not None and session.result is not None:
            self.on_result()  # before the Done among ``messages`` lets peers leave
            self.on_result = None
        await self.send_all(messages)

    async def send_all(self, messages: Iterable[Message]) -> None:
        pending = list(messages)
        while pending:
            message = pending.pop(0)
            try:
                await self.transport.send(message)
            except PeerUnavailableError as exc:
                log.warning("%s: %s", self.session.name, exc)
                pending.extend(await self.call(self.session.peer_unavailable, exc.peer))
                continue
            if self.journal is not None and message.seq:
                self.journal.record(message)

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
    for peer in session.peers:
        message = Message(session.descriptor.run_id, session.name, peer, Abort(reason[:500]))
        with contextlib.suppress(PeerUnavailableError, OSError, ProtocolError):
            await transport.send(message)
