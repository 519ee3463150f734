"""Dealerless key generation run in lockstep (``riskprop.protocol.keygen``): the primes are
prime, every party holds the same key, any t+1 decrypt and t cannot, a run uses the key."""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import replace
from pathlib import Path

import gmpy2
import numpy as np
import pytest

from riskprop.core.paillier import FreshNoise, encrypt
from riskprop.core.threshold import (
    DEFAULT_STATISTICAL_SECURITY,
    KeyShare,
    ThresholdKey,
    combine,
    lagrange_at_zero,
    partial_decrypt,
)
from riskprop.errors import ConfigError, ParameterError
from riskprop.protocol.keygen import (
    DEFAULT_BIPRIMALITY_TESTS,
    DEFAULT_SIGMA,
    MIN_BIPRIMALITY_TESTS,
    MIN_SIGMA,
    KeygenParams,
    KeygenParty,
    run_in_lockstep,
)

BITS = 512
#: A key generated in lockstep: its parameters, every party's share and every party's state.
Generated = tuple[KeygenParams, dict[str, KeyShare], dict[str, KeygenParty]]


def names(n: int) -> tuple[str, ...]:
    return tuple(f"bank{i}" for i in range(1, n + 1))


@pytest.fixture(scope="module", params=[(3, 1), (5, 2)], ids=["n3t1", "n5t2"])
def generated(request: pytest.FixtureRequest) -> Generated:
    n, t = request.param
    params = KeygenParams(names(n), t, bits=BITS, sigma=40, session=f"test-{n}")
    shares, parties = run_in_lockstep(params)
    return params, shares, parties


def factors(parties: dict[str, KeygenParty]) -> tuple[int, int]:
    """``p`` and ``q``, the sums of the parties' additive shares of them."""
    p = q = 0
    for party in parties.values():
        assert party.factor_shares is not None  # the generation is over
        p += party.factor_shares[0]
        q += party.factor_shares[1]
    return p, q


def test_reconstructed_factors_are_prime_and_multiply_to_n(generated: Generated) -> None:
    params, shares, parties = generated
    p, q = factors(parties)
    n = shares[params.parties[0]].key.public.n
    assert p * q == n
    assert gmpy2.is_prime(p, 50) and gmpy2.is_prime(q, 50)
    assert p != q and p % 4 == 3 and q % 4 == 3
    assert n.bit_length() == BITS and p.bit_length() == q.bit_length() == BITS // 2
    assert math.gcd(n, (p - 1) * (q - 1)) == 1


def test_every_party_holds_the_same_public_key(generated: Generated) -> None:
    params, shares, _ = generated
    keys = {share.key for share in shares.values()}
    assert len(keys) == 1
    (key,) = keys
    assert key.parties == params.parties and key.threshold == params.threshold


def _phi_and_secret(generated: Generated) -> tuple[ThresholdKey, int, int]:
    """The key, ``phi(N)`` from the parties' factor shares, and the shared secret ``f(0)``
    interpolated (times ``Delta``) from the first ``t + 1`` shares, checked divisible."""
    params, shares, parties = generated
    key = shares[params.parties[0]].key
    p, q = factors(parties)
    chosen = params.parties[: params.threshold + 1]
    indices = [key.index(c) for c in chosen]
    delta_d = sum(
        lagrange_at_zero(indices, key.index(c), key.delta) * shares[c].secret for c in chosen
    )
    assert delta_d % key.delta == 0
    return key, (p - 1) * (q - 1), delta_d // key.delta


def test_shared_secret_is_a_multiple_of_phi_and_theta_is_its_residue(generated: Generated) -> None:
    key, phi, d = _phi_and_secret(generated)
    assert d % phi == 0 and d != 0
    assert d % key.public.n == key.theta


def test_the_shared_secret_is_no_longer_than_hiding_theta_needs(generated: Generated) -> None:
    """``D = Delta**4 phi beta`` with ``beta`` the sum of one value below ``N`` per party: that is
    uniform mod ``N`` already, and a longer ``beta`` would only lengthen every share, hence every
    partial decryption's exponent."""
    key, phi, d = _phi_and_secret(generated)
    beta, rest = divmod(d, key.delta**4 * phi)
    assert rest == 0
    assert 0 < beta < len(key.parties) * key.public.n


def test_every_subset_of_t_plus_one_decrypts_and_t_cannot(generated: Generated) -> None:
    params, shares, _ = generated
    key = shares[params.parties[0]].key
    rng = random.Random(5)
    plain = [rng.randrange(key.public.n) for _ in range(3)]
    cts = encrypt(key.public, plain, FreshNoise(key.public))
    partials = {p: partial_decrypt(shares[p], cts) for p in params.parties}
    for subset in itertools.combinations(params.parties, params.threshold + 1):
        assert combine(key, {p: partials[p] for p in subset}) == plain
    with pytest.raises(ValueError, match="need partial decryptions"):
        combine(key, {p: partials[p] for p in params.parties[: params.threshold]})


def test_secure_run_with_a_distributed_key_matches_plaintext(
    generated: Generated, tmp_path: Path
) -> None:
    from riskprop.files.keys import write_keys
    from riskprop.lab.simulate import simulate_plaintext, simulate_secure
    from riskprop.lab.synthetic import generate_dataset

    params, shares, _ = generated
    data, keys = tmp_path / "data", tmp_path / "keys"
    generate_dataset(data, accounts=60, edges=200, banks=params.parties, seed=3)
    write_keys(keys, list(shares.values()))
    secure = simulate_secure(data, iterations=2, keys=keys)
    reference = simulate_plaintext(data, iterations=2)
    assert secure.account_ids == reference.account_ids
    assert np.max(np.abs(secure.scores - reference.scores)) < 1e-7


def test_parameters_are_checked() -> None:
    with pytest.raises(ConfigError, match="honest majority"):
        KeygenParams(names(4), 2, bits=BITS)
    with pytest.raises(ParameterError, match=r"^sigma: .* at least 40 bits \(got 20\)$") as err:
        KeygenParams(names(3), 1, bits=BITS, sigma=20)
    assert err.value.name == "sigma"
    with pytest.raises(ParameterError, match=r"^biprimality_tests: must be at least 40: .*39\)$"):
        KeygenParams(names(3), 1, bits=BITS, biprimality_tests=39)
    with pytest.raises(ConfigError, match="multiple of 16"):
        KeygenParams(names(3), 1, bits=500)
    KeygenParams(names(3), 1, bits=BITS, sigma=MIN_SIGMA, biprimality_tests=MIN_BIPRIMALITY_TESTS)


def test_defaults_match_the_dealer_and_a_2_to_the_minus_128_claim() -> None:
    params = KeygenParams(names(3), 1)
    assert params.sigma == DEFAULT_SIGMA == DEFAULT_STATISTICAL_SECURITY == 128
    assert params.biprimality_tests == DEFAULT_BIPRIMALITY_TESTS == 128


def test_every_parameter_party_checks_in_round_one_is_in_the_digest() -> None:
    base = KeygenParams(names(5), 1, bits=BITS)
    changed = [
        replace(base, sigma=base.sigma + 1),
        replace(base, biprimality_tests=base.biprimality_tests + 1),
        replace(base, bits=BITS + 16),
        replace(base, threshold=2),
        replace(base, parties=names(6)[1:]),
        replace(base, session="other"),
    ]
    digests = {params.digest() for params in [base, *changed]}
    assert len(digests) == 1 + len(changed)
    assert replace(base).digest() == base.digest()


def test_the_chosen_modulus_passes_the_requested_number_of_biprimality_tests() -> None:
    """One screening test for every survivor of trial division, then ``count - 1`` for the
    first to pass, so a party runs ``survivors + count - 1`` tests per accepted modulus."""
    counts = {}
    for count in (40, 57):
        params = KeygenParams(names(3), 1, bits=BITS, biprimality_tests=count, session="count")
        shares, parties = run_in_lockstep(params)
        assert len({share.key for share in shares.values()}) == 1
        party = parties["bank1"]
        counts[count] = party.stats.biprimality_tests - party.stats.after_trial_division
        assert "confirmation" in party.stats.seconds
    assert counts[57] - counts[40] == 17
