"""The transport interface the driver needs, and an in-memory implementation.

A transport delivers typed messages between named parties. The in-memory network runs every
party in one process (tests, ``riskprop simulate --secure``); by default each message goes
through the binary wire codec, so what is tested is what travels over HTTPS.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Protocol

from riskprop.protocol.messages import Codec, Message


class PeerUnavailableError(Exception):
    """A message could not be delivered to ``peer``."""

    def __init__(self, peer: str, reason: str = "") -> None:
        super().__init__(f"peer {peer} is unavailable" + (f" ({reason})" if reason else ""))
        self.peer = peer


class Transport(Protocol):
    """Send to and receive from named parties."""

    name: str
    bytes_sent: int

    async def send(self, message: Message) -> None:
        """Deliver ``message`` to ``message.recipient``; raise PeerUnavailableError if it cannot."""

    async def receive(self) -> Message:
        """The next message addressed to this party."""


Tap = Callable[[Message, bytes], None]


class InMemoryNetwork:
    """Queues between parties of one process; ``tap`` sees every message and its bytes."""

    def __init__(
        self, parties: Sequence[str], codec: Codec | None = None, *, tap: Tap | None = None
    ) -> None:
        self.codec = codec or Codec()
        self.tap = tap
        self.down: set[str] = set()
        self._queues: dict[str, asyncio.Queue[Message]] = {p: asyncio.Queue() for p in parties}

    def endpoint(self, name: str) -> InMemoryTransport:
        return InMemoryTransport(self, name)

    def clear_inbox(self, name: str) -> None:
        """Drop what waits for ``name``, as a crash of its process would."""
        self._queues[name] = asyncio.Queue()

    def take_down(self, name: str) -> None:
        """From now on, messages to ``name`` fail with PeerUnavailableError."""
        self.down.add(name)

    async def deliver(self, message: Message) -> int:
        if message.recipient in self.down or message.recipient not in self._queues:
            raise PeerUnavailableError(message.recipient)
        data = self.codec.encode(message)
        if self.tap is not None:
            self.tap(message, data)
        await self._queues[message.recipient].put(self.codec.decode(data))
        return len(data)

    async def next_for(self, name: str) -> Message:
        return await self._queues[name].get()


class InMemoryTransport:
    """One party's end of an ``InMemoryNetwork``."""

    def __init__(self, network: InMemoryNetwork, name: str) -> None:
        self.network = network
        self.name = name
        self.bytes_sent = 0

    async def send(self, message: Message) -> None:
        self.bytes_sent += await self.network.deliver(message)

    async def receive(self) -> Message:
        return await self.network.next_for(self.name)
