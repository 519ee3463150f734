"""Driving dealerless key generation (``riskprop.node.keygen``): in memory on a virtual clock,
where a party that drops out is named by the others, and as three node processes over TLS."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
import virtualtime

from riskprop.core.threshold import KeyShare
from riskprop.errors import ProtocolError
from riskprop.node.keygen import drive_keygen
from riskprop.node.transport import InMemoryNetwork, Transport
from riskprop.protocol.keygen import KeygenParams, KeygenParty
from riskprop.protocol.messages import Codec, Message

BITS = 512
KEYGEN = [sys.executable, "-m", "riskprop", "keygen"]


def names(n: int) -> tuple[str, ...]:
    return tuple(f"bank{i}" for i in range(1, n + 1))


KEYGEN = [sys.executable, "-m", "riskprop", "keygen"]


def run_networked(
    params: KeygenParams, drop: str | None = None, after_round: int = 0, timeout: float = 30
) -> dict[str, KeyShare | BaseException]:
    """Every party over the in-memory transport; ``drop`` stops answering after a round."""

    async def main() -> dict[str, KeyShare | BaseException]:
        network = InMemoryNetwork(params.parties, Codec())

        class Dropping:
            def __init__(self, name: str) -> None:
                self.inner = network.endpoint(name)
                self.name = name
                self.bytes_sent = 0

            async def send(self, message: Message) -> None:
                if message.iteration > after_round:
                    await asyncio.sleep(3600)  # the process hangs or died: nothing more arrives
                await self.inner.send(message)

            async def receive(self) -> Message:
                return await self.inner.receive()

        tasks = {}
        for name in params.parties:
            transport: Transport = Dropping(name) if name == drop else network.endpoint(name)
            party = KeygenParty(params, name)
            tasks[name] = asyncio.create_task(drive_keygen(party, transport, round_timeout=timeout))
        honest = [tasks[p] for p in params.parties if p != drop]
        done = await asyncio.gather(*honest, return_exceptions=True)
        if drop:
            tasks[drop].cancel()
        return dict(zip([p for p in params.parties if p != drop], done, strict=True))

    return virtualtime.run(main())


def test_networked_key_generation_agrees() -> None:
    params = KeygenParams(names(3), 1, bits=BITS, sigma=40, session="net")
    results = run_networked(params)
    keys = {r.key for r in results.values() if isinstance(r, KeyShare)}
    assert len(keys) == 1 and len(results) == 3


@pytest.mark.parametrize("after_round", [0, 3])
def test_a_party_that_drops_out_makes_the_others_abort_with_a_clear_error(
    after_round: int,
) -> None:
    params = KeygenParams(names(3), 1, bits=BITS, sigma=40, session="drop")
    results = run_networked(params, drop="bank2", after_round=after_round, timeout=1.5)
    assert set(results) == {"bank1", "bank3"}
    for outcome in results.values():
        assert isinstance(outcome, ProtocolError)
        message = str(outcome)
        assert "bank2" in message and ("within 1.5 s" in message or "aborted by" in message)


def test_mismatched_parameters_abort() -> None:
    async def main() -> list[KeyShare | BaseException]:
        parties = names(3)
        network = InMemoryNetwork(parties, Codec())
        runs = []
        for name in parties:
            bits = 528 if name == "bank3" else BITS
            params = KeygenParams(parties, 1, bits=bits, sigma=40, session="mismatch")
            party = KeygenParty(params, name)
            runs.append(drive_keygen(party, network.endpoint(name), round_timeout=5))
        return await asyncio.gather(*runs, return_exceptions=True)

    for outcome in virtualtime.run(main()):
        assert isinstance(outcome, ProtocolError)
        assert "other parameters" in str(outcome) or "aborted by" in str(outcome)


def test_three_node_processes_generate_a_key_over_tls_and_a_run_uses_it(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    from nodes import Network, assert_matches_plaintext, configure, wait_all

    from riskprop.files.keys import PUBLIC_FILE, load_public, load_share, share_file
    from riskprop.lab.synthetic import generate_dataset
    from riskprop.node.tls import make_ca, make_node_certificate

    parties = list(names(3))
    certs, keys, data = tmp_path / "certs", tmp_path / "keys", tmp_path / "data"
    ca_cert, ca_key = make_ca(certs)
    for name in parties:
        make_node_certificate(certs, name, ca_cert=ca_cert, ca_key=ca_key)
    generate_dataset(data, accounts=90, edges=300, banks=parties, seed=7)
    timeouts = {"connect": 30, "request": 30, "idle": 60, "deadline": 300}
    configure(tmp_path, parties, data, keys, certs, timeouts)
    network = Network(tmp_path, parties, tmp_path / "configs", certs, data, tmp_path / "out", keys)
    for name in parties:
        command = [sys.executable, "-m", "riskprop", "keygen", "--player", name]
        command += ["--config", str(network.configs), "--key-bits", str(BITS), "--sigma", "40"]
        log = (tmp_path / f"keygen-{name}.log").open("wb")
        processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
    codes = wait_all(processes[-3:], timeout=240)
    logs = {n: (tmp_path / f"keygen-{n}.log").read_text() for n in parties}
    assert codes == [0, 0, 0], logs
    public = load_public(keys / PUBLIC_FILE)
    for name in parties:
        path = share_file(keys, name)
        assert path.stat().st_mode & 0o777 == 0o600
        assert load_share(path, name).key == public
        assert "key share written" in logs[name]
    # The same command again refuses to overwrite the share.
    again = subprocess.run(
        [*KEYGEN, "--player", "bank1", "--config", str(network.configs), "--key-bits", str(BITS)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 1 and "a key share exists already" in again.stderr
    processes.extend(network.start(p) for p in parties)
    assert wait_all(processes[-3:], timeout=240) == [0, 0, 0]
    assert_matches_plaintext(network)


def test_the_command_line_passes_sigma_and_biprimality_tests_to_every_party(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--sigma`` and ``--biprimality-tests`` reach ``KeygenParams`` (hence the digest every
    party checks); their defaults are the library's; a count below the bound is one line."""
    from riskprop.cli import main
    from riskprop.files.keys import PUBLIC_FILE, dealer_keygen, load_public, share_file
    from riskprop.localnet.harness import write_configs
    from riskprop.protocol.keygen import DEFAULT_BIPRIMALITY_TESTS, DEFAULT_SIGMA

    write_configs(
        tmp_path / "configs",
        data=tmp_path / "data",
        keys=tmp_path / "keys",
        certs=tmp_path / "certs",
        out=tmp_path / "out",
        parties=list(names(3)),
        run={"run_id": "r", "iterations": 1},
    )
    seen: list[KeygenParams] = []
    dealt = tmp_path / "dealt"  # a key for the command to print the fingerprint of
    dealer_keygen(dealt, list(names(3)), 1, BITS)

    def fake_keygen(config: object, params: KeygenParams, **_: object) -> Path:
        seen.append(params)
        return share_file(dealt, "bank1")

    monkeypatch.setattr("riskprop.node.keygen.keygen_node_sync", fake_keygen)
    command = ["keygen", "--player", "bank1", "--config", str(tmp_path / "configs")]
    command += ["--insecure", "--key-bits", str(BITS)]
    main(command)
    fingerprint = load_public(dealt / PUBLIC_FILE).fingerprint()
    assert fingerprint[:8] + " " + fingerprint[8:16] in capsys.readouterr().out
    main([*command, "--sigma", "41", "--biprimality-tests", "57"])
    assert [(p.sigma, p.biprimality_tests) for p in seen] == [
        (DEFAULT_SIGMA, DEFAULT_BIPRIMALITY_TESTS),
        (41, 57),
    ]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--biprimality-tests", "39"])
    assert exit_.value.code == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and len(seen) == 2
    assert errors[0].startswith("riskprop: error: --biprimality-tests: must be at least 40")
