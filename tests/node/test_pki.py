"""A bank's own key and request, the CA operator's signature (``riskprop.node.pki`` and
``riskprop certs ca|request|sign``): what is signed is what the request asked for, nothing
more, and the result carries real mutual TLS between nodes."""

from __future__ import annotations

import datetime
import hashlib
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from handshake import handshake

from riskprop.cli import main
from riskprop.errors import ConfigError
from riskprop.node.pki import make_ca, make_request, read_request, sign_request
from riskprop.node.tls import certificate_fingerprint, client_context, server_context


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("ca")
    make_ca(directory, name="Test Network CA")
    return directory


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def csr_with(
    path: Path,
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    name: str = "alice",
    alt: list[x509.GeneralName] | None = None,
    *,
    ask_for_ca: bool = False,
) -> Path:
    """A request made by hand (what another tool might send)."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    )
    if alt is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    if ask_for_ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    request = builder.sign(key, hashes.SHA256())
    path.write_bytes(request.public_bytes(serialization.Encoding.PEM))
    return path


# ------------------------------------------------------------------------ library


def test_request_and_signature(ca: Path, tmp_path: Path) -> None:
    bank = tmp_path / "bank"
    request = make_request(bank, "alice", ["alice.bank.example", "10.0.0.7"])
    assert (request.key, request.csr) == (bank / "alice.key", bank / "alice.csr")
    assert stat.S_IMODE(request.key.stat().st_mode) == 0o600
    assert request.hosts == ("alice", "alice.bank.example", "10.0.0.7")
    csr = read_request(request.csr)
    assert (
        request.fingerprint
        == hashlib.sha256(csr.public_bytes(serialization.Encoding.DER)).hexdigest()
    )
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alice"
    key = serialization.load_pem_private_key(request.key.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1)
    assert csr.public_key() == key.public_key()

    signed = sign_request(request.csr, ca=ca, out=tmp_path / "alice.pem", days=30)
    cert = load(signed.certificate)
    authority = load(ca / "ca.pem")
    cert.verify_directly_issued_by(authority)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alice"
    assert cert.public_key() == key.public_key()
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["alice", "alice.bank.example"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.7"]
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usage) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert datetime.timedelta(days=30) <= lifetime < datetime.timedelta(days=30, minutes=10)
    assert signed.subject == "alice" and signed.hosts == request.hosts
    assert signed.fingerprint == certificate_fingerprint(signed.certificate)
    assert signed.request_fingerprint == request.fingerprint
    assert signed.not_after == cert.not_valid_after_utc


def test_signed_certificates_carry_mutual_tls(ca: Path, tmp_path: Path) -> None:
    """Two banks, each with its own key, signed by the CA operator: a real handshake in which
    each side names the other, through the contexts the nodes use."""
    files = {}
    for name in ("alice", "bob"):
        request = make_request(tmp_path / name, name, ["127.0.0.1"])
        signed = sign_request(request.csr, ca=ca, out=tmp_path / name / f"{name}.pem")
        files[name] = (signed.certificate, request.key)
    bob_server = server_context(*files["bob"], ca / "ca.pem")
    alice_client = client_context(*files["alice"], ca / "ca.pem", server="bob")
    outcome = handshake(bob_server, alice_client)
    assert outcome.ok, outcome
    assert (outcome.server_peer, outcome.client_peer) == ("alice", "bob")
    # a node that trusts another CA refuses bob's certificate
    make_ca(tmp_path / "other")
    stranger = client_context(*files["alice"], tmp_path / "other" / "ca.pem")
    assert not handshake(bob_server, stranger).ok


def test_the_bank_key_is_never_replaced_silently(tmp_path: Path) -> None:
    first = make_request(tmp_path, "alice", ["127.0.0.1"])
    key = first.key.read_bytes()
    with pytest.raises(ConfigError, match=r"alice\.key: a private key exists already"):
        make_request(tmp_path, "alice")
    assert first.key.read_bytes() == key
    renewal = make_request(tmp_path, "alice", ["127.0.0.1"], reuse_key=True)
    assert first.key.read_bytes() == key
    private = serialization.load_pem_private_key(key, password=None)
    assert read_request(renewal.csr).public_key() == private.public_key()
    assert renewal.fingerprint != first.fingerprint  # ECDSA signs afresh
    replaced = make_request(tmp_path, "alice", force=True)
    assert replaced.key.read_bytes() != key
    assert stat.S_IMODE(replaced.key.stat().st_mode) == 0o600
    with pytest.raises(ConfigError, match="no key to reuse"):
        make_request(tmp_path / "empty", "bob", reuse_key=True)
    with pytest.raises(ConfigError, match="not a valid party name"):
        make_request(tmp_path, "../evil")
    with pytest.raises(ConfigError, match="neither an IP address nor a DNS name"):
        make_request(tmp_path / "x", "bob", ["bad host"])
    assert not (tmp_path / "x").exists()


def test_the_ca_is_never_replaced_silently(tmp_path: Path) -> None:
    cert, key = make_ca(tmp_path, name="One")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    before = cert.read_bytes()
    with pytest.raises(ConfigError, match=r"ca\.key: exists already"):
        make_ca(tmp_path, name="Two")
    assert cert.read_bytes() == before
    make_ca(tmp_path, name="Two", force=True)
    subject = load(cert).subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert subject == "Two"


def test_only_name_hosts_and_key_are_taken(ca: Path, tmp_path: Path) -> None:
    """A request asking to be a CA gets a leaf; one without hosts gets its name."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = csr_with(tmp_path / "r.csr", key, "carol", ask_for_ca=True)
    cert = load(sign_request(csr, ca=ca, out=tmp_path / "carol.pem").certificate)
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["carol"]
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    csr = csr_with(tmp_path / "rsa.csr", rsa_key, "dave", [x509.DNSName("dave.example")])
    assert sign_request(csr, ca=ca, out=tmp_path / "dave.pem").hosts == ("dave.example",)


def test_expired_and_future_validity(ca: Path, tmp_path: Path) -> None:
    request = make_request(tmp_path, "alice")
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)
    signed = sign_request(request.csr, ca=ca, out=tmp_path / "old.pem", days=1, start=past)
    assert signed.not_after < datetime.datetime.now(datetime.UTC)
    authority = load(ca / "ca.pem")
    long = sign_request(request.csr, ca=ca, out=tmp_path / "long.pem", days=100000)
    assert long.not_after == authority.not_valid_after_utc  # never beyond the CA


def tampered(path: Path, target: Path) -> Path:
    """``path``'s request with one byte of its signature changed."""
    der = bytearray(
        x509.load_pem_x509_csr(path.read_bytes()).public_bytes(serialization.Encoding.DER)
    )
    der[-3] ^= 0x01
    request = x509.load_der_x509_csr(bytes(der))
    target.write_bytes(request.public_bytes(serialization.Encoding.PEM))
    return target


def test_bad_requests_and_authorities_are_one_line(ca: Path, tmp_path: Path) -> None:
    request = make_request(tmp_path / "bank", "alice")
    out = tmp_path / "alice.pem"
    other_ca = tmp_path / "other"
    make_ca(other_ca)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "ca.pem").write_bytes((ca / "ca.pem").read_bytes())
    (mixed / "ca.key").write_bytes((other_ca / "ca.key").read_bytes())
    garbage = tmp_path / "garbage.csr"
    garbage.write_text("not a request\n")
    weak = csr_with(tmp_path / "weak.csr", rsa.generate_private_key(65537, 1024), "alice")
    bad_name = csr_with(tmp_path / "name.csr", ec.generate_private_key(ec.SECP256R1()), "a b")
    uri = csr_with(
        tmp_path / "uri.csr",
        ec.generate_private_key(ec.SECP256R1()),
        "alice",
        [x509.UniformResourceIdentifier("https://alice.example")],
    )
    cases = {
        r"nowhere\.csr: cannot read the request": (tmp_path / "nowhere.csr", ca),
        r"garbage\.csr: not a PEM certificate signing request": (garbage, ca),
        r"bad\.csr: the request's signature is invalid": (
            tampered(request.csr, tmp_path / "bad.csr"),
            ca,
        ),
        r"mixed/ca\.key: does not belong to the CA certificate": (request.csr, mixed),
        r"empty/ca\.pem: CA certificate not found": (request.csr, tmp_path / "empty"),
        r"weak\.csr: a 1024-bit RSA key is too small": (weak, ca),
        r"name\.csr: common name 'a b' is not a party name": (bad_name, ca),
        r"uri\.csr: the request names .*only DNS names and IP addresses": (uri, ca),
    }
    for pattern, (csr, authority) in cases.items():
        with pytest.raises(ConfigError, match=pattern) as error:
            sign_request(csr, ca=authority, out=out)
        assert "\n" not in str(error.value)
        assert not out.exists()
    sign_request(request.csr, ca=ca, out=out)
    with pytest.raises(ConfigError, match=r"alice\.pem: exists already"):
        sign_request(request.csr, ca=ca, out=out)
    with pytest.raises(ConfigError, match="days: must be an integer >= 1"):
        sign_request(request.csr, ca=ca, out=out, days=0, force=True)
    sign_request(request.csr, ca=ca, out=out, force=True)


# ---------------------------------------------------------------------------- CLI


def test_commands_as_the_operators_run_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["certs", "ca", str(tmp_path / "ca"), "--name", "Banks CA", "--days", "365"])
    said = capsys.readouterr().out
    assert "ca.key (keep it private)" in said
    assert certificate_fingerprint(tmp_path / "ca" / "ca.pem") in said

    bank = tmp_path / "alice-tls"
    main(["certs", "request", "--player", "alice", "--out", str(bank), "--host", "10.1.2.3"])
    lines = capsys.readouterr().out.splitlines()
    told = next(ln for ln in lines if ln.startswith("request SHA-256: ")).split()[-1]
    assert (
        told
        == hashlib.sha256(
            read_request(bank / "alice.csr").public_bytes(serialization.Encoding.DER)
        ).hexdigest()
    )
    assert stat.S_IMODE((bank / "alice.key").stat().st_mode) == 0o600

    out = bank / "alice.pem"
    csr, ca = str(bank / "alice.csr"), str(tmp_path / "ca")
    main(["certs", "sign", csr, "--ca", ca, "--out", str(out)])
    lines = capsys.readouterr().out.splitlines()
    assert f"request SHA-256: {told}" in lines  # what the CA operator compares by phone
    assert "subject alternative names: alice, 10.1.2.3" in lines
    assert f"certificate SHA-256: {certificate_fingerprint(out)}" in lines
    assert any(ln.startswith(f"wrote {out}: subject CN=alice") for ln in lines)

    for argv, message in (
        (["certs", "sign", csr, "--ca", ca, "--out", str(out)], "alice.pem: exists already"),
        (["certs", "request", "--player", "alice", "--out", str(bank)], "exists already"),
        (["certs", "request", "--player", "x/y", "--out", str(bank)], "--player: 'x/y'"),
        (["certs", "ca", ca], "ca.key: exists already"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("riskprop: error:"), err
        assert message in err[0]
