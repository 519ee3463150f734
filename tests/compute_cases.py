"""Inputs shared by the executor tests (``tests/compute``): random ``linear_step`` cases and
a secure simulation whose every step is checked against the serial code."""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import phe
import pytest
from cycle import TOL
from gmpy2 import mpz
from helpers import KEY_BITS, TxRow, bank_specs, random_csr, spread, write_dataset

from riskprop.core import paillier
from riskprop.core.batches import Executor
from riskprop.core.paillier import PublicKey, linear_step, pack
from riskprop.core.types import IntArray
from riskprop.lab.simulate import simulate_plaintext, simulate_secure
from riskprop.protocol import session as session_module

T = TypeVar("T")
R = TypeVar("R")

_PUBLIC, _ = phe.generate_paillier_keypair(n_length=256)
KEY = PublicKey(_PUBLIC.n)

#: (rows, extra bases, mean degree, exponent bits, self coefficient)
CASES = [
    (1, 0, 0.0, 48, 2**47 + 1),
    (40, 0, 0.0, 48, 2**48 - 1),  # no edges
    (300, 100, 3.3, 48, 2**47 + 12345),
    (200, 50, 6.0, 1, 1),
    (200, 20, 3.0, 48, 0),  # no self term
    (3000, 2000, 1.5, 40, 3),  # several chunks of CHUNK_ROWS rows
]


class InProcess:
    """A private executor that claims ``workers`` and runs each batch here, in order."""

    def __init__(self, workers: int, *, private: bool = True) -> None:
        self.workers, self.private = workers, private
        self.calls: list[int] = []

    def map(self, fn: Callable[[T], R], batches: Sequence[T]) -> list[R]:
        self.calls.append(len(batches))
        return [fn(b) for b in batches]


class Counting:
    """Hands every call to ``inner`` and counts the batches, by function too."""

    def __init__(self, inner: Executor) -> None:
        self.inner = inner
        self.workers = inner.workers
        self.private = inner.private
        self.batches = 0
        self.functions: collections.Counter[str] = collections.Counter()

    def map(self, fn: Callable[[T], R], batches: Sequence[T]) -> list[R]:
        self.batches += len(batches)
        self.functions[fn.__name__] += len(batches)
        return self.inner.map(fn, batches)


def random_case(
    seed: int, n_rows: int, extra: int, degree: float, bits: int
) -> tuple[list[mpz], IntArray, IntArray, list[int]]:
    """:func:`helpers.random_csr` under ``KEY``, its edges from ``seed``."""
    return random_csr(np.random.default_rng(seed), KEY, n_rows, extra, degree, bits)


def random_network(
    rng: np.random.Generator, banks: Sequence[str], accounts: int, edges: int, periods: int
) -> tuple[dict[str, list[tuple[str, float]]], dict[str, list[TxRow]]]:
    ids = {b: [f"{b}-{i:02d}" for i in range(accounts)] for b in banks}
    scores = {b: [(a, float(rng.choice([0.0, rng.random(), 1.0]))) for a in ids[b]] for b in banks}
    rows: list[TxRow] = []
    for _ in range(edges):
        sb, db = str(rng.choice(banks)), str(rng.choice(banks))
        amount = float(rng.integers(1, 1000))
        rows.append(
            (
                str(rng.choice(ids[sb])),
                sb,
                str(rng.choice(ids[db])),
                db,
                amount,
                int(rng.integers(0, periods)),
            )
        )
    return scores, spread(rows)


#: 3 banks over 3 periods, 5 banks over 1
SIMULATIONS = [
    (("alice", "bob", "charlie"), 3),
    (("alpha", "bravo", "charlie", "delta", "echo"), 1),
]


def check_secure_simulation(
    inner: Executor,
    banks: tuple[str, ...],
    periods: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Counting:
    """Every linear step and every packing of every bank, run through ``inner``, equals the
    serial one; noise draws and (the share allowed in workers) partial decryptions run on
    ``inner``'s workers when it is private (the node's own processes) and never otherwise; the
    decrypted scores are the plaintext engine's. Returns the counting wrapper it used."""
    rng = np.random.default_rng(len(banks) * 100 + periods)
    accounts, files = random_network(rng, banks, 12, 90, periods)
    data = write_dataset(tmp_path / "data", bank_specs(accounts, files))
    monkeypatch.setattr(paillier, "BATCH_TERMS", 1)
    monkeypatch.setattr(paillier, "PACK_BATCH_VALUES", 1)
    monkeypatch.setattr(paillier, "NOISE_BATCH_DRAWS", 1)
    executor = Counting(inner)
    batched_steps = packings = 0

    def checked(*args: Any, **kwargs: Any) -> list[mpz]:
        nonlocal batched_steps
        assert kwargs["executor"] is executor
        got = linear_step(*args, **kwargs)
        assert got == linear_step(*args, **{**kwargs, "executor": None})
        batched_steps += 1
        return got

    def checked_pack(*args: Any, **kwargs: Any) -> list[mpz]:
        nonlocal packings
        assert kwargs["executor"] is executor
        before = executor.batches
        got = pack(*args, **kwargs)
        assert got == pack(*args, **{**kwargs, "executor": None})
        packings += executor.batches > before  # it was cut into batches
        return got

    monkeypatch.setattr(session_module, "linear_step", checked)
    monkeypatch.setattr(session_module, "pack", checked_pack)
    options: dict[str, Any] = {"iterations": 3, "delta_a": 0.6, "delta_b": 0.5}
    secure = simulate_secure(
        data, key_bits=KEY_BITS, executor=executor, share_in_workers=True, **options
    )
    plain = simulate_plaintext(data, **options)
    assert batched_steps == len(banks) * periods * 3
    assert packings > 0
    assert executor.batches > batched_steps  # the steps were cut into several batches each
    # noise: drawn by the workers only when they are the node's own processes
    assert (executor.functions["run_noise_batch"] > 0) == inner.private
    assert (executor.functions["run_decrypt_batch"] > 0) == inner.private
    assert secure.account_ids == plain.account_ids
    assert float(np.max(np.abs(secure.scores - plain.scores))) <= TOL
    return executor
