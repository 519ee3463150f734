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
"""

from __future__ import annotations

import logging
import secrets
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from riskprop.core.data import load_dataset
from riskprop.core.graph import build_global
from riskprop.core.params import RunParameters
from riskprop.core.plaintext import propagate
from riskprop.core.threshold import default_threshold
from riskprop.errors import ConfigError
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
from riskprop.localnet.harness import party_names, start_nodes, wait_for_nodes, write_configs

log = logging.getLogger(__name__)

SAMPLE_ACCOUNTS = 300
SAMPLE_EDGES = 1000

KEYGEN_MODES = ("distributed", "dealer")


@dataclass(frozen=True)
class DemoKeys:
    """Where the demo's key is, how it was made, and the seconds it took if made just now."""

    directory: Path
    mode: str
    seconds: float | None


def demo_keys(parties: Sequence[str], bits: int, mode: str, *, fresh: bool = False) -> DemoKeys:
    """A key for these parties and size: cached per mode, made on first use (or when
    ``fresh``). ``distributed`` runs ``riskprop keygen --player NAME`` for every party as its own
    process over mutual TLS on loopback, exactly as banks would; ``dealer`` deals in-process."""
    if mode not in KEYGEN_MODES:
        raise ConfigError(f"--keygen must be one of {', '.join(KEYGEN_MODES)} (got {mode!r})")
    suffix = "" if mode == "dealer" else "-distributed"
    directory = cache_dir() / "keys" / f"{'-'.join(parties)}-{bits}{suffix}"
    if not fresh and _cached_key_usable(directory, parties):
        return DemoKeys(directory, mode, None)
    started = time.perf_counter()
    if mode == "dealer":
        dealer_keygen(directory, parties, default_threshold(len(parties)), bits, force=True)
    else:
        distributed_keygen(directory, parties, bits)
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


def distributed_keygen(directory: Path, parties: Sequence[str], bits: int) -> None:
    """Dealerless key generation by one ``riskprop keygen`` process per party; the key replaces
    ``directory`` only once every party wrote its share."""
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
        wait_for_nodes(processes, work / "logs", timeout=3600.0)
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
) -> DemoReport:
    """Run one node process per bank over mutual TLS on loopback and collect the results.

    ``parameters.periods`` is replaced by the data's periods. Nodes write into a staging
    directory; OUT/<bank>/risk_scores.csv appear only once every node succeeded, and are
    compared with the plaintext engine.
    """
    out = out.resolve()  # the nodes' configuration lives below it: no relative paths there
    if data is None:
        data = sample_data(party_names(parties))
    dataset = load_dataset(data)  # validates every bank's files before any node starts
    names = list(dataset.names)
    graph = build_global(dataset)
    parameters = replace(parameters, periods=tuple(graph.periods))
    keys = demo_keys(names, key_bits, keygen, fresh=fresh_key)
    certs = demo_certificates(names)
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
        )
        started = time.perf_counter()
        wait_for_nodes(start_nodes(out / "configs", names, logs), logs, timeout)
        seconds = time.perf_counter() - started
        reference = propagate(graph, parameters.schedule, parameters.iterations)
        reports, differences, scores = {}, {}, {}
        for index, name in enumerate(names):
            bank = dataset.banks[index]
            reports[name] = read_report(staging / name)
            scores[name] = read_scores(staging / name / RESULTS_FILE, bank.account_ids)
            lo, hi = int(graph.offsets[index]), int(graph.offsets[index + 1])
            differences[name] = (
                float(np.max(np.abs(scores[name] - reference[lo:hi]))) if hi > lo else 0.0
            )
    for index, name in enumerate(names):
        write_scores(out / name / RESULTS_FILE, dataset.banks[index].account_ids, scores[name])
        reports[name] = replace(reports[name], results=out / name / RESULTS_FILE)
        write_report(out / name, reports[name])
    return DemoReport(data, out, key_bits, keys, seconds, reports, differences)
