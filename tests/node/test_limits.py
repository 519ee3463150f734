"""The inbound side's bounds (``riskprop.node.limits``): connections over the total or
per-address limit are closed before TLS, silent clients are dropped, bodies larger than the
run's largest message get 413, stalled ones 408, and bodies beyond the concurrency cap wait.

Real sockets on loopback; other source addresses are 127.0.0.x (all of 127/8 is loopback on
Linux). No assertion depends on speed: waits that must succeed are generous, and "still open"
or "not yet delivered" is only checked where nothing could have changed it."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import aiohttp
import pytest
import yaml
from gmpy2 import mpz

from riskprop.config import MAX_HEADER_MB, Limits, load_player_config
from riskprop.core.threshold import PartialProof
from riskprop.errors import ConfigError
from riskprop.localnet.harness import free_ports
from riskprop.node.http import PATH, HttpSettings, HttpTransport
from riskprop.node.limits import (
    FRAME_PREFIX,
    InboundLimits,
    ThrottledWarning,
    body_limit,
    connection_budget,
    inbound_limits,
)
from riskprop.node.runner import http_settings
from riskprop.node.tls import client_context, make_ca, make_node_certificate, server_context
from riskprop.protocol.messages import MAX_HEADER_BYTES, Codec, Done, Message, Partial

#: Waits for what must happen; a loaded machine is slow, a broken one fails after this.
PATIENCE = 60.0
WIDTH = 32


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("certs")
    ca_cert, ca_key = make_ca(directory)
    for name in ("alice", "bob", "charlie"):
        make_node_certificate(directory, name, ca_cert=ca_cert, ca_key=ca_key)
    return directory


def member(certs: Path, name: str, server: str = "bob") -> ssl.SSLContext:
    """``name``'s client context for reaching ``server``."""
    return client_context(
        certs / f"{name}.pem", certs / f"{name}.key", certs / "ca.pem", server=server
    )


def settings(
    certs: Path,
    name: str,
    port: int,
    ports: dict[str, int],
    *,
    request_timeout: float = PATIENCE,
    limits: InboundLimits | None = None,
) -> HttpSettings:
    """``name``'s transport on ``port``; its peers are the others of alice, bob and charlie."""
    cert, key, ca = certs / f"{name}.pem", certs / f"{name}.key", certs / "ca.pem"
    peers = {p: f"https://127.0.0.1:{q}" for p, q in ports.items() if p != name}
    return HttpSettings(
        name=name,
        run_id="r",
        peers=peers,
        host="127.0.0.1",
        port=port,
        server_ssl=server_context(cert, key, ca),
        client_ssl={p: member(certs, name, server=p) for p in peers},
        pinned={},
        connect_timeout=PATIENCE,
        reconnect_timeout=PATIENCE,
        request_timeout=request_timeout,
        limits=limits or InboundLimits(),
    )


class Trio:
    """Bob listens with the limits under test; alice and charlie send him messages."""

    def __init__(
        self,
        certs: Path,
        *,
        limits: InboundLimits | None = None,
        request_timeout: float = PATIENCE,
        codec: Codec | None = None,
    ) -> None:
        ports = dict(zip(("alice", "bob", "charlie"), free_ports(3), strict=True))
        self.port = ports["bob"]
        self.url = f"https://127.0.0.1:{self.port}"
        self.codec = codec or Codec()
        bob = settings(
            certs, "bob", self.port, ports, request_timeout=request_timeout, limits=limits
        )
        self.bob = HttpTransport(bob, self.codec)
        self.alice = HttpTransport(settings(certs, "alice", ports["alice"], ports), self.codec)
        self.charlie = HttpTransport(
            settings(certs, "charlie", ports["charlie"], ports), self.codec
        )

    async def __aenter__(self) -> Trio:
        for transport in (self.bob, self.alice, self.charlie):
            await transport.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for transport in (self.alice, self.charlie, self.bob):
            await transport.close()

    def message(self, sender: str, count: int = 0, iteration: int = 1) -> Message:
        """A message to bob: ``Done`` without values, else a ``Partial`` of ``count`` values."""
        if count == 0:
            return Message("r", sender, "bob", Done(), seq=iteration)
        values = tuple(mpz(i + 1) for i in range(count))
        return Message(
            "r",
            sender,
            "bob",
            Partial(values, PartialProof(1, 2)),
            iteration=iteration,
            seq=iteration,
        )

    async def received(self, count: int) -> list[Message]:
        """The next ``count`` messages bob's server delivers."""
        return [await asyncio.wait_for(self.bob.receive(), PATIENCE) for _ in range(count)]


# ------------------------------------------------------------------------ raw clients


async def connect(
    port: int, source: str = "127.0.0.1"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A plain TCP connection to ``port`` from ``source`` (nothing sent)."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0)), PATIENCE
    )
    return reader, writer


async def closed_by_server(reader: asyncio.StreamReader, wait: float = PATIENCE) -> bool:
    """True once the server closes (end of stream or reset) within ``wait`` seconds."""
    try:
        await asyncio.wait_for(reader.read(), wait)
    except ConnectionError:
        return True
    except TimeoutError:
        return False
    return True


async def still_open(reader: asyncio.StreamReader) -> bool:
    """Nothing arrived for a moment. (Only asked where no time-out could have closed it.)"""
    try:
        data = await asyncio.wait_for(reader.read(1), 0.5)
    except TimeoutError:
        return True
    except ConnectionError:
        return False
    return data != b""


def request_head(length: int) -> bytes:
    return (
        f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


async def post(
    url: str, context: ssl.SSLContext, data: bytes | AsyncIterator[bytes]
) -> tuple[int, str]:
    connector = aiohttp.TCPConnector(ssl=context)
    timeout = aiohttp.ClientTimeout(total=PATIENCE)
    async with (
        aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
        session.post(url + PATH, data=data) as response,
    ):
        return response.status, await response.text()


# ----------------------------------------------------------------------------- unit


def test_connections_take_at_most_half_of_the_descriptors() -> None:
    assert connection_budget(256, soft_limit=65536) == 256
    assert connection_budget(256, soft_limit=1024) == 256
    assert connection_budget(256, soft_limit=300) == 150
    assert connection_budget(256, soft_limit=128) == 64  # 64 kept for everything else
    assert connection_budget(256, soft_limit=100) == 36
    assert connection_budget(256, soft_limit=40) == 1


def test_the_body_limit_is_the_runs_largest_message() -> None:
    cap = 256 * 2**20
    assert body_limit(cap, 512, InboundLimits()) == cap  # values per message not known
    assert body_limit(cap, 0, InboundLimits(max_values=10)) == cap  # no values (key generation)
    limits = InboundLimits(max_values=1000, max_header_bytes=4096)
    assert body_limit(cap, 512, limits) == FRAME_PREFIX + 4096 + 1000 * 512
    assert body_limit(10_000, 512, limits) == 10_000  # max_body_bytes stays the upper cap
    huge = InboundLimits(max_values=1, max_header_bytes=2**40)
    assert body_limit(2**50, 512, huge) == FRAME_PREFIX + MAX_HEADER_BYTES + 512
    assert MAX_HEADER_MB * 2**20 == MAX_HEADER_BYTES  # config's bound is the decoder's


def test_a_warning_repeated_within_its_interval_is_one_line_and_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def flood() -> None:
        warning = ThrottledWarning("refused %d connection(s), the latest from %s", 3600.0)
        for _ in range(1000):
            warning.note("127.0.0.1")
        assert len(caplog.records) == 1
        warning.close()
        assert warning.total == 1000

    with caplog.at_level(logging.WARNING, logger="riskprop.node.limits"):
        asyncio.run(flood())
    assert [r.getMessage() for r in caplog.records] == [
        "refused 1 connection(s), the latest from 127.0.0.1",
        "refused 999 connection(s), the latest from 127.0.0.1",
    ]


def write_config(directory: Path, limits: Mapping[str, object] | None) -> None:
    network = {
        "parties": [
            {"name": "alice", "url": "http://127.0.0.1:9001"},
            {"name": "bob", "url": "http://127.0.0.1:9002"},
        ]
    }
    player: dict[str, object] = {
        "player": "alice",
        "data": "data",
        "key_share": "share.json",
        "output": "out",
        "listen": {"port": 9001},
        "run": {"run_id": "r", "iterations": 1},
    }
    if limits is not None:
        player["limits"] = limits
    (directory / "network.yaml").write_text(yaml.safe_dump(network))
    (directory / "alice.yaml").write_text(yaml.safe_dump(player))


def test_limits_from_the_configuration_reach_the_transport(tmp_path: Path) -> None:
    write_config(tmp_path, None)
    config = load_player_config(tmp_path, "alice", insecure=True, for_keygen=True)
    assert config.limits == Limits()
    assert http_settings(config).limits == InboundLimits()

    given = {
        "max_connections": 32,
        "max_connections_per_address": 4,
        "handshake_timeout": 2.5,
        "max_concurrent_bodies": 3,
        "max_concurrent_bodies_per_peer": 1,
        "max_accounts": 5000,
        "max_header_mb": 1,
        "max_body_mb": 8,
    }
    write_config(tmp_path, given)
    config = load_player_config(tmp_path, "alice", insecure=True, for_keygen=True)
    expected = InboundLimits(
        max_connections=32,
        max_connections_per_address=4,
        handshake_timeout=2.5,
        max_concurrent_bodies=3,
        max_concurrent_bodies_per_peer=1,
        max_values=5000,
        max_header_bytes=2**20,
    )
    assert inbound_limits(config.limits) == http_settings(config).limits == expected
    assert http_settings(config).max_body_bytes == 8 * 2**20


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("max_connections", 0, "limits.max_connections: must be >= 1 (got 0)"),
        ("max_connections_per_address", 1.5, "expected an integer, got float"),
        ("handshake_timeout", -1, "limits.handshake_timeout: must be > 0 (got -1)"),
        ("max_concurrent_bodies", "many", "limits.max_concurrent_bodies: expected an integer"),
        ("max_concurrent_bodies_per_peer", 0, "must be >= 1 (got 0)"),
        ("max_accounts", True, "limits.max_accounts: expected an integer, got bool"),
        ("max_header_mb", 65, "limits.max_header_mb: must be at most 64 (got 65)"),
        ("max_sockets", 1, "limits.max_sockets: unknown key"),
    ],
)
def test_a_bad_limit_is_one_line_naming_file_and_key(
    tmp_path: Path, key: str, value: object, problem: str
) -> None:
    write_config(tmp_path, {key: value})
    with pytest.raises(ConfigError) as caught:
        load_player_config(tmp_path, "alice", insecure=True, for_keygen=True)
    text = str(caught.value)
    assert text.startswith(f"{tmp_path / 'alice.yaml'}: ") and problem in text, text
    assert "\n" not in text


# ------------------------------------------------------------------------ connections


def test_connections_over_the_address_and_total_limits_are_closed_before_tls(
    certs: Path,
) -> None:
    limits = InboundLimits(max_connections=4, max_connections_per_address=2, handshake_timeout=600)

    async def scenario() -> None:
        async with Trio(certs, limits=limits) as trio:
            port = trio.port
            # the server accepts in arrival order: the third from one address is one too many
            first = [await connect(port) for _ in range(3)]
            assert await closed_by_server(first[2][0])
            # another address has its own share
            second = [await connect(port, "127.0.0.2") for _ in range(2)]
            # four are open now, the total: a third address gets nothing either
            third = await connect(port, "127.0.0.3")
            assert await closed_by_server(third[0])
            for reader, _ in (*first[:2], *second):
                assert await still_open(reader)  # in their TLS handshake for up to 600 s

            # one leaves; a member gets its message through (retrying until a slot is free)
            first[0][1].close()
            await trio.alice.send(trio.message("alice"))
            assert [m.sender for m in await trio.received(1)] == ["alice"]
            for _, writer in (*first, *second, third):
                writer.close()

    asyncio.run(scenario())


def test_a_client_that_sends_nothing_is_disconnected(certs: Path) -> None:
    """Before the TLS handshake (handshake time-out) and after it (idle time-out)."""
    limits = InboundLimits(handshake_timeout=1.0, idle_timeout=1.0)

    async def scenario() -> None:
        async with Trio(certs, limits=limits) as trio:
            silent, writer = await connect(trio.port)
            assert await closed_by_server(silent)
            writer.close()
            tls_reader, tls_writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", trio.port, ssl=member(certs, "alice")),
                PATIENCE,
            )
            assert await closed_by_server(tls_reader)
            tls_writer.close()
            # nothing of this cost a member anything
            await trio.alice.send(trio.message("alice"))
            assert len(await trio.received(1)) == 1

    asyncio.run(scenario())


# ----------------------------------------------------------------------------- bodies


def test_bodies_over_the_runs_largest_message_are_refused(certs: Path) -> None:
    limits = InboundLimits(max_values=4, max_header_bytes=1024)
    codec = Codec(width=WIDTH)

    async def scenario() -> None:
        async with Trio(certs, limits=limits, codec=codec) as trio:
            limit = trio.bob.body_limit
            assert limit == FRAME_PREFIX + 1024 + 4 * WIDTH
            # the largest legitimate message passes
            await trio.alice.send(trio.message("alice", count=4))
            assert len(await trio.received(1)) == 1

            alice = member(certs, "alice")
            status, text = await post(trio.url, alice, b"x" * (limit + 1))
            assert (status, text) == (413, f"body over {limit} bytes")

            async def growing() -> AsyncIterator[bytes]:  # chunked: no declared length
                for _ in range(3):
                    yield b"x" * (limit // 2)

            status, text = await post(trio.url, alice, growing())
            assert (status, text) == (413, f"body over {limit} bytes")
            assert trio.bob.rejected == 2

    asyncio.run(scenario())


def test_a_malformed_chunked_body_gets_400(certs: Path) -> None:
    async def scenario() -> None:
        async with Trio(certs) as trio:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", trio.port, ssl=member(certs, "alice")),
                PATIENCE,
            )
            head = request_head(0).replace(b"Content-Length: 0", b"Transfer-Encoding: chunked")
            writer.write(head + b"4\r\nRPM1\r\nzz\r\n")  # "zz" is no chunk size
            answer = await asyncio.wait_for(reader.read(), PATIENCE)  # and the end of stream
            assert answer.split(b"\r\n")[0].endswith(b" 400 Bad Request"), answer[:100]
            writer.close()

    asyncio.run(scenario())


def test_a_stalled_body_gets_408_while_other_messages_are_delivered(certs: Path) -> None:
    async def scenario() -> None:
        async with Trio(certs, request_timeout=1.0) as trio:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", trio.port, ssl=member(certs, "alice")),
                PATIENCE,
            )
            writer.write(request_head(1000) + b"RPM1\x00\x00")  # then nothing more
            await trio.charlie.send(trio.message("charlie"))
            assert [m.sender for m in await trio.received(1)] == ["charlie"]
            answer = await asyncio.wait_for(reader.read(), PATIENCE)  # to the end of stream
            assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
            writer.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("cap", ["in all", "per peer"])
def test_bodies_over_the_concurrency_cap_wait_their_turn(certs: Path, cap: str) -> None:
    """One body at a time: the second sender waits while the first body is being read, and
    both messages are delivered."""
    if cap == "in all":
        limits, second = InboundLimits(max_concurrent_bodies=1), "charlie"
    else:
        limits, second = InboundLimits(max_concurrent_bodies_per_peer=1), "alice"
    codec = Codec(width=WIDTH)

    async def scenario() -> None:
        async with Trio(certs, limits=limits, codec=codec) as trio:
            body = codec.encode(trio.message("alice", count=2000, iteration=1))
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", trio.port, ssl=member(certs, "alice")),
                PATIENCE,
            )
            writer.write(request_head(len(body)) + body[: len(body) // 2])
            held = trio.bob._bodies if cap == "in all" else trio.bob._peer_bodies["alice"]
            async with asyncio.timeout(PATIENCE):
                while not held.locked():  # the first body has the only slot
                    await asyncio.sleep(0.05)

            sender = trio.alice if second == "alice" else trio.charlie
            later = asyncio.create_task(sender.send(trio.message(second, count=2000, iteration=2)))
            await asyncio.sleep(0.5)
            assert not later.done() and trio.bob._inbox.empty()  # waiting, not refused

            writer.write(body[len(body) // 2 :])
            head = await asyncio.wait_for(reader.readuntil(b"\r\n"), PATIENCE)
            assert head.startswith(b"HTTP/1.1 200 "), head
            await asyncio.wait_for(later, PATIENCE)
            received = await trio.received(2)
            assert sorted((m.sender, m.iteration) for m in received) == sorted(
                [("alice", 1), (second, 2)]
            )
            writer.close()

    asyncio.run(scenario())
