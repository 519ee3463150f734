"""A cheating helper in a networked run: three nodes (``run_node``, mutual TLS on loopback) in
one process, bob's partial decryptions for alice made wrong. alice refuses them, decrypts with
charlie instead, and her run report names bob; every bank's scores match the plaintext engine.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from nodes import assert_matches_plaintext, make_network

from riskprop.config import load_player_config
from riskprop.files.results import REPORT_FILE, NodeReport
from riskprop.node.runner import run_node
from riskprop.protocol.messages import DecryptRequest, Message, Partial
from riskprop.protocol.session import RunSession

PARTIES = ("alice", "bob", "charlie")


def test_a_report_names_the_helper_whose_answer_was_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    honest = RunSession._answer

    def answer(self: RunSession, requester: str, request: DecryptRequest, digest: str) -> Message:
        """bob's answers to alice: the first value times (1 + N), the proof unchanged."""
        message = honest(self, requester, request, digest)
        if (self.name, requester) != ("bob", "alice"):
            return message
        assert isinstance(message.body, Partial)
        n, n2 = self.public.n, self.public.nsquare
        values = (message.body.values[0] * (1 + n) % n2, *message.body.values[1:])
        body = Partial(values, message.body.proof)
        return Message(message.run_id, message.sender, message.recipient, body, seq=message.seq)

    monkeypatch.setattr(RunSession, "_answer", answer)
    network = make_network(tmp_path, PARTIES)
    configs = [load_player_config(network.configs, party) for party in PARTIES]

    async def main() -> list[NodeReport | BaseException]:
        jobs = (run_node(config) for config in configs)
        return await asyncio.wait_for(asyncio.gather(*jobs, return_exceptions=True), 300)

    outcomes = asyncio.run(main())
    for party, outcome in zip(PARTIES, outcomes, strict=True):
        assert isinstance(outcome, NodeReport), (party, outcome)
    assert_matches_plaintext(network)
    for party in PARTIES:
        data = json.loads((network.out / party / REPORT_FILE).read_text())
        report = NodeReport.from_json(data)
        expected = {"bob": "its partial decryptions fail their proof"} if party == "alice" else {}
        assert report.rejected_helpers == expected, party
        assert data["rejected_helpers"] == expected
