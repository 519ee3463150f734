"""Reachability of the peers: ``GET /riskprop/v1/ping`` over mutual TLS.

A peer is reachable when the TLS handshake succeeds with this node's client context for it
(which accepts only that peer's certificate) and it answers 200 with its own name. Used by
``/readyz``, the status page and ``riskprop check``.
"""

from __future__ import annotations

import asyncio
import ssl

import aiohttp

from riskprop.config import PlayerConfig
from riskprop.errors import RiskpropError
from riskprop.node.http import PING_PATH, SENDER_HEADER
from riskprop.node.runner import http_settings


async def ping_peers(config: PlayerConfig, timeout: float = 5.0) -> dict[str, str | None]:
    """Peer name -> None when it answered as itself, else why not (one line)."""
    try:
        settings = http_settings(config)
    except (RiskpropError, OSError, ssl.SSLError) as exc:
        return {
            p: f"no client TLS context ({exc})" for p in config.network.names if p != config.player
        }
    limit = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(timeout=limit) as client:

        async def one(peer: str, url: str) -> str | None:
            context: ssl.SSLContext | bool = settings.client_ssl.get(peer, False)
            try:
                get = client.get(
                    url.rstrip("/") + PING_PATH, ssl=context, headers={SENDER_HEADER: config.player}
                )
                async with get as response:
                    if response.status != 200:
                        return f"HTTP {response.status}"
                    answer = await response.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError, ssl.SSLError, OSError, ValueError) as exc:
                return f"{type(exc).__name__}: {exc}".rstrip(": ")
            name = answer.get("name") if isinstance(answer, dict) else None
            if name != peer:
                return f"answered as {name!r}, not {peer!r}"
            return None

        peers = [(p, u) for p, u in settings.peers.items()]
        results = await asyncio.gather(*(one(p, u) for p, u in peers))
    return dict(zip([p for p, _ in peers], results, strict=True))
