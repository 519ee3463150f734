"""The command line's process settings: one OpenBLAS thread, set before numpy is imported."""

from __future__ import annotations

import os
import subprocess
import sys


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"} | env
    return subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        env=environ,
        check=True,
        timeout=120,
    )


def test_the_cli_sets_one_openblas_thread_before_numpy_loads() -> None:
    done = _run("import os, riskprop.cli; print(os.environ['OPENBLAS_NUM_THREADS'])")
    assert done.stdout.strip() == "1"
    order = [line.split("|")[-1].strip() for line in done.stderr.splitlines() if "|" in line]
    assert "riskprop.cli._env" in order and "numpy" in order
    # importtime lists a module when its import ends: _env has none of its own, numpy's ends last
    assert order.index("riskprop.cli._env") < order.index("numpy._core._multiarray_umath")


def test_an_operators_own_setting_is_kept_and_the_api_leaves_it_alone() -> None:
    kept = _run(
        "import os, riskprop.cli; print(os.environ['OPENBLAS_NUM_THREADS'])",
        OPENBLAS_NUM_THREADS="4",
    )
    assert kept.stdout.strip() == "4"
    api = _run("import os, riskprop.api; print(os.environ.get('OPENBLAS_NUM_THREADS'))")
    assert api.stdout.strip() == "None"
