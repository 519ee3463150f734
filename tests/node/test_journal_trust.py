"""A node's journal is private, sealed and bound to the run it was started for."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from riskprop.errors import ConfigError
from riskprop.files.sealed import DamagedFileError, state_key
from riskprop.node.journal import FileJournal
from riskprop.protocol.messages import Done, Message

KEY = state_key(2**200 + 12345)
IDENTITY = {"iterations": "3", "delta_a": "0.5", "data": "ab" * 32}
WIDTH = 64


def journal(directory: Path, **changes: object) -> FileJournal:
    options: dict[str, object] = {"key": KEY, "identity": IDENTITY, **changes}
    return FileJournal(directory, WIDTH, **options)  # type: ignore[arg-type]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_are_private(tmp_path: Path) -> None:
    files = journal(tmp_path / "run")
    files.save_checkpoint(b"checkpoint")
    files.record(Message("run", "alice", "bob", Done(), seq=1))
    files.close()
    assert mode(tmp_path) == mode(tmp_path / "run") == 0o700
    for name in ("checkpoint.bin", "outbox.log", "identity.bin"):
        assert mode(tmp_path / "run" / name) == 0o600, name


def test_a_journal_of_other_inputs_says_what_changed(tmp_path: Path) -> None:
    journal(tmp_path / "run").close()
    with pytest.raises(ConfigError, match=r"other inputs \(iterations 3 -> 5\)"):
        journal(tmp_path / "run", identity={**IDENTITY, "iterations": "5"})
    with pytest.raises(ConfigError, match=r"other inputs \(the bank's data\); use a new run id"):
        journal(tmp_path / "run", identity={**IDENTITY, "data": "cd" * 32})
    journal(tmp_path / "run").close()  # the same inputs resume


@pytest.mark.parametrize("name", ["checkpoint.bin", "outbox.log", "identity.bin"])
def test_a_flipped_bit_in_any_file_is_one_clear_error(tmp_path: Path, name: str) -> None:
    files = journal(tmp_path / "run")
    files.save_checkpoint(b"ciphertexts " * 10)
    for seq in (1, 2):
        files.record(Message("run", "alice", "bob", Done(), seq=seq))
    files.close()
    path = tmp_path / "run" / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x04
    path.write_bytes(bytes(data))
    remedy = r"--fresh at every bank \(riskprop run --fresh; a service: riskprop trigger --fresh\)$"
    with pytest.raises(DamagedFileError, match=rf"^{path}: damaged.*{remedy}"):
        journal(tmp_path / "run").load_checkpoint()


def test_a_truncated_checkpoint_and_another_banks_key_are_refused(tmp_path: Path) -> None:
    files = journal(tmp_path / "run")
    files.save_checkpoint(b"x" * 100)
    assert files.load_checkpoint() == b"x" * 100
    files.close()
    path = tmp_path / "run" / "checkpoint.bin"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DamagedFileError, match="damaged"):
        journal(tmp_path / "run").load_checkpoint()
    with pytest.raises(DamagedFileError, match="another bank's"):
        journal(tmp_path / "run", key=state_key(7))
