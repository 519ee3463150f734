"""A streaming node's consumer inside the service: a worker thread, its status and metrics.

With a ``stream`` section the service starts a :class:`StreamWorker`: one thread that connects
to the broker, opens the period store and runs :class:`~riskprop.stream.consumer.Consumer`
(receive, parse, store and commit, alert, dead-letter, acknowledge) batch after batch until the
service stops. Alerts of each newly stored transaction (its transaction-level rules and the
windowed ones, whose state is rebuilt from the store at each connection) go to the broker's
alert stream and to the node's alert log. A broker that cannot be reached or fails mid-batch is
retried after 1 s, doubling up to 30 s; meanwhile ``/readyz`` names the problem, and nothing
is lost (what was not committed is delivered again; see the consumer's module doc). The thread
never touches the service's event loop: the service reads :meth:`StreamWorker.status`, a
snapshot the thread refreshes after each batch.

Before each run the service calls :meth:`StreamWorker.close_period` (in a thread of its own,
with its own store connection; SQLite serialises it with the consumer's commits): the period
due for the run's slot is closed, frozen and scored (``riskprop.stream.period``), and the run
reads the folder it gives.
"""

from __future__ import annotations

import collections
import csv
import logging
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from riskprop.config import PlayerConfig, StreamSettings
from riskprop.errors import ConfigError
from riskprop.logcontext import set_fields
from riskprop.scoring.rules import RuleSet, default_rules_path, load_rules
from riskprop.service.metrics import StreamMetrics
from riskprop.stream.alertlog import AlertLog
from riskprop.stream.alerts import outbox
from riskprop.stream.consumer import Consumer, settle_gc
from riskprop.stream.period import ClosedPeriod, close_and_score
from riskprop.stream.records import RecordRules
from riskprop.stream.source import AlertSink, Fanout, StreamSource
from riskprop.stream.store import COUNTERS, PeriodStore, Put
from riskprop.stream.windows import Windows

log = logging.getLogger(__name__)

#: Alerts whose latencies the p50/p99 gauges and the status summarise.
LATENCY_WINDOW = 10_000
#: Seconds between two lag queries to the broker.
LAG_INTERVAL = 5.0
#: Seconds over which the consumption rate is averaged.
RATE_WINDOW = 10.0
#: Longest pause before a broker is tried again.
MAX_BACKOFF = 30.0
#: Seconds a batch waits for records before the loop looks at the stop flag again.
WAIT = 0.5
PERIODS_FOLDER = "periods"


def stream_root(config: PlayerConfig) -> Path:
    """Where a streaming node keeps its closed periods: ``OUT/stream/periods``."""
    return config.output / "stream" / PERIODS_FOLDER


def connect(settings: StreamSettings, player: str) -> tuple[StreamSource, AlertSink]:
    """The broker's source of the bank's records and its alert sink (the broker's alert
    stream plus the node's alert log). ConfigError when the broker's client is not installed."""
    log_sink = AlertLog(settings.alert_log)
    if settings.broker == "redis":
        try:
            import redis

            from riskprop.stream.redis_source import RedisAlertSink, RedisStreamSource
        except ImportError:
            raise ConfigError(
                "stream.broker redis needs the redis client: pip install 'riskprop[stream]'"
            ) from None
        client = redis.Redis.from_url(settings.address, socket_timeout=30)
        client.ping()  # fails here, clearly, when the broker is down
        source: StreamSource = RedisStreamSource(
            client,
            settings.topic,
            settings.group,
            settings.consumer,
            dead_stream=settings.dead_letters,
            claim_idle=settings.claim_idle,
        )
        broker_sink: AlertSink = RedisAlertSink(
            redis.Redis.from_url(settings.address), settings.alerts
        )
    else:
        try:
            from riskprop.stream.kafka_source import KafkaAlertSink, KafkaStreamSource
        except ImportError:
            raise ConfigError(
                "stream.broker kafka needs confluent-kafka: pip install 'riskprop[stream]'"
            ) from None
        kafka = {"bootstrap.servers": settings.address, **dict(settings.kafka_settings)}
        source = KafkaStreamSource(
            kafka,
            settings.topic,
            group=settings.group,
            dead_topic=settings.dead_letters,
            partitions=settings.partitions,
        )
        broker_sink = KafkaAlertSink(kafka, settings.alerts)
    return source, Fanout(broker_sink, log_sink)


class StreamWorker:
    """The consumer thread of a streaming node (see the module doc)."""

    def __init__(self, config: PlayerConfig, metrics: StreamMetrics) -> None:
        assert config.stream is not None
        self.settings: StreamSettings = config.stream
        self.player = config.player
        self.metrics = metrics
        self.rules: RuleSet = load_rules(self.settings.rules or default_rules_path())
        levels = [level.name for level in self.rules.levels]
        if self.settings.alert_level is not None and self.settings.alert_level not in levels:
            raise ConfigError(
                f"stream.alert_level: {self.settings.alert_level!r} is not a level of the rules "
                f"({', '.join(levels)})"
            )
        self.problem: str | None = "not started"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._latency: collections.deque[float] = collections.deque(maxlen=LATENCY_WINDOW)
        self._arrivals: collections.deque[tuple[float, int]] = collections.deque()
        self._lag: int | None = None
        self._lag_at = 0.0
        self._last_id = ""
        self._counts: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._alerts = 0
        self._state = "starting"
        self.last_closed: dict[str, Any] | None = None

    # ----------------------------------------------------------------- the thread

    @property
    def started(self) -> bool:
        """Whether the consumer thread was started (a one-shot run never starts it)."""
        return self._thread is not None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="stream", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        set_fields(player=self.player)
        settings = self.settings
        backoff = 1.0
        while not self._stop.is_set():
            source: StreamSource | None = None
            sink: AlertSink | None = None
            store: PeriodStore | None = None
            try:
                store = PeriodStore(
                    settings.store, origin=settings.origin, length=settings.period_length
                )
                self._counts = store.counts()
                source, sink = connect(settings, self.player)
                accounts = None if settings.accounts is None else known_accounts(settings.accounts)
                consumer = Consumer(
                    source,
                    store,
                    RecordRules(bank=self.player, accounts=accounts, currency=settings.currency),
                    batch=settings.batch,
                    # the windowed rules' state, rebuilt from the store at each (re)connection
                    outbox=outbox(
                        self.player,
                        self.rules,
                        windows=Windows.restored(self.player, self.rules, store),
                        minimum=settings.alert_level,
                    ),
                    publish=self._publisher(sink),
                    latencies=self._observe,
                )
                settle_gc()  # the windows' state is built: scanned no more
                self._up(f"consuming {settings.topic} on {settings.broker}")
                backoff = 1.0
                while not self._stop.is_set():
                    put = consumer.step(WAIT)
                    self._after(consumer.progress.last_id, put, source)
            except ConfigError as exc:  # the configuration will not get better by waiting
                self._down(str(exc))
                self._stop.wait(MAX_BACKOFF)
            except Exception as exc:  # a broker or disk failure: try again
                self._down(f"{settings.broker} {settings.address}: {type(exc).__name__}: {exc}")
                log.debug("stream consumer failed", exc_info=True)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
            finally:
                for part in (source, sink, store):
                    if part is not None:
                        try:
                            part.close()
                        except Exception:  # closing a broken connection
                            log.debug("closing %s failed", type(part).__name__, exc_info=True)
        self._state = "stopped"

    def _up(self, what: str) -> None:
        if self.problem is not None:
            log.info("stream: %s", what)
        self.problem, self._state = None, "consuming"
        self.metrics.up.set(1)

    def _down(self, problem: str) -> None:
        if problem != self.problem:
            log.error("stream: %s", problem)
        self.problem, self._state = problem, "down"
        self.metrics.up.set(0)

    def _publisher(self, sink: AlertSink) -> Callable[[Sequence[tuple[str, bytes]]], None]:
        """``sink.publish`` counting the alerts published (those a previous life left too)."""

        def publish(messages: Sequence[tuple[str, bytes]]) -> None:
            sink.publish(messages)
            self._alerts += len(messages)

        return publish

    def _observe(self, latencies: list[float]) -> None:
        with self._lock:
            self._latency.extend(latencies)
        for seconds in latencies:
            self.metrics.latency.observe(seconds)

    def _after(self, last_id: str, put: Put | None, source: StreamSource) -> None:
        """Totals, rate, lag and gauges after a batch (or an empty wait)."""
        now = time.monotonic()
        if put is not None:
            outcomes = {
                "stored": put.stored,
                "duplicates": put.duplicates,
                "dead": put.dead,
                "late": put.late,
            }
            for name, value in outcomes.items():
                self._counts[name] = self._counts.get(name, 0) + value
                self.metrics.records.labels(name).inc(value)
            received = put.stored + put.duplicates + len(put.dead_letters)
            self._arrivals.append((now, received))
            self._last_id = last_id
            self.metrics.last_offset.info({"id": last_id})
        while self._arrivals and self._arrivals[0][0] < now - RATE_WINDOW:
            self._arrivals.popleft()
        self.metrics.rate.set(self.rate())
        if now - self._lag_at >= LAG_INTERVAL:
            self._lag_at = now
            lag = source.lag()
            self._lag = lag
            self.metrics.lag.set(float("nan") if lag is None else lag)
            p50, p99 = self.percentiles()
            self.metrics.latency_p50.set(p50)
            self.metrics.latency_p99.set(p99)

    # ----------------------------------------------------------------- reading

    def rate(self) -> float:
        """Records received per second over the last ``RATE_WINDOW`` seconds."""
        arrivals = list(self._arrivals)
        return sum(n for _, n in arrivals) / RATE_WINDOW if arrivals else 0.0

    def percentiles(self) -> tuple[float, float]:
        """p50 and p99 of the last ``LATENCY_WINDOW`` alerts' latencies (NaN: none yet)."""
        with self._lock:
            values = np.fromiter(self._latency, dtype=np.float64)
        if values.size == 0:
            return float("nan"), float("nan")
        p50, p99 = np.percentile(values, [50, 99])
        return float(p50), float(p99)

    def status(self) -> dict[str, Any]:
        settings = self.settings
        p50, p99 = self.percentiles()
        return {
            "broker": settings.broker,
            "topic": settings.topic,
            "group": settings.group,
            "state": self._state,
            "problem": self.problem,
            "records": dict(self._counts),
            "alerts": self._alerts,
            "rate_per_second": round(self.rate(), 1),
            "lag": self._lag,
            "last_offset": self._last_id or None,
            "alert_latency_p50_seconds": None if np.isnan(p50) else round(p50, 4),
            "alert_latency_p99_seconds": None if np.isnan(p99) else round(p99, 4),
            "last_closed": self.last_closed,
        }

    # ----------------------------------------------------------------- period close

    def close_period(
        self, at: datetime, *, root: Path, members: Sequence[str], keep: int
    ) -> ClosedPeriod:
        """Close, freeze and score the period due at ``at`` (a slot's time); keep the newest
        ``keep`` period folders. Blocking: the service calls it in a thread."""
        settings = self.settings
        period = settings.period_to_close(at.timestamp())
        store = PeriodStore(settings.store, origin=settings.origin, length=settings.period_length)
        try:
            closed = close_and_score(
                store, settings, period, bank=self.player, root=root, members=members
            )
            # the store keeps the periods whose folders are kept and what the windowed rules
            # replay on a restart (two longest windows before the period's end)
            replay = closed.end - 2 * Windows(self.player, self.rules).longest
            before = min(closed.period - keep + 1, settings.period_of(replay))
            purged = store.purge(before=before)
        finally:
            store.close()
        if purged:
            log.info("stream store: %d transactions of periods before %d removed", purged, before)
        self.last_closed = {
            "period": closed.period,
            "start": closed.start,
            "end": closed.end,
            "transactions": closed.transactions,
            "late": closed.late,
            "folder": str(closed.data),
        }
        self.metrics.closed_period.set(closed.period)
        log.info(
            "period %d closed: %d transactions (%d late) in %s",
            closed.period,
            closed.transactions,
            closed.late,
            closed.data,
        )
        prune_periods(root, keep, in_use=closed.data)
        return closed


def known_accounts(path: Path) -> frozenset[str]:
    """The ``id`` column of the CSV file ``path`` (the bank's account list, read at each
    connection to the broker). ConfigError names the file and the problem."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or "id" not in reader.fieldnames:
                raise ConfigError(f"{path}:1: the accounts file needs an id column")
            return frozenset(row["id"] for row in reader if row["id"])
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the accounts ({exc})") from None


def prune_periods(root: Path, keep: int, *, in_use: Path) -> None:
    """Remove the oldest period folders beyond ``keep`` (names sort by their start time)."""
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    for old in folders[: max(0, len(folders) - keep)]:
        if old != in_use:
            shutil.rmtree(old, ignore_errors=True)
