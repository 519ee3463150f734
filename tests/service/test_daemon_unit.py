"""The service's decisions (``riskprop.service.daemon``) with a fake clock, without serving:
which run is due (startup, schedule, retry with back-off, triggers), slots skipped while
another run went on, the run history on disk, readiness and the status document."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import shutil
import stat
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer
from nodes import Network, make_network
from prometheus_client.parser import text_string_to_metric_families

from riskprop.config import DEFAULT_JOIN_WINDOW, AdminSettings, load_player_config
from riskprop.errors import ConfigError
from riskprop.node.runner import Tick
from riskprop.protocol.session import PhaseProgress
from riskprop.service.admin import AdminServer, TriggerError
from riskprop.service.daemon import (
    HISTORY_FILE,
    HISTORY_LENGTH,
    RETRY_AFTER,
    Current,
    History,
    Job,
    RunRecord,
    Service,
)
from riskprop.service.layout import point_latest, run_folder
from riskprop.service.progress import PHASES, ProgressTracker

PARTIES = ("alice", "bob", "charlie")
DAILY = {"cron": "0 2 * * *", "run_id": "daily-{date}", "join_window": 3600}
SLOT = datetime(2026, 11, 29, 2, 0, tzinfo=UTC)
TODAY = "daily-2026-11-29"


class Clock:
    """UTC time that the test moves."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def at(self, **delta: float) -> Clock:
        """Set the time to the slot plus ``delta``; return self."""
        self.now = SLOT + timedelta(**delta)
        return self


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Network:
    return make_network(tmp_path_factory.mktemp("network"), PARTIES)


@pytest.fixture
def configs(network: Network, tmp_path: Path) -> Path:
    """An editable copy of the network's configuration; alice writes under ``tmp_path/out``."""
    target = tmp_path / "configs"
    shutil.copytree(network.configs, target)
    edit(target, lambda d: d.update(output=str(tmp_path / "out")))
    return target


def edit(configs: Path, change: Callable[[dict[str, Any]], object]) -> None:
    path = configs / "alice.yaml"
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def scheduled(configs: Path, schedule: dict[str, Any] = DAILY) -> Path:
    def change(data: dict[str, Any]) -> None:
        data["schedule"] = dict(schedule)
        del data["run"]["run_id"]

    edit(configs, change)
    return configs


def service(configs: Path, clock: Clock) -> Service:
    return Service(lambda: load_player_config(configs, "alice"), clock=clock)


def running(node: Service, run_id: str = TODAY) -> None:
    """Make ``node`` look as if a run went on."""
    record = RunRecord(run_id, "schedule", "2026-11-29T02:00:00Z")
    node.current = Current(record, ProgressTracker(name="alice"), 0.0)


# ----------------------------------------------------------------------------- triggers


def test_a_trigger_without_an_id_names_the_latest_slot(configs: Path) -> None:
    clock = Clock(SLOT).at(hours=11)  # the slot's window closed long ago
    node = service(scheduled(configs), clock)
    assert node.trigger(None) == TODAY
    clock.at(hours=23, minutes=59)
    node._triggers.clear()  # as if it had started
    assert node.trigger(None) == TODAY
    clock.at(hours=24)
    node._triggers.clear()
    assert node.trigger(None) == "daily-2026-11-30"


def test_a_triggered_run_waits_its_join_window_and_reads_the_latest_slot(configs: Path) -> None:
    clock = Clock(SLOT).at(hours=11)
    node = service(scheduled(configs), clock)
    assert node.trigger("extra.1") == "extra.1"
    assert node._due(starting=False) == Job(
        "extra.1", "operator", SLOT, clock.now + timedelta(seconds=3600)
    )
    assert node._due(starting=False) is None  # taken once


def test_a_triggered_run_of_an_earlier_slot_reads_that_slot_and_may_start_fresh(
    configs: Path,
) -> None:
    clock = Clock(SLOT).at(days=3, hours=11)
    node = service(scheduled(configs), clock)
    assert node.trigger(TODAY, fresh=True) == TODAY  # three days ago
    job = node._due(starting=False)
    assert job == Job(TODAY, "operator", SLOT, clock.now + timedelta(seconds=3600), fresh=True)


def test_a_trigger_comes_before_the_open_slot(configs: Path) -> None:
    clock = Clock(SLOT).at(minutes=5)
    node = service(scheduled(configs), clock)
    node.trigger("first")
    due = node._due(starting=True)
    assert due is not None and (due.run_id, due.trigger) == ("first", "operator")
    due = node._due(starting=False)
    assert due is not None and (due.run_id, due.trigger) == (TODAY, "schedule")


def test_a_trigger_during_a_run_is_refused(configs: Path) -> None:
    node = service(scheduled(configs), Clock(SLOT))
    running(node)
    with pytest.raises(TriggerError) as error:
        node.trigger(None)
    assert error.value.status == 409
    assert str(error.value) == f"run {TODAY} is in progress"
    assert node._triggers == []


def test_without_a_schedule_a_trigger_needs_a_run_id(configs: Path) -> None:
    """Without a schedule the default run id is the configuration's run.run_id; with neither,
    a trigger must name its run."""
    clock = Clock(SLOT)
    node = service(configs, clock)
    assert node.config.run.run_id and node.trigger(None) == node.config.run.run_id
    node._triggers.clear()
    edit(configs, lambda player: player["run"].pop("run_id"))
    with pytest.raises(ConfigError):
        service(configs, clock)  # a configuration without a schedule needs run.run_id
    node.config = dataclasses.replace(
        node.config, run=dataclasses.replace(node.config.run, run_id="")
    )
    with pytest.raises(TriggerError) as error:
        node.trigger(None)
    assert error.value.status == 400
    assert node._due(starting=True) is None  # nothing runs by itself
    assert node.trigger("adhoc") == "adhoc"
    assert node._due(starting=False) == Job(
        "adhoc", "operator", None, SLOT + timedelta(seconds=DEFAULT_JOIN_WINDOW)
    )


def test_a_one_shot_node_takes_no_trigger(configs: Path) -> None:
    node = service(scheduled(configs), Clock(SLOT))
    node._once = True
    with pytest.raises(TriggerError) as error:
        node.trigger("x")
    assert error.value.status == 409
    assert node.next_run() is None


# ----------------------------------------------------------------------------- due runs


def test_a_node_that_starts_in_an_open_slot_joins_it(configs: Path) -> None:
    clock = Clock(SLOT).at(minutes=40)
    node = service(scheduled(configs), clock)
    assert node._due(starting=True) == Job(TODAY, "startup", SLOT, SLOT + timedelta(hours=1))


def test_a_slot_firing_is_a_scheduled_run_until_its_window_closes(configs: Path) -> None:
    clock = Clock(SLOT)
    node = service(scheduled(configs), clock)
    assert node._due(starting=False) == Job(TODAY, "schedule", SLOT, SLOT + timedelta(hours=1))
    clock.at(minutes=59, seconds=59)
    due = node._due(starting=False)
    assert due is not None and due.run_id == TODAY
    clock.at(hours=1)
    assert node._due(starting=False) is None
    assert node._due(starting=True) is None
    clock.at(seconds=-1)  # just before the slot: yesterday's window closed long ago
    assert node._due(starting=True) is None


def test_a_slot_that_succeeded_is_not_run_again(configs: Path) -> None:
    clock = Clock(SLOT).at(minutes=10)
    node = service(scheduled(configs), clock)
    node.history.add(RunRecord(TODAY, "schedule", "2026-11-29T02:00:00Z", status="succeeded"))
    assert node._due(starting=True) is None
    assert node._due(starting=False) is None
    assert node.trigger(None) == TODAY  # an operator may still run it again
    due = node._due(starting=False)
    assert due is not None and due.trigger == "operator"


def test_a_failed_slot_is_retried_with_doubling_back_off_while_open(configs: Path) -> None:
    clock = Clock(SLOT).at(minutes=10)
    node = service(scheduled(configs), clock)
    job = node._due(starting=False)
    assert job is not None
    node._failed(job)
    clock.now += timedelta(seconds=RETRY_AFTER - 1)
    assert node._due(starting=False) is None
    clock.now += timedelta(seconds=1)
    retry = node._due(starting=False)
    assert retry is not None and (retry.run_id, retry.trigger) == (TODAY, "retry")
    node._failed(retry)
    clock.now += timedelta(seconds=2 * RETRY_AFTER - 1)
    assert node._due(starting=False) is None
    clock.now += timedelta(seconds=1)
    retry = node._due(starting=False)
    assert retry is not None and retry.trigger == "retry"
    node._failed(retry)
    assert node._tries[TODAY][0] == 3
    assert node._tries[TODAY][1] == clock.now + timedelta(seconds=4 * RETRY_AFTER)
    clock.at(hours=1)
    assert node._due(starting=False) is None  # closed: no more retries


def test_a_failed_start_is_retried_too(configs: Path) -> None:
    clock = Clock(SLOT).at(minutes=10)
    node = service(scheduled(configs), clock)
    job = node._due(starting=True)
    assert job is not None and job.trigger == "startup"
    node._failed(job)
    clock.now += timedelta(seconds=RETRY_AFTER)
    retry = node._due(starting=False)
    assert retry is not None and retry.trigger == "retry"


def test_slots_that_closed_during_a_run_are_counted_as_skipped(configs: Path) -> None:
    every_ten = {"cron": "*/10 * * * *", "run_id": "r-{datetime}", "join_window": 300}
    clock = Clock(SLOT).at(seconds=30)
    node = service(scheduled(configs, every_ten), clock)
    began = clock.now
    clock.at(minutes=33)  # 02:10 and 02:20 closed during the run; 02:30 is still open
    node._count_skipped(began)
    skipped = [r for r in node.history.records if r.status == "skipped"]
    assert [r.run_id for r in skipped] == ["r-2026-11-29T0220", "r-2026-11-29T0210"]
    assert all(r.trigger == "schedule" and r.error == "another run was going on" for r in skipped)
    assert skipped[1].started == "2026-11-29T02:10:00Z"
    assert runs_counted(node, "skipped") == 2
    due = node._due(starting=False)
    assert due is not None and (due.run_id, due.trigger) == ("r-2026-11-29T0230", "schedule")
    node._count_skipped(began)  # once only
    assert runs_counted(node, "skipped") == 2
    assert len(node.history.records) == 2


def test_no_slot_is_skipped_without_a_schedule_or_within_its_window(configs: Path) -> None:
    clock = Clock(SLOT).at(minutes=-5)
    node = service(scheduled(configs), clock)
    began = clock.now
    clock.at(minutes=30)  # the slot fired during the run; its window is still open
    node._count_skipped(began)
    assert node.history.records == []
    plain = service(unscheduled(configs), clock)
    plain._count_skipped(began)
    assert plain.history.records == []


def unscheduled(configs: Path) -> Path:
    def change(data: dict[str, Any]) -> None:
        data.pop("schedule", None)
        data["run"]["run_id"] = "test-run"

    edit(configs, change)
    return configs


def runs_counted(node: Service, status: str) -> float:
    value = node.metrics.registry.get_sample_value("riskprop_runs_total", {"status": status})
    assert value is not None
    return value


# ----------------------------------------------------------------------------- history


def record(run_id: str, status: str = "succeeded", **fields: Any) -> RunRecord:
    return RunRecord(run_id, "schedule", "2026-11-29T02:00:00Z", status=status, **fields)


def test_the_history_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "out" / HISTORY_FILE
    history = History(path)
    first = record(
        "d1",
        finished="2026-11-29T02:00:48Z",
        seconds=48.1,
        bytes_sent=123,
        accounts=1000,
        phases={"handshake": 0.3, "iterating": 11.0, "decrypting": 31.0, "finishing": 0.2},
    )
    history.add(first)
    history.add(record("d2", "failed", error="peer bob: unreachable"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = History(path)
    assert again.records == [record("d2", "failed", error="peer bob: unreachable"), first]
    assert again.last_success() == first
    assert again.estimates() == first.phases
    assert again.succeeded("d1") and not again.succeeded("d2") and not again.succeeded("d3")


def test_a_run_going_on_when_the_process_ended_is_stopped(tmp_path: Path) -> None:
    path = tmp_path / HISTORY_FILE
    History(path).add(record("d1", "running"))
    assert [r.status for r in History(path).records] == ["stopped"]


def test_the_history_keeps_its_length(tmp_path: Path) -> None:
    history = History(tmp_path / HISTORY_FILE)
    for index in range(HISTORY_LENGTH + 5):
        history.records.insert(0, record(f"r{index}"))
    history.add(record("newest"))
    assert len(History(tmp_path / HISTORY_FILE).records) == HISTORY_LENGTH
    assert History(tmp_path / HISTORY_FILE).records[0].run_id == "newest"


def test_without_a_success_there_are_no_estimates(tmp_path: Path) -> None:
    history = History(None)  # not kept on disk
    history.add(record("d1", "failed"))
    assert history.last_success() is None and history.estimates() == {}


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "[]",
        '{"runs": 5}',
        '{"records": []}',
        '{"runs": [{"trigger": "schedule"}]}',
        '{"runs": [{"run_id": 7, "trigger": "x", "started": "", "status": "succeeded"}]}',
        '{"runs": ["d1"]}',
        "\udcff",
    ],
)
def test_a_damaged_history_is_a_warning_and_a_fresh_start(
    tmp_path: Path, text: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / HISTORY_FILE
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    with caplog.at_level(logging.WARNING, logger="riskprop.service.daemon"):
        history = History(path)
    assert history.records == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"{path}: unreadable run history, starting a new one (")
    assert "\n" not in warnings[0]
    history.add(record("d1"))
    assert [r.run_id for r in History(path).records] == ["d1"]


def test_a_record_ignores_fields_it_does_not_know() -> None:
    data = {**record("d1").to_json(), "future_field": 1}
    assert RunRecord.from_json(data) == record("d1")
    assert set(record("d1").to_json()) == {
        "run_id",
        "trigger",
        "started",
        "status",
        "finished",
        "seconds",
        "error",
        "bytes_sent",
        "accounts",
        "phases",
    }


def test_the_service_reads_its_history_at_start(configs: Path, tmp_path: Path) -> None:
    history = History(tmp_path / "out" / HISTORY_FILE)
    history.add(record("d0", finished="2026-11-28T02:00:48Z"))
    node = service(scheduled(configs), Clock(SLOT).at(minutes=5))
    assert node.history.succeeded("d0")
    last = node.metrics.registry.get_sample_value("riskprop_last_success_timestamp_seconds")
    assert last == datetime(2026, 11, 28, 2, 0, 48, tzinfo=UTC).timestamp()


# ----------------------------------------------------------------------------- readiness


def test_readiness_lists_unchecked_and_unreachable_peers(configs: Path) -> None:
    node = service(configs, Clock(SLOT))
    assert node.readiness() == ["peer bob: not checked yet", "peer charlie: not checked yet"]
    node.peers["bob"].reachable, node.peers["bob"].error = False, "connection refused"
    node.peers["charlie"].reachable = True
    assert node.readiness() == ["peer bob: unreachable (connection refused)"]
    node.peers["bob"].reachable, node.peers["bob"].error = True, None
    assert node.readiness() == []


def test_readiness_names_a_key_others_may_read(configs: Path, network: Network) -> None:
    config = load_player_config(configs, "alice")
    share = configs.parent / "alice.share.json"
    shutil.copy(config.key_share, share)
    share.chmod(0o644)
    edit(configs, lambda d: d.update(key_share=str(share)))
    node = ready_peers(service(configs, Clock(SLOT)))
    problems = node.readiness()
    assert len(problems) == 1
    assert problems[0].startswith(f"key: {share}: key share is accessible by group/others")
    assert node.key is None
    assert node.status()["key"] is None


def test_readiness_names_a_key_of_other_parties(configs: Path) -> None:
    network_file = configs / "network.yaml"
    data = yaml.safe_load(network_file.read_text())
    data["parties"].append({"name": "dave", "url": "https://127.0.0.1:9"})
    network_file.write_text(yaml.safe_dump(data, sort_keys=False))
    node = ready_peers(service(configs, Clock(SLOT)))
    problems = [p for p in node.readiness() if not p.startswith("peer dave")]
    assert problems == [
        f"key: {node.config.key_share}: the key's parties (alice, bob, charlie) differ from "
        "the network's (alice, bob, charlie, dave)"
    ]
    assert node.key is not None  # the key itself is readable: its fingerprint shows


def test_readiness_names_an_unreadable_certificate(configs: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.pem"
    broken.write_text("not a certificate")
    edit(configs, lambda d: d["tls"].update(certificate=str(broken)))
    node = ready_peers(service(configs, Clock(SLOT)))
    assert node.readiness() == [f"certificate: {broken}: unreadable"]
    assert node.status()["certificate"] is None


def test_readiness_names_an_expired_certificate(configs: Path) -> None:
    node = ready_peers(service(configs, Clock(SLOT)))
    certificate = node.certificate()
    assert certificate is not None
    node.clock = Clock(datetime.strptime(certificate["not_after"], "%Y-%m-%dT%H:%M:%SZ"))
    node.clock.now = node.clock.now.replace(tzinfo=UTC) + timedelta(days=1)
    assert node.readiness() == [
        f"certificate: {node.config.tls_certificate}: expired {certificate['not_after']}"
    ]


def ready_peers(node: Service) -> Service:
    for peer in node.peers.values():
        peer.reachable = True
    return node


# ----------------------------------------------------------------------------- status


def test_the_status_of_an_idle_node(configs: Path) -> None:
    clock = Clock(SLOT).at(hours=6)
    node = service(scheduled(configs), clock)
    status = node.status()
    assert set(status) == {
        "player",
        "version",
        "now",
        "started",
        "state",
        "current",
        "next_run",
        "schedule",
        "latest",
        "last_success",
        "history",
        "peers",
        "key",
        "certificate",
        "stream",
    }
    assert (status["player"], status["state"], status["current"]) == ("alice", "idle", None)
    assert status["stream"] is None  # no stream section
    assert status["now"] == status["started"] == "2026-11-29T08:00:00Z"
    assert status["next_run"] == {
        "run_id": "daily-2026-11-30",
        "at": "2026-11-30T02:00:00Z",
        "in_seconds": 18 * 3600.0,
    }
    assert status["schedule"] == {
        "cron": "0 2 * * *",
        "run_id": "daily-{date}",
        "join_window": 3600,
    }
    assert (status["latest"], status["last_success"], status["history"]) == (None, None, [])
    assert [p["name"] for p in status["peers"]] == ["bob", "charlie"]
    assert set(status["peers"][0]) == {"name", "url", "reachable", "checked", "error"}
    key = status["key"]
    assert key["parties"] == list(PARTIES) and key["threshold"] == 1 and key["bits"] == 512
    assert len(key["fingerprint"]) > 8
    assert status["certificate"]["subject"] == "alice"
    assert status["certificate"]["days_left"] > 0
    json.dumps(status)  # what /status sends
    next_run = node.metrics.registry.get_sample_value("riskprop_next_run_timestamp_seconds")
    assert next_run == datetime(2026, 11, 30, 2, tzinfo=UTC).timestamp()


def test_the_status_shows_latest_and_the_newest_history_first(
    configs: Path, tmp_path: Path
) -> None:
    node = service(scheduled(configs), Clock(SLOT).at(hours=6))
    for index in range(60):
        node.history.add(record(f"d{index}", finished=f"2026-11-29T02:{index:02d}:00Z"))
    run_folder(tmp_path / "out", "d59").mkdir(parents=True)
    point_latest(tmp_path / "out", "d59")
    status = node.status()
    assert status["latest"] == "d59"
    assert status["last_success"] == "2026-11-29T02:59:00Z"
    assert len(status["history"]) == 50
    assert status["history"][0]["run_id"] == "d59"


def test_the_status_of_a_run_in_progress(configs: Path) -> None:
    node = service(scheduled(configs), Clock(SLOT).at(seconds=10))
    running(node)
    assert node.current is not None
    node.current.tracker.update(Tick(PhaseProgress("iterating", 3, 10, "iteration 4/10"), 999))
    status = node.status()
    assert status["state"] == "running"
    current = status["current"]
    assert (current["run_id"], current["trigger"], current["phase"]) == (
        TODAY,
        "schedule",
        "iterating",
    )
    assert current["detail"] == "iteration 4/10" and current["bytes_sent"] == 999
    assert [p["name"] for p in current["phases"]] == list(PHASES)
    assert [p["state"] for p in current["phases"]] == ["done", "running", "pending", "pending"]
    assert 0 <= current["fraction"] <= 1 and current["eta_seconds"] is None
    node._on_tick(None)  # the run's end: the gauges follow
    assert node.metrics.registry.get_sample_value(
        "riskprop_run_phase_progress_ratio", {"phase": "iterating"}
    ) == pytest.approx(0.3)


def test_a_schedule_on_a_one_shot_node_has_no_next_run(configs: Path) -> None:
    node = service(scheduled(configs), Clock(SLOT))
    node._once = True
    assert node.status()["next_run"] is None


def test_the_admin_listener_over_the_service(configs: Path) -> None:
    """``POST /runs``, ``/status`` and ``/metrics`` of a real service object."""
    clock = Clock(SLOT).at(hours=6)
    node = service(scheduled(configs), clock)
    admin = AdminServer(AdminSettings("127.0.0.1", 9100), node)

    async def talk() -> None:
        async with TestClient(TestServer(admin.app())) as client:
            queued = await client.post("/runs")
            assert (queued.status, await queued.json()) == (202, {"run_id": TODAY})
            running(node)
            refused = await client.post("/runs", json={"run_id": "other"})
            assert refused.status == 409
            assert await refused.json() == {"error": f"run {TODAY} is in progress"}
            status = await (await client.get("/status")).json()
            assert status["state"] == "running" and status["current"]["run_id"] == TODAY
            text = await (await client.get("/metrics")).text()
            names = {f.name for f in text_string_to_metric_families(text)}
            assert {"riskprop_runs", "riskprop_next_run_timestamp_seconds"} <= names
            ready = await client.get("/readyz")
            assert ready.status == 503 and "peer bob: not checked yet" in await ready.text()

    asyncio.run(talk())
    assert node._triggers == [(TODAY, False)]


def test_slots_superseded_during_a_run_are_counted_as_skipped(configs: Path) -> None:
    """A minutely schedule with an hour's window: a run of 02:00 that ends at 02:03:30 saw
    02:01, 02:02 and 02:03 fire, all still open; 02:03 runs next, the other two are skipped
    (neither run nor lost without a trace)."""
    minutely = {"cron": "* * * * *", "run_id": "m-{datetime}", "join_window": 3600}
    clock = Clock(SLOT).at(seconds=5)
    node = service(scheduled(configs, minutely), clock)
    began = clock.now
    clock.at(minutes=3, seconds=30)
    node._count_skipped(began)
    assert [r.run_id for r in node.history.records] == ["m-2026-11-29T0202", "m-2026-11-29T0201"]
    assert runs_counted(node, "skipped") == 2
    due = node._due(starting=False)
    assert due is not None and (due.run_id, due.trigger) == ("m-2026-11-29T0203", "schedule")


def test_a_second_trigger_before_the_first_starts_is_refused(configs: Path) -> None:
    node = service(scheduled(configs), Clock(SLOT).at(hours=3))
    assert node.trigger("manual-1") == "manual-1"
    with pytest.raises(TriggerError) as refused:
        node.trigger("manual-2")
    assert refused.value.status == 409 and "manual-1" in str(refused.value)
