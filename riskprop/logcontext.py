"""Fields bound to every log line of a task: player, run, phase, peer.

``bind(run="daily-2026-11-29")`` adds fields for the code it wraps, and for every asyncio task
started from it (the fields live in a ``contextvars.ContextVar``, which tasks copy) and the
worker threads of ``riskprop.node.stopping.in_thread`` (which runs its function in a copy of
the caller's context; a plain thread or ``run_in_executor`` starts without fields).
``ContextFilter`` copies them onto each ``logging.LogRecord`` as ``record.fields``; the JSON
formatter writes them as keys; the text format leaves them out.
The standard library's logging carries them, so aiohttp's and asyncio's records get them too.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator, Mapping
from types import MappingProxyType

_FIELDS: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "riskprop_log_fields", default=MappingProxyType({})
)


@contextlib.contextmanager
def bind(**fields: object) -> Iterator[None]:
    """Add ``fields`` (None values are left out) to the log lines of the wrapped code."""
    merged = {**_FIELDS.get(), **{k: str(v) for k, v in fields.items() if v is not None}}
    token = _FIELDS.set(merged)
    try:
        yield
    finally:
        _FIELDS.reset(token)


def set_fields(**fields: object) -> None:
    """Bind ``fields`` for the rest of the current task or thread (a task's own context)."""
    _FIELDS.set({**_FIELDS.get(), **{k: str(v) for k, v in fields.items() if v is not None}})


def fields() -> dict[str, str]:
    """The fields bound here."""
    return dict(_FIELDS.get())


class ContextFilter(logging.Filter):
    """Puts the bound fields on each record (``record.fields``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.fields = {**_FIELDS.get(), **getattr(record, "fields", {})}
        return True
