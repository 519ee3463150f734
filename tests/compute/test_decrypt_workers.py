"""Partial decryptions on the node's own worker processes (``compute.share_in_workers``): the
same integers as in the node process, only on a private executor, and only when the operator
allows the share there."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from compute_cases import Counting, InProcess, random_network
from cycle import TOL
from gmpy2 import mpz
from helpers import KEY_BITS, bank_specs, dealt_shares, full_decrypt, write_dataset

from riskprop.compute.executors import ProcessExecutor
from riskprop.core import paillier
from riskprop.core.paillier import embed
from riskprop.core.threshold import DecryptBatch, partial_decrypt
from riskprop.lab.simulate import simulate_plaintext, simulate_secure

PARTIES = ("alice", "bob", "charlie")


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessExecutor]:
    with ProcessExecutor(2) as executor:
        yield executor


def ciphertexts(count: int) -> tuple[list[int], list[mpz]]:
    share = dealt_shares(PARTIES, 1)["alice"]
    plain = [secrets.randbelow(share.key.public.n) for _ in range(count)]
    return plain, embed(share.key.public, plain)


@pytest.mark.parametrize("workers", [2, 3, 5])
@pytest.mark.parametrize("count", [1, 2, 7, 40])
def test_any_cut_gives_the_node_process_integers(workers: int, count: int) -> None:
    share = dealt_shares(PARTIES, 1)["alice"]
    _, values = ciphertexts(count)
    executor = InProcess(workers)
    assert partial_decrypt(share, values, executor=executor) == partial_decrypt(share, values)
    assert executor.calls == ([min(workers, count)] if min(workers, count) > 1 else [])


def test_the_pool_decrypts_what_the_node_process_decrypts(pool: ProcessExecutor) -> None:
    shares = dealt_shares(PARTIES, 1)
    plain, values = ciphertexts(25)
    for share in shares.values():
        assert partial_decrypt(share, values, executor=pool) == partial_decrypt(share, values)
    assert full_decrypt(shares, values) == plain


def test_a_share_never_goes_to_an_executor_that_is_not_private() -> None:
    share = dealt_shares(PARTIES, 1)["alice"]
    _, values = ciphertexts(4)
    cluster = InProcess(2, private=False)
    with pytest.raises(ValueError, match="not a cluster"):
        partial_decrypt(share, values, executor=cluster)
    assert cluster.calls == []
    batch = DecryptBatch(share.key.public.n, 2 * share.key.delta * share.secret, b"")
    assert str(share.secret) not in repr(batch) and "exponent" not in repr(batch)


def test_without_the_operators_leave_decryption_stays_in_the_node_process(
    pool: ProcessExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(5)
    accounts, files = random_network(rng, PARTIES, 12, 60, 1)
    data = write_dataset(tmp_path / "data", bank_specs(accounts, files))
    monkeypatch.setattr(paillier, "NOISE_BATCH_DRAWS", 1)
    executor = Counting(pool)
    secure = simulate_secure(
        data, iterations=2, delta_a=0.6, delta_b=0.5, key_bits=KEY_BITS, executor=executor
    )
    plain = simulate_plaintext(data, iterations=2, delta_a=0.6, delta_b=0.5)
    assert executor.functions["run_noise_batch"] > 0  # the noise went to the pool
    assert executor.functions["run_decrypt_batch"] == 0  # the share did not
    assert float(np.max(np.abs(secure.scores - plain.scores))) <= TOL
