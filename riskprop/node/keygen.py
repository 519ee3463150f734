"""Running the dealerless key generation over a transport (HTTPS with mutual TLS, or in memory).

``drive_keygen`` moves one party's rounds (``protocol.keygen``): it sends the round's payloads,
waits for every peer's payload of the same round (keeping early ones), and computes the next
round in a worker thread so the server keeps answering while it works. A peer silent for
``round_timeout`` seconds, unreachable, or aborting ends the key generation everywhere with a
one-line error: there is no partial key to resume, so the operators start it again.

The rounds end with a confirmation, so that no bank keeps a share its peers do not have:

1. After the last protocol round every party *stages* its share and the public key: both go to
   temporary files beside their targets, 0600 and fsynced (``files.keys.StagedKey``).
2. It sends every peer ``KeygenRound(b"written " + fingerprint)`` as round ``R + 1``, and
   waits (``round_timeout``) for every peer's; a peer confirming another fingerprint holds
   another key, which is an error naming it.
3. Only with every confirmation in hand does it rename its files into place and report success.

Anything else -- a time-out, an abort, an unreachable peer, an error writing, a stop request
-- removes the temporary files and sends every peer ``Abort``, so they remove theirs: the share
file of a bank exists only if every bank confirmed. (Atomic commitment has one window no
protocol closes: if a bank stops while the last confirmation to it is in flight, the banks
that already had all of them keep the key. A rerun then needs ``--force`` at those banks.)

A stop request (SIGTERM or SIGINT: ``keygen_node_sync``) is honoured at once in every phase --
connecting, waiting for a round, computing: the computation's thread is abandoned (a daemon
thread, so the process need not wait for it), the waits are cancelled, the peers are told within
``STOP_NOTICE_SECONDS``, and the node exits with ``KeygenStoppedError``: the key was not made.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import logging
import signal
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from riskprop.config import PlayerConfig
from riskprop.core.threshold import KeyShare
from riskprop.errors import ConfigError, ProtocolError, RiskpropError
from riskprop.files.keys import StagedKey
from riskprop.node.http import HttpTransport
from riskprop.node.runner import http_settings
from riskprop.node.stopping import in_thread
from riskprop.node.transport import PeerUnavailableError, Transport
from riskprop.protocol.keygen import (
    DEFAULT_BIPRIMALITY_TESTS,
    KeygenParams,
    KeygenParty,
    Outbound,
    Rounds,
)
from riskprop.protocol.messages import Abort, KeygenRound, Message

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How long an abort notice may take to reach a peer before we stop trying.
ABORT_NOTICE_SECONDS = 5.0
#: The same when stopping on request (the whole stop must take at most about two seconds).
STOP_NOTICE_SECONDS = 1.0
#: A confirmation's payload: this prefix, then the public key's fingerprint (hexadecimal).
WRITTEN = b"written "

#: Called with the share after the last round, before this party confirms; once it returns,
#: the share must be on disk (``StagedKey.write``).
Stage = Callable[[KeyShare], Awaitable[None]]


class PeerAbortedError(ProtocolError):
    """A peer stopped the key generation (it told us why; no need to tell it back)."""


class KeygenStoppedError(ProtocolError):
    """This node was asked to stop: the key generation is abandoned, no share was written."""


async def drive_keygen(
    party: KeygenParty,
    transport: Transport,
    *,
    round_timeout: float,
    first_round_timeout: float | None = None,
    stage: Stage | None = None,
) -> KeyShare:
    """Run ``party``'s rounds and the confirmation over ``transport``; return its key share
    once every peer has confirmed the same public key. ``stage`` runs before this party
    confirms (see the module doc)."""
    generator: Rounds = party.rounds()
    early: dict[int, dict[str, bytes]] = defaultdict(dict)
    round_no = 0
    phase = "before round 1"
    try:
        step = await _compute(generator, None)
        while isinstance(step, dict):
            round_no += 1
            phase = f"round {round_no}"
            limit = first_round_timeout if round_no == 1 and first_round_timeout else round_timeout
            inbound = await _exchange(
                party, transport, round_no, step, early, limit, f"round {round_no} message"
            )
            step = await _compute(generator, inbound)
        if stage is not None:
            await stage(step)
        round_no += 1
        phase = "confirmation"
        await _confirm(party, transport, round_no, step, early, round_timeout)
        return step
    except PeerUnavailableError as exc:
        reason = f"key generation: {exc.peer} is unreachable ({phase}); aborting"
        await _notify_abort(party, transport, reason)
        raise ProtocolError(reason) from None
    except PeerAbortedError:
        raise
    except RiskpropError as exc:
        await _notify_abort(party, transport, str(exc))
        raise
    except Exception as exc:
        await _notify_abort(party, transport, f"{party.name} failed ({type(exc).__name__})")
        raise
    finally:
        # A step still running in its thread is abandoned, not closed under its feet.
        if inspect.getgeneratorstate(generator) != inspect.GEN_RUNNING:
            with contextlib.suppress(ValueError):
                generator.close()


async def _compute(generator: Rounds, inbound: dict[str, bytes] | None) -> Outbound | KeyShare:
    """The next step in a daemon thread (a stop abandons it; see ``node.stopping``)."""
    return await in_thread(_advance, generator, inbound)


def _advance(generator: Rounds, inbound: dict[str, bytes] | None) -> Outbound | KeyShare:
    """The next round's payloads, or the share once the rounds are over (StopIteration cannot
    cross a thread's future)."""
    try:
        return next(generator) if inbound is None else generator.send(inbound)
    except StopIteration as stop:
        share: KeyShare = stop.value
        return share


async def _exchange(
    party: KeygenParty,
    transport: Transport,
    round_no: int,
    outbound: Outbound,
    early: dict[int, dict[str, bytes]],
    timeout: float,
    what: str,
) -> dict[str, bytes]:
    """Send round ``round_no``'s payloads and collect the peers' at the same time (an abort
    must be heard while a send to a silent peer is still being retried); the first failure
    of either ends the round."""
    session = party.params.session
    sending = asyncio.ensure_future(
        _send_round(party, transport, session, round_no, outbound, timeout)
    )
    collecting = asyncio.ensure_future(
        _collect_round(party, transport, session, round_no, early, timeout, what)
    )
    try:
        await asyncio.wait({sending, collecting}, return_when=asyncio.FIRST_EXCEPTION)
        for task in (collecting, sending):  # a peer's abort explains more than our failure
            if task.done() and task.exception() is not None:
                await task
        await sending
        return await collecting
    finally:
        sending.cancel()
        collecting.cancel()


async def _send_round(
    party: KeygenParty,
    transport: Transport,
    session: str,
    round_no: int,
    outbound: Outbound,
    timeout: float,
) -> None:
    """Send each peer its payload; a peer that has not taken it within ``timeout`` seconds is
    unavailable."""

    async def send(peer: str, payload: bytes) -> None:
        message = Message(
            run_id=session,
            sender=party.name,
            recipient=peer,
            body=KeygenRound(payload),
            iteration=round_no,
            seq=round_no,
        )
        try:
            await asyncio.wait_for(transport.send(message), timeout)
        except TimeoutError:
            raise PeerUnavailableError(peer, f"no answer within {timeout:g} s") from None

    await asyncio.gather(*(send(peer, payload) for peer, payload in outbound.items()))


async def _collect_round(
    party: KeygenParty,
    transport: Transport,
    session: str,
    round_no: int,
    early: dict[int, dict[str, bytes]],
    timeout: float,
    what: str,
) -> dict[str, bytes]:
    """Every peer's payload of round ``round_no``, keeping later rounds' in ``early``."""
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
                f"key generation: no {what} from {missing} within {timeout:g} s; aborting"
            )
        body = message.body
        if message.run_id != session or message.sender not in party.peers:
            log.warning(
                "%s: ignored a %s message from %s", party.name, message.kind, message.sender
            )
            continue
        if isinstance(body, Abort):
            raise PeerAbortedError(f"key generation aborted by {message.sender}: {body.reason}")
        if not isinstance(body, KeygenRound):
            log.warning(
                "%s: ignored a %s message from %s", party.name, message.kind, message.sender
            )
            continue
        if message.iteration == round_no:
            inbound[message.sender] = body.payload
        elif message.iteration > round_no:
            early[message.iteration][message.sender] = body.payload
    return inbound


async def _confirm(
    party: KeygenParty,
    transport: Transport,
    round_no: int,
    share: KeyShare,
    early: dict[int, dict[str, bytes]],
    timeout: float,
) -> None:
    """Tell every peer this party has written its share of the key with our fingerprint, and
    wait until every peer has said the same."""
    fingerprint = share.key.fingerprint()
    ours = WRITTEN + fingerprint.encode()
    outbound = dict.fromkeys(party.peers, ours)
    confirmations = await _exchange(
        party, transport, round_no, outbound, early, timeout, "confirmation"
    )
    for peer in party.peers:
        theirs = confirmations[peer]
        if theirs == ours:
            continue
        if not theirs.startswith(WRITTEN):
            raise ProtocolError(f"key generation: {peer} sent a malformed confirmation; aborting")
        other = theirs.removeprefix(WRITTEN).decode("ascii", errors="replace")[:16]
        raise ProtocolError(
            f"key generation: {peer} confirmed another public key (fingerprint {other}..., "
            f"ours {fingerprint[:16]}...); aborting"
        )


async def _notify_abort(
    party: KeygenParty, transport: Transport, reason: str, limit: float = ABORT_NOTICE_SECONDS
) -> None:
    """Tell every peer we stopped (best effort, at most ``limit`` seconds)."""
    session = party.params.session

    async def tell(peer: str) -> None:
        message = Message(
            run_id=session, sender=party.name, recipient=peer, body=Abort(reason[:300])
        )
        with contextlib.suppress(Exception):
            await asyncio.wait_for(transport.send(message), limit)

    await asyncio.gather(*(tell(peer) for peer in party.peers))


def keygen_params(
    config: PlayerConfig,
    *,
    bits: int,
    threshold: int,
    sigma: int,
    session: str | None,
    biprimality_tests: int = DEFAULT_BIPRIMALITY_TESTS,
) -> KeygenParams:
    """Parameters from a node's configuration; the session name defaults to one derived from
    the party set, threshold and key size (every node derives the same)."""
    parties = config.network.names
    name = session or f"keygen-{'-'.join(parties)}-t{threshold}-{bits}"
    return KeygenParams(
        parties,
        threshold,
        bits=bits,
        sigma=sigma,
        biprimality_tests=biprimality_tests,
        session=name,
    )


async def generate_key(
    party: KeygenParty,
    transport: Transport,
    target: Path,
    *,
    round_timeout: float,
    first_round_timeout: float | None = None,
    stop: asyncio.Event | None = None,
    before_confirm: Stage | None = None,
) -> KeyShare:
    """Generate ``party``'s share with its peers and write it to ``target`` and the public key
    to ``public.json`` beside it, both only once every peer confirmed (see the module doc).

    Setting ``stop`` abandons the generation at once (``KeygenStoppedError``).
    ``before_confirm`` runs after this party staged its files and before it confirms (tests
    use it to fail or die at that point)."""
    staged = StagedKey.beside(target, party.name)

    async def stage(share: KeyShare) -> None:
        staged.write(share)
        if before_confirm is not None:
            await before_confirm(share)

    work = asyncio.ensure_future(
        drive_keygen(
            party,
            transport,
            round_timeout=round_timeout,
            first_round_timeout=first_round_timeout,
            stage=stage,
        )
    )
    try:
        share = await _unless_stopped(work, stop, party, transport)
        staged.commit()
    except BaseException:
        staged.discard()
        raise
    finally:
        work.cancel()
    return share


async def _unless_stopped(
    work: asyncio.Future[KeyShare],
    stop: asyncio.Event | None,
    party: KeygenParty,
    transport: Transport,
) -> KeyShare:
    """``work``'s share, unless ``stop`` is set first: then cancel it, tell the peers and raise
    ``KeygenStoppedError``. (A share confirmed by every peer wins over a stop at the same
    moment: the key is made everywhere, so it is kept here too.)"""
    if stop is None:
        return await work
    stopped = asyncio.ensure_future(stop.wait())
    either: set[asyncio.Future[Any]] = {work, stopped}
    try:
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if work.done():
        return work.result()
    work.cancel()
    await asyncio.wait({work}, timeout=STOP_NOTICE_SECONDS)
    reason = f"{party.name} stopped on request"
    await _notify_abort(party, transport, reason, STOP_NOTICE_SECONDS)
    raise KeygenStoppedError(
        f"{party.name}: key generation stopped on request; no key share was written "
        "(start it again at every bank)"
    )


async def keygen_node(
    config: PlayerConfig,
    params: KeygenParams,
    *,
    force: bool = False,
    stop: asyncio.Event | None = None,
    before_confirm: Stage | None = None,
) -> Path:
    """Generate this node's key share with its peers over HTTPS and write it (0600) and
    ``public.json`` beside it (``generate_key``). Refuses to overwrite an existing share unless
    ``force``; removes temporary files an interrupted generation left."""
    target = config.key_share
    staged = StagedKey.beside(target, config.player)
    for path in staged.remove_leftovers():
        log.warning("%s: removed %s, left by an interrupted key generation", config.player, path)
    if target.exists() and not force:
        raise ConfigError(
            f"{target}: a key share exists already; move it away or pass --force to replace it"
        )
    staged.check_writable()
    party = KeygenParty(params, config.player)
    settings = replace(http_settings(config), run_id=params.session)
    started = time.perf_counter()
    async with HttpTransport(settings) as transport:
        log.info(
            "%s: key generation %s (%d bits, t = %d), listening on %s:%d; waiting for %s",
            config.player,
            params.session,
            params.bits,
            params.threshold,
            config.listen_host,
            config.listen_port,
            ", ".join(party.peers),
        )
        share = await generate_key(
            party,
            transport,
            target,
            round_timeout=config.timeouts.request,
            first_round_timeout=config.timeouts.connect + config.timeouts.request,
            stop=stop,
            before_confirm=before_confirm,
        )
    log.info(
        "%s: %d-bit key generated in %.1f s (%s); every bank confirmed; share written to %s "
        "(fingerprint %s)",
        config.player,
        share.key.public.bits,
        time.perf_counter() - started,
        party.stats.summary(),
        target,
        share.key.public.fingerprint()[:16],
    )
    return target


def keygen_node_sync(
    config: PlayerConfig,
    params: KeygenParams,
    *,
    force: bool = False,
    before_confirm: Stage | None = None,
) -> Path:
    """``keygen_node`` in its own event loop; SIGTERM and SIGINT stop it at once (one line
    acknowledges the request; the node then fails with ``KeygenStoppedError``)."""

    async def main() -> Path:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def request_stop(signum: signal.Signals) -> None:
            if not stop.is_set():
                log.warning(
                    "%s: stopping on request (%s); the key generation is abandoned and no key "
                    "share will be written",
                    config.player,
                    signum.name,
                )
            stop.set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, request_stop, signum)
        return await keygen_node(
            config, params, force=force, stop=stop, before_confirm=before_confirm
        )

    try:
        return asyncio.run(main())
    except KeygenStoppedError:
        # The abandoned step's thread still holds the generation's state (for a 2048-bit key,
        # enough containers that the collector's last pass at exit takes most of a second):
        # the process is about to end, so leave what exists now to the exit.
        gc.freeze()
        raise
