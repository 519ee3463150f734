"""Key-share files: one JSON file per party (mode 0600) and one public-key file.

The format is the same whether a trusted dealer or the distributed key generation made the
key, so runs do not care which. Integers are hexadecimal strings. A share file holds the public
data too, so a node needs only its own file.

The distributed key generation writes in two steps (``StagedKey``): the share and the public key
go to temporary files beside their targets first, and are renamed into place only once every
bank has confirmed it wrote its own. So a target share exists only after a complete generation,
and a temporary one is never valid: a later start removes it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import phe

from riskprop.core.paillier import PublicKey
from riskprop.core.threshold import KeyShare, ThresholdKey, deal
from riskprop.errors import ConfigError
from riskprop.files.atomic import atomic_write_text, check_private

FORMAT = "riskprop-threshold-paillier/2"
#: Files of format 1 lack the verification keys: decryptions cannot be checked with them.
OLD_FORMATS = ("riskprop-threshold-paillier/1",)
PUBLIC_FILE = "public.json"


def spaced(fingerprint: str) -> str:
    """A hex fingerprint in groups of eight, as banks read it to each other."""
    return " ".join(fingerprint[i : i + 8] for i in range(0, len(fingerprint), 8))


def share_file(directory: Path, party: str) -> Path:
    return directory / f"{party}.share.json"


def _public_fields(key: ThresholdKey) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "fingerprint": key.public.fingerprint(),
        "parties": list(key.parties),
        "threshold": key.threshold,
        "n": format(key.public.n, "x"),
        "theta": format(key.theta, "x"),
        "verification_base": format(key.base, "x"),
        "verification_keys": {
            party: format(value, "x")
            for party, value in zip(key.parties, key.verification, strict=True)
        },
    }


def _share_text(share: KeyShare) -> str:
    fields = _public_fields(share.key) | {"party": share.party, "share": format(share.secret, "x")}
    return json.dumps(fields, indent=1) + "\n"


def _public_text(key: ThresholdKey) -> str:
    return json.dumps(_public_fields(key), indent=1) + "\n"


def write_share(path: Path, share: KeyShare) -> None:
    """Write one party's share file (mode 0600, atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, _share_text(share), mode=0o600)


def write_public(path: Path, key: ThresholdKey) -> None:
    """Write the public key file (what every party and auditor may read)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, _public_text(key))


@dataclass(frozen=True)
class StagedKey:
    """A generated key on its way to ``share`` and ``public``: ``write`` puts both in temporary
    files beside them (0600, fsynced), ``commit`` renames them into place (the share last, so
    that its presence means the public file is in place too), ``discard`` removes them.

    The temporary names are fixed per party (``.<share name>.keygen.tmp`` and
    ``.public.json.<party>.keygen.tmp``): banks may share one directory and one public file,
    and a start can find what an interrupted generation left.
    """

    share: Path
    public: Path
    party: str

    @classmethod
    def beside(cls, share: Path, party: str) -> StagedKey:
        return cls(share, share.parent / PUBLIC_FILE, party)

    @property
    def share_tmp(self) -> Path:
        return self.share.parent / f".{self.share.name}.keygen.tmp"

    @property
    def public_tmp(self) -> Path:
        return self.public.parent / f".{self.public.name}.{self.party}.keygen.tmp"

    def leftovers(self) -> list[Path]:
        """Temporary files of this party's earlier, interrupted generations (including those of
        a plain atomic write of the share, ``.<share name>.*.tmp``)."""
        found = {self.public_tmp} if self.public_tmp.exists() else set()
        prefix = f".{self.share.name}."
        if self.share.parent.is_dir():
            found.update(
                path
                for path in self.share.parent.iterdir()
                if path.name.startswith(prefix) and path.name.endswith(".tmp")
            )
        return sorted(found)

    def remove_leftovers(self) -> list[Path]:
        """Remove ``leftovers()``; return what was removed."""
        try:
            removed = self.leftovers()
            for path in removed:
                path.unlink(missing_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"{exc.filename or self.share.parent}: cannot remove the temporary files of an "
                f"interrupted key generation ({exc.strerror or exc})"
            ) from None
        return removed

    def check_writable(self) -> None:
        """Fail now, not after the generation, if the temporary files cannot be made."""
        try:
            for tmp in (self.share_tmp, self.public_tmp):
                tmp.parent.mkdir(parents=True, exist_ok=True)
                _write_new(tmp, b"")
        except OSError as exc:
            raise ConfigError(
                f"{exc.filename or self.share.parent}: cannot write the key share there "
                f"({exc.strerror or exc})"
            ) from None
        finally:
            self.discard()

    def write(self, share: KeyShare) -> None:
        """Both files, complete and on disk, under their temporary names (mode 0600)."""
        try:
            self.share.parent.mkdir(parents=True, exist_ok=True)
            self.public.parent.mkdir(parents=True, exist_ok=True)
            _write_new(self.share_tmp, _share_text(share).encode())
            _write_new(self.public_tmp, _public_text(share.key).encode())
        except OSError as exc:
            self.discard()
            raise ConfigError(
                f"{exc.filename or self.share_tmp}: cannot write the key share "
                f"({exc.strerror or exc})"
            ) from None

    def commit(self) -> None:
        """Rename the written files over their targets (the public file first)."""
        try:
            os.chmod(self.public_tmp, 0o644)
            os.replace(self.public_tmp, self.public)
            os.replace(self.share_tmp, self.share)
            _fsync_directory(self.share.parent)
        except OSError as exc:
            self.discard()
            raise ConfigError(
                f"{exc.filename or self.share}: cannot move the key share into place "
                f"({exc.strerror or exc})"
            ) from None

    def discard(self) -> None:
        for tmp in (self.share_tmp, self.public_tmp):
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)


def _write_new(path: Path, data: bytes) -> None:
    """Create ``path`` afresh (mode 0600, never through a symbolic link) with ``data``, fsynced."""
    path.unlink(missing_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_directory(directory: Path) -> None:
    """Make renames in ``directory`` durable (where the platform allows opening a directory)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_keys(directory: Path, shares: Sequence[KeyShare]) -> list[Path]:
    """Write ``public.json`` and one ``<party>.share.json`` (0600) per share."""
    written = []
    for share in shares:
        path = share_file(directory, share.party)
        write_share(path, share)
        written.append(path)
    public = directory / PUBLIC_FILE
    write_public(public, shares[0].key)
    return [public, *written]


def dealer_keygen(
    directory: Path, parties: Sequence[str], threshold: int, bits: int, *, force: bool = False
) -> list[Path]:
    """Trusted-dealer key generation: N = p q from phe, shares as in ``core.threshold.deal``.
    Refuses to replace existing key files unless ``force`` (as the dealerless one does)."""
    if bits < 128 or bits % 8:
        raise ConfigError(f"--key-bits must be a multiple of 8 and at least 128 (got {bits})")
    existing = (directory / PUBLIC_FILE, *(share_file(directory, q) for q in parties))
    found = next((p for p in existing if p.exists()), None)
    if found is not None and not force:
        raise ConfigError(
            f"{found}: a key file exists already; move it away or pass --force to replace it"
        )
    _, private = phe.generate_paillier_keypair(n_length=bits)
    return write_keys(directory, deal(private.p, private.q, parties, threshold))


def _parse(path: Path, text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not a key file ({exc.msg} at line {exc.lineno})") from None
    if isinstance(data, dict) and data.get("format") in OLD_FORMATS:
        raise ConfigError(
            f"{path}: key made by an older riskprop without verification keys; generate a new "
            "key (riskprop keygen) so that partial decryptions can be verified"
        )
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConfigError(f"{path}: not a {FORMAT} key file")
    return data


def _key_from(path: Path, data: dict[str, Any]) -> ThresholdKey:
    try:
        parties = tuple(str(p) for p in data["parties"])
        verification = data["verification_keys"]
        if not isinstance(verification, dict) or set(verification) != set(parties):
            raise ValueError("verification_keys must name every party once")
        key = ThresholdKey(
            public=PublicKey(int(data["n"], 16)),
            parties=parties,
            threshold=int(data["threshold"]),
            theta=int(data["theta"], 16),
            verification=tuple(int(verification[p], 16) for p in parties),
        )
        base = int(data["verification_base"], 16)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: malformed key file ({type(exc).__name__}: {exc})") from None
    if key.public.fingerprint() != data.get("fingerprint"):
        raise ConfigError(f"{path}: fingerprint does not match the modulus")
    if base != key.base:
        raise ConfigError(f"{path}: verification_base is not the one derived from the modulus")
    try:
        key.check_verification()
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return key


def load_public(path: Path) -> ThresholdKey:
    """Read a ``public.json`` file."""
    if not path.is_file():
        raise ConfigError(f"{path}: key file not found")
    return _key_from(path, _parse(path, path.read_text(encoding="utf-8")))


def load_share(path: Path, party: str | None = None) -> KeyShare:
    """Read a share file; refuse one that group or others may read, or of another party.

    Its mode is checked at every read. Its consistency with its verification key (a
    constant-time exponentiation, about 40 ms at 2048 bits) is checked once per process for the
    same path and contents: a one-off run reads the file twice (for its status, then for the
    run), and the result depends on nothing else."""
    if not path.is_file():
        raise ConfigError(f"{path}: key share file not found")
    check_private(path, "key share")
    share = _checked_share(path, path.read_text(encoding="utf-8"))
    if party is not None and share.party != party:
        raise ConfigError(f"{path}: share belongs to {share.party!r}, not {party!r}")
    return share


@functools.lru_cache(maxsize=4)
def _checked_share(path: Path, text: str) -> KeyShare:
    """The share in ``text``, checked against its key and verification key (errors name
    ``path``; they are raised, so never cached)."""
    data = _parse(path, text)
    key = _key_from(path, data)
    owner = str(data.get("party", ""))
    if owner not in key.parties:
        raise ConfigError(f"{path}: share names party {owner!r}, not one of the key's parties")
    try:
        secret = int(data["share"], 16)
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{path}: malformed share value") from None
    share = KeyShare(key, owner, secret)
    if share.verification_key() != key.verification_key(owner):
        raise ConfigError(
            f"{path}: the share does not match its verification key (damaged or altered)"
        )
    return share
