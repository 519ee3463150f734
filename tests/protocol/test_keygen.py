"""Dealerless key generation: the primes are prime, the key decrypts, drop-outs abort."""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import subprocess
import sys
from pathlib import Path

import gmpy2
import numpy as np
import pytest
import virtualtime
from gmpy2 import mpz

from riskprop.core import dkg
from riskprop.core.paillier import FreshNoise, encrypt
from riskprop.core.threshold import (
    KeyShare,
    ThresholdKey,
    combine,
    lagrange_at_zero,
    partial_decrypt,
)
from riskprop.errors import ConfigError, ProtocolError
from riskprop.node.keygen import drive_keygen
from riskprop.node.transport import InMemoryNetwork, Transport
from riskprop.protocol.keygen import KeygenParams, KeygenParty, run_in_lockstep
from riskprop.protocol.messages import Codec, Message

BITS = 512
#: A key generated in lockstep: its parameters, every party's share and every party's state.
Generated = tuple[KeygenParams, dict[str, KeyShare], dict[str, KeygenParty]]
KEYGEN = [sys.executable, "-m", "riskprop", "keygen"]


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


def test_sieved_candidates_have_no_small_factor() -> None:
    n = 3
    sieve = dkg.Sieve.make(256, n)
    primes = sieve.prime_array
    count = 50
    units = [dkg.random_below(primes - 1, (count, len(primes))) + 1 for _ in range(n)]
    # Additive shares of the product computed in the clear stand in for the BGW products.
    product = units[0] * units[1] % primes * units[2] % primes
    split = [dkg.random_below(primes, product.shape) for _ in range(n - 1)]
    last = (product - split[0] - split[1]) % primes
    shares = [sieve.candidate_shares(x, i + 1) for i, x in enumerate([*split, last])]
    for candidate in map(sum, zip(*shares, strict=True)):
        assert candidate % 4 == 3
        assert all(candidate % ell for ell in (3, *sieve.primes))
        assert math.isqrt(1 << 511) < candidate < 1 << 256


def test_shamir_over_small_primes_reconstructs() -> None:
    primes = np.array([7, 11, 13, 101], dtype=np.int64)
    secret = dkg.random_below(primes, (20, 4))
    shares = dkg.share_mod_primes(secret, primes, 2, 5)
    weights = dkg.lagrange_mod_primes(5, primes)
    assert np.array_equal((weights[:, None, :] * shares).sum(axis=0) % primes, secret)


def test_payload_codec_round_trips_and_rejects_garbage() -> None:
    array = np.arange(12, dtype=np.int64).reshape(3, 4) * 5000
    ints = [0, -1, 2**700 + 3, -(2**64)]
    data = dkg.encode_fields([array, ints])
    decoded = dkg.decode_fields(data)
    assert np.array_equal(decoded[0], array)
    assert decoded[1] == ints
    for bad in (data[:-1], data + b"x", b"", b"\x00\x00\x00\x01\x09"):
        with pytest.raises(ProtocolError, match="malformed key-generation payload"):
            dkg.decode_fields(bad)


def test_parameters_are_checked() -> None:
    with pytest.raises(ConfigError, match="honest majority"):
        KeygenParams(names(4), 2, bits=BITS)
    with pytest.raises(ConfigError, match="statistical security"):
        KeygenParams(names(3), 1, bits=BITS, sigma=20)
    with pytest.raises(ConfigError, match="multiple of 16"):
        KeygenParams(names(3), 1, bits=500)


def run_networked(
    params: KeygenParams, drop: str | None = None, after_round: int = 0, timeout: float = 30
) -> dict[str, KeyShare | BaseException]:
    """Every party over the in-memory transport; ``drop`` stops answering after a round."""

    async def main() -> dict[str, KeyShare | BaseException]:
        network = InMemoryNetwork(params.parties, Codec())

        class Dropping:
            def __init__(self, name: str) -> None:
                self.inner = network.endpoint(name)
                self.name = name
                self.bytes_sent = 0

            async def send(self, message: Message) -> None:
                if message.iteration > after_round:
                    await asyncio.sleep(3600)  # the process hangs or died: nothing more arrives
                await self.inner.send(message)

            async def receive(self) -> Message:
                return await self.inner.receive()

        tasks = {}
        for name in params.parties:
            transport: Transport = Dropping(name) if name == drop else network.endpoint(name)
            party = KeygenParty(params, name)
            tasks[name] = asyncio.create_task(drive_keygen(party, transport, round_timeout=timeout))
        honest = [tasks[p] for p in params.parties if p != drop]
        done = await asyncio.gather(*honest, return_exceptions=True)
        if drop:
            tasks[drop].cancel()
        return dict(zip([p for p in params.parties if p != drop], done, strict=True))

    return virtualtime.run(main())


def test_networked_key_generation_agrees() -> None:
    params = KeygenParams(names(3), 1, bits=BITS, sigma=40, session="net")
    results = run_networked(params)
    keys = {r.key for r in results.values() if isinstance(r, KeyShare)}
    assert len(keys) == 1 and len(results) == 3


@pytest.mark.parametrize("after_round", [0, 3])
def test_a_party_that_drops_out_makes_the_others_abort_with_a_clear_error(
    after_round: int,
) -> None:
    params = KeygenParams(names(3), 1, bits=BITS, sigma=40, session="drop")
    results = run_networked(params, drop="bank2", after_round=after_round, timeout=1.5)
    assert set(results) == {"bank1", "bank3"}
    for outcome in results.values():
        assert isinstance(outcome, ProtocolError)
        message = str(outcome)
        assert "bank2" in message and ("within 1.5 s" in message or "aborted by" in message)


def test_mismatched_parameters_abort() -> None:
    async def main() -> list[KeyShare | BaseException]:
        parties = names(3)
        network = InMemoryNetwork(parties, Codec())
        runs = []
        for name in parties:
            bits = 528 if name == "bank3" else BITS
            params = KeygenParams(parties, 1, bits=bits, sigma=40, session="mismatch")
            party = KeygenParty(params, name)
            runs.append(drive_keygen(party, network.endpoint(name), round_timeout=5))
        return await asyncio.gather(*runs, return_exceptions=True)

    for outcome in virtualtime.run(main()):
        assert isinstance(outcome, ProtocolError)
        assert "other parameters" in str(outcome) or "aborted by" in str(outcome)


def test_public_base_has_jacobi_one_and_biprimality_detects_a_non_biprime() -> None:
    p, q, r = (int(gmpy2.next_prime(mpz(2) ** 120 * k)) for k in (3, 5, 7))
    bad = p * q * r
    g = dkg.public_base("s", bad, "x")
    assert gmpy2.jacobi(g, bad) == 1
    # With shares of a fake "phi": the Boneh-Franklin check fails for most g.
    fails = 0
    for label in range(20):
        base = dkg.public_base("s", bad, str(label))
        v1 = pow(base, (bad - p - q + 1) // 4 if (bad - p - q + 1) % 4 == 0 else 1, bad)
        fails += not dkg.biprimality_holds(bad, [v1, 1])
    assert fails >= 10


def test_three_node_processes_generate_a_key_over_tls_and_a_run_uses_it(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    from nodes import Network, assert_matches_plaintext, configure, wait_all

    from riskprop.files.keys import PUBLIC_FILE, load_public, load_share, share_file
    from riskprop.lab.synthetic import generate_dataset
    from riskprop.node.tls import make_ca, make_node_certificate

    parties = list(names(3))
    certs, keys, data = tmp_path / "certs", tmp_path / "keys", tmp_path / "data"
    ca_cert, ca_key = make_ca(certs)
    for name in parties:
        make_node_certificate(certs, name, ca_cert=ca_cert, ca_key=ca_key)
    generate_dataset(data, accounts=90, edges=300, banks=parties, seed=7)
    timeouts = {"connect": 30, "request": 30, "idle": 60, "deadline": 300}
    configure(tmp_path, parties, data, keys, certs, timeouts)
    network = Network(tmp_path, parties, tmp_path / "configs", certs, data, tmp_path / "out", keys)
    for name in parties:
        command = [sys.executable, "-m", "riskprop", "keygen", "--player", name]
        command += ["--config", str(network.configs), "--key-bits", str(BITS), "--sigma", "40"]
        log = (tmp_path / f"keygen-{name}.log").open("wb")
        processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
    codes = wait_all(processes[-3:], timeout=240)
    logs = {n: (tmp_path / f"keygen-{n}.log").read_text() for n in parties}
    assert codes == [0, 0, 0], logs
    public = load_public(keys / PUBLIC_FILE)
    for name in parties:
        path = share_file(keys, name)
        assert path.stat().st_mode & 0o777 == 0o600
        assert load_share(path, name).key == public
        assert "key share written" in logs[name]
    # The same command again refuses to overwrite the share.
    again = subprocess.run(
        [*KEYGEN, "--player", "bank1", "--config", str(network.configs), "--key-bits", str(BITS)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 1 and "a key share exists already" in again.stderr
    processes.extend(network.start(p) for p in parties)
    assert wait_all(processes[-3:], timeout=240) == [0, 0, 0]
    assert_matches_plaintext(network)
