"""Typed protocol messages and their binary wire format.

Every message has a header (protocol version, run id, sender, recipient, kind, period index,
iteration, sequence number) and a body of one of the frozen body types below. On the wire::

    b"RPM1" | u32 header length | header (UTF-8 JSON) | body

where the body of a value-carrying kind is ``count`` big-endian integers of ``width`` bytes
each (``count`` and ``width`` are header fields), that of ``KeygenRound`` its opaque payload,
and the body of ``Hello`` and ``Abort`` is empty (their few fields travel in the header).
No pickle, no per-account strings after the handshake.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from typing import Any

from gmpy2 import mpz

from riskprop.core.jsontypes import expect_int as _int
from riskprop.core.jsontypes import expect_list as _list
from riskprop.core.jsontypes import expect_number as _float
from riskprop.core.jsontypes import expect_str as _str
from riskprop.core.paillier import PublicKey, Rerandomized
from riskprop.core.params import RunParameters
from riskprop.core.threshold import PartialProof, ThresholdKey
from riskprop.errors import ProtocolError

MAGIC = b"RPM1"
#: 2: partial decryptions ``c**(2 Delta s_i)`` with proofs, ``Served`` notices.
PROTOCOL_VERSION = 2
#: Largest header accepted when decoding (the Hello header holds the rosters).
MAX_HEADER_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class RunDescriptor:
    """What every party of a run must agree on before any ciphertext is made."""

    run_id: str
    parties: tuple[str, ...]
    threshold: int
    key_fingerprint: str
    iterations: int
    delta_a: float
    delta_b: float
    periods: tuple[int, ...]
    precision_bits: int
    noise: str = "djn"
    protocol_version: int = PROTOCOL_VERSION

    @classmethod
    def create(cls, run_id: str, key: ThresholdKey, parameters: RunParameters) -> RunDescriptor:
        """The descriptor of a run of ``parameters`` under ``key`` (the one constructor used
        by nodes, simulations and tests)."""
        return cls(
            run_id=run_id,
            parties=key.parties,
            threshold=key.threshold,
            key_fingerprint=key.fingerprint(),
            iterations=parameters.iterations,
            delta_a=parameters.delta_a,
            delta_b=parameters.delta_b,
            periods=parameters.periods,
            precision_bits=parameters.precision_bits,
            noise=parameters.noise,
        )

    @property
    def parameters(self) -> RunParameters:
        """The run's parameters (``ParameterError`` if a peer sent values out of range)."""
        return RunParameters(
            iterations=self.iterations,
            delta_a=self.delta_a,
            delta_b=self.delta_b,
            precision_bits=self.precision_bits,
            periods=self.periods,
            noise=self.noise,
        )

    @property
    def total_iterations(self) -> int:
        return self.iterations * len(self.periods)

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "parties": list(self.parties),
            "threshold": self.threshold,
            "key_fingerprint": self.key_fingerprint,
            "iterations": self.iterations,
            "delta_a": self.delta_a,
            "delta_b": self.delta_b,
            "periods": list(self.periods),
            "precision_bits": self.precision_bits,
            "noise": self.noise,
            "protocol_version": self.protocol_version,
        }

    @classmethod
    def from_json(cls, data: Any) -> RunDescriptor:
        try:
            return cls(
                run_id=_str(data["run_id"]),
                parties=tuple(_str(p) for p in data["parties"]),
                threshold=_int(data["threshold"]),
                key_fingerprint=_str(data["key_fingerprint"]),
                iterations=_int(data["iterations"]),
                delta_a=_float(data["delta_a"]),
                delta_b=_float(data["delta_b"]),
                periods=tuple(_int(p) for p in data["periods"]),
                precision_bits=_int(data["precision_bits"]),
                noise=_str(data["noise"]),
                protocol_version=_int(data["protocol_version"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"malformed run descriptor ({type(exc).__name__}: {exc})") from None

    def digest(self) -> bytes:
        """SHA-256 of the canonical JSON: names the run in proofs."""
        text = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).digest()

    def first_difference(self, other: RunDescriptor) -> str | None:
        """Name of the first field in which the two descriptors differ."""
        mine, theirs = self.to_json(), other.to_json()
        for name in ("protocol_version", *mine):
            if mine[name] != theirs[name]:
                return name
        return None


# ------------------------------------------------------------------------------ bodies


@dataclass(frozen=True)
class Hello:
    """Handshake: the descriptor, how many accounts the sender will have decrypted, and for
    every period the ids of the sender's accounts whose scores it sends to the recipient."""

    descriptor: RunDescriptor
    n_accounts: int
    rosters: tuple[tuple[str, ...], ...]


def _must_be_rerandomized(body: Scores | DecryptRequest) -> None:
    if not isinstance(body.values, Rerandomized):
        raise TypeError(
            f"{type(body).__name__} carries only re-randomised ciphertexts (paillier.rerandomize)"
        )


@dataclass(frozen=True)
class Scores:
    """Re-randomised ciphertexts of the sender's roster accounts for (period, iteration)."""

    values: Rerandomized

    def __post_init__(self) -> None:
        _must_be_rerandomized(self)


@dataclass(frozen=True)
class DecryptRequest:
    """Re-randomised ciphertexts the sender asks the recipient to partially decrypt."""

    values: Rerandomized

    def __post_init__(self) -> None:
        _must_be_rerandomized(self)


@dataclass(frozen=True)
class Partial:
    """The sender's partial decryptions, in request order, and its proof for the batch
    (``core.threshold.prove``)."""

    values: tuple[mpz, ...]
    proof: PartialProof


@dataclass(frozen=True)
class Served:
    """The sender served ``requester`` the decryption request with SHA-256 ``digest``: every
    other helper refuses that requester a different one (one decryption round per bank)."""

    requester: str
    digest: str


@dataclass(frozen=True)
class Done:
    """The sender has its result and needs nothing more from anyone."""


@dataclass(frozen=True)
class Abort:
    """The sender stopped the run; ``reason`` is one line for operators."""

    reason: str


@dataclass(frozen=True)
class Rejoin:
    """The sender (re)started: please send it again everything you sent it in this run.

    A recipient that is itself a restarted process also answers with ``Rejoin(answer=True)``
    (which is never answered): its own ``Rejoin`` may have reached the sender's previous
    process, which died before replaying, and the answer is how it gets that replay after all.
    A node on its first process never lost a message, so it does not ask."""

    answer: bool = False


@dataclass(frozen=True)
class KeygenRound:
    """One round of the dealerless key generation (the message's ``iteration`` is the round):
    an opaque payload of ``core.dkg.encode_fields``."""

    payload: bytes


Body = Hello | Scores | DecryptRequest | Partial | Served | Done | Abort | Rejoin | KeygenRound
KINDS: dict[str, type[Any]] = {
    "rejoin": Rejoin,
    "hello": Hello,
    "scores": Scores,
    "decrypt_request": DecryptRequest,
    "partial": Partial,
    "served": Served,
    "done": Done,
    "abort": Abort,
    "keygen": KeygenRound,
}
KIND_OF = {cls: name for name, cls in KINDS.items()}
VALUE_KINDS = (Scores, DecryptRequest, Partial)


@dataclass(frozen=True)
class Message:
    """A body with its routing header. ``period`` is the index into the run's periods."""

    run_id: str
    sender: str
    recipient: str
    body: Body
    period: int = 0
    iteration: int = 0
    seq: int = 0
    version: int = field(default=PROTOCOL_VERSION)

    @property
    def kind(self) -> str:
        return KIND_OF[type(self.body)]


# ------------------------------------------------------------------------------- codec


def encode(message: Message, width: int) -> bytes:
    """Serialise; ``width`` is the byte width of one value (the ciphertext size)."""
    header: dict[str, Any] = {
        "version": message.version,
        "run_id": message.run_id,
        "sender": message.sender,
        "recipient": message.recipient,
        "kind": message.kind,
        "period": message.period,
        "iteration": message.iteration,
        "seq": message.seq,
    }
    body = message.body
    payload = b""
    if isinstance(body, VALUE_KINDS):
        header["count"] = len(body.values)
        header["width"] = width
        payload = b"".join(int(v).to_bytes(width, "big") for v in body.values)
        if isinstance(body, Partial):
            header["proof"] = [format(body.proof.challenge, "x"), format(body.proof.response, "x")]
    elif isinstance(body, Hello):
        header["descriptor"] = body.descriptor.to_json()
        header["n_accounts"] = body.n_accounts
        header["rosters"] = [list(r) for r in body.rosters]
    elif isinstance(body, Served):
        header["requester"] = body.requester
        header["digest"] = body.digest
    elif isinstance(body, Abort):
        header["reason"] = body.reason
    elif isinstance(body, Rejoin):
        header["answer"] = body.answer
    elif isinstance(body, KeygenRound):
        payload = body.payload
    raw = json.dumps(header, separators=(",", ":")).encode()
    return MAGIC + struct.pack(">I", len(raw)) + raw + payload


def decode(data: bytes, max_width: int | None = None) -> Message:
    """Parse bytes made by ``encode``; any malformation raises ``ProtocolError``."""
    if len(data) < 8 or data[:4] != MAGIC:
        raise ProtocolError("not a riskprop message (bad magic)")
    (length,) = struct.unpack(">I", data[4:8])
    if length > MAX_HEADER_BYTES or 8 + length > len(data):
        raise ProtocolError("truncated or oversized message header")
    try:
        header = json.loads(data[8 : 8 + length])
    except (UnicodeDecodeError, ValueError, RecursionError):  # JSONDecodeError is a ValueError
        raise ProtocolError(
            "message header is not JSON (or nested or numeric beyond limits)"
        ) from None
    if not isinstance(header, dict):
        raise ProtocolError("message header is not an object")
    payload = data[8 + length :]
    if header.get("version") != PROTOCOL_VERSION:
        raise ProtocolError(f"unsupported protocol version {header.get('version')!r}")
    try:
        kind = KINDS[_str(header["kind"])]
        body: Body
        if kind in VALUE_KINDS:
            count, width = _int(header["count"]), _int(header["width"])
            if count < 0 or width <= 0 or (max_width is not None and width > max_width):
                raise ProtocolError("bad value count or width")
            if len(payload) != count * width:
                raise ProtocolError(f"body is {len(payload)} bytes, expected {count * width}")
            values = tuple(
                mpz(int.from_bytes(payload[i : i + width], "big"))
                for i in range(0, count * width, width)
            )
            # what arrives was re-randomised by its sender (a receiver never forwards it)
            if kind is Partial:
                body = Partial(values, _proof(header["proof"]))
            else:
                body = kind(Rerandomized(values))
        elif kind is KeygenRound:
            body = KeygenRound(bytes(payload))
        elif payload:
            raise ProtocolError(f"unexpected body on a {header['kind']} message")
        elif kind is Hello:
            rosters = header["rosters"]
            if not isinstance(rosters, list):
                raise ProtocolError("rosters must be a list")
            body = Hello(
                descriptor=RunDescriptor.from_json(header["descriptor"]),
                n_accounts=_int(header["n_accounts"]),
                rosters=tuple(tuple(_str(i) for i in _list(r)) for r in rosters),
            )
        elif kind is Abort:
            body = Abort(_str(header["reason"]))
        elif kind is Served:
            body = Served(_str(header["requester"]), _str(header["digest"]))
        elif kind is Rejoin:
            answer = header.get("answer", False)  # absent from nodes before the answer
            if not isinstance(answer, bool):
                raise ProtocolError("rejoin answer must be true or false")
            body = Rejoin(answer)
        else:
            body = kind()
        return Message(
            run_id=_str(header["run_id"]),
            sender=_str(header["sender"]),
            recipient=_str(header["recipient"]),
            body=body,
            period=_int(header["period"]),
            iteration=_int(header["iteration"]),
            seq=_int(header["seq"]),
            version=_int(header["version"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"malformed message header ({type(exc).__name__}: {exc})") from None


def _proof(value: Any) -> PartialProof:
    """A proof from its header field: two hexadecimal integers, each of bounded length."""
    items = _list(value)
    if len(items) != 2 or any(not isinstance(v, str) or len(v) > 4096 for v in items):
        raise ProtocolError("a partial decryption's proof must be two hexadecimal integers")
    try:
        return PartialProof(int(items[0], 16), int(items[1], 16))
    except ValueError:
        raise ProtocolError("a partial decryption's proof is not hexadecimal") from None


@dataclass(frozen=True)
class Codec:
    """The wire format of one run (or key generation): ``width`` bytes per value and every
    value in ``(0, bound)``. For a run ``width`` is the ciphertext size and ``bound`` is
    ``N**2`` (``Codec.for_key``); key generation sends no values (``Codec()``). Transports
    encode and decode through it, so a message that reaches a session is well-formed."""

    width: int = 0
    bound: int | None = None

    @classmethod
    def for_key(cls, public: PublicKey) -> Codec:
        return cls(public.ciphertext_bytes, public.nsquare)

    def encode(self, message: Message) -> bytes:
        return encode(message, self.width)

    def decode(self, data: bytes) -> Message:
        """``decode`` with this width as the limit; a value outside ``(0, bound)`` is a
        ``ProtocolError``."""
        message = decode(data, max_width=self.width)
        bound = self.bound
        values = message.body.values if isinstance(message.body, VALUE_KINDS) else ()
        if bound is not None and any(not 0 < v < bound for v in values):
            raise ProtocolError(f"{message.sender} sent a value outside (0, N^2) in {message.kind}")
        return message
