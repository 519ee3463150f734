"""Reachability of the peers: ``GET /riskprop/v1/ping`` over mutual TLS.

A peer is reachable when the TLS handshake succeeds with this node's client context for it
(which accepts only that peer's certificate) and it answers 200 with its own name. A peer that
cannot be reached is a warning (it may be down for a while); one that answers as someone
else, presents a refused certificate or refuses this node is an error (a misconfiguration).
Used by ``/readyz``, the status page and ``riskprop check``.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import Literal

import aiohttp

from riskprop.config import PlayerConfig
from riskprop.errors import RiskpropError
from riskprop.node.http import PING_PATH, SENDER_HEADER, HttpSettings, reason
from riskprop.node.runner import http_settings
from riskprop.protocol.messages import PROTOCOL_VERSION

Level = Literal["ok", "warning", "error"]


@dataclass(frozen=True)
class Finding:
    level: Level
    message: str

    def __str__(self) -> str:
        return f"{self.level}: {self.message}"


async def reachability(config: PlayerConfig, timeout: float = 5.0) -> dict[str, str | None]:
    """Peer name -> None when it answered as itself, else why not (one line)."""
    try:
        settings = http_settings(config)
    except (RiskpropError, OSError, ssl.SSLError) as exc:
        peers = [p for p in config.network.names if p != config.player]
        return dict.fromkeys(peers, f"no client TLS context ({exc})")
    found = await ping_peers(settings, timeout)
    return {p: None if f.level == "ok" else f.message for p, f in found.items()}


async def ping_peers(settings: HttpSettings, timeout: float) -> dict[str, Finding]:
    """Peer name -> how its ping went: ``ok`` when it answered as itself over the client
    TLS context for it, ``warning`` when it could not be reached, ``error`` when it answered
    as someone else, its certificate was refused, or it refused this node."""
    limit = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(timeout=limit) as client:
        names = list(settings.peers)
        found = await asyncio.gather(*(_ping(client, settings, peer) for peer in names))
    return dict(zip(names, found, strict=True))


async def _ping(client: aiohttp.ClientSession, settings: HttpSettings, peer: str) -> Finding:
    url = settings.peers[peer].rstrip("/") + PING_PATH
    context: ssl.SSLContext | bool = settings.client_ssl.get(peer, False)
    headers = {SENDER_HEADER: settings.name}  # read in --insecure mode only
    try:
        async with client.get(url, ssl=context, headers=headers) as response:
            if response.status == 403:
                return Finding("error", "refuses this node (403): is it listed in its network?")
            if response.status != 200:
                return Finding("warning", f"answered HTTP {response.status} to the ping")
            answer = await response.json(content_type=None)
    except aiohttp.ClientConnectorCertificateError as exc:
        return Finding("error", f"its certificate is refused: {_refusal(exc.certificate_error)}")
    except (aiohttp.ClientSSLError, ssl.SSLError) as exc:
        return Finding("error", f"the TLS handshake failed: {reason(exc)}")
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return Finding("warning", f"not reachable ({reason(exc)})")
    except ValueError:
        return Finding("error", "answered the ping with something other than JSON")
    name = answer.get("name") if isinstance(answer, dict) else None
    if name != peer:
        return Finding("error", f"answered as {name!r}, not {peer!r}")
    version = answer.get("protocol")
    if version is None:
        return Finding("error", "does not say its protocol version: it runs an older riskprop")
    if version != PROTOCOL_VERSION:
        return Finding(
            "error",
            f"speaks protocol version {version}, this node {PROTOCOL_VERSION}: every bank must "
            "run a version of the same protocol (see the operator guide on upgrades)",
        )
    run = answer.get("run")
    return Finding("ok", "reachable" + (f" (in run {run})" if run else ""))


def _refusal(error: BaseException) -> str:
    """Why a certificate was refused: OpenSSL's verify message, or the party check's."""
    message = getattr(error, "verify_message", None)
    if message:
        return str(message)
    args: tuple[object, ...] = error.args
    while len(args) == 1 and isinstance(args[0], tuple):  # wrapped on its way out of asyncio
        args = args[0]
    return str(args[0]) if args else type(error).__name__
