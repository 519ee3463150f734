"""Incoming-edge structures, globally (plaintext simulation) and per bank (secure protocol).

Which edges count (the specification every engine follows): the incoming edges of account
``x`` of bank ``B`` in period ``p`` are the rows of B's own transactions file with destination
``x`` and period ``p``. A source ``s`` of B itself always counts. A source ``s`` of another
bank ``S`` counts only if S's own file lists ``s`` as sending to some account of B in period
``p`` -- exactly the accounts whose encrypted scores S sends to B. Parallel transactions add up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from riskprop.core.data import BankData, Dataset
from riskprop.core.types import FloatArray, IntArray


@dataclass(frozen=True, eq=False)
class IncomingCSR:
    """Row ``x`` holds the incoming edges ``(indices[j], amount[j])``, ``indptr[x] <= j <
    indptr[x+1]``; columns index a score vector of length ``n_cols``."""

    n_rows: int
    n_cols: int
    indptr: IntArray
    indices: IntArray
    amount: FloatArray

    @classmethod
    def from_edges(
        cls,
        dst: IntArray,
        src: IntArray,
        amount: FloatArray,
        n_rows: int,
        n_cols: int,
        *,
        merge: bool = False,
    ) -> IncomingCSR:
        """Sort edges by destination; with ``merge`` also add up parallel edges."""
        if merge and len(dst):
            order = np.lexsort((src, dst))
            dst, src, amount = dst[order], src[order], amount[order]
            start = np.flatnonzero(np.r_[True, (dst[1:] != dst[:-1]) | (src[1:] != src[:-1])])
            amount = np.add.reduceat(amount, start)
            dst, src = dst[start], src[start]
        else:
            order = np.argsort(dst, kind="stable")
            dst, src, amount = dst[order], src[order], amount[order]
        counts = np.bincount(dst, minlength=n_rows)
        indptr = np.zeros(n_rows + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return cls(
            n_rows=n_rows,
            n_cols=n_cols,
            indptr=indptr,
            indices=np.ascontiguousarray(src, dtype=np.int64),
            amount=np.ascontiguousarray(amount, dtype=np.float64),
        )

    @property
    def nnz(self) -> int:
        return len(self.indices)

    def rows(self) -> IntArray:
        """Destination row of every edge (the COO row index)."""
        return np.repeat(np.arange(self.n_rows, dtype=np.int64), np.diff(self.indptr))

    def row_totals(self) -> FloatArray:
        """Sum of incoming amounts per row."""
        totals = np.bincount(self.rows(), weights=self.amount, minlength=self.n_rows)
        return np.asarray(totals, dtype=np.float64)

    def weights(self) -> FloatArray:
        """``amount / row_total``; every non-empty row sums to 1, a row whose amounts are all
        zero has weight 0 throughout (it has no weighted term)."""
        row_total = self.row_totals()[self.rows()]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(row_total > 0.0, self.amount / row_total, 0.0)


@dataclass(frozen=True, eq=False)
class GlobalGraph:
    """All banks' accounts in one index space: bank ``b`` owns ``offsets[b]:offsets[b+1]``."""

    banks: tuple[str, ...]
    account_ids: tuple[tuple[str, ...], ...]
    offsets: IntArray
    initial: FloatArray
    periods: tuple[int, ...]
    incoming: tuple[IncomingCSR, ...]

    @property
    def n_accounts(self) -> int:
        return int(self.offsets[-1])


def build_global(dataset: Dataset) -> GlobalGraph:
    """The joint graph of a data set, following each bank's view as the module doc states."""
    banks = dataset.names
    n_banks = len(banks)
    offsets = np.zeros(n_banks + 1, dtype=np.int64)
    np.cumsum([b.n_accounts for b in dataset.banks], out=offsets[1:])
    id_tables = [pa.array(b.account_ids, type=pa.string()) for b in dataset.banks]
    periods = dataset.periods()
    n_periods = len(periods)

    def to_global(owner: BankData, codes: IntArray, idx: IntArray) -> IntArray:
        out = np.full(len(codes), -1, dtype=np.int64)
        for code, bank in enumerate(banks):
            mask = codes == code
            if not mask.any():
                continue
            if code == owner.own:
                out[mask] = offsets[code] + idx[mask]
            else:
                local = index_in(owner.foreign_ids[bank], id_tables[code])[idx[mask]]
                out[mask] = np.where(local >= 0, offsets[code] + local, -1)
        return out

    def listing_key(src: IntArray, dst_bank: IntArray, period_index: IntArray) -> IntArray:
        return (src * n_banks + dst_bank) * n_periods + period_index

    g_src, g_dst, p_idx = [], [], []
    for bank in dataset.banks:
        g_src.append(to_global(bank, bank.src_bank, bank.src))
        g_dst.append(to_global(bank, bank.dst_bank, bank.dst))
        p_idx.append(np.searchsorted(periods, bank.period).astype(np.int64))

    # What every bank lists as sent to another bank, per period.
    listed = KeySet(
        np.concatenate(
            [
                listing_key(s[m], b.dst_bank[m], p[m])
                for b, s, p in zip(dataset.banks, g_src, p_idx, strict=True)
                for m in [(b.src_bank == b.own) & (b.dst_bank != b.own)]
            ]
            or [np.zeros(0, dtype=np.int64)]
        ),
        universe=int(offsets[-1]) * n_banks * n_periods,
    )

    edges_dst, edges_src, edges_amt, edges_period = [], [], [], []
    for bank, s, d, p in zip(dataset.banks, g_src, g_dst, p_idx, strict=True):
        incoming = bank.dst_bank == bank.own
        own_source = bank.src_bank == bank.own
        cross = incoming & ~own_source & (s >= 0)
        key = listing_key(np.maximum(s, 0), np.full(len(s), bank.own), p)
        ok = (incoming & own_source) | (cross & listed.contains(key))
        edges_dst.append(d[ok])
        edges_src.append(s[ok])
        edges_amt.append(bank.amount[ok])
        edges_period.append(p[ok])
    all_dst = np.concatenate(edges_dst)
    all_src = np.concatenate(edges_src)
    all_amt = np.concatenate(edges_amt)
    all_period = np.concatenate(edges_period)
    n = int(offsets[-1])
    incoming_by_period = []
    for index in range(n_periods):
        m = all_period == index
        incoming_by_period.append(IncomingCSR.from_edges(all_dst[m], all_src[m], all_amt[m], n, n))
    return GlobalGraph(
        banks=banks,
        account_ids=tuple(b.account_ids for b in dataset.banks),
        offsets=offsets,
        initial=np.concatenate([b.initial for b in dataset.banks]),
        periods=tuple(periods),
        incoming=tuple(incoming_by_period),
    )


def index_in(values: Sequence[str], table: pa.Array) -> IntArray:
    """Position of each value in ``table`` (-1 where absent), hashed by pyarrow."""
    found = pc.index_in(pa.array(values, type=pa.string()), value_set=table)
    return np.asarray(pc.fill_null(found, -1).to_numpy(), dtype=np.int64)


class KeySet:
    """Membership of non-negative integer keys: a bitmap when the key range is small enough
    (one byte per possible key, at most 256 MiB), else sorted search."""

    BITMAP_LIMIT = 1 << 28

    def __init__(self, keys: IntArray, universe: int) -> None:
        self._bitmap: npt.NDArray[np.bool_] | None = None
        if universe <= self.BITMAP_LIMIT:
            self._bitmap = np.zeros(universe, dtype=bool)
            self._bitmap[keys] = True
        self._sorted = np.unique(keys) if self._bitmap is None else keys

    def contains(self, keys: IntArray) -> npt.NDArray[np.bool_]:
        if self._bitmap is not None:
            return self._bitmap[keys]
        return np.isin(keys, self._sorted)


# ----------------------------------------------------------------------- bank views


@dataclass(frozen=True, eq=False)
class PeriodView:
    """Bank B's knowledge of one period before it hears from its peers.

    ``outgoing[peer]`` are the own positions (sorted) that send to ``peer``: the roster whose
    encrypted scores B sends to that peer each iteration. Incoming edges are split into those
    from own accounts (``own_*``, sources are own positions) and those from each peer
    (``foreign[peer]``: destinations, indices into ``BankData.foreign_ids[peer]``, amounts).
    """

    outgoing: dict[str, IntArray]
    own_dst: IntArray
    own_src: IntArray
    own_amount: FloatArray
    foreign: dict[str, tuple[IntArray, IntArray, FloatArray]]

    def sent(self) -> list[int]:
        """Own positions that send to at least one peer, sorted (each is re-randomised once)."""
        return sorted({i for positions in self.outgoing.values() for i in positions.tolist()})


def period_views(bank: BankData, peers: Sequence[str], periods: Sequence[int]) -> list[PeriodView]:
    """Split bank ``bank``'s transactions into one ``PeriodView`` per period of the run."""
    own = bank.own
    codes = {peer: bank.banks.index(peer) for peer in peers}
    views = []
    for period in periods:
        in_period = bank.period == period
        incoming = in_period & (bank.dst_bank == own)
        outgoing_rows = in_period & (bank.src_bank == own)
        own_rows = incoming & (bank.src_bank == own)
        foreign = {}
        outgoing = {}
        for peer, code in codes.items():
            rows = incoming & (bank.src_bank == code)
            foreign[peer] = (bank.dst[rows], bank.src[rows], bank.amount[rows])
            outgoing[peer] = np.unique(bank.src[outgoing_rows & (bank.dst_bank == code)])
        views.append(
            PeriodView(
                outgoing=outgoing,
                own_dst=bank.dst[own_rows],
                own_src=bank.src[own_rows],
                own_amount=bank.amount[own_rows],
                foreign=foreign,
            )
        )
    return views


def resolve_view(
    view: PeriodView,
    n_accounts: int,
    foreign_ids: Mapping[str, Sequence[str]],
    rosters: Mapping[str, Sequence[str]],
    peers: Sequence[str],
) -> IncomingCSR:
    """The incoming CSR of one period once every peer's roster is known.

    Columns are the own accounts ``0..n-1`` followed by each peer's roster in ``peers`` order:
    column ``n + sum(len(rosters[q]) for q before peer) + i`` is the i-th account of ``peer``'s
    roster. Edges from a peer account absent from its roster are dropped (module doc).
    """
    dsts, srcs, amts = [view.own_dst], [view.own_src], [view.own_amount]
    offset = n_accounts
    for peer in peers:
        roster = rosters.get(peer, ())
        dst, fsrc, amt = view.foreign[peer]
        if len(dst):
            col = index_in(foreign_ids[peer], pa.array(roster, type=pa.string()))[fsrc]
            ok = col >= 0
            dsts.append(dst[ok])
            srcs.append(col[ok] + offset)
            amts.append(amt[ok])
        offset += len(roster)
    return IncomingCSR.from_edges(
        np.concatenate(dsts),
        np.concatenate(srcs),
        np.concatenate(amts),
        n_accounts,
        offset,
        merge=True,
    )
