"""The service's output folder: one folder per run, a ``latest`` pointer, retention.

``OUT/runs/<run_id>/`` holds a run's ``risk_scores.csv`` and ``run-report.json`` (and, while it
runs, its journal). ``OUT/latest`` is a symbolic link to ``runs/<run_id>`` of the last run that
succeeded; it is replaced atomically (a new link renamed over the old), so a reader sees the
old or the new run, never a half-written one, and a failed run never moves it. Pruning keeps
the newest ``keep`` run folders by modification time, and always the one ``latest`` names and
any in use.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Collection
from pathlib import Path

log = logging.getLogger(__name__)

RUNS = "runs"
LATEST = "latest"


def run_folder(output: Path, run_id: str) -> Path:
    return output / RUNS / run_id


def latest_run(output: Path) -> str | None:
    """The run id ``OUT/latest`` points to, or None."""
    link = output / LATEST
    if not link.is_symlink():
        return None
    target = Path(os.readlink(link))
    return target.name if target.parent == Path(RUNS) else None


def point_latest(output: Path, run_id: str) -> None:
    """Make ``OUT/latest`` name ``runs/<run_id>`` (atomically)."""
    if not run_folder(output, run_id).is_dir():
        raise FileNotFoundError(run_folder(output, run_id))
    temporary = output / f".{LATEST}.{os.getpid()}"
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(Path(RUNS) / run_id, target_is_directory=True)
    temporary.replace(output / LATEST)
    log.info("latest results: %s", run_folder(output, run_id))


def prune_runs(output: Path, keep: int, in_use: Collection[str] = ()) -> list[str]:
    """Remove all but the newest ``keep`` run folders (never ``latest``'s or ``in_use``);
    returns the run ids removed."""
    runs = output / RUNS
    if not runs.is_dir():
        return []
    protected = {*in_use, latest_run(output)}
    folders = sorted(
        (p for p in runs.iterdir() if p.is_dir() and not p.is_symlink()),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    removed = []
    for folder in folders[keep:]:
        if folder.name in protected:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder.name)
    if removed:
        log.info("retention: removed %d old run folder(s): %s", len(removed), ", ".join(removed))
    return removed
