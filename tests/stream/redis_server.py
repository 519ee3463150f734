"""A real ``redis-server`` for the stream tests: started on a free loopback port in a temporary
directory, no persistence, stopped at the end. Skipped where Debian's ``redis-server`` is not
installed, except in CI (``CI=true``), where ``.ci/run`` installs it and its absence fails."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

IN_CI = os.environ.get("CI") == "true"


@dataclass(frozen=True)
class RedisServer:
    port: int

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def redis_server(folder: Path) -> Iterator[RedisServer]:
    program = shutil.which("redis-server")
    if program is None:
        if IN_CI:
            pytest.fail("redis-server is not installed (.ci/run installs Debian's redis-server)")
        pytest.skip("redis-server not installed (Debian package redis-server)")
    folder.mkdir(parents=True, exist_ok=True)
    for _ in range(5):  # another process may take the free port before the server binds it
        port = _free_port()
        process = subprocess.Popen(
            [
                *(program, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder)),
                *("--save", "", "--appendonly", "no", "--logfile", str(folder / "redis.log")),
            ],
            stdin=subprocess.DEVNULL,
        )
        server = RedisServer(port)
        if _wait_ready(server, process):
            break
        process.kill()
        process.wait()
    else:
        pytest.fail(f"redis-server did not start; see {folder / 'redis.log'}")
    try:
        yield server
    finally:
        process.terminate()
        process.wait(timeout=30)


def _wait_ready(server: RedisServer, process: subprocess.Popen[bytes]) -> bool:
    """Poll until the server answers PING or exits (a count of tries, not a time limit)."""
    client = server.client()
    try:
        for _ in range(500):
            if process.poll() is not None:
                return False
            try:
                if client.ping():
                    return True
            except redis.ConnectionError:
                time.sleep(0.02)
        return False
    finally:
        client.close()
