"""The node's alert log: one JSON object per line, appended per published batch, owner-only.

A line is the alert as published to the alert stream (:func:`riskprop.stream.alerts.encode`:
``tx_id``, ``time``, ``accounts``, ``rules``, ``level``, ``action``). The file is opened for
each batch, so a log rotator may move it away (the next batch starts a new file). At least once,
like the alert stream: a consumer that dies between publishing and marking the batch sent
logs it again on restart (the same ``tx_id``). It names the bank's own accounts only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path


class AlertLog:
    """Appends alerts to ``path`` (made 0600, its folder 0700 when missing)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)

    def publish(self, messages: Sequence[tuple[str, bytes]]) -> None:
        if not messages:
            return
        data = b"".join(payload + b"\n" for _, payload in messages)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def close(self) -> None:
        pass
