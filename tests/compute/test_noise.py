"""Noise drawn by the node's own worker processes (``paillier.PooledNoise``): the same values as
the node's own draws for the same digits, N-th residues that re-randomise without changing a
plaintext, and never handed to an executor that is not private (a cluster)."""

from __future__ import annotations

import math
import random
import secrets
from collections.abc import Iterator
from typing import TypeVar

import gmpy2
import phe
import pytest
from compute_cases import InProcess
from gmpy2 import mpz

from riskprop.compute.executors import ProcessExecutor
from riskprop.core import paillier
from riskprop.core.paillier import (
    FixedBaseNoise,
    NoiseBatch,
    PooledNoise,
    PublicKey,
    comb_shape,
    rerandomize,
    run_noise_batch,
)

T = TypeVar("T")
R = TypeVar("R")

PUBLIC, PRIVATE = phe.generate_paillier_keypair(n_length=512)
KEY = PublicKey(PUBLIC.n)
LAMBDA = math.lcm(PRIVATE.p - 1, PRIVATE.q - 1)


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessExecutor]:
    with ProcessExecutor(2) as executor:
        yield executor


def is_nth_residue(value: mpz) -> bool:
    """``value`` is an N-th residue mod N**2 iff ``value**lambda == 1`` (the group of N-th
    residues is the subgroup of order dividing lambda)."""
    return bool(gmpy2.powmod(value, LAMBDA, KEY.nsquare) == 1)


@pytest.mark.parametrize(("count", "workers", "least"), [(100, 3, 10), (37, 2, 5), (9, 4, 5)])
def test_pooled_draws_are_the_nodes_draws_for_the_same_digits(
    monkeypatch: pytest.MonkeyPatch, count: int, workers: int, least: int
) -> None:
    noise = FixedBaseNoise(KEY, shape=comb_shape(KEY.bits, 4, 33))

    def replay() -> None:
        stream = random.Random(7)
        monkeypatch.setattr(secrets, "token_bytes", stream.randbytes)

    replay()
    expected = noise.draw(count)
    replay()
    executor = InProcess(workers)
    got = PooledNoise(noise, executor, batch_draws=least).draw(count)
    assert got == expected
    # cut into one batch per worker, never under ``least`` draws a batch; else drawn here
    batches = min(workers, count // least)
    assert executor.calls == ([batches] if batches > 1 else [])


def test_pool_workers_draw_residues_that_rerandomise(pool: ProcessExecutor) -> None:
    noise = PooledNoise(FixedBaseNoise(KEY), pool, batch_draws=40)
    values = noise.draw(200)
    assert len(values) == 200 and len(set(values)) == 200
    assert all(0 < v < KEY.nsquare and is_nth_residue(v) for v in values)
    plain = [random.randrange(PUBLIC.n) for _ in range(150)]
    ciphertexts = [mpz(PUBLIC.raw_encrypt(m, r_value=1)) for m in plain]
    fresh = rerandomize(KEY, ciphertexts, noise)
    assert all(a != b for a, b in zip(fresh, ciphertexts, strict=True))
    assert [PRIVATE.raw_decrypt(int(c)) for c in fresh] == plain


def test_noise_is_never_handed_to_an_executor_that_is_not_private() -> None:
    cluster = InProcess(4, private=False)
    with pytest.raises(ValueError, match="not a cluster"):
        PooledNoise(FixedBaseNoise(KEY), cluster)
    assert cluster.calls == []


def test_a_worker_keeps_one_runs_comb() -> None:
    shape = comb_shape(KEY.bits, 4, 33)
    bases = [FixedBaseNoise(KEY, shape=shape).base for _ in range(2)]
    width = KEY.ciphertext_bytes
    for base in bases:
        raw = run_noise_batch(NoiseBatch(KEY.n, int(base).to_bytes(width, "big"), shape, False, 3))
        assert len(raw) == 3 * width
    assert [int.from_bytes(ident[1], "big") for ident in paillier._WORKER_NOISE] == [bases[1]]


@pytest.mark.parametrize("base", [0, KEY.nsquare])
def test_a_given_base_must_lie_in_the_group(base: int) -> None:
    with pytest.raises(ValueError, match="noise base"):
        FixedBaseNoise(KEY, base=base)
