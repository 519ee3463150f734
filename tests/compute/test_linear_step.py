"""``linear_step`` and ``pack`` through an executor: the same integers as the serial code for
any number of workers and any batching, on random inputs and on every step and packing of
secure simulations (3 banks over several periods, 5 banks), whose scores match the plaintext
engine.

Small keys; the process pool (two workers) is shared by the module; batches are forced small
(``BATCH_TERMS = 1``) so that a few accounts make several batches."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from compute_cases import CASES, KEY, SIMULATIONS, InProcess, check_secure_simulation, random_case
from gmpy2 import mpz
from hypothesis import given, settings
from hypothesis import strategies as st

from riskprop.compute import ProcessExecutor
from riskprop.core import paillier
from riskprop.core.paillier import linear_step, step_batches

T = TypeVar("T")
R = TypeVar("R")


class Recording:
    """An in-process executor that claims ``workers`` and keeps the batches it ran."""

    private = True

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.batches: list[Any] = []

    def map(self, fn: Callable[[T], R], batches: Sequence[T]) -> list[R]:
        self.batches += batches
        return [fn(b) for b in batches]


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessExecutor]:
    with ProcessExecutor(2) as executor:
        yield executor


@pytest.mark.parametrize(("n_rows", "extra", "degree", "bits", "self_coef"), CASES)
@pytest.mark.parametrize("batch_terms", [1, 97, 1 << 16])
def test_the_pool_gives_the_serial_integers(
    pool: ProcessExecutor,
    n_rows: int,
    extra: int,
    degree: float,
    bits: int,
    self_coef: int,
    batch_terms: int,
) -> None:
    bases, indptr, indices, coefs = random_case(n_rows + bits, n_rows, extra, degree, bits)
    serial = linear_step(KEY, bases, n_rows, self_coef, indptr, indices, coefs)
    got = linear_step(
        KEY,
        bases,
        n_rows,
        self_coef,
        indptr,
        indices,
        coefs,
        executor=pool,
        batch_terms=batch_terms,
    )
    assert got == serial


@pytest.mark.parametrize("workers", [2, 3, 5, 64])
def test_any_worker_count_gives_the_serial_integers(workers: int) -> None:
    bases, indptr, indices, coefs = random_case(workers, 500, 200, 2.5, 48)
    serial = linear_step(KEY, bases, 500, 2**40 + 3, indptr, indices, coefs)
    executor = Recording(workers)
    got = linear_step(
        KEY, bases, 500, 2**40 + 3, indptr, indices, coefs, executor=executor, batch_terms=1
    )
    assert got == serial
    # about equal terms each; a cut that falls inside a row's terms merges two batches
    assert 1 < len(executor.batches) <= workers * paillier.BATCHES_PER_WORKER


@pytest.mark.parametrize("workers", [2, 3])
def test_a_large_step_goes_in_waves_of_batches(
    workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More batches than a wave (batches capped at 40 terms): the executor gets them a wave
    of ``workers * BATCHES_PER_WORKER`` at a time, built as they are sent, and the rows are
    the serial ones."""
    monkeypatch.setattr(paillier, "MAX_BATCH_TERMS", 40)
    bases, indptr, indices, coefs = random_case(11, 300, 100, 2.0, 32)
    serial = linear_step(KEY, bases, 300, 5, indptr, indices, coefs)
    executor = InProcess(workers)
    built: list[int] = []
    honest = paillier.iter_step_batches

    def counted(*args: Any, **kwargs: Any) -> Iterator[paillier.StepBatch]:
        for batch in honest(*args, **kwargs):
            built.append(len(executor.calls))  # how many waves were sent before this one
            yield batch

    monkeypatch.setattr(paillier, "iter_step_batches", counted)
    got = linear_step(KEY, bases, 300, 5, indptr, indices, coefs, executor=executor)
    assert got == serial
    wave = workers * paillier.BATCHES_PER_WORKER
    total = int(indptr[-1]) + 300
    assert sum(executor.calls) == len(built) >= total // 40
    assert executor.calls == [wave] * (len(built) // wave) + (
        [len(built) % wave] * (len(built) % wave > 0)
    )
    # each batch is built when its wave is: after the waves before it were sent
    assert built == [k // wave for k in range(len(built))]


@given(
    st.lists(
        st.lists(st.tuples(st.integers(0, 11), st.integers(0, 2**62)), max_size=6), max_size=12
    ),
    st.integers(0, 2**48 - 1),
    st.integers(2, 6),
    st.integers(1, 8),
    st.sampled_from([0, 3_000, 1 << 30]),
)
@settings(max_examples=60, database=None)
def test_batching_property(
    rows: list[list[tuple[int, int]]], self_coef: int, workers: int, terms: int, budget: int
) -> None:
    bases = [mpz(secrets.randbelow(KEY.nsquare)) for _ in range(max(12, len(rows)))]
    indptr = np.array([0, *np.cumsum([len(r) for r in rows])], dtype=np.int64)
    indices = np.array([c for r in rows for c, _ in r], dtype=np.int64)
    coefs = [e for r in rows for _, e in r]
    args = (KEY, bases, len(rows), self_coef, indptr, indices, coefs)
    serial = linear_step(*args, table_budget=budget)
    executor = Recording(workers)
    got = linear_step(*args, table_budget=budget, executor=executor, batch_terms=terms)
    assert got == serial


def test_batches_cover_the_rows_with_their_own_bases_first() -> None:
    bases, indptr, indices, coefs = random_case(7, 100, 30, 3.0, 20)
    exps = np.asarray(coefs, dtype=np.int64)
    batches = step_batches(KEY, bases, 100, 5, indptr, indices, exps, workers=3, min_terms=1)
    assert len(batches) == 3 * paillier.BATCHES_PER_WORKER
    assert [b.first_row for b in batches] == sorted(b.first_row for b in batches)
    assert batches[0].first_row == 0
    assert sum(b.n_rows for b in batches) == 100
    width = KEY.ciphertext_bytes
    for batch in batches:
        local = [
            int.from_bytes(batch.bases[i : i + width], "big")
            for i in range(0, len(batch.bases), width)
        ]
        own = [int(bases[batch.first_row + x]) for x in range(batch.n_rows)]
        assert local[: batch.n_rows] == own
        lo = int(indptr[batch.first_row])
        for j, column in enumerate(batch.indices.tolist()):
            assert local[column] == int(bases[int(indices[lo + j])])
    # too few terms for a batch each: the step stays whole
    assert len(step_batches(KEY, bases, 100, 5, indptr, indices, exps, workers=3)) == 1


# ------------------------------------------------------------------ secure simulations


@pytest.mark.parametrize(("banks", "periods"), SIMULATIONS)
def test_secure_simulation_through_the_pool_is_bit_identical(
    banks: tuple[str, ...],
    periods: int,
    pool: ProcessExecutor,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every linear step of every bank, run through the pool, equals the serial step; the
    decrypted scores are the plaintext engine's."""
    check_secure_simulation(pool, banks, periods, tmp_path, monkeypatch)


# ------------------------------------------------------------------ packing


@pytest.mark.parametrize(("count", "slots"), [(1, 4), (7, 4), (64, 4), (65, 5), (300, 16)])
@pytest.mark.parametrize("batch_values", [1, 9, 1 << 20])
def test_pack_through_the_pool_gives_the_serial_integers(
    pool: ProcessExecutor, count: int, slots: int, batch_values: int
) -> None:
    values = [mpz(secrets.randbelow(KEY.nsquare)) for _ in range(count)]
    serial = paillier.pack(KEY, values, 11, slots)
    got = paillier.pack(KEY, values, 11, slots, executor=pool, batch_values=batch_values)
    assert got == serial
    assert len(got) == -(-count // slots)


@given(st.integers(0, 60), st.integers(1, 9), st.integers(2, 6), st.integers(1, 20))
@settings(max_examples=60, database=None)
def test_pack_batching_property(count: int, slots: int, workers: int, least: int) -> None:
    values = [mpz(secrets.randbelow(KEY.nsquare)) for _ in range(count)]
    executor = Recording(workers)
    got = paillier.pack(KEY, values, 13, slots, executor=executor, batch_values=least)
    assert got == paillier.pack(KEY, values, 13, slots)
    assert len(executor.batches) <= workers * paillier.BATCHES_PER_WORKER
    for batch in executor.batches[:-1]:  # whole groups, but the last
        assert len(batch.ciphertexts) % (slots * KEY.ciphertext_bytes) == 0
