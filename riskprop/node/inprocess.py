"""Every party of a run in one process over the in-memory transport (tests, secure simulate)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from riskprop.core.batches import Executor
from riskprop.core.data import BankData
from riskprop.core.paillier import NoiseSource
from riskprop.core.threshold import KeyShare
from riskprop.core.types import FloatArray
from riskprop.node.driver import drive
from riskprop.node.transport import InMemoryNetwork, Tap
from riskprop.protocol.messages import Codec, RunDescriptor
from riskprop.protocol.session import RunSession, SessionStats


@dataclass(frozen=True, eq=False)
class PartyOutcome:
    """What one bank learnt and spent."""

    name: str
    account_ids: tuple[str, ...]
    scores: FloatArray
    stats: SessionStats
    bytes_sent: int


async def run_parties(
    descriptor: RunDescriptor,
    banks: Sequence[BankData],
    shares: Mapping[str, KeyShare],
    *,
    tap: Tap | None = None,
    noise: Callable[[str], NoiseSource] | None = None,
    idle_timeout: float = 600.0,
    executor: Executor | None = None,
    share_in_workers: bool = False,
) -> dict[str, PartyOutcome]:
    """Run one session per bank concurrently; every bank must have a share. The banks share
    ``executor`` (default: each computes in this process), with their key shares when
    ``share_in_workers`` and it is private (``RunSession``)."""
    public = next(iter(shares.values())).key.public
    network = InMemoryNetwork(descriptor.parties, Codec.for_key(public), tap=tap)
    sessions = {
        b.name: RunSession(
            descriptor,
            b,
            shares[b.name],
            noise(b.name) if noise else None,
            executor=executor,
            share_in_workers=share_in_workers,
        )
        for b in banks
    }
    transports = {name: network.endpoint(name) for name in sessions}
    await asyncio.gather(
        *(drive(s, transports[n], idle_timeout=idle_timeout) for n, s in sessions.items())
    )
    outcomes = {}
    for name, session in sessions.items():
        assert session.result is not None  # a finished session has its result
        outcomes[name] = PartyOutcome(
            name,
            session.bank.account_ids,
            session.result,
            session.stats,
            transports[name].bytes_sent,
        )
    return outcomes


def run_in_process(
    descriptor: RunDescriptor,
    banks: Sequence[BankData],
    shares: Mapping[str, KeyShare],
    **options: object,
) -> dict[str, PartyOutcome]:
    """Synchronous wrapper of ``run_parties``."""
    return asyncio.run(run_parties(descriptor, banks, shares, **options))  # type: ignore[arg-type]
