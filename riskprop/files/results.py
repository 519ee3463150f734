"""What a run writes and reads back: ``risk_scores.csv``, ``run-report.json``, simulation CSV.

Scores are written with a real CSV writer (``csv`` module, RFC 4180 quoting), so an id holding
a comma, a quote, a newline or any unicode reads back as the same string, and at full float64
precision (``repr``, the shortest decimal that reads back as the same float). Files are
replaced atomically (``riskprop.files.atomic``).

Layout of a node's output directory::

    OUT/risk_scores.csv   id,risk_score          this bank's accounts, in input order
    OUT/run-report.json   NodeReport.to_json()   sizes and times, never scores
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from riskprop.core.types import FloatArray
from riskprop.errors import InputError, ProtocolError
from riskprop.files.atomic import atomic_write_text

RESULTS_FILE = "risk_scores.csv"
REPORT_FILE = "run-report.json"
SCORES_HEADER = ("id", "risk_score")
GLOBAL_SCORES_HEADER = ("bank", "id", "risk_score")


def format_score(value: float) -> str:
    """Shortest decimal that reads back as the same float64 (full precision)."""
    return repr(float(value))


def scores_csv(header: Sequence[str], rows: Iterable[Sequence[str]], scores: FloatArray) -> str:
    """CSV text: ``header`` then each key row followed by its score (quoted where needed).

    Lines end in ``\n``; the writer quotes a field holding ``,``, ``"`` or ``\n`` but not one
    holding a lone ``\r``, which a reader takes for a line end: such rows are quoted whole.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    quoted = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow(header)
    for key, score in zip(rows, np.asarray(scores).tolist(), strict=True):
        row = [*key, format_score(score)]
        (quoted if any("\r" in field for field in key) else writer).writerow(row)
    return buffer.getvalue()


def global_scores_csv(
    banks: Sequence[str], account_ids: Sequence[Sequence[str]], scores: FloatArray
) -> str:
    """``bank,id,risk_score`` for every account of every bank, banks in order."""
    keys = [(bank, acc) for bank, ids in zip(banks, account_ids, strict=True) for acc in ids]
    return scores_csv(GLOBAL_SCORES_HEADER, keys, np.asarray(scores))


def write_or_print(text: str, out: Path | None) -> None:
    """Write atomically to ``out``, or to standard output when ``out`` is None."""
    if out is None:
        sys.stdout.write(text)
    else:
        atomic_write_text(out, text)


def write_scores(
    path: Path, account_ids: Sequence[str], scores: FloatArray, *, mode: int = 0o600
) -> str:
    """``id,risk_score`` for one bank's accounts, atomically, readable by ``mode``; returns
    the SHA-256 (hex) of what was written. Refuses, before writing anything, a score outside
    [0, 1] or not a number: results it cannot vouch for are never written."""
    values = np.asarray(scores, dtype=np.float64)
    bad = np.flatnonzero(~((values >= 0.0) & (values <= 1.0)))
    if bad.size:
        raise ProtocolError(
            f"{bad.size} decrypted score(s) outside [0, 1] (first: account "
            f"{account_ids[int(bad[0])]!r}, {values[int(bad[0])]!r}); nothing written",
            private=True,
        )
    text = scores_csv(SCORES_HEADER, [(i,) for i in account_ids], values)
    atomic_write_text(path, text, mode=mode)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_score_rows(path: Path, header: Sequence[str]) -> list[tuple[list[str], float]]:
    """The rows of a scores CSV with this ``header``: (key fields, score) each."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None
    if not rows or tuple(rows[0]) != tuple(header):
        raise InputError(f"{path}: expected the header {','.join(header)}")
    parsed = []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise InputError(f"{path}: row {line}: expected {len(header)} fields, got {len(row)}")
        try:
            parsed.append((row[:-1], float(row[-1])))
        except ValueError:
            raise InputError(f"{path}: row {line}: {row[-1]!r} is not a number") from None
    return parsed


def read_scores(path: Path, account_ids: Sequence[str], *, sha256: str | None = None) -> FloatArray:
    """A bank's saved scores, in account order (as ``write_scores`` wrote them); an
    ``InputError`` when the file does not list exactly these accounts in this order or, with
    ``sha256``, is not byte for byte what was written."""
    if sha256 is not None:
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as exc:
            raise InputError(f"{path}: cannot read ({exc.strerror})") from None
        if digest != sha256:
            raise InputError(
                f"{path}: changed since the run wrote it (its checksum in {REPORT_FILE} "
                "differs); start with --fresh"
            )
    rows = read_score_rows(path, SCORES_HEADER)
    if [key[0] for key, _ in rows] != list(account_ids):
        raise InputError(f"{path}: does not list this bank's accounts; start with --fresh")
    return np.array([score for _, score in rows], dtype=np.float64)


def read_global_scores(path: Path) -> dict[tuple[str, str], float]:
    """``(bank, id) -> score`` from a ``bank,id,risk_score`` file (``riskprop simulate``)."""
    return {(key[0], key[1]): score for key, score in read_score_rows(path, GLOBAL_SCORES_HEADER)}


@dataclass(frozen=True)
class NodeReport:
    """What a finished node did: no scores, only sizes and times."""

    player: str
    run_id: str
    accounts: int
    results: Path
    seconds: dict[str, float]
    bytes_by_phase: dict[str, int]
    bytes_sent: int
    wall_seconds: float
    warnings: tuple[str, ...] = field(default=())
    #: CPU seconds of the session's thread per phase (``seconds`` is wall time)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    #: what the run was started with (descriptor fields, a digest of the bank's data)
    identity: dict[str, str] = field(default_factory=dict)
    #: SHA-256 (hex) of ``results`` as written
    results_sha256: str = ""
    #: decryption helpers whose answers were refused (their proof failed), and why
    rejected_helpers: dict[str, str] = field(default_factory=dict)
    #: bytes and messages delivered to each peer (ciphertexts and protocol data only)
    bytes_by_peer: dict[str, int] = field(default_factory=dict)
    messages_by_peer: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NodeReport:
        return cls(
            player=str(data["player"]),
            run_id=str(data["run_id"]),
            accounts=int(data["accounts"]),
            results=Path(data["results"]),
            seconds={str(k): float(v) for k, v in data["seconds"].items()},
            bytes_by_phase={str(k): int(v) for k, v in data["bytes_by_phase"].items()},
            bytes_sent=int(data["bytes_sent"]),
            wall_seconds=float(data["wall_seconds"]),
            cpu_seconds={str(k): float(v) for k, v in data.get("cpu_seconds", {}).items()},
            identity={str(k): str(v) for k, v in data.get("identity", {}).items()},
            results_sha256=str(data.get("results_sha256", "")),
            rejected_helpers={str(k): str(v) for k, v in data.get("rejected_helpers", {}).items()},
            bytes_by_peer={str(k): int(v) for k, v in data.get("bytes_by_peer", {}).items()},
            messages_by_peer={str(k): int(v) for k, v in data.get("messages_by_peer", {}).items()},
        )

    def to_json(self) -> dict[str, object]:
        return {
            "player": self.player,
            "run_id": self.run_id,
            "accounts": self.accounts,
            "results": str(self.results),
            "seconds": self.seconds,
            "bytes_by_phase": self.bytes_by_phase,
            "bytes_sent": self.bytes_sent,
            "wall_seconds": self.wall_seconds,
            "cpu_seconds": self.cpu_seconds,
            "identity": self.identity,
            "results_sha256": self.results_sha256,
            "rejected_helpers": self.rejected_helpers,
            "bytes_by_peer": self.bytes_by_peer,
            "messages_by_peer": self.messages_by_peer,
        }


def _report_mac(fields: dict[str, object], key: bytes) -> str:
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key, b"run-report|" + canonical, hashlib.sha256).hexdigest()


def write_report(
    output: Path, report: NodeReport, *, key: bytes | None = None, mode: int = 0o600
) -> None:
    """``run-report.json`` atomically; with ``key`` it carries a MAC over its content, which
    ``read_report(..., key=key)`` verifies."""
    fields = report.to_json()
    if key is not None:
        fields["mac"] = _report_mac(fields, key)
    atomic_write_text(output / REPORT_FILE, json.dumps(fields, indent=1) + "\n", mode=mode)


def read_report(output: Path, *, key: bytes | None = None) -> NodeReport:
    """The report in ``output`` (an ``InputError`` when it is missing or malformed, or, with
    ``key``, when its MAC does not verify)."""
    path = output / REPORT_FILE
    try:
        fields = json.loads(path.read_text(encoding="utf-8"))
        if key is not None:
            mac = fields.pop("mac", None)
            if not isinstance(mac, str) or not hmac.compare_digest(mac, _report_mac(fields, key)):
                raise InputError(
                    f"{path}: changed since the run wrote it (or another bank's); "
                    "start with --fresh"
                )
        return NodeReport.from_json(fields)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"{path}: not a readable run report ({exc})") from None


def describe_changes(old: Mapping[str, str], new: Mapping[str, str]) -> str:
    """What differs between two run identities, for people (``""`` when nothing does):
    ``iterations 3 -> 5, the bank's data``."""
    changes = []
    for name in sorted(set(old) | set(new)):
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        if name == "data":
            changes.append("the bank's data")
        else:
            changes.append(f"{name} {_short(before)} -> {_short(after)}")
    return ", ".join(changes)


def _short(value: str | None) -> str:
    if value is None:
        return "(none)"
    return value if len(value) <= 24 else value[:16] + "..."


def previous_run(output: Path) -> str | None:
    """Run id of the results already in ``output``, if any."""
    report = output / REPORT_FILE
    if not (output / RESULTS_FILE).is_file() or not report.is_file():
        return None
    try:
        return str(json.loads(report.read_text())["run_id"])
    except (ValueError, KeyError, TypeError):
        return None
