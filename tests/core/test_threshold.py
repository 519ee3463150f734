"""Threshold Paillier: any t+1 of n parties decrypt, t cannot; partial decryptions carry
proofs that refuse every wrong answer a helper can give, and ``combine`` refuses what a proof
cannot see."""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from itertools import combinations

import gmpy2
import phe
import pytest
from gmpy2 import mpz
from helpers import dealt_shares, full_decrypt
from hypothesis import given
from hypothesis import strategies as st

from riskprop.core.paillier import FreshNoise, encrypt, rerandomize
from riskprop.core.threshold import (
    CHALLENGE_BITS,
    KeyShare,
    PartialProof,
    ThresholdKey,
    combine,
    deal,
    lagrange_at_zero,
    partial_decrypt,
    product_of_powers,
    prove,
    verification_base,
    verify,
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
    exps = [2 * lagrange_at_zero(indices, i, key.delta) for i in indices]
    inv = pow(4 * key.delta**2 * key.theta, -1, n)
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


# ------------------------------------------------------------------ verifiable partials

CONTEXT = b"run digest|alice|request digest"


def forged_share(share: KeyShare, secret: int) -> KeyShare:
    """``share``'s party and key with another secret: what a cheating helper computes with."""
    return KeyShare(share.key, share.party, secret)


Answer = tuple[list[mpz], PartialProof]


def answer(share: KeyShare, cts: Sequence[mpz], context: bytes = CONTEXT) -> Answer:
    """An honest helper's partial decryptions of ``cts`` and its proof."""
    partials = partial_decrypt(share, cts)
    return partials, prove(share, cts, partials, context)


def shifted(key: ThresholdKey, values: Sequence[mpz], k: int, where: int = 0) -> list[mpz]:
    """``values`` with the one at ``where`` times ``(1 + N)**k``: its plaintext part moved."""
    n2 = key.public.nsquare
    out = list(values)
    out[where] = out[where] * pow(1 + key.public.n, k, n2) % n2
    return out


@pytest.mark.parametrize(("n", "t"), [(3, 1), (4, 1), (5, 2)])
def test_every_quorum_decrypts_with_proofs_that_verify(n: int, t: int) -> None:
    shares = dealt(n, t)
    key = shares[0].key
    assert len(key.verification) == n
    plain = plaintexts_for(key)
    cts = encrypt(key.public, plain, FreshNoise(key.public))
    answers = {s.party: answer(s, cts) for s in shares}
    for party, (partials, proof) in answers.items():
        assert verify(key, party, cts, partials, proof, CONTEXT), party
        assert 0 <= proof.challenge < 1 << CHALLENGE_BITS
    for quorum in combinations(key.parties, t + 1):
        assert combine(key, {p: answers[p][0] for p in quorum}) == plain, quorum
    # a batch of one and an empty batch verify as well
    for batch in (cts[:1], []):
        partials, proof = answer(shares[-1], batch)
        assert verify(key, shares[-1].party, batch, partials, proof, CONTEXT)


@pytest.mark.parametrize(("n", "t"), [(3, 1), (4, 1), (5, 2)])
def test_verification_keys_of_a_dealt_key_are_consistent(n: int, t: int) -> None:
    shares = dealt(n, t)
    key = shares[0].key
    key.check_verification()
    for share in shares:
        assert share.verification_key() == key.verification_key(share.party)
        assert key.verification_key(share.party) == gmpy2.powmod(
            key.base, key.delta * share.secret, key.public.nsquare
        )
    assert key.base == verification_base(key.public.n)
    assert gmpy2.jacobi(key.base % key.public.n, key.public.n) == 1


@pytest.mark.parametrize(("n", "t"), [(3, 1), (4, 1), (5, 2)])
def test_a_replaced_verification_key_is_refused_naming_its_party(n: int, t: int) -> None:
    """Any one key replaced by a plausible one (that of the share plus one) breaks the
    interpolation; the message names the party whose key was replaced."""
    shares = dealt(n, t)
    key = shares[0].key
    n2 = key.public.nsquare
    v_delta = gmpy2.powmod(key.base, key.delta, n2)
    for position, party in enumerate(key.parties):
        keys = list(key.verification)
        keys[position] = int(keys[position] * v_delta % n2)  # v**(Delta (s_i + 1))
        with pytest.raises(ConfigError, match="inconsistent") as info:
            key.with_verification(keys).check_verification()
        assert party in str(info.value), (party, str(info.value))
        keys[position] = key.public.n  # not a unit
        with pytest.raises(ConfigError, match=f"verification key of {party} is not a unit"):
            key.with_verification(keys).check_verification()


def test_verification_keys_are_required() -> None:
    key = dealt(3, 1)[0].key
    bare = ThresholdKey(key.public, key.parties, key.threshold, key.theta)
    with pytest.raises(ConfigError, match="no verification keys"):
        bare.check_verification()
    with pytest.raises(ConfigError, match="no verification keys"):
        bare.verification_key("alice")
    with pytest.raises(ConfigError, match="2 verification keys for 3 parties"):
        key.with_verification(key.verification[:2])


@pytest.fixture(scope="module")
def batch() -> tuple[list[KeyShare], list[mpz], list[int]]:
    """A (5, 2) key, ciphertexts of known plaintexts under it, and those plaintexts."""
    shares = dealt(5, 2)
    key = shares[0].key
    plain = plaintexts_for(key)
    return shares, encrypt(key.public, plain, FreshNoise(key.public)), plain


def test_verify_refuses_a_wrong_share(batch: tuple[list[KeyShare], list[mpz], list[int]]) -> None:
    shares, cts, _ = batch
    key, alice, bob = shares[0].key, shares[0], shares[1]
    for secret in (bob.secret, alice.secret + 1, alice.secret - key.delta, -alice.secret):
        partials, proof = answer(forged_share(alice, secret), cts)
        assert not verify(key, "alice", cts, partials, proof, CONTEXT)
    # honest partials with a proof made from a wrong share fail too, and the other way round
    honest, proof = answer(alice, cts)
    wrong, wrong_proof = answer(forged_share(alice, alice.secret + 1), cts)
    assert not verify(key, "alice", cts, honest, wrong_proof, CONTEXT)
    assert not verify(key, "alice", cts, wrong, proof, CONTEXT)
    assert not verify(key, "alice", cts, wrong, prove(alice, cts, wrong, CONTEXT), CONTEXT)


@pytest.mark.parametrize("k", [1, 2, -1, 12345])
@pytest.mark.parametrize("where", [0, -1])
def test_verify_refuses_a_shifted_partial(
    batch: tuple[list[KeyShare], list[mpz], list[int]], k: int, where: int
) -> None:
    shares, cts, _ = batch
    key, bob = shares[0].key, shares[1]
    honest, proof = answer(bob, cts)
    moved = shifted(key, honest, k, where)
    assert not verify(key, "bob", cts, moved, proof, CONTEXT)
    # re-proved by the helper itself (it knows its share): still refused
    assert not verify(key, "bob", cts, moved, prove(bob, cts, moved, CONTEXT), CONTEXT)
    # and such a partial indeed decrypts to something else (the proof is what catches it)
    partials = {"bob": moved, "charlie": partial_decrypt(shares[2], cts)}
    partials["alice"] = partial_decrypt(shares[0], cts)
    assert combine(key, partials) != batch[2]


def test_verify_refuses_garbage(batch: tuple[list[KeyShare], list[mpz], list[int]]) -> None:
    shares, cts, _ = batch
    key, charlie = shares[0].key, shares[2]
    n, n2 = key.public.n, key.public.nsquare
    garbage: list[mpz] = []
    while len(garbage) < len(cts):
        value = mpz(secrets.randbelow(n2))
        if gmpy2.gcd(value, n) == 1:
            garbage.append(value)
    _, proof = answer(charlie, cts)
    assert not verify(key, "charlie", cts, garbage, proof, CONTEXT)
    assert not verify(key, "charlie", cts, garbage, prove(charlie, cts, garbage, CONTEXT), CONTEXT)
    # values out of (0, N**2) or not units are refused before any work
    honest, proof = answer(charlie, cts)
    for bad in (mpz(0), mpz(n2), mpz(n2 + 1), mpz(n)):
        assert not verify(key, "charlie", cts, [bad, *honest[1:]], proof, CONTEXT)
    # a random proof for honest partials
    fake = PartialProof(secrets.randbits(CHALLENGE_BITS), secrets.randbits(key.public.bits))
    assert not verify(key, "charlie", cts, honest, fake, CONTEXT)


def test_verify_refuses_a_proof_of_another_request_batch_or_helper(
    batch: tuple[list[KeyShare], list[mpz], list[int]],
) -> None:
    shares, cts, plain = batch
    key, dora, eve = shares[0].key, shares[3], shares[4]
    partials, proof = answer(dora, cts)
    assert verify(key, "dora", cts, partials, proof, CONTEXT)
    # replayed into another request: another requester, request digest or run
    for other in (
        b"run digest|bob|request digest",
        b"run digest|alice|another digest",
        b"other run|alice|request digest",
        CONTEXT + b"|",
        b"",
    ):
        assert not verify(key, "dora", cts, partials, proof, other), other
    # another batch: the proof of one batch with the ciphertexts and partials of another
    fresh = rerandomize(key.public, cts, FreshNoise(key.public))
    fresh_partials = partial_decrypt(dora, fresh)
    assert not verify(key, "dora", fresh, fresh_partials, proof, CONTEXT)
    assert not verify(key, "dora", cts[:-1], partials[:-1], proof, CONTEXT)
    assert not verify(key, "dora", list(reversed(cts)), list(reversed(partials)), proof, CONTEXT)
    # the same batch claimed by another helper: eve cannot pass dora's answer off as hers
    assert not verify(key, "eve", cts, partials, proof, CONTEXT)
    eve_partials, eve_proof = answer(eve, cts)
    assert not verify(key, "dora", cts, eve_partials, eve_proof, CONTEXT)
    assert not verify(key, "mallory", cts, partials, proof, CONTEXT)
    # what was refused is nonetheless right: only the binding fails
    assert (
        combine(
            key, {"alice": partial_decrypt(shares[0], cts), "dora": partials, "eve": eve_partials}
        )
        == plain
    )


def test_verify_refuses_a_wrong_length_or_an_absurd_proof(
    batch: tuple[list[KeyShare], list[mpz], list[int]],
) -> None:
    shares, cts, _ = batch
    key, bob = shares[0].key, shares[1]
    partials, proof = answer(bob, cts)
    assert not verify(key, "bob", cts, partials[:-1], proof, CONTEXT)
    assert not verify(key, "bob", cts, [*partials, partials[0]], proof, CONTEXT)
    assert not verify(key, "bob", cts[:-1], partials, proof, CONTEXT)
    # a response far beyond any honest one is refused before it is used as an exponent
    for response in (1 << 100_000, -(1 << 100_000), proof.response << 4096):
        absurd = PartialProof(proof.challenge, response)
        assert not verify(key, "bob", cts, partials, absurd, CONTEXT)
    # a challenge out of range, even one congruent to the right one
    for challenge in (-1, 1 << CHALLENGE_BITS, proof.challenge + (1 << CHALLENGE_BITS)):
        odd = PartialProof(challenge, proof.response)
        assert not verify(key, "bob", cts, partials, odd, CONTEXT)


def test_an_element_of_order_two_passes_and_is_killed_by_combine(
    batch: tuple[list[KeyShare], list[mpz], list[int]],
) -> None:
    """-1 has order 2: the proof (on squares) cannot see it and need not, because the squares in
    ``combine`` remove it; the plaintexts come out right."""
    shares, cts, plain = batch
    key, n2 = shares[0].key, shares[0].key.public.nsquare
    partials = {s.party: partial_decrypt(s, cts) for s in shares[:3]}
    negated = [n2 - value for value in partials["bob"]]
    proof = prove(shares[1], cts, negated, CONTEXT)
    assert verify(key, "bob", cts, negated, proof, CONTEXT)
    assert combine(key, partials | {"bob": negated}) == plain
    one = list(partials["charlie"])
    one[2] = n2 - one[2]
    assert combine(key, partials | {"charlie": one}) == plain


def _dealt_with_primes(n: int, t: int) -> tuple[list[KeyShare], int, int, int]:
    """A key dealt here (so ``p`` and ``q`` are known) and a small odd prime ``r > n``
    dividing ``p - 1``: then ``Z_p^*`` has elements of order ``r``."""
    small = [r for r in range(n + 1, 2000) if gmpy2.is_prime(r) and r > 2]
    for _ in range(50):
        _, private = phe.generate_paillier_keypair(n_length=KEY_BITS)
        p, q = int(private.p), int(private.q)
        for r in small:
            if (p - 1) % r == 0:
                return deal(p, q, NAMES[:n], t), p, q, r
    raise AssertionError("no key with a small odd factor of p - 1 (cannot happen)")


@pytest.mark.parametrize(("n", "t"), [(3, 1), (5, 2)])
def test_an_element_of_small_odd_order_is_refused_by_combine(n: int, t: int) -> None:
    """``w`` of order ``r`` (odd, ``r > n`` so no Lagrange coefficient kills it) in ``H``: a
    helper multiplying it into a partial may pass the proof by grinding (not asserted here),
    but ``u`` then has an ``H`` part other than 1 and ``combine`` refuses it."""
    shares, p, q, r = _dealt_with_primes(n, t)
    key = shares[0].key
    big_n, n2 = key.public.n, key.public.nsquare
    g = 1
    while g == 1:
        g = pow(secrets.randbelow(p - 3) + 2, (p - 1) // r, p)  # order r mod p
    w = (g * q * pow(q, -1, p) + p * pow(p, -1, q)) % big_n  # g mod p, 1 mod q
    w_h = pow(w, big_n, n2)  # an N-th power: in H, and still of order r
    assert w_h != 1 and pow(w_h, r, n2) == 1
    plain = plaintexts_for(key)
    cts = encrypt(key.public, plain, FreshNoise(key.public))
    partials = {s.party: partial_decrypt(s, cts) for s in shares[: t + 1]}
    assert combine(key, partials) == plain
    for victim, honest in partials.items():
        tainted = list(honest)
        tainted[1] = tainted[1] * w_h % n2
        with pytest.raises(ProtocolError, match="do not combine to a plaintext"):
            combine(key, partials | {victim: tainted})
        # w**r is 1: r copies of w are harmless, as they must be
        tainted[1] = tainted[1] * pow(w_h, r - 1, n2) % n2
        assert combine(key, partials | {victim: tainted}) == plain


@pytest.mark.parametrize(("n", "t"), [(3, 1), (5, 2)])
def test_partials_are_squares(n: int, t: int) -> None:
    """The Jacobi symbol of every partial decryption mod N is 1, whatever the share's parity,
    while the ciphertexts' own symbols take both values (so the check could fail)."""
    shares = dealt(n, t)
    key = shares[0].key
    big_n = key.public.n
    cts = encrypt(key.public, list(range(64)), FreshNoise(key.public))
    assert {gmpy2.jacobi(c % big_n, big_n) for c in cts} == {-1, 1}
    for share in shares:
        for value in partial_decrypt(share, cts):
            assert gmpy2.jacobi(value % big_n, big_n) == 1


@given(
    st.lists(st.tuples(st.integers(0, 1 << 300), st.integers(0, (1 << 200) - 1)), max_size=40),
    # the modulus (N**2 in use; with 1, exponents all 0 give 1 rather than 0)
    st.integers(2, 1 << 256),
)
def test_product_of_powers_is_the_naive_product(pairs: list[tuple[int, int]], modulus: int) -> None:
    bases = [mpz(b) for b, _ in pairs]
    exponents = [e for _, e in pairs]
    expected = 1 % modulus
    for base, exponent in pairs:
        expected = expected * pow(base, exponent, modulus) % modulus
    assert product_of_powers(bases, exponents, modulus) == expected


def test_product_of_powers_edge_cases() -> None:
    key = dealt(3, 1)[0].key
    n2 = key.public.nsquare
    assert product_of_powers([], [], n2) == 1
    assert product_of_powers([mpz(7)], [0], n2) == 1
    assert product_of_powers([mpz(7)], [1], n2) == 7
    assert product_of_powers([mpz(n2 + 7)], [5], n2) == 7**5
    assert product_of_powers([mpz(3), mpz(5)], [0, 0], n2) == 1
    values = encrypt(key.public, list(range(100)), FreshNoise(key.public))
    weights = [secrets.randbits(CHALLENGE_BITS) | 1 for _ in values]
    expected = mpz(1)
    for value, weight in zip(values, weights, strict=True):
        expected = expected * gmpy2.powmod(value, weight, n2) % n2
    assert product_of_powers(values, weights, n2) == expected
