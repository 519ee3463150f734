"""Writing result files atomically: a reader sees the old file or the complete new one."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from riskprop.core.data import FloatArray


@contextmanager
def atomic_path(path: Path, *, mode: int = 0o644) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; once the block has written it, fsync it, set
    ``mode`` and rename it over ``path``. On error the temporary file is removed and ``path``
    is untouched, so a reader sees the old file or the complete new one."""
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


def format_score(value: float) -> str:
    """Shortest decimal that reads back as the same float64 (full precision)."""
    return repr(float(value))


def scores_csv(header: Sequence[str], rows: Iterable[Sequence[str]], scores: FloatArray) -> str:
    """CSV text: ``header`` then each key row followed by its score."""
    lines = [",".join(header)]
    lines.extend(
        ",".join([*key, format_score(s)]) for key, s in zip(rows, scores.tolist(), strict=True)
    )
    return "\n".join(lines) + "\n"


def global_scores_csv(
    banks: Sequence[str], account_ids: Sequence[Sequence[str]], scores: FloatArray
) -> str:
    """``bank,id,risk_score`` for every account of every bank, banks in order."""
    keys = [(bank, acc) for bank, ids in zip(banks, account_ids, strict=True) for acc in ids]
    return scores_csv(("bank", "id", "risk_score"), keys, np.asarray(scores))


def write_or_print(text: str, out: Path | None) -> None:
    """Write atomically to ``out``, or to standard output when ``out`` is None."""
    if out is None:
        sys.stdout.write(text)
    else:
        atomic_write_text(out, text)
