"""Threshold Paillier decryption with a key shared t-out-of-n (Shamir over the integers).

Secret: an integer ``d`` with ``d = 0 mod lambda(N)`` and ``d = theta mod N`` for a public
``theta`` coprime to ``N``. For ``c = (1 + N)**m r**N``: ``c**d = (1 + N)**(m d) = 1 + (m theta
mod N) N`` because ``r**(N lambda) = 1 mod N**2``.

Sharing: party ``i = 1..n`` holds ``s_i = f(i)`` for an integer polynomial ``f`` of degree
``t`` with ``f(0) = d``. With ``Delta = n!`` the Lagrange coefficients ``l_i = Delta *
prod_{j in S, j != i} j / (j - i)`` are integers for any set ``S`` of ``t + 1`` parties and
``sum_i l_i s_i = Delta d``. So (Shoup's trick, as in Damgård-Jurik's threshold Paillier)::

    partial_i = c**s_i mod N**2
    prod_i partial_i**l_i = c**(Delta d) = 1 + (m Delta theta mod N) N
    m = L(prod) * (Delta theta)**-1 mod N,   L(u) = (u - 1) / N

No group order is needed, so ``N`` need not be a product of safe primes (the distributed key
generation makes ordinary primes). Hiding: the dealer shares a multiple of ``Delta`` and draws
the other coefficients uniformly from ``[0, 2**(|d| + t + sigma))``; any ``t`` shares are then
within statistical distance ``t * 2**-sigma`` of shares of any other such secret.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import gmpy2
from gmpy2 import mpz

from riskprop.core.modexp import powmod_many
from riskprop.core.paillier import PublicKey
from riskprop.errors import ConfigError, ProtocolError

DEFAULT_STATISTICAL_SECURITY = 128


@dataclass(frozen=True)
class ThresholdKey:
    """Public part of a threshold key: ``N``, parties (index = position + 1), ``t``, ``theta``."""

    public: PublicKey
    parties: tuple[str, ...]
    threshold: int
    theta: int

    def __post_init__(self) -> None:
        validate_threshold(len(self.parties), self.threshold)

    @property
    def delta(self) -> int:
        return math.factorial(len(self.parties))

    def index(self, party: str) -> int:
        """1-based Shamir index of ``party``."""
        return self.parties.index(party) + 1


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
    """Trusted-dealer sharing of the decryption key of ``N = p q`` (see module doc)."""
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
    return [KeyShare(key, party, _evaluate(coefficients, i + 1)) for i, party in enumerate(parties)]


def _evaluate(coefficients: Sequence[int], x: int) -> int:
    result = 0
    for a in reversed(coefficients):
        result = result * x + a
    return result


def lagrange_at_zero(indices: Sequence[int], i: int, delta: int) -> int:
    """``Delta * prod_{j != i} j / (j - i)``: an integer for distinct indices in ``1..n``."""
    num, den = delta, 1
    for j in indices:
        if j != i:
            num *= j
            den *= j - i
    if num % den:
        raise ArithmeticError("Lagrange coefficient is not an integer")  # cannot happen
    return num // den


def partial_decrypt(share: KeyShare, ciphertexts: Sequence[mpz]) -> list[mpz]:
    """``c**s_i mod N**2`` for each ciphertext: this party's contribution (one batch)."""
    return powmod_many(ciphertexts, share.secret, share.key.public.nsquare, secret=True)


def combine(key: ThresholdKey, partials: Mapping[str, Sequence[mpz]]) -> list[int]:
    """Plaintexts from the partial decryptions of at least ``t + 1`` parties (first t+1 used)."""
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
    exps = [mpz(lagrange_at_zero(indices, i, key.delta)) for i in indices]
    inv = pow(key.delta * key.theta, -1, key.public.n)
    out = []
    for column in zip(*(partials[p] for p in chosen), strict=True):
        u = mpz(1)
        for value, e in zip(column, exps, strict=True):
            u = u * gmpy2.powmod(value, e, n2) % n2
        if (u - 1) % n:
            raise ProtocolError(
                "partial decryptions do not combine to a plaintext (u != 1 mod N): a helper "
                "sent a wrong partial decryption, or a ciphertext was damaged"
            )
        out.append(int((u - 1) // n * inv % n))
    return out
