"""Threshold Paillier: any t+1 of n parties decrypt, t cannot."""

from __future__ import annotations

import math
from itertools import combinations

import gmpy2
import phe
import pytest
from gmpy2 import mpz
from helpers import dealt_shares, full_decrypt

from riskprop.core.paillier import FreshNoise, encrypt, rerandomize
from riskprop.core.threshold import (
    KeyShare,
    ThresholdKey,
    combine,
    deal,
    lagrange_at_zero,
    partial_decrypt,
)
from riskprop.errors import ConfigError, ProtocolError

KEY_BITS = 512
NAMES = ("alice", "bob", "charlie", "dora", "eve")
_DEALT: dict[tuple[int, int], list[KeyShare]] = {}


def dealt(n: int, t: int) -> list[KeyShare]:
    """Shares of a 512-bit key for the first ``n`` names, cached per (n, t)."""
    if (n, t) not in _DEALT:
        _, private = phe.generate_paillier_keypair(n_length=KEY_BITS)
        _DEALT[n, t] = deal(private.p, private.q, NAMES[:n], t)
    return _DEALT[n, t]


def plaintexts_for(key: ThresholdKey) -> list[int]:
    n = key.public.n
    return [0, 1, 2, 12345678901234567890, n // 3, n - 2, n - 1]


def manual_combine(key: ThresholdKey, partials: dict[str, list[mpz]]) -> list[int]:
    """``combine``'s formula applied to exactly the given parties, however few."""
    n, n2 = key.public.n, key.public.nsquare
    indices = [key.index(p) for p in partials]
    exps = [lagrange_at_zero(indices, i, key.delta) for i in indices]
    inv = pow(key.delta * key.theta, -1, n)
    out = []
    for column in zip(*partials.values(), strict=True):
        u = mpz(1)
        for value, e in zip(column, exps, strict=True):
            u = u * gmpy2.powmod(value, e, n2) % n2
        out.append(int((u - 1) // n * inv % n))
    return out


@pytest.mark.parametrize(("n", "t"), [(3, 1), (5, 2)])
def test_every_quorum_of_t_plus_one_decrypts(n: int, t: int) -> None:
    shares = dealt(n, t)
    key = shares[0].key
    assert key.threshold == t and key.parties == NAMES[:n]
    assert [s.index for s in shares] == list(range(1, n + 1))
    plain = plaintexts_for(key)
    cts = encrypt(key.public, plain, FreshNoise(key.public))
    partials = {s.party: partial_decrypt(s, cts) for s in shares}
    quorums = list(combinations(key.parties, t + 1))
    assert len(quorums) == math.comb(n, t + 1)
    for quorum in quorums:
        assert combine(key, {p: partials[p] for p in quorum}) == plain, quorum
    # more than t+1 partials: still the plaintexts, whatever the order of the mapping
    assert combine(key, dict(reversed(partials.items()))) == plain
    # a re-randomised ciphertext decrypts to the same values
    fresh = rerandomize(key.public, cts, FreshNoise(key.public))
    assert all(a != b for a, b in zip(fresh, cts, strict=True))
    quorum = key.parties[-(t + 1) :]
    assert (
        combine(key, {s.party: partial_decrypt(s, fresh) for s in shares if s.party in quorum})
        == plain
    )


@pytest.mark.parametrize(("n", "t"), [(3, 1), (5, 2)])
def test_t_parties_do_not_decrypt(n: int, t: int) -> None:
    shares = dealt(n, t)
    key = shares[0].key
    by_name = {s.party: s for s in shares}
    plain = plaintexts_for(key)
    cts = encrypt(key.public, plain, FreshNoise(key.public))
    for group in combinations(key.parties, t):
        partials = {p: partial_decrypt(by_name[p], cts) for p in group}
        # combine refuses outright
        with pytest.raises(ValueError, match=f"need partial decryptions from {t + 1} parties"):
            combine(key, partials)
        # the same formula with only t shares gives garbage, not the plaintexts
        wrong = manual_combine(key, partials)
        assert all(w != m for w, m in zip(wrong, plain, strict=True)), group
        if t >= 2:
            # a key that pretends t-1 is enough: combine then uses t shares, and fails
            pretend = ThresholdKey(key.public, key.parties, t - 1, key.theta)
            with pytest.raises(ProtocolError, match="do not combine to a plaintext"):
                combine(pretend, partials)
    # sanity of manual_combine: with t+1 shares it is combine
    quorum = {p: partial_decrypt(by_name[p], cts) for p in key.parties[: t + 1]}
    assert manual_combine(key, quorum) == plain


def test_combine_refuses_too_few_and_uneven() -> None:
    shares = dealt(3, 1)
    key = shares[0].key
    cts = encrypt(key.public, [5, 6], FreshNoise(key.public))
    with pytest.raises(ValueError):
        combine(key, {})
    with pytest.raises(ValueError):
        combine(key, {"alice": partial_decrypt(shares[0], cts)})
    with pytest.raises(ValueError, match="length"):
        combine(
            key,
            {"alice": partial_decrypt(shares[0], cts), "bob": partial_decrypt(shares[1], cts[:1])},
        )


def test_share_values_differ_and_repr_hides_the_secret() -> None:
    shares = dealt(5, 2)
    assert len({s.secret for s in shares}) == len(shares)
    for share in shares:
        text = repr(share)
        assert str(share.secret) not in text
        assert format(share.secret, "x") not in text


@pytest.mark.parametrize(("n", "t"), [(2, 0), (2, 2), (3, 3), (1, 1)])
def test_deal_refuses_bad_thresholds(n: int, t: int) -> None:
    _, private = phe.generate_paillier_keypair(n_length=256)
    with pytest.raises(ConfigError):
        deal(private.p, private.q, NAMES[:n], t)


def test_deal_refuses_duplicate_parties() -> None:
    _, private = phe.generate_paillier_keypair(n_length=256)
    with pytest.raises(ConfigError, match="unique"):
        deal(private.p, private.q, ["alice", "alice", "bob"], 1)


def test_rerandomize_gives_a_fresh_ciphertext_of_the_same_plaintext() -> None:
    shares = dealt_shares(("alice", "bob", "charlie"), 1)
    public = shares["alice"].key.public
    noise = FreshNoise(public)
    plain = [0, 1, 2**48, public.n - 1]
    cts = encrypt(public, plain, noise)
    again = encrypt(public, plain, noise)
    once = rerandomize(public, cts, noise)
    twice = rerandomize(public, cts, noise)
    for group in zip(cts, again, once, twice, strict=True):
        assert len(set(map(int, group))) == 4
    for values in (cts, again, once, twice):
        assert full_decrypt(shares, values) == plain
