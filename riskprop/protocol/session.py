"""One bank's side of a secure propagation run, as a sans-I/O state machine.

Theory of operation. The driver calls ``start()`` once and ``receive(message)`` for every
message addressed to this bank; both return the messages to send. Phases:

``handshake``
    Send every peer a ``Hello``: the run descriptor, the number of own accounts, and per period
    the ids of own accounts that (in this bank's view) send money to that peer -- the roster
    whose ciphertexts it will send. When every peer's ``Hello`` is in and every descriptor
    equals ours, build each period's incoming matrix over ``[own accounts | peers' rosters]``
    (dropping sources a peer does not list), refuse parameters that would overflow, and encrypt
    the own initial scores.
``iterating``
    Step ``(p, k)`` for each period index ``p`` and ``k = 1..T``: send each peer whose roster is
    non-empty the re-randomised ciphertexts of that roster; once the ciphertexts of every peer
    that sends to us in period ``p`` are in, compute ``R'(x) = c_self R(x) + sum c(s,x) R(s)``
    homomorphically (``core.fixedpoint``, ``core.paillier.linear_step``).
``decrypting``
    Pack the final ciphertexts (several scores per plaintext), re-randomise them and ask the
    next ``t`` available parties (ring order) for partial decryptions with proofs; a helper
    whose proof fails is named and replaced by the next party; combine ``t + 1`` verified
    partials (ours included) and check every plaintext before decoding. A helper answers only
    the bank that asked, one request per requester and run (its digest is persisted before
    the answer leaves, and announced to the other parties with ``Served``, so that none of
    them serves that requester a different one), for at most as many ciphertexts as that
    bank's announced accounts need.
``finishing``
    Tell every peer ``Done``; stop when every peer still up has said ``Done`` too, so no one
    leaves while a peer may still need a partial decryption from it.

Messages may arrive in any order; those for a later step wait in an inbox. Any mismatch or
malformed message raises ``ProtocolError``; the driver then sends ``Abort`` to every peer.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import Enum

from gmpy2 import mpz

from riskprop.core import modexp
from riskprop.core.batches import Executor, own_pool
from riskprop.core.data import BankData
from riskprop.core.fixedpoint import FixedPoint
from riskprop.core.graph import IncomingCSR, period_views, resolve_view
from riskprop.core.paillier import (
    NO_CIPHERTEXTS,
    FixedBaseNoise,
    FreshNoise,
    NoiseSource,
    PooledNoise,
    embed,
    linear_step,
    pack,
    rerandomize,
    unpack,
)
from riskprop.core.threshold import KeyShare, combine, partial_decrypt, prove, verify
from riskprop.core.types import FloatArray
from riskprop.errors import ConfigError, ProtocolError
from riskprop.protocol.checkpoint import SessionSnapshot, decode_ledger, request_digest
from riskprop.protocol.messages import (
    Abort,
    Body,
    DecryptRequest,
    Done,
    Hello,
    Message,
    Partial,
    RunDescriptor,
    Scores,
    Served,
)

log = logging.getLogger(__name__)


class Phase(Enum):
    HANDSHAKE = "handshake"
    ITERATING = "iterating"
    DECRYPTING = "decrypting"
    FINISHING = "finishing"
    DONE = "done"


@dataclass(frozen=True)
class Stopwatch:
    """A start time: wall clock and the CPU time of the calling thread (the session's work runs
    on one thread, so its CPU time is the phase's, whatever else the process does)."""

    wall: float
    cpu: float

    @classmethod
    def start(cls) -> Stopwatch:
        return cls(time.perf_counter(), time.thread_time())


#: Ciphertexts partially decrypted between two updates of the decryption progress.
DECRYPT_CHUNK = 32


@dataclass(frozen=True)
class PhaseProgress:
    """Where a session stands: its phase and ``done`` of ``total`` units of the phase's work
    (handshakes, iterations, ciphertexts to partially decrypt, peers' completions), plus a
    short text. ``done <= total``; ``total`` is 0 only when the phase has no countable work."""

    phase: str
    done: int
    total: int
    detail: str
    #: (phase, time.monotonic() when the session entered it), in order
    began: tuple[tuple[str, float], ...] = ()

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0


@dataclass
class SessionStats:
    """Seconds (wall and CPU) spent per phase and ciphertexts sent, for logs and benchmarks."""

    seconds: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    ciphertexts_sent: dict[str, int] = field(default_factory=dict)

    def add(self, phase: str, seconds: float = 0.0, sent: int = 0, cpu: float = 0.0) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds
        self.cpu_seconds[phase] = self.cpu_seconds.get(phase, 0.0) + cpu
        self.ciphertexts_sent[phase] = self.ciphertexts_sent.get(phase, 0) + sent

    def lap(self, phase: str, since: Stopwatch, sent: int = 0) -> None:
        """Add the wall and CPU time elapsed ``since`` to ``phase``."""
        now = Stopwatch.start()
        self.add(phase, now.wall - since.wall, sent, now.cpu - since.cpu)


class RunSession:
    """A bank's state machine for one run (see the module doc)."""

    def __init__(
        self,
        descriptor: RunDescriptor,
        bank: BankData,
        share: KeyShare,
        noise: NoiseSource | None = None,
        *,
        constant_time_noise: bool = False,
        executor: Executor | None = None,
        share_in_workers: bool = False,
    ) -> None:
        """``noise`` defaults to the descriptor's kind; for ``djn`` a comb shaped for this run,
        read in constant time (each read scans its sub-table) with ``constant_time_noise``.
        ``executor`` runs the batches of each step's ``linear_step`` and of ``pack`` (default:
        this process), and, when it is ``private`` (the node's own processes), large noise
        draws of the default comb; a cluster sees public data only (docs/design-compute.md).
        With ``share_in_workers`` (the operator's ``compute.share_in_workers``) and a private
        executor, partial decryptions run there too, the key share crossing a pipe to the
        node's own workers. The decrypted results do not depend on it."""
        self.constant_time_noise = constant_time_noise
        self.executor = executor
        self.share_in_workers = share_in_workers
        self.descriptor = descriptor
        self.name = bank.name
        self.bank = bank
        self.share = share
        key = share.key
        self.public = key.public
        _check_setup(descriptor, bank, share)
        self.peers = tuple(p for p in descriptor.parties if p != self.name)
        self.schedule = descriptor.parameters.schedule
        self.fixed = FixedPoint.for_packing(
            descriptor.precision_bits, descriptor.total_iterations, self.public.bits
        )
        self.fixed.check_fits(descriptor.iterations, len(descriptor.periods), self.public.bits)
        self.slot_bits = self.fixed.slot_bits(descriptor.total_iterations)
        self.slots = self.fixed.slots_per_plaintext(descriptor.total_iterations, self.public.bits)
        self.views = period_views(bank, self.peers, descriptor.periods)
        if noise is None and descriptor.noise == "full":
            noise = FreshNoise(self.public)
        if noise is None:
            # one draw per sent account per iteration and one per packed ciphertext
            sent = sum(len(view.sent()) for view in self.views)
            draws = sent * descriptor.iterations + -(-bank.n_accounts // max(1, self.slots))
            shape = FixedBaseNoise.shape_for(
                self.public.bits, draws, native=modexp.native(), constant_time=constant_time_noise
            )
            noise = FixedBaseNoise(self.public, shape=shape, constant_time=constant_time_noise)
            if own_pool(executor):
                # large draws on the node's own worker processes (never a cluster's)
                noise = PooledNoise(noise, executor)
        self.noise = noise
        self.stats = SessionStats()

        #: phase -> time.monotonic() when the session entered it
        self.phase_began: dict[str, float] = {}
        self.phase = Phase.HANDSHAKE
        self._seq: dict[str, int] = dict.fromkeys(self.peers, 0)
        self._hellos: dict[str, Hello] = {}
        self._inbox: dict[tuple[int, int, str], tuple[mpz, ...]] = {}
        self._incoming: list[tuple[IncomingCSR, FloatArray]] = []
        self._expected: list[tuple[str, ...]] = []
        self._state: list[mpz] = []
        self._step = (0, 1)
        self._unavailable: set[str] = set()
        # decryption, as requester
        self._packed = NO_CIPHERTEXTS
        self._asked: list[str] = []
        self._partials: dict[str, tuple[mpz, ...]] = {}
        self._request = ""  # digest of our own decryption request
        self._rejected: dict[str, str] = {}  # helper -> why its answer was refused
        # decryption, as helper
        self._waiting_requests: dict[str, DecryptRequest] = {}
        self._served: dict[str, str] = {}  # requester -> digest of the request served
        self._served_elsewhere: dict[str, tuple[str, str]] = {}  # requester -> (helper, digest)
        #: Counts changes to what ``ledger()`` returns; the driver persists it before sending.
        self.ledger_changes = 0
        self._done_from: set[str] = set()
        #: ciphertexts this bank partially decrypted in this run (its own and its peers')
        self.decrypted = 0
        self.result: FloatArray | None = None
        #: Counts the points after which a checkpoint may be taken (see ``snapshot``).
        self.safe_points = 0

    # ------------------------------------------------------------------ driver API

    @property
    def phase(self) -> Phase:
        return self._phase

    @phase.setter
    def phase(self, value: Phase) -> None:
        self._phase = value
        self.phase_began.setdefault(value.value, time.monotonic())

    @property
    def done(self) -> bool:
        return self.phase is Phase.DONE

    def start(self) -> list[Message]:
        """The handshake messages."""
        started = Stopwatch.start()
        out = []
        for peer in self.peers:
            rosters = tuple(
                tuple(self.bank.account_ids[i] for i in view.outgoing[peer].tolist())
                for view in self.views
            )
            out.append(self._message(peer, Hello(self.descriptor, self.bank.n_accounts, rosters)))
        self.stats.lap("handshake", started)
        return out + self._advance()

    def receive(self, message: Message) -> list[Message]:
        """Take one inbound message; return what to send."""
        self._check_envelope(message)
        sender, body = message.sender, message.body
        out: list[Message] = []
        if isinstance(body, Hello):
            self._on_hello(sender, body)
        elif isinstance(body, Scores):
            if not self._is_past(message.period, message.iteration):  # else a replay
                self._inbox.setdefault((message.period, message.iteration, sender), body.values)
        elif isinstance(body, DecryptRequest):
            out += self._on_decrypt_request(sender, body)
        elif isinstance(body, Partial):
            out += self._on_partial(sender, body)
        elif isinstance(body, Served):
            self._on_served(sender, body)
        elif isinstance(body, Done):
            self._done_from.add(sender)
        elif isinstance(body, Abort):
            raise ProtocolError(f"{sender} aborted the run: {body.reason}")
        return out + self._advance()

    def peer_unavailable(self, peer: str) -> list[Message]:
        """The driver could not reach ``peer``: re-route decryption or give up."""
        if peer in self._unavailable or peer not in self.peers:
            return []
        self._unavailable.add(peer)
        if self.phase in (Phase.HANDSHAKE, Phase.ITERATING):
            raise ProtocolError(f"peer {peer} is unavailable during {self.phase.value}")
        out: list[Message] = []
        if self.phase is Phase.DECRYPTING and peer in self._asked and peer not in self._partials:
            out.extend(self._ask_helpers())
        return out + self._advance()

    @property
    def rejected(self) -> dict[str, str]:
        """Helpers whose partial decryptions were refused, and why (for logs and the report)."""
        return dict(self._rejected)

    def ledger(self) -> dict[str, dict[str, object]]:
        """What this bank served and heard served: persisted before any partial decryption
        leaves (``ledger_changes``), so a restart never forgets a request it answered."""
        return {
            "served": dict(self._served),
            "elsewhere": {r: [h, d] for r, (h, d) in self._served_elsewhere.items()},
        }

    def remember(self, data: bytes) -> None:
        """Merge a persisted ledger (``checkpoint.encode_ledger(ledger())``, after a restart);
        the ledger wins over a checkpoint, which may predate it."""
        try:
            served, elsewhere = decode_ledger(data)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self._served.update(served)
        self._served_elsewhere.update(elsewhere)

    @property
    def unavailable(self) -> frozenset[str]:
        """Peers found unreachable in this run: nothing more is sent to them."""
        return frozenset(self._unavailable)

    def overdue_peers(self) -> list[str]:
        """Peers a time-out may give up on without failing the run: decryption helpers that
        have not answered (another party stands in), and, once we have our result, peers
        that have not said ``Done``."""
        if self.phase is Phase.DECRYPTING:
            return [
                q
                for q in self._asked
                if q not in self._partials and q not in self._unavailable | set(self._rejected)
            ]
        if self.phase is Phase.FINISHING:
            return [q for q in self.peers if q not in self._done_from | self._unavailable]
        return []

    def progress(self) -> str:
        """One line on where the run stands, for a terminal's status line."""
        state = self.progress_state()
        return f"{self.name}: {state.detail}"

    def progress_state(self) -> PhaseProgress:
        """Where the run stands (see PhaseProgress), with the times its phases began."""
        state = self._progress_state()
        began = tuple(sorted(self.phase_began.items(), key=lambda item: item[1]))
        return replace(state, began=began)

    def _progress_state(self) -> PhaseProgress:
        """Where the run stands, in units of the current phase's work.

        Decryption counts the ciphertexts this bank partially decrypts: its own packed
        scores, and each peer's that will ask it (ring order, the first t helpers after the
        requester; a peer re-routed here after a failure adds to the total). Once its own
        result is known the run is finishing: it counts the peers that said Done, while it
        may still serve their requests."""
        phase = self.phase.value
        if self.phase is Phase.HANDSHAKE:
            got = len(self._hellos)
            return PhaseProgress(phase, got, len(self.peers), f"handshake {got}/{len(self.peers)}")
        if self.phase is Phase.ITERATING:
            p, k = self._step
            total = self.descriptor.total_iterations
            done = p * self.descriptor.iterations + k - 1
            detail = f"iteration {done + 1}/{total} (period {self.descriptor.periods[p]})"
            return PhaseProgress(phase, done, total, detail)
        if self.phase is Phase.DECRYPTING:
            total = max(self._expected_decryptions(), self.decrypted)
            detail = f"decrypting {self.decrypted}/{total} ciphertexts"
            return PhaseProgress(phase, self.decrypted, total, detail)
        if self.phase is Phase.FINISHING:
            live = self._live_peers()
            done = len(set(live) & self._done_from)
            detail = f"finishing {done}/{len(live)} peers"
            if self._waiting_requests:
                detail += ", serving decryption requests"
            return PhaseProgress(phase, done, len(live), detail)
        return PhaseProgress(phase, 1, 1, phase)

    def _expected_decryptions(self) -> int:
        """Ciphertexts this bank partially decrypts in the run, as far as it can tell."""
        if not self.slots:
            return 0
        own = -(-self.bank.n_accounts // self.slots)
        parties = self.descriptor.parties
        threshold = self.share.key.threshold
        served = 0
        for requester in self.peers:
            at = parties.index(requester)
            helpers = [parties[(at + i) % len(parties)] for i in range(1, threshold + 1)]
            hello = self._hellos.get(requester)
            if hello is not None and (self.name in helpers or requester in self._served):
                served += -(-hello.n_accounts // self.slots)
        return own + served

    def _partial_decrypt(self, values: Sequence[mpz]) -> list[mpz]:
        """``partial_decrypt`` in chunks, counting ``decrypted`` as it goes; on the node's own
        workers when the operator allows the share there (a chunk per worker and call)."""
        executor = self.executor
        pooled = self.share_in_workers and own_pool(executor)
        chunk = DECRYPT_CHUNK * (executor.workers if pooled and executor else 1)
        out: list[mpz] = []
        for start in range(0, len(values), chunk):
            part = values[start : start + chunk]
            out += partial_decrypt(self.share, part, executor=executor if pooled else None)
            self.decrypted += len(part)
        return out

    def waiting_for(self) -> str:
        """What the session waits for, for timeout messages."""
        if self.phase is Phase.HANDSHAKE:
            missing = [p for p in self.peers if p not in self._hellos]
            return f"handshake from {', '.join(missing)}"
        if self.phase is Phase.ITERATING:
            p, k = self._step
            missing = [q for q in self._expected[p] if (p, k, q) not in self._inbox]
            period = self.descriptor.periods[p]
            return f"period {period} iteration {k} scores from {', '.join(missing)}"
        if self.phase is Phase.DECRYPTING:
            missing = [
                q for q in self._asked if q not in self._partials and q not in self._rejected
            ]
            return f"partial decryptions from {', '.join(missing)}"
        missing = [q for q in self.peers if q not in self._done_from | self._unavailable]
        return f"completion of {', '.join(missing)}"

    # ------------------------------------------------------------------ checkpoints

    @property
    def can_snapshot(self) -> bool:
        """A snapshot holds ciphertexts only, so not once the result is decrypted."""
        return self.phase in (Phase.ITERATING, Phase.DECRYPTING)

    def snapshot(self) -> SessionSnapshot:
        """This session's position and ciphertexts (never plaintext scores)."""
        if not self.can_snapshot:
            raise ValueError(f"no snapshot in phase {self.phase.value}")
        return SessionSnapshot(
            descriptor=self.descriptor,
            party=self.name,
            phase=self.phase.value,
            step=self._step,
            seq=dict(self._seq),
            hellos={q: (h.n_accounts, h.rosters) for q, h in self._hellos.items()},
            served=dict(self._served),
            state=tuple(self._state) if self.phase is Phase.ITERATING else (),
            packed=self._packed,
            asked=tuple(self._asked),
        )

    @classmethod
    def restore(
        cls,
        snapshot: SessionSnapshot,
        bank: BankData,
        share: KeyShare,
        noise: NoiseSource | None = None,
        *,
        constant_time_noise: bool = False,
        executor: Executor | None = None,
        share_in_workers: bool = False,
    ) -> RunSession:
        """A session that continues from ``snapshot`` (made by the same bank for this run)."""
        session = cls(
            snapshot.descriptor,
            bank,
            share,
            noise,
            constant_time_noise=constant_time_noise,
            executor=executor,
            share_in_workers=share_in_workers,
        )
        if snapshot.party != bank.name:
            raise ConfigError(f"checkpoint belongs to {snapshot.party!r}, not {bank.name!r}")
        session._hellos = {
            q: Hello(snapshot.descriptor, n, rosters) for q, (n, rosters) in snapshot.hellos.items()
        }
        if set(session._hellos) != set(session.peers):
            raise ConfigError("checkpoint lacks a peer's handshake")
        session._build_incoming()
        session._seq.update(snapshot.seq)
        session._served = dict(snapshot.served)
        session._step = snapshot.step
        session.phase = Phase(snapshot.phase)
        if session.phase is Phase.ITERATING:
            session._state = list(snapshot.state)
        else:
            session._packed = snapshot.packed
            session._request = request_digest(snapshot.packed)
            session._asked = list(snapshot.asked)
            # own partials again, where a fresh decryption makes them (the workers, with leave)
            session._partials = {bank.name: tuple(session._partial_decrypt(snapshot.packed))}
        session.safe_points = 1
        return session

    def finish_with(self, result: FloatArray) -> list[Message]:
        """Continue a restored session whose result was already decrypted and saved: it only
        tells its peers ``Done`` and serves their decryption requests until they are done."""
        if len(result) != self.bank.n_accounts:
            raise ConfigError("the saved results do not match this bank's accounts")
        self.result = result
        self.phase = Phase.FINISHING
        return [self._message(p, Done()) for p in self.peers]

    # -------------------------------------------------------------------- handlers

    def _check_envelope(self, message: Message) -> None:
        if message.run_id != self.descriptor.run_id:
            raise ProtocolError(f"message from {message.sender} belongs to another run")
        if message.recipient != self.name or message.sender not in self.peers:
            raise ProtocolError(
                f"misrouted message {message.sender!r} -> {message.recipient!r} at {self.name}"
            )

    def _on_hello(self, sender: str, hello: Hello) -> None:
        field_name = self.descriptor.first_difference(hello.descriptor)
        if field_name is not None:
            ours = self.descriptor.to_json()[field_name]
            theirs = hello.descriptor.to_json()[field_name]
            raise ProtocolError(
                f"run descriptor mismatch with {sender}: {field_name} is {theirs!r} there, "
                f"{ours!r} here"
            )
        if len(hello.rosters) != len(self.descriptor.periods):
            raise ProtocolError(f"{sender} sent rosters for {len(hello.rosters)} periods")
        previous = self._hellos.get(sender)
        if previous is not None and previous != hello:
            raise ProtocolError(f"{sender} sent two different handshakes")
        self._hellos[sender] = hello

    def _is_past(self, period: int, iteration: int) -> bool:
        """Whether scores for this step are no longer needed (a replay after a restart)."""
        if self.phase is Phase.HANDSHAKE:
            return False
        if self.phase is Phase.ITERATING:
            return (period, iteration) < self._step
        return True

    def _on_decrypt_request(self, sender: str, request: DecryptRequest) -> list[Message]:
        """Queue a first request; serve an identical replay again; refuse a different one."""
        digest = request_digest(request.values)
        waiting = self._waiting_requests.get(sender)
        earlier = self._served.get(sender) or (
            request_digest(waiting.values) if waiting is not None else None
        )
        if earlier is None:
            self._waiting_requests[sender] = request
            return []
        if earlier != digest:
            log.warning("refused a second decryption round requested by %s", sender)
            return [self._message(sender, Abort("a second decryption round was refused"))]
        if sender in self._served:  # the requester restarted and asks for the same again
            return [self._answer(sender, request, digest)]
        return []

    def _on_partial(self, sender: str, partial: Partial) -> list[Message]:
        """Keep a verified answer; name a helper whose proof fails and ask another party."""
        if sender not in self._asked:
            raise ProtocolError(f"unsolicited partial decryption from {sender}")
        if (
            self.phase is not Phase.DECRYPTING
            or sender in self._partials
            or sender in self._rejected
        ):
            return []  # a slow helper answering after another one stood in for it
        started = Stopwatch.start()
        context = self._context(self.name, self._request)
        valid = verify(self.share.key, sender, self._packed, partial.values, partial.proof, context)
        self.stats.lap("proofs", started)
        if valid:
            self._partials[sender] = partial.values
            return []
        reason = "its partial decryptions fail their proof"
        self._rejected[sender] = reason
        log.warning("%s: %s: %s; asking another party", self.name, sender, reason)
        return self._ask_helpers()

    def _on_served(self, sender: str, notice: Served) -> None:
        """Another helper served ``notice.requester``: no different request will be served
        to it here, and one already served here is a deviation (two rounds) to stop."""
        requester = notice.requester
        if requester not in self.peers or requester == sender:
            raise ProtocolError(f"{sender} sent a notice about requester {requester!r}")
        known = self._served_elsewhere.setdefault(requester, (sender, notice.digest))
        self.ledger_changes += 1
        mine = self._served.get(requester)
        for helper, digest in ((known[0], known[1]), (self.name, mine)):
            if digest is not None and digest != notice.digest:
                raise ProtocolError(
                    f"{requester} obtained two different decryptions, one from {helper} and one "
                    f"from {sender} (as {sender} reports): {requester} deviates from the "
                    f"protocol, or {sender} sent a false notice"
                )

    # --------------------------------------------------------------------- progress

    def _advance(self) -> list[Message]:
        out = self._serve_requests()
        while True:
            if self.phase is Phase.HANDSHAKE and len(self._hellos) == len(self.peers):
                self._setup()
                out += self._begin_step()
            elif self.phase is Phase.ITERATING and self._inputs_ready():
                self._iterate()
                out += self._begin_step()
            elif self.phase is Phase.DECRYPTING and len(self._partials) > self.share.key.threshold:
                self._finish_decryption()
                # Every peer, even one we stopped waiting for: it may be slow, not gone.
                out += [self._message(p, Done()) for p in self.peers]
                self.phase = Phase.FINISHING
            elif self.phase is Phase.FINISHING and set(self._live_peers()) <= self._done_from:
                self.phase = Phase.DONE
            else:
                return out + self._serve_requests()

    def _build_incoming(self) -> None:
        """Each period's incoming matrix over ``[own | peers' rosters]`` (needs every Hello)."""
        started = Stopwatch.start()
        n = self.bank.n_accounts
        for index, view in enumerate(self.views):
            rosters = {q: self._hellos[q].rosters[index] for q in self.peers}
            csr = resolve_view(view, n, self.bank.foreign_ids, rosters, self.peers)
            self._incoming.append((csr, csr.weights()))
            self._expected.append(tuple(q for q in self.peers if rosters[q]))
        self.stats.lap("handshake", started)

    def _setup(self) -> None:
        self._build_incoming()
        started = Stopwatch.start()
        # Own initial scores need no noise: they stay here until they are sent or decrypted,
        # and every ciphertext that leaves is re-randomised first (``_begin_step``,
        # ``_start_decryption``), so fresh noise now would be paid for twice.
        self._state = embed(self.public, self.fixed.encode_scores(self.bank.initial))
        self.stats.lap("encrypt", started)
        self.phase = Phase.ITERATING
        self.safe_points += 1
        log.info(
            "%s: handshake complete, %d own accounts encrypted", self.name, self.bank.n_accounts
        )

    def _begin_step(self) -> list[Message]:
        """Send the current state for step ``self._step``, or start decrypting after the last."""
        if self.descriptor.iterations == 0 or self._step[0] >= len(self.views):
            return self._start_decryption()
        p, k = self._step
        started = Stopwatch.start()
        out, sent = [], 0
        # One fresh re-randomisation per account, the same ciphertext for every peer that
        # needs it: peers already know which of our accounts they share transactions with, so
        # identical ciphertexts tell a coalition nothing new.
        wanted = self.views[p].sent()
        fresh = rerandomize(self.public, [self._state[i] for i in wanted], self.noise)
        where = {account: j for j, account in enumerate(wanted)}
        for peer in self.peers:
            positions = self.views[p].outgoing[peer].tolist()
            if positions:
                values = fresh.take(where[i] for i in positions)
                out.append(self._message(peer, Scores(values), period=p, iteration=k))
                sent += len(values)
        self.stats.lap(f"period {p} iteration {k}", started, sent)
        return out

    def _inputs_ready(self) -> bool:
        p, k = self._step
        return all((p, k, q) in self._inbox for q in self._expected[p])

    def _iterate(self) -> None:
        p, k = self._step
        started = Stopwatch.start()
        csr, weights = self._incoming[p]
        imported: list[mpz] = []
        for peer in self.peers:
            roster = self._hellos[peer].rosters[p]
            if not roster:
                continue
            values = self._inbox.pop((p, k, peer))
            if len(values) != len(roster):
                raise ProtocolError(
                    f"{peer} sent {len(values)} scores for period index {p} iteration {k}, "
                    f"its roster has {len(roster)}"
                )
            imported.extend(values)
        bases = self._state + imported
        if len(bases) != csr.n_cols:
            raise ProtocolError("imported scores do not match the rosters")  # invariant
        c_self, coefs = self.fixed.coefficients(self.schedule.delta(k), weights, csr.indptr)
        self._state = linear_step(
            self.public,
            bases,
            csr.n_rows,
            c_self,
            csr.indptr,
            csr.indices,
            coefs,
            executor=self.executor,
        )
        self.stats.lap(f"period {p} iteration {k}", started)
        log.info(
            "%s: period %s iteration %d/%d done",
            self.name,
            self.descriptor.periods[p],
            k,
            self.descriptor.iterations,
        )
        self._step = (p, k + 1) if k < self.descriptor.iterations else (p + 1, 1)
        self.safe_points += 1

    # ------------------------------------------------------------------- decryption

    def _start_decryption(self) -> list[Message]:
        started = Stopwatch.start()
        self.phase = Phase.DECRYPTING  # first: its progress counts the work that follows
        packed = pack(self.public, self._state, self.slot_bits, self.slots, executor=self.executor)
        self._packed = rerandomize(self.public, packed, self.noise)
        self._request = request_digest(self._packed)
        self._partials = {self.name: tuple(self._partial_decrypt(self._packed))}
        self.safe_points += 1
        out = self._ask_helpers()
        self.stats.lap("decrypt", started, len(self._packed) * len(out))
        return out

    def _ask_helpers(self) -> list[Message]:
        """Ask more parties (ring order after us) until ``t`` helpers are asked and neither
        unavailable nor refused."""
        parties = self.descriptor.parties
        me = parties.index(self.name)
        ring = [parties[(me + i) % len(parties)] for i in range(1, len(parties))]
        out_of_play = self._unavailable | set(self._rejected)
        alive_asked = [q for q in self._asked if q not in out_of_play]
        out = []
        for peer in ring:
            if len(alive_asked) >= self.share.key.threshold:
                break
            if peer in self._asked or peer in out_of_play:
                continue
            self._asked.append(peer)
            alive_asked.append(peer)
            out.append(self._message(peer, DecryptRequest(self._packed)))
        if len(alive_asked) < self.share.key.threshold:
            refused = "".join(f"; {q}: {why}" for q, why in self._rejected.items())
            raise ProtocolError(
                f"cannot decrypt: {self.share.key.threshold + 1} parties are needed but only "
                f"{len(alive_asked) + 1} are available{refused}; no result is written"
            )
        return out

    def _finish_decryption(self) -> None:
        started = Stopwatch.start()
        plain = combine(self.share.key, self._partials)
        check_packed(plain, self.slot_bits, self.slots, self.bank.n_accounts)
        values = unpack(plain, self.slot_bits, self.slots, self.bank.n_accounts)
        self.result = self.fixed.decode(values, self.descriptor.total_iterations)
        self.stats.lap("decrypt", started)
        log.info("%s: decrypted %d own scores", self.name, len(values))

    def _serve_requests(self) -> list[Message]:
        out = []
        for requester in list(self._waiting_requests):
            hello = self._hellos.get(requester)
            if hello is None:
                continue  # its handshake is still on the way
            request = self._waiting_requests.pop(requester)
            digest = request_digest(request.values)
            quota = math.ceil(hello.n_accounts / self.slots) if self.slots else 0
            if len(request.values) > quota:
                out.append(self._message(requester, Abort("decryption request over quota")))
                log.warning(
                    "refused %s: %d ciphertexts over quota %d",
                    requester,
                    len(request.values),
                    quota,
                )
                continue
            elsewhere = self._served_elsewhere.get(requester)
            if elsewhere is not None and elsewhere[1] != digest:
                out.append(self._message(requester, Abort("a second decryption round was refused")))
                log.warning(
                    "refused %s a decryption: %s reports serving it a different request (one "
                    "of the two deviates from the protocol)",
                    requester,
                    elsewhere[0],
                )
                continue
            self._served[requester] = digest
            self.ledger_changes += 1
            out.append(self._answer(requester, request, digest))
            out += [
                self._message(q, Served(requester, digest))
                for q in self.peers
                if q != requester and q not in self._unavailable
            ]
        return out

    def _answer(self, requester: str, request: DecryptRequest, digest: str) -> Message:
        """Our partial decryptions of ``request`` with their proof."""
        started = Stopwatch.start()
        partial = tuple(self._partial_decrypt(request.values))
        self.stats.lap("decrypt", started, len(partial))
        started = Stopwatch.start()
        proof = prove(self.share, request.values, partial, self._context(requester, digest))
        self.stats.lap("proofs", started)
        return self._message(requester, Partial(partial, proof))

    def _context(self, requester: str, digest: str) -> bytes:
        """What a proof is bound to besides the key, the helper and the batch: the run (its
        descriptor), the requester and its request."""
        return b"|".join((self.descriptor.digest(), requester.encode(), digest.encode()))

    # ---------------------------------------------------------------------- helpers

    def _live_peers(self) -> list[str]:
        return [p for p in self.peers if p not in self._unavailable]

    def _message(self, peer: str, body: Body, *, period: int = 0, iteration: int = 0) -> Message:
        self._seq[peer] += 1
        return Message(
            run_id=self.descriptor.run_id,
            sender=self.name,
            recipient=peer,
            body=body,
            period=period,
            iteration=iteration,
            seq=self._seq[peer],
        )


def check_packed(plaintexts: Sequence[int], slot_bits: int, slots: int, count: int) -> None:
    """Refuse decrypted packed plaintexts that no honest run produces: by the fixed-point
    bound every slot value is at most ``2**(slot_bits - 1)`` and a plaintext holding ``k``
    values is below ``2**(k * slot_bits)``. Damaged ciphertexts (on disk or on the wire) or a
    wrong partial decryption fail this with overwhelming probability, so nothing out of
    range is ever decoded or written."""
    bound = 1 << (slot_bits - 1)
    mask = (1 << slot_bits) - 1
    for index, plaintext in enumerate(plaintexts):
        held = min(slots, count - index * slots)
        rest = plaintext
        for _ in range(max(held, 0)):
            if rest & mask > bound:
                break
            rest >>= slot_bits
        else:
            if rest == 0:
                continue
        raise ProtocolError(
            f"decrypted value {index + 1} of {len(plaintexts)} is out of range: a ciphertext "
            "was damaged or a partial decryption is wrong; no result is written"
        )


def _check_setup(descriptor: RunDescriptor, bank: BankData, share: KeyShare) -> None:
    key = share.key
    if bank.name not in descriptor.parties:
        raise ConfigError(f"bank {bank.name!r} is not a party of the run")
    if share.party != bank.name:
        raise ConfigError(f"key share belongs to {share.party!r}, not {bank.name!r}")
    if key.parties != descriptor.parties:
        raise ConfigError(
            f"the key's parties ({', '.join(key.parties)}) differ from the run's "
            f"({', '.join(descriptor.parties)})"
        )
    if key.fingerprint() != descriptor.key_fingerprint or key.threshold != descriptor.threshold:
        raise ConfigError("the key share does not belong to the run's key")
    if set(bank.banks) != set(descriptor.parties):
        raise ConfigError(
            f"bank {bank.name!r} was loaded with banks {', '.join(bank.banks)}, "
            f"the run's parties are {', '.join(descriptor.parties)}"
        )
    unknown = sorted(set(bank.periods()) - set(descriptor.periods))
    if unknown:
        raise ConfigError(
            f"bank {bank.name!r} has transactions in period(s) {unknown} that are not among "
            f"the run's periods {list(descriptor.periods)}"
        )
