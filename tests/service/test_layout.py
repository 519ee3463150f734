"""The service's output folder (``riskprop.service.layout``): ``OUT/runs/<id>``, the ``latest``
link replaced atomically, and retention that never removes ``latest`` or a run in use."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from riskprop.service import layout
from riskprop.service.layout import latest_run, point_latest, prune_runs, run_folder


def make_runs(output: Path, *run_ids: str) -> None:
    """Run folders with a file each, oldest first (modification times a minute apart)."""
    for age, run_id in enumerate(reversed(run_ids)):
        folder = run_folder(output, run_id)
        folder.mkdir(parents=True)
        (folder / "risk_scores.csv").write_text("id,risk_score\n")
        stamp = 1_800_000_000 - 60 * age
        os.utime(folder, (stamp, stamp))


def remaining(output: Path) -> set[str]:
    return {p.name for p in (output / "runs").iterdir()}


def test_run_folder_is_under_runs(tmp_path: Path) -> None:
    assert run_folder(tmp_path, "daily-2026-11-29") == tmp_path / "runs" / "daily-2026-11-29"


def test_latest_is_a_relative_link_to_the_run(tmp_path: Path) -> None:
    make_runs(tmp_path, "a", "b")
    assert latest_run(tmp_path) is None
    point_latest(tmp_path, "a")
    link = tmp_path / "latest"
    assert link.is_symlink() and os.readlink(link) == os.path.join("runs", "a")
    assert latest_run(tmp_path) == "a"
    assert (link / "risk_scores.csv").is_file()
    moved = tmp_path.parent / f"{tmp_path.name}-moved"
    tmp_path.rename(moved)  # a relative link survives moving the whole folder
    assert latest_run(moved) == "a" and (moved / "latest" / "risk_scores.csv").is_file()


def test_latest_is_replaced_by_a_rename_never_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_runs(tmp_path, "a", "b")
    point_latest(tmp_path, "a")
    unlinked: list[Path] = []
    renamed: list[tuple[Path, Path]] = []
    real_unlink, real_replace = Path.unlink, Path.replace

    def unlink(self: Path, missing_ok: bool = False) -> None:
        unlinked.append(self)
        real_unlink(self, missing_ok=missing_ok)

    def replace(self: Path, target: str | os.PathLike[str]) -> Path:
        renamed.append((self, Path(target)))
        return real_replace(self, target)

    monkeypatch.setattr(Path, "unlink", unlink)
    monkeypatch.setattr(Path, "replace", replace)
    point_latest(tmp_path, "b")
    assert latest_run(tmp_path) == "b"
    assert tmp_path / "latest" not in unlinked  # a reader always finds a link
    assert len(renamed) == 1 and renamed[0][1] == tmp_path / "latest"
    assert renamed[0][0].parent == tmp_path  # same folder, so the rename is atomic
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "runs"]  # nothing left over


def test_a_stale_temporary_link_is_replaced(tmp_path: Path) -> None:
    make_runs(tmp_path, "a")
    stale = tmp_path / f".latest.{os.getpid()}"
    stale.symlink_to("nowhere")  # left by a process with this pid that died mid-way
    point_latest(tmp_path, "a")
    assert latest_run(tmp_path) == "a" and not stale.is_symlink()


def test_latest_never_points_to_a_missing_run(tmp_path: Path) -> None:
    make_runs(tmp_path, "a")
    point_latest(tmp_path, "a")
    with pytest.raises(FileNotFoundError):
        point_latest(tmp_path, "never-ran")
    assert latest_run(tmp_path) == "a"


def test_latest_outside_runs_is_not_a_run(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "latest").symlink_to("elsewhere")
    assert latest_run(tmp_path) is None
    (tmp_path / "latest").unlink()
    (tmp_path / "latest").mkdir()  # a folder, not a link
    assert latest_run(tmp_path) is None


def test_prune_keeps_the_newest(tmp_path: Path) -> None:
    make_runs(tmp_path, "r1", "r2", "r3", "r4", "r5")
    assert sorted(prune_runs(tmp_path, 2)) == ["r1", "r2", "r3"]
    assert remaining(tmp_path) == {"r4", "r5"}
    assert prune_runs(tmp_path, 2) == []  # nothing more to do
    assert prune_runs(tmp_path, 5) == []


def test_prune_never_removes_latest_or_a_run_in_use(tmp_path: Path) -> None:
    make_runs(tmp_path, "r1", "r2", "r3", "r4", "r5")
    point_latest(tmp_path, "r1")  # the last success is the oldest folder
    removed = prune_runs(tmp_path, 1, in_use=("r2",))
    assert sorted(removed) == ["r3", "r4"]
    assert remaining(tmp_path) == {"r1", "r2", "r5"}
    assert latest_run(tmp_path) == "r1" and (tmp_path / "latest" / "risk_scores.csv").is_file()


def test_prune_by_modification_time_not_by_name(tmp_path: Path) -> None:
    make_runs(tmp_path, "zzz-old", "aaa-new")
    assert prune_runs(tmp_path, 1) == ["zzz-old"]


def test_prune_leaves_files_and_links_in_runs_alone(tmp_path: Path) -> None:
    make_runs(tmp_path, "r1", "r2", "r3")
    outside = tmp_path / "keep-me"
    outside.mkdir()
    (outside / "precious").write_text("x")
    (tmp_path / "runs" / "link").symlink_to(outside, target_is_directory=True)
    (tmp_path / "runs" / "notes.txt").write_text("x")
    assert sorted(prune_runs(tmp_path, 1)) == ["r1", "r2"]
    assert remaining(tmp_path) == {"r3", "link", "notes.txt"}
    assert (outside / "precious").is_file()


def test_prune_without_runs_does_nothing(tmp_path: Path) -> None:
    assert prune_runs(tmp_path / "absent", 3) == []
    assert prune_runs(tmp_path, 3) == []


def test_names_are_the_documented_ones() -> None:
    assert (layout.RUNS, layout.LATEST) == ("runs", "latest")
