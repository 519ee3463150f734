"""Node configuration: YAML files to frozen, validated dataclasses.

``<config_dir>/<player>.yaml`` is a bank's own file; it names the shared network file (default
``network.yaml`` beside it). Relative paths resolve against the directory of the file that
holds them. Every problem is one ``ConfigError`` line: ``<file>: <dotted.key>: <problem>``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import yaml

from riskprop.core.fixedpoint import DEFAULT_FRACTION_BITS, MAX_FRACTION_BITS
from riskprop.errors import ConfigError
from riskprop.jsontypes import expect_int, expect_number, expect_str, kind

NAME = re.compile(r"[A-Za-z0-9_-]+")
RUN_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
T = TypeVar("T")


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
class RunSettings:
    run_id: str
    iterations: int
    delta: float = 0.5
    delta_b: float = 0.0
    periods: tuple[int, ...] = (0,)
    precision_bits: int = DEFAULT_FRACTION_BITS


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
    max_body_bytes: int = 256 * 2**20
    insecure: bool = False


# ------------------------------------------------------------------------- reading


class _Section:
    """A mapping from a YAML file with typed, error-naming accessors."""

    def __init__(self, file: Path, data: Any, prefix: str = "") -> None:
        self.file, self.prefix = file, prefix
        if not isinstance(data, dict):
            where = prefix.rstrip(".") or "top level"
            raise ConfigError(f"{file}: {where}: expected a mapping, got {kind(data)}")
        self.data: dict[str, Any] = data

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.file}: {self.prefix}{key}: {problem}")

    def only(self, *allowed: str) -> None:
        for key in self.data:
            if key not in allowed:
                raise self.error(str(key), f"unknown key (allowed: {', '.join(allowed)})")

    def get(self, key: str, kind: Callable[[Any], T], default: T | None = None) -> T:
        if key not in self.data or self.data[key] is None:
            if default is None:
                raise self.error(key, "missing")
            return default
        try:
            return kind(self.data[key])
        except (TypeError, ValueError) as exc:
            raise self.error(key, str(exc)) from None

    def section(self, key: str, required: bool = True) -> _Section:
        if key not in self.data and not required:
            return _Section(self.file, {}, f"{self.prefix}{key}.")
        if key not in self.data:
            raise self.error(key, "missing")
        return _Section(self.file, self.data[key], f"{self.prefix}{key}.")

    def path(self, key: str, *, must_exist: str | None = None) -> Path:
        value = self.get(key, _string)
        path = (self.file.parent / value).resolve()
        if must_exist == "file" and not path.is_file():
            raise self.error(key, f"file not found: {path}")
        if must_exist == "dir" and not path.is_dir():
            raise self.error(key, f"directory not found: {path}")
        return path


def _string(value: Any) -> str:
    return expect_str(value, non_empty=True)


def _positive(value: Any) -> float:
    number = expect_number(value)
    if number <= 0:
        raise ValueError(f"must be > 0 (got {number:g})")
    return number


def _periods(value: Any) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ValueError(f"a period count must be >= 1 (got {value})")
        return tuple(range(value))
    if not isinstance(value, list) or not value:
        raise TypeError(f"expected a non-empty list of periods or a count, got {kind(value)}")
    periods = [expect_int(p) for p in value]
    if any(p < 0 for p in periods) or len(set(periods)) != len(periods):
        raise ValueError("periods must be distinct integers >= 0")
    return tuple(sorted(periods))


def _load_yaml(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"{path}: configuration file not found")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: not valid YAML{line}: {problem}") from None


def _check_url(section: _Section, key: str, url: str, insecure: bool) -> str:
    parts = urlsplit(url)
    schemes = ("https", "http") if insecure else ("https",)
    if parts.scheme not in schemes:
        need = "https:// (or http:// with --insecure)" if not insecure else "http(s)://"
        raise section.error(key, f"URL {url!r} must start with {need}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        raise section.error(key, f"URL {url!r} needs a host and a port")
    return url


def load_network(path: Path, *, insecure: bool = False) -> NetworkConfig:
    """Read and validate a network file."""
    top = _Section(path, _load_yaml(path))
    top.only("ca", "parties")
    ca = None
    if "ca" in top.data or not insecure:
        ca = top.path("ca", must_exist="file")
    raw = top.data.get("parties")
    if not isinstance(raw, list) or len(raw) < 2:
        raise top.error("parties", "expected a list of at least two parties")
    parties: list[Party] = []
    for index, item in enumerate(raw):
        entry = _Section(path, item, f"parties[{index}].")
        entry.only("name", "url", "certificate")
        name = entry.get("name", _string)
        if not NAME.fullmatch(name):
            raise entry.error("name", f"{name!r} is not a valid party name ([A-Za-z0-9_-]+)")
        if name in {p.name for p in parties}:
            raise entry.error("name", f"duplicate party {name!r}")
        url = _check_url(entry, "url", entry.get("url", _string), insecure)
        cert = entry.path("certificate", must_exist="file") if "certificate" in entry.data else None
        parties.append(Party(name, url, cert))
    return NetworkConfig(path, ca, tuple(parties))


def load_player_config(
    config_dir: Path,
    player: str,
    *,
    overrides: Mapping[str, object] | None = None,
    insecure: bool = False,
) -> PlayerConfig:
    """Read ``<config_dir>/<player>.yaml`` and its network file; apply ``overrides``
    (``data``, ``output``/``out``, ``key_share``, ``host``, ``port``, ``run_id``,
    ``iterations``; None means not given) before checking that files exist."""
    path = (config_dir / f"{player}.yaml").resolve()
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
    )
    named = top.get("player", _string)
    if named != player:
        raise top.error("player", f"file is for {named!r}, not {player!r}")
    network_path = (path.parent / top.get("network", _string, "network.yaml")).resolve()
    network = load_network(network_path, insecure=insecure)
    if player not in network.names:
        raise ConfigError(f"{network_path}: parties: {player!r} is not listed")

    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    if "out" in given:
        given["output"] = given.pop("out")
    for key in ("data", "output", "key_share"):
        if key in given:
            top.data[key] = str(Path(str(given[key])).resolve())

    listen = top.section("listen")
    listen.only("host", "port")
    host = str(given.get("host") or listen.get("host", _string, "127.0.0.1"))
    port = expect_int(given["port"]) if "port" in given else listen.get("port", expect_int)
    if not 1 <= port <= 65535:
        raise listen.error("port", f"must lie in 1..65535 (got {port})")

    tls = top.section("tls", required=not insecure)
    tls.only("certificate", "key")
    tls_cert: Path | None = None
    tls_key: Path | None = None
    if not insecure or tls.data:
        tls_cert = tls.path("certificate", must_exist="file")
        tls_key = tls.path("key", must_exist="file")

    run = _run_settings(top.section("run"), given)
    timeouts_section = top.section("timeouts", required=False)
    timeouts_section.only("connect", "request", "idle", "deadline")
    defaults = Timeouts()
    timeouts = Timeouts(
        **{
            name: timeouts_section.get(name, _positive, getattr(defaults, name))
            for name in ("connect", "request", "idle", "deadline")
        }
    )
    limits = top.section("limits", required=False)
    limits.only("max_body_mb")
    max_mb = limits.get("max_body_mb", _positive, 256.0)

    return PlayerConfig(
        path=path,
        player=player,
        network=network,
        data=top.path("data", must_exist="dir"),
        key_share=top.path("key_share", must_exist="file"),
        output=top.path("output"),
        listen_host=host,
        listen_port=port,
        tls_certificate=tls_cert,
        tls_key=tls_key,
        run=run,
        timeouts=timeouts,
        max_body_bytes=int(max_mb * 2**20),
        insecure=insecure,
    )


def _run_settings(run: _Section, given: Mapping[str, object]) -> RunSettings:
    run.only("run_id", "iterations", "delta", "delta_b", "periods", "precision_bits")
    if "run_id" in given:
        run.data["run_id"] = given["run_id"]
    if "iterations" in given:
        run.data["iterations"] = given["iterations"]
    settings = RunSettings(
        run_id=run.get("run_id", _string),
        iterations=run.get("iterations", expect_int),
        delta=run.get("delta", expect_number, 0.5),
        delta_b=run.get("delta_b", expect_number, 0.0),
        periods=run.get("periods", _periods, (0,)),
        precision_bits=run.get("precision_bits", expect_int, DEFAULT_FRACTION_BITS),
    )
    if not RUN_ID.fullmatch(settings.run_id):
        raise run.error("run_id", f"{settings.run_id!r} must match [A-Za-z0-9._-]{{1,64}}")
    if settings.iterations < 0:
        raise run.error("iterations", f"must be >= 0 (got {settings.iterations})")
    if not 0.0 < settings.delta < 1.0:
        raise run.error("delta", f"must lie strictly between 0 and 1 (got {settings.delta:g})")
    if settings.delta_b < 0.0:
        raise run.error("delta_b", f"must be >= 0 (got {settings.delta_b:g})")
    if not 8 <= settings.precision_bits <= MAX_FRACTION_BITS:
        raise run.error("precision_bits", f"must lie in 8..{MAX_FRACTION_BITS}")
    return settings
