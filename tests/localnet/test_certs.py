"""Local certificate authorities (``riskprop.localnet.certs``) and ``riskprop certs local``: a CA
made once and reused, so that certificates made later join the same network."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from handshake import Certs, handshake

from riskprop.cli import main
from riskprop.errors import ConfigError
from riskprop.localnet.certs import make_certs


def test_certs_command_reuses_the_ca(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "certs"
    main(["certs", "local", str(out), "--parties", "alice,bob", "--hosts", "127.0.0.1,bank-a"])
    ca = (out / "ca.pem").read_bytes()
    assert "reused the CA" not in capsys.readouterr().out
    main(["certs", "local", str(out), "--parties", "charlie"])
    assert "reused the CA" in capsys.readouterr().out
    assert (out / "ca.pem").read_bytes() == ca
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"{n}.{e}" for n in ("alice", "bob", "ca", "charlie") for e in ("key", "pem")]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in out.glob("*.key"))
    san = x509.load_pem_x509_certificate((out / "bob.pem").read_bytes()).extensions
    dns = san.get_extension_for_class(x509.SubjectAlternativeName).value
    assert dns.get_values_for_type(x509.DNSName) == ["bank-a"]
    certs = Certs(out, out / "ca.pem")
    outcome = handshake(certs.server("charlie"), certs.client("alice"))
    assert outcome.ok and outcome.server_peer == "alice", outcome

    (out / "ca.key").unlink()
    with pytest.raises(SystemExit) as exit_info:
        main(["certs", "local", str(out), "--parties", "dave"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("riskprop: error:") and "ca.key: missing" in err[0]
    assert not (out / "dave.pem").exists()


def test_the_old_spelling_still_works(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``riskprop certs OUT --parties ...`` is ``certs local``, with a deprecation line."""
    main(["certs", str(tmp_path), "--parties", "alice"])
    said = capsys.readouterr()
    assert "use `riskprop certs local`" in said.err
    assert f"wrote {tmp_path / 'alice.pem'}" in said.out
    with pytest.raises(SystemExit) as exit_info:
        main(["certs", "nonsense"])
    assert exit_info.value.code == 2  # an unknown command stays one
    assert "No such command 'nonsense'" in capsys.readouterr().err


def test_make_certs_returns_what_it_wrote(tmp_path: Path) -> None:
    written = make_certs(tmp_path, ["alice"], ["127.0.0.1"])
    assert sorted(p.name for p in written) == ["alice.key", "alice.pem", "ca.key", "ca.pem"]
    again = make_certs(tmp_path, ["bob"], ["127.0.0.1"])
    assert sorted(p.name for p in again) == ["bob.key", "bob.pem"]  # the CA is reused
    (tmp_path / "ca.pem").unlink()
    with pytest.raises(ConfigError, match=r"ca\.pem: missing beside the other half of the CA"):
        make_certs(tmp_path, ["carol"], ["127.0.0.1"])
