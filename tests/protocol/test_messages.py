"""The binary wire codec of protocol messages: round trips, and that every malformed input
raises ``ProtocolError`` (a node must never crash on what a peer sends)."""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest
from gmpy2 import mpz
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riskprop.core.paillier import PublicKey, Rerandomized
from riskprop.core.threshold import PartialProof
from riskprop.errors import ProtocolError
from riskprop.protocol.messages import (
    MAGIC,
    Abort,
    Body,
    Codec,
    DecryptRequest,
    Done,
    Hello,
    Message,
    Partial,
    Rejoin,
    RunDescriptor,
    Scores,
    Served,
    decode,
    encode,
)

WIDTH = 128  # bytes per value, as for a 512-bit modulus (values < N**2)
FAST = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

DESCRIPTOR = RunDescriptor(
    run_id="0123456789abcdef",
    parties=("alice", "bob", "charlie"),
    threshold=1,
    key_fingerprint="ab" * 32,
    iterations=3,
    delta_a=0.5,
    delta_b=0.25,
    periods=(0, 2, 5),
    precision_bits=48,
)

BODIES: dict[str, Body] = {
    "hello": Hello(
        DESCRIPTOR,
        7,
        (("alice-acct-1", "alice-acct-\u00e9\u4e2d"), (), ('x,y\n"z"',)),
    ),
    "scores": Scores(Rerandomized((mpz(0), mpz(1), mpz(256) ** WIDTH - 1, mpz(123456789) ** 20))),
    "decrypt_request": DecryptRequest(Rerandomized((mpz(42),))),
    "partial": Partial((), PartialProof(0x1F, -0x2A)),
    "served": Served("carol", "ab" * 32),
    "done": Done(),
    "abort": Abort('bob aborted: reason with \u00fc and "quotes"'),
    "rejoin": Rejoin(answer=True),
}


def message(body: Any, **fields: Any) -> Message:
    base: dict[str, Any] = {
        "run_id": "0123456789abcdef",
        "sender": "alice",
        "recipient": "bob",
        "period": 1,
        "iteration": 2,
        "seq": 17,
    }
    base.update(fields)
    return Message(body=body, **base)


def frame(header: Any, payload: bytes = b"", *, raw: bytes | None = None) -> bytes:
    """Bytes with a valid magic and length prefix around ``header`` (JSON) or ``raw``."""
    text = raw if raw is not None else json.dumps(header).encode()
    return MAGIC + struct.pack(">I", len(text)) + text + payload


def header_of(data: bytes) -> dict[str, Any]:
    (length,) = struct.unpack(">I", data[4:8])
    header = json.loads(data[8 : 8 + length])
    assert isinstance(header, dict)
    return header


def payload_of(data: bytes) -> bytes:
    (length,) = struct.unpack(">I", data[4:8])
    return data[8 + length :]


# ------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("kind", sorted(BODIES))
def test_round_trip_every_kind(kind: str) -> None:
    original = message(BODIES[kind])
    assert original.kind == kind
    data = encode(original, WIDTH)
    assert data.startswith(MAGIC)
    decoded = decode(data, max_width=WIDTH)
    assert decoded == original
    assert type(decoded.body) is type(original.body)
    assert encode(decoded, WIDTH) == data
    if isinstance(original.body, Scores | DecryptRequest):
        assert isinstance(decoded.body, Scores | DecryptRequest)
        assert isinstance(decoded.body.values, Rerandomized)


@pytest.mark.parametrize("kind", ["scores", "decrypt_request", "partial"])
def test_value_body_is_fixed_width_integers(kind: str) -> None:
    body = BODIES[kind]
    assert isinstance(body, Scores | DecryptRequest | Partial)
    data = encode(message(body), WIDTH)
    header = header_of(data)
    assert header["count"] == len(body.values)
    assert header["width"] == WIDTH
    payload = payload_of(data)
    assert len(payload) == WIDTH * len(body.values)
    assert [
        int.from_bytes(payload[i : i + WIDTH], "big") for i in range(0, len(payload), WIDTH)
    ] == [int(v) for v in body.values]


@pytest.mark.parametrize("kind", ["hello", "done", "abort", "rejoin"])
def test_header_only_kinds_have_no_body(kind: str) -> None:
    assert payload_of(encode(message(BODIES[kind]), WIDTH)) == b""


def test_only_rerandomized_ciphertexts_can_be_sent() -> None:
    values = (mpz(5), mpz(7))
    for kind in (Scores, DecryptRequest):
        with pytest.raises(TypeError, match="carries only re-randomised ciphertexts"):
            kind(values)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="carries only re-randomised ciphertexts"):
            kind(list(values))  # type: ignore[arg-type]
        assert kind(Rerandomized(values)).values == values
    assert (
        Partial(values, PartialProof(1, 2)).values == values
    )  # partial decryptions are not ciphertexts


#: A toy modulus: N = 2**61 - 1 (a Mersenne prime is fine for the codec, which only needs N^2).
TOY_KEY = PublicKey(2**61 - 1)


def test_codec_for_a_key_has_the_ciphertext_width_and_bound() -> None:
    codec = Codec.for_key(TOY_KEY)
    assert (codec.width, codec.bound) == (TOY_KEY.ciphertext_bytes, TOY_KEY.nsquare)
    inside = message(Scores(Rerandomized((mpz(1), mpz(TOY_KEY.nsquare - 1)))))
    data = codec.encode(inside)
    assert data == encode(inside, codec.width)
    assert codec.decode(data) == inside
    for kind in (Done(), Abort("x"), Rejoin(), Hello(DESCRIPTOR, 0, ((), (), ()))):
        assert codec.decode(codec.encode(message(kind))) == message(kind)


@pytest.mark.parametrize("kind", [Scores, DecryptRequest, Partial])
@pytest.mark.parametrize("outside", [0, TOY_KEY.nsquare, TOY_KEY.nsquare + 1])
def test_codec_refuses_values_outside_zero_and_n_squared(kind: type, outside: int) -> None:
    codec = Codec.for_key(TOY_KEY)
    values = (mpz(3), mpz(outside))
    body = Partial(values, PartialProof(1, 2)) if kind is Partial else kind(Rerandomized(values))
    data = encode(message(body), codec.width)
    assert decode(data, max_width=codec.width).body == body  # well-formed: only out of range
    with pytest.raises(ProtocolError, match=r"alice sent a value outside \(0, N\^2\)"):
        codec.decode(data)


def test_codec_refuses_a_width_over_its_own() -> None:
    codec = Codec.for_key(TOY_KEY)
    data = encode(message(Partial((mpz(3),), PartialProof(1, 2))), codec.width + 1)
    with pytest.raises(ProtocolError, match="bad value count or width"):
        codec.decode(data)


def test_key_generation_codec_carries_no_values() -> None:
    codec = Codec()
    assert (codec.width, codec.bound) == (0, None)
    with pytest.raises(ProtocolError):
        codec.decode(encode(message(Partial((mpz(3),), PartialProof(1, 2))), 1))


def test_rejoin_answer_defaults_to_false_and_must_be_a_boolean() -> None:
    header = header_of(encode(message(Rejoin()), WIDTH))
    assert header["answer"] is False
    del header["answer"]  # as sent by a node from before the answer existed
    assert decode(frame(header)).body == Rejoin(answer=False)
    for bad in (1, "yes", None):
        header["answer"] = bad
        with pytest.raises(ProtocolError, match="rejoin answer must be true or false"):
            decode(frame(header))


@given(
    values=st.lists(st.integers(min_value=0, max_value=256**WIDTH - 1), max_size=6),
    kind=st.sampled_from([Scores, DecryptRequest, Partial]),
    period=st.integers(0, 10**6),
    iteration=st.integers(0, 10**6),
    seq=st.integers(0, 2**40),
    names=st.lists(st.text(min_size=1, max_size=12), min_size=2, max_size=2),
)
@FAST
def test_round_trip_random_values(
    values: list[int], kind: type, period: int, iteration: int, seq: int, names: list[str]
) -> None:
    ciphertexts = tuple(mpz(v) for v in values)
    original = message(
        Partial(ciphertexts, PartialProof(3, 4))
        if kind is Partial
        else kind(Rerandomized(ciphertexts)),
        sender=names[0],
        recipient=names[1],
        period=period,
        iteration=iteration,
        seq=seq,
    )
    assert decode(encode(original, WIDTH), max_width=WIDTH) == original


# --------------------------------------------------------------------- malformations


def test_every_truncation_is_refused() -> None:
    for kind in ("scores", "hello", "abort", "done"):
        data = encode(message(BODIES[kind]), WIDTH)
        for cut in range(len(data)):
            with pytest.raises(ProtocolError):
                decode(data[:cut])


def test_extra_trailing_bytes_are_refused() -> None:
    for kind in sorted(BODIES):
        data = encode(message(BODIES[kind]), WIDTH)
        with pytest.raises(ProtocolError):
            decode(data + b"\x00")


@pytest.mark.parametrize("magic", [b"RPM2", b"rpm1", b"\x00\x00\x00\x00", b"RPM"])
def test_bad_magic(magic: bytes) -> None:
    data = encode(message(BODIES["scores"]), WIDTH)
    with pytest.raises(ProtocolError, match="magic"):
        decode(magic + data[4:])


def test_header_length_beyond_the_data() -> None:
    data = encode(message(BODIES["done"]), WIDTH)
    with pytest.raises(ProtocolError):
        decode(data[:4] + struct.pack(">I", 2**32 - 1) + data[8:])


@pytest.mark.parametrize(
    ("field", "value"),
    [("count", 3), ("count", 5), ("count", -1), ("width", WIDTH - 1), ("width", 0), ("width", -8)],
)
def test_wrong_count_or_width(field: str, value: int) -> None:
    data = encode(message(BODIES["scores"]), WIDTH)
    header = header_of(data)
    header[field] = value
    with pytest.raises(ProtocolError):
        decode(frame(header, payload_of(data)))


def test_width_above_the_limit() -> None:
    data = encode(message(BODIES["scores"]), WIDTH)
    assert decode(data, max_width=WIDTH).body == BODIES["scores"]
    with pytest.raises(ProtocolError):
        decode(data, max_width=WIDTH - 1)


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b"not json", b"\xff\xfe\x00", b'{"kind": "done"', b"\xef\xbb\xbf{}", b"NaN]"],
)
def test_non_json_header(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode(frame(None, raw=raw))


@pytest.mark.parametrize("header", [[], ["kind", "done"], "done", 5, None, True, 1.5])
def test_header_that_is_not_an_object(header: Any) -> None:
    with pytest.raises(ProtocolError):
        decode(frame(header))


def _mutations() -> list[tuple[str, str, Any]]:
    """(kind, field, bad value): wrong types, missing fields (None = delete)."""
    wrong_types: list[Any] = ["1", 1.0, True, None, [], {}]
    out: list[tuple[str, str, Any]] = []
    for kind in sorted(BODIES):
        for field in ("version", "period", "iteration", "seq"):
            out += [(kind, field, v) for v in wrong_types]
        for field in ("run_id", "sender", "recipient", "kind"):
            out += [(kind, field, v) for v in (1, None, ["alice"], {"a": 1}, True)]
        out += [(kind, field, "<delete>") for field in ("run_id", "sender", "kind", "seq")]
    out += [("scores", "count", v) for v in ("4", 4.0, None, True, "<delete>")]
    out += [("scores", "width", v) for v in ("128", 128.0, None, "<delete>")]
    out += [("abort", "reason", v) for v in (1, None, ["x"], "<delete>")]
    rosters: tuple[Any, ...] = ("abc", 1, None, [1], [["a", 2]], [{"a": 1}])
    out += [("hello", "rosters", v) for v in rosters]
    out += [("hello", "n_accounts", v) for v in ("7", 7.5, None, True, "<delete>")]
    descriptors: tuple[Any, ...] = ([], "x", 1, None, {}, "<delete>")
    out += [("hello", "descriptor", v) for v in descriptors]
    out += [("kind_unknown", "kind", "hello_world")]
    return out


@pytest.mark.parametrize(("kind", "field", "value"), _mutations())
def test_malformed_header_fields(kind: str, field: str, value: Any) -> None:
    data = encode(message(BODIES.get(kind, Done())), WIDTH)
    header = header_of(data)
    if value == "<delete>":
        del header[field]
    else:
        header[field] = value
    with pytest.raises(ProtocolError):
        decode(frame(header, payload_of(data)))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("threshold", "1"),
        ("iterations", 3.0),
        ("iterations", None),
        ("delta_a", "0.5"),
        ("delta_b", None),
        ("periods", [0, "2"]),
        ("periods", 5),
        ("parties", 5),
        ("parties", ["alice", 2]),
        ("precision_bits", True),
        ("key_fingerprint", 0),
        ("run_id", None),
        ("protocol_version", "1"),
    ],
)
def test_malformed_descriptor(field: str, value: Any) -> None:
    data = encode(message(BODIES["hello"]), WIDTH)
    header = header_of(data)
    header["descriptor"][field] = value
    with pytest.raises(ProtocolError):
        decode(frame(header))
    del header["descriptor"][field]
    with pytest.raises(ProtocolError):
        decode(frame(header))


@pytest.mark.parametrize("kind", ["hello", "done", "abort"])
def test_unexpected_body(kind: str) -> None:
    data = encode(message(BODIES[kind]), WIDTH)
    with pytest.raises(ProtocolError, match="unexpected body"):
        decode(data + b"\x00" * WIDTH)


# ------------------------------------------------------------------ arbitrary inputs

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _decode_or_protocol_error(data: bytes) -> None:
    try:
        result = decode(data, max_width=WIDTH)
    except ProtocolError:
        return
    assert isinstance(result, Message)


@given(st.binary(max_size=300))
@FAST
def test_arbitrary_bytes(data: bytes) -> None:
    _decode_or_protocol_error(data)


@given(st.binary(max_size=200), st.binary(max_size=64))
@FAST
def test_arbitrary_bytes_after_a_valid_prefix(header: bytes, payload: bytes) -> None:
    _decode_or_protocol_error(frame(None, payload, raw=header))


@given(st.dictionaries(st.text(max_size=12), json_values, max_size=10), st.binary(max_size=64))
@FAST
def test_arbitrary_json_header(header: dict[str, Any], payload: bytes) -> None:
    _decode_or_protocol_error(frame(header, payload))


@given(
    kind=st.sampled_from(sorted(BODIES)),
    changes=st.dictionaries(
        st.sampled_from(
            [
                "kind",
                "count",
                "width",
                "rosters",
                "descriptor",
                "n_accounts",
                "reason",
                "seq",
                "period",
            ]
        ),
        json_values,
        min_size=1,
        max_size=3,
    ),
    cut=st.integers(0, 3 * WIDTH),
)
@FAST
def test_mutated_valid_header(kind: str, changes: dict[str, Any], cut: int) -> None:
    data = encode(message(BODIES[kind]), WIDTH)
    header = header_of(data) | changes
    _decode_or_protocol_error(frame(header, payload_of(data)[cut:]))


@given(
    field=st.sampled_from(sorted(DESCRIPTOR.to_json())),
    value=json_values,
)
@FAST
def test_mutated_descriptor(field: str, value: Any) -> None:
    data = encode(message(BODIES["hello"]), WIDTH)
    header = header_of(data)
    header["descriptor"][field] = value
    _decode_or_protocol_error(frame(header))


# ------------------------------------------------- header limits (json recursion, int digits)


def test_deeply_nested_header_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        decode(frame(None, raw=b"[" * 100_000))


def test_huge_integer_in_header_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        decode(frame(None, raw=b'{"kind": ' + b"1" * 5000 + b"}"))
