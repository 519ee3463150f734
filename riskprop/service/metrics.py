"""The node's Prometheus metrics (``GET /metrics``), in a registry of its own.

Names follow Prometheus conventions: base units (seconds, bytes), ``_total`` for counters,
``_timestamp_seconds`` for Unix times, ``_ratio`` for fractions.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Info, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from riskprop import __version__

#: Outcomes of a run, the ``status`` label of ``riskprop_runs_total``.
RUN_STATUSES = ("succeeded", "failed", "stopped", "skipped")


class NodeMetrics:
    """Every metric a node exports."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, player: str) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.info = Info("riskprop_node", "This node: version, player, key.", registry=registry)
        self.info.info({"version": __version__, "player": player, "key_fingerprint": ""})
        self.player = player
        self.runs = Counter("riskprop_runs", "Runs by outcome.", ["status"], registry=registry)
        for status in RUN_STATUSES:
            self.runs.labels(status)
        self.phase_seconds = Gauge(
            "riskprop_last_run_phase_seconds",
            "Wall seconds of each phase in the last finished run.",
            ["phase"],
            registry=registry,
        )
        self.run_seconds = Gauge(
            "riskprop_last_run_seconds", "Wall seconds of the last finished run.", registry=registry
        )
        self.bytes_sent = Counter(
            "riskprop_sent_bytes", "Bytes of protocol messages sent to peers.", registry=registry
        )
        self.running = Gauge(
            "riskprop_run_in_progress", "1 while a run goes on, else 0.", registry=registry
        )
        self.progress = Gauge(
            "riskprop_run_progress_ratio",
            "Fraction of the current run done (0 when none runs).",
            registry=registry,
        )
        self.phase_progress = Gauge(
            "riskprop_run_phase_progress_ratio",
            "Fraction of each phase of the current run done.",
            ["phase"],
            registry=registry,
        )
        self.eta = Gauge(
            "riskprop_run_remaining_seconds",
            "Estimated seconds left in the current run (NaN when unknown).",
            registry=registry,
        )
        self.peer_up = Gauge(
            "riskprop_peer_reachable",
            "1 if the peer answered the last reachability check, else 0.",
            ["peer"],
            registry=registry,
        )
        self.certificate_expiry = Gauge(
            "riskprop_certificate_expiry_seconds",
            "Seconds until this node's TLS certificate expires (negative: expired).",
            registry=registry,
        )
        self.last_success = Gauge(
            "riskprop_last_success_timestamp_seconds",
            "Unix time the last successful run finished (0: none yet).",
            registry=registry,
        )
        self.next_run = Gauge(
            "riskprop_next_run_timestamp_seconds",
            "Unix time of the next scheduled run (0: none scheduled).",
            registry=registry,
        )
        self.ready = Gauge("riskprop_ready", "1 if /readyz passes, else 0.", registry=registry)

    def set_key(self, fingerprint: str) -> None:
        self.info.info(
            {"version": __version__, "player": self.player, "key_fingerprint": fingerprint}
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
