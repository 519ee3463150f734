"""The node's Prometheus metrics (``GET /metrics``), in a registry of its own.

Names follow Prometheus conventions: base units (seconds, bytes), ``_total`` for counters,
``_timestamp_seconds`` for Unix times, ``_ratio`` for fractions.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from riskprop import __version__

#: Outcomes of a run, the ``status`` label of ``riskprop_runs_total``.
RUN_STATUSES = ("succeeded", "failed", "stopped", "skipped")
#: What became of streamed records, the ``outcome`` label of ``riskprop_stream_records_total``.
STREAM_OUTCOMES = ("stored", "duplicates", "dead", "late")
#: Buckets of the alert latency histogram, in seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class StreamMetrics:
    """A streaming node's consumer (``riskprop.service.streaming``). Latency quantiles come two
    ways: a histogram for Prometheus to aggregate, and p50/p99 gauges over the last 10,000
    alerts for a dashboard that reads one node."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.up = Gauge(
            "riskprop_stream_up",
            "1 while the consumer is connected to its broker, else 0.",
            registry=registry,
        )
        self.records = Counter(
            "riskprop_stream_records",
            "Streamed records by outcome (late ones are also stored).",
            ["outcome"],
            registry=registry,
        )
        for outcome in STREAM_OUTCOMES:
            self.records.labels(outcome)
        self.rate = Gauge(
            "riskprop_stream_rate_records_per_second",
            "Records received per second over the last 10 seconds.",
            registry=registry,
        )
        self.lag = Gauge(
            "riskprop_stream_lag_records",
            "Records in the stream not yet delivered to this node (NaN: unknown).",
            registry=registry,
        )
        self.last_offset = Info(
            "riskprop_stream_last_offset",
            "Broker id of the last record of the last stored batch.",
            registry=registry,
        )
        self.latency = Histogram(
            "riskprop_stream_alert_latency_seconds",
            "Seconds from a record's append to the broker to its alert's publication.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.latency_p50 = Gauge(
            "riskprop_stream_alert_latency_p50_seconds",
            "Median alert latency over the last 10,000 alerts (NaN: none yet).",
            registry=registry,
        )
        self.latency_p99 = Gauge(
            "riskprop_stream_alert_latency_p99_seconds",
            "99th percentile alert latency over the last 10,000 alerts (NaN: none yet).",
            registry=registry,
        )
        self.closed_period = Gauge(
            "riskprop_stream_last_closed_period",
            "Index of the last period closed for a run (-1: none yet).",
            registry=registry,
        )
        self.closed_period.set(-1)


class NodeMetrics:
    """Every metric a node exports."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, player: str, *, stream: bool = False) -> None:
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
        #: a streaming node's consumer metrics (None without a ``stream`` section)
        self.stream = StreamMetrics(registry) if stream else None

    def set_key(self, fingerprint: str) -> None:
        self.info.info(
            {"version": __version__, "player": self.player, "key_fingerprint": fingerprint}
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
