"""Key-share files: modes, round trips (verification keys included), and every kind of damaged,
foreign or outdated file refused."""

from __future__ import annotations

import json
import os
import stat
from itertools import combinations
from pathlib import Path

import pytest
from helpers import dealt_shares

from riskprop.core.paillier import FreshNoise, encrypt
from riskprop.core.threshold import (
    KeyShare,
    combine,
    partial_decrypt,
)
from riskprop.errors import ConfigError
from riskprop.files.keys import (
    dealer_keygen,
    load_public,
    load_share,
    share_file,
    write_keys,
)

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


# ------------------------------------------------------------------ verification keys


def test_round_trip_keeps_the_verification_keys(key_dir: Path) -> None:
    public = load_public(key_dir / "public.json")
    data = json.loads((key_dir / "public.json").read_text())
    assert data["format"] == "riskprop-threshold-paillier/2"
    assert set(data["verification_keys"]) == set(public.parties)
    assert int(data["verification_base"], 16) == public.base
    assert len(public.verification) == len(public.parties)
    public.check_verification()
    for party in public.parties:
        share = load_share(share_file(key_dir, party), party)
        assert share.key.verification == public.verification
        assert share.verification_key() == public.verification_key(party)
        assert int(data["verification_keys"][party], 16) == public.verification_key(party)
    # what a dealt key writes is what it reads back
    shares = dealt_shares(("alice", "bob", "charlie"), 1)
    again = write_keys(key_dir / "again", list(shares.values()))
    assert load_public(again[0]) == shares["alice"].key
    assert load_share(again[2], "bob").secret == shares["bob"].secret


def test_a_format_1_file_is_refused_as_older(key_dir: Path) -> None:
    for path in (key_dir / "public.json", share_file(key_dir, "alice")):
        data = json.loads(path.read_text())
        del data["verification_base"], data["verification_keys"]
        data["format"] = "riskprop-threshold-paillier/1"
        path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="older riskprop") as info:
        load_public(key_dir / "public.json")
    assert "public.json" in str(info.value) and "riskprop keygen" in str(info.value)
    with pytest.raises(ConfigError, match="older riskprop"):
        load_share(share_file(key_dir, "alice"), "alice")


def _altered(hex_value: str, delta: int = 1) -> str:
    return format(int(hex_value, 16) + delta, "x")


@pytest.mark.parametrize("party", ["alice", "bob", "charlie"])
def test_an_altered_verification_key_is_refused(key_dir: Path, party: str) -> None:
    for path in (key_dir / "public.json", share_file(key_dir, "bob")):
        keys = json.loads(path.read_text())["verification_keys"]
        _rewrite(path, verification_keys=keys | {party: _altered(keys[party])})
    with pytest.raises(ConfigError, match="verification keys are inconsistent") as info:
        load_public(key_dir / "public.json")
    assert party in str(info.value) and "public.json" in str(info.value)
    with pytest.raises(ConfigError, match="verification keys are inconsistent"):
        load_share(share_file(key_dir, "bob"), "bob")


@pytest.mark.parametrize(
    "keys",
    [
        {"alice": "1", "bob": "2"},  # one party missing
        {"alice": "1", "bob": "2", "charlie": "3", "mallory": "4"},  # one too many
        ["1", "2", "3"],
        {"alice": "1", "bob": "2", "charlie": "not hex"},
    ],
)
def test_malformed_verification_keys_are_refused(key_dir: Path, keys: object) -> None:
    path = key_dir / "public.json"
    _rewrite(path, verification_keys=keys)
    with pytest.raises(ConfigError, match="malformed key file"):
        load_public(path)


def test_a_missing_verification_key_field_is_refused(key_dir: Path) -> None:
    path = key_dir / "public.json"
    data = json.loads(path.read_text())
    del data["verification_keys"]
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="malformed key file"):
        load_public(path)


@pytest.mark.parametrize("delta", [1, -1])
def test_an_altered_share_does_not_match_its_verification_key(key_dir: Path, delta: int) -> None:
    path = share_file(key_dir, "charlie")
    share = json.loads(path.read_text())["share"]
    _rewrite(path, share=_altered(share, delta))
    with pytest.raises(ConfigError, match="does not match its verification key") as info:
        load_share(path, "charlie")
    assert str(path) in str(info.value)


def test_another_partys_share_under_its_own_name_is_refused(key_dir: Path) -> None:
    """bob's secret copied into charlie's file: the verification key tells them apart."""
    bob = json.loads(share_file(key_dir, "bob").read_text())["share"]
    path = share_file(key_dir, "charlie")
    _rewrite(path, share=bob)
    with pytest.raises(ConfigError, match="does not match its verification key"):
        load_share(path, "charlie")


def test_an_altered_verification_base_is_refused(key_dir: Path) -> None:
    for path in (key_dir / "public.json", share_file(key_dir, "alice")):
        base = json.loads(path.read_text())["verification_base"]
        _rewrite(path, verification_base=_altered(base))
    with pytest.raises(ConfigError, match="verification_base") as info:
        load_public(key_dir / "public.json")
    assert "public.json" in str(info.value)
    with pytest.raises(ConfigError, match="verification_base"):
        load_share(share_file(key_dir, "alice"), "alice")


def test_a_share_is_verified_once_per_contents(
    key_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same file read again is not verified again (a run reads it twice); its mode is
    checked every time, and new contents, good or altered, are verified."""
    calls: list[str] = []
    verify = KeyShare.verification_key

    def counted(self: KeyShare) -> object:
        calls.append(self.party)
        return verify(self)

    monkeypatch.setattr(KeyShare, "verification_key", counted)
    path = share_file(key_dir, "bob")
    first = load_share(path, "bob")
    assert load_share(path, "bob") is first and calls == ["bob"]
    with pytest.raises(ConfigError, match="share belongs to 'bob', not 'alice'"):
        load_share(path, "alice")
    path.chmod(0o640)
    with pytest.raises(ConfigError, match="key share"):
        load_share(path, "bob")
    path.chmod(0o600)
    share = json.loads(path.read_text())["share"]
    _rewrite(path, share=_altered(share, 1))
    with pytest.raises(ConfigError, match="does not match its verification key"):
        load_share(path, "bob")
    data = json.loads(path.read_text()) | {"share": share}
    path.write_text(json.dumps(data, indent=1))  # the same share, other bytes: verified again
    again = load_share(path, "bob")
    assert again.secret == first.secret and calls == ["bob", "bob", "bob"]
