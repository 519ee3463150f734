"""The demo: sample data, cached keys and certificates, one node process per bank, a report.

Every bank runs ``riskprop run`` in its own process, listening on a loopback port with mutual
TLS, exactly as an operator would run it. The key is generated without a dealer (one
``riskprop keygen --player NAME`` process per bank) once per party set and key length, and
cached (with a local CA and node certificates) under the user's cache directory, so a second
demo starts at once. What the nodes leave (logs, configuration, run reports) is kept under the
output directory::

    OUT/<bank>/risk_scores.csv    the bank's results (written once every node succeeded)
    OUT/<bank>/run-report.json    its times and bytes per phase
    OUT/logs/<bank>.log           its node's log
    OUT/configs/                  the configuration the nodes ran with

With ``raw`` (``riskprop demo --raw``, ``riskprop.localnet.rawdemo``) the data set is made from
generated raw transactions scored by the default rules, under OUT/raw and OUT/data.

A ``DemoWatch`` (``riskprop demo --web``, ``riskprop.localnet.web``) is told what happens from
the thread that runs the demo: the stage, each bank's key generation, the nodes' admin
listeners (with a watcher every node serves ``/status`` on a loopback port of its own), each
node's exit and the results.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from subprocess import Popen
from typing import TYPE_CHECKING, Protocol

import numpy as np
import yaml

from riskprop.core.data import load_dataset
from riskprop.core.graph import build_global
from riskprop.core.params import RunParameters
from riskprop.core.plaintext import propagate
from riskprop.core.threshold import default_threshold
from riskprop.core.types import FloatArray
from riskprop.errors import ConfigError
from riskprop.files.atomic import atomic_write_text
from riskprop.files.keys import PUBLIC_FILE, dealer_keygen, load_public, share_file
from riskprop.files.results import (
    RESULTS_FILE,
    NodeReport,
    read_report,
    read_scores,
    write_report,
    write_scores,
)
from riskprop.localnet.certs import cache_dir, demo_certificates
from riskprop.localnet.harness import (
    free_ports,
    party_names,
    start_nodes,
    wait_for_nodes,
    write_configs,
)

if TYPE_CHECKING:
    from riskprop.localnet.rawdemo import RawScoring, RawSpec

log = logging.getLogger(__name__)

SAMPLE_ACCOUNTS = 300
SAMPLE_EDGES = 1000

KEYGEN_MODES = ("distributed", "dealer")
#: Accounts per bank whose secure and plaintext scores a report lists side by side.
TOP_ACCOUNTS = 5
#: Seconds between two looks at the node processes while a watcher follows them.
FOLLOW_INTERVAL = 0.2


class DemoWatch(Protocol):
    """What a demo tells its watcher. Stages in order: ``preparing``, ``keygen``,
    ``running``, ``comparing``; then ``finished`` with the report."""

    def stage(self, stage: str, detail: str = "") -> None: ...

    def begin(self, banks: Sequence[str], *, key_bits: int, iterations: int) -> None:
        """The banks are known (the data set was read)."""
        ...

    def keygen(self, bank: str, state: str, seconds: float | None = None, detail: str = "") -> None:
        """A bank's key generation is ``running``, ``done``, ``failed`` or ``cached``."""
        ...

    def nodes(self, admin: Mapping[str, str], run_id: str) -> None:
        """The node processes started; each serves ``/status`` at ``admin[bank]``."""
        ...

    def node_exited(self, bank: str, code: int, seconds: float) -> None: ...

    def finished(self, report: DemoReport) -> None: ...


class Unwatched:
    """The watcher of a demo nobody watches."""

    def stage(self, stage: str, detail: str = "") -> None:
        pass

    def begin(self, banks: Sequence[str], *, key_bits: int, iterations: int) -> None:
        pass

    def keygen(self, bank: str, state: str, seconds: float | None = None, detail: str = "") -> None:
        pass

    def nodes(self, admin: Mapping[str, str], run_id: str) -> None:
        pass

    def node_exited(self, bank: str, code: int, seconds: float) -> None:
        pass

    def finished(self, report: DemoReport) -> None:
        pass


@dataclass(frozen=True)
class DemoKeys:
    """Where the demo's key is, how it was made, and the seconds it took if made just now."""

    directory: Path
    mode: str
    seconds: float | None


def demo_keys(
    parties: Sequence[str],
    bits: int,
    mode: str,
    *,
    fresh: bool = False,
    watch: DemoWatch | None = None,
) -> DemoKeys:
    """A key for these parties and size: cached per mode, made on first use (or when
    ``fresh``). ``distributed`` runs ``riskprop keygen --player NAME`` for every party as its own
    process over mutual TLS on loopback, exactly as banks would; ``dealer`` deals in-process."""
    if mode not in KEYGEN_MODES:
        raise ConfigError(f"--keygen must be one of {', '.join(KEYGEN_MODES)} (got {mode!r})")
    watch = watch or Unwatched()
    suffix = "" if mode == "dealer" else "-distributed"
    directory = cache_dir() / "keys" / f"{'-'.join(parties)}-{bits}{suffix}"
    if not fresh and _cached_key_usable(directory, parties):
        for party in parties:
            watch.keygen(party, "cached")
        return DemoKeys(directory, mode, None)
    started = time.perf_counter()
    if mode == "dealer":
        dealt = "dealt by a trusted dealer (tests and demos only)"
        for party in parties:
            watch.keygen(party, "running", 0.0, dealt)
        dealer_keygen(directory, parties, default_threshold(len(parties)), bits, force=True)
        for party in parties:
            watch.keygen(party, "done", time.perf_counter() - started, dealt)
    else:
        distributed_keygen(directory, parties, bits, watch=watch)
    return DemoKeys(directory, mode, time.perf_counter() - started)


def _cached_key_usable(directory: Path, parties: Sequence[str]) -> bool:
    """Whether the cache holds a complete key this version reads (a key of an older format,
    without verification keys, is made anew)."""
    if not all(share_file(directory, p).is_file() for p in parties):
        return False
    try:
        load_public(directory / PUBLIC_FILE)
    except ConfigError as exc:
        log.info("cached demo key not used (%s); making a new one", exc)
        return False
    return True


def distributed_keygen(
    directory: Path, parties: Sequence[str], bits: int, *, watch: DemoWatch | None = None
) -> None:
    """Dealerless key generation by one ``riskprop keygen`` process per party; the key replaces
    ``directory`` only once every party wrote its share."""
    watch = watch or Unwatched()
    certs = demo_certificates(parties)
    directory.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="keygen-", dir=directory.parent) as tmp:
        work = Path(tmp)
        write_configs(
            work / "configs",
            data=work / "data",
            keys=work / "keys",
            certs=certs,
            out=work / "out",
            parties=parties,
            run={"run_id": "keygen", "iterations": 1},
        )
        command = ["keygen", "--key-bits", str(bits)]
        processes = start_nodes(work / "configs", parties, work / "logs", command=command)

        def keygen_state(party: str, code: int | None, seconds: float) -> None:
            state = "running" if code is None else "done" if code == 0 else "failed"
            watch.keygen(party, state, seconds, last_line(work / "logs" / f"{party}.log"))

        follow_nodes(processes, work / "logs", 3600.0, keygen_state)
        if directory.exists():
            shutil.rmtree(directory)
        (work / "keys").rename(directory)


def sample_data(parties: Sequence[str]) -> Path:
    """A generated sample data set for these parties, made on first use."""
    from riskprop.lab.synthetic import generate_dataset

    directory = cache_dir() / "data" / f"sample-{'-'.join(parties)}"
    if not all((directory / p / "transactions.csv").is_file() for p in parties):
        generate_dataset(
            directory, accounts=SAMPLE_ACCOUNTS, edges=SAMPLE_EDGES, banks=parties, seed=1
        )
    return directory


def follow_nodes(
    processes: dict[str, Popen[bytes]],
    logs: Path,
    timeout: float,
    tell: Callable[[str, int | None, float], None] | None = None,
) -> None:
    """``wait_for_nodes``, telling ``tell`` every ``FOLLOW_INTERVAL`` seconds each running
    node's seconds so far (code None) and once each node's exit code and seconds."""
    if tell is None:
        wait_for_nodes(processes, logs, timeout)
        return
    started = time.perf_counter()
    ended: set[str] = set()
    try:
        while len(ended) < len(processes) and time.perf_counter() - started < timeout:
            for name, process in processes.items():
                if name not in ended:
                    code = process.poll()
                    tell(name, code, time.perf_counter() - started)
                    if code is not None:
                        ended.add(name)
            if any(processes[name].returncode != 0 for name in ended):
                break  # wait_for_nodes stops the others and names the reason
            time.sleep(FOLLOW_INTERVAL)
    except BaseException:  # an interrupt stops the nodes too
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
        for process in processes.values():
            process.wait()
        raise
    wait_for_nodes(processes, logs, max(0.0, timeout - (time.perf_counter() - started)))


def last_line(log_file: Path) -> str:
    """The last line of a node's log without its time and level (empty when there is none)."""
    try:
        with log_file.open("rb") as handle:
            handle.seek(max(0, log_file.stat().st_size - 4096))
            lines = handle.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    lines = [line.strip() for line in lines if line.strip()]
    if not lines:
        return ""
    parts = lines[-1].split(" ", 2)
    if len(parts) == 3 and parts[0].count(":") == 2 and parts[1].isupper():
        return parts[2]  # "HH:MM:SS LEVEL message"
    return lines[-1]


def admin_listeners(config_dir: Path, parties: Sequence[str]) -> dict[str, str]:
    """Give every party's configuration an admin listener on a free loopback port (not one of
    the peer ports); returns each party's admin URL."""
    network = yaml.safe_load((config_dir / "network.yaml").read_text(encoding="utf-8"))
    taken = {str(party["url"]).rsplit(":", 1)[-1] for party in network["parties"]}
    ports = [port for port in free_ports(2 * len(parties)) if str(port) not in taken]
    urls = {}
    for party, port in zip(parties, ports, strict=False):
        path = config_dir / f"{party}.yaml"
        player = yaml.safe_load(path.read_text(encoding="utf-8"))
        player["admin"] = {"host": "127.0.0.1", "port": port}
        atomic_write_text(path, yaml.safe_dump(player, sort_keys=False))
        urls[party] = f"http://127.0.0.1:{port}"
    return urls


def top_accounts(
    account_ids: Sequence[str], secure: FloatArray, plaintext: FloatArray, count: int
) -> list[tuple[str, float, float]]:
    """The ``count`` accounts with the highest secure scores: (id, secure, plaintext)."""
    order = np.argsort(-secure, kind="stable")[:count]
    return [(account_ids[i], float(secure[i]), float(plaintext[i])) for i in order.tolist()]


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    raise AssertionError  # unreachable


@dataclass(frozen=True, eq=False)
class DemoReport:
    data: Path
    out: Path
    key_bits: int
    keys: DemoKeys
    seconds: float
    reports: dict[str, NodeReport]
    differences: dict[str, float]
    #: per bank, its ``TOP_ACCOUNTS`` highest-scored accounts: (id, secure, plaintext)
    top: dict[str, list[tuple[str, float, float]]] = field(default_factory=dict)
    #: with ``raw``: the generated raw data and each bank's rule scoring
    scoring: RawScoring | None = None

    def table(self) -> str:
        """Per bank: accounts, seconds per phase, bytes sent, largest difference."""
        head = f"{'bank':<10}{'accounts':>9}{'handshake':>11}{'encrypt':>9}{'iterate':>9}"
        head += f"{'decrypt':>9}{'sent':>11}{'max |diff|':>12}"
        lines = [head]
        for name, report in self.reports.items():
            s = report.seconds
            iterate = sum(v for k, v in s.items() if k.startswith("period"))
            lines.append(
                f"{name:<10}{report.accounts:>9}{s.get('handshake', 0.0):>10.2f}s"
                f"{s.get('encrypt', 0.0):>8.2f}s{iterate:>8.2f}s{s.get('decrypt', 0.0):>8.2f}s"
                f"{_size(report.bytes_sent):>11}{self.differences[name]:>12.2e}"
            )
        return "\n".join(lines)


def run_demo(
    *,
    data: Path | None,
    parameters: RunParameters,
    key_bits: int,
    out: Path,
    parties: int,
    keygen: str = "distributed",
    fresh_key: bool = False,
    timeout: float = 3600.0,
    watch: DemoWatch | None = None,
    raw: RawSpec | None = None,
    workers: int = 1,
) -> DemoReport:
    """Run one node process per bank over mutual TLS on loopback and collect the results.

    ``parameters.periods`` is replaced by the data's periods. Nodes write into a staging
    directory; OUT/<bank>/risk_scores.csv appear only once every node succeeded, and are
    compared with the plaintext engine. With ``watch``, every node also serves its admin
    listener on loopback, and the watcher hears of each step (see the module doc). With
    ``raw`` (and no ``data``): the data set is generated raw transactions of ``parties`` banks,
    each scored by the default rules under OUT (``riskprop.localnet.rawdemo``). Every node
    gets ``workers`` compute workers (default 1: the nodes share this machine's cores).
    """
    if raw is not None and data is not None:
        raise ConfigError("give --raw or --data, not both: --raw makes its own data set")
    out = out.resolve()  # the nodes' configuration lives below it: no relative paths there
    watcher = watch or Unwatched()
    scoring = None
    if raw is not None:
        from riskprop.localnet.rawdemo import score_raw

        watcher.stage("preparing", "raw transactions, scored by the default rules")
        scoring = score_raw(out, party_names(parties), raw)
        data = scoring.data
    watcher.stage("preparing", "the sample data" if data is None else f"reading {data}")
    if data is None:
        data = sample_data(party_names(parties))
    dataset = load_dataset(data)  # validates every bank's files before any node starts
    names = list(dataset.names)
    watcher.begin(names, key_bits=key_bits, iterations=parameters.iterations)
    graph = build_global(dataset)
    parameters = replace(parameters, periods=tuple(graph.periods))
    watcher.stage("preparing", "the certificates")
    certs = demo_certificates(names)
    watcher.stage("keygen", "dealerless" if keygen == "distributed" else "trusted dealer")
    keys = demo_keys(names, key_bits, keygen, fresh=fresh_key, watch=watcher)
    run = {
        "run_id": f"demo-{secrets.token_hex(4)}",
        "iterations": parameters.iterations,
        "delta_a": parameters.delta_a,
        "delta_b": parameters.delta_b,
        "precision_bits": parameters.precision_bits,
        "periods": list(parameters.periods),
        "noise": parameters.noise,
    }
    logs = out / "logs"
    if logs.is_dir():
        shutil.rmtree(logs)  # the logs of an earlier demo, not this one's
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".staging-", dir=out) as tmp:
        staging = Path(tmp)
        write_configs(
            out / "configs",
            data=data.resolve(),
            keys=keys.directory,
            certs=certs,
            out=staging,
            parties=names,
            run=run,
            workers=workers,
        )
        admin = admin_listeners(out / "configs", names) if watch is not None else {}
        watcher.stage("running", "one node process per bank, mutual TLS on loopback")
        started = time.perf_counter()
        processes = start_nodes(out / "configs", names, logs)
        watcher.nodes(admin, str(run["run_id"]))

        def node_state(name: str, code: int | None, seconds: float) -> None:
            if code is not None:
                watcher.node_exited(name, code, seconds)

        follow_nodes(processes, logs, timeout, node_state if watch is not None else None)
        seconds = time.perf_counter() - started
        watcher.stage("comparing", "with the plaintext engine")
        reference = propagate(graph, parameters.schedule, parameters.iterations)
        reports, differences, scores, top = {}, {}, {}, {}
        for index, name in enumerate(names):
            bank = dataset.banks[index]
            reports[name] = read_report(staging / name)
            scores[name] = read_scores(staging / name / RESULTS_FILE, bank.account_ids)
            lo, hi = int(graph.offsets[index]), int(graph.offsets[index + 1])
            differences[name] = (
                float(np.max(np.abs(scores[name] - reference[lo:hi]))) if hi > lo else 0.0
            )
            top[name] = top_accounts(bank.account_ids, scores[name], reference[lo:hi], TOP_ACCOUNTS)
    for index, name in enumerate(names):
        write_scores(out / name / RESULTS_FILE, dataset.banks[index].account_ids, scores[name])
        reports[name] = replace(reports[name], results=out / name / RESULTS_FILE)
        write_report(out / name, reports[name])
    report = DemoReport(data, out, key_bits, keys, seconds, reports, differences, top, scoring)
    watcher.finished(report)
    return report
