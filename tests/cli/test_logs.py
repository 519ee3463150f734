"""Log lines: a library's errors stay one line, riskprop's own keep their detail."""

from __future__ import annotations

import logging
import sys

from riskprop.cli.logs import OneLineLibraryErrors


def record(name: str) -> logging.LogRecord:
    try:
        raise ValueError("Invalid method encountered: b'GARBAGE'")
    except ValueError:
        exc_info = sys.exc_info()
    return logging.LogRecord(
        name, logging.ERROR, __file__, 1, "Error handling %s", ("request",), exc_info
    )


def test_a_library_error_is_one_line_without_a_traceback() -> None:
    entry = record("aiohttp.server")
    assert OneLineLibraryErrors().filter(entry)
    text = logging.Formatter("%(levelname)s %(message)s").format(entry)
    assert (
        text == "ERROR Error handling request (ValueError: Invalid method encountered: b'GARBAGE')"
    )


def test_riskprop_errors_keep_their_traceback() -> None:
    entry = record("riskprop.node.runner")
    assert OneLineLibraryErrors().filter(entry)
    text = logging.Formatter("%(message)s").format(entry)
    assert text.startswith("Error handling request\nTraceback")
