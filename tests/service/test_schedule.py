"""Schedule slots (``riskprop.service.schedule``): the fire times around a moment, the open
slot of a join window, and the run ids the banks derive from a slot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from riskprop.config import ScheduleSettings
from riskprop.service.schedule import (
    Slot,
    iso,
    next_slot,
    open_slot,
    previous_slot,
    upcoming_slot,
)

DAILY = "0 2 * * *"


def at(text: str) -> datetime:
    """A UTC moment from ``2026-11-29T02:00:30.5``."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "previous", "following"),
    [
        ("2026-11-29T02:00:00", "2026-11-29T02:00:00", "2026-11-30T02:00:00"),  # on the minute
        ("2026-11-29T02:00:00.000001", "2026-11-29T02:00:00", "2026-11-30T02:00:00"),
        ("2026-11-29T02:00:30.5", "2026-11-29T02:00:00", "2026-11-30T02:00:00"),
        ("2026-11-29T02:00:59.999", "2026-11-29T02:00:00", "2026-11-30T02:00:00"),
        ("2026-11-29T01:59:59.999", "2026-11-28T02:00:00", "2026-11-29T02:00:00"),
        ("2026-11-29T01:59:00", "2026-11-28T02:00:00", "2026-11-29T02:00:00"),
        ("2026-12-31T23:59:59", "2026-12-31T02:00:00", "2027-01-01T02:00:00"),  # year end
    ],
)
def test_daily_slots_around_the_fire_time(now: str, previous: str, following: str) -> None:
    assert previous_slot(DAILY, at(now)) == at(previous)
    assert next_slot(DAILY, at(now)) == at(following)


@pytest.mark.parametrize(
    ("now", "previous", "following"),
    [
        ("2026-11-29T02:01:00", "2026-11-29T02:01:00", "2026-11-29T02:02:00"),
        ("2026-11-29T02:01:00.5", "2026-11-29T02:01:00", "2026-11-29T02:02:00"),
        ("2026-11-29T02:00:59", "2026-11-29T02:00:00", "2026-11-29T02:01:00"),
        ("2026-11-29T02:00:59.9", "2026-11-29T02:00:00", "2026-11-29T02:01:00"),
    ],
)
def test_minutely_slots_at_and_just_before_a_minute(
    now: str, previous: str, following: str
) -> None:
    assert previous_slot("* * * * *", at(now)) == at(previous)
    assert next_slot("* * * * *", at(now)) == at(following)


def test_slots_are_utc_and_previous_is_never_after_now() -> None:
    now = at("2026-03-29T01:30:00")  # a DST change in Europe means nothing in UTC
    for cron in ("30 1 * * *", "*/7 * * * *", "0 2 * * 1-5", "15 3 1 * *"):
        previous, following = previous_slot(cron, now), next_slot(cron, now)
        assert previous <= now < following
        assert previous.tzinfo is not None and previous.utcoffset() == timedelta(0)
        assert following.utcoffset() == timedelta(0)
    assert previous_slot("30 1 * * *", now) == now


def test_weekday_and_monthly_expressions() -> None:
    friday_noon = at("2026-11-27T12:00:00")  # a Friday
    assert next_slot("0 2 * * 1-5", friday_noon) == at("2026-11-30T02:00:00")  # Monday
    assert previous_slot("0 2 * * 1-5", friday_noon) == at("2026-11-27T02:00:00")
    assert previous_slot("15 3 1 * *", friday_noon) == at("2026-11-01T03:15:00")
    assert next_slot("15 3 1 * *", friday_noon) == at("2026-12-01T03:15:00")


def schedule(join_window: float = 3600, run_id: str = "daily-{date}") -> ScheduleSettings:
    return ScheduleSettings(cron=DAILY, run_id=run_id, join_window=join_window)


def test_the_slot_is_open_within_its_join_window() -> None:
    settings = schedule(join_window=600)
    slot = Slot(at("2026-11-29T02:00:00"), "daily-2026-11-29")
    assert open_slot(settings, at("2026-11-29T02:00:00")) == slot
    assert open_slot(settings, at("2026-11-29T02:09:59.9")) == slot
    assert slot.closes(settings) == at("2026-11-29T02:10:00")
    assert open_slot(settings, at("2026-11-29T02:10:00")) is None  # the window is half-open
    assert open_slot(settings, at("2026-11-29T13:00:00")) is None
    assert open_slot(settings, at("2026-11-29T01:59:59")) is None  # yesterday's closed long ago


def test_a_long_window_keeps_the_latest_slot_open() -> None:
    minutely = ScheduleSettings(cron="* * * * *", run_id="m-{datetime}", join_window=3600)
    found = open_slot(minutely, at("2026-11-29T02:05:30"))
    assert found == Slot(at("2026-11-29T02:05:00"), "m-2026-11-29T0205")


def test_upcoming_slot_names_the_next_run() -> None:
    upcoming = upcoming_slot(schedule(), at("2026-11-29T02:00:00"))
    assert upcoming == Slot(at("2026-11-30T02:00:00"), "daily-2026-11-30")


@pytest.mark.parametrize(
    ("template", "run_id"),
    [
        ("daily-{date}", "daily-2026-11-29"),
        ("run-{datetime}", "run-2026-11-29T0205"),
        ("{date}_{time}", "2026-11-29_0205"),
        ("week-{slot:%G-W%V}", "week-2026-W48"),
        ("m{slot:%m}.{slot:%d}", "m11.29"),
        ("fixed", "fixed"),
    ],
)
def test_run_ids_from_templates(template: str, run_id: str) -> None:
    assert schedule(run_id=template).run_id_for(at("2026-11-29T02:05:00")) == run_id


def test_the_default_template_and_the_data_of_a_slot() -> None:
    settings = ScheduleSettings(cron=DAILY, data="/srv/bank/{date}")
    slot = at("2026-11-29T02:00:00")
    assert settings.run_id_for(slot) == "run-2026-11-29T0200"
    assert settings.data_for(slot, Path("/default")) == Path("/srv/bank/2026-11-29")
    assert ScheduleSettings(cron=DAILY).data_for(slot, Path("/default")) == Path("/default")


def test_iso_is_utc_with_a_z() -> None:
    assert iso(None) is None
    assert iso(at("2026-11-29T02:00:30.7")) == "2026-11-29T02:00:30Z"
    elsewhere = datetime(2026, 11, 29, 3, 0, tzinfo=timezone(timedelta(hours=1)))
    assert iso(elsewhere) == "2026-11-29T02:00:00Z"
