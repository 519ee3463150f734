"""Ports for a local network's listeners: outside the ephemeral range, never handed out twice."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from riskprop.localnet import harness
from riskprop.localnet.harness import (
    DEFAULT_EPHEMERAL,
    LOWEST_PORT,
    ephemeral_range,
    free_ports,
    port_candidates,
)


def test_the_ephemeral_range_is_read_from_the_kernel(tmp_path: Path) -> None:
    source = tmp_path / "ip_local_port_range"
    source.write_text("40000\t50000\n", encoding="ascii")
    assert ephemeral_range(source) == (40000, 50000)
    assert ephemeral_range(tmp_path / "missing") == DEFAULT_EPHEMERAL
    source.write_text("garbage\n", encoding="ascii")
    assert ephemeral_range(source) == DEFAULT_EPHEMERAL


def test_candidates_lie_outside_the_ephemeral_range() -> None:
    candidates = port_candidates((32768, 60999))
    assert candidates[0] == LOWEST_PORT and candidates[-1] == 65535
    assert 32767 in candidates and 61000 in candidates
    assert not any(32768 <= port <= 60999 for port in candidates)


def test_ports_are_free_distinct_and_never_handed_out_twice() -> None:
    low, high = ephemeral_range()
    first = free_ports(5)
    second = free_ports(5)
    ports = first + second
    assert len(set(ports)) == 10
    assert all(port >= LOWEST_PORT and not low <= port <= high for port in ports)
    for port in ports:  # each can be listened on
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
            sock.listen()


def test_a_busy_port_is_passed_over(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        with socket.socket() as probe:  # free now, and never handed out (the kernel's pick)
            probe.bind(("127.0.0.1", 0))
            spare = probe.getsockname()[1]
        monkeypatch.setattr(harness, "port_candidates", lambda _range: [taken, spare])
        assert free_ports(1) == [spare]
        assert free_ports(1) != [spare]  # handed out once


def test_an_exhausted_pool_falls_back_to_the_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness, "port_candidates", lambda _range: [])
    ports = free_ports(3)
    assert len(set(ports)) == 3
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
