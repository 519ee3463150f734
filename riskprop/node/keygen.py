"""Running the dealerless key generation over a transport (HTTPS with mutual TLS, or in memory).

``drive_keygen`` moves one party's rounds (``protocol.keygen``): it sends the round's payloads,
waits for every peer's payload of the same round (keeping early ones), and computes the next
round in a worker thread so the server keeps answering while it works. A peer silent for
``round_timeout`` seconds, unreachable, or aborting ends the key generation everywhere with a
one-line error: there is no partial key to resume, so the operators start it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from riskprop.config import PlayerConfig
from riskprop.core.threshold import KeyShare
from riskprop.errors import ConfigError, ProtocolError
from riskprop.files.keys import PUBLIC_FILE, write_public, write_share
from riskprop.node.http import HttpTransport
from riskprop.node.runner import http_settings
from riskprop.node.transport import PeerUnavailableError, Transport
from riskprop.protocol.keygen import KeygenParams, KeygenParty, Outbound, Rounds
from riskprop.protocol.messages import Abort, KeygenRound, Message

log = logging.getLogger(__name__)

#: How long an abort notice may take to reach a peer before we stop trying.
ABORT_NOTICE_SECONDS = 5.0


class PeerAbortedError(ProtocolError):
    """A peer stopped the key generation (it told us why; no need to tell it back)."""


async def drive_keygen(
    party: KeygenParty,
    transport: Transport,
    *,
    round_timeout: float,
    first_round_timeout: float | None = None,
) -> KeyShare:
    """Run ``party``'s rounds over ``transport`` until it returns its key share."""
    session = party.params.session
    generator: Rounds = party.rounds()
    early: dict[int, dict[str, bytes]] = defaultdict(dict)
    round_no = 0
    try:
        step = await asyncio.to_thread(_advance, generator, None)
        while isinstance(step, dict):
            round_no += 1
            await _send_round(party, transport, session, round_no, step)
            limit = first_round_timeout if round_no == 1 and first_round_timeout else round_timeout
            inbound = await _collect_round(party, transport, session, round_no, early, limit)
            step = await asyncio.to_thread(_advance, generator, inbound)
        return step
    except PeerUnavailableError as exc:
        reason = f"key generation: {exc.peer} is unreachable (round {round_no}); aborting"
        await _notify_abort(party, transport, session, reason)
        raise ProtocolError(reason) from None
    except PeerAbortedError:
        raise
    except ProtocolError as exc:
        await _notify_abort(party, transport, session, str(exc))
        raise
    finally:
        generator.close()


def _advance(generator: Rounds, inbound: dict[str, bytes] | None) -> Outbound | KeyShare:
    """The next round's payloads, or the share once the rounds are over (StopIteration cannot
    cross a thread's future)."""
    try:
        return next(generator) if inbound is None else generator.send(inbound)
    except StopIteration as stop:
        share: KeyShare = stop.value
        return share


async def _send_round(
    party: KeygenParty, transport: Transport, session: str, round_no: int, outbound: Outbound
) -> None:
    await asyncio.gather(
        *(
            transport.send(
                Message(
                    run_id=session,
                    sender=party.name,
                    recipient=peer,
                    body=KeygenRound(payload),
                    iteration=round_no,
                    seq=round_no,
                )
            )
            for peer, payload in outbound.items()
        )
    )


async def _collect_round(
    party: KeygenParty,
    transport: Transport,
    session: str,
    round_no: int,
    early: dict[int, dict[str, bytes]],
    timeout: float,
) -> dict[str, bytes]:
    inbound = early.pop(round_no, {})
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(inbound) < len(party.peers):
        remaining = deadline - loop.time()
        message = None
        if remaining > 0:
            with contextlib.suppress(TimeoutError):
                message = await asyncio.wait_for(transport.receive(), remaining)
        if message is None:
            missing = ", ".join(p for p in party.peers if p not in inbound)
            raise ProtocolError(
                f"key generation: no round {round_no} message from {missing} within "
                f"{timeout:g} s; aborting"
            )
        body = message.body
        if isinstance(body, Abort):
            raise PeerAbortedError(f"key generation aborted by {message.sender}: {body.reason}")
        if not isinstance(body, KeygenRound) or message.run_id != session:
            log.warning(
                "%s: ignored a %s message from %s", party.name, message.kind, message.sender
            )
            continue
        if message.sender not in party.peers:
            continue
        if message.iteration == round_no:
            inbound[message.sender] = body.payload
        elif message.iteration > round_no:
            early[message.iteration][message.sender] = body.payload
    return inbound


async def _notify_abort(
    party: KeygenParty, transport: Transport, session: str, reason: str
) -> None:
    """Tell every peer we stopped (best effort, bounded in time)."""

    async def tell(peer: str) -> None:
        message = Message(
            run_id=session, sender=party.name, recipient=peer, body=Abort(reason[:300])
        )
        with contextlib.suppress(Exception):
            await asyncio.wait_for(transport.send(message), ABORT_NOTICE_SECONDS)

    await asyncio.gather(*(tell(peer) for peer in party.peers))


def keygen_params(
    config: PlayerConfig, *, bits: int, threshold: int, sigma: int, session: str | None
) -> KeygenParams:
    """Parameters from a node's configuration; the session name defaults to one derived from
    the party set, threshold and key size (every node derives the same)."""
    parties = config.network.names
    name = session or f"keygen-{'-'.join(parties)}-t{threshold}-{bits}"
    return KeygenParams(parties, threshold, bits=bits, sigma=sigma, session=name)


async def keygen_node(config: PlayerConfig, params: KeygenParams, *, force: bool = False) -> Path:
    """Generate this node's key share with its peers and write it (0600) and ``public.json``
    beside it. Refuses to overwrite an existing share unless ``force``."""
    target = config.key_share
    if target.exists() and not force:
        raise ConfigError(
            f"{target}: a key share exists already; move it away or pass --force to replace it"
        )
    party = KeygenParty(params, config.player)
    settings = replace(http_settings(config), run_id=params.session)
    started = time.perf_counter()
    async with HttpTransport(settings) as transport:
        share = await drive_keygen(
            party,
            transport,
            round_timeout=config.timeouts.request,
            first_round_timeout=config.timeouts.connect + config.timeouts.request,
        )
    write_share(target, share)
    write_public(target.parent / PUBLIC_FILE, share.key)
    log.info(
        "%s: %d-bit key generated in %.1f s (%s); share written to %s (fingerprint %s)",
        config.player,
        share.key.public.bits,
        time.perf_counter() - started,
        party.stats.summary(),
        target,
        share.key.public.fingerprint()[:16],
    )
    return target
