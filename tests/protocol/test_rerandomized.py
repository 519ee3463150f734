"""A ciphertext that may leave a bank is a type of its own: only re-randomised values are sent."""

from __future__ import annotations

import ast
from pathlib import Path

import phe
import pytest
from gmpy2 import mpz

from riskprop.core.paillier import FreshNoise, PublicKey, Rerandomized, embed, rerandomize
from riskprop.core.threshold import PartialProof, combine, deal, partial_decrypt
from riskprop.protocol.messages import Codec, DecryptRequest, Message, Partial, Scores

PACKAGE = Path(__file__).resolve().parents[2] / "riskprop"
#: The only places that may wrap values as re-randomised: the function that re-randomises
#: (and selects among its output), and the readers of what was re-randomised before it was
#: sent or saved.
MAKERS = {"core/paillier.py", "protocol/messages.py", "protocol/checkpoint.py"}


def test_only_rerandomize_and_the_readers_make_sendable_values() -> None:
    found = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "Rerandomized"
            ):
                found.add(str(path.relative_to(PACKAGE)))
    assert found <= MAKERS, f"Rerandomized made outside {sorted(MAKERS)}: {sorted(found - MAKERS)}"
    assert "core/paillier.py" in found


@pytest.mark.parametrize("body", [Scores, DecryptRequest])
def test_messages_refuse_values_that_were_not_rerandomised(
    body: type[Scores] | type[DecryptRequest],
) -> None:
    key = PublicKey(mpz(2**127 - 1) * (2**89 - 1))
    noise_free = embed(key, [1, 2, 3])
    with pytest.raises(TypeError, match="re-randomised"):
        body(tuple(noise_free))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="re-randomised"):
        body(noise_free)  # type: ignore[arg-type]
    assert body(rerandomize(key, noise_free, FreshNoise(key))).values != tuple(noise_free)


def test_rerandomised_values_decrypt_to_the_same_plaintexts_and_survive_the_wire() -> None:
    _, private = phe.generate_paillier_keypair(n_length=512)
    shares = {s.party: s for s in deal(private.p, private.q, ["a", "b", "c"], 1)}
    key = shares["a"].key
    plain = [0, 7, 123456789]
    fresh = rerandomize(key.public, embed(key.public, plain), FreshNoise(key.public))
    assert isinstance(fresh, Rerandomized) and isinstance(fresh.take([2, 0]), Rerandomized)
    assert fresh.take([2, 0]) == (fresh[2], fresh[0])
    assert all(c != e for c, e in zip(fresh, embed(key.public, plain), strict=True))
    codec = Codec.for_key(key.public)
    for body in (Scores(fresh), DecryptRequest(fresh)):
        decoded = codec.decode(codec.encode(Message("r", "a", "b", body))).body
        assert isinstance(decoded, Scores | DecryptRequest)
        assert isinstance(decoded.values, Rerandomized) and decoded.values == fresh
    partials = {name: partial_decrypt(shares[name], fresh) for name in ("a", "b")}
    assert combine(key, partials) == plain
    partial = codec.decode(
        codec.encode(Message("r", "a", "b", Partial(tuple(fresh), PartialProof(1, 2))))
    ).body
    assert isinstance(partial, Partial) and not isinstance(partial.values, Rerandomized)
