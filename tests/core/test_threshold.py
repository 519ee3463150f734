"""Threshold Paillier: any t+1 of n parties decrypt, t cannot; key-share files."""

from __future__ import annotations

import json
import math
import os
import stat
from itertools import combinations
from pathlib import Path

import gmpy2
import phe
import pytest
from gmpy2 import mpz

from riskprop.core.paillier import FreshNoise, encrypt, rerandomize
from riskprop.core.threshold import (
    KeyShare,
    ThresholdKey,
    combine,
    deal,
    lagrange_at_zero,
    partial_decrypt,
)
from riskprop.errors import ConfigError, ProtocolError
from riskprop.files.keys import dealer_keygen, load_public, load_share, share_file

KEY_BITS = 512
NAMES = ("alice", "bob", "charlie", "dora", "eve")
_DEALT: dict[tuple[int, int], list[KeyShare]] = {}


def dealt(n: int, t: int) -> list[KeyShare]:
    """Shares of a 512-bit key for the first ``n`` names, cached per (n, t)."""
    if (n, t) not in _DEALT:
        _, private = phe.generate_paillier_keypair(n_length=KEY_BITS)
        _DEALT[n, t] = deal(private.p, private.q, NAMES[:n], t)
    return _DEALT[n, t]


def plaintexts_for(key: ThresholdKey) -> list[int]:
    n = key.public.n
    return [0, 1, 2, 12345678901234567890, n // 3, n - 2, n - 1]


def manual_combine(key: ThresholdKey, partials: dict[str, list[mpz]]) -> list[int]:
    """``combine``'s formula applied to exactly the given parties, however few."""
    n, n2 = key.public.n, key.public.nsquare
    indices = [key.index(p) for p in partials]
    exps = [lagrange_at_zero(indices, i, key.delta) for i in indices]
    inv = pow(key.delta * key.theta, -1, n)
    out = []
    for column in zip(*partials.values(), strict=True):
        u = mpz(1)
        for value, e in zip(column, exps, strict=True):
            u = u * gmpy2.powmod(value, e, n2) % n2
        out.append(int((u - 1) // n * inv % n))
    return out


@pytest.mark.parametrize(("n", "t"), [(3, 1), (5, 2)])
def test_every_quorum_of_t_plus_one_decrypts(n: int, t: int) -> None:
    shares = dealt(n, t)
    key = shares[0].key
    assert key.threshold == t and key.parties == NAMES[:n]
    assert [s.index for s in shares] == list(range(1, n + 1))
    plain = plaintexts_for(key)
    cts = encrypt(key.public, plain, FreshNoise(key.public))
    partials = {s.party: partial_decrypt(s, cts) for s in shares}
    quorums = list(combinations(key.parties, t + 1))
    assert len(quorums) == math.comb(n, t + 1)
    for quorum in quorums:
        assert combine(key, {p: partials[p] for p in quorum}) == plain, quorum
    # more than t+1 partials: still the plaintexts, whatever the order of the mapping
    assert combine(key, dict(reversed(partials.items()))) == plain
    # a re-randomised ciphertext decrypts to the same values
    fresh = rerandomize(key.public, cts, FreshNoise(key.public))
    assert all(a != b for a, b in zip(fresh, cts, strict=True))
    quorum = key.parties[-(t + 1) :]
    assert (
        combine(key, {s.party: partial_decrypt(s, fresh) for s in shares if s.party in quorum})
        == plain
    )


@pytest.mark.parametrize(("n", "t"), [(3, 1), (5, 2)])
def test_t_parties_do_not_decrypt(n: int, t: int) -> None:
    shares = dealt(n, t)
    key = shares[0].key
    by_name = {s.party: s for s in shares}
    plain = plaintexts_for(key)
    cts = encrypt(key.public, plain, FreshNoise(key.public))
    for group in combinations(key.parties, t):
        partials = {p: partial_decrypt(by_name[p], cts) for p in group}
        # combine refuses outright
        with pytest.raises(ValueError, match=f"need partial decryptions from {t + 1} parties"):
            combine(key, partials)
        # the same formula with only t shares gives garbage, not the plaintexts
        wrong = manual_combine(key, partials)
        assert all(w != m for w, m in zip(wrong, plain, strict=True)), group
        if t >= 2:
            # a key that pretends t-1 is enough: combine then uses t shares, and fails
            pretend = ThresholdKey(key.public, key.parties, t - 1, key.theta)
            with pytest.raises(ProtocolError, match="do not combine to a plaintext"):
                combine(pretend, partials)
    # sanity of manual_combine: with t+1 shares it is combine
    quorum = {p: partial_decrypt(by_name[p], cts) for p in key.parties[: t + 1]}
    assert manual_combine(key, quorum) == plain


def test_combine_refuses_too_few_and_uneven() -> None:
    shares = dealt(3, 1)
    key = shares[0].key
    cts = encrypt(key.public, [5, 6], FreshNoise(key.public))
    with pytest.raises(ValueError):
        combine(key, {})
    with pytest.raises(ValueError):
        combine(key, {"alice": partial_decrypt(shares[0], cts)})
    with pytest.raises(ValueError, match="length"):
        combine(
            key,
            {"alice": partial_decrypt(shares[0], cts), "bob": partial_decrypt(shares[1], cts[:1])},
        )


def test_share_values_differ_and_repr_hides_the_secret() -> None:
    shares = dealt(5, 2)
    assert len({s.secret for s in shares}) == len(shares)
    for share in shares:
        text = repr(share)
        assert str(share.secret) not in text
        assert format(share.secret, "x") not in text


@pytest.mark.parametrize(("n", "t"), [(2, 0), (2, 2), (3, 3), (1, 1)])
def test_deal_refuses_bad_thresholds(n: int, t: int) -> None:
    _, private = phe.generate_paillier_keypair(n_length=256)
    with pytest.raises(ConfigError):
        deal(private.p, private.q, NAMES[:n], t)


def test_deal_refuses_duplicate_parties() -> None:
    _, private = phe.generate_paillier_keypair(n_length=256)
    with pytest.raises(ConfigError, match="unique"):
        deal(private.p, private.q, ["alice", "alice", "bob"], 1)


# ------------------------------------------------------------------------- key files


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
