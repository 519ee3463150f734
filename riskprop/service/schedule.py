"""Schedule slots: the UTC times a 5-field cron expression fires, and the runs they name.

A slot is a fire time. Every bank computes the same slots from the same expression, so the
banks agree on a run by its slot: its run id is ``ScheduleSettings.run_id_for(slot)``. A
slot's run is *open* for ``join_window`` seconds after the slot: a node that starts then joins
it, and nodes wait that long for their peers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cronsim import CronSim

from riskprop.config import ScheduleSettings


def utc_now() -> datetime:
    return datetime.now(UTC)


def previous_slot(cron: str, now: datetime) -> datetime:
    """The latest fire time ``<= now`` (cron has minute resolution)."""
    after = now.replace(microsecond=0) + timedelta(seconds=1)  # the reverse walk excludes its start
    slot: datetime = next(CronSim(cron, after, reverse=True))
    return slot


def next_slot(cron: str, now: datetime) -> datetime:
    """The first fire time ``> now``."""
    slot: datetime = next(CronSim(cron, now))
    return slot


@dataclass(frozen=True)
class Slot:
    """One fire time of the schedule and the run it names."""

    at: datetime
    run_id: str

    def closes(self, schedule: ScheduleSettings) -> datetime:
        return self.at + timedelta(seconds=schedule.join_window)


def open_slot(schedule: ScheduleSettings, now: datetime) -> Slot | None:
    """The slot whose run is open at ``now`` (its join window not yet over), if any."""
    at = previous_slot(schedule.cron, now)
    slot = Slot(at, schedule.run_id_for(at))
    return slot if now < slot.closes(schedule) else None


def upcoming_slot(schedule: ScheduleSettings, now: datetime) -> Slot:
    at = next_slot(schedule.cron, now)
    return Slot(at, schedule.run_id_for(at))


def iso(moment: datetime | None) -> str | None:
    """``2026-11-29T02:00:00Z`` (UTC), or None."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
