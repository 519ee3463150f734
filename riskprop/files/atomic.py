"""Atomic file writes: a reader sees the old file or the complete new one, never a part.

The new content goes to a hidden temporary file in the target's directory, is fsynced, gets its
mode, and is renamed over the target (``os.replace``, atomic on POSIX within one file system).
Files holding secrets or rosters are written with mode ``0o600`` by their callers.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from riskprop.errors import ConfigError


@contextmanager
def atomic_path(path: Path, *, mode: int = 0o644) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; once the block has written it, fsync it, set
    ``mode`` and rename it over ``path``. On error the temporary file is removed and ``path``
    is untouched."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with tmp.open("rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str, *, mode: int = 0o644) -> None:
    """Write ``text`` to ``path`` atomically (see ``atomic_path``)."""
    with atomic_path(path, mode=mode) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="")


def atomic_write_bytes(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` atomically (see ``atomic_path``)."""
    with atomic_path(path, mode=mode) as tmp:
        tmp.write_bytes(data)


def check_private(path: Path, what: str) -> None:
    """Refuse a secret file (a key share, a TLS private key) that group or others may read."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what} ({exc.strerror})") from None
    if mode & 0o077:
        raise ConfigError(
            f"{path}: {what} is accessible by group/others (mode {mode:04o}); run: chmod 600 {path}"
        )
