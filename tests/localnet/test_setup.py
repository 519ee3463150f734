"""``riskprop setup-local`` (``riskprop.localnet.setup``): what ``configs/`` expects under a
root -- certificates, a dealt key, sample data -- made once, kept when complete, remade when
forced or made for other parties."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from riskprop.cli import main
from riskprop.errors import ConfigError
from riskprop.files.keys import load_public
from riskprop.localnet.setup import setup_local

PARTIES = ("alice", "bob", "charlie")
SMALL: dict[str, Any] = {"key_bits": 512, "accounts": 30, "edges": 60, "seed": 1}


def fingerprint(root: Path) -> str:
    return str(json.loads((root / "keys" / "public.json").read_text())["fingerprint"])


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("setup") / "local"
    return root, setup_local(root, PARTIES, **SMALL)


def test_makes_certificates_a_key_and_data(made: tuple[Path, list[str]]) -> None:
    root, items = made
    assert len(items) == 1 + len(PARTIES) + 2  # a CA, a certificate each, the key, the data
    assert items[0] == f"a local CA in {root / 'certs'}"
    for party in PARTIES:
        for suffix in ("pem", "key"):
            assert (root / "certs" / f"{party}.{suffix}").is_file()
        assert stat.S_IMODE((root / "certs" / f"{party}.key").stat().st_mode) == 0o600
        share = root / "keys" / f"{party}.share.json"
        assert stat.S_IMODE(share.stat().st_mode) == 0o600
        assert (root / "data" / party / "accounts.csv").is_file()
        assert (root / "data" / party / "transactions.csv").is_file()
    key = load_public(root / "keys" / "public.json")
    assert key.parties == PARTIES and key.threshold == 1 and key.public.bits == 512


def test_keeps_what_exists(
    made: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, _ = made
    before = (root / "keys" / "alice.share.json").read_text()
    assert setup_local(root, PARTIES, **SMALL) == []
    main(["setup-local", "--root", str(root), "--key-bits", "512"])
    out = capsys.readouterr().out
    assert "nothing to do" in out and "made" not in out
    assert (root / "keys" / "alice.share.json").read_text() == before


def test_other_parties_get_their_own_key_and_data(tmp_path: Path) -> None:
    root = tmp_path / "local"
    setup_local(root, PARTIES, **SMALL)
    earlier = fingerprint(root)
    items = setup_local(root, ["alice", "bob"], **SMALL)
    assert not any("local CA" in item for item in items)  # the CA and certificates are kept
    assert any("threshold key" in item for item in items)
    assert any("sample data" in item for item in items)
    assert load_public(root / "keys" / "public.json").parties == ("alice", "bob")
    assert fingerprint(root) != earlier
    assert sorted(p.name for p in (root / "data").iterdir() if p.is_dir()) == ["alice", "bob"]


def test_force_makes_everything_anew(tmp_path: Path) -> None:
    root = tmp_path / "local"
    setup_local(root, PARTIES, **SMALL)
    ca, earlier = (root / "certs" / "ca.pem").read_bytes(), fingerprint(root)
    items = setup_local(root, PARTIES, **SMALL, force=True)
    assert len(items) == 1 + len(PARTIES) + 2
    assert (root / "certs" / "ca.pem").read_bytes() != ca
    assert fingerprint(root) != earlier


@pytest.mark.parametrize(
    ("parties", "key_bits", "problem"),
    [
        (["alice"], 512, "--parties must name at least two parties"),
        (["alice", "bob"], 100, "--key-bits must be a multiple of 8 and at least 128"),
        (["alice", "bob"], 516, "--key-bits must be a multiple of 8 and at least 128"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_made(
    tmp_path: Path, parties: list[str], key_bits: int, problem: str
) -> None:
    options = {**SMALL, "key_bits": key_bits}
    with pytest.raises(ConfigError, match=problem):
        setup_local(tmp_path / "local", parties, **options)
    assert not (tmp_path / "local").exists()
