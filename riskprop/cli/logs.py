"""Logging set-up for the CLI: human-readable lines or one JSON object per line.

The JSON format writes each record as ``{"time", "level", "logger", "message", <fields>}``,
the fields bound with ``riskprop.logcontext.bind`` (player, run, phase, peer) included, and
so is the last line of a command that fails (``fatal``): a log shipper sees every line.
The standard library's logging is the carrier, so the records of aiohttp and asyncio take
the same path; contextvars give each asyncio task and worker thread its own fields.
"""

from __future__ import annotations

import json
import logging
import sys
import time

import click

from riskprop.logcontext import ContextFilter

#: The format ``configure`` set ("text" or "json").
FORMAT = ["text"]


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message"}`` per record, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in getattr(record, "fields", {}).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class TerminalHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Log lines on a terminal, with one status line kept below them (see ``show_progress``)."""

    status = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream.write("\r\033[K")
        super().emit(record)
        self.redraw()

    def redraw(self) -> None:
        self.stream.write("\r\033[K" + self.status)
        self.stream.flush()


def show_progress(text: str) -> None:
    """Show ``text`` as the status line when logging goes to a terminal; else do nothing."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, TerminalHandler):
            handler.status = text
            handler.redraw()


class OneLineLibraryErrors(logging.Filter):
    """A library's error records (aiohttp's on a malformed request, say) as one line: the
    exception's type and message instead of a traceback that a client can make the node print
    at will."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and not record.name.startswith("riskprop"):
            _, error, _ = record.exc_info
            record.msg = f"{record.getMessage()} ({type(error).__name__}: {error})"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def configure(level: int, fmt: str = "text") -> None:
    """Send riskprop's log records to stderr in ``fmt`` ("text" or "json"); on a terminal the
    text format keeps a progress line under the log."""
    handler: logging.Handler
    if fmt == "text" and sys.stderr.isatty():
        handler = TerminalHandler()
    else:
        handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    handler.addFilter(OneLineLibraryErrors())
    handler.addFilter(ContextFilter())
    FORMAT[0] = fmt
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.getLogger("aiohttp").setLevel(max(level, logging.WARNING))


def fatal(message: str, level: int = logging.ERROR) -> None:
    """The last line of a command that fails (or stops on request, at ``logging.WARNING``):
    on stderr as is, or as a JSON record of that level."""
    if FORMAT[0] == "json":
        logging.getLogger("riskprop").log(level, "%s", message)
    else:
        click.echo(message, err=True)
