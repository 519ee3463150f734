"""A fake link between sans-I/O sessions, as h11's ``ConnectionPair``: protocol tests with plain
function calls -- no event loop, no sockets, no clock.

``Link`` holds one ``RunSession`` per bank, calls ``start()`` on each and delivers the messages
they return, and those their ``receive`` returns, until none is pending. Every message goes
through the run's ``Codec`` on its way (encoded, then decoded for the recipient), so what the
sessions exchange is what the wire format carries; ``sent`` keeps each with its bytes.

Hooks, each given the decoded message: ``drop`` loses it (it was sent, nobody receives it),
``hold`` keeps it aside in ``held`` until the test ``release``s or ``deliver``s it, and
``pick`` chooses which pending message goes next (the oldest by default), which reorders
delivery. What a driver does besides delivering is the test's to do: ``unavailable`` tells a
session a peer cannot be reached (a driver's time-out or failed send). A session that raises
``ProtocolError`` is recorded in ``errors`` and receives nothing more, as its driver would stop;
a session that is done receives nothing more either (its driver no longer reads).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from riskprop.core.data import BankData
from riskprop.core.threshold import KeyShare
from riskprop.core.types import FloatArray
from riskprop.errors import ProtocolError
from riskprop.protocol.messages import Codec, Message, RunDescriptor
from riskprop.protocol.session import RunSession

#: Decides something about one message (hold it, drop it).
Hook = Callable[[Message], bool]
#: Chooses the index of the pending message to deliver next.
Pick = Callable[[Sequence[Message]], int]


def never(message: Message) -> bool:
    return False


def oldest(pending: Sequence[Message]) -> int:
    return 0


class Link:
    """Sessions of one run and the messages between them (see the module doc)."""

    def __init__(
        self,
        sessions: Iterable[RunSession],
        *,
        hold: Hook = never,
        drop: Hook = never,
        pick: Pick = oldest,
    ) -> None:
        self.sessions = {session.name: session for session in sessions}
        first = next(iter(self.sessions.values()))
        self.codec = Codec.for_key(first.public)
        self.hold, self.drop, self.pick = hold, drop, pick
        self.pending: list[Message] = []
        self.held: list[Message] = []
        #: every message a session sent (dropped ones too), as decoded, with its bytes
        self.sent: list[tuple[Message, bytes]] = []
        self.errors: dict[str, ProtocolError] = {}

    @classmethod
    def between(
        cls,
        banks: Iterable[BankData],
        shares: Mapping[str, KeyShare],
        descriptor: RunDescriptor | Mapping[str, RunDescriptor],
        *,
        hold: Hook = never,
        drop: Hook = never,
        pick: Pick = oldest,
    ) -> Link:
        """Sessions for ``banks`` (each with its share, and its own descriptor if a mapping)."""

        def descriptor_of(bank: str) -> RunDescriptor:
            return descriptor if isinstance(descriptor, RunDescriptor) else descriptor[bank]

        sessions = [RunSession(descriptor_of(b.name), b, shares[b.name]) for b in banks]
        return cls(sessions, hold=hold, drop=drop, pick=pick)

    # ------------------------------------------------------------------------- driving

    def start(self) -> Link:
        """Every session's ``start()``, in order; what they send is pending."""
        for name, session in self.sessions.items():
            self._step(name, session.start)
        return self

    def run(self) -> Link:
        """Deliver pending messages (``pick``'s choice first) until none is left."""
        while self.pending:
            self.deliver(self.pending.pop(self.pick(self.pending)))
        return self

    def deliver(self, message: Message) -> None:
        """Hand ``message`` to its recipient now; what it sends in return is posted."""
        name = message.recipient
        session = self.sessions[name]
        if name not in self.errors and not session.done:
            self._step(name, lambda: session.receive(message))

    def release(self, which: Hook = lambda message: True) -> None:
        """Put the held messages that ``which`` selects back in line, in the order sent."""
        self.pending += [m for m in self.held if which(m)]
        self.held = [m for m in self.held if not which(m)]

    def unavailable(self, party: str, peer: str) -> None:
        """Tell ``party`` that ``peer`` cannot be reached, as its driver would."""
        self._step(party, lambda: self.sessions[party].peer_unavailable(peer))

    def post(self, messages: Iterable[Message]) -> None:
        """Put ``messages`` on the wire: through the codec, then lost, held or pending."""
        for message in messages:
            data = self.codec.encode(message)
            received = self.codec.decode(data)
            self.sent.append((received, data))
            if self.drop(received):
                continue
            (self.held if self.hold(received) else self.pending).append(received)

    def _step(self, name: str, step: Callable[[], list[Message]]) -> None:
        try:
            out = step()
        except ProtocolError as exc:
            self.errors[name] = exc
            return
        self.post(out)

    # ------------------------------------------------------------------------- outcome

    @property
    def done(self) -> bool:
        return all(session.done for session in self.sessions.values())

    def results(self) -> dict[str, FloatArray]:
        """Each session's scores (every session must have its result)."""
        found = {}
        for name, session in self.sessions.items():
            assert session.result is not None, f"{name} has no result"
            found[name] = session.result
        return found

    def of(self, kind: type) -> list[Message]:
        """The messages of one body type that were sent, in order."""
        return [message for message, _ in self.sent if isinstance(message.body, kind)]
