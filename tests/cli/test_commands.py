"""CLI surface: every command has help, -h works, errors are one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from riskprop.cli import cli, main


def commands() -> list[str]:
    return sorted(cli.commands)


def test_every_command_has_help_text() -> None:
    assert {"simulate", "generate", "keygen", "demo"} <= set(commands())
    for name in commands():
        command = cli.commands[name]
        assert command.help and len(command.help.strip()) > 20, f"{name} lacks help text"
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert param.help or param.name in {"iterations"}, f"{name} {param.opts} lacks help"


@pytest.mark.parametrize("name", ["", *commands()])
def test_short_help_flag(name: str) -> None:
    args = [name, "-h"] if name else ["-h"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_error_is_one_line_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", str(tmp_path / "missing"), "-T", "1"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("riskprop: error:") and "missing" in err[0]


def test_bad_schedule_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["generate", str(tmp_path / "d"), "--accounts", "30", "--edges", "60"])
    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", str(tmp_path / "d"), "-T", "1", "--delta-a", "1.5"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["riskprop: error: --delta-a: must lie strictly between 0 and 1 (got 1.5)"]


def _pyarrow_probe(tmp_path: Path, skip: bool) -> list[str]:
    """Run pyarrow conversions in a fresh process that has a fake pandas on its path; the fake
    records each import attempt in a file, then fails as a missing pandas would."""
    site = tmp_path / "site"
    (site / "pandas").mkdir(parents=True)
    marker = tmp_path / "imported"
    (site / "pandas" / "__init__.py").write_text(
        f"open({str(marker)!r}, 'a').write('x')\nraise ImportError('fake pandas')\n"
    )
    script = f"""
import importlib.util, sys
sys.path.insert(0, {str(site)!r})
import pyarrow as pa
from riskprop.core.data import skip_pandas_probe
if {skip!r}:
    skip_pandas_probe()
pa.chunked_array([pa.array([1.0]), pa.array([2.0])]).to_numpy()
print(importlib.util.find_spec("pandas") is not None)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    return [*done.stdout.split(), "imported" if marker.exists() else "not imported"]


def test_command_line_process_never_imports_pandas(tmp_path: Path) -> None:
    """pyarrow would import an installed pandas on its first conversion (0.3 s); the CLI's
    probe stops that, and leaves pandas findable for an explicit import."""
    assert _pyarrow_probe(tmp_path, skip=True) == ["True", "not imported"]


def test_without_the_probe_pyarrow_imports_pandas(tmp_path: Path) -> None:
    """The control for the test above: without the probe pyarrow imports the fake pandas."""
    assert _pyarrow_probe(tmp_path, skip=False) == ["True", "imported"]
