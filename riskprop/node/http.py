"""The HTTPS transport: an aiohttp server for inbound messages, a client for outbound ones.

Inbound (``POST /riskprop/v1/messages``, body = one encoded message):

0. Connections are bounded before anything is read (``riskprop.node.limits``): in all and per
   remote address, a TLS handshake time-out, an idle time-out, and no spinning or flooding
   the log when the process runs out of descriptors.
``GET /riskprop/v1/ping`` answers a peer of the network with this node's name (reachability
checks of ``riskprop check`` and ``/readyz``). A service node between runs keeps listening with
run id "" and answers messages 503, so a peer that starts a run first retries until it opens,
or 410 for a run it has completed, so a peer still finishing that run stops waiting for it.

1. Mutual TLS: the TLS layer already refused clients without a certificate signed by the CA.
   The peer's identity is its certificate's common name; anything but a peer of the network
   (or a certificate that differs from a pinned one) gets 403 *before the body is read*.
2. The body limit is that of the run's largest message (``limits.body_limit``: the largest
   header, and ``max_values`` values of the Codec's width), capped by ``max_body_bytes``.
   A declared body over it gets 413 before reading; a chunked one that grows past it, 413
   when it does. At most ``max_concurrent_bodies`` bodies (``..._per_peer`` from one peer)
   are read and decoded at once; other requests wait their turn. A body that has not
   arrived ``request_timeout`` seconds after its turn came gets 408. Either closes the
   connection.
3. The body must decode (400), come from the certificate's owner (403), be addressed to this
   node (400) and belong to this run (409); the run's ``Codec`` refuses malformed bodies and
   values outside (0, N^2) (400).
4. Each message is delivered once, by its identity (sender, kind, period, iteration), which
   occurs once per run; a retried or replayed duplicate gets 200 and is dropped. Out-of-order
   arrivals are fine: the session keeps early messages until needed.

Outbound: messages to one peer go in order; a failed attempt (peer not up yet, connection
reset, time-out, 5xx) is retried with exponential backoff until ``connect_timeout`` has passed,
after which ``PeerUnavailableError`` names the peer; so does a 410 (the peer completed the run).
Any other 4xx answer is final (ProtocolError).
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from riskprop.errors import ProtocolError
from riskprop.logcontext import bind, set_fields
from riskprop.node.limits import InboundLimits, Listener, body_limit
from riskprop.node.tls import certificate_fingerprint, peer_name
from riskprop.node.transport import PeerUnavailableError
from riskprop.protocol.messages import PROTOCOL_VERSION, Abort, Codec, Message, Rejoin, Scores

log = logging.getLogger(__name__)

PATH = "/riskprop/v1/messages"
#: ``GET``: 200 with this node's name to a peer of the network (reachability checks).
PING_PATH = "/riskprop/v1/ping"
SENDER_HEADER = "X-Riskprop-Sender"  # identity in --insecure mode only


def reason(exc: BaseException) -> str:
    """Why a connection failed, shortly: the system's words, not the client library's repr."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    cause = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else exc
    if isinstance(cause, OSError) and cause.errno:
        return os.strerror(cause.errno).lower()
    text = str(cause).strip() or type(cause).__name__
    return text.splitlines()[0]


class _BodyTooLargeError(Exception):
    """A body without a declared length grew past the limit."""


@dataclass(frozen=True)
class HttpSettings:
    """Everything the transport needs, independent of how it was configured."""

    name: str
    #: the run whose messages are taken ("": none, a service between runs answers 503)
    run_id: str
    peers: Mapping[str, str]  # peer name -> base URL
    host: str
    port: int
    server_ssl: ssl.SSLContext | None
    #: peer name -> client context that accepts only that peer's certificate (empty: plain)
    client_ssl: Mapping[str, ssl.SSLContext]
    pinned: Mapping[str, str]  # peer name -> sha256 of its certificate (optional pins)
    max_body_bytes: int = 256 * 2**20
    connect_timeout: float = 60.0
    #: Once a peer was reached, how long to keep trying it (it may be restarting).
    reconnect_timeout: float = 600.0
    request_timeout: float = 60.0
    limits: InboundLimits = field(default_factory=InboundLimits)
    #: runs this node completed: between runs, a message of one gets 410 (the sender stops
    #: waiting for this node), any other 503 (the sender retries until the run opens here)
    completed: frozenset[str] = frozenset()

    @property
    def insecure(self) -> bool:
        return self.server_ssl is None


class HttpTransport:
    """One node's HTTPS endpoint and client (see the module doc)."""

    def __init__(self, settings: HttpSettings, codec: Codec | None = None) -> None:
        self.settings = settings
        self.codec = codec or Codec()
        self.name = settings.name
        self.bytes_sent = 0
        self.bytes_by_phase: dict[str, int] = defaultdict(int)
        #: bytes and messages delivered to each peer
        self.bytes_by_peer: dict[str, int] = defaultdict(int)
        self.messages_by_peer: dict[str, int] = defaultdict(int)
        self.rejected = 0
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._seen: set[tuple[str, str, int, int]] = set()
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._reached: set[str] = set()
        #: peers that sent ``Abort``, with their reason: nothing more is sent to them
        self._aborted: dict[str, str] = {}
        limits = settings.limits
        #: the largest body accepted (see the module doc)
        self.body_limit = body_limit(settings.max_body_bytes, self.codec.width, limits)
        self._bodies = asyncio.Semaphore(limits.max_concurrent_bodies)
        self._peer_bodies = {
            peer: asyncio.Semaphore(limits.max_concurrent_bodies_per_peer)
            for peer in settings.peers
        }
        self._runner: web.AppRunner | None = None
        self._listener: Listener | None = None
        self._client: aiohttp.ClientSession | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        app = web.Application(client_max_size=self.body_limit)
        app.router.add_post(PATH, self._handle)
        app.router.add_get(PING_PATH, self._ping)
        self._runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            keepalive_timeout=self.settings.limits.idle_timeout,
        )
        await self._runner.setup()
        server = self._runner.server
        assert server is not None  # made by setup()
        self._listener = Listener(self.name, server, self.settings.limits, self.settings.server_ssl)
        try:
            await self._listener.start(self.settings.host, self.settings.port)
        except OSError as exc:
            await self._runner.cleanup()
            raise ProtocolError(
                f"cannot listen on {self.settings.host}:{self.settings.port} ({exc.strerror})"
            ) from None
        connector = aiohttp.TCPConnector(limit_per_host=4)
        self._client = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.settings.request_timeout),
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
        if self._listener is not None:
            await self._listener.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> HttpTransport:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ---------------------------------------------------------------------- inbound

    async def receive(self) -> Message:
        return await self._inbox.get()

    def _identify(self, request: web.Request) -> str | None:
        if self.settings.insecure:
            return request.headers.get(SENDER_HEADER)
        transport = request.transport
        if transport is None:
            return None
        name = peer_name(transport.get_extra_info("peercert"))
        pin = self.settings.pinned.get(name or "")
        if pin is not None:
            ssl_object = transport.get_extra_info("ssl_object")
            der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
            if der is None or certificate_fingerprint(der) != pin:
                return None
        return name

    def _reject(
        self, status: int, reason: str, peer: str | None, *, close: bool = False
    ) -> web.Response:
        self.rejected += 1
        set_fields(peer=peer)
        log.warning("%s: rejected a request from %s: %d %s", self.name, peer or "?", status, reason)
        response = web.Response(status=status, text=reason)
        if close:
            response.force_close()  # no keep-alive: the connection ends with this answer
        return response

    async def _read_body(self, request: web.Request, limit: int) -> bytes:
        """The body, if it has at most ``limit`` bytes and arrives within the request
        time-out (``_BodyTooLargeError``, ``TimeoutError``)."""
        chunks: list[bytes] = []
        size = 0
        async with asyncio.timeout(self.settings.request_timeout):
            while chunk := await request.content.readany():
                size += len(chunk)
                if size > limit:
                    raise _BodyTooLargeError
                chunks.append(chunk)
        return b"".join(chunks)

    async def _ping(self, request: web.Request) -> web.Response:
        peer = self._identify(request)
        if peer is None or peer not in self.settings.peers:
            return self._reject(403, "not a peer of this network", peer)
        return web.json_response(
            {"name": self.name, "run": self.settings.run_id or None, "protocol": PROTOCOL_VERSION}
        )

    async def _handle(self, request: web.Request) -> web.Response:
        peer = self._identify(request)
        if peer is None or peer not in self.settings.peers:
            return self._reject(403, "not a peer of this network", peer)
        limit = self.body_limit
        length = request.content_length
        if length is not None and length > limit:
            return self._reject(413, f"body over {limit} bytes", peer)
        async with self._peer_bodies[peer], self._bodies:
            try:
                data = await self._read_body(request, limit)
            except _BodyTooLargeError:
                return self._reject(413, f"body over {limit} bytes", peer, close=True)
            except TimeoutError:
                timeout = self.settings.request_timeout
                return self._reject(408, f"body not received in {timeout:g} s", peer, close=True)
            except (ConnectionError, web.RequestPayloadError) as exc:
                return self._reject(400, f"body not received ({exc})", peer, close=True)
            try:
                message = self.codec.decode(data)
            except ProtocolError as exc:
                return self._reject(400, str(exc), peer)
        if message.sender != peer:
            return self._reject(403, f"message claims sender {message.sender!r}", peer)
        if message.recipient != self.name:
            return self._reject(400, f"message is for {message.recipient!r}", peer)
        if not self.settings.run_id:  # a service between runs
            if message.run_id in self.settings.completed:
                return web.Response(status=410, text="this node has completed that run")
            return web.Response(status=503, text="no run open at this node yet")
        if message.run_id != self.settings.run_id:
            return self._reject(409, "message of another run", peer)
        self._reached.add(peer)
        if isinstance(message.body, Abort):
            self._aborted.setdefault(peer, message.body.reason)
        if not isinstance(message.body, Abort | Rejoin):
            # A message's logical identity occurs once per run. (Not its sequence number:
            # a restored peer may number its later messages in another order.)
            key = (message.sender, message.kind, message.period, message.iteration)
            if key in self._seen:
                return web.Response(status=200, text="duplicate")
            self._seen.add(key)
        await self._inbox.put(message)
        return web.Response(status=200, text="ok")

    # --------------------------------------------------------------------- outbound

    async def send(self, message: Message) -> None:
        with bind(peer=message.recipient):
            await self._send(message)

    async def _send(self, message: Message) -> None:
        peer = message.recipient
        if peer not in self.settings.peers or self._client is None:
            raise PeerUnavailableError(peer)
        data = self.codec.encode(message)
        url = self.settings.peers[peer].rstrip("/") + PATH
        context: ssl.SSLContext | bool = self.settings.client_ssl.get(peer, False)
        headers = {"Content-Type": "application/octet-stream", SENDER_HEADER: self.name}
        loop = asyncio.get_running_loop()
        window = (
            self.settings.reconnect_timeout
            if peer in self._reached
            else self.settings.connect_timeout
        )
        give_up = loop.time() + window
        delay = 0.1
        async with self._locks[peer]:
            while True:
                if peer in self._aborted and not isinstance(message.body, Abort):
                    # it told us it stopped: retrying it would only delay our own stop
                    raise ProtocolError(f"{peer} aborted the run: {self._aborted[peer]}")
                try:
                    post = self._client.post(url, data=data, headers=headers, ssl=context)
                    async with post as response:
                        if response.status < 300:
                            break
                        text = (await response.text())[:200]
                        if response.status == 410:  # it completed the run and left it
                            raise PeerUnavailableError(peer, text)
                        if response.status < 500:
                            raise ProtocolError(
                                f"{peer} rejected a {message.kind} message: "
                                f"{response.status} {text}"
                            )
                        failure = f"HTTP {response.status}"
                except (aiohttp.ClientError, TimeoutError, ssl.SSLError, OSError) as exc:
                    failure = reason(exc)
                if loop.time() + delay > give_up:
                    # the caller decides how much this matters (a run re-routes or fails, a
                    # courtesy notice does not care) and logs it with this reason
                    raise PeerUnavailableError(peer, f"gave up after {window:.0f} s: {failure}")
                log.debug("%s: %s not reachable yet (%s); retrying", self.name, peer, failure)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        self._reached.add(peer)
        self.bytes_sent += len(data)
        phase = (
            f"period {message.period} iteration {message.iteration}"
            if isinstance(message.body, Scores)
            else message.kind
        )
        self.bytes_by_phase[phase] += len(data)
        self.bytes_by_peer[peer] += len(data)
        self.messages_by_peer[peer] += 1
        if isinstance(message.body, Scores):
            log.info(
                "%s: sent %s scores to %s (%d ciphertexts, %d bytes)",
                self.name,
                phase,
                peer,
                len(message.body.values),
                len(data),
            )
