"""The operator's listener: health, readiness, metrics, status, triggers and the status page.

Plain HTTP on its own port, loopback by default. On any other address every request except
``GET /healthz`` (and ``HEAD``) and the page's shell (``GET /``, which holds no data) must carry
``Authorization: Bearer <token>`` with the token of ``admin.token_file`` (compared in constant
time); the page's script asks for the token when ``/status`` answers 401.

| route           | answer                                                              |
|-----------------|---------------------------------------------------------------------|
| GET /healthz    | 200 ``ok`` while the process serves requests                        |
| GET /readyz     | 200, or 503 with one line per problem (configuration, key, certificate, peers) |
| GET /metrics    | the Prometheus text format                                          |
| GET /status     | JSON: current run with progress per phase, history, peers, key     |
| POST /runs      | ``{"run_id", "fresh"}`` (both optional): 202 ``{"run_id"}``; 409 while |
|                 | a run goes on or waits to start; 400 for a bad run id               |
| GET /           | the HTML status page                                                |
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any, Protocol

from aiohttp import web

from riskprop.config import RUN_ID, AdminSettings
from riskprop.errors import ConfigError, RiskpropError
from riskprop.service.metrics import NodeMetrics

log = logging.getLogger(__name__)

#: What the page may load: its own inline script and style, and requests to this listener.
PAGE_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


class TriggerError(RiskpropError):
    """A trigger the node refuses, with the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class AdminNode(Protocol):
    """What the admin listener asks of a node."""

    metrics: NodeMetrics

    def status(self) -> dict[str, Any]: ...

    def readiness(self) -> list[str]:
        """Problems that make the node not ready (empty: ready)."""
        ...

    def trigger(self, run_id: str | None, *, fresh: bool = False) -> str:
        """Queue a run (the given id, or the latest slot's); its id, or TriggerError."""
        ...


class AdminServer:
    """The listener (see the module doc)."""

    def __init__(self, settings: AdminSettings, node: AdminNode) -> None:
        self.settings = settings
        self.node = node
        self.token = settings.read_token()
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=4096, middlewares=[self._guard])
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/status", self._status)
        app.router.add_post("/runs", self._runs)
        app.router.add_get("/", self._page)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise ConfigError(
                f"admin listener: cannot listen on {self.settings.host}:{self.settings.port} "
                f"({exc.strerror})"
            ) from None
        log.info("admin listener on %s", self.settings.url)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------------ routes

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        public = request.path in ("/healthz", "/") and request.method in ("GET", "HEAD")
        if self.token is not None and not public:
            # the header's bytes as sent (aiohttp keeps bytes that are not UTF-8 as surrogates)
            given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
            expected = f"Bearer {self.token}"
            if not hmac.compare_digest(given, expected.encode()):
                return web.Response(
                    status=401,
                    text="a bearer token is required",
                    headers={"WWW-Authenticate": 'Bearer realm="riskprop"'},
                )
        response: web.StreamResponse = await handler(request)
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        problems = self.node.readiness()
        self.node.metrics.ready.set(0 if problems else 1)
        if problems:
            return web.Response(status=503, text="".join(f"{p}\n" for p in problems))
        return web.Response(text="ready\n")

    async def _metrics(self, request: web.Request) -> web.Response:
        self.node.status()  # refreshes the gauges that follow the clock
        self.node.metrics.ready.set(0 if self.node.readiness() else 1)
        return web.Response(
            body=self.node.metrics.render(),
            headers={"Content-Type": self.node.metrics.content_type},
        )

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response(self.node.status(), dumps=lambda v: json.dumps(v, indent=1))

    async def _runs(self, request: web.Request) -> web.Response:
        run_id: str | None = None
        fresh = False
        if request.can_read_body:
            try:
                body = await request.json()
            except ValueError:
                return web.json_response({"error": "the body must be JSON"}, status=400)
            if not isinstance(body, dict):
                return web.json_response({"error": "the body must be a JSON object"}, status=400)
            given = body.get("run_id")
            if given is not None and (not isinstance(given, str) or not RUN_ID.fullmatch(given)):
                return web.json_response(
                    {"error": "run_id must match [A-Za-z0-9._-]{1,64}"}, status=400
                )
            run_id = given
            fresh = body.get("fresh", False)
            if not isinstance(fresh, bool):
                return web.json_response({"error": "fresh must be true or false"}, status=400)
        try:
            queued = self.node.trigger(run_id, fresh=fresh)
        except TriggerError as exc:
            return web.json_response({"error": str(exc)}, status=exc.status)
        log.info("run %s triggered through the admin listener", queued)
        return web.json_response({"run_id": queued}, status=202)

    async def _page(self, request: web.Request) -> web.Response:
        from riskprop.service.page import status_page

        return web.Response(
            body=status_page(),
            content_type="text/html",
            charset="utf-8",
            headers={"Content-Security-Policy": PAGE_POLICY, "X-Frame-Options": "DENY"},
        )
