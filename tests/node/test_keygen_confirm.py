"""Key generation ends with a confirmation: a bank's share exists only if every bank confirmed
it wrote the same key; any failure or stop leaves no share and no temporary file anywhere.

In-process tests run every bank's ``generate_key`` over the in-memory transport and order
events with hooks and tasks, never with sleeps or time-outs. Process tests run the real
command; where a bank must die or be stopped at an exact point (after staging its files,
before confirming) it runs the library with a ``before_confirm`` hook in a small script.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path

import pytest

from riskprop.core.paillier import PublicKey
from riskprop.core.threshold import KeyShare
from riskprop.errors import ConfigError, ProtocolError
from riskprop.files.keys import PUBLIC_FILE, StagedKey, load_public, load_share, share_file
from riskprop.localnet.harness import write_configs
from riskprop.node.keygen import (
    KeygenStoppedError,
    PeerAbortedError,
    Stage,
    generate_key,
)
from riskprop.node.tls import make_ca, make_node_certificate
from riskprop.node.transport import InMemoryNetwork
from riskprop.protocol.keygen import KeygenParams, KeygenParty, Rounds
from riskprop.protocol.messages import Codec

PARTIES = ("bank1", "bank2", "bank3")
BITS = 512
SIGMA = 40
#: Generous: these tests never wait for a time-out to fire in-process.
ROUND_TIMEOUT = 600.0

Outcome = KeyShare | BaseException


def params(session: str) -> KeygenParams:
    return KeygenParams(PARTIES, 1, bits=BITS, sigma=SIGMA, session=session)


def temporary_files(*directories: Path) -> list[Path]:
    return sorted(p for d in directories if d.is_dir() for p in d.iterdir() if p.suffix == ".tmp")


def generate(
    session: str,
    targets: Mapping[str, Path],
    *,
    hooks: Mapping[str, Stage] | None = None,
    stops: Mapping[str, asyncio.Event] | None = None,
    parties: Mapping[str, KeygenParty] | None = None,
    tasks: dict[str, asyncio.Task[KeyShare]] | None = None,
) -> dict[str, Outcome]:
    """Every bank's ``generate_key`` in one event loop; ``tasks`` receives the running tasks
    (for hooks that wait for another bank)."""

    async def main() -> dict[str, Outcome]:
        network = InMemoryNetwork(PARTIES, Codec())
        running = {} if tasks is None else tasks
        for name in PARTIES:
            party = (parties or {}).get(name) or KeygenParty(params(session), name)
            running[name] = asyncio.create_task(
                generate_key(
                    party,
                    network.endpoint(name),
                    targets[name],
                    round_timeout=ROUND_TIMEOUT,
                    stop=(stops or {}).get(name),
                    before_confirm=(hooks or {}).get(name),
                )
            )
        outcomes = await asyncio.gather(*running.values(), return_exceptions=True)
        return dict(zip(PARTIES, outcomes, strict=True))

    return asyncio.run(main())


def own_directories(root: Path) -> dict[str, Path]:
    """One key directory per bank (the share targets)."""
    return {name: share_file(root / name, name) for name in PARTIES}


def assert_no_key_anywhere(targets: Mapping[str, Path]) -> None:
    directories = {t.parent for t in targets.values()}
    for target in targets.values():
        assert not target.exists()
        assert not (target.parent / PUBLIC_FILE).exists()
    assert temporary_files(*directories) == []


def test_every_bank_writes_its_share_and_the_public_key_and_no_temporary_file(
    tmp_path: Path,
) -> None:
    separate = own_directories(tmp_path / "own")
    shared = {name: share_file(tmp_path / "shared", name) for name in PARTIES}
    for targets in (separate, shared):
        outcomes = generate(f"ok-{len({t.parent for t in targets.values()})}", targets)
        keys = set()
        for name, target in targets.items():
            outcome = outcomes[name]
            assert isinstance(outcome, KeyShare), outcome
            assert target.stat().st_mode & 0o777 == 0o600
            assert load_share(target, name).secret == outcome.secret
            public = load_public(target.parent / PUBLIC_FILE)
            assert (target.parent / PUBLIC_FILE).stat().st_mode & 0o777 == 0o644
            assert public == outcome.key
            keys.add(public)
        assert len(keys) == 1
        assert temporary_files(*{t.parent for t in targets.values()}) == []


def test_a_bank_that_cannot_write_its_share_leaves_no_share_anywhere_and_a_rerun_works(
    tmp_path: Path,
) -> None:
    targets = own_directories(tmp_path)
    for target in targets.values():
        target.parent.mkdir(parents=True)
    # bank2's key directory is a file: writing its temporary share fails (even for root)
    blocked = tmp_path / "blocked"
    blocked.write_text("not a directory\n")
    failing = dict(targets, bank2=blocked / "bank2.share.json")
    outcomes = generate("unwritable", failing)
    assert isinstance(outcomes["bank2"], ConfigError)
    assert "cannot write the key share" in str(outcomes["bank2"])
    for name in ("bank1", "bank3"):
        outcome = outcomes[name]
        assert isinstance(outcome, PeerAbortedError), outcome
        assert "aborted by bank2" in str(outcome) and "cannot write" in str(outcome)
    assert_no_key_anywhere(targets)
    again = generate("unwritable", targets)
    assert all(isinstance(o, KeyShare) for o in again.values()), again
    assert all(t.exists() for t in targets.values())
    assert temporary_files(*{t.parent for t in targets.values()}) == []


def test_a_bank_failing_after_staging_removes_its_files_and_the_others_name_it(
    tmp_path: Path,
) -> None:
    targets = own_directories(tmp_path)

    async def fail(share: KeyShare) -> None:
        assert StagedKey.beside(targets["bank3"], "bank3").share_tmp.exists()  # staged
        raise OSError("the disk went away")

    outcomes = generate("late-failure", targets, hooks={"bank3": fail})
    assert isinstance(outcomes["bank3"], OSError)
    for name in ("bank1", "bank2"):
        message = str(outcomes[name])
        assert isinstance(outcomes[name], ProtocolError)
        assert "aborted by bank3" in message and "bank3 failed (OSError)" in message
    assert_no_key_anywhere(targets)


def test_a_stop_after_staging_removes_the_files_and_the_peers_abort(tmp_path: Path) -> None:
    """bank1 is stopped once its files are staged; bank3 confirms only after bank1 ended, so
    no bank can have every confirmation."""
    targets = own_directories(tmp_path)
    stop = asyncio.Event()
    tasks: dict[str, asyncio.Task[KeyShare]] = {}

    async def stop_bank1(share: KeyShare) -> None:
        stop.set()
        await asyncio.Event().wait()  # bank1 never confirms: the stop cancels it here

    async def after_bank1(share: KeyShare) -> None:
        await asyncio.wait({tasks["bank1"]})

    outcomes = generate(
        "stopped",
        targets,
        hooks={"bank1": stop_bank1, "bank3": after_bank1},
        stops={"bank1": stop},
        tasks=tasks,
    )
    assert isinstance(outcomes["bank1"], KeygenStoppedError)
    assert "stopped on request; no key share was written" in str(outcomes["bank1"])
    for name in ("bank2", "bank3"):
        outcome = outcomes[name]
        assert isinstance(outcome, PeerAbortedError), outcome
        assert "aborted by bank1: bank1 stopped on request" in str(outcome)
    assert_no_key_anywhere(targets)


class BlockedParty(KeygenParty):
    """A party whose first computation blocks its worker thread until ``release`` is set;
    ``reached`` is called (from that thread) when it blocks."""

    def __init__(
        self,
        params: KeygenParams,
        name: str,
        reached: Callable[[], None],
        release: threading.Event,
    ) -> None:
        super().__init__(params, name)
        self.reached = reached
        self.release = release

    def rounds(self) -> Rounds:
        self.reached()
        self.release.wait()
        return (yield from super().rounds())


def test_a_stop_while_computing_does_not_wait_for_the_computation(tmp_path: Path) -> None:
    """bank1 is stopped while its worker thread is busy (blocked here): it ends, and its
    peers abort, while the thread still runs."""
    targets = own_directories(tmp_path)
    release = threading.Event()
    loop_and_stop: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    def reached() -> None:
        loop, stop = loop_and_stop[0]
        loop.call_soon_threadsafe(stop.set)

    async def main() -> dict[str, Outcome]:
        stop = asyncio.Event()
        loop_and_stop.append((asyncio.get_running_loop(), stop))
        network = InMemoryNetwork(PARTIES, Codec())
        runs = []
        for name in PARTIES:
            party: KeygenParty = KeygenParty(params("blocked"), name)
            if name == "bank1":
                party = BlockedParty(params("blocked"), name, reached, release)
            runs.append(
                generate_key(
                    party,
                    network.endpoint(name),
                    targets[name],
                    round_timeout=ROUND_TIMEOUT,
                    stop=stop if name == "bank1" else None,
                )
            )
        outcomes = await asyncio.gather(*runs, return_exceptions=True)
        assert not release.is_set()  # the computation was still running throughout
        return dict(zip(PARTIES, outcomes, strict=True))

    try:
        outcomes = asyncio.run(main())
    finally:
        release.set()
    assert isinstance(outcomes["bank1"], KeygenStoppedError), outcomes["bank1"]
    for name in ("bank2", "bank3"):
        assert "aborted by bank1: bank1 stopped on request" in str(outcomes[name])
    assert_no_key_anywhere(targets)


class OtherKeyParty(KeygenParty):
    """A party that ends with another public key than its peers (a bug, or a forged key)."""

    def rounds(self) -> Rounds:
        share = yield from super().rounds()
        other = replace(share.key, public=PublicKey(share.key.public.n + 2))
        return replace(share, key=other)


def test_banks_confirm_the_same_public_key(tmp_path: Path) -> None:
    targets = own_directories(tmp_path)
    odd = OtherKeyParty(params("other-key"), "bank3")
    outcomes = generate("other-key", targets, parties={"bank3": odd})
    for name in PARTIES:
        assert isinstance(outcomes[name], ProtocolError), outcomes[name]
        assert "confirmed another public key" in str(outcomes[name])
    for name in ("bank1", "bank2"):
        assert "bank3" in str(outcomes[name])
    assert_no_key_anywhere(targets)


def test_leftovers_of_an_interrupted_generation_are_found_and_only_this_banks(
    tmp_path: Path,
) -> None:
    staged = StagedKey.beside(share_file(tmp_path, "bank1"), "bank1")
    mine = [
        staged.share_tmp,
        staged.public_tmp,
        tmp_path / ".bank1.share.json.k2j4x9.tmp",  # an atomic write's random name
    ]
    theirs = [
        StagedKey.beside(share_file(tmp_path, "bank2"), "bank2").share_tmp,
        StagedKey.beside(share_file(tmp_path, "bank2"), "bank2").public_tmp,
        tmp_path / "bank1.share.json",  # a completed share is no leftover
    ]
    for path in mine + theirs:
        path.write_text("x")
    assert staged.remove_leftovers() == sorted(mine)
    assert [p for p in mine + theirs if p.exists()] == theirs


# --------------------------------------------------------------------- real processes

#: The library with a hook that signals this process once its files are staged (before it
#: confirms), then waits there; argv: config directory, player, signal name.
HOOKED = """
import asyncio, logging, os, signal, sys
from pathlib import Path
from riskprop.cli.logs import configure
from riskprop.config import load_player_config
from riskprop.errors import RiskpropError
from riskprop.node.keygen import keygen_node_sync, keygen_params

configure(logging.INFO)
config = load_player_config(Path(sys.argv[1]), sys.argv[2], for_keygen=True)
params = keygen_params(config, bits=int(sys.argv[4]), threshold=1, sigma=int(sys.argv[5]),
                       session=None)

async def hook(share):
    os.kill(os.getpid(), getattr(signal, sys.argv[3]))
    await asyncio.Event().wait()

try:
    keygen_node_sync(config, params, before_confirm=hook)
except RiskpropError as exc:
    print(f"riskprop: error: {exc}", file=sys.stderr)
    sys.exit(1)
"""
#: Time-outs of the process tests: a round may take its time on a loaded machine; a bank that
#: died is noticed after ``request`` seconds.
TIMEOUTS = {"connect": 60.0, "request": 20.0, "idle": 60.0, "deadline": 600.0}


class Banks:
    """Configs, certificates and logs of three banks on loopback; their keys in one directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.keys = root / "keys"
        certs = root / "certs"
        ca_cert, ca_key = make_ca(certs)
        for name in PARTIES:
            make_node_certificate(certs, name, ca_cert=ca_cert, ca_key=ca_key)
        self.configs = root / "configs"
        write_configs(
            self.configs,
            data=root / "data",
            keys=self.keys,
            certs=certs,
            out=root / "out",
            parties=PARTIES,
            run={"run_id": "r", "iterations": 1, "delta_a": 0.5, "delta_b": 0.0, "periods": [0]},
            timeouts=TIMEOUTS,
        )
        self.started: list[subprocess.Popen[bytes]] = []
        self.attempt = 0

    def log(self, name: str) -> Path:
        return self.root / f"{name}-{self.attempt}.log"

    def start(self, name: str, *, hooked: str | None = None) -> subprocess.Popen[bytes]:
        """``riskprop -v keygen --player NAME``, or the hooked script sending ``hooked``."""
        if hooked is None:
            command = [sys.executable, "-m", "riskprop", "-v", "keygen", "--player", name]
            command += ["--config", str(self.configs), "--key-bits", str(BITS)]
            command += ["--sigma", str(SIGMA)]
        else:
            command = [sys.executable, "-c", HOOKED, str(self.configs), name, hooked]
            command += [str(BITS), str(SIGMA)]
        with self.log(name).open("wb") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        self.started.append(process)
        return process

    def text(self, name: str) -> str:
        return self.log(name).read_text(errors="replace")

    def wait_for_line(self, name: str, needle: str, process: subprocess.Popen[bytes]) -> None:
        """Until ``name``'s log has a line with ``needle`` (it is an event, not a delay)."""
        deadline = time.monotonic() + 120
        while needle not in self.text(name):
            assert process.poll() is None, self.text(name)
            assert time.monotonic() < deadline, self.text(name)
            time.sleep(0.05)

    def targets(self) -> dict[str, Path]:
        return {name: share_file(self.keys, name) for name in PARTIES}


@pytest.fixture
def banks(tmp_path: Path) -> Iterator[Banks]:
    banks = Banks(tmp_path)
    yield banks
    for process in banks.started:
        if process.poll() is None:
            process.kill()
            process.wait()


def wait(process: subprocess.Popen[bytes]) -> int:
    """The exit code; the generous limit only keeps a broken test from hanging."""
    return process.wait(timeout=300)


def assert_failed_with_one_line(banks: Banks, name: str, code: int, *needles: str) -> None:
    text = banks.text(name)
    assert code == 1, text
    assert "Traceback" not in text, text
    last = text.strip().splitlines()[-1]
    assert last.startswith("riskprop: error: "), text
    for needle in needles:
        assert needle in last, text


def test_a_bank_killed_after_staging_leaves_no_share_and_a_rerun_works_without_force(
    banks: Banks,
) -> None:
    """The issue's case: a bank dies while it writes its share. The others fail naming it;
    nobody has a share; the next generation removes the dead bank's temporary files and
    succeeds without --force."""
    victim = banks.start("bank2", hooked="SIGKILL")
    others = {name: banks.start(name) for name in ("bank1", "bank3")}
    assert wait(victim) == -signal.SIGKILL
    for name, process in others.items():
        assert_failed_with_one_line(banks, name, wait(process), "bank2")
    targets = banks.targets()
    assert not any(t.exists() for t in targets.values())
    assert not (banks.keys / PUBLIC_FILE).exists()
    left = StagedKey.beside(targets["bank2"], "bank2")
    assert temporary_files(banks.keys) == sorted([left.share_tmp, left.public_tmp])

    banks.attempt += 1
    rerun = {name: banks.start(name) for name in PARTIES}
    for name, process in rerun.items():
        assert wait(process) == 0, banks.text(name)
        assert "key share written" in banks.text(name)
    assert "left by an interrupted key generation" in banks.text("bank2")
    public = load_public(banks.keys / PUBLIC_FILE)
    assert all(load_share(t, n).key == public for n, t in targets.items())
    assert temporary_files(banks.keys) == []


def test_sigterm_while_waiting_for_peers_is_acknowledged_and_aborts_the_peer(
    banks: Banks,
) -> None:
    """bank3 never starts: bank1 and bank2 wait for it; bank1 is stopped there."""
    stopped, peer = banks.start("bank1"), banks.start("bank2")
    for name, process in (("bank1", stopped), ("bank2", peer)):
        banks.wait_for_line(name, "waiting for", process)
    stopped.send_signal(signal.SIGTERM)
    assert_failed_with_one_line(banks, "bank1", wait(stopped), "stopped on request")
    assert "bank1: stopping on request (SIGTERM)" in banks.text("bank1")
    assert_failed_with_one_line(
        banks, "bank2", wait(peer), "aborted by bank1: bank1 stopped on request"
    )
    assert_no_key_anywhere(banks.targets())


def test_sigterm_after_staging_removes_the_temporary_files_and_aborts_the_peers(
    banks: Banks,
) -> None:
    """bank1 signals itself once its files are staged and waits there, before confirming:
    the stop must remove the files and abort the peers, who never get its confirmation."""
    stopped = banks.start("bank1", hooked="SIGTERM")
    peers = {name: banks.start(name) for name in ("bank2", "bank3")}
    assert wait(stopped) == 1
    text = banks.text("bank1")
    assert "bank1: stopping on request (SIGTERM)" in text and "Traceback" not in text
    assert "no key share was written" in text.strip().splitlines()[-1]
    for name, process in peers.items():
        assert_failed_with_one_line(
            banks, name, wait(process), "aborted by bank1: bank1 stopped on request"
        )
    assert_no_key_anywhere(banks.targets())


def test_a_completed_share_still_needs_force_and_leftovers_go_at_start(banks: Banks) -> None:
    """Only temporary files are removed at a start; a share of a completed generation stays
    and is refused without --force, before any peer is contacted."""
    target = banks.targets()["bank1"]
    staged = StagedKey.beside(target, "bank1")
    banks.keys.mkdir()
    target.write_text("{}")
    staged.share_tmp.write_text("{}")
    assert_failed_with_one_line(banks, "bank1", wait(banks.start("bank1")), "--force")
    assert "left by an interrupted key generation" in banks.text("bank1")
    assert target.read_text() == "{}"
    assert temporary_files(banks.keys) == []
