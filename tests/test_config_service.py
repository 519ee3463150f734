"""The service's configuration sections (``schedule``, ``admin``, ``retention``): what they
give, their defaults, and every mistake as one line naming the file and the key."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from nodes import Network, make_network

from riskprop.config import (
    DEFAULT_JOIN_WINDOW,
    DEFAULT_KEEP_RUNS,
    DEFAULT_RUN_ID_TEMPLATE,
    AdminSettings,
    ScheduleSettings,
    format_slot,
    load_player_config,
)
from riskprop.errors import ConfigError

PARTIES = ("alice", "bob", "charlie")
SLOT = datetime(2026, 11, 29, 2, 5, tzinfo=UTC)


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Network:
    return make_network(tmp_path_factory.mktemp("network"), PARTIES)


@pytest.fixture
def configs(network: Network, tmp_path: Path) -> Path:
    target = tmp_path / "configs"
    shutil.copytree(network.configs, target)
    return target


def edit(configs: Path, change: Callable[[dict[str, Any]], object]) -> None:
    path = configs / "alice.yaml"
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def with_section(
    name: str, value: object, *, drop_run_id: bool = False
) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        data[name] = value
        if drop_run_id:
            del data["run"]["run_id"]

    return change


def failure(configs: Path) -> str:
    """The one line of the ConfigError that loading alice's file raises."""
    with pytest.raises(ConfigError) as error:
        load_player_config(configs, "alice")
    text = str(error.value)
    assert "\n" not in text, text
    assert text.startswith(f"{configs.resolve() / 'alice.yaml'}: "), text
    return text[len(f"{configs.resolve() / 'alice.yaml'}: ") :]


# ----------------------------------------------------------------------------- what loads


def test_without_the_sections_the_defaults_hold(configs: Path) -> None:
    config = load_player_config(configs, "alice")
    assert config.schedule is None
    assert config.keep_runs == DEFAULT_KEEP_RUNS == 30
    admin = config.admin
    assert admin == AdminSettings("127.0.0.1", config.listen_port + 100)
    assert admin is not None and admin.loopback and admin.enabled and not admin.configured
    assert admin.token_file is None
    assert admin.url == f"http://127.0.0.1:{config.listen_port + 100}"


def test_a_schedule_and_its_defaults(configs: Path) -> None:
    edit(configs, with_section("schedule", {"cron": "0 2 * * *"}, drop_run_id=True))
    config = load_player_config(configs, "alice")
    assert config.schedule == ScheduleSettings(
        cron="0 2 * * *", run_id=DEFAULT_RUN_ID_TEMPLATE, data=None, join_window=DEFAULT_JOIN_WINDOW
    )
    assert config.run.run_id == ""  # each run takes its id from its slot
    assert config.schedule.run_id_for(SLOT) == "run-2026-11-29T0205"
    assert config.schedule.data_for(SLOT, config.data) == config.data


def test_a_full_schedule(configs: Path) -> None:
    schedule = {
        "cron": "*/15 1-3 * * 1-5",
        "run_id": "daily-{date}",
        "data": "snapshots/{date}",
        "join_window": 900,
    }
    edit(configs, with_section("schedule", schedule))
    config = load_player_config(configs, "alice")
    assert config.schedule is not None
    assert (config.schedule.cron, config.schedule.join_window) == ("*/15 1-3 * * 1-5", 900)
    assert config.run.run_id == "test-run"  # a one-shot run may still use the file's id
    # the data template resolves against the file's folder
    expected = configs.resolve() / "snapshots" / "2026-11-29"
    assert config.schedule.data_for(SLOT, config.data) == expected


def test_admin_settings(configs: Path) -> None:
    token = configs / "admin.token"
    token.write_text("t" * 32)
    token.chmod(0o600)
    admin = {"host": "0.0.0.0", "port": 9911, "token_file": "admin.token"}
    edit(configs, with_section("admin", admin))
    settings = load_player_config(configs, "alice").admin
    assert settings == AdminSettings("0.0.0.0", 9911, token.resolve(), True, configured=True)
    assert not settings.loopback
    assert settings.url == "http://127.0.0.1:9911"


def test_an_admin_port_near_the_top_is_capped(configs: Path) -> None:
    edit(configs, lambda d: d["listen"].update(port=65500))
    settings = load_player_config(configs, "alice").admin
    assert settings is not None and settings.port == 65535


def test_a_disabled_admin_listener_needs_no_token(configs: Path) -> None:
    edit(configs, with_section("admin", {"host": "0.0.0.0", "enabled": False}))
    settings = load_player_config(configs, "alice").admin
    assert settings is not None and not settings.enabled and settings.configured


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_loopback_hosts_need_no_token(configs: Path, host: str) -> None:
    edit(configs, with_section("admin", {"host": host}))
    settings = load_player_config(configs, "alice").admin
    assert settings is not None and settings.loopback and settings.token_file is None


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("::1", "http://[::1]:9100"),
        ("::", "http://[::1]:9100"),
        ("localhost", "http://localhost:9100"),
    ],
)
def test_admin_urls(host: str, url: str) -> None:
    assert AdminSettings(host, 9100).url == url


def test_retention(configs: Path) -> None:
    edit(configs, with_section("retention", {"keep_runs": 3}))
    assert load_player_config(configs, "alice").keep_runs == 3


def test_a_run_of_the_service_is_the_configuration_with_its_id_data_and_folder(
    configs: Path, tmp_path: Path
) -> None:
    edit(configs, with_section("schedule", {"cron": "0 2 * * *"}, drop_run_id=True))
    config = load_player_config(configs, "alice")
    run = config.for_run("daily-2026-11-29", tmp_path / "data", tmp_path / "out" / "runs" / "x")
    assert run.run.run_id == "daily-2026-11-29"
    assert run.run.parameters == config.run.parameters
    assert (run.data, run.output) == (tmp_path / "data", tmp_path / "out" / "runs" / "x")
    same = config.for_run("again")
    assert (same.data, same.output, same.schedule) == (config.data, config.output, config.schedule)


def test_the_run_id_override_works_with_a_schedule(configs: Path) -> None:
    edit(configs, with_section("schedule", {"cron": "0 2 * * *"}, drop_run_id=True))
    config = load_player_config(configs, "alice", overrides={"run_id": "by-hand"})
    assert config.run.run_id == "by-hand"


# ----------------------------------------------------------------------------- templates


@pytest.mark.parametrize(
    ("template", "text"),
    [
        ("{date}", "2026-11-29"),
        ("{time}", "0205"),
        ("{datetime}", "2026-11-29T0205"),
        ("{slot:%Y%m%d-%H}", "20261129-02"),
        ("{slot:%j}", "333"),
        ("q{slot:%m}-{date}", "q11-2026-11-29"),
        ("{{literal}}-{date}", "{literal}-2026-11-29"),
        ("no-placeholder", "no-placeholder"),
    ],
)
def test_format_slot_placeholders(template: str, text: str) -> None:
    assert format_slot(template, SLOT) == text


@pytest.mark.parametrize("template", ["{nope}", "{0}", "{", "}", "{date:d}", "{slot:%Y"])
def test_format_slot_names_a_bad_placeholder(template: str) -> None:
    with pytest.raises(ValueError) as error:
        format_slot(template, SLOT)
    assert str(error.value).startswith(f"bad placeholder in {template!r} (")
    assert "allowed: {date}, {time}, {datetime}, {slot:%Y...}" in str(error.value)


# ----------------------------------------------------------------------------- mistakes


def schedule_of(**fields: object) -> Callable[[dict[str, Any]], None]:
    return with_section("schedule", {"cron": "0 2 * * *", **fields})


CRON = "schedule.cron: "
MISTAKES = [
    # the cron expression: five fields, each in range
    (
        schedule_of(cron="0 2 * *"),
        f"{CRON}'0 2 * *' is not a 5-field cron expression (m h dom mon dow)",
    ),
    (schedule_of(cron="0 0 2 * * *"), f"{CRON}'0 0 2 * * *' is not a 5-field cron expression"),
    (schedule_of(cron="@daily"), f"{CRON}'@daily' is not a 5-field cron expression"),
    (schedule_of(cron="0 25 * * *"), f"{CRON}'0 25 * * *': "),
    (schedule_of(cron="60 2 * * *"), f"{CRON}'60 2 * * *': "),
    (schedule_of(cron="0 2 32 * *"), f"{CRON}'0 2 32 * *': "),
    (schedule_of(cron="0 2 * 13 *"), f"{CRON}'0 2 * 13 *': "),
    (schedule_of(cron="0 2 * * 8"), f"{CRON}'0 2 * * 8': "),
    (schedule_of(cron="0 2 30 2 *"), f"{CRON}'0 2 30 2 *': "),  # never fires
    (schedule_of(cron="x y z w v"), f"{CRON}'x y z w v': "),
    (schedule_of(cron=5), f"{CRON}expected a non-empty string, got int"),
    (with_section("schedule", {"run_id": "d-{date}"}), f"{CRON}missing required key"),
    # the run id template
    (schedule_of(run_id="d-{nope}"), "schedule.run_id: bad placeholder in 'd-{nope}' ("),
    (schedule_of(run_id="d-{0}"), "schedule.run_id: bad placeholder in 'd-{0}' ("),
    (schedule_of(run_id="d-{date"), "schedule.run_id: bad placeholder in 'd-{date' ("),
    (
        schedule_of(run_id="daily {date}"),
        "schedule.run_id: 'daily {date}' gives 'daily 2000-01-01', which must match "
        "[A-Za-z0-9._-]{1,64}",
    ),
    (schedule_of(run_id="d/{date}"), "schedule.run_id: 'd/{date}' gives 'd/2000-01-01', which"),
    (schedule_of(run_id="{slot:%c}"), "schedule.run_id: '{slot:%c}' gives "),
    (schedule_of(run_id="x" * 60 + "{date}"), "which must match [A-Za-z0-9._-]{1,64}"),
    # the data template and the window
    (schedule_of(data="snapshots/{day}"), "schedule.data: bad placeholder in 'snapshots/{day}' ("),
    (schedule_of(join_window=0), "schedule.join_window: must be > 0 (got 0)"),
    (schedule_of(join_window=-60), "schedule.join_window: must be > 0 (got -60)"),
    (schedule_of(join_window="1h"), "schedule.join_window: expected a number, got str"),
    # unknown keys and shapes
    (
        schedule_of(timezone="Europe/Amsterdam"),
        "schedule.timezone: unknown key (allowed: cron, run_id, data, join_window)",
    ),
    (with_section("schedule", "0 2 * * *"), "schedule: expected a mapping, got str"),
    (
        with_section("admin", {"bind": "0.0.0.0"}),
        "admin.bind: unknown key (allowed: enabled, host, port, token_file)",
    ),
    (with_section("admin", ["127.0.0.1"]), "admin: expected a mapping, got list"),
    (with_section("retention", {"keep": 3}), "retention.keep: unknown key (allowed: keep_runs)"),
    # the admin listener
    (
        with_section("admin", {"host": "0.0.0.0"}),
        "admin.token_file: required when the admin listener is not on loopback (host 0.0.0.0)",
    ),
    (
        with_section("admin", {"host": "::"}),
        "admin.token_file: required when the admin listener is not on loopback (host ::)",
    ),
    (
        with_section("admin", {"host": "10.1.2.3"}),
        "admin.token_file: required when the admin listener is not on loopback (host 10.1.2.3)",
    ),
    (with_section("admin", {"token_file": "absent.token"}), "admin.token_file: file not found: "),
    (with_section("admin", {"port": 70000}), "admin.port: must lie in 1..65535 (got 70000)"),
    (with_section("admin", {"port": 0}), "admin.port: must lie in 1..65535 (got 0)"),
    (with_section("admin", {"port": "9100"}), "admin.port: expected an integer, got str"),
    (with_section("admin", {"enabled": "yes"}), "admin.enabled: expected true or false, got str"),
    # retention
    (with_section("retention", {"keep_runs": 0}), "retention.keep_runs: must be >= 1 (got 0)"),
    (with_section("retention", {"keep_runs": -2}), "retention.keep_runs: must be >= 1 (got -2)"),
    (with_section("retention", {"keep_runs": 2.5}), "retention.keep_runs: expected an integer"),
    (with_section("retention", {"keep_runs": "ten"}), "retention.keep_runs: expected an integer"),
]


@pytest.mark.parametrize(("change", "message"), MISTAKES)
def test_each_mistake_is_one_line_naming_the_key(
    configs: Path, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    edit(configs, change)
    text = failure(configs)
    assert message in text, text
    if message.endswith(": ") and message.startswith(CRON):
        assert len(text) > len(message)  # the reason follows


def test_the_run_id_is_optional_only_with_a_schedule(configs: Path) -> None:
    edit(configs, lambda d: d["run"].pop("run_id"))
    assert failure(configs) == "run.run_id: missing required key"
    edit(configs, schedule_of())
    assert load_player_config(configs, "alice").run.run_id == ""


def test_a_bad_run_id_is_refused_even_with_a_schedule(configs: Path) -> None:
    edit(configs, schedule_of())
    edit(configs, lambda d: d["run"].update(run_id="a b"))
    assert failure(configs).startswith("run.run_id: 'a b' must match")


def test_an_empty_schedule_is_no_schedule(configs: Path) -> None:
    edit(configs, with_section("schedule", None))
    assert load_player_config(configs, "alice").schedule is None


@pytest.mark.parametrize("template", ["d-{slot.foo}", "d-{slot[0]}", "d-{date.upper}x{date.x}"])
def test_a_placeholder_with_a_bad_attribute_or_index_is_one_line(
    configs: Path, template: str
) -> None:
    edit(configs, schedule_of(run_id=template))
    assert failure(configs).startswith(f"schedule.run_id: bad placeholder in {template!r} (")


def test_the_admin_url_of_an_ipv6_address_has_brackets() -> None:
    assert AdminSettings("2001:db8::1", 9100).url == "http://[2001:db8::1]:9100"
