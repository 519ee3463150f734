"""Run one bank's node: configuration in, ``risk_scores.csv`` out.

Order of work, so that a bad setting fails before anything is sent: load the key share
(permissions checked), load and validate the bank's data against the network's parties, build
the session (parameters and overflow checked), then open the HTTPS endpoint and run the
protocol within the run deadline. Results are written atomically only after the run succeeded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from riskprop.compute import ProcessExecutor, SerialExecutor, make_executor
from riskprop.config import PlayerConfig
from riskprop.core import modexp
from riskprop.core.batches import Executor
from riskprop.core.data import data_digest, load_bank
from riskprop.errors import ConfigError, ProtocolError, RiskpropError, StorageError
from riskprop.files.keys import load_share
from riskprop.files.results import (
    REPORT_FILE,
    RESULTS_FILE,
    NodeReport,
    describe_changes,
    previous_run,
    read_report,
    read_scores,
    write_report,
    write_scores,
)
from riskprop.files.sealed import state_key

if TYPE_CHECKING:  # only a run on Dask imports it
    from riskprop.compute.dask import DaskExecutor
from riskprop.node.driver import drive
from riskprop.node.http import HttpSettings, HttpTransport
from riskprop.node.journal import FileJournal, remove_journal
from riskprop.node.limits import inbound_limits
from riskprop.node.stopping import in_thread, until_stopped
from riskprop.node.tls import certificate_fingerprint, client_context, server_context
from riskprop.node.transport import PeerUnavailableError
from riskprop.protocol.checkpoint import decode_checkpoint
from riskprop.protocol.messages import Abort, Codec, Done, Message, RunDescriptor
from riskprop.protocol.session import Phase, PhaseProgress, RunSession, Stopwatch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tick:
    """Where a running node stands, reported twice a second: its session's progress and the
    bytes it has sent."""

    state: PhaseProgress
    bytes_sent: int
    #: bytes and messages delivered to each peer so far
    bytes_by_peer: Mapping[str, int] = field(default_factory=dict)
    messages_by_peer: Mapping[str, int] = field(default_factory=dict)


#: Receives a ``Tick`` twice a second while a run goes on, and None when it ends.
Progress = Callable[[Tick | None], None]


def prepare_session(config: PlayerConfig, executor: Executor | None = None) -> RunSession:
    """Everything that can fail locally, before any network traffic. The session's linear
    steps go to ``executor`` (default: this process)."""
    share = load_share(config.key_share, config.player)
    key = share.key
    if set(key.parties) != set(config.network.names):
        raise ConfigError(
            f"{config.network.path}: parties ({', '.join(config.network.names)}) differ from the "
            f"key's ({', '.join(key.parties)}) in {config.key_share}"
        )
    descriptor = RunDescriptor.create(config.run.run_id, key, config.run.parameters)
    bank = load_bank(config.data, config.player, key.parties)
    for warning in bank.warnings:
        log.warning("%s", warning)
    most = config.limits.max_accounts
    if most is not None and bank.n_accounts > most:
        raise ConfigError(
            f"{config.path}: limits.max_accounts is {most}, but this bank has {bank.n_accounts} "
            "accounts: its peers would refuse its messages (raise it at every bank)"
        )
    return RunSession(
        descriptor,
        bank,
        share,
        constant_time_noise=config.constant_time_noise,
        executor=executor,
        share_in_workers=config.compute.share_in_workers,
    )


def http_settings(config: PlayerConfig) -> HttpSettings:
    """Transport settings: TLS contexts from the certificate files (one client context per
    peer, which accepts only that peer's certificate), pins, limits."""
    pinned = {
        p.name: certificate_fingerprint(p.certificate)
        for p in config.network.parties
        if p.certificate is not None
    }
    server_ssl = None
    client_ssl = {}
    if not config.insecure:
        cert, key, ca = config.tls_certificate, config.tls_key, config.network.ca
        if cert is None or key is None or ca is None:
            raise ConfigError(f"{config.path}: tls certificate, key and network ca are required")
        server_ssl = server_context(cert, key, ca)
        client_ssl = {
            p.name: client_context(cert, key, ca, server=p.name, pin=pinned.get(p.name))
            for p in config.network.parties
            if p.name != config.player
        }
    else:
        log.warning("%s: --insecure: plain HTTP, peers are not authenticated", config.player)
    return HttpSettings(
        name=config.player,
        run_id=config.run.run_id,
        peers={p.name: p.url for p in config.network.parties if p.name != config.player},
        host=config.listen_host,
        port=config.listen_port,
        server_ssl=server_ssl,
        client_ssl=client_ssl,
        pinned=pinned,
        max_body_bytes=config.max_body_bytes,
        connect_timeout=config.timeouts.connect,
        reconnect_timeout=max(config.timeouts.connect, config.timeouts.idle),
        request_timeout=config.timeouts.request,
        limits=inbound_limits(config.limits),
    )


def set_aside_stale_results(output: Path) -> None:
    """Results of another run must not look like this run's: rename them."""
    earlier = previous_run(output) or "unknown"
    for name in (RESULTS_FILE, REPORT_FILE):
        path = output / name
        if path.is_file():
            target = output / f"{name}.{earlier}.previous"
            path.replace(target)
            log.warning("moved %s of an earlier run to %s", path, target)


def run_identity(config: PlayerConfig, session: RunSession) -> dict[str, str]:
    """What a run is started with: every descriptor field, and a digest of the bank's data.
    Checkpoints and results are bound to it; a run id reused with other inputs is refused."""
    identity = {k: json.dumps(v, sort_keys=True) for k, v in session.descriptor.to_json().items()}
    identity["data"] = data_digest(config.data)
    return identity


def check_output(output: Path, results_mode: int = 0o600) -> None:
    """One line, before anything is sent, when results could not be written to ``output``.
    The folders it makes (``output`` and missing parents, e.g. OUT and OUT/runs of a service)
    are for the owner only (and the group, when ``results_mode`` lets the group read)."""
    if output.exists() and not output.is_dir():
        raise ConfigError(f"{output}: the output path is a file, not a directory")
    mode = 0o750 if results_mode & 0o040 else 0o700
    try:
        for folder in [*reversed(output.parents), output]:  # the missing ones, outermost first
            if not folder.exists():
                with contextlib.suppress(FileExistsError):  # made by another process meanwhile
                    folder.mkdir(mode=mode)
        with tempfile.TemporaryFile(dir=output):
            pass
    except OSError as exc:
        raise ConfigError(f"{output}: cannot write results here ({exc.strerror})") from None


def resume_session(
    session: RunSession, journal: FileJournal
) -> tuple[RunSession, list[Message] | None]:
    """The session restored from the journal's checkpoint, or as it is when there is none."""
    data = journal.load_checkpoint()
    if data is None:
        _remember_served(session, journal)
        return session, None
    where = str(journal.checkpoint_path)
    snapshot, pending = decode_checkpoint(data, where)
    difference = session.descriptor.first_difference(snapshot.descriptor)
    if difference is not None:
        raise ConfigError(
            f"{where}: the checkpoint's {difference} differs from the configuration; "
            "start with --fresh to discard it (a service: riskprop trigger --fresh)"
        )
    restored = RunSession.restore(
        snapshot,
        session.bank,
        session.share,
        constant_time_noise=session.constant_time_noise,
        executor=session.executor,
        share_in_workers=session.share_in_workers,
    )
    _remember_served(restored, journal)
    log.info("%s: resuming from the checkpoint (%s)", session.name, snapshot.phase)
    return restored, pending


def _remember_served(session: RunSession, journal: FileJournal) -> None:
    """Merge the journal's ledger of served decryption requests into ``session``."""
    data = journal.load_ledger()
    if data is None:
        return
    try:
        session.remember(data)
    except ConfigError as exc:
        raise ConfigError(f"{journal.ledger_path}: {exc}") from None


async def run_node(
    config: PlayerConfig,
    *,
    fresh: bool = False,
    stop: asyncio.Event | None = None,
    progress: Progress | None = None,
) -> NodeReport:
    """Run this bank's side of the protocol and write its results.

    A checkpoint of the same run in OUT/.riskprop/<run_id>/ is resumed unless ``fresh``; it
    and the results are bound to the run's identity (``run_identity``), so a run id reused
    with other inputs is refused unless ``fresh``. Setting ``stop`` (the CLI does on
    SIGTERM) ends the node within about a second, whatever it is doing, with
    ``StoppedError``; its checkpoint stays for the next start (a batch already running in a
    compute worker is finished first). ``progress`` is called with a ``Tick`` twice a
    second, and with None at the end. The run's arithmetic goes to ``config.compute.workers``
    worker processes, started when a step is first large enough to share out, or to the Dask
    cluster at ``config.compute.dask`` (connected first: an unreachable scheduler fails the
    run before it starts, ``ComputeError``).
    """
    with make_executor(config.compute.workers, config.compute.dask) as executor:
        return await _run_node(config, executor, fresh=fresh, stop=stop, progress=progress)


async def _run_node(
    config: PlayerConfig,
    executor: SerialExecutor | ProcessExecutor | DaskExecutor,
    *,
    fresh: bool,
    stop: asyncio.Event | None,
    progress: Progress | None,
) -> NodeReport:
    started = time.perf_counter()
    # the loop stays free for a stop
    session = await in_thread(prepare_session, config, executor)
    check_output(config.output, config.results_mode)
    run_id = config.run.run_id
    key = state_key(session.share.secret)
    identity = await in_thread(run_identity, config, session)  # hashes the input files
    journal_dir = config.output / ".riskprop" / run_id
    if fresh:
        remove_journal(journal_dir)
    elif previous_run(config.output) == run_id:
        earlier = read_report(config.output, key=key)
        changes = describe_changes(earlier.identity, identity)
        if changes:
            raise ConfigError(
                f"{config.output / REPORT_FILE}: run {run_id} was completed with other inputs "
                f"({changes}); use a new run id, or --fresh to run it again"
            )
    try:
        journal = FileJournal(
            journal_dir, session.public.ciphertext_bytes, key=key, identity=identity
        )
        session, resume_with, saved_report = await _restore(config, session, journal, key, fresh)
    except RiskpropError as exc:
        # The peers may be mid-run, waiting for us: tell them, so none waits out a time-out.
        await announce(config, session, Abort(exc.peer_reason[:500]), "that this node stopped")
        raise
    if session.done:  # the run was complete already
        return read_report(config.output, key=key)
    settings = http_settings(config)
    log.info(
        "%s: run %s, %d accounts, %d iteration(s) x %d period(s), listening on %s:%d, "
        "batched exponentiation: %s, compute workers: %d%s%s",
        config.player,
        run_id,
        session.bank.n_accounts,
        config.run.parameters.iterations,
        len(config.run.parameters.periods),
        config.listen_host,
        config.listen_port,
        modexp.path(),
        executor.workers,
        _on_dask(config),
        ", the key share in them" if session.share_in_workers and executor.workers > 1 else "",
    )
    transport = HttpTransport(settings, Codec.for_key(session.public))
    ticker = asyncio.create_task(_progress(session, transport, progress)) if progress else None
    results_sha256 = ""

    def report() -> NodeReport:
        return NodeReport(
            player=config.player,
            run_id=run_id,
            accounts=session.bank.n_accounts,
            results=config.output / RESULTS_FILE,
            seconds=dict(session.stats.seconds),
            cpu_seconds=dict(session.stats.cpu_seconds),
            bytes_by_phase=dict(transport.bytes_by_phase),
            bytes_sent=transport.bytes_sent,
            wall_seconds=time.perf_counter() - started,
            warnings=session.bank.warnings,
            identity=identity,
            results_sha256=results_sha256,
            rejected_helpers=session.rejected,
            bytes_by_peer=dict(transport.bytes_by_peer),
            messages_by_peer=dict(transport.messages_by_peer),
        )

    def save_report() -> None:
        write_report(config.output, report(), key=key, mode=config.results_mode)

    def write_results() -> None:
        nonlocal results_sha256
        assert session.result is not None  # called once the result is known
        write_started = Stopwatch.start()
        results_sha256 = write_scores(
            config.output / RESULTS_FILE,
            session.bank.account_ids,
            session.result,
            mode=config.results_mode,
        )
        session.stats.lap("write", write_started)
        save_report()

    on_result: Callable[[], None] | None = None
    if saved_report is None:  # save the result the moment it is known
        on_result = storing(write_results, config.output)
    else:  # it was saved before the restart
        results_sha256 = saved_report.results_sha256
    try:
        async with transport:
            try:
                await asyncio.wait_for(
                    drive(
                        session,
                        transport,
                        idle_timeout=config.timeouts.idle,
                        offload=True,
                        journal=journal,
                        resume_with=resume_with,
                        stop=stop,
                        on_result=on_result,
                    ),
                    config.timeouts.deadline,
                )
            except TimeoutError:
                raise ProtocolError(
                    f"run deadline of {config.timeouts.deadline:g} s passed while waiting for "
                    f"{session.waiting_for()}"
                ) from None
    finally:
        if ticker is not None:
            ticker.cancel()
            assert progress is not None  # the ticker runs only with a callback
            progress(tick(session, transport))
            progress(None)
        journal.close()
    final = report()
    if executor.workers > 1:
        log.info(
            "%s: %d compute batches in %d worker processes%s",
            config.player,
            executor.batches,
            executor.workers,
            _on_dask(config),
        )
    storing(save_report, config.output)()  # with the figures of the whole run
    journal.discard()  # the run is complete: nothing left to resume
    return final


def _on_dask(config: PlayerConfig) -> str:
    dask = config.compute.dask
    return f" on the Dask cluster at {dask}" if dask else ""


async def _restore(
    config: PlayerConfig, session: RunSession, journal: FileJournal, key: bytes, fresh: bool
) -> tuple[RunSession, list[Message] | None, NodeReport | None]:
    """Where this node stands in its run: the session (restored from its checkpoint, or
    ``done`` when the run completed before), the messages to resume with, and the report of
    results it saved before a restart."""
    run_id = config.run.run_id
    if previous_run(config.output) != run_id or fresh:
        session, resume_with = resume_session(session, journal)
        if resume_with is None:
            set_aside_stale_results(config.output)
        return session, resume_with, None
    if journal.load_checkpoint() is None:
        # The run completed (its journal is gone): tell the peers once more, and stop.
        journal.discard()
        log.info("%s: run %s is already complete (--fresh runs it again)", config.player, run_id)
        await announce(config, session, Done(), "that the run is complete")
        session.phase = Phase.DONE
        return session, None, None
    # Killed after saving its result, before its peers were done: it still owes them
    # partial decryptions, so it comes back as a helper with its saved result.
    session, _ = resume_session(session, journal)
    saved_report = read_report(config.output, key=key)
    saved = read_scores(
        config.output / RESULTS_FILE, session.bank.account_ids, sha256=saved_report.results_sha256
    )
    resume_with = session.finish_with(saved)
    log.info("%s: result already saved; serving the peers until they are done", config.player)
    return session, resume_with, saved_report


def storing(write: Callable[[], None], where: Path) -> Callable[[], None]:
    """``write`` with a disk error (full, read-only, gone) as one ``StorageError`` line, which
    the driver announces to the peers before it stops."""

    def guarded() -> None:
        try:
            write()
        except OSError as exc:
            raise StorageError(f"{exc.filename or where}: cannot write ({exc.strerror})") from None

    return guarded


async def announce(
    config: PlayerConfig, session: RunSession, body: Done | Abort, what: str
) -> None:
    """Best effort, at most a few seconds: send every peer ``body`` (sequence 0: never
    dropped as a duplicate), e.g. ``Done`` for a run completed before or ``Abort`` when this
    node cannot go on."""
    settings = replace(
        http_settings(config),
        connect_timeout=min(2.0, config.timeouts.connect),
        reconnect_timeout=min(2.0, config.timeouts.connect),
    )

    async def tell(transport: HttpTransport, peer: str) -> None:
        try:
            await transport.send(Message(config.run.run_id, config.player, peer, body))
        except (PeerUnavailableError, ProtocolError) as exc:
            log.info("%s: could not tell %s %s: %s", config.player, peer, what, exc)

    try:
        async with HttpTransport(settings, Codec.for_key(session.public)) as transport:
            await asyncio.gather(*(tell(transport, peer) for peer in session.peers))
    except ProtocolError as exc:  # e.g. the port is taken: the peers will time out instead
        log.info("%s: could not tell the peers %s: %s", config.player, what, exc)


async def _progress(session: RunSession, transport: HttpTransport, progress: Progress) -> None:
    """Report where the session stands, twice a second."""
    while True:
        progress(tick(session, transport))
        await asyncio.sleep(0.5)


def tick(session: RunSession, transport: HttpTransport) -> Tick:
    return Tick(
        session.progress_state(),
        transport.bytes_sent,
        dict(transport.bytes_by_peer),
        dict(transport.messages_by_peer),
    )


def run_node_sync(
    config: PlayerConfig, *, fresh: bool = False, progress: Progress | None = None
) -> NodeReport:
    """Run the node; SIGTERM and SIGINT stop it within ``STOP_GRACE`` seconds, whatever it is
    doing, with one line at once and ``StoppedError`` (its checkpoint kept for the next start).
    """

    async def main() -> NodeReport:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        where = [f"{config.player}: starting"]

        def track(tick: Tick | None) -> None:
            if tick is not None:
                where[0] = f"{config.player}: {tick.state.detail}"
            if progress is not None:
                progress(tick)

        work = run_node(config, fresh=fresh, progress=track)
        return await until_stopped(work, stop, lambda: where[0])

    return asyncio.run(main())
