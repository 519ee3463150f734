"""Run a sans-I/O protocol session over a transport with asyncio."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from riskprop.errors import ProtocolError
from riskprop.node.transport import PeerUnavailableError, Transport
from riskprop.protocol.messages import Abort, Message
from riskprop.protocol.session import RunSession

log = logging.getLogger(__name__)


async def drive(session: RunSession, transport: Transport, *, idle_timeout: float = 600.0) -> None:
    """Pump messages between ``session`` and ``transport`` until the session is done.

    ``idle_timeout`` bounds the wait for any single message; a decryption helper that stays
    silent that long is replaced by another party. On a protocol error every peer is told (best
    effort) and the error propagates.
    """
    try:
        await _send_all(session, transport, session.start())
        while not session.done:
            try:
                message = await asyncio.wait_for(transport.receive(), idle_timeout)
            except TimeoutError:
                overdue = session.overdue_helpers()
                if overdue:  # a silent decryption helper: ask another party instead
                    for peer in overdue:
                        log.warning(
                            "%s: %s did not answer; asking another party", session.name, peer
                        )
                        await _send_all(session, transport, session.peer_unavailable(peer))
                    continue
                raise ProtocolError(
                    f"{session.name}: no message for {idle_timeout:g} s while waiting for "
                    f"{session.waiting_for()}"
                ) from None
            await _send_all(session, transport, session.receive(message))
    except ProtocolError as exc:
        await _abort_peers(session, transport, str(exc))
        raise


async def _send_all(session: RunSession, transport: Transport, messages: Iterable[Message]) -> None:
    pending = list(messages)
    while pending:
        message = pending.pop(0)
        try:
            await transport.send(message)
        except PeerUnavailableError as exc:
            log.warning("%s: %s", session.name, exc)
            pending.extend(session.peer_unavailable(exc.peer))


async def _abort_peers(session: RunSession, transport: Transport, reason: str) -> None:
    for peer in session.peers:
        message = Message(session.descriptor.run_id, session.name, peer, Abort(reason[:500]))
        with contextlib.suppress(PeerUnavailableError, OSError):
            await transport.send(message)
