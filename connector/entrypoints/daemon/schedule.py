"""Triggers for the daemon: the same tick grid on every instance.

Several daemons may serve one database. Each run records the *tick* it serves (the fire
time before jitter), and a run finding that its tick was already served by any instance
skips. For that, every instance must compute the same ticks: interval schedules are
anchored on the Unix epoch (``interval_seconds = 300`` ticks at :00, :05, :10 ... UTC on
every host) and cron schedules are UTC. Jitter delays a fire inside its tick, never moves
the tick itself.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

from connector.config import Schedule, Schedules
from connector.cron import crontab_trigger

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class GridIntervalTrigger(BaseTrigger):
    """Fires at epoch-aligned multiples of ``seconds`` plus up to ``jitter`` seconds.

    APScheduler's IntervalTrigger adds the next interval to the previous *jittered* fire
    time, so instances drift apart; this one always returns to the grid."""

    def __init__(self, seconds: int, jitter: int = 0) -> None:
        self.seconds = seconds
        self.jitter = min(jitter, seconds // 2)  # a fire stays well inside its own tick

    def tick_of(self, when: datetime) -> datetime:
        n = math.floor((when - EPOCH).total_seconds() / self.seconds)
        return EPOCH + timedelta(seconds=n * self.seconds)

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime:
        if previous_fire_time is None:
            base = self.tick_of(now)
            nxt = base if base >= now else base + timedelta(seconds=self.seconds)
        else:
            nxt = self.tick_of(previous_fire_time) + timedelta(seconds=self.seconds)
        return nxt + timedelta(seconds=random.uniform(0, self.jitter)) if self.jitter else nxt

    def __str__(self) -> str:
        return f"every {self.seconds}s (epoch grid, jitter {self.jitter}s)"


@dataclass(frozen=True)
class JobPlan:
    """One (org, job) schedule: the trigger and how to name the tick a fire serves."""

    trigger: BaseTrigger
    misfire_grace_s: int
    description: str

    def tick_of(self, when: datetime) -> datetime:
        if isinstance(self.trigger, GridIntervalTrigger):
            return self.trigger.tick_of(when)
        return _latest_cron_point(self.trigger, when, self.misfire_grace_s)


def _latest_cron_point(trigger: CronTrigger, when: datetime, grace_s: int) -> datetime:
    plain = CronTrigger(**{f.name: str(f) for f in trigger.fields if not f.is_default}, timezone=UTC)
    # A fire is late by at most jitter + misfire grace (+ a margin for a busy pool).
    window = timedelta(seconds=(trigger.jitter or 0) + grace_s + 120)
    point = plain.get_next_fire_time(None, when - window)
    latest = None
    while point is not None and point <= when:
        latest = point
        point = plain.get_next_fire_time(point, point)
    return latest or when


def plan_for(schedules: Schedules, job: str, misfire_grace_s: int) -> JobPlan | None:
    """The plan of an enabled job, or None when the org disabled it."""
    schedule: Schedule = schedules.trigger(job)
    if not schedule.enabled:
        return None
    if schedule.cron is not None:
        return JobPlan(crontab_trigger(schedule.cron, schedule.jitter_seconds), misfire_grace_s,
                       f"cron '{schedule.cron}' UTC, jitter {schedule.jitter_seconds}s")
    trigger = GridIntervalTrigger(schedules.interval_seconds(job), schedule.jitter_seconds)
    return JobPlan(trigger, misfire_grace_s, str(trigger))
