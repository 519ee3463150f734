"""``riskprop check``: validate a node's set-up without running the protocol (like ``nginx -t``).

Every check ends in findings of three levels: ``ok`` (what was verified, with what operators
compare between banks: the key's and the certificate's fingerprints, expiry dates), ``warning``
(works now but needs attention: a certificate expiring within ``EXPIRY_WARNING_DAYS``, a peer
not reachable, as peers may be down) and ``error`` (a run would fail; one line naming the file
or field and the problem). Checks that depend on an earlier one are left out when it failed
(everything on a configuration that does not load, the peers on TLS files in error) rather
than report the same problem twice.

Nothing is changed or sent, except a temporary file made and removed in the output directory
(which is created if missing, as a run would), a ping to each peer's
``GET /riskprop/v1/ping`` over mutual TLS, for a streaming node a ping to its broker (the
store is opened read-only) and, for a node that computes on Dask, a connection to its
scheduler.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from riskprop.config import RUN_ID, PlayerConfig, load_player_config
from riskprop.core.data import load_bank
from riskprop.core.fixedpoint import FixedPoint
from riskprop.core.threshold import ThresholdKey
from riskprop.errors import ConfigError, RiskpropError
from riskprop.files.atomic import check_private
from riskprop.files.keys import load_share, spaced
from riskprop.node import pki
from riskprop.node.http import HttpSettings
from riskprop.node.reach import Finding, Level, ping_peers
from riskprop.node.runner import check_output, http_settings
from riskprop.node.tls import certificate_fingerprint

#: A certificate that expires within this many days is a warning.
EXPIRY_WARNING_DAYS = 30
#: Seconds a peer has to answer the ping.
PING_TIMEOUT = 5.0


@dataclass
class Report:
    """The findings of one check, in order; each is passed to ``emit`` as it is made."""

    emit: Callable[[Finding], None] | None = None
    findings: list[Finding] = field(default_factory=list)

    def add(self, level: Level, message: str) -> None:
        finding = Finding(level, message)
        self.findings.append(finding)
        if self.emit is not None:
            self.emit(finding)

    def ok(self, message: str) -> None:
        self.add("ok", message)

    def warning(self, message: str) -> None:
        self.add("warning", message)

    def error(self, message: str) -> None:
        self.add("error", message)

    def count(self, level: Level) -> int:
        return sum(f.level == level for f in self.findings)

    @property
    def failed(self) -> bool:
        return self.count("error") > 0

    def summary(self, player: str) -> str:
        errors, warnings = self.count("error"), self.count("warning")
        verdict = "check failed" if errors else "check passed"
        return (
            f"{player}: {verdict}: {self.count('ok')} ok, {warnings} warning(s), {errors} error(s)"
        )

    @contextmanager
    def guard(self, what: str) -> Iterator[None]:
        """Run a check; its error becomes one ``error`` line instead of ending the others."""
        try:
            yield
        except RiskpropError as exc:
            self.error(str(exc))
        except OSError as exc:
            where = exc.filename or what
            self.error(f"{where}: {exc.strerror or exc}")
        except ValueError as exc:  # a malformed file the libraries read (certificates, text)
            self.error(f"{what}: {exc}")


def check_node(
    config_dir: Path,
    player: str,
    *,
    overrides: Mapping[str, object] | None = None,
    insecure: bool = False,
    network: bool = True,
    now: datetime.datetime | None = None,
    timeout: float = PING_TIMEOUT,
    emit: Callable[[Finding], None] | None = None,
) -> Report:
    """Check ``player``'s node as ``riskprop --player`` would start it (see the module doc);
    ``network=False`` leaves out the peers' reachability."""
    report = Report(emit)
    moment = now or datetime.datetime.now(datetime.UTC)
    try:
        # the data and the key share are checked below, each on its own line
        config = load_player_config(
            config_dir, player, overrides=overrides, insecure=insecure, for_keygen=True
        )
    except RiskpropError as exc:
        report.error(str(exc))
        return report
    names = config.network.names
    report.ok(f"configuration {config.path}: network {config.network.path} ({', '.join(names)})")
    slot: datetime.datetime | None = None
    with report.guard("schedule"):
        slot = check_schedule(config, report, moment)
    with report.guard("admin"):
        check_admin(config, report)
    key: ThresholdKey | None = None
    with report.guard("key share"):
        key = check_key(config, report)
    if config.stream is None:
        with report.guard("data"):
            check_data(config, report, slot, key)
    else:  # the run's data is the period it closes
        with report.guard("stream"):
            check_stream(config, report, network=network, timeout=timeout)
    with report.guard("output"):
        check_output_dir(config, report)
    with report.guard("compute"):
        check_compute(config, report, network=network, timeout=timeout)
    check_arithmetic(report)
    errors = report.count("error")
    if config.insecure:
        report.warning("TLS off (--insecure): plain HTTP, peers are not authenticated")
    else:
        with report.guard("tls"):
            check_tls(config, report, moment)
    if report.count("error") > errors:  # the node's own TLS contexts would fail alike
        if network:
            report.warning("peers not pinged: the TLS set-up has errors")
        return report
    settings: HttpSettings | None = None
    with report.guard("tls"):
        settings = http_settings(config)  # what the node itself builds: every TLS context
    if network and settings is not None:
        check_peers(settings, report, timeout)
    return report


# ------------------------------------------------------------------------ the checks


def check_schedule(
    config: PlayerConfig, report: Report, now: datetime.datetime
) -> datetime.datetime | None:
    """The latest slot at or before ``now`` (None without a schedule), and the next one."""
    from cronsim import CronSim, CronSimError

    schedule = config.schedule
    if schedule is None:
        report.ok(f"no schedule: runs when triggered (run id {config.run.run_id})")
        return None
    where = f"{config.path}: schedule.cron: {schedule.cron!r}"
    try:
        # CronSim iterates strictly before its start in reverse: a second later finds ``now``
        latest = next(CronSim(schedule.cron, now + datetime.timedelta(seconds=1), reverse=True))
        following = next(CronSim(schedule.cron, now))
    except (CronSimError, StopIteration) as exc:
        raise ConfigError(f"{where}: never fires ({exc or 'no time matches'})") from None
    run_id = schedule.run_id_for(latest)
    if not RUN_ID.fullmatch(run_id):
        raise ConfigError(
            f"{config.path}: schedule.run_id: gives {run_id!r} for the slot at "
            f"{pki.day(latest)}, which must match [A-Za-z0-9._-]{{1,64}}"
        )
    report.ok(
        f"schedule {schedule.cron!r} (UTC): latest slot {pki.day(latest)} (run {run_id}), "
        f"next {pki.day(following)}"
    )
    return latest


def check_admin(config: PlayerConfig, report: Report) -> None:
    """The admin listener's token file (given and enabled): owner-only and long enough, as
    the service reads it. (The configuration requires one off loopback and that it exists.)"""
    admin = config.admin
    if admin is None or not admin.enabled:
        report.ok("admin listener disabled")
        return
    token = admin.token_file
    admin.read_token()
    access = f"bearer token in {token}" if token is not None else "no token, loopback only"
    report.ok(f"admin listener {admin.url} ({access})")


def check_key(config: PlayerConfig, report: Report) -> ThresholdKey | None:
    """The key share loads (mode owner-only, this party's, intact) and is for this network;
    the run's parameters fit its modulus."""
    path = config.key_share
    if not path.is_file():
        raise ConfigError(f"{config.path}: key_share: file not found: {path}")
    key = load_share(path, config.player).key
    names = config.network.names
    if set(key.parties) != set(names):
        raise ConfigError(
            f"{path}: the key's parties ({', '.join(key.parties)}) differ from the network's "
            f"({', '.join(names)}) in {config.network.path}: a key of another network"
        )
    report.ok(
        f"key share {path}: {len(key.parties)} parties, threshold {key.threshold}, "
        f"{key.public.bits}-bit, fingerprint {spaced(key.fingerprint())}"
    )
    parameters = config.run.parameters
    total = parameters.iterations * len(parameters.periods)
    fixed = FixedPoint.for_packing(parameters.precision_bits, total, key.public.bits)
    try:
        fixed.check_fits(parameters.iterations, len(parameters.periods), key.public.bits)
    except ConfigError as exc:
        raise ConfigError(f"{config.path}: run: {exc}") from None
    report.ok(
        f"run parameters: {parameters.iterations} iteration(s) x {len(parameters.periods)} "
        f"period(s) at {parameters.precision_bits} precision bits fit the key"
    )
    return key


def check_data(
    config: PlayerConfig,
    report: Report,
    slot: datetime.datetime | None,
    key: ThresholdKey | None,
) -> None:
    """The bank's data loads as a run would read it: the data directory, or with a
    ``schedule.data`` template the directory of the latest slot."""
    directory, where = config.data, "data"
    schedule = config.schedule
    if schedule is not None and schedule.data is not None and slot is not None:
        directory = schedule.data_for(slot, config.data)
        where = f"schedule.data (slot {pki.day(slot)})"
    if not directory.is_dir():
        raise ConfigError(f"{config.path}: {where}: directory not found: {directory}")
    banks = key.parties if key is not None else config.network.names
    bank = load_bank(directory, config.player, banks)
    report.ok(f"data {directory}: {bank.n_accounts} accounts, {len(bank.src)} transactions")
    for warning in bank.warnings:
        report.warning(f"{directory}: {warning}")
    most = config.limits.max_accounts
    if most is not None and bank.n_accounts > most:
        raise ConfigError(
            f"{config.path}: limits.max_accounts is {most}, but this bank has {bank.n_accounts} "
            "accounts: its peers would refuse its messages (raise it at every bank)"
        )


def check_stream(config: PlayerConfig, report: Report, *, network: bool, timeout: float) -> None:
    """A streaming node: its rules load, its broker's client is installed, its store (when it
    exists) keeps the configured periods; with ``network``, the broker answers (a warning if
    not, as a broker may be down for a moment)."""
    import sqlite3

    from riskprop.scoring.rules import default_rules_path, load_rules

    stream = config.stream
    assert stream is not None
    rules_path = stream.rules or default_rules_path()
    rules = load_rules(rules_path)
    levels = [level.name for level in rules.levels]
    if stream.alert_level is not None and stream.alert_level not in levels:
        raise ConfigError(
            f"{config.path}: stream.alert_level: {stream.alert_level!r} is not a level of the "
            f"rules in {rules_path} ({', '.join(levels)})"
        )
    start = datetime.datetime.fromtimestamp(stream.origin, datetime.UTC)
    report.ok(
        f"stream {stream.broker} {stream.address}: topic {stream.topic}, group {stream.group}, "
        f"dead letters to {stream.dead_letters}, alerts to {stream.alerts}; periods of "
        f"{stream.period_length} s from {start:%Y-%m-%dT%H:%M:%SZ}, closed "
        f"{stream.close_after:g} s after their end; {len(rules.rules)} rules from {rules_path}"
    )
    client = "redis" if stream.broker == "redis" else "confluent_kafka"
    try:
        __import__(client)
    except ImportError:
        raise ConfigError(
            f"{config.path}: stream.broker: {stream.broker} needs its client ({client}): "
            "pip install 'riskprop[stream]'"
        ) from None
    if stream.store.exists():
        try:
            with contextlib.closing(
                sqlite3.connect(f"file:{stream.store}?mode=ro", uri=True)
            ) as db:
                meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
                (stored,) = db.execute("SELECT count(*) FROM tx").fetchone()
        except sqlite3.Error as exc:
            raise ConfigError(f"{stream.store}: not a readable stream store ({exc})") from None
        kept = (meta.get("origin"), meta.get("length"))
        if kept != (stream.origin, stream.period_length):
            raise ConfigError(
                f"{config.path}: stream: the store {stream.store} keeps periods of "
                f"{kept[1]} s from {kept[0]}, not {stream.period_length} s from {stream.origin}:"
                " use a new store for other periods"
            )
        report.ok(f"stream store {stream.store}: {stored} transactions")
    else:
        report.ok(f"stream store {stream.store}: made at the node's first start")
    if network:
        problem = _broker_problem(stream.broker, stream.address, stream.topic, timeout)
        if problem is None:
            report.ok(f"stream broker {stream.address}: reachable")
        else:
            report.warning(f"stream broker {stream.address}: not reachable ({problem})")


def _broker_problem(broker: str, address: str, topic: str, timeout: float) -> str | None:
    """Why the broker does not answer (None: it does)."""
    try:
        if broker == "redis":
            import redis

            with redis.Redis.from_url(
                address, socket_timeout=timeout, socket_connect_timeout=timeout
            ) as client:
                client.ping()
            return None
        from confluent_kafka.admin import AdminClient

        found = AdminClient({"bootstrap.servers": address}).list_topics(timeout=timeout)
        return None if topic in found.topics else f"no topic {topic}"
    except Exception as exc:  # the clients' own errors: one line
        return f"{type(exc).__name__}: {exc}"


def check_compute(config: PlayerConfig, report: Report, *, network: bool, timeout: float) -> None:
    """Where the node computes: its worker processes (more than the cores it may use is a
    warning; where its noise and key share go), or the Dask scheduler, connected to as a run
    connects (its workers counted) unless ``network`` is off."""
    from riskprop.compute import default_workers

    compute = config.compute
    if compute.dask is None:
        cores = default_workers()
        workers = cores if compute.workers is None else compute.workers
        if workers == 1:
            report.ok("compute: in the node process (compute.workers: 1)")
            return
        share = (
            "the key share too (compute.share_in_workers)"
            if compute.share_in_workers
            else "the key share stays in the node process"
        )
        where = f"{workers} worker processes on this host"
        report.ok(f"compute: {where} (large noise draws there; {share})")
        if workers > cores:
            report.warning(
                f"{config.path}: compute.workers: {workers} processes on the {cores} core(s) "
                "available to this node: they will share cores"
            )
        return
    if not network:
        report.ok(f"compute: Dask scheduler {compute.dask} (not contacted: --no-network)")
        return
    from riskprop.compute.dask import DaskExecutor

    try:
        executor = DaskExecutor(compute.dask, connect_timeout=timeout)
    except ImportError:
        raise ConfigError(
            f"{config.path}: compute.dask: Dask is not installed (pip install 'riskprop[dask]')"
        ) from None
    except RiskpropError as exc:
        raise ConfigError(f"{config.path}: compute.dask: {exc}") from None
    with executor:
        report.ok(f"compute: Dask scheduler {compute.dask}: {executor.workers} worker thread(s)")


def check_arithmetic(report: Report) -> None:
    """Which code runs the modular arithmetic. A native module that was not built costs time,
    never correctness: a warning naming what its build needs."""
    from riskprop.core import modexp

    forced = modexp.forced()
    note = f" (forced by {modexp.ENVIRONMENT}={forced})" if forced else ""
    if modexp.native():
        report.ok("arithmetic: the AVX-512 IFMA kernel (exponentiations and iterations)")
        return
    if modexp.cpu_has_ifma() and not modexp.kernel_built():
        report.warning(
            "arithmetic: this CPU has AVX-512 IFMA but riskprop's kernel was not built (it needs "
            "a C compiler and the Python headers when riskprop is installed): partial "
            "decryptions cost about five times as much, iterations three to four times"
        )
    if modexp.mpn():
        report.ok(f"arithmetic: GMP mpn for key shares (constant time), gmpy2 for the rest{note}")
    elif modexp.mpn_built():
        report.ok(f"arithmetic: gmpy2{note}")
    else:
        report.warning(
            "arithmetic: riskprop.core._mpn was not built (it needs GMP's libgmp.so.10 and a C "
            "compiler when riskprop is installed): key shares go to gmpy2.powmod_sec, about "
            "1.25 times slower"
        )


def check_output_dir(config: PlayerConfig, report: Report) -> None:
    """The output directory exists or can be made, and takes files (as a run checks it)."""
    check_output(config.output, config.results_mode)
    report.ok(f"output {config.output}: writable")


def check_tls(config: PlayerConfig, report: Report, now: datetime.datetime) -> None:
    """Certificate, key and CA: they load, belong together and chain; the certificate is
    this party's, valid now and names the host peers reach it at; pinned certificates load."""
    cert_path, key_path, ca_path = config.tls_certificate, config.tls_key, config.network.ca
    if cert_path is None or key_path is None or ca_path is None:
        raise ConfigError(f"{config.path}: tls certificate, key and network ca are required")
    anchors = _read_certificates(ca_path, "CA certificate")
    for anchor in anchors:
        _check_validity(report, ca_path, anchor, now, "the network's CA certificate")
    report.ok(f"network CA {ca_path}: {_common_name(anchors[0]) or 'no common name'}")
    leaf, *intermediates = _read_certificates(cert_path, "certificate")
    with report.guard("tls key"):
        check_private(key_path, "TLS private key")
        key = pki.read_private_key(key_path, "TLS private key")
        if not pki.same_key(leaf, key):
            raise ConfigError(f"{key_path}: does not match the certificate {cert_path}")
        report.ok(f"TLS key {key_path}: owner-only, matches the certificate")
    name = _common_name(leaf)
    if name != config.player:
        report.error(
            f"{cert_path}: the certificate is for {name!r}, not {config.player!r} "
            f"(tls.certificate of {config.path})"
        )
    if not _chains_to(leaf, intermediates, anchors):
        report.error(f"{cert_path}: not signed by the network's CA {ca_path}")
    _check_usage(report, cert_path, leaf)
    _check_own_host(report, config, cert_path, leaf)
    fingerprint = certificate_fingerprint(leaf.public_bytes(serialization.Encoding.DER))
    if _check_validity(report, cert_path, leaf, now, "the certificate"):
        until = pki.day(leaf.not_valid_after_utc)
        report.ok(
            f"TLS certificate {cert_path}: CN {name}, valid until {until}, SHA-256 {fingerprint}"
        )
    for index, party in enumerate(config.network.parties):
        if party.certificate is None:
            continue
        with report.guard("pinned certificate"):
            pinned = certificate_fingerprint(party.certificate)
            if party.name == config.player and pinned != fingerprint:
                report.error(
                    f"{config.network.path}: parties[{index}].certificate: {party.certificate} "
                    f"is pinned for {party.name} but is not {cert_path}: peers would refuse "
                    "this node"
                )
            else:
                report.ok(f"pinned certificate of {party.name}: {party.certificate}")


def check_peers(settings: HttpSettings, report: Report, timeout: float) -> None:
    """Ping every peer; unreachable is a warning (it may be down), refusing an error."""
    for peer, finding in asyncio.run(ping_peers(settings, timeout)).items():
        report.add(finding.level, f"peer {peer} at {settings.peers[peer]}: {finding.message}")


# -------------------------------------------------------------------------- peers


# ------------------------------------------------------------------- certificates


def _read_certificates(path: Path, what: str) -> list[x509.Certificate]:
    try:
        found = x509.load_pem_x509_certificates(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what} ({exc.strerror})") from None
    except ValueError:
        raise ConfigError(f"{path}: not a PEM {what}") from None
    return found


def _common_name(cert: x509.Certificate) -> str | None:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if names else None
    return value if isinstance(value, str) else None


def _check_validity(
    report: Report, path: Path, cert: x509.Certificate, now: datetime.datetime, what: str
) -> bool:
    """An error when ``cert`` is not valid at ``now``, a warning when it expires soon; True
    when it is valid and not expiring soon."""
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now < start:
        report.error(f"{path}: {what} is not valid before {pki.day(start)}")
    elif now >= end:
        report.error(f"{path}: {what} expired on {pki.day(end)}")
    elif end - now < datetime.timedelta(days=EXPIRY_WARNING_DAYS):
        days = (end - now) / datetime.timedelta(days=1)
        report.warning(f"{path}: {what} expires on {pki.day(end)}, in {days:.0f} day(s): renew it")
    else:
        return True
    return False


def _issued(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _chains_to(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
) -> bool:
    """Whether ``leaf`` is signed by one of ``anchors``, directly or through intermediates
    (those the certificate file holds after it, or the CA file)."""
    pool = [*intermediates, *anchors]
    current = leaf
    for _ in range(len(pool) + 1):
        if any(_issued(current, anchor) for anchor in anchors):
            return True
        issuer = next((c for c in pool if c != current and _issued(current, c)), None)
        if issuer is None:
            return False
        pool.remove(issuer)
        current = issuer
    return False


def _check_usage(report: Report, path: Path, cert: x509.Certificate) -> None:
    try:
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return  # any use
    needed = {
        ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
        ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    }
    missing = [label for oid, label in needed.items() if oid not in usage]
    if missing:
        report.error(
            f"{path}: the certificate's extended key usage lacks {' and '.join(missing)} "
            "(a node is TLS server and client)"
        )


def _check_own_host(
    report: Report, config: PlayerConfig, path: Path, cert: x509.Certificate
) -> None:
    """Peers verify the host of this node's URL in the network file against the certificate."""
    url = config.network.party(config.player).url
    host = urlsplit(url).hostname or ""
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = names.get_values_for_type(x509.DNSName)
        ips = names.get_values_for_type(x509.IPAddress)
    except x509.ExtensionNotFound:  # OpenSSL then falls back to the common name
        dns, ips = [n for n in [_common_name(cert)] if n], []
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        named = any(_dns_matches(pattern, host) for pattern in dns)
    else:
        named = address in ips
    if not named:
        shown = ", ".join([*dns, *(str(ip) for ip in ips)]) or "no host"
        report.error(
            f"{path}: peers reach {config.player} at {host} ({config.network.path}), but the "
            f"certificate names {shown}"
        )


def _dns_matches(pattern: str, host: str) -> bool:
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = host.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == host
