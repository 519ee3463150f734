"""The examples run as a user runs them, and use only the public API."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPTS = sorted(EXAMPLES.glob("*.py"))


def test_there_are_examples() -> None:
    assert SCRIPTS, f"no examples in {EXAMPLES}"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_example_imports_only_the_public_api(script: Path) -> None:
    tree = ast.parse(script.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("riskprop"):
            assert node.module == "riskprop.api", f"{script.name} imports {node.module}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                assert not alias.name.startswith("riskprop"), f"{script.name} imports {alias.name}"


def run_example(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python examples/NAME ARGS`` as a user runs it, from ``cwd``."""
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        check=False,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


def test_propagate_example_matches_plaintext_and_ranks_launderers(tmp_path: Path) -> None:
    done = run_example("propagate.py", "--key-bits", "1024", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = dict(line.rsplit(" ", 1) for line in done.stdout.splitlines() if " " in line)
    assert float(lines["secure vs plaintext, largest difference:"]) < 1e-6
    assert 0.5 < float(lines["ROC AUC initial"]) <= 1.0
    assert 0.5 < float(lines["ROC AUC after 3 iteration(s)"]) <= 1.0


def test_example_reports_bad_input_in_one_line(tmp_path: Path) -> None:
    done = run_example("propagate.py", "--key-bits", "100", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ")
    assert "Traceback" not in done.stderr
