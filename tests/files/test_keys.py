"""Key-share files: modes, round trips, and every kind of damaged or foreign file refused."""

from __future__ import annotations

import json
import os
import stat
from itertools import combinations
from pathlib import Path

import pytest

from riskprop.core.paillier import FreshNoise, encrypt
from riskprop.core.threshold import (
    KeyShare,
    combine,
    partial_decrypt,
)
from riskprop.errors import ConfigError
from riskprop.files.keys import dealer_keygen, load_public, load_share, share_file

KEY_BITS = 512


@pytest.fixture
def key_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "keys"
    paths = dealer_keygen(directory, ["alice", "bob", "charlie"], 1, KEY_BITS)
    assert sorted(p.name for p in paths) == sorted(
        ["public.json", "alice.share.json", "bob.share.json", "charlie.share.json"]
    )
    return directory


def test_key_files_modes_and_round_trip(key_dir: Path) -> None:
    public = load_public(key_dir / "public.json")
    assert public.parties == ("alice", "bob", "charlie")
    assert public.threshold == 1
    assert public.public.bits == KEY_BITS
    assert "share" not in json.loads((key_dir / "public.json").read_text())
    shares: dict[str, KeyShare] = {}
    for party in public.parties:
        path = share_file(key_dir, party)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        share = load_share(path, party)
        assert share.party == party
        assert share.key == public
        assert load_share(path).party == party  # party check optional
        shares[party] = share
    assert not list(key_dir.glob("*.tmp")) and not list(key_dir.glob(".*"))
    plain = [0, 7, public.public.n - 1]
    cts = encrypt(public.public, plain, FreshNoise(public.public))
    for quorum in combinations(public.parties, 2):
        partials = {p: partial_decrypt(shares[p], cts) for p in quorum}
        assert combine(public, partials) == plain


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_share_readable_by_others_is_refused(key_dir: Path, mode: int) -> None:
    path = share_file(key_dir, "bob")
    os.chmod(path, mode)
    with pytest.raises(ConfigError, match="chmod 600") as info:
        load_share(path, "bob")
    assert str(path) in str(info.value)
    os.chmod(path, 0o400)
    assert load_share(path, "bob").party == "bob"


def test_share_of_another_party_is_refused(key_dir: Path) -> None:
    with pytest.raises(ConfigError, match="alice") as info:
        load_share(share_file(key_dir, "alice"), "bob")
    assert "bob" in str(info.value)


def _rewrite(path: Path, **changes: object) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))  # keeps the file's mode


def test_tampered_fingerprint_is_refused(key_dir: Path) -> None:
    path = share_file(key_dir, "charlie")
    fingerprint = json.loads(path.read_text())["fingerprint"]
    _rewrite(path, fingerprint=("0" if fingerprint[0] != "0" else "1") + fingerprint[1:])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(ConfigError, match="fingerprint"):
        load_share(path, "charlie")
    public = key_dir / "public.json"
    _rewrite(public, fingerprint="00" * 32)
    with pytest.raises(ConfigError, match="fingerprint"):
        load_public(public)


def test_tampered_modulus_is_refused(key_dir: Path) -> None:
    path = share_file(key_dir, "charlie")
    n = int(json.loads(path.read_text())["n"], 16)
    _rewrite(path, n=format(n + 2, "x"))
    with pytest.raises(ConfigError, match="fingerprint"):
        load_share(path, "charlie")


def test_share_naming_an_unknown_party_is_refused(key_dir: Path) -> None:
    path = share_file(key_dir, "charlie")
    _rewrite(path, party="mallory")
    with pytest.raises(ConfigError, match="mallory"):
        load_share(path)


@pytest.mark.parametrize("text", ["", "{", "[]", '{"format": "other"}'])
def test_garbage_key_file_is_a_config_error(key_dir: Path, text: str) -> None:
    path = share_file(key_dir, "alice")
    path.write_text(text)
    with pytest.raises(ConfigError):
        load_share(path, "alice")


def test_missing_share_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_share(tmp_path / "nobody.share.json", "nobody")


@pytest.mark.parametrize("bits", [64, 520 + 1, 100])
def test_dealer_keygen_refuses_bad_sizes(tmp_path: Path, bits: int) -> None:
    with pytest.raises(ConfigError, match=f"--key-bits must be a multiple of 8 .*got {bits}"):
        dealer_keygen(tmp_path, ["alice", "bob"], 1, bits)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("existing", ["public.json", "bob.share.json"])
def test_dealer_keygen_refuses_to_replace_key_files_without_force(
    tmp_path: Path, existing: str
) -> None:
    (tmp_path / existing).write_text("an earlier key")
    with pytest.raises(ConfigError, match=f"{existing}: a key file exists already.*--force"):
        dealer_keygen(tmp_path, ["alice", "bob", "charlie"], 1, 512)
    assert sorted(p.name for p in tmp_path.iterdir()) == [existing]
    assert (tmp_path / existing).read_text() == "an earlier key"
    written = dealer_keygen(tmp_path, ["alice", "bob", "charlie"], 1, 512, force=True)
    names = {"public.json", "alice.share.json", "bob.share.json", "charlie.share.json"}
    assert {p.name for p in written} == names
    assert load_public(tmp_path / "public.json").parties == ("alice", "bob", "charlie")
