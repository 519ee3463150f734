"""The admin listener (``riskprop.service.admin``) over a stand-in node: its routes, the bearer
token off loopback, the answers to bad triggers, the Prometheus text and the page's headers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from riskprop.config import AdminSettings
from riskprop.errors import ConfigError
from riskprop.localnet.harness import free_ports
from riskprop.service.admin import PAGE_POLICY, AdminServer, TriggerError
from riskprop.service.metrics import RUN_STATUSES, NodeMetrics

T = TypeVar("T")
Client = TestClient[web.Request, web.Application]
TOKEN = "s3cret-token-0123456789abcdef"
SLOT_RUN = "daily-2026-11-29"


class Node:
    """What the listener asks of a node, with its answers set by the test."""

    def __init__(self) -> None:
        self.metrics = NodeMetrics("alice")
        self.problems: list[str] = []
        self.running: str | None = None
        self.triggered: list[str | None] = []
        self.fresh: list[bool] = []
        self.status_calls = 0

    def status(self) -> dict[str, Any]:
        self.status_calls += 1
        return {"player": "alice", "state": "idle" if self.running is None else "running"}

    def readiness(self) -> list[str]:
        return list(self.problems)

    def trigger(self, run_id: str | None, *, fresh: bool = False) -> str:
        if self.running is not None:
            raise TriggerError(409, f"run {self.running} is in progress")
        self.triggered.append(run_id)
        self.fresh.append(fresh)
        return run_id or SLOT_RUN


def token_file(tmp_path: Path, text: str = TOKEN + "\n", mode: int = 0o600) -> Path:
    path = tmp_path / "admin.token"
    path.write_text(text)
    path.chmod(mode)
    return path


def guarded(tmp_path: Path) -> AdminSettings:
    """A listener on every address, so behind the token."""
    return AdminSettings("0.0.0.0", 9100, token_file(tmp_path), configured=True)


LOOPBACK = AdminSettings("127.0.0.1", 9100)


def with_client(admin: AdminServer, talk: Callable[[Client], Awaitable[T]]) -> T:
    """``talk`` to the listener's application, served on loopback for the test."""

    async def main() -> T:
        async with TestClient(TestServer(admin.app())) as client:
            return await talk(client)

    return asyncio.run(main())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# ----------------------------------------------------------------------------- routes


def test_routes_on_loopback_need_no_token() -> None:
    node = Node()

    async def talk(client: Client) -> None:
        health = await client.get("/healthz")
        assert (health.status, await health.text()) == (200, "ok\n")
        ready = await client.get("/readyz")
        assert (ready.status, await ready.text()) == (200, "ready\n")
        status = await client.get("/status")
        assert status.status == 200 and status.content_type == "application/json"
        assert await status.json() == {"player": "alice", "state": "idle"}
        assert (await client.get("/metrics")).status == 200
        page = await client.get("/")
        assert page.status == 200 and "<html" in (await page.text()).lower()
        run = await client.post("/runs", json={})
        assert (run.status, await run.json()) == (202, {"run_id": SLOT_RUN})

    with_client(AdminServer(LOOPBACK, node), talk)
    assert node.triggered == [None]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/status"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("POST", "/runs"),
        ("GET", "/no-such-page"),  # no route is told apart from another without the token
        ("HEAD", "/status"),
    ],
)
def test_off_loopback_a_request_without_the_right_token_is_refused(
    tmp_path: Path, method: str, path: str
) -> None:
    node = Node()
    refusals = [
        {},
        bearer("wrong-token-0123456789abcdef"),
        bearer(TOKEN[:-1]),
        bearer(TOKEN + "x"),
        {"Authorization": TOKEN},  # not as a bearer
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"bearer  {TOKEN}"},
    ]

    async def talk(client: Client) -> None:
        for headers in refusals:
            answer = await client.request(method, path, headers=headers, json={})
            assert answer.status == 401, headers
            assert answer.headers["WWW-Authenticate"] == 'Bearer realm="riskprop"'
            if method != "HEAD":
                assert await answer.text() == "a bearer token is required"

    with_client(AdminServer(guarded(tmp_path), node), talk)
    assert node.triggered == [] and node.status_calls == 0


def test_off_loopback_the_token_opens_every_route(tmp_path: Path) -> None:
    node = Node()

    async def talk(client: Client) -> None:
        for path in ("/status", "/readyz", "/metrics"):
            assert (await client.get(path, headers=bearer(TOKEN))).status == 200, path
        answer = await client.post("/runs", json={"run_id": "extra-1"}, headers=bearer(TOKEN))
        assert (answer.status, await answer.json()) == (202, {"run_id": "extra-1"})

    with_client(AdminServer(guarded(tmp_path), node), talk)
    assert node.triggered == ["extra-1"]


def test_health_and_the_page_shell_are_public(tmp_path: Path) -> None:
    async def talk(client: Client) -> None:
        for method, path in (("GET", "/healthz"), ("HEAD", "/healthz"), ("GET", "/")):
            answer = await client.request(method, path)
            assert answer.status == 200, (method, path)
        page = await client.get("/")
        assert "alice" not in await page.text()  # the shell holds no data

    with_client(AdminServer(guarded(tmp_path), Node()), talk)


def test_a_header_that_is_not_utf8_is_refused_not_an_error(tmp_path: Path) -> None:
    """Raw bytes a client may send: the listener answers 401, never 500."""
    port = free_ports(1)[0]
    settings = AdminSettings("127.0.0.1", port, token_file(tmp_path))

    async def main() -> list[bytes]:
        admin = AdminServer(settings, Node())
        await admin.start()
        lines = []
        try:
            for header in (b"Bearer \xff\xfe", b"Bearer " + TOKEN.encode() + b"\xc3"):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(
                    b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                    b"Authorization: " + header + b"\r\n\r\n"
                )
                lines.append((await reader.read()).split(b"\r\n")[0])
                writer.close()
                await writer.wait_closed()
        finally:
            await admin.close()
        return lines

    assert asyncio.run(main()) == [b"HTTP/1.1 401 Unauthorized"] * 2


# ----------------------------------------------------------------------------- triggers


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"{not json", "the body must be JSON"),
        (b"\xff\xfe", "the body must be JSON"),
        (b"[1, 2]", "the body must be a JSON object"),
        (b'"daily"', "the body must be a JSON object"),
        (b"null", "the body must be a JSON object"),
        (b'{"run_id": "a b"}', "run_id must match [A-Za-z0-9._-]{1,64}"),
        (b'{"run_id": "../etc"}', "run_id must match [A-Za-z0-9._-]{1,64}"),
        (b'{"run_id": ""}', "run_id must match [A-Za-z0-9._-]{1,64}"),
        (b'{"run_id": 42}', "run_id must match [A-Za-z0-9._-]{1,64}"),
        (('{"run_id": "%s"}' % ("x" * 65)).encode(), "run_id must match [A-Za-z0-9._-]{1,64}"),
        (b'{"fresh": "yes"}', "fresh must be true or false"),
    ],
)
def test_a_bad_trigger_is_400(body: bytes, error: str) -> None:
    node = Node()

    async def talk(client: Client) -> tuple[int, Any]:
        answer = await client.post("/runs", data=body, headers={"Content-Type": "application/json"})
        return answer.status, await answer.json()

    assert with_client(AdminServer(LOOPBACK, node), talk) == (400, {"error": error})
    assert node.triggered == []


def test_triggers_with_and_without_a_body() -> None:
    node = Node()

    async def talk(client: Client) -> list[tuple[int, Any]]:
        answers = []
        bodies: list[dict[str, Any]] = [{}, {"json": {}}, {"json": {"run_id": None}}]
        fresh = {"json": {"run_id": "r.1", "fresh": True}}
        for kwargs in [*bodies, {"json": {"run_id": "r.1"}}, fresh]:
            answer = await client.post("/runs", **kwargs)
            answers.append((answer.status, await answer.json()))
        return answers

    answers = with_client(AdminServer(LOOPBACK, node), talk)
    assert answers == [(202, {"run_id": SLOT_RUN})] * 3 + [(202, {"run_id": "r.1"})] * 2
    assert node.triggered == [None, None, None, "r.1", "r.1"]
    assert node.fresh == [False] * 4 + [True]


def test_a_trigger_during_a_run_is_409() -> None:
    node = Node()
    node.running = SLOT_RUN

    async def talk(client: Client) -> tuple[int, Any]:
        answer = await client.post("/runs", json={"run_id": "other"})
        return answer.status, await answer.json()

    found = with_client(AdminServer(LOOPBACK, node), talk)
    assert found == (409, {"error": f"run {SLOT_RUN} is in progress"})


def test_a_body_over_the_limit_is_refused() -> None:
    async def talk(client: Client) -> int:
        answer = await client.post("/runs", json={"run_id": "x", "pad": "y" * 5000})
        return answer.status

    assert with_client(AdminServer(LOOPBACK, Node()), talk) == 413


def test_a_get_on_runs_is_not_a_trigger() -> None:
    node = Node()

    async def talk(client: Client) -> int:
        return (await client.get("/runs")).status

    assert with_client(AdminServer(LOOPBACK, node), talk) == 405
    assert node.triggered == []


# ----------------------------------------------------------------------------- readiness, metrics


def test_readiness_lists_every_problem_and_sets_the_gauge() -> None:
    node = Node()
    node.problems = ["peer bob: unreachable (connection refused)", "key: unreadable"]

    async def talk(client: Client) -> list[tuple[int, str, float]]:
        answers = []
        for problems in (node.problems, []):
            node.problems = problems
            answer = await client.get("/readyz")
            answers.append(
                (answer.status, await answer.text(), gauge(node.metrics, "riskprop_ready"))
            )
        return answers

    not_ready, ready = with_client(AdminServer(LOOPBACK, node), talk)
    assert not_ready == (503, "peer bob: unreachable (connection refused)\nkey: unreadable\n", 0.0)
    assert ready == (200, "ready\n", 1.0)


def gauge(metrics: NodeMetrics, name: str) -> float:
    text = metrics.render().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"no {name} in {text}")


def test_metrics_parse_with_the_prometheus_parser() -> None:
    node = Node()
    node.metrics.runs.labels("succeeded").inc(2)
    node.metrics.phase_seconds.labels("decrypting").set(31.5)
    node.metrics.peer_up.labels("bob").set(1)
    node.metrics.eta.set(float("nan"))
    node.metrics.set_key("3f:a1:9c")

    async def talk(client: Client) -> tuple[str, str]:
        answer = await client.get("/metrics")
        return answer.headers["Content-Type"], await answer.text()

    content_type, text = with_client(AdminServer(LOOPBACK, node), talk)
    assert content_type.startswith("text/plain") and "version=" in content_type
    assert node.status_calls == 1  # the clock's gauges were refreshed first
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    types = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    runs = samples["riskprop_runs_total"]
    assert {dict(k)["status"] for k in runs} == set(RUN_STATUSES)
    assert runs[(("status", "succeeded"),)] == 2 and runs[(("status", "failed"),)] == 0
    assert samples["riskprop_last_run_phase_seconds"][(("phase", "decrypting"),)] == 31.5
    assert samples["riskprop_peer_reachable"][(("peer", "bob"),)] == 1
    info = dict(next(iter(samples["riskprop_node_info"])))
    assert info["player"] == "alice" and info["key_fingerprint"] == "3f:a1:9c"
    assert types["riskprop_runs"] == "counter" and types["riskprop_run_in_progress"] == "gauge"
    for name in (
        "riskprop_sent_bytes_total",
        "riskprop_run_progress_ratio",
        "riskprop_run_remaining_seconds",
        "riskprop_certificate_expiry_seconds",
        "riskprop_last_success_timestamp_seconds",
        "riskprop_next_run_timestamp_seconds",
        "riskprop_ready",
        "riskprop_last_run_seconds",
    ):
        assert name in samples, name


def test_two_nodes_keep_separate_metrics() -> None:
    alice, bob = NodeMetrics("alice"), NodeMetrics("bob")
    alice.runs.labels("failed").inc()
    assert b'riskprop_runs_total{status="failed"} 1.0' in alice.render()
    assert b'riskprop_runs_total{status="failed"} 0.0' in bob.render()


# ----------------------------------------------------------------------------- headers


def test_the_page_has_a_content_security_policy_and_no_framing() -> None:
    async def talk(client: Client) -> dict[str, str]:
        answer = await client.get("/")
        assert answer.status == 200
        return dict(answer.headers)

    headers = with_client(AdminServer(LOOPBACK, Node()), talk)
    assert headers["Content-Security-Policy"] == PAGE_POLICY
    assert "default-src 'none'" in PAGE_POLICY and "frame-ancestors 'none'" in PAGE_POLICY
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_answers_are_not_cached_and_not_sniffed() -> None:
    async def talk(client: Client) -> list[dict[str, str]]:
        found = []
        for path in ("/healthz", "/status", "/metrics", "/readyz"):
            found.append(dict((await client.get(path)).headers))
        found.append(dict((await client.post("/runs")).headers))
        return found

    for headers in with_client(AdminServer(LOOPBACK, Node()), talk):
        assert headers["Cache-Control"] == "no-store"
        assert headers["X-Content-Type-Options"] == "nosniff"


def test_status_is_json_a_person_can_read() -> None:
    async def talk(client: Client) -> str:
        return await (await client.get("/status")).text()

    text = with_client(AdminServer(LOOPBACK, Node()), talk)
    assert json.loads(text) == {"player": "alice", "state": "idle"}
    assert "\n" in text  # indented


# ----------------------------------------------------------------------------- token file


def test_the_token_is_read_from_its_file(tmp_path: Path) -> None:
    assert LOOPBACK.read_token() is None
    settings = AdminSettings("0.0.0.0", 9100, token_file(tmp_path, f"  {TOKEN}\n\n"))
    assert settings.read_token() == TOKEN
    token_file(tmp_path, TOKEN, mode=0o400)
    assert settings.read_token() == TOKEN


def one_line(error: pytest.ExceptionInfo[ConfigError]) -> str:
    text = str(error.value)
    assert "\n" not in text, text
    return text


def test_a_token_file_others_may_read_is_refused(tmp_path: Path) -> None:
    path = token_file(tmp_path, mode=0o644)
    with pytest.raises(ConfigError) as error:
        AdminServer(AdminSettings("0.0.0.0", 9100, path), Node())
    assert one_line(error) == (
        f"{path}: admin token file is accessible by group/others (mode 0644); run: chmod 600 {path}"
    )
    path.chmod(0o640)
    with pytest.raises(ConfigError, match=r"mode 0640"):
        AdminSettings("0.0.0.0", 9100, path).read_token()


def test_a_short_or_missing_token_is_refused(tmp_path: Path) -> None:
    path = token_file(tmp_path, "short\n")
    with pytest.raises(ConfigError) as error:
        AdminSettings("0.0.0.0", 9100, path).read_token()
    assert one_line(error) == f"{path}: the admin token must have 16 characters or more (it has 5)"
    missing = tmp_path / "absent.token"
    with pytest.raises(ConfigError) as error:
        AdminSettings("0.0.0.0", 9100, missing).read_token()
    assert one_line(error).startswith(f"{missing}: cannot read the admin token file")


# ----------------------------------------------------------------------------- listening


def test_the_listener_starts_closes_and_reports_a_busy_port(tmp_path: Path) -> None:
    port = free_ports(1)[0]
    settings = AdminSettings("127.0.0.1", port)

    async def main() -> str:
        first = AdminServer(settings, Node())
        await first.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = await reader.read()
            writer.close()
            assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"ok\n")
            second = AdminServer(settings, Node())
            with pytest.raises(ConfigError) as error:
                await second.start()
            await second.close()  # nothing to close: no error either
        finally:
            await first.close()
            await first.close()
        again = AdminServer(settings, Node())  # the port is free once closed
        await again.start()
        await again.close()
        return one_line(error)

    message = asyncio.run(main())
    assert message.startswith(f"admin listener: cannot listen on 127.0.0.1:{port} (")
