"""A client without a certificate cannot exhaust a node's file descriptors, and a node that
runs out of them anyway (its descriptors used elsewhere) neither spins nor floods its log.

The node runs in a subprocess whose descriptor limit is lowered to 128; the test floods it
from loopback with more idle TCP connections than that, then makes the node use up its
descriptors itself. Throughout, the node stays up, serves a member's connection, writes a
few lines about what it refused, and delivers a member's message once the flood is over."""

from __future__ import annotations

import asyncio
import contextlib
import os
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from riskprop.localnet.harness import free_ports
from riskprop.node.http import PATH
from riskprop.node.limits import REPORT_INTERVAL
from riskprop.node.tls import client_context, make_ca, make_node_certificate
from riskprop.protocol.messages import Codec, Done, Message

PATIENCE = 60.0
DESCRIPTORS = 128
FLOOD = DESCRIPTORS + 100

#: The node: bob, whose one peer is alice, with its descriptor limit lowered. Commands on
#: stdin: ``hoard`` opens files until none can be opened, ``release`` closes them, anything
#: else (or the end of stdin) stops it. It prints ``received <sender> <seq>`` per message.
NODE = """
import asyncio, logging, os, resource, sys
from pathlib import Path

certs, port, descriptors = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (descriptors, hard))
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

from riskprop.node.http import HttpSettings, HttpTransport
from riskprop.node.limits import InboundLimits
from riskprop.node.tls import server_context


async def main() -> None:
    settings = HttpSettings(
        name="bob",
        run_id="r",
        peers={"alice": "https://127.0.0.1:9"},
        host="127.0.0.1",
        port=port,
        server_ssl=server_context(certs / "bob.pem", certs / "bob.key", certs / "ca.pem"),
        client_ssl={},
        pinned={},
        limits=InboundLimits(idle_timeout=600.0),
    )
    loop = asyncio.get_running_loop()
    async with HttpTransport(settings) as transport:

        async def deliver() -> None:
            while True:
                message = await transport.receive()
                print("received", message.sender, message.seq, flush=True)

        delivering = asyncio.create_task(deliver())
        print("listening", flush=True)
        hoard = []
        while True:
            command = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
            if command == "hoard":
                try:
                    while True:
                        hoard.append(os.open(os.devnull, os.O_RDONLY))
                except OSError:
                    pass
                print("hoarded", len(hoard), flush=True)
            elif command == "release":
                for fd in hoard:
                    os.close(fd)
                hoard.clear()
                print("released", flush=True)
            else:
                break
        delivering.cancel()


asyncio.run(main())
"""


class Node:
    """The node's process, its stdout read line by line with a deadline."""

    def __init__(self, certs: Path, port: int, log: Path) -> None:
        self.port, self.log = port, log
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-c", NODE, str(certs), str(port), str(DESCRIPTORS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log.open("wb"),
        )
        self._buffer = b""

    def command(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text.encode() + b"\n")
        self.process.stdin.flush()

    def expect(self, prefix: str) -> str:
        """The next line of stdout, which must start with ``prefix``."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + PATIENCE
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                left = deadline - time.monotonic()
                assert left > 0 and selector.select(left), f"no {prefix!r} line from the node"
                chunk = os.read(fd, 4096)
                assert chunk, f"the node ended before {prefix!r}:\n{self.log_text()[-3000:]}"
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        text = line.decode()
        assert text.startswith(prefix), text
        return text

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_in_log(self, text: str) -> None:
        deadline = time.monotonic() + PATIENCE
        while text not in self.log_text():
            assert self.process.poll() is None, self.log_text()[-3000:]
            assert time.monotonic() < deadline, f"{text!r} not in the log"
            time.sleep(0.1)

    def stop(self) -> int:
        if self.process.poll() is None:
            with contextlib.suppress(BrokenPipeError):
                self.command("quit")
        try:
            return self.process.wait(PATIENCE)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    directory = tmp_path / "certs"
    ca_cert, ca_key = make_ca(directory)
    for name in ("alice", "bob"):
        make_node_certificate(directory, name, ca_cert=ca_cert, ca_key=ca_key)
    return directory


@pytest.fixture
def node(certs: Path, tmp_path: Path) -> Iterator[Node]:
    node = Node(certs, free_ports(1)[0], tmp_path / "bob.log")
    try:
        yield node
    finally:
        node.stop()


def flood(port: int, count: int, source: str = "127.0.0.1") -> list[socket.socket]:
    """``count`` TCP connections that send nothing (the caller closes them)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sockets.append(
                socket.create_connection(
                    ("127.0.0.1", port), timeout=PATIENCE, source_address=(source, 0)
                )
            )
    except BaseException:
        close(sockets)
        raise
    return sockets


def close(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


class Member:
    """Alice's HTTPS client: one keep-alive connection from ``source``."""

    def __init__(self, certs: Path, port: int, source: str) -> None:
        self.context = client_context(
            certs / "alice.pem", certs / "alice.key", certs / "ca.pem", server="bob"
        )
        self.url = f"https://127.0.0.1:{port}{PATH}"
        self.source = source

    async def __aenter__(self) -> Member:
        connector = aiohttp.TCPConnector(
            ssl=self.context, local_addr=(self.source, 0), limit=1, keepalive_timeout=600
        )
        self.session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=PATIENCE)
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.session.close()

    async def post(self, seq: int) -> int:
        # a message's identity includes its iteration: each of these is delivered once
        body = Codec().encode(Message("r", "alice", "bob", Done(), iteration=seq, seq=seq))
        async with self.session.post(self.url, data=body) as response:
            return response.status


async def deliver(certs: Path, port: int, source: str, seq: int) -> int:
    """Post over a new connection, again while it fails, until the node answers."""
    deadline = time.monotonic() + PATIENCE
    while True:
        try:
            async with Member(certs, port, source) as alice:
                return await alice.post(seq)
        except (aiohttp.ClientError, OSError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


def test_a_flood_of_idle_connections_does_not_exhaust_the_node(certs: Path, node: Node) -> None:
    port, budget = node.port, DESCRIPTORS // 2
    node.expect("listening")
    assert f"at most {budget} connections at once" in node.log_text()

    # More connections than the node may open descriptors, all from one address: most are
    # closed at once; while they last, a member on another address is served.
    flooding = flood(port, FLOOD)
    try:
        assert asyncio.run(deliver(certs, port, "127.0.0.2", seq=1)) == 200
        node.expect("received alice 1")
    finally:
        close(flooding)
    assert node.process.poll() is None
    node.wait_in_log(f"over the limits ({budget} in all, 16 per address)")

    async def starved() -> None:
        """The node's descriptors are used up: a member's open connection is still served."""
        async with Member(certs, port, "127.0.0.1") as alice:
            assert await alice.post(2) == 200
            node.expect("received alice 2")
            node.command("hoard")
            node.expect("hoarded")
            waiting = flood(port, 50)  # queued by the kernel; the node cannot accept them
            try:
                node.wait_in_log("could not accept")
                assert await alice.post(3) == 200
                node.expect("received alice 3")
            finally:
                close(waiting)
            node.command("release")
            node.expect("released")

    asyncio.run(starved())
    # accepting again: a new connection gets through
    assert asyncio.run(deliver(certs, port, "127.0.0.1", seq=4)) == 200
    node.expect("received alice 4")
    assert node.stop() == 0

    # a few lines: for each kind of refusal one per 30 s and a last count (not thousands)
    intervals = int((time.monotonic() - node.started) / REPORT_INTERVAL) + 2
    log = node.log_text()
    assert "out of system resource" not in log
    refusals = [
        line for line in log.splitlines() if "could not accept" in line or "over the limits" in line
    ]
    assert 2 <= len(refusals) <= 2 * intervals, log[-3000:]
    assert any("EMFILE" in line for line in refusals), refusals
    assert len(log.splitlines()) <= 10 + 2 * intervals, log[-3000:]
