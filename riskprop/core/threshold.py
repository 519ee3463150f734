"""Threshold Paillier decryption with a key shared t-out-of-n (Shamir over the integers),
verifiable partial decryptions (Shoup 2000; Damgård-Jurik 2001).

Secret: an integer ``d`` with ``d = 0 mod lambda(N)`` and ``d = theta mod N`` for a public
``theta`` coprime to ``N``. For ``c = (1 + N)**m r**N``: ``c**d = (1 + N)**(m d) = 1 + (m theta
mod N) N`` because ``r**(N lambda) = 1 mod N**2``.

Sharing: party ``i = 1..n`` holds ``s_i = f(i)`` for an integer polynomial ``f`` of degree
``t`` with ``f(0) = d``. With ``Delta = n!`` the Lagrange coefficients ``l_i = Delta *
prod_{j in S, j != i} j / (j - i)`` are integers for any set ``S`` of ``t + 1`` parties and
``sum_i l_i s_i = Delta d``. So::

    partial_i = c**(2 Delta s_i) mod N**2
    u = prod_i partial_i**(2 l_i) = c**(4 Delta**2 d) = 1 + (m 4 Delta**2 theta mod N) N
    m = L(u) * (4 Delta**2 theta)**-1 mod N,   L(u) = (u - 1) / N

The factor 2 makes every partial a square (its Jacobi symbol says nothing about ``s_i``) and
the second 2 kills any element of order 2 a helper multiplies in. No group order is needed,
so ``N`` need not be a product of safe primes. Hiding: shares of a multiple of ``Delta`` with
the other coefficients uniform in ``[0, 2**(|d| + t + sigma))``: any ``t`` shares are within
statistical distance ``t * 2**-sigma`` of shares of any other such secret.

Verification: ``v`` is a public square mod ``N**2`` derived from ``N`` by a hash (nobody
chooses it) and ``v_i = v**(Delta s_i)`` is party ``i``'s verification key. A helper answers a
batch ``c_1..c_k`` with ``x_j = c_j**(2 Delta s_i)`` and one proof for the whole batch:
weights ``rho_j`` (128 bits) are hashed from the context, the batch and the answers, and the
helper proves ``log_{C**4}(X**2) = log_v(v_i)`` for ``C = prod c_j**rho_j`` and ``X = prod
x_j**rho_j`` (equality of discrete logarithms, Fiat-Shamir: challenge ``e`` of 128 bits,
response ``z = r + e Delta s_i`` over the integers with ``r`` longer than ``e Delta s_i`` by
``sigma`` bits, so ``z`` hides ``s_i``). ``Z_{N**2}^*`` is ``G x H`` with ``G = <1 + N>`` of
order ``N`` and ``H`` of order ``phi(N)``. In ``G`` (all prime factors huge) the proof is sound:
a wrong ``x_j`` in its ``G`` part (a shifted plaintext, a wrong share, garbage) fails except
with probability about ``2**-128`` per hash evaluation, because ``rho_j`` and ``e`` are below
the primes of ``N``. A factor of small order in ``H`` can survive the proof (without safe
primes such elements exist), but it never changes the plaintext, which lives in ``G``, and
:func:`combine` refuses it: the ``H`` part of an honest ``u`` is 1, so ``u = 1 mod N``
fails. Checking ``k`` answers costs two multi-exponentiations with 128-bit exponents (about 25
products per ciphertext, ``modexp.product_of_powers``: eight windows at once in the native
kernel) and two full exponentiations per helper; proving costs one multi-exponentiation and
two exponentiations with the secret mask.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import gmpy2
from gmpy2 import mpz

from riskprop.core import modexp
from riskprop.core.batches import Executor
from riskprop.core.modexp import powmod_many
from riskprop.core.paillier import PublicKey, decode_values, encode_values
from riskprop.errors import ConfigError, ProtocolError

DEFAULT_STATISTICAL_SECURITY = 128
#: Bits of the Fiat-Shamir challenge and of each batch weight.
CHALLENGE_BITS = 128
#: Bits by which the prover's mask ``r`` exceeds ``e Delta s_i`` (statistical hiding of ``z``).
PROOF_HIDING_BITS = 128
_DOMAIN = b"riskprop-threshold-paillier/2"


@functools.cache
def verification_base(n: int) -> mpz:
    """``v = h**2 mod N**2`` for ``h`` hashed from ``N`` (a unit): public, the same for every
    key holder and chosen by no one (cached: an ``mpz`` is immutable)."""
    n2 = mpz(n) * n
    width = (int(n2).bit_length() + 128 + 7) // 8
    counter = 0
    while True:
        seed = _DOMAIN + b"|verification-base|" + _int_bytes(n) + counter.to_bytes(4, "big")
        h = mpz(int.from_bytes(hashlib.shake_256(seed).digest(width), "big")) % n2
        if h > 1 and gmpy2.gcd(h, n) == 1:
            return h * h % n2
        counter += 1


@dataclass(frozen=True)
class ThresholdKey:
    """Public part of a threshold key: ``N``, parties (index = position + 1), ``t``, ``theta``
    and the verification keys ``v_i = v**(Delta s_i) mod N**2`` in party order (empty only
    while a key generation is under way)."""

    public: PublicKey
    parties: tuple[str, ...]
    threshold: int
    theta: int
    verification: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        validate_threshold(len(self.parties), self.threshold)
        if self.verification and len(self.verification) != len(self.parties):
            raise ConfigError(
                f"{len(self.verification)} verification keys for {len(self.parties)} parties"
            )

    @property
    def delta(self) -> int:
        return math.factorial(len(self.parties))

    @property
    def base(self) -> mpz:
        """The verification base ``v`` (see :func:`verification_base`)."""
        return verification_base(self.public.n)

    def index(self, party: str) -> int:
        """1-based Shamir index of ``party``."""
        return self.parties.index(party) + 1

    def fingerprint(self) -> str:
        """SHA-256 (hex) of everything public about the key: ``N``, ``theta``, the parties, ``t``
        and the verification keys. Runs and key generation compare this, not ``N`` alone, so
        banks holding different verification keys notice at the handshake."""
        digest = hashlib.sha256()
        _absorb(digest, _DOMAIN, b"key", self.public.n, self.theta, self.threshold)
        _absorb(digest, *self.parties, *self.verification)
        return digest.hexdigest()

    def verification_key(self, party: str) -> mpz:
        """``v_i`` of ``party``."""
        self._require_verification()
        return mpz(self.verification[self.index(party) - 1])

    def _require_verification(self) -> None:
        """Verification keys are all there (``__post_init__`` allows all or none)."""
        if not self.verification:
            raise ConfigError("the key has no verification keys (made by an older version)")

    def with_verification(self, keys: Sequence[int]) -> ThresholdKey:
        return ThresholdKey(self.public, self.parties, self.threshold, self.theta, tuple(keys))

    def check_verification(self) -> None:
        """Refuse verification keys that are not units mod ``N**2`` or, with ``n >= t + 2``,
        do not lie on one polynomial of degree ``t`` in the exponent: for the first ``t + 1``
        parties ``S`` and every other ``j``, ``v_j**Delta = prod_{i in S} v_i**L_i(j)`` with
        ``L_i(j) = Delta prod_{k in S, k != i} (j - k) / (i - k)`` (integers). Wrong keys are
        caught while at most ``n - t - 1`` of them are wrong (so ``t`` with an honest majority
        ``n >= 2t + 1``); with ``n = t + 1`` only the key generation's test decryption checks
        them."""
        self._require_verification()
        n, n2 = self.public.n, mpz(self.public.nsquare)
        for party, value in zip(self.parties, self.verification, strict=True):
            if not 0 < value < n2 or gmpy2.gcd(value, n) != 1:
                raise ConfigError(f"the verification key of {party} is not a unit mod N^2")
        chosen = list(range(1, self.threshold + 2))
        for j in range(self.threshold + 2, len(self.parties) + 1):
            expected = mpz(1)
            for i in chosen:
                weight = _lagrange_at(chosen, i, j, self.delta)
                expected = expected * gmpy2.powmod(self.verification[i - 1], weight, n2) % n2
            if gmpy2.powmod(self.verification[j - 1], self.delta, n2) != expected:
                raise ConfigError(
                    f"the verification keys are inconsistent (that of {self.parties[j - 1]} "
                    f"does not lie on the polynomial of {', '.join(self.parties[: len(chosen)])})"
                )


@dataclass(frozen=True)
class KeyShare:
    """One party's secret share ``s_i = f(i)`` together with the public key data."""

    key: ThresholdKey
    party: str
    secret: int

    def __repr__(self) -> str:  # never print the secret
        return f"KeyShare(party={self.party!r}, key={self.key.public.fingerprint()[:16]})"

    @property
    def index(self) -> int:
        return self.key.index(self.party)

    def verification_key(self) -> mpz:
        """``v**(Delta s_i) mod N**2``, computed from the share (constant time)."""
        key = self.key
        (value,) = powmod_many([key.base], key.delta * self.secret, key.public.nsquare)
        return value


def validate_threshold(n_parties: int, threshold: int) -> None:
    """``1 <= t < n``: decryption needs ``t + 1`` parties and no single party may decrypt."""
    if n_parties < 2:
        raise ConfigError(f"a threshold key needs at least 2 parties (got {n_parties})")
    if not 1 <= threshold < n_parties:
        raise ConfigError(
            f"threshold t must satisfy 1 <= t < {n_parties} parties (got {threshold}); "
            "any t+1 parties decrypt, no t can"
        )


def default_threshold(n_parties: int) -> int:
    """Largest ``t`` with an honest majority (``n >= 2t + 1``), at least 1."""
    return max(1, (n_parties - 1) // 2)


def deal(
    p: int,
    q: int,
    parties: Sequence[str],
    threshold: int,
    *,
    statistical_security: int = DEFAULT_STATISTICAL_SECURITY,
) -> list[KeyShare]:
    """Trusted-dealer sharing of the decryption key of ``N = p q`` (see module doc), with the
    verification keys."""
    n = p * q
    parties = tuple(parties)
    if len(set(parties)) != len(parties):
        raise ConfigError("party names must be unique")
    validate_threshold(len(parties), threshold)
    lam = math.lcm(p - 1, q - 1)
    delta = math.factorial(len(parties))
    d = delta * lam * pow(lam, -1, n)  # 0 mod lambda, Delta mod N
    key = ThresholdKey(PublicKey(n), parties, threshold, theta=d % n)
    bound = 1 << (d.bit_length() + threshold + statistical_security)
    coefficients = [d] + [secrets.randbelow(bound) for _ in range(threshold)]
    shares = [
        KeyShare(key, party, _evaluate(coefficients, i + 1)) for i, party in enumerate(parties)
    ]
    key = key.with_verification([int(share.verification_key()) for share in shares])
    return [KeyShare(key, share.party, share.secret) for share in shares]


def _evaluate(coefficients: Sequence[int], x: int) -> int:
    result = 0
    for a in reversed(coefficients):
        result = result * x + a
    return result


def lagrange_at_zero(indices: Sequence[int], i: int, delta: int) -> int:
    """``Delta * prod_{j != i} j / (j - i)``: an integer for distinct indices in ``1..n``."""
    return _lagrange_at(indices, i, 0, delta)


def _lagrange_at(indices: Sequence[int], i: int, x: int, delta: int) -> int:
    """``Delta * prod_{j != i} (x - j) / (i - j)``: an integer for distinct indices in
    ``1..n`` and ``Delta = n!`` (the denominator divides ``(i - 1)! (n - i)!``)."""
    num, den = delta, 1
    for j in indices:
        if j != i:
            num *= x - j
            den *= i - j
    if num % den:
        raise ArithmeticError("Lagrange coefficient is not an integer")  # cannot happen
    return num // den


def partial_decrypt(
    share: KeyShare, ciphertexts: Sequence[mpz], *, executor: Executor | None = None
) -> list[mpz]:
    """``c**(2 Delta s_i) mod N**2`` for each ciphertext (constant time in ``s_i``).

    With an ``executor`` of more than one worker the ciphertexts are cut into one
    :class:`DecryptBatch` per worker, each carrying the exponent ``2 Delta s_i``: the key
    share leaves this process. Only a ``private`` executor (the node's own processes on its
    host) is accepted, and the node gives one only when its operator allows it
    (``compute.share_in_workers``). The values are the same integers however they are cut."""
    key = share.key
    exponent = 2 * key.delta * share.secret
    workers = 1 if executor is None else executor.workers
    k = min(workers, len(ciphertexts))
    if k <= 1:
        return powmod_many(ciphertexts, exponent, key.public.nsquare, secret=True)
    assert executor is not None
    if not executor.private:
        raise ValueError("a key share goes only to the node's own processes, not a cluster")
    n2, width = mpz(key.public.nsquare), key.public.ciphertext_bytes
    bounds = [len(ciphertexts) * i // k for i in range(k + 1)]
    batches = [
        DecryptBatch(key.public.n, exponent, encode_values(ciphertexts[a:b], n2, width))
        for a, b in itertools.pairwise(bounds)
    ]
    out: list[mpz] = []
    for raw in executor.map(run_decrypt_batch, batches):
        out += decode_values(raw, width)
    return out


@dataclass(frozen=True, eq=False, repr=False)
class DecryptBatch:
    """Ciphertexts (fixed-width big-endian, reduced mod ``N**2``) to raise to ``exponent`` =
    ``2 Delta s_i``. Holds the key share: for the node's own worker processes only."""

    modulus: int  # N
    exponent: int
    ciphertexts: bytes

    def __repr__(self) -> str:  # never print the share
        return f"DecryptBatch({len(self.ciphertexts)} bytes)"


def run_decrypt_batch(batch: DecryptBatch) -> bytes:
    """The partial decryptions of ``batch`` (as :func:`partial_decrypt` computes them)."""
    public = PublicKey(batch.modulus)
    n2, width = mpz(public.nsquare), public.ciphertext_bytes
    values = decode_values(batch.ciphertexts, width)
    return encode_values(
        powmod_many(values, batch.exponent, public.nsquare, secret=True), n2, width
    )


def combine(key: ThresholdKey, partials: Mapping[str, Sequence[mpz]]) -> list[int]:
    """Plaintexts from the partial decryptions of at least ``t + 1`` parties (first t+1 used).

    Raises ``ProtocolError`` if ``u != 1 mod N`` for any value: no honest set of partials gives
    that (see the module doc), so a wrong partial or a damaged ciphertext never decodes."""
    if len(partials) < key.threshold + 1:
        raise ValueError(
            f"need partial decryptions from {key.threshold + 1} parties, got {len(partials)}"
        )
    chosen = sorted(partials, key=key.index)[: key.threshold + 1]
    indices = [key.index(p) for p in chosen]
    lengths = {len(partials[p]) for p in chosen}
    if len(lengths) != 1:
        raise ValueError("partial decryptions differ in length")
    n = mpz(key.public.n)
    n2 = mpz(key.public.nsquare)
    exps = [mpz(2 * lagrange_at_zero(indices, i, key.delta)) for i in indices]
    inv = pow(4 * key.delta * key.delta * key.theta, -1, key.public.n)
    out = []
    for column in zip(*(partials[p] for p in chosen), strict=True):
        u = mpz(1)
        for value, e in zip(column, exps, strict=True):
            u = u * gmpy2.powmod(value, e, n2) % n2
        if (u - 1) % n:
            raise ProtocolError(
                f"partial decryptions of {', '.join(chosen)} do not combine to a plaintext "
                "(u != 1 mod N): a helper sent a wrong partial decryption, or a ciphertext was "
                "damaged"
            )
        out.append(int((u - 1) // n * inv % n))
    return out


# ------------------------------------------------------------------------------ proofs


@dataclass(frozen=True)
class PartialProof:
    """A proof that a batch of partial decryptions used the helper's share: challenge ``e``
    and response ``z`` (see the module doc)."""

    challenge: int
    response: int


def prove(
    share: KeyShare, ciphertexts: Sequence[mpz], partials: Sequence[mpz], context: bytes
) -> PartialProof:
    """Prove that ``partials == partial_decrypt(share, ciphertexts)`` for the request named by
    ``context`` (run, requester, request; the helper and key are added here). The secret enters
    only exponentiations in constant time. ``X`` need not be computed: the challenge hashes the
    partials themselves, which fix it."""
    key = share.key
    n2 = key.public.nsquare
    seed = _batch_seed(key, share.party, ciphertexts, partials, context)
    big_c = product_of_powers(ciphertexts, _weights(seed, len(ciphertexts)), n2)
    secret = key.delta * share.secret
    # |r| = |Delta s_i| rounded up to 64 bits, plus the challenge's and the hiding bits
    mask = secrets.randbits(-(-abs(secret).bit_length() // 64) * 64 + _MASK_EXTRA_BITS)
    commit_c, commit_v = powmod_many([big_c**4 % n2, key.base], mask, n2)
    challenge = _challenge(seed, key, key.verification_key(share.party), commit_c, commit_v)
    return PartialProof(challenge, mask + challenge * secret)


def verify(
    key: ThresholdKey,
    party: str,
    ciphertexts: Sequence[mpz],
    partials: Sequence[mpz],
    proof: PartialProof,
    context: bytes,
) -> bool:
    """Whether ``partials`` are ``party``'s partial decryptions of ``ciphertexts`` for the
    request named by ``context`` (up to factors of small order, which :func:`combine`
    refuses). Public values only: variable-time arithmetic is fine."""
    n, n2 = key.public.n, mpz(key.public.nsquare)
    if len(partials) != len(ciphertexts) or party not in key.parties:
        return False
    if not 0 <= proof.challenge < 1 << CHALLENGE_BITS:
        return False
    if abs(proof.response).bit_length() > _max_response_bits(key):
        return False
    if any(not 0 < x < n2 for x in partials):
        return False
    seed = _batch_seed(key, party, ciphertexts, partials, context)
    weights = _weights(seed, len(partials))
    big_c = product_of_powers(ciphertexts, weights, n2)
    big_x = product_of_powers(partials, weights, n2)
    if gmpy2.gcd(big_x, n) != 1 or gmpy2.gcd(big_c, n) != 1:
        return False
    v_i = key.verification_key(party)
    e, z = mpz(proof.challenge), mpz(proof.response)
    # the two long exponentiations share the exponent z: one batch (two lanes of the kernel)
    long_c, long_v = powmod_many([big_c**4 % n2, key.base], int(z), int(n2), secret=False)
    commit_c = long_c * gmpy2.powmod(big_x, -2 * e, n2) % n2
    commit_v = long_v * gmpy2.powmod(v_i, -e, n2) % n2
    return proof.challenge == _challenge(seed, key, v_i, commit_c, commit_v)


_MASK_EXTRA_BITS = CHALLENGE_BITS + PROOF_HIDING_BITS


def _max_response_bits(key: ThresholdKey) -> int:
    """A generous public bound on ``|z|`` (refuses absurd exponents before any work): shares
    of either key generation stay far below ``2**(2 |N| + 1024)`` for up to 100 parties."""
    return 2 * key.public.bits + 1024 + 8 * key.delta.bit_length() + _MASK_EXTRA_BITS


def _int_bytes(value: int) -> bytes:
    value = int(value)
    return value.to_bytes((value.bit_length() + 8) // 8, "big", signed=True)


def _absorb(digest: hashlib._Hash, *values: int | bytes | str) -> None:
    for value in values:
        data = (
            value
            if isinstance(value, bytes)
            else value.encode()
            if isinstance(value, str)
            else _int_bytes(value)
        )
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)


def _batch_seed(
    key: ThresholdKey,
    party: str,
    ciphertexts: Sequence[mpz],
    partials: Sequence[mpz],
    context: bytes,
) -> bytes:
    """Binds the domain, the key, the helper, the request's context and the whole batch."""
    digest = hashlib.sha256()
    _absorb(digest, _DOMAIN, b"batch", key.public.n, party, context, len(ciphertexts))
    for value in ciphertexts:
        _absorb(digest, int(value))
    for value in partials:
        _absorb(digest, int(value))
    return digest.digest()


def _weights(seed: bytes, count: int) -> list[int]:
    """``count`` weights of ``CHALLENGE_BITS`` bits from ``seed`` (none zero)."""
    width = CHALLENGE_BITS // 8
    stream = hashlib.shake_256(seed + b"|weights").digest(width * count)
    return [
        int.from_bytes(stream[i : i + width], "big") | 1 for i in range(0, width * count, width)
    ]


def _challenge(seed: bytes, key: ThresholdKey, v_i: mpz, *values: mpz) -> int:
    digest = hashlib.sha256()
    _absorb(digest, _DOMAIN, b"challenge", seed, int(key.base), int(v_i), *(int(v) for v in values))
    return int.from_bytes(digest.digest(), "big") >> (256 - CHALLENGE_BITS)


def product_of_powers(bases: Sequence[mpz], exponents: Sequence[int], modulus: int) -> mpz:
    """``prod_j bases[j]**exponents[j] mod modulus`` for non-negative public exponents (the
    batch weights): :func:`riskprop.core.modexp.product_of_powers`, in the native kernel where
    there is one."""
    return modexp.product_of_powers(bases, exponents, modulus)
