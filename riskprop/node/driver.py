"""Run a sans-I/O protocol session over a transport with asyncio."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import TypeVar

from riskprop.errors import ProtocolError
from riskprop.node.transport import PeerUnavailableError, Transport
from riskprop.protocol.messages import Abort, Message
from riskprop.protocol.session import Phase, RunSession

log = logging.getLogger(__name__)
T = TypeVar("T")
#: How many idle time-outs a party with its result waits for its peers' completion.
FINISHING_PATIENCE = 3


async def drive(
    session: RunSession,
    transport: Transport,
    *,
    idle_timeout: float = 600.0,
    offload: bool = False,
) -> None:
    """Pump messages between ``session`` and ``transport`` until the session is done.

    ``idle_timeout`` bounds the wait for any single message; a decryption helper that stays
    silent that long is replaced by another party, and after our own result a peer silent for
    ``FINISHING_PATIENCE`` times as long is no longer waited for. With ``offload`` the
    session's (CPU-heavy) work runs in a worker thread so the event loop keeps serving the
    network meanwhile. On a protocol error every peer is told (best effort) and the error
    propagates.
    """
    try:
        await _send_all(session, transport, session.start(), offload)
        while not session.done:
            # Once we have our result we wait longer, so that a peer re-routing its
            # decryption around a silent helper can still reach us.
            finishing = session.phase is Phase.FINISHING
            timeout = idle_timeout * (FINISHING_PATIENCE if finishing else 1)
            try:
                message = await asyncio.wait_for(transport.receive(), timeout)
            except TimeoutError:
                overdue = session.overdue_peers()
                if not overdue:
                    raise ProtocolError(
                        f"{session.name}: no message for {timeout:g} s while waiting for "
                        f"{session.waiting_for()}"
                    ) from None
                for peer in overdue:
                    log.warning("%s: %s is silent; going on without it", session.name, peer)
                    await _send_all(session, transport, session.peer_unavailable(peer), offload)
                continue
            await _send_all(
                session, transport, await _call(session.receive, message, offload), offload
            )
    except ProtocolError as exc:
        await _abort_peers(session, transport, str(exc))
        raise


async def _call(method: Callable[[T], list[Message]], argument: T, offload: bool) -> list[Message]:
    if offload:
        return await asyncio.to_thread(method, argument)
    return method(argument)


async def _send_all(
    session: RunSession, transport: Transport, messages: Iterable[Message], offload: bool = False
) -> None:
    pending = list(messages)
    while pending:
        message = pending.pop(0)
        try:
            await transport.send(message)
        except PeerUnavailableError as exc:
            log.warning("%s: %s", session.name, exc)
            pending.extend(await _call(session.peer_unavailable, exc.peer, offload))


async def _abort_peers(session: RunSession, transport: Transport, reason: str) -> None:
    for peer in session.peers:
        message = Message(session.descriptor.run_id, session.name, peer, Abort(reason[:500]))
        with contextlib.suppress(PeerUnavailableError, OSError):
            await transport.send(message)
