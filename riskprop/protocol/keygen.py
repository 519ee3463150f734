"""Dealerless threshold Paillier key generation as a sans-I/O round protocol.

Semi-honest parties, honest majority (``n >= 2t + 1``). ``keygen_rounds`` is a generator: it
yields, for every round, the payload for each peer and receives every peer's payload of the
same round, until it returns this party's ``KeyShare``. The node layer moves the bytes; tests
drive all parties in lockstep in one process. The arithmetic is in ``core.dkg``; the steps:

1. **Sieve** (``1 + ceil(log2 n)`` rounds): for each candidate and each small prime
   ``ell in (n, y]`` every party draws a unit ``a_i mod ell``; BGW products (degree reduction by
   re-sharing) give Shamir shares of ``a = prod a_i``, turned into additive shares and combined
   by CRT. No candidate is divisible by a prime up to ``y``; nobody learns ``a``.
2. **Modulus** (2 rounds): ``N = p q`` for every candidate pair, as a masked BGW product over a
   prime field above ``2**B``.
3. **Biprimality**: pairs in blocks, one round each: moduli with a prime factor below
   ``2**20`` are dropped (a public gcd), the rest get one Boneh-Franklin test; the first to
   pass gets ``biprimality_tests - 1`` more in one round. A modulus that is not a product of
   two distinct primes passes each test (an independent public base) with probability at
   most 1/2, so it is accepted with probability at most ``2**-biprimality_tests``.
4. **Key** (2 rounds): ``gcd(N, p + q - 1) = 1`` and ``theta`` by masked products over ``Z_N``;
   integer Shamir shares of ``D = Delta**4 phi beta`` by a product of integer sharings and an
   integer degree reduction (any ``t`` shares are within statistical distance ``t * 2**-sigma``
   of shares of another secret). ``D = 0 mod phi(N)``, ``theta = D mod N``: the format of
   ``core.threshold`` shares (a dealer's key and this one are used alike).
5. **Verification** (2 rounds): all parties agree on ``(N, theta)`` and publish their
   verification keys ``v_i = v**(Delta s_i)`` (``core.threshold``; checked for consistency when
   ``n >= t + 2``); a jointly encrypted public value decrypts correctly, each partial
   decryption with a proof against its party's ``v_i``, with every subset of ``t + 1`` shares.

What is revealed: the moduli of rejected candidate pairs, whether each passed, the biprimality
values ``g**(share/4) mod N`` (as in Boneh-Franklin), ``N``, ``theta``, the verification keys,
and the test ciphertexts, partial decryptions and proofs of a public value.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import secrets
import time
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field

import gmpy2
import numpy as np
from gmpy2 import mpz

from riskprop.core import dkg
from riskprop.core.paillier import FreshNoise, PublicKey, encrypt
from riskprop.core.threshold import (
    KeyShare,
    PartialProof,
    ThresholdKey,
    combine,
    lagrange_at_zero,
    partial_decrypt,
    prove,
    validate_threshold,
    verify,
)
from riskprop.errors import ConfigError, ParameterError, ProtocolError

log = logging.getLogger(__name__)

#: Statistical hiding (bits) of the integer Shamir sharings of the key: 2**-128, as the dealer's
#: (``core.threshold.DEFAULT_STATISTICAL_SECURITY``).
DEFAULT_SIGMA = 128
MIN_SIGMA = 40
#: Boneh-Franklin tests the chosen modulus passes: a non-biprime survives each with probability
#: at most 1/2, so 128 tests bound a wrong key by 2**-128. Each is one exponentiation mod N
#: per party in the confirmation round (about 1-3 ms at 2048 bits).
DEFAULT_BIPRIMALITY_TESTS = 128
MIN_BIPRIMALITY_TESTS = 40
#: Candidate pairs trial-divided, and the survivors tested for biprimality, per round.
PAIRS_PER_ROUND = 512
#: Candidate pairs per batch, as a multiple of the expected number until success: a batch
#: fails with probability exp(-BATCH_FACTOR); expected work is BATCH_FACTOR/(1-exp(-it)) times
#: the expected pairs.
BATCH_FACTOR = 1.5

Outbound = dict[str, bytes]
Inbound = dict[str, bytes]
Rounds = Generator[Outbound, Inbound, KeyShare]


@dataclass(frozen=True)
class KeygenParams:
    """What every party must agree on. ``session`` names the run (and seeds public coins)."""

    parties: tuple[str, ...]
    threshold: int
    bits: int = 2048
    sigma: int = DEFAULT_SIGMA
    biprimality_tests: int = DEFAULT_BIPRIMALITY_TESTS
    session: str = "keygen"
    trial_division_bound: int = dkg.TRIAL_DIVISION_BOUND
    batch_pairs: int | None = None  # None: BATCH_FACTOR times the expected number

    def __post_init__(self) -> None:
        n = len(self.parties)
        if len(set(self.parties)) != n:
            raise ConfigError("party names must be unique")
        validate_threshold(n, self.threshold)
        if n < 2 * self.threshold + 1:
            raise ConfigError(
                f"dealerless key generation needs an honest majority: n >= 2t + 1 "
                f"(got n = {n}, t = {self.threshold})"
            )
        if self.bits < 256 or self.bits % 16:
            raise ConfigError(
                f"key bits must be a multiple of 16 and at least 256 (got {self.bits})"
            )
        if self.sigma < MIN_SIGMA:
            raise ParameterError(
                "sigma",
                f"statistical hiding of the key shares must be at least {MIN_SIGMA} bits "
                f"(got {self.sigma})",
            )
        if self.biprimality_tests < MIN_BIPRIMALITY_TESTS:
            raise ParameterError(
                "biprimality_tests",
                f"must be at least {MIN_BIPRIMALITY_TESTS}: a modulus that is not a biprime "
                f"passes them with probability up to 2**-count (got {self.biprimality_tests})",
            )

    def digest(self) -> str:
        """Parameters as one string every party checks in the first round."""
        text = (
            f"{','.join(self.parties)}|{self.threshold}|{self.bits}|{self.sigma}|"
            f"{self.biprimality_tests}|{self.session}"
        )
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class KeygenStats:
    """Where the time went: counts, rounds, bytes and seconds per step."""

    rounds: int = 0
    batches: int = 0
    candidates: int = 0
    pairs: int = 0
    after_trial_division: int = 0
    biprimality_tests: int = 0
    bytes_sent: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, step: str, seconds: float) -> None:
        self.seconds[step] = self.seconds.get(step, 0.0) + seconds

    def summary(self) -> str:
        steps = ", ".join(f"{k} {v:.2f} s" for k, v in self.seconds.items())
        return (
            f"{self.rounds} rounds, {self.batches} batches, {self.pairs} candidate pairs, "
            f"{self.after_trial_division} after trial division, {self.biprimality_tests} "
            f"biprimality tests, {self.bytes_sent / 1e6:.1f} MB sent; {steps}"
        )


class KeygenParty:
    """One party's state; ``rounds()`` is the protocol (see the module doc)."""

    def __init__(self, params: KeygenParams, name: str) -> None:
        if name not in params.parties:
            raise ConfigError(f"{name!r} is not one of the parties {', '.join(params.parties)}")
        self.params = params
        self.name = name
        self.me = params.parties.index(name) + 1
        self.n = len(params.parties)
        self.t = params.threshold
        self.peers = [p for p in params.parties if p != name]
        self.stats = KeygenStats()
        self.sieve = dkg.Sieve.make(params.bits // 2, self.n)
        #: This party's additive shares (p_i, q_i) of the chosen primes: secret, memory only.
        self.factor_shares: tuple[int, int] | None = None

    # --------------------------------------------------------------------- plumbing

    def _exchange(
        self, outbound: Mapping[str, Sequence[dkg.I64 | Sequence[int]]]
    ) -> Generator[Outbound, Inbound, dict[str, list[dkg.I64 | list[int]]]]:
        """One round: send each peer its fields, get every peer's fields back."""
        payloads = {peer: dkg.encode_fields(fields) for peer, fields in outbound.items()}
        self.stats.rounds += 1
        self.stats.bytes_sent += sum(len(p) for p in payloads.values())
        inbound = yield payloads
        missing = set(self.peers) - set(inbound)
        if missing:
            raise ProtocolError(
                f"key generation: no round message from {', '.join(sorted(missing))}"
            )
        return {peer: dkg.decode_fields(inbound[peer]) for peer in self.peers}

    def _broadcast(
        self, fields: Sequence[dkg.I64 | Sequence[int]]
    ) -> Generator[Outbound, Inbound, list[list[dkg.I64 | list[int]]]]:
        """Send the same fields to every peer; return all parties' fields in party order."""
        got = yield from self._exchange({peer: fields for peer in self.peers})
        mine = [f if isinstance(f, np.ndarray) else list(f) for f in fields]
        return [mine if p == self.name else got[p] for p in self.params.parties]

    def _deal_and_sum(
        self, columns: Sequence[Sequence[int]]
    ) -> Generator[Outbound, Inbound, list[int]]:
        """Send each peer its share from every column (one sharing per column, indexed by
        party); return, per column, the sum of this party's shares from every party."""
        got = yield from self._exchange(
            {peer: [[c[self._index(peer)]] for c in columns] for peer in self.peers}
        )
        sums = [c[self.me - 1] for c in columns]
        for peer in self.peers:
            for slot in range(len(columns)):
                sums[slot] += self._ints(got[peer][slot], 1)[0]
        return sums

    def _ints(self, value: dkg.I64 | list[int], count: int | None = None) -> list[int]:
        if isinstance(value, np.ndarray) or (count is not None and len(value) != count):
            raise ProtocolError("key generation: a peer sent a field of the wrong form")
        return value

    def _array(self, value: dkg.I64 | list[int], shape: tuple[int, ...]) -> dkg.I64:
        if not isinstance(value, np.ndarray) or value.shape != shape:
            raise ProtocolError("key generation: a peer sent an array of the wrong shape")
        return value

    # ---------------------------------------------------------------------- protocol

    def rounds(self) -> Rounds:
        started = time.perf_counter()
        params = self.params
        digest = [int(params.digest(), 16)]
        everyone = yield from self._broadcast([digest])
        for party, fields in zip(params.parties, everyone, strict=True):
            if self._ints(fields[0], 1) != digest:
                raise ProtocolError(
                    f"key generation: {party} uses other parameters (parties, threshold, bits, "
                    "statistical security or session differ)"
                )
        batch = params.batch_pairs or math.ceil(BATCH_FACTOR * self.sieve.expected_pairs())
        log.info(
            "%s: key generation for %d-bit N, %d parties, t = %d; sieving with primes up to %d "
            "(%d expected pairs per success, %d per batch)",
            self.name,
            params.bits,
            self.n,
            self.t,
            self.sieve.primes[-1] if self.sieve.primes else 2,
            round(self.sieve.expected_pairs()),
            batch,
        )
        while True:
            self.stats.batches += 1
            candidates = yield from self._sieve(2 * batch)
            moduli = yield from self._moduli(candidates)
            found = yield from self._search(candidates, moduli)
            if found is not None:
                break
            log.info("%s: no biprime in batch %d; next batch", self.name, self.stats.batches)
        share = yield from self._verify(found)
        self.stats.add("total", time.perf_counter() - started)
        return share

    # -------------------------------------------------------------------------- sieve

    def _sieve(self, count: int) -> Generator[Outbound, Inbound, list[int]]:
        """Shares of ``count`` candidates, none divisible by a sieving prime."""
        started = time.perf_counter()
        primes = self.sieve.prime_array
        n, t = self.n, self.t
        shape = (count, len(primes))
        units = dkg.random_below(primes - 1, shape) + 1
        shares = dkg.share_mod_primes(units, primes, t, n)
        got = yield from self._exchange({p: [shares[self._index(p)]] for p in self.peers})
        values = [
            shares[self.me - 1] if p == self.name else self._array(got[p][0], shape)
            for p in self.params.parties
        ]
        lagrange = dkg.lagrange_mod_primes(n, primes)
        while len(values) > 1:  # BGW products in a binary tree, one round per level
            pairs = len(values) // 2
            local = np.stack([values[2 * k] * values[2 * k + 1] % primes for k in range(pairs)])
            reshared = dkg.share_mod_primes(local, primes, t, n)
            got = yield from self._exchange({p: [reshared[self._index(p)]] for p in self.peers})
            products = np.zeros_like(local)
            for party in self.params.parties:
                part = (
                    reshared[self.me - 1]
                    if party == self.name
                    else self._array(got[party][0], local.shape)
                )
                products = (products + lagrange[self._index(party)] * part) % primes
            values = [products[k] for k in range(pairs)] + values[2 * pairs :]
        additive = lagrange[self.me - 1] * values[0] % primes
        result = self.sieve.candidate_shares(additive, self.me)
        self.stats.candidates += count
        self.stats.add("sieve", time.perf_counter() - started)
        return result

    def _index(self, party: str) -> int:
        return self.params.parties.index(party)

    # ------------------------------------------------------------------------ moduli

    def _moduli(self, candidates: list[int]) -> Generator[Outbound, Inbound, list[int]]:
        """``N_k = p_k q_k`` for candidate pairs ``(2k, 2k+1)``: masked BGW product over F_P."""
        started = time.perf_counter()
        prime = dkg.field_prime(self.params.bits)
        n, t = self.n, self.t
        pairs = len(candidates) // 2
        columns = (
            dkg.share_many_mod(candidates[0::2][:pairs], prime, t, n),
            dkg.share_many_mod(candidates[1::2][:pairs], prime, t, n),
            dkg.share_many_mod([0] * pairs, prime, 2 * t, n, zero=True),
        )
        own = [column[self.me - 1] for column in columns]
        outbound = {p: [column[self._index(p)] for column in columns] for p in self.peers}
        got = yield from self._exchange(outbound)
        sums = [list(column) for column in own]
        for peer in self.peers:
            for slot in range(3):
                for k, v in enumerate(self._ints(got[peer][slot], pairs)):
                    sums[slot][k] += v
        masked = [(a * b + z) % prime for a, b, z in zip(*sums, strict=True)]
        everyone = yield from self._broadcast([masked])
        revealed = [self._ints(fields[0], pairs) for fields in everyone]
        weights = dkg.lagrange_mod(n, prime)
        moduli = [
            sum(w * c[k] for w, c in zip(weights, revealed, strict=True)) % prime
            for k in range(pairs)
        ]
        self.stats.pairs += pairs
        self.stats.add("modulus", time.perf_counter() - started)
        return moduli

    # ------------------------------------------------------------------- biprimality

    def _search(
        self, candidates: list[int], moduli: list[int]
    ) -> Generator[Outbound, Inbound, tuple[int, int, int] | None]:
        """The first pair whose modulus is a biprime: ``(N, p_i, q_i)`` or None. A modulus
        is accepted after ``biprimality_tests`` tests in all: one screening the block, the
        rest confirming it."""
        bits = self.params.bits
        bound = self.params.trial_division_bound
        for start in range(0, len(moduli), PAIRS_PER_ROUND):
            started = time.perf_counter()
            block = range(start, min(start + PAIRS_PER_ROUND, len(moduli)))
            sized = [k for k in block if moduli[k].bit_length() == bits]
            passes = dkg.passes_trial_division([moduli[k] for k in sized], bound)
            survivors = [k for k, ok in zip(sized, passes, strict=True) if ok]
            self.stats.after_trial_division += len(survivors)
            self.stats.add("trial division", time.perf_counter() - started)
            passed = yield from self._biprimality(candidates, moduli, survivors, repetitions=1)
            for k in passed:
                confirmed = yield from self._biprimality(
                    candidates,
                    moduli,
                    [k],
                    repetitions=self.params.biprimality_tests - 1,
                    step="confirmation",
                )
                if not confirmed:
                    continue
                p_share, q_share = candidates[2 * k], candidates[2 * k + 1]
                if (yield from self._coprime_check(moduli[k], p_share, q_share)):
                    self.factor_shares = (p_share, q_share)
                    return moduli[k], p_share, q_share
        return None

    def _biprimality(
        self,
        candidates: list[int],
        moduli: list[int],
        chosen: list[int],
        *,
        repetitions: int,
        step: str = "biprimality",
    ) -> Generator[Outbound, Inbound, list[int]]:
        """Indices in ``chosen`` whose modulus passes ``repetitions`` Boneh-Franklin tests
        (time counted under ``step``)."""
        started = time.perf_counter()
        values = []
        for k in chosen:
            modulus = mpz(moduli[k])
            exponent = dkg.biprimality_exponent(
                moduli[k], candidates[2 * k], candidates[2 * k + 1], self.me
            )
            for r in range(repetitions):
                g = dkg.public_base(self.params.session, moduli[k], f"{k}/{repetitions}/{r}")
                values.append(int(gmpy2.powmod(g, exponent, modulus)))
        self.stats.biprimality_tests += len(values)
        everyone = yield from self._broadcast([values])
        columns = [self._ints(fields[0], len(values)) for fields in everyone]
        passed = []
        for position, k in enumerate(chosen):
            rows = range(position * repetitions, (position + 1) * repetitions)
            if all(dkg.biprimality_holds(moduli[k], [c[r] for c in columns]) for r in rows):
                passed.append(k)
        self.stats.add(step, time.perf_counter() - started)
        return passed

    def _coprime_check(
        self, modulus: int, p_share: int, q_share: int
    ) -> Generator[Outbound, Inbound, bool]:
        """Boneh-Franklin's last step: ``gcd(N, p + q - 1) = 1``, from ``r (p + q - 1) mod N``
        revealed for a random shared ``r`` (masked by a zero sharing)."""
        n, t = self.n, self.t
        s = p_share + q_share - (1 if self.me == 1 else 0)
        columns = (
            dkg.share_mod(s, modulus, t, n),
            dkg.share_mod(secrets.randbelow(modulus), modulus, t, n),
            dkg.zero_shares(modulus, 2 * t, n),
        )
        sums = yield from self._deal_and_sum(columns)
        masked = (sums[0] * sums[1] + sums[2]) % modulus
        everyone = yield from self._broadcast([[masked]])
        z = dkg.reconstruct_mod([self._ints(f[0], 1)[0] for f in everyone], modulus)
        return bool(gmpy2.gcd(z, modulus) == 1)

    # --------------------------------------------------------------------- key shares

    def _verify(self, found: tuple[int, int, int]) -> Generator[Outbound, Inbound, KeyShare]:
        """Share ``D = Delta**4 phi beta`` (see module doc), then check it decrypts."""
        started = time.perf_counter()
        modulus, p_share, q_share = found
        n, t, sigma = self.n, self.t, self.params.sigma
        delta = math.factorial(n)
        phi = modulus + 1 - p_share - q_share if self.me == 1 else -(p_share + q_share)
        # uniform mod N from each party: beta = sum beta_i is uniform mod N if one party is
        # honest, so theta = Delta**4 phi beta mod N hides phi; no more bits are needed, and
        # every extra bit of beta lengthens the shares and so every partial decryption
        beta = secrets.randbelow(modulus)
        columns = (
            dkg.share_integer(delta * phi, t, n, sigma),
            dkg.share_integer(delta * beta, t, n, sigma),
            dkg.zero_shares(modulus, 2 * t, n),
        )
        sums = yield from self._deal_and_sum(columns)
        product = sums[0] * sums[1]  # H(me), degree 2t, H(0) = Delta**2 phi beta
        reshare = dkg.share_integer(delta * product, t, n, sigma)
        masked = (product + sums[2]) % modulus
        got = yield from self._exchange(
            {peer: [[masked], [reshare[self._index(peer)]]] for peer in self.peers}
        )
        revealed = [
            masked if p == self.name else self._ints(got[p][0], 1)[0] for p in self.params.parties
        ]
        theta = delta * delta * dkg.reconstruct_mod(revealed, modulus) % modulus
        if gmpy2.gcd(theta, modulus) != 1:
            raise ProtocolError("key generation: theta is not a unit mod N (retry)")
        indices = list(range(1, n + 1))
        secret = 0
        for party in self.params.parties:
            part = reshare[self.me - 1] if party == self.name else self._ints(got[party][1], 1)[0]
            secret += lagrange_at_zero(indices, self._index(party) + 1, delta) * part
        key = ThresholdKey(PublicKey(modulus), self.params.parties, t, theta)
        share = KeyShare(key, self.name, secret)
        self.stats.add("key sharing", time.perf_counter() - started)
        return (yield from self._check(share))

    def _check(self, share: KeyShare) -> Generator[Outbound, Inbound, KeyShare]:
        """Agree on ``(N, theta)``; publish the verification keys ``v_i = v**(Delta s_i)``;
        decrypt a jointly encrypted public value with proofs (each checked against its
        party's ``v_i``) and with every ``t + 1``-subset of partial decryptions. Returns the
        share with the verification keys in its key."""
        started = time.perf_counter()
        key = share.key
        public = key.public
        label = hashlib.sha256(f"{public.n:x}|{key.theta:x}".encode()).hexdigest()
        values = [
            int.from_bytes(hashlib.sha256(f"{label}|{p}".encode()).digest(), "big")
            for p in self.params.parties
        ]
        (mine,) = encrypt(public, [values[self.me - 1]], FreshNoise(public))
        everyone = yield from self._broadcast(
            [[int(label, 16)], [int(mine)], [int(share.verification_key())]]
        )
        for party, fields in zip(self.params.parties, everyone, strict=True):
            if self._ints(fields[0], 1)[0] != int(label, 16):
                raise ProtocolError(f"key generation: {party} ended with another N or theta")
        key = key.with_verification([self._ints(f[2], 1)[0] for f in everyone])
        try:
            key.check_verification()
        except ConfigError as exc:
            raise ProtocolError(f"key generation: {exc}") from None
        share = KeyShare(key, share.party, share.secret)
        ciphertext = mpz(1)
        for fields in everyone:
            ciphertext = ciphertext * self._ints(fields[1], 1)[0] % public.nsquare
        (partial,) = partial_decrypt(share, [ciphertext])
        context = f"keygen|{self.params.digest()}|{label}".encode()
        proof = prove(share, [ciphertext], [partial], context)
        everyone = yield from self._broadcast([[int(partial)], [proof.challenge], [proof.response]])
        partials: dict[str, list[mpz]] = {}
        for party, fields in zip(self.params.parties, everyone, strict=True):
            value = mpz(self._ints(fields[0], 1)[0])
            claimed = PartialProof(self._ints(fields[1], 1)[0], self._ints(fields[2], 1)[0])
            if not verify(key, party, [ciphertext], [value], claimed, context):
                raise ProtocolError(
                    f"key generation: the test decryption of {party} fails its proof (its "
                    "verification key or its share is wrong)"
                )
            partials[party] = [value]
        expected = sum(values) % public.n
        for subset in itertools.combinations(self.params.parties, self.t + 1):
            got = combine(key, {p: partials[p] for p in subset})
            if got != [expected]:
                raise ProtocolError(
                    f"key generation: test decryption by {', '.join(subset)} failed"
                )
        self.stats.add("verification", time.perf_counter() - started)
        return share


def run_in_lockstep(params: KeygenParams) -> tuple[dict[str, KeyShare], dict[str, KeygenParty]]:
    """Every party in this process, round by round (tests and benchmarks)."""
    parties = {name: KeygenParty(params, name) for name in params.parties}
    generators = {name: party.rounds() for name, party in parties.items()}
    outbound = {name: next(gen) for name, gen in generators.items()}
    shares: dict[str, KeyShare] = {}
    while generators:
        inbound = {
            name: {sender: out[name] for sender, out in outbound.items() if name in out}
            for name in generators
        }
        outbound = {}
        for name, gen in list(generators.items()):
            try:
                outbound[name] = gen.send(inbound[name])
            except StopIteration as stop:
                shares[name] = stop.value
                del generators[name]
    return shares, parties
