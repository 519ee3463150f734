"""A TLS private key that group or others can read is refused, as a key share is."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from riskprop.errors import ConfigError
from riskprop.node.tls import client_context, make_ca, make_node_certificate, server_context


def test_a_readable_private_key_is_refused(tmp_path: Path) -> None:
    ca_cert, ca_key = make_ca(tmp_path)
    cert, key = make_node_certificate(tmp_path, "alice", ca_cert=ca_cert, ca_key=ca_key)
    server_context(cert, key, ca_cert)  # 0600 as written
    os.chmod(key, 0o644)
    for make in (server_context, client_context):
        with pytest.raises(ConfigError, match=r"TLS private key is accessible by group/others"):
            make(cert, key, ca_cert)
    os.chmod(key, 0o600)
    client_context(cert, key, ca_cert, server="bob")
