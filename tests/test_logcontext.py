"""Log fields bound per task (``riskprop.logcontext``) and the CLI's log lines
(``riskprop.cli.logs``): JSON lines carry player, run, phase and peer, and so does the last
line of a command that fails."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from riskprop.cli import logs
from riskprop.cli import main as cli_main
from riskprop.cli.logs import JsonFormatter, configure, fatal
from riskprop.logcontext import ContextFilter, bind, fields, set_fields
from riskprop.node.stopping import in_thread


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """The root logger's set-up and the CLI's format as they were before the test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    aiohttp_level = logging.getLogger("aiohttp").level
    fmt = logs.FORMAT[0]
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("aiohttp").setLevel(aiohttp_level)
    logs.FORMAT[0] = fmt


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# ----------------------------------------------------------------------------- binding


def test_bind_adds_fields_for_the_wrapped_code_only() -> None:
    assert fields() == {}
    with bind(player="alice", run=None, port=8441):
        assert fields() == {"player": "alice", "port": "8441"}  # None left out, text values
        with bind(run="daily-2026-11-29", player="bob"):
            assert fields() == {"player": "bob", "port": "8441", "run": "daily-2026-11-29"}
        assert fields() == {"player": "alice", "port": "8441"}
    assert fields() == {}


def test_bind_is_undone_when_the_code_raises() -> None:
    with pytest.raises(RuntimeError), bind(run="r1"):
        raise RuntimeError("boom")
    assert fields() == {}


def test_tasks_inherit_the_fields_and_keep_their_own() -> None:
    async def worker(peer: str) -> dict[str, str]:
        set_fields(peer=peer)  # for the rest of this task only
        await asyncio.sleep(0)
        return fields()

    async def main() -> tuple[list[dict[str, str]], dict[str, str]]:
        set_fields(player="alice")
        with bind(run="r1"):
            found = await asyncio.gather(
                asyncio.create_task(worker("bob")), asyncio.create_task(worker("charlie"))
            )
            return list(found), fields()

    found, parent = asyncio.run(main())
    assert found == [
        {"player": "alice", "run": "r1", "peer": "bob"},
        {"player": "alice", "run": "r1", "peer": "charlie"},
    ]
    assert parent == {"player": "alice", "run": "r1"}  # a task's fields stay in the task
    assert fields() == {}  # asyncio.run's context is not this thread's


def test_worker_threads_of_in_thread_carry_the_fields() -> None:
    async def main() -> dict[str, str]:
        with bind(player="alice", phase="decrypting"):
            return await in_thread(fields)

    assert asyncio.run(main()) == {"player": "alice", "phase": "decrypting"}


def test_a_plain_thread_starts_without_fields() -> None:
    seen: list[dict[str, str]] = []
    with bind(player="alice"):
        thread = threading.Thread(target=lambda: seen.append(fields()))
        thread.start()
        thread.join()
    assert seen == [{}]


def test_the_filter_puts_the_fields_on_each_record() -> None:
    record = logging.LogRecord("aiohttp.server", logging.INFO, __file__, 1, "hello", None, None)
    with bind(player="alice", run="r1"):
        assert ContextFilter().filter(record)
    assert vars(record)["fields"] == {"player": "alice", "run": "r1"}
    explicit = logging.LogRecord("riskprop", logging.INFO, __file__, 1, "x", None, None)
    vars(explicit)["fields"] = {"peer": "bob", "run": "given"}
    with bind(run="r1"):
        ContextFilter().filter(explicit)
    assert vars(explicit)["fields"] == {"run": "given", "peer": "bob"}  # what the record says wins


# ----------------------------------------------------------------------------- JSON lines


def formatted(record: logging.LogRecord) -> dict[str, Any]:
    ContextFilter().filter(record)
    text = JsonFormatter().format(record)
    assert "\n" not in text
    found: dict[str, Any] = json.loads(text)
    return found


def test_a_json_line_has_the_record_and_its_fields() -> None:
    record = logging.LogRecord(
        "riskprop.node.runner", logging.WARNING, __file__, 1, "peer %s slow", ("bob",), None
    )
    record.created, record.msecs = 1_795_917_600.25, 250.0
    with bind(player="alice", run="r1", phase="iterating", peer="bob"):
        entry = formatted(record)
    assert entry == {
        "time": "2026-11-29T02:00:00.250Z",
        "level": "warning",
        "logger": "riskprop.node.runner",
        "message": "peer bob slow",
        "player": "alice",
        "run": "r1",
        "phase": "iterating",
        "peer": "bob",
    }


def test_a_field_never_replaces_the_record_keys() -> None:
    record = logging.LogRecord("riskprop", logging.INFO, __file__, 1, "real", None, None)
    with bind(message="forged", level="debug", logger="x", player="alice"):
        entry = formatted(record)
    assert (entry["message"], entry["level"], entry["logger"]) == ("real", "info", "riskprop")
    assert entry["player"] == "alice"


def test_an_exception_stays_on_one_json_line() -> None:
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord("riskprop", logging.ERROR, __file__, 1, "failed", None, exc_info)
    entry = formatted(record)
    assert entry["message"] == "failed"
    assert entry["exception"].startswith("Traceback") and "ValueError: bad" in entry["exception"]


def test_configured_json_logging_carries_the_fields(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(logging.INFO, "json")
    with bind(player="alice", run="r1"):
        logging.getLogger("riskprop.service").info("run %s starts", "r1")
        logging.getLogger("aiohttp.access").warning("from a library")
        logging.getLogger("riskprop.service").debug("not at this level")
        try:
            raise OSError("reset by peer")
        except OSError:
            logging.getLogger("aiohttp.server").exception("Error handling request")
    lines = json_lines(capsys.readouterr().err)
    assert [(e["logger"], e["message"]) for e in lines] == [
        ("riskprop.service", "run r1 starts"),
        ("aiohttp.access", "from a library"),
        ("aiohttp.server", "Error handling request (OSError: reset by peer)"),
    ]
    assert all(e["player"] == "alice" and e["run"] == "r1" for e in lines)
    assert "exception" not in lines[2]  # a library's error is one line, not a traceback


def test_fatal_is_a_json_error_record_in_json_mode(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(logging.WARNING, "json")
    with bind(player="alice"):
        fatal("riskprop: error: something broke")
    (entry,) = json_lines(capsys.readouterr().err)
    assert entry["level"] == "error" and entry["message"] == "riskprop: error: something broke"
    assert entry["player"] == "alice"


def test_fatal_is_the_plain_line_in_text_mode(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(logging.WARNING, "text")
    fatal("riskprop: error: something broke")
    assert capsys.readouterr().err == "riskprop: error: something broke\n"


def test_a_failing_command_ends_with_a_json_line(
    restore_logging: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Every line a command writes to stderr in JSON mode is JSON, the fatal one too."""
    absent = tmp_path / "no-configs"
    with pytest.raises(SystemExit) as stopped:
        cli_main(["--log-format", "json", "run", "--player", "alice", "--config", str(absent)])
    assert stopped.value.code == 1
    lines = json_lines(capsys.readouterr().err)
    assert lines and lines[-1]["level"] == "error"
    assert lines[-1]["message"].startswith("riskprop: error: ")
    assert str(absent) in lines[-1]["message"]
