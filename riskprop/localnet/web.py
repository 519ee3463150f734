"""The demo's live view, ``riskprop demo --web``: one page with the banks side by side.

``DemoState`` is the demo's watcher (``riskprop.localnet.demo.DemoWatch``): the demo's thread
tells it each step, and ``DemoView``'s poller adds what each node's admin listener reports
(``GET /status`` on loopback, every ``POLL_INTERVAL`` seconds: the ``current`` run with its
phases, bytes sent, and bytes and messages per peer). ``DemoView`` serves, on 127.0.0.1 from
a thread of its own,

| route      | answer                                                             |
|------------|--------------------------------------------------------------------|
| GET /      | the page (``static/demo.html``: inline style and script, no data)  |
| GET /state | ``DemoState.snapshot()`` as JSON; the page polls it                |

The browser talks to this server only, never to the nodes. Requests naming another host are
refused (a web page elsewhere cannot read the demo through a rebound DNS name).

What crosses between banks is shown two ways, only as sizes, never a value of a message:

- per ordered pair (sender, recipient): the bytes and messages each node delivered to each
  peer. While the run goes on, as the node's ``/status`` reports them (``bytes_by_peer`` and
  ``messages_by_peer`` of ``current``; None for a node that has not reported them); at the
  end exactly, from each node's ``run-report.json``.
- per sender and phase: while the run goes on, the node's ``bytes_sent`` since the previous
  poll is credited to the phase it reports; at the end exactly, from ``bytes_by_phase`` of
  its ``run-report.json`` (message kinds mapped to phases by ``phase_of``).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import signal
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from importlib.resources import files
from types import FrameType
from typing import Any, TypeVar

import aiohttp
from aiohttp import web

from riskprop.errors import ParameterError, RiskpropError, StoppedError
from riskprop.localnet.demo import DemoReport
from riskprop.service.admin import PAGE_POLICY
from riskprop.service.progress import PHASES

T = TypeVar("T")

#: Seconds between two reads of every node's ``/status``.
POLL_INTERVAL = 0.5
#: Seconds a node's admin listener has to answer.
POLL_TIMEOUT = 2.0
#: How the view counts the bytes between banks (see the module doc): per ordered pair of banks,
#: and per sender and phase.
BYTES_VIEW = "per-pair"


def phase_of(step: str) -> str:
    """The ``/status`` phase a step of ``run-report.json`` belongs to: its ``seconds`` keys
    (``handshake``, ``encrypt``, ``period P iteration K``, ``decrypt``, ``proofs``, ``write``)
    and its ``bytes_by_phase`` keys (message kinds, scores as ``period P iteration K``)."""
    if step in ("handshake", "hello", "rejoin"):
        return "handshake"
    if step in ("encrypt", "scores") or step.startswith("period "):
        return "iterating"
    if step in ("decrypt", "proofs", "decrypt_request", "partial"):
        return "decrypting"
    return "finishing"


def by_phase(values: Mapping[str, float]) -> dict[str, float]:
    """``values`` summed per ``/status`` phase (every phase present)."""
    sums = dict.fromkeys(PHASES, 0.0)
    for step, value in values.items():
        sums[phase_of(step)] += value
    return sums


def _bank() -> dict[str, Any]:
    return {
        "keygen": {"state": "waiting", "seconds": None, "detail": ""},
        "node": {
            "state": "waiting",
            "admin": None,
            "exit_code": None,
            "seconds": None,
            "error": None,
        },
        "current": None,
        "bytes_sent": 0,
        "bytes_live": dict.fromkeys(PHASES, 0),
        "bytes_by_peer": None,
        "messages_by_peer": None,
        "result": None,
    }


def per_peer(value: object) -> dict[str, int] | None:
    """A ``bytes_by_peer`` or ``messages_by_peer`` as a node reported it: counts (whole
    numbers, not negative) by peer name, other entries left out; None when it is not a
    mapping (a node that does not report it)."""
    if not isinstance(value, Mapping):
        return None
    return {
        str(peer): count
        for peer, count in value.items()
        if isinstance(count, int) and not isinstance(count, bool) and count >= 0
    }


class DemoState:
    """What the page shows (``snapshot()``), updated from the demo's thread and the poller."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._started = clock()
        self._doc: dict[str, Any] = {
            "stage": "preparing",
            "detail": "",
            "error": None,
            "failed_in": None,
            "elapsed_seconds": 0.0,
            "key_bits": None,
            "iterations": None,
            "keygen": None,
            "run_id": None,
            "run_seconds": None,
            "bytes_view": BYTES_VIEW,
            "banks": [],
            "bank": {},
        }

    def snapshot(self) -> dict[str, Any]:
        """The ``/state`` document (a copy)."""
        with self._lock:
            doc = copy.deepcopy(self._doc)
        doc["elapsed_seconds"] = round(self._clock() - self._started, 1)
        return doc

    def _bank(self, name: str) -> dict[str, Any]:
        banks: dict[str, dict[str, Any]] = self._doc["bank"]
        if name not in banks:
            banks[name] = _bank()
            self._doc["banks"].append(name)
        return banks[name]

    # ------------------------------------------------------------------ the demo's steps

    def stage(self, stage: str, detail: str = "") -> None:
        with self._lock:
            self._doc["stage"], self._doc["detail"] = stage, detail
            if stage == "keygen":
                self._doc["keygen"] = detail

    def begin(self, banks: Sequence[str], *, key_bits: int, iterations: int) -> None:
        with self._lock:
            self._doc["key_bits"], self._doc["iterations"] = key_bits, iterations
            for name in banks:
                self._bank(name)

    def keygen(self, bank: str, state: str, seconds: float | None = None, detail: str = "") -> None:
        with self._lock:
            self._bank(bank)["keygen"] = {
                "state": state,
                "seconds": None if seconds is None else round(seconds, 2),
                "detail": detail,
            }

    def nodes(self, admin: Mapping[str, str], run_id: str) -> None:
        with self._lock:
            self._doc["run_id"] = run_id
            for name in self._doc["banks"]:
                node = self._bank(name)["node"]
                node["state"], node["admin"] = "starting", admin.get(name)

    def node_exited(self, bank: str, code: int, seconds: float) -> None:
        with self._lock:
            node = self._bank(bank)["node"]
            node["state"] = "finished" if code == 0 else "failed"
            node["exit_code"], node["seconds"] = code, round(seconds, 2)

    def finished(self, report: DemoReport) -> None:
        with self._lock:
            self._doc["run_seconds"] = round(report.seconds, 2)
            for name, node in report.reports.items():
                seconds = by_phase(node.seconds)
                self._bank(name)["result"] = {
                    "accounts": node.accounts,
                    "seconds": round(node.wall_seconds, 3),
                    "phases": [
                        {"name": p, "state": "done", "seconds": round(seconds[p], 3)}
                        for p in PHASES
                    ],
                    "bytes_sent": node.bytes_sent,
                    "bytes_by_phase": {p: int(v) for p, v in by_phase(node.bytes_by_phase).items()},
                    "bytes_by_kind": dict(node.bytes_by_phase),
                    "bytes_by_peer": dict(node.bytes_by_peer),
                    "messages_by_peer": dict(node.messages_by_peer),
                    "max_difference": report.differences[name],
                    "top": [
                        {"account": account, "secure": secure, "plaintext": plain}
                        for account, secure, plain in report.top.get(name, [])
                    ],
                }
            self._doc["stage"], self._doc["detail"] = "done", ""

    def failed(self, message: str) -> None:
        with self._lock:
            self._doc["failed_in"] = self._doc["stage"]
            self._doc["stage"], self._doc["error"] = "failed", message

    # ------------------------------------------------------------------ the nodes' reports

    def watched(self) -> dict[str, str]:
        """Admin URLs of the nodes to poll: started, not exited."""
        with self._lock:
            return {
                name: bank["node"]["admin"]
                for name, bank in self._doc["bank"].items()
                if bank["node"]["admin"] and bank["node"]["state"] in ("starting", "running")
            }

    def node_status(self, bank: str, current: dict[str, Any] | None) -> None:
        """A node's ``/status`` ``current`` (None between runs); bytes sent since the last
        report are credited to the phase it is in, and its counts per peer replace the last
        ones (a report without them keeps those)."""
        with self._lock:
            entry = self._bank(bank)
            node = entry["node"]
            node["error"] = None
            if node["state"] == "starting":
                node["state"] = "running"
            if current is None:
                return
            entry["current"] = current
            sent = current.get("bytes_sent")
            if isinstance(sent, int) and sent > entry["bytes_sent"]:
                phase = current.get("phase")
                phase = phase if phase in PHASES else PHASES[0]
                entry["bytes_live"][phase] += sent - entry["bytes_sent"]
                entry["bytes_sent"] = sent
            for field in ("bytes_by_peer", "messages_by_peer"):
                counts = per_peer(current.get(field))
                if counts is not None:
                    entry[field] = counts

    def node_unreachable(self, bank: str, reason: str) -> None:
        with self._lock:
            self._bank(bank)["node"]["error"] = reason


@functools.cache
def demo_page() -> bytes:
    """The page's bytes, read once from the installed package."""
    return files("riskprop").joinpath("localnet/static/demo.html").read_bytes()


class DemoView:
    """The live view's server on 127.0.0.1 (``port`` 0: a free one), in a thread with its own
    event loop, and the poller of the nodes' admin listeners."""

    def __init__(self, state: DemoState, port: int = 0) -> None:
        self.state = state
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="demo-web", daemon=True)
        self._runner: web.AppRunner | None = None
        self._poller: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def __enter__(self) -> DemoView:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        self._thread.start()
        try:
            self.port = self._call(self._start())
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                self._call(self._stop())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5.0)
        if not self._loop.is_running():
            self._loop.close()

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10.0)

    async def _start(self) -> int:
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/", self._page)
        app.router.add_get("/state", self._state)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise ParameterError(
                "web_port", f"cannot listen on 127.0.0.1:{self.port} ({exc.strerror})"
            ) from None
        self._poller = asyncio.create_task(self._poll())
        return int(self._runner.addresses[0][1])

    async def _stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        if self._runner is not None:
            await self._runner.cleanup()

    # ------------------------------------------------------------------ routes

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.host not in (f"127.0.0.1:{self.port}", f"localhost:{self.port}"):
            return web.Response(status=403, text="this view answers on 127.0.0.1 only\n")
        response: web.StreamResponse = await handler(request)
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(
            body=demo_page(),
            content_type="text/html",
            charset="utf-8",
            headers={"Content-Security-Policy": PAGE_POLICY, "X-Frame-Options": "DENY"},
        )

    async def _state(self, request: web.Request) -> web.Response:
        return web.json_response(self.state.snapshot())

    # ------------------------------------------------------------------ the poller

    async def _poll(self) -> None:
        timeout = aiohttp.ClientTimeout(total=POLL_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                nodes = self.state.watched()
                await asyncio.gather(
                    *(self._poll_node(session, bank, url) for bank, url in nodes.items())
                )
                await asyncio.sleep(POLL_INTERVAL)

    async def _poll_node(self, session: aiohttp.ClientSession, bank: str, url: str) -> None:
        try:
            async with session.get(f"{url}/status") as response:
                if response.status != 200:
                    raise ValueError(f"HTTP {response.status}")
                document = await response.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            self.state.node_unreachable(bank, str(exc) or type(exc).__name__)
            return
        current = document.get("current") if isinstance(document, dict) else None
        self.state.node_status(bank, current if isinstance(current, dict) else None)


@contextlib.contextmanager
def stopped_by_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise ``StoppedError`` in the main thread (restored on exit): the
    demo unwinds, stopping its node processes on the way."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise StoppedError(f"demo stopped by {signal.Signals(signum).name}")

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def watch_demo(
    run: Callable[[DemoState], DemoReport],
    show: Callable[[DemoReport], None],
    *,
    port: int = 0,
    linger: float | None = None,
    echo: Callable[[str], None] = print,
) -> DemoReport:
    """Run the demo (``run`` with the view's state as its watcher) while the view serves;
    ``show`` the report, then keep serving until SIGINT or SIGTERM or ``linger`` seconds.

    A failed demo stays on the page until then too, and its error is raised afterwards;
    SIGINT or SIGTERM during the demo stop it (``StoppedError``)."""
    state = DemoState()
    with stopped_by_signals(), DemoView(state, port) as view:
        echo(f"riskprop demo: open {view.url} to watch")
        failure: RiskpropError | None = None
        try:
            report = run(state)
        except StoppedError:
            raise
        except RiskpropError as exc:
            state.failed(str(exc))
            failure = exc
            echo(f"riskprop demo failed: {exc}")
        else:
            show(report)
        until = "" if linger is None else f" for {linger:g} s"
        what = "results" if failure is None else "the failure"
        echo(f"{what} shown at {view.url}{until}; Ctrl-C to stop")
        with contextlib.suppress(StoppedError):
            threading.Event().wait(linger)
    if failure is not None:
        raise failure
    return report
