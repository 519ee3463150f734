"""The long-running node: ``riskprop --player NAME``.

The service keeps three things up: the peer listener (between runs it answers protocol
messages with 503, so a peer that starts a run first retries until this node opens it), the
admin listener, and a loop that runs

- each slot of the schedule, when it fires, as run ``schedule.run_id`` of the slot; a node that
  starts (or restarts) while a slot is still open, within ``join_window`` of it, joins that
  slot's run unless it already succeeded; nodes wait for their peers until the window closes;
- a run an operator triggers (``POST /runs``, ``riskprop trigger``): by default the latest
  slot's run id (to retry it, or to run it early); its peers are waited for ``join_window``.

A failed run of an open slot is tried again after ``RETRY_AFTER`` seconds, doubling after each
failure, while the slot is open (a peer that came back, a snapshot that arrived late). One run
at a time: a slot that fires during a run starts when the run ends if its window is still
open, else it is counted as skipped. Each run reads the slot's data directory
(``schedule.data``) and writes ``OUT/runs/<run_id>/``; ``OUT/latest`` moves to it only when it
succeeds, and ``retention.keep_runs`` folders are kept. The history of runs is kept in
``OUT/history.json`` (mode 0600). SIGTERM and SIGINT stop the node within ``STOP_GRACE``
seconds (a run's checkpoint stays and the same slot resumes on restart), SIGHUP re-reads the
configuration (certificates, schedule, run parameters) for the next run.

``riskprop run`` uses the same machinery for one run (``Service.once``): the configured run id,
results in OUT itself, the admin listener while it runs if its port is free.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cronsim import CronSim
from cryptography import x509

from riskprop import __version__
from riskprop.config import DEFAULT_JOIN_WINDOW, PlayerConfig
from riskprop.core.paillier import PublicKey
from riskprop.errors import ConfigError, ProtocolError, RiskpropError, StoppedError
from riskprop.files.atomic import atomic_write_text
from riskprop.files.keys import load_share
from riskprop.files.results import NodeReport
from riskprop.logcontext import bind, set_fields
from riskprop.node.http import HttpTransport
from riskprop.node.reach import reachability
from riskprop.node.runner import Tick, http_settings, run_node
from riskprop.node.stopping import in_thread, until_stopped
from riskprop.protocol.messages import Codec
from riskprop.service.admin import AdminServer, TriggerError
from riskprop.service.layout import latest_run, point_latest, prune_runs, run_folder
from riskprop.service.metrics import NodeMetrics
from riskprop.service.progress import PHASES, ProgressTracker
from riskprop.service.schedule import (
    Slot,
    iso,
    open_slot,
    previous_slot,
    upcoming_slot,
    utc_now,
)

if TYPE_CHECKING:  # imported where a stream is configured: a batch node need not load it
    from riskprop.service.streaming import StreamWorker

log = logging.getLogger(__name__)

HISTORY_FILE = "history.json"
#: Runs remembered in the history file.
HISTORY_LENGTH = 200
#: Seconds between two reachability checks of the peers.
PING_INTERVAL = 30.0
#: Seconds before a failed run of an open slot is tried again (doubling after each failure).
RETRY_AFTER = 30.0
#: Slots searched back for the one a triggered run id names (a year of daily slots).
SLOT_LOOKBACK = 400


@dataclass
class RunRecord:
    """One run in the history."""

    run_id: str
    trigger: str
    started: str
    status: str = "running"
    finished: str | None = None
    seconds: float | None = None
    error: str | None = None
    bytes_sent: int | None = None
    accounts: int | None = None
    phases: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: Any) -> RunRecord:
        if not isinstance(data, dict):
            raise ValueError("a run record must be an object")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        record = cls(**known)
        if not isinstance(record.run_id, str) or not isinstance(record.status, str):
            raise ValueError("a run record needs run_id and status strings")
        return record


class History:
    """The runs of this node, newest first, kept in ``OUT/history.json``."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.records: list[RunRecord] = []
        if path is not None and path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                self.records = [RunRecord.from_json(r) for r in data["runs"]]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("%s: unreadable run history, starting a new one (%s)", path, exc)
        for record in self.records:
            if record.status == "running":  # the process ended during it
                record.status = "stopped"

    def add(self, record: RunRecord) -> None:
        self.records.insert(0, record)
        del self.records[HISTORY_LENGTH:]
        self.save()

    def save(self) -> None:
        if self.path is None:
            return
        text = json.dumps({"runs": [r.to_json() for r in self.records]}, indent=1)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            atomic_write_text(self.path, text + "\n", mode=0o600)
        except OSError as exc:
            log.warning("%s: cannot save the run history (%s)", self.path, exc.strerror)

    def succeeded(self, run_id: str) -> bool:
        return any(r.run_id == run_id and r.status == "succeeded" for r in self.records)

    def last_success(self) -> RunRecord | None:
        return next((r for r in self.records if r.status == "succeeded"), None)

    def estimates(self) -> dict[str, float]:
        """Each phase's duration in the last successful run."""
        last = self.last_success()
        return dict(last.phases) if last is not None else {}


@dataclass
class PeerState:
    url: str
    reachable: bool | None = None
    checked: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Job:
    """A run to make: its id, what started it, the slot whose data it reads, and until when
    its peers are waited for."""

    run_id: str
    trigger: str
    data_slot: datetime | None
    closes: datetime
    #: discard what this node kept of the run (its checkpoint and journal) first
    fresh: bool = False


@dataclass
class Current:
    """The run going on."""

    record: RunRecord
    tracker: ProgressTracker
    clock_started: float


def certificate_expiry(path: Path | None) -> tuple[str, datetime] | None:
    """(common name, expiry) of a PEM certificate, or None when there is none or it is
    unreadable (``riskprop check`` reports why)."""
    if path is None:
        return None
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    subject = str(names[0].value) if names else cert.subject.rfc4514_string()
    return subject, cert.not_valid_after_utc


class Service:
    """A bank's node as a service (see the module doc). ``load`` reads the configuration
    (again on SIGHUP); ``clock`` gives the UTC time (tests move it)."""

    def __init__(
        self,
        load: Callable[[], PlayerConfig],
        *,
        clock: Callable[[], datetime] = utc_now,
        show: Callable[[str], None] | None = None,
    ) -> None:
        self.load = load
        self.clock = clock
        self.show = show
        self.config = load()
        self.player = self.config.player
        self.metrics = NodeMetrics(self.player, stream=self.config.stream is not None)
        #: the consumer of a streaming node (``stream`` section), started by ``serve``
        self.streamer: StreamWorker | None = None
        if self.config.stream is not None:
            assert self.metrics.stream is not None
            from riskprop.service.streaming import StreamWorker

            self.streamer = StreamWorker(self.config, self.metrics.stream)
        self.started = clock()
        self.history = History(self.config.output / HISTORY_FILE)
        self.current: Current | None = None
        self.peers = {
            p.name: PeerState(p.url) for p in self.config.network.parties if p.name != self.player
        }
        self.key: dict[str, Any] | None = None
        self.public: PublicKey | None = None
        self.key_problem: str | None = None
        #: why the last reload failed (the previous configuration stays in force)
        self.config_problem: str | None = None
        self.stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._reload = False
        self._triggers: list[tuple[str, bool]] = []  # (run id, fresh)
        #: run id -> (failed attempts, when it may be tried again)
        self._tries: dict[str, tuple[int, datetime]] = {}
        self._once = False
        self._read_key()
        last = self.history.last_success()
        if last is not None and last.finished:
            self.metrics.last_success.set(_timestamp(last.finished))

    # ------------------------------------------------------------------ state

    def _read_key(self) -> None:
        """Load the key share (its mode and consistency are checked) for the status."""
        try:
            share = load_share(self.config.key_share, self.player)
        except RiskpropError as exc:
            self.key, self.key_problem = None, str(exc)
            return
        key = share.key
        self.public = key.public
        fingerprint = key.fingerprint()
        self.key = {
            "fingerprint": fingerprint,
            "parties": list(key.parties),
            "threshold": key.threshold,
            "bits": key.public.bits,
        }
        self.key_problem = None
        if set(key.parties) != set(self.config.network.names):
            self.key_problem = (
                f"{self.config.key_share}: the key's parties ({', '.join(key.parties)}) differ "
                f"from the network's ({', '.join(self.config.network.names)})"
            )
        self.metrics.set_key(fingerprint)

    def next_run(self) -> Slot | None:
        schedule = self.config.schedule
        if schedule is None or self._once:
            return None
        return upcoming_slot(schedule, self.clock())

    def certificate(self) -> dict[str, Any] | None:
        found = certificate_expiry(self.config.tls_certificate)
        if found is None:
            return None
        subject, not_after = found
        left = (not_after - self.clock()).total_seconds()
        self.metrics.certificate_expiry.set(left)
        return {
            "subject": subject,
            "not_after": iso(not_after),
            "days_left": round(left / 86400, 1),
        }

    def status(self) -> dict[str, Any]:
        """The ``/status`` document (see the admin module); refreshes the clock gauges."""
        now = self.clock()
        upcoming = self.next_run()
        self.metrics.next_run.set(upcoming.at.timestamp() if upcoming else 0)
        schedule = self.config.schedule
        last = self.history.last_success()
        return {
            "player": self.player,
            "version": __version__,
            "now": iso(now),
            "started": iso(self.started),
            "state": "running" if self.current is not None else "idle",
            "current": self._current_status(),
            "next_run": None
            if upcoming is None
            else {
                "run_id": upcoming.run_id,
                "at": iso(upcoming.at),
                "in_seconds": round((upcoming.at - now).total_seconds(), 1),
            },
            "schedule": None
            if schedule is None
            else {
                "cron": schedule.cron,
                "run_id": schedule.run_id,
                "join_window": schedule.join_window,
            },
            "latest": latest_run(self.config.output),
            "last_success": last.finished if last is not None else None,
            "history": [r.to_json() for r in self.history.records[:50]],
            "peers": [{"name": name, **peer.__dict__} for name, peer in sorted(self.peers.items())],
            "key": self.key,
            "certificate": self.certificate(),
            "stream": None if self.streamer is None else self.streamer.status(),
        }

    def _current_status(self) -> dict[str, Any] | None:
        current = self.current
        if current is None:
            return None
        tracker = current.tracker
        state = tracker.state
        return {
            "run_id": current.record.run_id,
            "trigger": current.record.trigger,
            "started": current.record.started,
            "elapsed_seconds": round(time.monotonic() - current.clock_started, 1),
            "phase": tracker.phase,
            "detail": state.detail if state is not None else "starting",
            "fraction": round(tracker.fraction(), 4),
            "eta_seconds": None if tracker.eta() is None else round(tracker.eta() or 0.0, 1),
            "bytes_sent": tracker.bytes_sent,
            "bytes_by_peer": tracker.bytes_by_peer,
            "messages_by_peer": tracker.messages_by_peer,
            "phases": tracker.phases(),
        }

    def readiness(self) -> list[str]:
        problems = []
        if self.config_problem:
            problems.append(f"configuration: {self.config_problem}")
        if self.key_problem:
            problems.append(f"key: {self.key_problem}")
        cert = self.certificate()
        if not self.config.insecure and cert is None:
            problems.append(f"certificate: {self.config.tls_certificate}: unreadable")
        elif cert is not None and cert["days_left"] <= 0:
            problems.append(
                f"certificate: {self.config.tls_certificate}: expired {cert['not_after']}"
            )
        if self.streamer is not None and self.streamer.started and self.streamer.problem:
            problems.append(f"stream: {self.streamer.problem}")
        for name, peer in sorted(self.peers.items()):
            if peer.reachable is None:
                problems.append(f"peer {name}: not checked yet")
            elif not peer.reachable:
                problems.append(f"peer {name}: unreachable ({peer.error})")
        return problems

    def trigger(self, run_id: str | None, *, fresh: bool = False) -> str:
        """Queue a run now: ``run_id``, or the latest slot's (without a schedule, ``run.run_id``
        of the configuration); ``fresh`` discards what this node kept of that run."""
        if self._once:
            raise TriggerError(409, "this node makes one run (riskprop run) and takes no triggers")
        if self.current is not None:
            raise TriggerError(409, f"run {self.current.record.run_id} is in progress")
        if self._triggers:
            raise TriggerError(409, f"run {self._triggers[0][0]} is about to start")
        if run_id is None:
            schedule = self.config.schedule
            if schedule is not None:
                run_id = schedule.run_id_for(previous_slot(schedule.cron, self.clock()))
            elif self.config.run.run_id:
                run_id = self.config.run.run_id
            else:
                raise TriggerError(400, "no schedule and no run.run_id to name the run: give one")
        self._triggers.append((run_id, fresh))
        self._wake.set()
        return run_id

    # ------------------------------------------------------------------ running

    def _on_tick(self, tick: Tick | None) -> None:
        current = self.current
        if current is None:
            return
        if tick is not None:
            current.tracker.update(tick)
        tracker = current.tracker
        self.metrics.progress.set(tracker.fraction())
        eta = tracker.eta()
        self.metrics.eta.set(float("nan") if eta is None else eta)
        for phase in PHASES:
            self.metrics.phase_progress.labels(phase).set(tracker.phase_fraction(phase))
        if self.show is not None:
            self.show(tracker.line() if tick is not None else "")

    async def _run(self, job: Job) -> NodeReport | None:
        """One run; returns its report, or None when it failed (logged and recorded)."""
        config = self.config
        run_id, trigger = job.run_id, job.trigger
        schedule = config.schedule
        data = schedule.data_for(job.data_slot, config.data) if schedule and job.data_slot else None
        output = run_folder(config.output, run_id)
        timeouts = config.timeouts
        left = (job.closes - self.clock()).total_seconds()  # wait for peers while it is open
        timeouts = replace(timeouts, connect=max(timeouts.connect, left))
        run_config = replace(config.for_run(run_id, data, output), timeouts=timeouts)
        record = RunRecord(run_id, trigger, iso(self.clock()) or "")
        tracker = ProgressTracker(self.history.estimates(), name=self.player)
        current = self.current = Current(record, tracker, time.monotonic())
        self.metrics.running.set(1)
        self.metrics.progress.set(0)
        log.info("run %s starts (%s), results in %s", run_id, trigger, output)
        report: NodeReport | None = None
        try:
            with bind(run=run_id):
                if self.streamer is not None:  # the run reads the period it closes
                    at = job.data_slot or self.clock()
                    run_config = replace(run_config, data=await self._close_period(at))
                work = run_node(run_config, fresh=job.fresh, progress=self._on_tick)
                report = await until_stopped(work, self.stop, lambda: self._where(run_id))
        except StoppedError:
            record.status = "stopped"
            raise
        except RiskpropError as exc:
            record.status, record.error = "failed", str(exc)
            log.error("run %s failed: %s", run_id, exc)
        except Exception as exc:  # a defect: the service stays up for the next run
            record.status, record.error = "failed", f"internal error: {type(exc).__name__}: {exc}"
            log.error("run %s failed: %s", run_id, record.error)
            log.debug("run %s failed", run_id, exc_info=True)
        else:
            record.status = "succeeded"
            record.accounts = report.accounts
            record.bytes_sent = report.bytes_sent
            self.metrics.bytes_sent.inc(report.bytes_sent)
        finally:
            record.finished = iso(self.clock())
            record.seconds = round(time.monotonic() - current.clock_started, 3)
            record.phases = tracker.durations()
            if report is None:  # a failed or stopped run sent bytes too
                record.bytes_sent = tracker.bytes_sent
                self.metrics.bytes_sent.inc(tracker.bytes_sent)
            for phase, seconds in record.phases.items():
                self.metrics.phase_seconds.labels(phase).set(seconds)
            self.metrics.run_seconds.set(record.seconds)
            self.metrics.runs.labels(record.status).inc()
            self.metrics.running.set(0)
            self.metrics.progress.set(0)
            self.current = None
            if not self._once:
                self.history.add(record)
        if report is not None:
            self.metrics.last_success.set(time.time())
            try:
                point_latest(config.output, run_id)
                prune_runs(config.output, config.keep_runs, in_use=(run_id,))
            except OSError as exc:  # the run's results stay in its folder
                log.error(
                    "run %s: cannot update %s (%s)",
                    run_id,
                    exc.filename or config.output,
                    exc.strerror,
                )
            log.info(
                "run %s succeeded in %.1f s; results in %s", run_id, record.seconds or 0, output
            )
        return report

    async def _close_period(self, at: datetime) -> Path:
        """Close, freeze and score the stream's period due at ``at``; the bank's scored files
        (the run's ``data``)."""
        from riskprop.service.streaming import stream_root

        assert self.streamer is not None
        config = self.config
        close = functools.partial(
            self.streamer.close_period,
            root=stream_root(config),
            members=config.network.names,
            keep=config.keep_runs,
        )
        # cancelled by a stop, the thread finishes unobserved: every file it writes is
        # replaced atomically, and closing the same period again gives the same files
        closed = await in_thread(close, at)
        return closed.data / self.player

    def _due(self, starting: bool) -> Job | None:
        """The run to start now: a trigger, or the open slot's run when it has not succeeded
        and was not tried in the last ``RETRY_AFTER`` seconds (doubling after each failure)."""
        schedule = self.config.schedule
        now = self.clock()
        window = schedule.join_window if schedule is not None else DEFAULT_JOIN_WINDOW
        if self._triggers:
            run_id, fresh = self._triggers.pop(0)
            data_slot = self._slot_named(run_id) if schedule is not None else None
            return Job(run_id, "operator", data_slot, now + timedelta(seconds=window), fresh)
        if schedule is None:
            return None
        slot = open_slot(schedule, now)
        if slot is None or self.history.succeeded(slot.run_id):
            if starting and slot is not None:
                log.info("run %s of the current slot already succeeded", slot.run_id)
            return None
        tried = self._tries.get(slot.run_id)
        if tried is not None and now < tried[1]:
            return None
        trigger = "startup" if starting else ("retry" if tried else "schedule")
        return Job(slot.run_id, trigger, slot.at, slot.closes(schedule))

    def _slot_named(self, run_id: str) -> datetime | None:
        """The slot whose run id is ``run_id`` among the last ``SLOT_LOOKBACK`` slots (its
        data is that slot's snapshot), else the latest slot (an operator's own run id reads
        the latest snapshot)."""
        schedule = self.config.schedule
        assert schedule is not None  # called with a schedule only
        latest = previous_slot(schedule.cron, self.clock())
        earlier = CronSim(schedule.cron, latest, reverse=True)  # from the slot before
        for at in itertools.islice(itertools.chain([latest], earlier), SLOT_LOOKBACK):
            if schedule.run_id_for(at) == run_id:
                return at
        return latest

    def _failed(self, job: Job) -> None:
        """Note a failed run of a slot: it is tried again after a back-off while open."""
        count = self._tries.get(job.run_id, (0, self.clock()))[0] + 1
        delay = RETRY_AFTER * 2 ** (count - 1)
        again = self.clock() + timedelta(seconds=delay)
        self._tries[job.run_id] = (count, again)
        if again < job.closes and job.trigger != "operator":
            log.info("run %s is tried again at %s while its slot is open", job.run_id, iso(again))

    def _count_skipped(self, since: datetime) -> None:
        """Slots that fired during a run and closed before it ended, or that a later slot,
        open now, superseded (only the open slot's run starts next)."""
        schedule = self.config.schedule
        if schedule is None:
            return
        now = self.clock()
        latest = open_slot(schedule, now)
        for at in CronSim(schedule.cron, since):
            if at > now:
                break
            slot = Slot(at, schedule.run_id_for(at))
            superseded = latest is not None and slot.run_id != latest.run_id
            if (superseded or slot.closes(schedule) <= now) and slot.run_id not in self._tries:
                self._tries[slot.run_id] = (0, slot.closes(schedule))
                log.warning("run %s skipped: its slot fired while another run went on", slot.run_id)
                self.metrics.runs.labels("skipped").inc()
                record = RunRecord(slot.run_id, "schedule", iso(at) or "", status="skipped")
                record.error = "another run was going on"
                self.history.add(record)

    async def _ping(self) -> None:
        """Check the peers' reachability every ``PING_INTERVAL`` seconds."""
        while True:
            results = await reachability(self.config)
            retry = [p for p, error in results.items() if error is not None]
            if retry:  # a peer between two listeners answers a moment later
                await asyncio.sleep(1.0)
                again = await reachability(self.config)
                results.update({p: again[p] for p in retry if p in again})
            now = iso(self.clock())
            for name, error in results.items():
                peer = self.peers.setdefault(name, PeerState(""))
                peer.reachable, peer.error, peer.checked = error is None, error, now
                self.metrics.peer_up.labels(name).set(1 if error is None else 0)
            await asyncio.sleep(PING_INTERVAL)

    async def _idle(self, until: datetime | None) -> None:
        """Serve peers (503: no run open) until a run is due, a trigger, a reload or a stop."""
        completed = frozenset(r.run_id for r in self.history.records if r.status == "succeeded")
        settings = replace(http_settings(self.config.for_run("")), completed=completed)
        codec = Codec.for_key(self.public) if self.public is not None else Codec()
        transport = HttpTransport(settings, codec)
        try:
            await transport.start()
        except ProtocolError as exc:
            log.error("peer listener: %s; trying again in 5 s", exc)
            until = min(until, self.clock() + timedelta(seconds=5)) if until else None
            transport = None  # type: ignore[assignment]
        try:
            timeout = None if until is None else max(0.0, (until - self.clock()).total_seconds())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
        finally:
            self._wake.clear()
            if transport is not None:
                await transport.close()

    def request_reload(self) -> None:
        self._reload = True
        self._wake.set()

    def request_stop(self) -> None:
        self.stop.set()
        self._wake.set()

    async def _reload_config(self) -> None:
        self._reload = False
        try:
            config = await in_thread(self.load)
        except RiskpropError as exc:
            log.error("reload failed, the previous configuration stays: %s", exc)
            self.config_problem = f"reload failed: {exc}"
            return
        self.config_problem = None
        if config.admin != self.config.admin:
            log.warning("admin listener settings change at the next start only")
        if config.stream != self.config.stream:
            log.warning("stream settings change at the next start only")
        self.config = replace(config, admin=self.config.admin, stream=self.config.stream)
        self.peers = {
            p.name: self.peers.get(p.name, PeerState(p.url))
            for p in config.network.parties
            if p.name != self.player
        }
        for peer in config.network.parties:
            if peer.name in self.peers:
                self.peers[peer.name].url = peer.url
        self._read_key()
        log.info("configuration reloaded from %s", config.path)

    async def _with_admin(self, required: bool) -> AdminServer | None:
        """The admin listener: the service's (it must start), or a one-shot run's when the
        configuration has an ``admin`` section (a warning if it cannot start)."""
        admin_settings = self.config.admin
        if admin_settings is None or not admin_settings.enabled:
            return None
        if not required and not admin_settings.configured:
            return None
        admin = AdminServer(admin_settings, self)
        try:
            await admin.start()
        except ConfigError as exc:
            if required:
                raise
            log.warning("%s; running without it", exc)
            return None
        return admin

    def _signals(self, reload: bool) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_stop)
        if reload:
            loop.add_signal_handler(signal.SIGHUP, self.request_reload)

    async def serve(self) -> None:
        """Run until stopped (see the module doc)."""
        set_fields(player=self.player)
        self._signals(reload=True)
        if self.key_problem:
            raise ConfigError(self.key_problem)
        admin = await self._with_admin(required=True)
        pinger = asyncio.create_task(self._ping())
        if self.streamer is not None:
            self.streamer.start()
        starting = True
        schedule = self.config.schedule
        log.info(
            "service started: %s",
            f"schedule {schedule.cron} (UTC), runs named {schedule.run_id}"
            if schedule
            else "no schedule, runs when triggered",
        )
        try:
            while not self.stop.is_set():
                if self._reload:
                    await self._reload_config()
                job = self._due(starting)
                starting = False
                if job is not None:
                    began = self.clock()
                    if await self._run(job) is None:
                        self._failed(job)
                    self._count_skipped(began)
                    continue
                upcoming = self.next_run()
                wake = upcoming.at if upcoming else None
                retries = [at for _, at in self._tries.values() if at > self.clock()]
                if retries and (wake is None or min(retries) < wake):
                    wake = min(retries)
                elif upcoming is not None:
                    log.info("next run %s at %s", upcoming.run_id, iso(upcoming.at))
                await self._idle(wake)
        except StoppedError:
            pass
        finally:
            pinger.cancel()
            if self.streamer is not None:
                await in_thread(self.streamer.stop)
            if admin is not None:
                await admin.close()
        log.info("service stopped on request")

    async def once(self, *, fresh: bool = False) -> NodeReport:
        """One run of the configured run id into OUT (``riskprop run``)."""
        set_fields(player=self.player)
        self._once = True
        self._signals(reload=False)
        admin = await self._with_admin(required=False)
        pinger = asyncio.create_task(self._ping()) if admin is not None else None
        run_id = self.config.run.run_id
        try:
            report = await until_stopped(
                self._run_once(run_id, fresh), self.stop, lambda: self._where(run_id)
            )
        finally:
            if pinger is not None:
                pinger.cancel()
            if admin is not None:
                await admin.close()
        return report

    def _where(self, run_id: str) -> str:
        current = self.current
        if current is None or current.tracker.state is None:
            return f"{self.player}: run {run_id}"
        return f"{self.player}: {current.tracker.state.detail}"

    async def _run_once(self, run_id: str, fresh: bool) -> NodeReport:
        record = RunRecord(run_id, "once", iso(self.clock()) or "")
        tracker = ProgressTracker(name=self.player)
        self.current = Current(record, tracker, time.monotonic())
        self.metrics.running.set(1)
        try:
            with bind(run=run_id):
                config = self.config
                if self.streamer is not None:  # the period due now, closed by this run
                    config = config.for_run(run_id, await self._close_period(self.clock()))
                return await run_node(config, fresh=fresh, progress=self._on_tick)
        finally:
            self.current = None
            self.metrics.running.set(0)


def _timestamp(text: str) -> float:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return 0.0


def serve_sync(load: Callable[[], PlayerConfig], show: Callable[[str], None] | None = None) -> None:
    """Run the service until SIGTERM or SIGINT."""

    async def main() -> None:
        await Service(load, show=show).serve()

    asyncio.run(main())


def once_sync(
    load: Callable[[], PlayerConfig],
    *,
    fresh: bool = False,
    show: Callable[[str], None] | None = None,
) -> NodeReport:
    """One run (``riskprop run``); ``StoppedError`` on SIGTERM or SIGINT."""

    async def main() -> NodeReport:
        return await Service(load, show=show).once(fresh=fresh)

    return asyncio.run(main())
