"""Node configuration: YAML files to frozen, validated dataclasses.

``<config_dir>/<player>.yaml`` is a bank's own file; it names the shared network file (default
``network.yaml`` beside it). Relative paths resolve against the directory of the file that
holds them and are stored absolute. Every problem is one ``ConfigError`` line:
``<file>: <dotted.key>: <problem>``.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import yaml

from riskprop.core.jsontypes import expect_int, expect_number, expect_str, kind
from riskprop.core.params import RunParameters
from riskprop.errors import ConfigError, ParameterError
from riskprop.files.atomic import check_private

NAME = re.compile(r"[A-Za-z0-9_-]+")
RUN_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
DEFAULT_MAX_BODY_MB = 256
#: The largest message header a node decodes (``protocol.messages.MAX_HEADER_BYTES``).
MAX_HEADER_MB = 64
DEFAULT_RESULTS_MODE = 0o600
#: Bits a results mode may have: the owner reads and writes, a group may read; others nothing.
ALLOWED_RESULTS_MODE = 0o640
#: The run parameters of the ``run`` section, named as everywhere (``riskprop.core.params``).
RUN_KEYS = ("iterations", "delta_a", "delta_b", "precision_bits", "periods", "noise")
#: Old names still read, with a deprecation warning: old -> new.
DEPRECATED_RUN_KEYS = {"delta": "delta_a"}
#: Keys ``load_player_config`` accepts in ``overrides`` (``out`` is an alias of ``output``).
OVERRIDE_KEYS = (
    "data",
    "output",
    "out",
    "key_share",
    "port",
    "host",
    "run_id",
    "iterations",
    "delta_a",
    "delta_b",
    "precision_bits",
    "noise",
    "workers",
    "dask",
)
T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Party:
    name: str
    url: str
    certificate: Path | None = None


@dataclass(frozen=True)
class NetworkConfig:
    path: Path
    ca: Path | None
    parties: tuple[Party, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parties)

    def party(self, name: str) -> Party:
        for p in self.parties:
            if p.name == name:
                return p
        raise ConfigError(f"{self.path}: parties: no party named {name!r}")


@dataclass(frozen=True)
class Timeouts:
    connect: float = 60.0
    request: float = 60.0
    idle: float = 600.0
    deadline: float = 86400.0


@dataclass(frozen=True)
class Limits:
    """The ``limits`` section besides ``max_body_mb``: what the node grants its clients
    (``riskprop.node.limits.InboundLimits`` says what each bounds)."""

    max_connections: int = 256
    max_connections_per_address: int = 16
    handshake_timeout: float = 10.0
    max_concurrent_bodies: int = 16
    max_concurrent_bodies_per_peer: int = 4
    #: the most accounts one bank of the network holds (None: not known)
    max_accounts: int | None = None
    max_header_bytes: int = MAX_HEADER_MB * 2**20


@dataclass(frozen=True)
class RunSettings:
    """The ``run`` section: the run's id and its parameters (``riskprop.core.params``)."""

    run_id: str
    parameters: RunParameters


#: Placeholders of the ``schedule`` templates besides ``{slot:<strftime format>}``.
SLOT_FIELDS = {"date": "%Y-%m-%d", "time": "%H%M", "datetime": "%Y-%m-%dT%H%M"}
DEFAULT_RUN_ID_TEMPLATE = "run-{datetime}"
DEFAULT_JOIN_WINDOW = 3600.0
DEFAULT_KEEP_RUNS = 30
#: The admin listener's port when ``admin.port`` is not given: the node's port plus this.
ADMIN_PORT_OFFSET = 100
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
#: The shortest admin token accepted (e.g. ``openssl rand -hex 32`` gives 64).
MIN_TOKEN_LENGTH = 16


def format_slot(template: str, slot: datetime) -> str:
    """``template`` with ``{date}``, ``{time}``, ``{datetime}`` and ``{slot:%...}`` filled in
    from ``slot`` (a UTC time); ValueError names a bad placeholder."""
    fields = {name: slot.strftime(fmt) for name, fmt in SLOT_FIELDS.items()}
    try:
        return template.format(slot=slot, **fields)
    except (KeyError, IndexError, ValueError, AttributeError, TypeError) as exc:
        allowed = ", ".join("{" + n + "}" for n in (*SLOT_FIELDS, "slot:%Y..."))
        raise ValueError(f"bad placeholder in {template!r} ({exc}); allowed: {allowed}") from None


@dataclass(frozen=True)
class ScheduleSettings:
    """The ``schedule`` section: when a service node runs, and what each run is called and
    reads. A slot is a time the cron expression fires (UTC); every bank derives the same run
    id from it, so the banks agree on a run without talking about it."""

    #: a standard 5-field cron expression, read in UTC
    cron: str
    #: the run id of a slot (the period naming rule), e.g. ``daily-{date}``
    run_id: str = DEFAULT_RUN_ID_TEMPLATE
    #: the data directory of a slot (a template, absolute); None: the player's ``data``
    data: str | None = None
    #: seconds after its slot during which a slot's run is open: nodes wait this long for
    #: their peers, and a node that starts late still joins
    join_window: float = DEFAULT_JOIN_WINDOW

    def run_id_for(self, slot: datetime) -> str:
        return format_slot(self.run_id, slot)

    def data_for(self, slot: datetime, default: Path) -> Path:
        return default if self.data is None else Path(format_slot(self.data, slot))


#: The brokers a streaming node consumes from (``riskprop.stream``).
STREAM_BROKERS = ("redis", "kafka")
#: Seconds a period stays open after its end for records still in flight, when not given.
DEFAULT_CLOSE_AFTER = 900.0
#: Records the consumer takes from the broker at a time, when not given.
DEFAULT_STREAM_BATCH = 1000
_DURATION = re.compile(r"([0-9]+)([smhd]?)")
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class StreamSettings:
    """The ``stream`` section: the node consumes its bank's raw transactions from a broker
    (``riskprop.stream``), alerts on them as they arrive, and each run propagates the period
    that closed before it. Periods are ``[origin + p*length, origin + (p+1)*length)`` in UTC
    seconds; period p is closed ``close_after`` seconds after its end, by the first run that
    starts from then on."""

    broker: str
    #: ``redis://host:port/db`` for Redis; ``host:port[,host:port...]`` for Kafka
    address: str
    #: the Redis stream or Kafka topic the bank's payment system writes its transactions to
    topic: str
    group: str
    consumer: str
    dead_letters: str
    alerts: str
    #: the node's durable store of streamed transactions (SQLite)
    store: Path
    #: the node's alert log (JSON lines)
    alert_log: Path
    batch: int = DEFAULT_STREAM_BATCH
    period_length: int = 86400
    origin: int = 0
    close_after: float = DEFAULT_CLOSE_AFTER
    #: the rules file (None: the shipped rules)
    rules: Path | None = None
    currency: str = "USD"
    #: seconds after which another consumer's unacknowledged records are taken over (Redis)
    claim_idle: float = 60.0
    #: the bank's known accounts (a CSV with an ``id`` column); a record whose own account is
    #: not among them is dead-lettered. None: any account of the bank is taken
    accounts: Path | None = None
    #: Kafka: the topic's partitions this node assigns itself (None: join the group and take
    #: what the group's rebalance gives)
    partitions: tuple[int, ...] | None = (0,)
    #: Kafka: further client settings (librdkafka's names: TLS, SASL...), for every client
    kafka_settings: tuple[tuple[str, str], ...] = ()
    #: the lowest level whose alerts are published (a level of the rules; None: every alert)
    alert_level: str | None = None

    def period_to_close(self, at: float) -> int:
        """The last period whose end lies ``close_after`` or more before ``at`` (UTC s)."""
        return math.floor((at - self.close_after - self.origin) / self.period_length) - 1

    def period_start(self, period: int) -> int:
        return self.origin + period * self.period_length

    def period_of(self, time: float) -> int:
        """The period holding ``time`` (UTC s)."""
        return math.floor((time - self.origin) / self.period_length)


@dataclass(frozen=True)
class AdminSettings:
    """The ``admin`` section: the operator's listener (health, metrics, status, triggers).
    Plain HTTP; on an address other than loopback every request but ``/healthz`` needs the
    bearer token in ``token_file``."""

    host: str
    port: int
    token_file: Path | None = None
    enabled: bool = True
    #: the file has an ``admin`` section (a one-shot run opens the listener only then)
    configured: bool = False

    @property
    def loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS

    def read_token(self) -> str | None:
        """The bearer token (owner-only file, 16 characters or more), or None without a file."""
        if self.token_file is None:
            return None
        check_private(self.token_file, "admin token file")
        try:
            token = self.token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{self.token_file}: cannot read the admin token ({exc})") from None
        if len(token) < MIN_TOKEN_LENGTH:
            raise ConfigError(
                f"{self.token_file}: the admin token must have {MIN_TOKEN_LENGTH} characters or "
                f"more (it has {len(token)})"
            )
        return token

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        host = "::1" if host == "::" else host
        host = f"[{host}]" if ":" in host else host  # an IPv6 address
        return f"http://{host}:{self.port}"


@dataclass(frozen=True)
class ComputeSettings:
    """Where a node does the arithmetic of its runs (docs/design-compute.md): ``workers``
    processes on its machine (None: as many as the cores available to it; 1: in the node
    process itself), or the Dask cluster whose scheduler is at ``dask``
    (``tcp://host:8786``, ``tls://...``). Never both. ``share_in_workers``: the operator lets
    the node's own worker processes (never a cluster's) compute partial decryptions, which
    sends them the key share over a pipe."""

    workers: int | None = None
    dask: str | None = None
    share_in_workers: bool = False


@dataclass(frozen=True)
class PlayerConfig:
    path: Path
    player: str
    network: NetworkConfig
    data: Path
    key_share: Path
    output: Path
    listen_host: str
    listen_port: int
    tls_certificate: Path | None
    tls_key: Path | None
    run: RunSettings
    timeouts: Timeouts = field(default_factory=Timeouts)
    max_body_bytes: int = DEFAULT_MAX_BODY_MB * 2**20
    limits: Limits = field(default_factory=Limits)
    insecure: bool = False
    #: mode of risk_scores.csv and run-report.json (0600; 0640 for a group that reads them)
    results_mode: int = DEFAULT_RESULTS_MODE
    #: read the noise comb in constant time (a local hardening against co-located observers)
    constant_time_noise: bool = False
    #: when the service runs (None: only when triggered)
    schedule: ScheduleSettings | None = None
    #: the operator's listener
    admin: AdminSettings | None = None
    #: run folders the service keeps under ``OUT/runs`` (the latest success is always kept)
    keep_runs: int = DEFAULT_KEEP_RUNS
    #: the transaction stream the node consumes (None: the run reads its data directory)
    stream: StreamSettings | None = None
    compute: ComputeSettings = field(default_factory=ComputeSettings)

    def for_run(
        self, run_id: str, data: Path | None = None, output: Path | None = None
    ) -> PlayerConfig:
        """This configuration for one run of the service: its id, data and output folder."""
        return replace(
            self,
            run=RunSettings(run_id, self.run.parameters),
            data=self.data if data is None else data,
            output=self.output if output is None else output,
        )


# ------------------------------------------------------------------------- reading


class _Section:
    """A mapping from a YAML file with typed accessors whose errors name file and key."""

    def __init__(self, file: Path, data: Any, prefix: str = "") -> None:
        self.file, self.prefix = file, prefix
        if not isinstance(data, dict):
            where = prefix.rstrip(".") or "top level"
            raise ConfigError(f"{file}: {where}: expected a mapping, got {kind(data)}")
        self.data: dict[Any, Any] = data
        #: keys whose value came from an override, not from the file
        self.overridden: set[str] = set()
        #: key -> the deprecated name the file gave it under (errors name what was written)
        self.spelled: dict[str, str] = {}

    def error(self, key: str, problem: str) -> ConfigError:
        source = " (override)" if key in self.overridden else ""
        written = self.spelled.get(key, key)
        return ConfigError(f"{self.file}: {self.prefix}{written}{source}: {problem}")

    def rename(self, old: str, new: str) -> None:
        """Read the deprecated key ``old`` as ``new``, with a warning."""
        if not self.given(old):
            return
        if self.given(new):
            raise self.error(old, f"give {new} only ({old} is its old name)")
        log.warning("%s: %s%s is deprecated; call it %s", self.file, self.prefix, old, new)
        self.data[new] = self.data.pop(old)
        self.spelled[new] = old

    def only(self, *allowed: str) -> None:
        for key in self.data:
            if key not in allowed:
                raise self.error(str(key), f"unknown key (allowed: {', '.join(allowed)})")

    def override(self, key: str, value: object) -> None:
        self.data[key] = value
        self.overridden.add(key)

    def given(self, key: str) -> bool:
        return self.data.get(key) is not None

    def get(self, key: str, convert: Callable[[Any], T], default: T | None = None) -> T:
        """``convert(value)``; ``default`` when absent, or an error if there is none."""
        if not self.given(key):
            if default is None:
                raise self.error(key, "missing required key")
            return default
        try:
            return convert(self.data[key])
        except (TypeError, ValueError) as exc:
            raise self.error(key, str(exc)) from None

    def section(self, key: str, *, required: bool = True) -> _Section:
        if key not in self.data and not required:
            return _Section(self.file, {}, f"{self.prefix}{key}.")
        if key not in self.data:
            raise self.error(key, "missing required key")
        return _Section(self.file, self.data[key], f"{self.prefix}{key}.")

    def path(self, key: str, *, must_exist: Literal["file", "dir"] | None = None) -> Path:
        """An absolute path; relative ones resolve against the file's directory."""
        value = Path(self.get(key, _string)).expanduser()
        path = (self.file.parent / value).resolve()
        if must_exist == "file" and not path.is_file():
            raise self.error(key, f"file not found: {path}")
        if must_exist == "dir" and not path.is_dir():
            raise self.error(key, f"directory not found: {path}")
        return path


def _string(value: Any) -> str:
    return expect_str(value, non_empty=True)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {type(value).__name__} {value!r}")
    return value


def _finite(value: Any) -> float:
    number = expect_number(value)
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {number}")
    return number


def _positive(value: Any) -> float:
    number = _finite(value)
    if number <= 0:
        raise ValueError(f"must be > 0 (got {number:g})")
    return number


def _results_mode(value: Any) -> int:
    """A file mode as octal digits (``"0640"``; YAML may already have read ``0640`` as 416)."""
    if isinstance(value, str):
        try:
            mode = int(value, 8)
        except ValueError:
            raise ValueError(f'expected octal digits such as "0640", got {value!r}') from None
    else:
        mode = expect_int(value)
    if mode & ~ALLOWED_RESULTS_MODE or not mode & 0o600 == 0o600:
        raise ValueError(
            f"must give the owner read and write and others nothing, at most 0640 (got {mode:04o})"
        )
    return mode


def _periods(value: Any) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ValueError(f"a period count must be >= 1 (got {value})")
        return tuple(range(value))
    if not isinstance(value, list) or not value:
        raise TypeError(f"expected a non-empty list of periods or a count, got {kind(value)}")
    return tuple(expect_int(p) for p in value)  # RunParameters checks the values


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe loader that refuses a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _load_yaml(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"{path}: configuration file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc})") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: plain data only
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: not valid YAML{line}: {problem}") from None


def _check_url(section: _Section, key: str, insecure: bool) -> str:
    url = section.get(key, _string)
    parts = urlsplit(url)
    schemes = ("https", "http") if insecure else ("https",)
    if parts.scheme not in schemes:
        need = "http:// or https://" if insecure else "https:// (http:// only with --insecure)"
        raise section.error(key, f"URL {url!r} must start with {need}")
    try:
        port = parts.port
    except ValueError:
        raise section.error(key, f"URL {url!r}: port must lie in 1..65535") from None
    if not parts.hostname or port is None:
        raise section.error(key, f"URL {url!r} needs a host and a port")
    if not 1 <= port <= 65535:
        raise section.error(key, f"URL {url!r}: port must lie in 1..65535")
    if parts.username is not None or parts.query or parts.fragment:
        raise section.error(key, f"URL {url!r} must not carry a user, a query or a fragment")
    return url


def load_network(path: Path, *, insecure: bool = False) -> NetworkConfig:
    """Read and validate a network file (``ca`` and pinned certificates must exist)."""
    path = path.resolve()
    top = _Section(path, _load_yaml(path))
    top.only("ca", "parties")
    ca: Path | None = None
    if top.given("ca") or not insecure:
        ca = top.path("ca", must_exist=None if insecure else "file")
    raw = top.get("parties", lambda v: v)
    if not isinstance(raw, list):
        raise top.error("parties", f"expected a list of parties, got {kind(raw)}")
    if len(raw) < 2:
        raise top.error("parties", f"need at least two parties (got {len(raw)})")
    parties: list[Party] = []
    for index, item in enumerate(raw):
        entry = _Section(path, item, f"parties[{index}].")
        entry.only("name", "url", "certificate")
        name = entry.get("name", _string)
        if not NAME.fullmatch(name):
            raise entry.error("name", f"{name!r} is not a valid party name ([A-Za-z0-9_-]+)")
        if name in {p.name for p in parties}:
            raise entry.error("name", f"duplicate party {name!r}")
        url = _check_url(entry, "url", insecure)
        cert = entry.path("certificate", must_exist="file") if entry.given("certificate") else None
        parties.append(Party(name, url, cert))
    return NetworkConfig(path, ca, tuple(parties))


def _apply_overrides(
    top: _Section, overrides: Mapping[str, object] | None
) -> tuple[dict[str, object], set[str]]:
    """Overrides that were given (not None), checked; path ones written into ``top``."""
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    for key, value in given.items():
        if key not in OVERRIDE_KEYS:
            raise ConfigError(
                f"{top.file}: {key}: unknown override (allowed: {', '.join(OVERRIDE_KEYS)})"
            )
        if key in ("data", "output", "out", "key_share") and not isinstance(value, str | Path):
            raise ConfigError(f"{top.file}: {key} (override): expected a path, got {kind(value)}")
    if "out" in given:
        given["output"] = given.pop("out")
    for key in ("data", "output", "key_share"):
        if key in given:  # relative to the working directory, like any command-line path
            top.override(key, str(Path(str(given[key])).expanduser().resolve()))
    return given, {k for k in given if k in ("host", "port")}


def load_player_config(
    config_dir: Path,
    player: str,
    *,
    overrides: Mapping[str, object] | None = None,
    insecure: bool = False,
    for_keygen: bool = False,
) -> PlayerConfig:
    """Read ``<config_dir>/<player>.yaml`` and its network file; apply ``overrides``
    (``data``, ``output`` (alias ``out``), ``key_share``, ``host``, ``port``, ``run_id``,
    the run parameters, ``workers``; None means not given) before checking that files exist.
    ``for_keygen``: the key share is to be made and the data need not exist yet."""
    path = (config_dir / f"{player}.yaml").resolve()
    if not isinstance(player, str) or not NAME.fullmatch(player):
        raise ConfigError(f"{path}: player: {player!r} is not a valid party name ([A-Za-z0-9_-]+)")
    if not config_dir.is_dir():
        raise ConfigError(f"{config_dir}: configuration directory not found")
    top = _Section(path, _load_yaml(path))
    top.only(
        "player",
        "network",
        "data",
        "key_share",
        "output",
        "listen",
        "tls",
        "run",
        "timeouts",
        "limits",
        "results_mode",
        "constant_time_noise",
        "schedule",
        "retention",
        "admin",
        "stream",
        "compute",
    )
    named = top.get("player", _string)
    if named != player:
        raise top.error("player", f"file is for {named!r}, not {player!r}")
    given, listen_overrides = _apply_overrides(top, overrides)

    listen = top.section("listen", required=False)
    listen.only("host", "port")
    for key in listen_overrides:
        listen.override(key, given[key])
    host = listen.get("host", _string, "127.0.0.1")
    port = listen.get("port", expect_int)
    if not 1 <= port <= 65535:
        raise listen.error("port", f"must lie in 1..65535 (got {port})")

    tls = top.section("tls", required=not insecure)
    tls.only("certificate", "key")
    tls_cert: Path | None = None
    tls_key: Path | None = None
    if not insecure or tls.data:
        must_exist: Literal["file"] | None = None if insecure else "file"
        tls_cert = tls.path("certificate", must_exist=must_exist)
        tls_key = tls.path("key", must_exist=must_exist)

    schedule = _schedule(top) if top.given("schedule") else None
    output = top.path("output")
    stream = _stream(top, player, output) if top.given("stream") else None
    if stream is not None and schedule is not None and schedule.data is not None:
        raise top.error(
            "schedule.data", "not with a stream: a streaming node runs on the period it closes"
        )
    run = _run_settings(top.section("run"), given, run_id_required=schedule is None)
    timeouts = _timeouts(top.section("timeouts", required=False))
    limits = top.section("limits", required=False)
    inbound = _limits(limits)
    max_body_bytes = int(limits.get("max_body_mb", _positive, float(DEFAULT_MAX_BODY_MB)) * 2**20)
    if max_body_bytes < 1:
        raise limits.error("max_body_mb", "must allow at least one byte")

    network_path = path.parent / Path(top.get("network", _string, "network.yaml")).expanduser()
    network = load_network(network_path, insecure=insecure)
    if player not in network.names:
        raise ConfigError(f"{network.path}: parties: {player!r} is not listed")

    return PlayerConfig(
        path=path,
        player=player,
        network=network,
        # with a snapshot per slot (schedule.data), ``data`` is only the one-shot run's
        data=top.path(
            "data",
            must_exist=None if for_keygen or stream or (schedule and schedule.data) else "dir",
        ),
        key_share=top.path("key_share", must_exist=None if for_keygen else "file"),
        output=output,
        listen_host=host,
        listen_port=port,
        tls_certificate=tls_cert,
        tls_key=tls_key,
        run=run,
        timeouts=timeouts,
        max_body_bytes=max_body_bytes,
        limits=inbound,
        insecure=insecure,
        results_mode=top.get("results_mode", _results_mode, DEFAULT_RESULTS_MODE),
        constant_time_noise=top.get("constant_time_noise", _flag, False),
        schedule=schedule,
        admin=_admin(top.section("admin", required=False), port),
        keep_runs=_retention(top.section("retention", required=False)),
        stream=stream,
        compute=_compute(top.section("compute", required=False), given),
    )


def _schedule(top: _Section) -> ScheduleSettings:
    from cronsim import CronSim, CronSimError

    section = top.section("schedule")
    section.only("cron", "run_id", "data", "join_window")
    cron = section.get("cron", _string)
    if len(cron.split()) != 5:
        raise section.error("cron", f"{cron!r} is not a 5-field cron expression (m h dom mon dow)")
    try:
        CronSim(cron, datetime(2000, 1, 1))
    except CronSimError as exc:
        raise section.error("cron", f"{cron!r}: {str(exc).lower()}") from None
    template = section.get("run_id", _string, DEFAULT_RUN_ID_TEMPLATE)
    probe = datetime(2000, 1, 1)
    try:
        run_id = format_slot(template, probe)
    except ValueError as exc:
        raise section.error("run_id", str(exc)) from None
    if not RUN_ID.fullmatch(run_id):
        raise section.error(
            "run_id", f"{template!r} gives {run_id!r}, which must match [A-Za-z0-9._-]{{1,64}}"
        )
    data: str | None = None
    if section.given("data"):
        raw = section.get("data", _string)
        try:
            format_slot(raw, probe)
        except ValueError as exc:
            raise section.error("data", str(exc)) from None
        data = os.path.normpath(section.file.parent / Path(raw).expanduser())
    return ScheduleSettings(
        cron=cron,
        run_id=template,
        data=data,
        join_window=section.get("join_window", _positive, DEFAULT_JOIN_WINDOW),
    )


def _duration(value: Any, *, zero: bool = False) -> int:
    """Seconds from a whole number or ``<n>s``, ``<n>m``, ``<n>h``, ``<n>d`` (> 0, or >= 0
    with ``zero``)."""
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    else:
        match = _DURATION.fullmatch(expect_str(value, non_empty=True))
        if match is None:
            raise ValueError(f"expected seconds or <n>s, <n>m, <n>h, <n>d, got {value!r}")
        seconds = int(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if seconds < 0 or (seconds == 0 and not zero):
        raise ValueError(f"must be {'>= 0' if zero else '> 0'} (got {value!r})")
    return seconds


def _grace(value: Any) -> int:
    return _duration(value, zero=True)


def _utc_time(value: Any) -> int:
    """UTC seconds of an ISO 8601 time with its zone, or of a date's UTC midnight (YAML may
    already have read either)."""
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day, tzinfo=UTC)
    stamp = value if isinstance(value, datetime) else None
    if stamp is None:
        try:
            stamp = datetime.fromisoformat(expect_str(value, non_empty=True))
        except ValueError:
            raise ValueError(
                f"expected an ISO 8601 time such as 2026-01-01T00:00:00Z, got {value!r}"
            ) from None
    if stamp.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone (add Z or +HH:MM)")
    return int(stamp.timestamp())


def _stream(top: _Section, player: str, output: Path) -> StreamSettings:
    section = top.section("stream")
    section.only(
        "broker",
        "address",
        "topic",
        "group",
        "consumer",
        "dead_letters",
        "alerts",
        "store",
        "alert_log",
        "batch",
        "period_length",
        "origin",
        "close_after",
        "rules",
        "currency",
        "claim_idle",
        "accounts",
        "kafka",
        "alert_level",
    )
    broker = section.get("broker", _string)
    if broker not in STREAM_BROKERS:
        raise section.error("broker", f"{broker!r} is not one of {', '.join(STREAM_BROKERS)}")
    address = section.get("address", _string)
    if broker == "redis" and urlsplit(address).scheme not in ("redis", "rediss", "unix"):
        raise section.error("address", f"{address!r} is not a redis://, rediss:// or unix:// URL")
    topic = section.get("topic", _string)
    names = {}
    for key, default in (
        ("group", f"riskprop-{player}"),
        ("consumer", player),
        ("dead_letters", f"{topic}.dead"),
        ("alerts", f"{topic}.alerts"),
    ):
        names[key] = section.get(key, _string, default)
    if len({topic, names["dead_letters"], names["alerts"]}) != 3:
        raise section.error("alerts", "the topic, dead_letters and alerts must be three streams")
    currency = section.get("currency", _string, "USD").upper()
    if not re.fullmatch(r"[A-Z]{3}", currency):
        raise section.error("currency", f"{currency!r} is not an ISO 4217 code")
    close_after = float(section.get("close_after", _grace, int(DEFAULT_CLOSE_AFTER)))
    return StreamSettings(
        broker=broker,
        address=address,
        topic=topic,
        group=names["group"],
        consumer=names["consumer"],
        dead_letters=names["dead_letters"],
        alerts=names["alerts"],
        store=section.path("store") if section.given("store") else output / "stream" / "store.db",
        alert_log=section.path("alert_log")
        if section.given("alert_log")
        else output / "stream" / "alerts.jsonl",
        batch=section.get("batch", _count, DEFAULT_STREAM_BATCH),
        period_length=section.get("period_length", _duration, 86400),
        origin=section.get("origin", _utc_time, 0),
        close_after=close_after,
        rules=section.path("rules", must_exist="file") if section.given("rules") else None,
        currency=currency,
        claim_idle=section.get("claim_idle", _positive, 60.0),
        accounts=section.path("accounts", must_exist="file") if section.given("accounts") else None,
        **_kafka(section.section("kafka", required=False), broker),
        alert_level=section.get("alert_level", _string) if section.given("alert_level") else None,
    )


def _kafka(section: _Section, broker: str) -> dict[str, Any]:
    """``stream.kafka``: ``partitions`` (a list of partition numbers, or ``group``) and
    ``settings`` (librdkafka client settings, scalar values)."""
    if section.data and broker != "kafka":
        raise ConfigError(f"{section.file}: stream.kafka: only for stream.broker kafka")
    section.only("partitions", "settings")
    partitions: tuple[int, ...] | None = (0,)
    if section.given("partitions"):
        given = section.data["partitions"]
        if given == "group":
            partitions = None
        elif (
            isinstance(given, list)
            and given
            and all(isinstance(p, int) and not isinstance(p, bool) and p >= 0 for p in given)
        ):
            partitions = tuple(sorted(set(given)))
        else:
            raise section.error(
                "partitions", f"expected a list of partition numbers or 'group', got {given!r}"
            )
    settings = section.section("settings", required=False)
    pairs = []
    for key, value in settings.data.items():
        if not isinstance(key, str) or isinstance(value, dict | list) or value is None:
            raise settings.error(str(key), "expected a librdkafka setting with a scalar value")
        if key in ("bootstrap.servers", "group.id"):
            raise settings.error(key, "given by stream.address and stream.group")
        pairs.append((key, str(value).lower() if isinstance(value, bool) else str(value)))
    return {"partitions": partitions, "kafka_settings": tuple(sorted(pairs))}


def _admin(section: _Section, listen_port: int) -> AdminSettings:
    section.only("enabled", "host", "port", "token_file")
    host = section.get("host", _string, "127.0.0.1")
    port = section.get("port", expect_int, min(65535, listen_port + ADMIN_PORT_OFFSET))
    if not 1 <= port <= 65535:
        raise section.error("port", f"must lie in 1..65535 (got {port})")
    token_file = section.path("token_file") if section.given("token_file") else None
    enabled = section.get("enabled", _flag, True)
    settings = AdminSettings(host, port, token_file, enabled, configured=bool(section.data))
    if enabled and not settings.loopback and token_file is None:
        raise section.error(
            "token_file", f"required when the admin listener is not on loopback (host {host})"
        )
    if token_file is not None and enabled and not token_file.is_file():
        raise section.error("token_file", f"file not found: {token_file}")
    return settings


def _retention(section: _Section) -> int:
    section.only("keep_runs")
    return section.get("keep_runs", _count, DEFAULT_KEEP_RUNS)


def _timeouts(section: _Section) -> Timeouts:
    section.only("connect", "request", "idle", "deadline")
    defaults = Timeouts()
    return Timeouts(
        connect=section.get("connect", _positive, defaults.connect),
        request=section.get("request", _positive, defaults.request),
        idle=section.get("idle", _positive, defaults.idle),
        deadline=section.get("deadline", _positive, defaults.deadline),
    )


def _count(value: Any) -> int:
    number = expect_int(value)
    if number < 1:
        raise ValueError(f"must be >= 1 (got {number})")
    return number


def _compute(section: _Section, given: Mapping[str, object]) -> ComputeSettings:
    """``workers`` or ``dask``. An override of either replaces the file's choice (``--dask``
    on the command line wins over ``workers`` in the file, and the other way round); both in
    the file, or both overridden, is an error."""
    section.only("workers", "dask", "share_in_workers")
    chosen = [key for key in ("workers", "dask") if key in given]
    for key in chosen:
        if len(chosen) == 1:
            section.data.pop("dask" if key == "workers" else "workers", None)
        section.override(key, given[key])
    if section.given("workers") and section.given("dask"):
        raise section.error("dask", "give workers or dask, not both")
    workers = section.get("workers", _count) if section.given("workers") else None
    dask = section.get("dask", _scheduler_address) if section.given("dask") else None
    shared = section.get("share_in_workers", _flag) if section.given("share_in_workers") else False
    if shared and dask is not None:
        raise section.error(
            "share_in_workers",
            "the key share goes only to the node's own worker processes, never to a Dask cluster",
        )
    return ComputeSettings(workers, dask, shared)


def _scheduler_address(value: Any) -> str:
    """A Dask scheduler's address: ``tcp://host:port`` or ``tls://host:port``."""
    address = expect_str(value)
    parts = urlsplit(address)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("tcp", "tls") or not parts.hostname or port is None or parts.path:
        raise ValueError(f"{address!r} is not a Dask scheduler address (tcp://host:8786)")
    return address


def _limits(section: _Section) -> Limits:
    section.only(
        "max_body_mb",
        "max_header_mb",
        "max_accounts",
        "max_connections",
        "max_connections_per_address",
        "handshake_timeout",
        "max_concurrent_bodies",
        "max_concurrent_bodies_per_peer",
    )
    defaults = Limits()
    header_mb = section.get("max_header_mb", _positive, float(MAX_HEADER_MB))
    if header_mb > MAX_HEADER_MB:
        raise section.error("max_header_mb", f"must be at most {MAX_HEADER_MB} (got {header_mb:g})")
    return Limits(
        max_connections=section.get("max_connections", _count, defaults.max_connections),
        max_connections_per_address=section.get(
            "max_connections_per_address", _count, defaults.max_connections_per_address
        ),
        handshake_timeout=section.get("handshake_timeout", _positive, defaults.handshake_timeout),
        max_concurrent_bodies=section.get(
            "max_concurrent_bodies", _count, defaults.max_concurrent_bodies
        ),
        max_concurrent_bodies_per_peer=section.get(
            "max_concurrent_bodies_per_peer", _count, defaults.max_concurrent_bodies_per_peer
        ),
        max_accounts=section.get("max_accounts", _count) if section.given("max_accounts") else None,
        max_header_bytes=max(1, int(header_mb * 2**20)),
    )


def _run_settings(
    run: _Section, given: Mapping[str, object], *, run_id_required: bool = True
) -> RunSettings:
    run.only("run_id", *RUN_KEYS, *DEPRECATED_RUN_KEYS)
    for old, new in DEPRECATED_RUN_KEYS.items():
        run.rename(old, new)
    for key in ("run_id", *RUN_KEYS):
        if key in given:
            run.override(key, given[key])
            run.spelled.pop(key, None)
    run_id = run.get("run_id", _string, None if run_id_required else "")
    if run_id and not RUN_ID.fullmatch(run_id):
        raise run.error("run_id", f"{run_id!r} must match [A-Za-z0-9._-]{{1,64}}")
    defaults = RunParameters(iterations=0)
    values = {
        "iterations": run.get("iterations", expect_int),
        "delta_a": run.get("delta_a", _finite, defaults.delta_a),
        "delta_b": run.get("delta_b", _finite, defaults.delta_b),
        "precision_bits": run.get("precision_bits", expect_int, defaults.precision_bits),
        "periods": run.get("periods", _periods, defaults.periods),
        "noise": run.get("noise", _string, defaults.noise),
    }
    try:
        return RunSettings(run_id, RunParameters(**values))  # type: ignore[arg-type]
    except ParameterError as exc:
        raise run.error(exc.name, exc.problem) from None
