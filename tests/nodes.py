"""Real node processes for tests: a network of banks made in a temporary directory."""

from __future__ import annotations

import asyncio
import csv
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from riskprop.core.threshold import default_threshold
from riskprop.files.keys import dealer_keygen
from riskprop.lab.simulate import simulate_plaintext
from riskprop.lab.synthetic import generate_dataset
from riskprop.localnet.harness import write_configs
from riskprop.node.tls import make_ca, make_node_certificate

ITERATIONS = 2


@dataclass
class Network:
    root: Path
    parties: list[str]
    configs: Path
    certs: Path
    data: Path
    out: Path
    keys: Path

    def url(self, party: str) -> str:
        network = yaml.safe_load((self.configs / "network.yaml").read_text())
        return str(next(p["url"] for p in network["parties"] if p["name"] == party))

    def command(self, party: str) -> list[str]:
        """The operator's command for ``party``'s node."""
        return [
            sys.executable,
            "-m",
            "riskprop",
            "run",
            "--player",
            party,
            "--config",
            str(self.configs),
        ]

    def start(self, party: str) -> subprocess.Popen[bytes]:
        log = (self.root / f"{party}.log").open("ab")  # a restart appends
        return subprocess.Popen(self.command(party), stdout=log, stderr=subprocess.STDOUT)

    def log(self, party: str, since: int = 0) -> str:
        """``party``'s node log (every process of it appends), from byte ``since`` on."""
        with (self.root / f"{party}.log").open("rb") as handle:
            handle.seek(since)
            return handle.read().decode(errors="replace")

    def log_size(self, party: str) -> int:
        """Bytes in ``party``'s log so far (where a process started next begins)."""
        path = self.root / f"{party}.log"
        return path.stat().st_size if path.exists() else 0

    def results_text(self) -> dict[str, str]:
        return {p: (self.out / p / "risk_scores.csv").read_text() for p in self.parties}

    def another_run(self, root: Path, timeouts: Mapping[str, float] | None = None) -> Network:
        """The same banks, data and keys, with new ports and a new output directory."""
        configure(root, self.parties, self.data, self.keys, self.certs, timeouts)
        return Network(
            root, self.parties, root / "configs", self.certs, self.data, root / "out", self.keys
        )

    def scores(self, folder: Callable[[str], Path] | None = None) -> dict[tuple[str, str], float]:
        """Every bank's scores, from OUT/<bank> or ``folder(bank)``."""
        found = {}
        for party in self.parties:
            where = self.out / party if folder is None else folder(party)
            with (where / "risk_scores.csv").open() as handle:
                for row in csv.DictReader(handle):
                    found[party, row["id"]] = float(row["risk_score"])
        return found


def make_network(
    root: Path,
    parties: Sequence[str],
    *,
    timeouts: Mapping[str, float] | None = None,
    accounts: int = 40,
    edges: int = 120,
    workers: int = 1,
    dask: str | None = None,
) -> Network:
    """Certificates, a 512-bit dealt key, a generated data set (``accounts`` and ``edges`` per
    party) and configs for ``parties`` (``workers`` compute workers each, or the Dask
    scheduler at ``dask``)."""
    certs, keys, data = root / "certs", root / "keys", root / "data"
    ca_cert, ca_key = make_ca(certs)
    for name in parties:
        make_node_certificate(certs, name, ca_cert=ca_cert, ca_key=ca_key)
    dealer_keygen(keys, parties, default_threshold(len(parties)), 512)
    generate_dataset(
        data,
        accounts=accounts * len(parties),
        edges=edges * len(parties),
        banks=parties,
        seed=7,
    )
    configure(root, parties, data, keys, certs, timeouts, workers, dask)
    return Network(root, list(parties), root / "configs", certs, data, root / "out", keys)


def configure(
    root: Path,
    parties: Sequence[str],
    data: Path,
    keys: Path,
    certs: Path,
    timeouts: Mapping[str, float] | None,
    workers: int = 1,
    dask: str | None = None,
) -> None:
    run = {
        "run_id": "test-run",
        "iterations": ITERATIONS,
        "delta_a": 0.5,
        "delta_b": 0.0,
        "periods": [0],
    }
    write_configs(
        root / "configs",
        data=data,
        keys=keys,
        certs=certs,
        out=root / "out",
        parties=parties,
        run=run,
        timeouts=timeouts,
        workers=workers,
        dask=dask,
    )


def wait_all(processes: Sequence[subprocess.Popen[bytes]], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    codes = []
    for process in processes:
        try:
            codes.append(process.wait(max(0.1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            process.kill()
            codes.append(process.wait())
    return codes


def assert_matches_plaintext(
    network: Network, folder: Callable[[str], Path] | None = None, data: Path | None = None
) -> None:
    """Every bank's scores (in OUT/<bank> or ``folder(bank)``) equal the plaintext engine's on
    the network's data (or ``data``) within 1e-7 (the fixed-point bound for the default 32 bits
    on these graphs)."""
    reference = simulate_plaintext(network.data if data is None else data, iterations=ITERATIONS)
    sizes = np.cumsum([len(i) for i in reference.account_ids])[:-1]
    expected = {
        (bank, acc): score
        for bank, ids, scores in zip(
            reference.banks, reference.account_ids, np.split(reference.scores, sizes), strict=True
        )
        for acc, score in zip(ids, scores.tolist(), strict=True)
    }
    found = network.scores(folder)
    assert found.keys() == expected.keys()
    assert max(abs(found[k] - expected[k]) for k in expected) < 1e-7


class FaultyLinks:
    """A TCP proxy in front of every node that delays and loses traffic, on loopback.

    There is no netem here, so loss is modelled where TCP makes it visible: each forwarded
    chunk waits ``latency`` seconds; every ``lose_every``-th chunk (over all links) waits a
    retransmission time-out more (what a lost segment costs a TCP stream); and the first
    ``cut_first`` connections to each node are cut once they have forwarded ``cut_after``
    chunks towards it (past the TLS handshake, into a request), which the nodes' retries and
    de-duplication must absorb. The faults are counted, not drawn: how many there are depends
    on the traffic, not on how a busy machine interleaves the connections, and a sender's
    retry always gets through.
    """

    def __init__(
        self, latency: float, *, lose_every: int = 20, cut_first: int = 1, cut_after: int = 3
    ) -> None:
        self.latency = latency
        self.lose_every, self.cut_first, self.cut_after = lose_every, cut_first, cut_after
        self.chunks = self.lost = self.resets = self.connections = 0
        self._accepted: dict[int, int] = {}  # node port -> connections made to it
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servers: list[asyncio.AbstractServer] = []

    def front(self, target_port: int) -> int:
        """Start a proxy to 127.0.0.1:target_port; return the proxy's port."""

        async def start() -> int:
            server = await asyncio.start_server(
                lambda r, w: self._connection(r, w, target_port), "127.0.0.1", 0
            )
            self.servers.append(server)
            return int(server.sockets[0].getsockname()[1])

        return asyncio.run_coroutine_threadsafe(start(), self.loop).result()

    async def _connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int
    ) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            writer.close()
            return
        self.connections += 1
        self._accepted[port] = self._accepted.get(port, 0) + 1
        cut = self._accepted[port] <= self.cut_first
        await asyncio.gather(
            self._pipe(reader, up_writer, self.cut_after if cut else None),
            self._pipe(up_reader, writer, None),
            return_exceptions=True,
        )

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, cut_after: int | None
    ) -> None:
        forwarded = 0
        try:
            while chunk := await reader.read(65536):
                self.chunks += 1
                delay = self.latency
                if self.chunks % self.lose_every == 0:
                    self.lost += 1
                    delay += 0.6  # a retransmission time-out
                await asyncio.sleep(delay)
                writer.write(chunk)
                await writer.drain()
                forwarded += 1
                if forwarded == cut_after:
                    self.resets += 1
                    writer.transport.abort()
                    return
        finally:
            writer.close()

    def close(self) -> None:
        async def shutdown() -> None:
            for server in self.servers:
                server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def route_through(network: Network, links: FaultyLinks) -> None:
    """Point every party's URL in the network file at a faulty link to its node."""
    path = network.configs / "network.yaml"
    data = yaml.safe_load(path.read_text())
    for party in data["parties"]:
        port = int(party["url"].rsplit(":", 1)[1])
        party["url"] = f"https://127.0.0.1:{links.front(port)}"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
