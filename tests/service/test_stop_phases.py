"""A service stops on request in every phase of a run, and keeps what the slot resumes from.

Three services in one process (real mutual TLS on loopback). A peer is held at a chosen point
of the protocol (its session's work blocks in its worker thread), so alice waits in the phase
the test chose, not wherever a clock happened to be: the handshake (bob and charlie not
started), iterating (bob never finishes an iteration), decrypting (bob never answers alice's
decryption request) and finishing (charlie never finishes his own decryption, so he never says
Done). Then alice is asked to stop, as SIGTERM does (``Service.request_stop``).

For finishing the held peer is charlie, not bob: alice asks bob, next after her in ring order,
for her partial decryptions, and a held worker thread serves nobody; had bob been held, his own
decryption could finish before alice's request reached him (it did on a busy machine), leaving
alice in decrypting. Nobody needs charlie's worker for alice to finish.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from nodes import assert_matches_plaintext, make_network
from service.services import Services

from riskprop.config import PlayerConfig, load_player_config
from riskprop.protocol.session import RunSession
from riskprop.service.daemon import Service

PARTIES = ["alice", "bob", "charlie"]
ALL_DAY = {"cron": "0 0 * * *", "run_id": "daily-{date}", "join_window": 86399}
PATIENT = {"connect": 60, "request": 60, "idle": 600, "deadline": 600}
#: A liveness limit: only a node that does not stop runs into it.
PATIENCE = 120.0


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set at the end: lets bob's held worker thread go."""
    event = threading.Event()
    yield event
    event.set()


def hold(
    monkeypatch: pytest.MonkeyPatch,
    party: str,
    method: str,
    release: threading.Event,
    when: Callable[..., bool],
) -> None:
    """Make ``RunSession.<method>`` block in ``party``'s worker thread while ``when(*args)``."""
    honest = getattr(RunSession, method)

    @functools.wraps(honest)
    def held(self: RunSession, *args: Any, **kwargs: Any) -> Any:
        if self.name == party and when(*args):
            release.wait()
        return honest(self, *args, **kwargs)

    monkeypatch.setattr(RunSession, method, held)


def always(*args: Any) -> bool:
    return True


def asked_by_alice(requester: str, *args: Any) -> bool:
    return requester == "alice"


#: phase -> (the peer held, the session method it is held in, when, whether bob and charlie
#: start)
PHASES: dict[str, tuple[str, str, Callable[..., bool], bool]] = {
    "handshake": ("bob", "start", always, False),
    "iterating": ("bob", "_iterate", always, True),
    "decrypting": ("bob", "_answer", asked_by_alice, True),
    "finishing": ("charlie", "_finish_decryption", always, True),
}


@pytest.mark.parametrize("phase", list(PHASES))
def test_a_service_stops_on_request_in_every_phase(
    phase: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, release: threading.Event
) -> None:
    held, method, when, others = PHASES[phase]
    hold(monkeypatch, held, method, release, when)
    network = make_network(tmp_path, PARTIES, timeouts=PATIENT)
    Services(network, ALL_DAY)  # writes the schedule and admin ports into the player files

    def loader(party: str) -> Callable[[], PlayerConfig]:
        return lambda: load_player_config(network.configs, party)

    async def scenario() -> tuple[str, dict[str, Any]]:
        services = {p: Service(loader(p)) for p in (PARTIES if others else ["alice"])}
        tasks = {p: asyncio.create_task(s.serve()) for p, s in services.items()}
        alice = services["alice"]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PATIENCE
        while alice.current is None or alice.current.tracker.phase != phase:
            assert loop.time() < deadline, f"alice never reached {phase}: {alice.status()}"
            for name, task in tasks.items():
                assert not task.done(), f"{name} ended: {task}"
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # alice waits in the phase (a peer is held)
        reached = alice.current.tracker.phase
        alice.request_stop()
        await asyncio.wait_for(tasks["alice"], PATIENCE)  # serve() returns: the CLI exits 0
        record = alice.history.records[0].to_json()
        for name, service in services.items():
            if name != "alice":
                service.request_stop()
        release.set()
        await asyncio.wait_for(asyncio.gather(*tasks.values(), return_exceptions=True), PATIENCE)
        return reached, record

    async def restart() -> None:
        """All three again: the day's run resumes and completes at every bank."""
        services = {p: Service(loader(p)) for p in PARTIES}
        tasks = [asyncio.create_task(s.serve()) for s in services.values()]
        deadline = asyncio.get_running_loop().time() + PATIENCE
        while not all(s.history.last_success() for s in services.values()):
            assert asyncio.get_running_loop().time() < deadline, {
                p: (s.status()["current"] or {}).get("detail") for p, s in services.items()
            }
            assert not any(task.done() for task in tasks)
            await asyncio.sleep(0.05)
        for service in services.values():
            service.request_stop()
        await asyncio.wait_for(asyncio.gather(*tasks), PATIENCE)

    reached, record = asyncio.run(scenario())
    assert reached == phase
    assert record["status"] == "stopped"
    run_id = record["run_id"]
    folder = network.out / "alice" / "runs" / run_id
    # alice's result is saved the moment it is known; the run succeeds once every peer is done
    assert (folder / "risk_scores.csv").exists() == (phase == "finishing")
    assert not (network.out / "alice" / "latest").exists()
    if phase != "handshake":  # the slot resumes from here at the next start
        assert (folder / ".riskprop" / run_id / "checkpoint.bin").is_file()
    asyncio.run(restart())
    assert_matches_plaintext(network, lambda party: network.out / party / "runs" / run_id)
    assert all((network.out / p / "latest").resolve().name == run_id for p in PARTIES)
